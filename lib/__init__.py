"""Inference Latency Explorer engine.

Everything that measures lives here and imports only torch, transformers and the standard library
(plus psutil), so `python -m lib` runs on a bare GPU box. Two modules are the exception and are
only imported by the web app: `lib.charts` (plotly) and `lib.ui` (Streamlit).
"""

__version__ = "0.1.0"

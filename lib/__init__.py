"""Inference Latency Explorer engine, in layers (LAYERS below; docs/ARCHITECTURE.md).

Everything that measures imports only torch, transformers and the standard library (plus
psutil), so `python -m lib` runs on a bare GPU box. Two packages are the exception and are only
imported by the web app: `lib.views` (plotly) and `lib.ui` (Streamlit).
"""

__version__ = "0.1.0"

# The layers, bottom first. A module may import its own package and the packages on lower
# floors, never a higher floor or a sibling on its own floor (tests/test_layers.py checks every
# import, those inside functions too). docs/ARCHITECTURE.md describes each.
LAYERS = (
    ("core",),
    ("machine",),
    ("models",),
    ("estimate",),
    ("serving",),
    ("measure",),
    ("records",),
    ("views",),
    ("access",),
    ("lessons",),
    ("cli", "ui"),
)

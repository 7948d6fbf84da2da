"""Inference Latency Explorer: `streamlit run app.py`. The router lives in lib.ui.run_app."""

from lib import ui

ui.run_app()

"""What a person sees, drawn and worded: plotly charts for runs, sweeps, comparisons and load tests, and findings in words (insights). No Streamlit.

Imports: every layer below (core to records).
"""

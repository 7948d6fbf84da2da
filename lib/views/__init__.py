"""What a person sees, drawn and worded: plotly charts and findings in words. No Streamlit.

- charts, one module per job: `run_charts` (one run), `sweep_charts` (one sweep),
  `compare_charts` (saved results side by side), `serving_charts` (a load test), drawn with
  `chart_marks` (median, spread, noise, estimate) and `floor_charts` (the physical floor);
- findings: `insights` (a sweep in sentences), `stack_insights` (the software stack's
  trade-offs), both keeping to `comparable` (when two points can be told apart).

Imports: every layer below (core to records).
"""

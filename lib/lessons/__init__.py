"""Lessons: a guided path through the factors of inference latency, as data.

- `book`: the lessons (one TOML file each in `data/`), read and checked;
- `answer`: a lesson's answer computed from its measured points, only as far as the data
  carries it;
- `taking`: a lesson's measurement (a sweep sized to about a minute), its answer and why.

Imports: every layer below (core to access); never Streamlit (`lib.ui`) or the CLI.
"""

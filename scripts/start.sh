#!/usr/bin/env bash
# Set up (if needed) and start the app on http://localhost:8501 with the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py --server.port "${PORT:-8501}" "$@"

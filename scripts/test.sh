#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit, real-model, AppTest and browser tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k engine
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"

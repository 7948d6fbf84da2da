"""What the command line prints: every line cleaned for a terminal, JSON strict.

What it prints is text from outside the app too (model ids, notes of imported entries, a
model's generated text), so every line goes through `out` (stdout) or `say` (stderr), which
pass it through `lib.core.text.terminal`: nothing printed can move the cursor, clear the screen
or retitle the window. JSON output is strict: a number that is not finite (NaN, infinity) is
written as null, "no value", never as the `NaN` strict parsers reject.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from typing import Callable

from lib.core.text import terminal


def out(text: str) -> None:
    """Everything printed on stdout goes through here: cleaned for a terminal."""
    print(terminal(text))


def say(message: str) -> None:
    """Everything printed on stderr goes through here: cleaned for a terminal."""
    print(terminal(message), file=sys.stderr)


NOTICE_EVERY_S = 30.0          # a waiting notice that only counts up, on a non-terminal
_NUMBERS = re.compile(r"\d+(\.\d+)?")


def waiting(stream=None, clock: Callable[[], float] = time.monotonic) -> Callable[[str], None]:
    """`on_wait` for a command: every notice on a terminal; elsewhere (a log file, a pipe) a
    notice only when it says something new, not just a higher count, or every
    NOTICE_EVERY_S: a wait of minutes writes a few lines, not one a second."""
    stream = stream or sys.stderr
    if stream.isatty():
        return say
    last: dict[str, object] = {"words": None, "at": None}

    def notice(message: str) -> None:
        words, now = _NUMBERS.sub("#", message), clock()
        if words != last["words"] or last["at"] is None or now - last["at"] >= NOTICE_EVERY_S:
            print(terminal(message), file=stream, flush=True)
            last["words"], last["at"] = words, now
    return notice


def print_json(value) -> int:
    out(json.dumps(finite(value), indent=2, allow_nan=False))
    return 0


def finite(value):
    """`value` with every non-finite number as None: JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def quiet_transformers() -> None:
    """transformers' warnings and progress bars off, here and in every process started from here
    (workers, servers), through the environment variables transformers reads at import: the
    command itself need not import transformers (half a second) to quiet it."""
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

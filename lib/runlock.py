"""One measurement at a time on a machine.

Two runs that overlap share cores and memory bandwidth and corrupt each other's numbers. Every
measurement (and every model load, which is just as heavy) takes the machine-wide slot: an
exclusive `flock` on a file in the cache folder. flock locks belong to an open file, so the slot
excludes other browser sessions (threads of one Streamlit server) and other processes (the CLI)
alike, and the OS releases it if a holder dies. A caller that has to wait is told who holds the
slot through `on_wait`, then queues.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import Callable

from lib.paths import cache_dir

LOCK_NAME = "measurement.lock"


def _paths():
    root = cache_dir()
    return root / LOCK_NAME, root / (LOCK_NAME + ".holder.json")


def current_holder() -> dict | None:
    """What is running now, as written by the holder; None if nothing is (or it is unreadable)."""
    _, holder_path = _paths()
    try:
        return json.loads(holder_path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def measurement_slot(description: str, on_wait: Callable[[str], None] | None = None):
    lock_path, holder_path = _paths()
    with open(lock_path, "a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(_wait_message(current_holder()))
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            holder_path.write_text(json.dumps(
                {"description": description, "pid": os.getpid(), "started_at": time.time()}))
            yield
        finally:
            with contextlib.suppress(OSError):
                holder_path.unlink()
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _wait_message(holder: dict | None) -> str:
    what = "Another measurement"
    if holder:
        running_for = max(time.time() - holder.get("started_at", time.time()), 0)
        what = f"Another measurement ({holder.get('description', 'unknown')}, running for " \
               f"{running_for:.0f} s)"
    return (f"{what} is using this machine. Yours is queued and starts as soon as it finishes, "
            "so the two don't slow each other down and spoil both results.")

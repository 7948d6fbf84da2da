"""One measurement at a time on a machine.

Two runs that overlap share cores and memory bandwidth and corrupt each other's numbers. Every
measurement (and every model load, which is just as heavy) takes the machine-wide slot: an
exclusive `flock` on a file in the cache folder. flock locks belong to an open file, so the slot
excludes other browser sessions (threads of one Streamlit server) and other processes (the CLI)
alike, and the OS releases it if a holder dies. A caller that has to wait is told who holds the
slot through `on_wait`, again every `WAIT_UPDATE_S` while it waits (how long the other run has
been going and how long this one has waited: a notice that counts up), then runs.
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
WAIT_UPDATE_S = 1.0


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
        queued_at = time.time()
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is None:
                    fcntl.flock(lock_file, fcntl.LOCK_EX)
                    break
                on_wait(_wait_message(current_holder(), time.time() - queued_at))
                time.sleep(WAIT_UPDATE_S)
        try:
            holder_path.write_text(json.dumps(
                {"description": description, "pid": os.getpid(), "started_at": time.time()}))
            yield
        finally:
            with contextlib.suppress(OSError):
                holder_path.unlink()
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _wait_message(holder: dict | None, waited_s: float = 0.0) -> str:
    what = "Another measurement"
    if holder:
        running_for = max(time.time() - holder.get("started_at", time.time()), 0)
        what = f"Another measurement ({holder.get('description', 'unknown')}, running for " \
               f"{_duration(running_for)})"
    return (f"{what} is using this machine. Yours has been queued for {_duration(waited_s)} "
            "and starts as soon as it finishes, so the two don't slow each other down and "
            "spoil both results.")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"

"""Other programs on the CPU, on purpose: N CPU-bound processes for the length of a block, so a
benchmark can measure what the app does on a busy machine (a classroom PC, a laptop in a video
call) as well as a quiet one.

    with busy.processes(2):
        ...                      # two cores' worth of other programs

Each process is a Python loop at the default priority (nice 0, as a browser or a compile
would be), started with its own session so it is never left behind: the block's end, an
exception or Ctrl-C stops every one (SIGTERM, then SIGKILL after a second), this process's
exit (atexit) should the block never end, and each stops by itself once this process is gone
(killed without any cleanup). `processes(0)` is a quiet machine.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator

# Busy until its parent is gone: a parent killed outright (SIGKILL, a timeout's SIGTERM) runs no
# cleanup, so each process also checks, every few milliseconds, that it still has its parent.
# The parent's pid comes as an argument: one that died before the child started is seen too.
SPIN = ("import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n"
        "    for _ in range(100_000): pass")
STOP_WAIT_S = 1.0


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` CPU-bound processes running for the block; all stopped when it ends."""
    if count < 0:
        raise ValueError(f"a number of busy processes is 0 or more, not {count}")
    children: list[subprocess.Popen] = []
    stop = functools.partial(_stop, children)     # this block's own: blocks may nest
    atexit.register(stop)
    try:
        for _ in range(count):
            children.append(subprocess.Popen(
                [sys.executable, "-c", SPIN, str(os.getpid())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        yield children
    finally:
        stop()
        atexit.unregister(stop)

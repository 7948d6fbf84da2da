"""The progress panel every long piece of work shows, and the one error boundary.

`LiveProgress` is the panel of a run, a sweep, a load test or a measurement of this machine:
what happens now, a bar, and a clock line with the time spent and the time left, counted down
between updates. Every ExplorerError ends in `error_boundary`, which shows its message with
`st.error` and raises `Failed`: a failed run never takes the page down.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError

MEASURED_ETA = "from the repetitions measured so far"


class Failed(Exception):
    """Raised inside `error_boundary` once the error is shown; callers stop there."""


@contextlib.contextmanager
def error_boundary(on_error=None) -> Iterator[None]:
    """Show any ExplorerError as `st.error` (after `on_error()` tidies the page) and raise
    `Failed`, so the caller ends the run while the page keeps working."""
    try:
        yield
    except ExplorerError as exc:
        if on_error is not None:
            on_error()
        st.error(text.md(exc))               # lib's messages are plain text, and may quote input
        raise Failed from exc


class LiveProgress:
    """The progress panel of a run or a sweep, open while it works: what happens now (queued,
    loading, warm-up, measuring), a bar, repetition i of n, and a clock line with the time
    spent and the time left, revised from measured durations and counted down between updates.
    `tick()` is called a few times a second while the worker measures, so the clock moves, and
    a Stop press takes effect within a tick."""

    def __init__(self) -> None:
        self.slot = st.empty()               # the whole panel goes when the work is done
        box = self.slot.container(border=True)
        self.busy = box.empty()              # first: other programs slowing this work down
        self.headline = box.empty()
        self.bar = box.progress(0.0)
        self.clock = box.empty()
        self.queue = box.empty()
        self.started = time.monotonic()
        self.eta_s: float | None = None
        self.eta_at = self.started
        self.eta_basis = MEASURED_ETA

    def show(self, headline: str, fraction: float | None = None,
             eta_s: float | None = None, keep_eta: bool = False,
             eta_basis: str = MEASURED_ETA) -> None:
        self.headline.markdown(headline)
        if fraction is not None:
            self.bar.progress(min(max(fraction, 0.0), 1.0))
        if not keep_eta:
            self.eta_s, self.eta_at, self.eta_basis = eta_s, time.monotonic(), eta_basis
        self.tick()

    def queued(self, message: str) -> None:
        self.headline.markdown("**Queued**: waiting for the machine")
        self.queue.info(text.md(message))
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        line = f"Time so far: {_clock(now - self.started)}"
        if self.eta_s is not None:
            left = self.eta_s - (now - self.eta_at)
            line += (f" · about {_clock(left)} left ({self.eta_basis})"
                     if left >= 1 else " · should finish any moment")
        self.clock.caption(line)

    def done(self) -> None:
        self.slot.empty()


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"

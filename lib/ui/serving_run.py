"""Running a load sweep from the web app, with its progress shown and Stop honoured.

`lib.records.load_tests.measure_and_save` does the work, in a thread of its own: its load generator calls
back from many request threads, and Streamlit draws only from the page's script thread. The
script thread polls what the run last said (`LiveLoad`) a few times a second and draws it in the
usual progress panel (`lib.ui.progress.LiveProgress`). Stop, like any rerun, interrupts the script
thread at its next drawing call: it then sets the run's stop event, and the load generator
cancels what is in flight and ends with the levels measured so far, which are saved. The
next page run picks that outcome up (`stopped_load`), as Explore picks up a stopped sweep.
Pressed while the run still waits in the queue, Stop ends the wait: nothing runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError, StoppedError
from lib.records import load_tests
from lib.serving import session
from lib.serving.plan import LoadPlan
from lib.serving.sizing import Sizing
from lib.serving.measures import Slo
from lib.ui import classroom_view, progress, state

TICK_S = 0.25               # how often the page redraws the progress (and notices Stop)
STOP_WAIT_S = 60.0          # how long a page waits for a stopped run to wrap up and save


@dataclass
class LiveLoad:
    """What the run's thread last said, read by the page's script thread."""
    description: str
    words: str = "Starting…"
    fraction: float = 0.0
    queue_message: str | None = None
    started: bool = False          # past the queue: Stop now ends the run, keeping its levels
    outcome: load_tests.Outcome | None = None
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def say(self, words: str) -> None:
        self.started, self.queue_message, self.words = True, None, words

    def progress(self, words: str, fraction: float) -> None:
        self.started, self.queue_message = True, None
        self.words, self.fraction = words, fraction

    def waiting(self, message: str) -> None:
        """The queue's notice (or the history's, while saving). Stop pressed while queued ends
        the wait here: `measurement_slot` leaves the queue when its `on_wait` raises."""
        if self.stop.is_set() and not self.started:
            raise StoppedError("Stopped while waiting in the queue: nothing ran.")
        self.queue_message = message


def run_with_status(target: session.Target, plan: LoadPlan, slo: Slo | None,
                    sizing: Sizing | None = None) -> load_tests.Outcome | None:
    """The load sweep measured and saved, its progress shown; None (the reason on the page)
    when it could not run. A stopped run's outcome is shown by the next page run."""
    if target.kind == session.SIMULATE:
        return _simulated(target, plan, slo)
    levels = "sized to this computer" if sizing is not None and sizing.auto_levels \
        else ", ".join(f"{level:g}" for level in plan.levels)
    live = LiveLoad(f"load sweep ({levels} {plan.unit})")
    owner = classroom_view.current_owner()

    def work() -> None:
        try:
            live.outcome = load_tests.measure_and_save(
                target, plan, slo, say=live.say, on_progress=live.progress,
                on_wait=live.waiting, stop=live.stop, sizing=sizing, owner=owner)
        except BaseException as exc:   # noqa: BLE001 - handed to the page, which shows or raises it
            live.error = exc
        finally:
            live.ended.set()

    st.session_state[state.SERVING_LIVE] = live
    panel = progress.LiveProgress()
    panel.show(f"**Starting** the {text.md(live.description)}…", 0.0)
    thread = threading.Thread(target=work, name="serving-load", daemon=True)
    thread.start()
    try:
        shown = None
        while not live.ended.wait(TICK_S):
            now = (live.words, live.fraction, live.queue_message)
            if now != shown:
                shown = now
                if live.queue_message:
                    panel.queued(live.queue_message)
                else:
                    panel.queue.empty()
                    panel.show(f"**{'Measuring' if live.fraction else 'Preparing'}**: "
                               f"{text.md(live.words)}", live.fraction)
            else:
                panel.tick()
    except BaseException:
        # Stop (or leaving the page) interrupted the drawing: the run ends with what it has.
        live.stop.set()
        raise
    st.session_state.pop(state.SERVING_LIVE, None)
    panel.done()
    return _outcome(live)


def stopped_load() -> load_tests.Outcome | None:
    """A run interrupted by Stop (or by leaving the page): what it measured and saved, once
    it has wrapped up; None when there was none, or (with the reason shown) it kept nothing."""
    live: LiveLoad | None = st.session_state.pop(state.SERVING_LIVE, None)
    if live is None:
        return None
    live.stop.set()
    if not live.ended.is_set():
        with st.spinner("Stopping: cancelling the requests in flight and keeping the levels "
                        "measured so far…"):
            live.ended.wait(STOP_WAIT_S)
    if not live.ended.is_set():
        st.warning("The stopped load sweep is still wrapping up; it will be in History when it "
                   "has.")
        return None
    return _outcome(live)


def _outcome(live: LiveLoad) -> load_tests.Outcome | None:
    if live.error is None:
        return live.outcome
    if isinstance(live.error, StoppedError):
        st.warning(f"**Stopped.** {text.md(live.error)}")
        return None
    if isinstance(live.error, ExplorerError):
        try:
            with progress.error_boundary():
                raise live.error
        except progress.Failed:
            return None
    raise live.error                  # unexpected: the router's boundary logs it in full


def _simulated(target: session.Target, plan: LoadPlan,
               slo: Slo | None) -> load_tests.Outcome | None:
    """The simulation (a second or two, in this page run), saved like a load run. Fewer
    requests per level than `simulate.STEADY_REQUESTS` (the box is sized for live runs) are
    raised to it, and the page says so."""
    from dataclasses import replace

    from lib.serving import simulate

    if plan.requests < simulate.STEADY_REQUESTS:
        st.info(f"Simulated {simulate.STEADY_REQUESTS} requests per level, not "
                f"{plan.requests}: a simulation costs a fraction of a second, and with few "
                "requests a level ends before its queue can build, so it would hide the knee.")
        plan = replace(plan, requests=simulate.STEADY_REQUESTS)
    try:
        with st.spinner("Simulating…"):
            loaded = simulate.simulate(target.model_id, target.hardware, target.gpus, plan,
                                       slo, price_per_hour=target.price_per_hour)
    except ExplorerError as exc:
        st.error(text.md(exc))
        return None
    entry_id, error = load_tests.save(loaded, owner=classroom_view.current_owner())
    return load_tests.Outcome(loaded, entry_id, error, "")

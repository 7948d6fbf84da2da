"""The load generator: many requests at once, as a server's users send them.

Two shapes of load, as in vLLM's `bench serve`, AIPerf and GuideLLM:
- closed loop ("concurrency"): N users, each sending its next request as soon as its last one
  ended, so exactly N requests are in flight;
- open loop ("rate"): requests arrive on a schedule, whatever the server is doing: Poisson
  arrivals (independent users), gamma arrivals with a burstiness setting (vLLM's `--burstiness`:
  below 1 burstier than Poisson, above 1 more even), or a constant rate.

At each level the first requests are a warm-up (the server fills its batch, the queue builds up)
and are left out of the statistics, as are the cool-down requests sent after the measured ones
so that every measured request sees the full load to its end; cool-down requests are cancelled
once the last measured one ends. Each request's prompt is different (prefix caches can't skip
the work), with exactly the asked number of tokens by the model's tokenizer.

`run_load` returns raw `RequestRecord`s per level for a `LoadPlan` (`lib.serving.plan`);
`lib.serving.measures` derives everything.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from lib.core.errors import StoppedError
from lib.serving import records
from lib.serving.plan import CONCURRENCY, LoadPlan
from lib.serving.records import COOLDOWN, MEASURED, WARMUP, Endpoint, RequestRecord

MAX_IN_FLIGHT = 512          # open loop: beyond this many unanswered requests, stop sending more
LATE_S = 0.05                # a send this late against its schedule counts as late
PROGRESS_S = 0.25            # progress is said at least this often while requests run
JOIN_ON_ABORT_S = 5.0        # an aborted run waits this long for its cancelled requests

Send = Callable[..., RequestRecord]      # lib.serving.client.stream's signature


def intervals(plan: LoadPlan, rate: float, count: int) -> list[float]:
    """Gaps between arrivals, mean 1/rate, seeded so a rerun offers the same schedule."""
    rng = random.Random(f"{plan.seed}:{rate}")
    if plan.arrival == "constant":
        return [1.0 / rate] * count
    if plan.arrival == "gamma":
        shape = plan.burstiness
        return [rng.gammavariate(shape, 1.0 / (rate * shape)) for _ in range(count)]
    return [rng.expovariate(rate) for _ in range(count)]


@dataclass
class LevelRun:
    """One level's raw outcome: every request it sent, on the run's clock."""
    offered: float
    records: list[RequestRecord] = field(default_factory=list)
    late_sends: int = 0            # open loop: sends later than LATE_S against the schedule
    max_late_s: float = 0.0
    stopped: bool = False


class _Level:
    """Shared state of one level's sending threads."""

    def __init__(self, plan: LoadPlan, level: float, stop: threading.Event) -> None:
        self.warmup = plan.warmup_at(level)
        self.measured_end = self.warmup + plan.requests
        self.lock = threading.Lock()
        self.next_index = 0
        self.measured_done = 0
        self.in_flight = 0
        self.all_measured_done = threading.Event()
        self.cooldown_cancel = threading.Event()     # set when the last measured one ends
        self.stop = stop
        self.records: list[RequestRecord] = []
        self.total = plan.requests
        self.threads: list[threading.Thread] = []

    def start(self, thread: threading.Thread) -> None:
        self.threads.append(thread)
        thread.start()

    def take(self) -> tuple[int, str] | None:
        """The next request's index and phase, or None when nothing more is to be sent."""
        with self.lock:
            if self.all_measured_done.is_set() or self.stop.is_set():
                return None
            index = self.next_index
            if index >= 2 * self.measured_end + MAX_IN_FLIGHT:
                return None
            self.next_index += 1
            self.in_flight += 1
            phase = WARMUP if index < self.warmup else \
                MEASURED if index < self.measured_end else COOLDOWN
            return index, phase

    def done(self, record: RequestRecord) -> None:
        with self.lock:
            self.records.append(record)
            self.in_flight -= 1
            if record.phase == MEASURED:
                self.measured_done += 1
                if self.measured_done == self.total:
                    self.all_measured_done.set()
                    self.cooldown_cancel.set()

    def cancel_for(self, phase: str) -> threading.Event:
        return self.cooldown_cancel if phase == COOLDOWN else self.stop


def run_load(plan: LoadPlan, endpoint: Endpoint, send: Send,
             prompt_for: Callable[[int], str], count_tokens: Callable[[str], int] | None = None,
             on_progress: Callable[[str, float], None] | None = None,
             stop: threading.Event | None = None,
             clock: Callable[[], float] = time.perf_counter
             ) -> tuple[float, list[LevelRun], bool]:
    """Every level in order; returns the run's start on `clock`, each measured level's records,
    and whether Stop ended the run (the levels after it, and one it stopped before it measured
    anything, are not in the list).

    `send` is `lib.serving.client.stream` (a fake in tests); `prompt_for(i)` the i-th
    request's prompt, distinct for each request. `on_progress(words, fraction)` hears how many
    measured requests are done, always on the calling thread. Stop (`stop` set) cancels what is in flight and ends the run with
    the levels measured so far (the last one marked stopped)."""
    stop = stop or threading.Event()
    origin = clock()
    finished: list[LevelRun] = []
    counter = [0]                 # prompts are distinct across levels too

    def prompt() -> str:
        with counter_lock:
            counter[0] += 1
            return prompt_for(counter[0])
    counter_lock = threading.Lock()

    for number, level in enumerate(plan.levels):
        state = _Level(plan, level, stop)
        told = [-1]

        def request(index: int, phase: str) -> None:
            try:
                record = send(endpoint, prompt(), plan.new_tokens, index=index, phase=phase,
                              clock=clock, cancel=state.cancel_for(phase),
                              count_tokens=count_tokens)
            except Exception as exc:  # noqa: BLE001 - a sender's bug is one failed request
                now = clock()
                record = RequestRecord(index=index, phase=phase, sent_s=now, end_s=now,
                                       status=records.FAILED, asked_tokens=plan.new_tokens,
                                       reason=f"the load generator failed: {exc}")
            state.done(record)

        def tell() -> None:
            """Progress, said from the thread that called run_load (a page can only draw
            from its own script thread)."""
            measured = min(state.measured_done, plan.requests)
            if on_progress is not None and measured != told[0]:
                told[0] = measured
                on_progress(f"{_level_words(plan, level)}: {measured} of {plan.requests} "
                            "measured requests done",
                            (number + measured / plan.requests) / len(plan.levels))

        run = LevelRun(level)
        try:
            if plan.mode == CONCURRENCY:
                _closed_loop(state, int(level), request, tell)
            else:
                _open_loop(plan, state, level, request, run, clock, tell)
        except BaseException:
            # Anything that ends the caller (a page left mid-run, Ctrl-C) ends the requests
            # too: none keeps loading the server after the run is gone.
            stop.set()
            for thread in state.threads:
                thread.join(timeout=JOIN_ON_ABORT_S)
            raise
        run.records = sorted(state.records, key=lambda r: r.index)
        run.stopped = stop.is_set()
        finished.append(run)
        if stop.is_set():
            break
    last = finished[-1]
    if last.stopped and not any(r.phase == MEASURED and r.status != records.CANCELLED
                                for r in last.records):
        finished.pop()            # stopped before it measured anything: nothing to show of it
    if not finished:
        raise StoppedError("Stopped before any level was measured: nothing was kept.")
    return origin, finished, stop.is_set()


def _closed_loop(state: _Level, users: int, request: Callable[[int, str], None],
                 tell: Callable[[], None]) -> None:
    def user() -> None:
        while (taken := state.take()) is not None:
            request(*taken)
    for i in range(users):
        state.start(threading.Thread(target=user, name=f"load-user-{i}", daemon=True))
    _wait_all(state, tell)


def _open_loop(plan: LoadPlan, state: _Level, rate: float,
               request: Callable[[int, str], None], run: LevelRun,
               clock: Callable[[], float], tell: Callable[[], None]) -> None:
    gaps = iter(intervals(plan, rate, 2 * state.measured_end + MAX_IN_FLIGHT))
    due = clock()
    while not (state.all_measured_done.is_set() or state.stop.is_set()):
        now = clock()
        if due > now:
            # Wake early if the measured requests are done or Stop is pressed, and at least
            # every PROGRESS_S to say how far it got.
            state.all_measured_done.wait(min(due - now, PROGRESS_S))
            tell()
            continue
        late = now - due
        if state.in_flight >= MAX_IN_FLIGHT:
            # The server fell this far behind: sending more only grows the queue.
            state.all_measured_done.wait(PROGRESS_S)
            tell()
            continue
        taken = state.take()
        if taken is None:
            break
        if late > LATE_S:
            run.late_sends += 1
            run.max_late_s = max(run.max_late_s, late)
        state.start(threading.Thread(target=request, args=taken, name=f"load-{taken[0]}",
                                     daemon=True))
        due += next(gaps)
    _wait_all(state, tell)


def _wait_all(state: _Level, tell: Callable[[], None]) -> None:
    for thread in list(state.threads):
        while thread.is_alive():
            thread.join(PROGRESS_S)
            tell()
    tell()


def _level_words(plan: LoadPlan, level: float) -> str:
    return f"{level:g} concurrent" if plan.mode == CONCURRENCY else f"{level:g} requests/s"

"""Running from the web app: the server-wide model cache, one run and one sweep, shown live.

`model_cache()` is the one `st.cache_resource`: a `ModelCache` shared by every browser session,
so a model loads once. `run_with_status()` and `run_sweep_with_status()` go through
`lib.records.saving` (the same run-and-save path as the CLI: queue, memory check, loading,
measuring, saving to history) and show each stage in a `lib.ui.progress.LiveProgress` panel;
every ExplorerError ends in its `error_boundary`, so a failed run never takes the page down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import streamlit as st

from lib.measure import backends, budget, runner, sweep
from lib.measure.factors import FACTORS, Factor, grid
from lib.measure.sweep_points import PointResult, SweepProgress, SweepResult
from lib.records import saving
from lib.core import stats, text
from lib.core.errors import ExplorerError
from lib.measure.cache import ModelCache
from lib.core.results import Measurement
from lib.core.spec import RunSpec
from lib.core.stacks import format_name, stack_name
from lib.ui import classroom_view, state
from lib.ui.progress import MEASURED_ETA, Failed, LiveProgress, error_boundary

MODEL_CACHE_ENTRIES = 2            # models kept in memory at once (each can be GBs)
PLANNED_ETA = "estimated from this machine's speed right now"
BUSY_READING_S = 10.0              # how long a page reuses its reading of other programs' share
STOP_WAIT_S = 60.0                 # how long a page waits for a stopped sweep to wrap up


@st.cache_resource(show_spinner=False)
def model_cache() -> ModelCache:
    """The server-wide model cache: one per Streamlit process, shared by all sessions."""
    return ModelCache(max_entries=MODEL_CACHE_ENTRIES)


@dataclass(frozen=True)
class Result:
    measurement: Measurement
    summary: stats.Summary
    model_note: str          # how the model got ready, e.g. "loaded in 1.2 s" or "already in memory"
    saved_id: int | None = None
    save_problem: str | None = None


def stopped_notice() -> None:
    """After Stop: say what was stopped and what was kept (shown once, on the next rerun)."""
    live = st.session_state.pop(state.RUN_LIVE, None)
    if live:
        st.warning(f"**Stopped.** The run of {text.md(live)} was ended before it finished, so "
                   "none of it was kept or saved. The model stays loaded: press **Run** to measure "
                   "again.")


def run_with_status(spec: RunSpec) -> Result | None:
    """Run `spec`, showing each stage; None (with the reason on the page) if it could not run."""
    panel = LiveProgress()
    st.session_state[state.RUN_LIVE] = runner.describe(spec)

    def on_status(message: str) -> None:
        panel.queue.empty()
        phase = next((word for word in ("Measuring", "Estimating")
                      if message.startswith(f"{word}: ")), "Loading")
        panel.show(f"**{phase}**: {text.md(message.removeprefix(f'{phase}: '))}", keep_eta=True)

    def on_progress(stage: str, done: int, total: int, eta_s: float | None = None) -> None:
        panel.queue.empty()
        if stage == "warm-up":
            panel.show(f"**Warm-up** run {done + 1} of {total} (untimed: first-call costs "
                       "stay out of the numbers)", 0.0)
        elif stage == "measuring":
            panel.show(f"**Measuring**: timed repetition {done + 1} of {total}",
                       done / max(total, 1), eta_s)
        else:
            panel.show(f"**Done**: {done} repetitions timed", 1.0, 0.0)

    def failed() -> None:
        st.session_state.pop(state.RUN_LIVE, None)
        panel.done()

    def measured() -> None:
        st.session_state.pop(state.RUN_LIVE, None)
        panel.done()

    panel.show("**Starting**: checking the settings and the memory…", 0.0)
    notice = st.empty()                  # a history locked by another program: say we wait
    try:
        with error_boundary(failed):
            backend = backends.for_spec(spec)
            was_loaded = model_cache().holds(backend, spec.model_id, spec.device, spec.dtype)
            saved = saving.run_and_save(
                spec, cache=model_cache(), owner=classroom_view.current_owner(),
                on_status=on_status, on_progress=on_progress, on_wait=panel.queued,
                on_tick=panel.tick, on_measured=measured,
                on_save_wait=lambda message: notice.info(text.md(message)))
    except Failed:
        return None
    notice.empty()
    return Result(saved.measurement, saved.summary,
                  _model_note(saved.measurement, was_loaded), saved.entry_id, saved.problem)


def _model_note(measurement: Measurement, was_loaded: bool) -> str:
    if was_loaded:
        note = (f"Model was already in memory (its load took {measurement.load_s:.1f} s "
                "earlier); loading is never counted in a latency.")
    else:
        note = (f"Model loaded in {measurement.load_s:.1f} s ({measurement.load_source}); "
                "loading is never counted in a latency.")
    if measurement.spec.compile == "on" and measurement.warmup_s:
        note += (f" torch.compile: the first warm-up, which includes compiling, took "
                 f"{measurement.warmup_s[0]:.1f} s (not counted in any latency).")
    if measurement.quantize_s is not None:
        note += (f" Its Linear layers were quantized to int8 in {measurement.quantize_s:.1f} s "
                 "(also not counted); int8 answers drift slightly from float32's.")
    if measurement.build_s is not None and not was_loaded:
        note += (f" First use of {format_name(measurement.spec.dtype)} on "
                 f"{stack_name(measurement.spec.stack)}: its copy "
                 f"of the weights was built in {measurement.build_s:.1f} s and saved in the "
                 "cache folder, so later loads skip it (not counted in any latency either).")
    return note


def busy_now(spec: RunSpec):
    """How busy other programs keep the machine now (`lib.machine.activity.Load`, through the
    backend that would run `spec`), read at most every BUSY_READING_S per session: each
    reading waits half a second."""
    kept = st.session_state.get(state.BUSY_NOW)
    if kept is not None and time.monotonic() - kept[0] < BUSY_READING_S:
        return kept[1]
    try:
        value = backends.for_spec(spec).busy_now()
    except ExplorerError:
        value = None
    st.session_state[state.BUSY_NOW] = (time.monotonic(), value)
    return value


def sweep_plan(base: RunSpec, factor_values: list[tuple[Factor, list]],
               budget_s: float | None) -> budget.SweepPlan:
    """The time promise for this sweep on this machine now (models already loaded count no
    loading time)."""
    def loaded(spec: RunSpec) -> bool:
        try:
            return model_cache().holds(backends.for_spec(spec), spec.model_id, spec.device,
                                       spec.dtype)
        except ExplorerError:
            return False
    return sweep.make_plan(base, factor_values, budget_s, loaded=loaded,
                           busy_now=busy_now)


def busy_words(other_cpu_percent: float, threads: int, finished: bool = False,
               factor: float | None = None) -> str:
    """'Busy machine: other programs are using 60% of the CPU ...', the first reason given:
    before a sweep and while it runs, or (`finished`) above its findings. `factor`: the
    slowdown, when a plan knows it better (others' waiting threads)."""
    factor = factor or budget.slowdown(other_cpu_percent, threads)
    using, runs = ("used", "this sweep ran") if finished else ("are using", "this runs")
    line = (f"**Busy machine**: other programs {using} {other_cpu_percent:.0f}% of the CPU, "
            + (f"so {runs} about {factor:.1f}x slower than this machine can (an estimate)"
               if factor > 1.05 else "which can slow this down") + ". ")
    if finished:
        return line + ("Differences between points smaller than that may come from it, not "
                       "from the settings: measure again when the machine is quieter before "
                       "drawing conclusions.")
    return line + "Closing other programs makes it quicker and its numbers steadier."


def run_sweep_with_status(base: RunSpec,
                          factor_values: list[tuple[Factor, list]],
                          budget_s: float | None = None) -> SweepResult:
    """Run a sweep showing the round, the point, its repetitions and the time left: the plan's
    estimate at first (this machine's speed now, within `budget_s`), then measured.

    Finished points go into session state as they finish, so a Stop (which reruns the page and
    interrupts this one) keeps them: see `partial_sweep()`.
    """
    factors = [f.name for f, _ in factor_values]
    planned = len(grid(factor_values))
    notice = st.empty()                  # a history locked by another program: say we wait
    recorder = saving.SweepRecorder(base, factors, planned, owner=classroom_view.current_owner(),
                                    on_wait=lambda message: notice.info(text.md(message)))
    live = {"base": base, "planned": planned, "points": [], "factors": factors,
            "recorder": recorder, "ended": threading.Event()}
    st.session_state[state.SWEEP_LIVE] = live
    panel = LiveProgress()

    def on_point(point: PointResult) -> None:      # saved by now (`saving.sweep_and_save`)
        live["points"].append(point)
        share = (stats.point_noise(point.measurement, point.summary).other_cpu_percent
                 if point.summary is not None else None)
        if share is not None and share > stats.BUSY_OTHER_CPU_PERCENT:
            panel.busy.warning(busy_words(share, base.threads))

    def on_progress(event: SweepProgress) -> None:
        panel.queue.empty()
        where = text.md(", ".join(f"{FACTORS[name].label} {value}"
                                  for name, value in event.values.items()))
        counts = (f"{event.repetitions_done} of {event.repetitions_planned} repetitions, "
                  f"{event.points_loaded} of {event.total_points} points loaded, "
                  f"{event.finished_points} finished")
        if event.phase == "loading":
            headline = f"**Loading** {where} ({counts})"
        elif event.phase == "warm-up":
            headline = f"**Warm-up** of {where}: untimed ({counts})"
        elif event.phase == "measuring":
            extra = " (an extra round: the repetitions of some points disagree)" \
                if event.fraction >= 1 else ""
            headline = (f"**Measuring**, round {event.round} (each round times every point "
                        f"once, in turn){extra}: {where}, repetition {event.repetition} of at "
                        f"least {event.minimum_repetitions} ({counts})")
        else:
            headline = f"**Done**: {event.total_points} points"
        panel.show(headline, event.fraction, event.eta_s,
                   eta_basis=MEASURED_ETA if event.eta_measured else PLANNED_ETA)

    plan = sweep_plan(base, factor_values, budget_s)
    if plan.other_cpu_percent is not None and \
            plan.other_cpu_percent > stats.BUSY_OTHER_CPU_PERCENT:
        panel.busy.warning(busy_words(plan.other_cpu_percent, base.threads,
                                      factor=plan.slowdown))
    panel.show(f"**Starting** a sweep of {planned} points: {text.md(plan.promise())}…", 0.0,
               plan.estimated_s, eta_basis=PLANNED_ETA)
    result = saving.sweep_and_save(
        base, factor_values, model_cache(), plan, recorder, on_progress=on_progress,
        on_point=on_point,
        on_status=lambda message: panel.show(f"**Loading**: {text.md(message)}", keep_eta=True),
        on_wait=panel.queued, on_tick=panel.tick, on_end=live["ended"].set)
    panel.done()
    notice.empty()
    st.session_state.pop(state.SWEEP_LIVE, None)
    return result


def partial_sweep() -> SweepResult | None:
    """A sweep interrupted by Stop (or any rerun): the points it finished, marked stopped.

    Streamlit starts the new page run while the interrupted one is still keeping what its
    points measured (asking each worker for it), so wait for that to end first."""
    live = st.session_state.pop(state.SWEEP_LIVE, None)
    if live:
        live["ended"].wait(timeout=STOP_WAIT_S)
    if not live or not live["points"]:
        return None
    waiting = st.empty()                 # this page run's, not the stopped one's
    live["recorder"].store.on_wait = lambda message: waiting.info(text.md(message))
    live["recorder"].finish(stopped=True)
    result = SweepResult(live["base"], live["factors"],
                               points=sorted(live["points"], key=lambda p: p.index),
                               stopped=True, planned=live["planned"])
    result.saved = (live["recorder"].entry_id, live["recorder"].problem)
    return result


def estimate_beside(measurement: Measurement, summary: stats.Summary):
    """The estimate for a live run's settings on this machine, compared with it (`lib.estimate.gap`);
    None for an estimate, or when this machine has no estimate for it."""
    from lib.estimate import estimator, gap
    from lib.estimate.hardware import THIS

    if not measurement.measured:
        return None
    try:
        predicted = estimator.estimate(measurement.spec, THIS)
    except ExplorerError:
        return None
    return gap.compare(measurement, summary, predicted)

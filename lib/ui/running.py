"""Running from the web app: the server-wide model cache, one run, one sweep, one error boundary.

`model_cache()` is the one `st.cache_resource`: a `ModelCache` shared by every browser session,
so a model loads once. `run_with_status()` and `run_sweep_with_status()` go through
`lib.runner` (queue, memory check, loading, measuring), show each stage, and save to history
through `lib.history`. Every ExplorerError ends in `error_boundary`, which shows its message
with `st.error`: a failed run never takes the page down.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import streamlit as st

from lib import backends, history, runner, stats, sweep
from lib.errors import ExplorerError
from lib.models.cache import ModelCache
from lib.results import Measurement
from lib.spec import RunSpec
from lib.ui import state

MODEL_CACHE_ENTRIES = 2            # models kept in memory at once (each can be GBs)


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
        st.error(str(exc))
        raise Failed from exc


def run_with_status(spec: RunSpec) -> Result | None:
    """Run `spec`, showing each stage; None (with the reason on the page) if it could not run."""
    queue_notice = st.empty()
    status = st.status("Starting…", expanded=True)
    progress = status.progress(0.0)

    def on_wait(message: str) -> None:
        status.update(label="Waiting in the queue…", state="running")
        queue_notice.info(message)

    def on_status(message: str) -> None:
        status.update(label=message)
        status.write(message)

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "warm-up":
            progress.progress(0.0, text=f"Warm-up run {done + 1} of {total} (not timed)")
        elif stage == "measuring":
            fraction = min(done / max(total, 1), 1.0)
            progress.progress(fraction, text=f"Timed repetition {done + 1} (at least {total})")
        else:
            progress.progress(1.0, text=f"Done: {done} repetitions timed")

    def failed() -> None:
        queue_notice.empty()
        status.update(label="The run could not start", state="error", expanded=False)

    try:
        with error_boundary(failed):
            backend = backends.for_model(spec.model_id)
            was_loaded = model_cache().holds(backend, spec.model_id, spec.device, spec.dtype)
            measurement = runner.run(spec, cache=model_cache(), on_status=on_status,
                                     on_progress=on_progress, on_wait=on_wait)
    except Failed:
        return None
    queue_notice.empty()
    status.update(label=f"Measured {len(measurement.repetitions)} repetitions", state="complete",
                  expanded=False)
    summary = stats.summarize(measurement)
    saved_id, problem = history.save_run(measurement, summary)
    return Result(measurement, summary, _model_note(measurement, was_loaded), saved_id, problem)


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
    return note


def run_sweep_with_status(base: RunSpec,
                          factor_values: list[tuple[sweep.Factor, list]]) -> sweep.SweepResult:
    """Run a sweep showing which point runs, its repetitions and the time left.

    Finished points go into session state as they finish, so a Stop (which reruns the page and
    interrupts this one) keeps them: see `partial_sweep()`.
    """
    factors = [f.name for f, _ in factor_values]
    recorder = history.SweepRecorder(base, factors, len(sweep.grid(factor_values)))
    live = {"base": base, "planned": 0, "points": [], "factors": factors, "recorder": recorder}
    st.session_state[state.SWEEP_LIVE] = live

    def on_point(point: sweep.PointResult) -> None:
        live["points"].append(point)
        recorder.add(point)
    progress = st.progress(0.0, text="Starting the sweep…")
    notice = st.empty()

    def on_progress(done: int, total: int, values: dict, eta_s: float | None) -> None:
        live["planned"] = total
        if done >= total:
            progress.progress(1.0, text=f"Done: {total} points")
            return
        where = ", ".join(f"{sweep.FACTORS[name].label} {value}" for name, value in values.items())
        eta = f"; about {eta_s:.0f} s left" if eta_s is not None else ""
        progress.progress(done / total, text=f"Point {done + 1} of {total}: {where} (at least "
                          f"{base.repetitions} repetitions after a warm-up){eta}")

    def run_point(spec: RunSpec) -> Measurement:
        measurement = runner.run(spec, cache=model_cache(), on_wait=notice.info)
        notice.empty()
        return measurement

    result = sweep.run_sweep(base, factor_values, run_point, on_progress=on_progress,
                             on_point=on_point)
    recorder.finish(result.stopped)
    st.session_state.pop(state.SWEEP_LIVE, None)
    result.saved = (recorder.entry_id, recorder.problem)
    return result


def partial_sweep() -> sweep.SweepResult | None:
    """A sweep interrupted by Stop (or any rerun): the points it finished, marked stopped."""
    live = st.session_state.pop(state.SWEEP_LIVE, None)
    if not live or not live["points"]:
        return None
    live["recorder"].finish(stopped=True)
    result = sweep.SweepResult(live["base"], live["factors"], points=live["points"],
                               stopped=True, planned=live["planned"])
    result.saved = (live["recorder"].entry_id, live["recorder"].problem)
    return result

"""The measuring loop, the same for every backend: RunSpec + loaded model -> Measurement.

How a run is timed (DESIGN.md's timing rules); the backend's `Session` makes each call have the
same shapes (exact prompt length, fixed output length) and returns raw clock readings:
1. The spec is checked against the model, and memory for the run against what is free now.
2. `warmup_runs` untimed calls with those exact shapes come first (their times are kept, since
   the first one holds one-off costs such as compiling).
3. Timed repetitions follow, each inside a peak-memory tracker, until both `repetitions` and
   `min_duration_s` are reached (and never more than MAX_REPETITIONS).
The Measurement keeps every raw timestamp and says which backend produced it; `lib.stats`
derives all metrics from them. Model loading happens before and is timed on its own.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from lib import memory
from lib.backends.base import Backend
from lib.environment import capture_environment
from lib.errors import InvalidSpecError
from lib.models.cache import LoadedModel
from lib.results import Measurement, Provenance, Repetition
from lib.spec import RunSpec
from lib.timing import Clock

MAX_REPETITIONS = 1000     # hard stop for `min_duration_s` with very fast runs

Progress = Callable[[str, int, int], None]   # (stage, done, total)


def measure(backend: Backend, loaded: LoadedModel, spec: RunSpec, clock: Clock | None = None,
            on_progress: Progress | None = None) -> Measurement:
    """Time `spec` on a model `backend` has loaded."""
    report = on_progress or (lambda stage, done, total: None)
    check_matches(loaded, spec)
    backend.check(loaded.entry, spec)
    need = backend.run_need(spec, weights_loaded=True)
    memory.guard(need, spec.device, f"batch {spec.batch_size} x {spec.total_tokens} tokens")
    clock = clock or backend.clock(spec.device)
    session = backend.session(loaded, spec)

    warmup_s = []
    for index in range(session.warmup_runs):
        report("warm-up", index, session.warmup_runs)
        timing = session.run(clock, timed=False)
        warmup_s.append(_finished_at(timing) - timing.start_s)

    repetitions: list[Repetition] = []
    measured_s = 0.0
    method = ""
    while _keep_going(len(repetitions), measured_s, spec):
        report("measuring", len(repetitions), spec.repetitions)
        tracker = memory.track_peak(spec.device) if backend.measures_memory \
            else contextlib.nullcontext(memory.PeakMemory())
        with tracker as peak:
            timing = session.run(clock, timed=True)
        method = peak.method or "declared by the backend"
        repetitions.append(Repetition(
            timing.start_s, timing.token_times_s,
            peak.peak_bytes if backend.measures_memory else timing.peak_memory_bytes,
            peak.start_bytes, end_s=timing.end_s))
        measured_s += _finished_at(timing) - timing.start_s
    report("done", len(repetitions), len(repetitions))

    return Measurement(
        spec=spec, environment=capture_environment(spec.device, spec.threads),
        repetitions=tuple(repetitions), warmup_s=tuple(warmup_s),
        prompt_note=session.prompt_note, used_chat_template=session.used_chat_template,
        generated_text=session.output_text(),
        provenance=Provenance(backend.name, backend.provenance, backend.versions()),
        load_s=loaded.load_s, load_source=loaded.source, memory_method=method,
        kv_cache_bytes_estimate=need.kv_cache_bytes or None, quantize_s=loaded.quantize_s,
        model_kind=loaded.entry.kind, weights=loaded.entry.weights)


def check_matches(loaded: LoadedModel, spec: RunSpec) -> None:
    """The spec must ask for the model that is loaded."""
    if (spec.model_id, spec.device, spec.dtype) != (loaded.model_id, loaded.device, loaded.dtype):
        raise InvalidSpecError(
            f"The loaded model is {loaded.model_id} on {loaded.device} in {loaded.dtype}, but the "
            f"run asks for {spec.model_id} on {spec.device} in {spec.dtype}: load that first.")


def _finished_at(timing) -> float:
    return timing.token_times_s[-1] if timing.token_times_s else timing.end_s


def _keep_going(done: int, measured_s: float, spec: RunSpec) -> bool:
    if done >= MAX_REPETITIONS:
        return False
    return done < spec.repetitions or measured_s < spec.min_duration_s

"""The measuring loop, the same for every backend: RunSpec + loaded model -> Measurement.

How a run is timed (the timing rules of docs/MEASURING.md); the backend's `Session` makes each call have the
same shapes (exact prompt length, fixed output length) and returns raw clock readings:
1. The spec is checked against the model, and memory for the run against what is free now.
2. `warmup_runs` untimed calls with those exact shapes come first (their times are kept, since
   the first one holds one-off costs such as compiling).
3. Timed repetitions follow, each inside a peak-memory tracker and a reading of what the rest of
   the machine did meanwhile (other processes' CPU share, load average), until both
   `repetitions` and `min_duration_s` are reached (and never more than MAX_REPETITIONS).
The Measurement keeps every raw timestamp and says which backend produced it; `lib.core.stats`
derives all metrics from them. Model loading happens before and is timed on its own.

`Measurer` holds one spec's state between calls, so a sweep can visit its points in interleaved
rounds (`lib.measure.sweep`): warm up once, then one repetition per visit. `measure` runs one spec
start to end. Both check `should_stop` between calls and hand it to the session, which may stop
between tokens (`lib.core.errors.StoppedError`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

from lib.machine import peak_memory
from lib.measure.backends.base import Backend
from lib.machine.environment import capture_environment
from lib.core.errors import InvalidSpecError, stop_if_asked
from lib.models.loaded import LoadedModel
from lib.core.results import Measurement, Provenance, Repetition
from lib.core.spec import RunSpec
from lib.core.timing import Clock

MAX_REPETITIONS = 1000     # hard stop for `min_duration_s` with very fast runs

# (stage, done, total, eta_s): stage is "warm-up", "measuring" or "done"; total is the number of
# calls planned now (repetitions: revised from the pace when the minimum time asks for more);
# eta_s is the time still needed, from the durations measured so far (None before the first).
Progress = Callable[..., None]
ShouldStop = Callable[[], bool]


class Measurer:
    """One spec on one loaded model: warm-ups, then timed repetitions one call at a time."""

    def __init__(self, backend: Backend, loaded: LoadedModel, spec: RunSpec,
                 clock: Clock | None = None, should_stop: ShouldStop | None = None) -> None:
        check_matches(loaded, spec)
        backend.check(loaded.entry, spec)
        self.need = backend.guard_memory(spec, weights_loaded=True).need
        self.backend, self.loaded, self.spec = backend, loaded, spec
        self.clock = clock or backend.clock(spec.device)
        self.should_stop = should_stop or (lambda: False)
        self.session = backend.session(loaded, spec)
        self.session.should_stop = self.should_stop
        self.warmup_s: list[float] = []
        self.repetitions: list[Repetition] = []
        self.measured_s = 0.0
        self.method = ""
        self._quality = None

    def warm_up(self, report: Progress | None = None) -> None:
        for index in range(self.session.warmup_runs):
            if report:
                report("warm-up", index, self.session.warmup_runs, None)
            self._check_stop()
            timing = self.session.run(self.clock, timed=False)
            self.warmup_s.append(_finished_at(timing) - timing.start_s)

    def repeat(self) -> Repetition:
        """One timed repetition, with its peak memory and the machine's load meanwhile."""
        self._check_stop()
        backend = self.backend
        tracker = peak_memory.track_peak(self.spec.device) if backend.measures_memory \
            else contextlib.nullcontext(peak_memory.PeakMemory())
        with backend.machine_load() as load, tracker as peak:
            timing = self.session.run(self.clock, timed=True)
        self.method = peak.method or "declared by the backend"
        repetition = Repetition(
            timing.start_s, timing.token_times_s,
            peak.peak_bytes if backend.measures_memory else timing.peak_memory_bytes,
            peak.start_bytes, end_s=timing.end_s, kv_cache_bytes=timing.kv_cache_bytes,
            other_cpu_percent=load.other_cpu_percent, load_average=load.load_average)
        self.repetitions.append(repetition)
        self.measured_s += _finished_at(timing) - timing.start_s
        return repetition

    @property
    def satisfied(self) -> bool:
        """Both the repetition count and the minimum measuring time are reached."""
        return not _keep_going(len(self.repetitions), self.measured_s, self.spec)

    def remaining(self) -> tuple[int, float | None]:
        """Repetitions still needed to satisfy the spec (the count, or the minimum time at the
        pace measured so far) and the time they will take (None before the first one)."""
        done = len(self.repetitions)
        by_count = max(self.spec.repetitions - done, 0)
        if not done:
            return by_count, None
        per_repetition = self.measured_s / done
        by_time = math.ceil(max(self.spec.min_duration_s - self.measured_s, 0) / per_repetition) \
            if per_repetition > 0 else 0
        count = max(by_count, min(by_time, MAX_REPETITIONS - done))
        return count, count * per_repetition

    def measurement(self) -> Measurement:
        loaded, backend, session = self.loaded, self.backend, self.session
        return Measurement(
            spec=self.spec, environment=capture_environment(self.spec.device, self.spec.threads),
            repetitions=tuple(self.repetitions), warmup_s=tuple(self.warmup_s),
            prompt_note=session.prompt_note, used_chat_template=session.used_chat_template,
            generated_text=session.output_text(),
            provenance=Provenance(backend.name, backend.provenance, backend.versions()),
            load_s=loaded.load_s, load_source=loaded.source, memory_method=self.method,
            kv_cache_bytes_estimate=self.need.kv_cache_bytes or None, quantize_s=loaded.quantize_s,
            build_s=loaded.build_s, model_kind=loaded.entry.kind, weights=loaded.entry.weights,
            weights_bytes=loaded.weights_bytes,
            memory_estimate_bytes=backend.run_need(self.spec, weights_loaded=False).total_bytes,
            quality=self.quality(), speculative=self.speculative())

    def speculative(self):
        """How speculative decoding went, if the spec asked for it (its session says)."""
        report = getattr(self.session, "speculative_report", None)
        return report() if report is not None and self.spec.speculative != "none" else None

    def quality(self):
        """What the settings cost in quality, measured now, after the timed calls (once)."""
        if self.spec.quality != "on":
            return None
        if self._quality is None:
            from lib.measure import quality
            self._check_stop()
            self._quality = quality.measure(self.backend, self.session, self.loaded, self.spec)
        return self._quality

    def _check_stop(self) -> None:
        stop_if_asked(self.should_stop)


def measure(backend: Backend, loaded: LoadedModel, spec: RunSpec, clock: Clock | None = None,
            on_progress: Progress | None = None,
            should_stop: ShouldStop | None = None) -> Measurement:
    """Time `spec` on a model `backend` has loaded, start to end."""
    report = on_progress or (lambda *event: None)
    measurer = Measurer(backend, loaded, spec, clock, should_stop)
    measurer.warm_up(report)
    while not measurer.satisfied:
        # "repetition 3 of 7": the total grows past `repetitions` when the minimum time needs it
        left, eta_s = measurer.remaining()
        done = len(measurer.repetitions)
        report("measuring", done, done + max(left, 1), eta_s)
        measurer.repeat()
    done = len(measurer.repetitions)
    report("done", done, done, 0.0)
    return measurer.measurement()


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

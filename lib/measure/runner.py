"""The whole of one run (or one sweep's points), as the CLI and the web app both do it.

Order matters: cheap checks first (settings, model kind, device, dtype, context length), then the
machine-wide slot (`lib.machine.runlock`: measurements only; an estimate runs nothing, so it never
waits for the slot), then memory (the load and the run, checked against free memory
before a single weight is allocated), then the model (taken from the cache or loaded in its
worker process, timed on its own), then the measurement, inside the worker. The backend is the
one that runs the model by default, or the estimator for a spec naming a hardware profile
(`lib.measure.backends.for_spec`). A caller passes its `ModelCache`
(the web app's is server-wide) and callbacks to show waiting, loading and progress; `on_tick`
is called a few times a second while the worker measures (a page's live clock, and the moment
Streamlit's Stop takes effect).

`SweepPoints` measures a sweep's points for `lib.measure.sweep`, which visits them in interleaved rounds:
it takes the slot when the first measured point starts and holds it to the end of the sweep (a
sweep of estimates alone never takes it), and pins the models of the points being measured.

While a run holds the slot, the people queued behind it see how long it may take: an estimate
from its settings first (`rough_duration_s`), then the engine's or the sweep's own estimate
from the repetitions measured so far (`Slot.update`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from lib.measure import backends
from lib.core.errors import ExplorerError
from lib.measure.quality import EVALUATION_TOKENS
from lib.measure.cache import ModelCache
from lib.models.catalog import CatalogEntry, get_entry
from lib.core.kinds import ENCODER
from lib.core.results import MEASURED, Measurement, Repetition
from lib.machine.runlock import Slot, measurement_slot
from lib.core.spec import RunSpec, check_threads
from lib.core.stacks import weights_words
from lib.measure.worker import ModelHandle

Say = Callable[[str], None]

# How long a run will hold the machine, before any of it is measured: only for the notice of
# those queued behind it, which calls it an estimate, and replaced by the engine's estimate from
# measured repetitions after the first one. Deliberately simple: loading, then per call a
# prefill at FLOPS_PER_S and one step per output token that reads every weight at
# WEIGHT_BYTES_PER_S (decode is memory-bound), or at least STEP_FLOOR_S (launch overheads).
# Numbers of the order measured on the machines in docs/MEASURING.md, not of any one machine.
ASSUMED_LOAD_S = 15.0                  # a worker process starting and reading the weights
ASSUMED_COMPILE_S = 60.0               # torch.compile's first warm-up on a CPU
DEVICE_SPEED = {                       # (FLOPS_PER_S, WEIGHT_BYTES_PER_S, STEP_FLOOR_S)
    "cpu": (50e9, 10e9, 0.005),
    "cuda": (100e12, 2e12, 0.015),
    "mps": (5e12, 100e9, 0.010),
}


@dataclass(frozen=True)
class ResolvedRun:
    """A spec with what it names looked up once, near the top, and passed down: its catalog
    entry and the backend that produces its result (checked against it)."""
    spec: RunSpec
    entry: CatalogEntry
    backend: backends.Backend


def resolve(spec: RunSpec) -> ResolvedRun:
    """Checks that need no model (threads, model kind, device, dtype, context): the spec with
    its catalog entry and backend."""
    check_threads(spec.threads)
    entry = get_entry(spec.model_id)
    backend = backends.for_spec(spec, entry)
    backend.check(entry, spec)
    return ResolvedRun(spec, entry, backend)


def preflight(spec: RunSpec) -> backends.Backend:
    """Checks that need no model; returns the backend that will run it."""
    return resolve(spec).backend


def describe(spec: RunSpec) -> str:
    """'gpt2 on cpu in float32, batch 1, ...'; another stack is named: 'in Q4_K_M with
    llama.cpp'; an estimate is on its hardware profile: 'gpt2 on h100-sxm x 8 in ...'."""
    where = spec.device if spec.hardware is None else f"{spec.hardware} x {spec.gpus}"
    return (f"{spec.model_id} on {where} in {weights_words(spec.stack, spec.dtype)}, "
            f"batch {spec.batch_size}, {spec.prompt_tokens} prompt + {spec.new_tokens} output "
            "tokens")


def memory_verdict(spec: RunSpec, cache: ModelCache, backend: backends.Backend | None = None):
    """The one memory verdict for `spec` with this cache: the model card shows it, `prepare`
    enforces it. A model the cache holds needs no room for its weights; otherwise the cache
    may drop the models nobody is using to make room (`releasable_bytes`). `backend`: the
    spec's, when the caller resolved it already."""
    backend = backend or backends.for_spec(spec)
    held = cache.holds(backend, spec.model_id, spec.device, spec.dtype)
    return backend.assess_memory(spec, weights_loaded=held,
                                 releasable_bytes=0 if held else cache.releasable_bytes(spec.device))


def prepare(spec: RunSpec, cache: ModelCache, on_status: Say | None = None,
            on_tick: Callable[[], None] | None = None,
            resolved: ResolvedRun | None = None) -> ModelHandle:
    """Checks (unless `resolved` did them), memory (refused before any weight is loaded), then
    the model from the cache (loaded in a worker if needed, `on_tick` called meanwhile): call
    inside the slot."""
    backend = (resolved or resolve(spec)).backend
    memory_verdict(spec, cache, backend).enforce()
    if not cache.holds(backend, spec.model_id, spec.device, spec.dtype):
        cache.make_room(backend, spec.model_id, spec.device, spec.dtype)
    return cache.get(backend, spec.model_id, spec.device, spec.dtype, on_status, on_tick=on_tick)


def rough_duration_s(spec: RunSpec, weights_loaded: bool = False,
                     entry: CatalogEntry | None = None) -> float | None:
    """A guess of how long `spec` holds the machine (see ASSUMED_LOAD_S); None if its shapes
    can't be known without loading it. `entry`: the spec's, when the caller has it."""
    from lib.models.shapes import shapes

    if spec.hardware is not None:
        return 0.0                     # an estimate is computed in a moment: nothing runs
    try:
        shape = shapes(spec.model_id)
        encoder = (entry or get_entry(spec.model_id)).kind == ENCODER
    except ExplorerError:
        return None
    flops, weight_bytes_per_s, step_floor_s = DEVICE_SPEED.get(spec.device, DEVICE_SPEED["cpu"])
    active = shape.active_parameters or shape.parameters
    prefill_s = 2 * active * spec.batch_size * spec.prompt_tokens / flops
    step_s = max(shape.weight_bytes(spec.dtype) / weight_bytes_per_s,
                 2 * active * spec.batch_size / flops, step_floor_s)
    call_s = prefill_s + (0 if encoder else spec.new_tokens * step_s)
    # Quality: teacher-forced passes over the evaluation text, as many tokens as a long prefill.
    quality_s = 2 * active * EVALUATION_TOKENS / flops \
        if spec.quality == "on" and not encoder else 0.0
    return ((0.0 if weights_loaded else ASSUMED_LOAD_S)
            + (ASSUMED_COMPILE_S if spec.compile == "on" else 0.0)
            + spec.warmup_runs * call_s + max(spec.repetitions * call_s, spec.min_duration_s)
            + quality_s)


def run(spec: RunSpec, cache: ModelCache | None = None, on_status: Say | None = None,
        on_progress: Callable[..., None] | None = None, on_wait: Say | None = None,
        on_tick: Callable[[], None] | None = None) -> Measurement:
    resolved = resolve(spec)             # looked up once here, passed down from here on
    backend = resolved.backend
    own_cache = cache is None
    cache = cache if cache is not None else ModelCache(max_entries=1)
    held = cache.holds(backend, spec.model_id, spec.device, spec.dtype)
    measured = backend.provenance == MEASURED
    # A run that can't fit is refused first, from the model's shapes alone: before the
    # ceilings are measured (torch, seconds) or the queue is joined; `prepare` checks again
    # in the slot, where the memory free may have changed.
    memory_verdict(spec, cache, backend).enforce()
    if measured:
        measure_ceilings((spec.device,), on_status, on_wait)
    try:
        with _slot_for(measured, describe(spec), on_wait,
                       rough_duration_s(spec, weights_loaded=held, entry=resolved.entry)) as slot:
            handle = prepare(spec, cache, on_status, on_tick, resolved)
            if on_status:
                on_status(f"{'Measuring' if measured else 'Estimating'}: {describe(spec)}…")
            measurement = handle.measure(spec, on_progress=_telling(slot, resolved, on_progress),
                                         on_tick=on_tick)
            return with_ceilings(measurement)
    finally:
        if own_cache:
            cache.close()


def _slot_for(measured: bool, description: str, on_wait: Say | None,
              estimate_s: float | None):
    """The measurement slot for a measurement; nothing for an estimate: it loads and times
    nothing, so it can't disturb a run or be disturbed by one, and must not queue behind a
    long one (the ceilings of `this`, if never measured, were measured in `preflight`)."""
    if not measured:
        return contextlib.nullcontext(None)
    return measurement_slot(description, on_wait=on_wait, estimate_s=estimate_s)


def measure_ceilings(devices: tuple[str, ...], on_status: Say | None = None,
                     on_wait: Say | None = None) -> None:
    """Before a run takes the slot: this machine's ceilings on `devices`, measured once per
    machine (a few seconds, in the slot of their own) and kept, so every run's floor can be
    drawn (`with_ceilings`). A device whose ceilings can't be measured goes without floors."""
    from lib.machine import ceilings

    def progress(what: str, fraction: float) -> None:
        if on_status is not None:
            on_status(f"Measuring this machine's ceilings, once: {what}")
    for device in devices:
        try:
            ceilings.machine_ceilings(device, on_progress=progress, on_wait=on_wait)
        except ExplorerError:
            continue


def with_ceilings(measurement: Measurement) -> Measurement:
    """The measurement with its device's ceilings (as measured before, `measure_ceilings`)
    in its environment, so its floors (`lib.estimate.floors`) can be drawn wherever it is opened, on
    any machine. Estimates, and devices never measured, go without."""
    from lib.machine import ceilings

    found = ceilings.cached(measurement.spec.device)
    if measurement.provenance.kind != MEASURED or found is None:
        return measurement
    return dataclasses.replace(
        measurement, environment={**measurement.environment, "ceilings": found.to_dict()})


def _telling(slot: Slot | None, resolved: ResolvedRun, on_progress: Callable[..., None] | None):
    """Progress that also keeps the queue's estimate true: from the settings once the model
    is loaded, then the engine's own from measured repetitions."""
    def progress(stage: str, done: int, total: int, eta_s: float | None = None) -> None:
        if slot is not None:
            if stage == "warm-up" and done == 0:
                slot.update(rough_duration_s(resolved.spec, weights_loaded=True,
                                             entry=resolved.entry), source="settings")
            slot.update(eta_s)
        if on_progress is not None:
            on_progress(stage, done, total, eta_s)
    return progress


class SweepPoints:
    """Sweep points through the cache, for `lib.measure.sweep.run_sweep`: use as a context manager.
    The first point to be measured (not estimated) takes the measurement slot, after this
    machine's ceilings, and it is held to the end of the sweep, so rounds are not interleaved
    with other people's runs; estimated points never wait for it. `run_sweep` tells it its
    progress (`progress`), so the queue's estimate follows the sweep's."""

    def __init__(self, cache: ModelCache, description: str, on_status: Say | None = None,
                 on_wait: Say | None = None, on_tick: Callable[[], None] | None = None) -> None:
        self.cache, self.description = cache, description
        self.on_status, self.on_wait, self.on_tick = on_status, on_wait, on_tick
        self._handles: dict[RunSpec, ModelHandle] = {}
        self._pins: Counter = Counter()
        self._slot = None
        self._held: Slot | None = None
        self._point_s: float | None = None       # a point's rough duration, model loaded
        self._measured = False

    def __enter__(self) -> "SweepPoints":
        return self

    def __exit__(self, *exc) -> None:
        for spec in list(self._handles):
            self.forget(spec)
        if self._slot is not None:
            self._slot.__exit__(*exc)

    def _take_slot(self) -> None:
        """Before the first measured point: the ceilings (their own slot, once per machine),
        then the slot for the rest of the sweep."""
        from lib.machine.devices import available_devices
        if self._slot is not None:
            return
        measure_ceilings(tuple(available_devices()), self.on_status, self.on_wait)
        slot = measurement_slot(self.description, on_wait=self.on_wait)
        self._held = slot.__enter__()
        self._slot = slot

    def progress(self, event) -> None:
        """A `lib.measure.sweep_points.SweepProgress`: its time left (measured) goes to the queue; until
        there is one, the points left times the last point's rough duration."""
        if self._held is None:
            return
        if event.eta_s is not None:
            self._measured = True
            self._held.update(event.eta_s)
        elif not self._measured and self._point_s is not None:
            left = event.total_points - event.finished_points
            self._held.update(ASSUMED_LOAD_S + left * self._point_s, source="settings")

    def start(self, spec: RunSpec, on_progress: Callable[..., None] | None = None) -> None:
        """Check and load (keeping the other points' models), then warm up."""
        resolved = resolve(spec)
        if resolved.backend.provenance == MEASURED:
            self._take_slot()
        self._point_s = rough_duration_s(spec, weights_loaded=True, entry=resolved.entry)
        handle = prepare(spec, self.cache, self.on_status, self.on_tick, resolved)
        self._pin(handle)
        self._handles[spec] = handle
        try:
            handle.start(spec, on_progress, on_tick=self.on_tick)
        except BaseException:
            self.forget(spec)
            raise

    def repeat(self, spec: RunSpec) -> Repetition:
        return self._handles[spec].repeat(spec, on_tick=self.on_tick)

    def finish(self, spec: RunSpec) -> Measurement:
        try:
            return with_ceilings(self._handles[spec].finish(spec))
        finally:
            self.forget(spec, told=True)

    def forget(self, spec: RunSpec, told: bool = False) -> None:
        handle = self._handles.pop(spec, None)
        if handle is None:
            return
        if not told and handle.alive:
            handle.forget(spec)
        self._pins[handle.key] -= 1
        if self._pins[handle.key] <= 0:
            del self._pins[handle.key]
            self.cache.unpin(handle.key)

    def _pin(self, handle: ModelHandle) -> None:
        if not self._pins[handle.key]:
            self.cache.pin(handle.key)
        self._pins[handle.key] += 1

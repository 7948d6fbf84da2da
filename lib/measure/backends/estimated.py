"""Estimates through the seam: a Backend whose numbers come from `lib.estimate.estimator`, not a clock.

A spec with `hardware` set (a profile id, `this` included) runs here (`lib.measure.backends.for_spec`):
nothing is loaded and nothing is timed. The session's one call returns the estimate as a
Timing (the first token at TTFT, each later one a TPOT after it; an encoder's pass ends at its
e2e time) with the estimated peak memory per device, so an estimate flows through the engine,
the history and the exports like a run, marked `estimated` (Provenance.kind) everywhere. Its
spec asks for one repetition and no warm-up (RunSpec sets them for any spec with hardware), so
no percentile is ever derived from it. Its memory verdict is the estimate's: against the
profile's memory, not this machine's, refusing a model that needs more devices than asked for.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from lib.estimate import device_memory, estimator
from lib.measure.backends.base import Backend, Progress, Session, Timing
from lib.core.errors import UnsupportedError
from lib.estimate.memory import MemoryEstimate, MemoryVerdict
from lib.models.loaded import LoadedModel
from lib.models.catalog import CatalogEntry, get_entry
from lib.core.kinds import CAUSAL_LM, ENCODER
from lib.core.results import ESTIMATED
from lib.core.spec import DTYPES, RunSpec
from lib.core.timing import Clock, ManualClock


@dataclasses.dataclass(frozen=True)
class EstimatedMemoryVerdict(MemoryVerdict):
    """A verdict against the hardware profile's memory, in the estimate's own sentence."""
    sentence: str = ""
    fits_profile: bool = True
    min_gpus: int | None = 1          # the fewest devices of the profile that hold it

    @property
    def fits(self) -> bool:
        return self.fits_profile

    @property
    def message(self) -> str:
        return self.sentence


class EstimatorBackend(Backend):
    name = "estimator"
    label = "estimator (a model of the hardware: nothing is measured)"
    provenance = ESTIMATED
    kinds = (CAUSAL_LM, ENCODER)
    stack = None                # it models every stack's formats by their bytes per weight
    dtypes = DTYPES
    measures_memory = False
    isolate = False
    holds_weights = False
    techniques = ("prune", "exit_layer", "speculative")   # lib.estimate.techniques models them

    def check(self, entry: CatalogEntry, spec: RunSpec) -> None:
        if spec.hardware is None:
            raise UnsupportedError("An estimate needs a hardware profile: set hardware (e.g. "
                                   "--hardware h200; `python -m lib hardware` lists them).")
        super().check(entry, spec)
        estimator.check(spec, spec.hardware, spec.gpus)

    def check_device(self, device: str, dtype: str) -> None:
        pass                    # the profile is the device; this machine's devices don't matter

    def load_need(self, model_id: str, dtype: str) -> MemoryEstimate:
        return MemoryEstimate(0, 0, 0, 0)          # nothing is loaded here

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> MemoryEstimate:
        """What each device of the profile would hold (weights always: they'd be there)."""
        return _per_device_need(_estimate(spec))

    def assess_memory(self, spec: RunSpec, weights_loaded: bool,
                      releasable_bytes: int = 0) -> MemoryVerdict:
        result = _estimate(spec)
        usable = int((1 - device_memory.MEMORY_HEADROOM_FRACTION) * result.hardware.memory_bytes)
        return EstimatedMemoryVerdict(
            need=_per_device_need(result), free_bytes=usable,
            device=f"each {result.hardware.name}",
            what=f"{result.spec.model_id} on {result.gpus} x {result.hardware.name}",
            sentence=result.app_verdict, fits_profile=result.fits, min_gpus=result.min_gpus)

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        entry = get_entry(model_id)
        return LoadedModel(backend=self.name, entry=entry, model=None, tokenizer=None,
                           device=device, dtype=dtype, load_s=0.0,
                           source="nothing loaded: estimated from the model's shapes",
                           loaded_at=time.time())

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return EstimateSession(_estimate(spec), loaded.entry.kind)

    def clock(self, device: str) -> Clock:
        return ManualClock()

    def machine_load(self):
        import contextlib

        from lib.machine.activity import Load
        return contextlib.nullcontext(Load())      # nothing runs, so nothing to disturb it

    def versions(self) -> dict[str, str]:
        return {"estimator": "1"}


class EstimateSession(Session):
    """One call: the estimate's times as clock readings (see the module)."""
    warmup_runs = 0

    def __init__(self, estimate: estimator.Estimate, kind: str) -> None:
        self.estimate, self.kind = estimate, kind
        self.prompt_note = (f"Estimated for {estimate.gpus} x {estimate.hardware.name}: "
                            "nothing was run, so no prompt was read.")

    def run(self, clock: Clock, timed: bool) -> Timing:
        summary, spec = self.estimate.summary, self.estimate.spec
        start_s = clock.now()
        peak = int(summary["peak_memory_bytes"])
        kv = int(_per_device_need(self.estimate).kv_cache_bytes)
        if self.kind == ENCODER:
            return Timing(start_s, end_s=start_s + summary["e2e_s"], peak_memory_bytes=peak)
        tpot = summary.get("tpot_s", 0.0)
        times = tuple(start_s + summary["ttft_s"] + index * tpot
                      for index in range(spec.new_tokens))
        return Timing(start_s, times, peak_memory_bytes=peak, kv_cache_bytes=kv)

    def output_text(self) -> str:
        return "(An estimate writes no text: nothing was run.)"


@functools.lru_cache(maxsize=256)
def _estimate(spec: RunSpec) -> estimator.Estimate:
    """One estimate per spec (the checks, the memory verdict and the session all ask)."""
    return estimator.estimate(spec, spec.hardware, spec.gpus)


def _per_device_need(result: estimator.Estimate) -> MemoryEstimate:
    need, gpus = result.memory_need, result.gpus
    return MemoryEstimate(int(need.weights_bytes / gpus), int(need.kv_cache_bytes / gpus),
                          int(need.working_bytes), 0)


BACKEND = EstimatorBackend()

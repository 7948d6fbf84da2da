"""The whole of one run, as the CLI and the web app both do it.

Order matters: cheap checks first (settings, model kind, device, dtype, context length), then the
machine-wide slot (`lib.runlock`), then memory (the load and the run, checked against free memory
before a single weight is allocated), then the model (taken from the cache or loaded, timed on its
own), then the measurement. The backend is the one that runs the model by default
(`lib.backends.for_model`). A caller passes its `ModelCache` (the web app's is server-wide) and
callbacks to show waiting, loading and progress.
"""

from __future__ import annotations

from typing import Callable

from lib import backends, engine
from lib.errors import RunFailedError
from lib.models.cache import ModelCache
from lib.models.catalog import get_entry
from lib.results import Measurement
from lib.runlock import measurement_slot
from lib.spec import RunSpec


def preflight(spec: RunSpec) -> backends.Backend:
    """Checks that need no model; returns the backend that will run it."""
    entry = get_entry(spec.model_id)
    backend = backends.for_entry(entry)
    backend.check(entry, spec)
    return backend


def describe(spec: RunSpec) -> str:
    return (f"{spec.model_id} on {spec.device} in {spec.dtype}, batch {spec.batch_size}, "
            f"{spec.prompt_tokens} prompt + {spec.new_tokens} output tokens")


def run(spec: RunSpec, cache: ModelCache | None = None,
        on_status: Callable[[str], None] | None = None,
        on_progress: engine.Progress | None = None,
        on_wait: Callable[[str], None] | None = None) -> Measurement:
    backend = preflight(spec)
    cache = cache if cache is not None else ModelCache(max_entries=1)
    with measurement_slot(describe(spec), on_wait=on_wait):
        held = cache.holds(backend, spec.model_id, spec.device, spec.dtype)
        if not held:
            cache.make_room(backend, spec.model_id, spec.device, spec.dtype)
        backend.guard_memory(spec, weights_loaded=held)
        loaded = cache.get(backend, spec.model_id, spec.device, spec.dtype, on_status)
        if on_status:
            on_status(f"Measuring: {describe(spec)}…")
        try:
            return engine.measure(backend, loaded, spec, on_progress=on_progress)
        except (RuntimeError, MemoryError) as exc:
            # PyTorch reports out-of-memory and kernel failures as RuntimeError; the model and
            # the app are still fine, only this run is lost.
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RunFailedError(
                f"The run failed inside PyTorch ({type(exc).__name__}: {first_line}). Nothing "
                "else was affected: try a smaller batch, a shorter prompt or another dtype, "
                "and run again.") from exc

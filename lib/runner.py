"""The whole of one run, as the CLI and the web app both do it.

Order matters: cheap checks first (settings, device, dtype, context length), then the machine-wide
slot (`lib.runlock`), then the model (loaded or taken from a cache, timed on its own), then the
measurement. A caller passes `get_model` to supply its own cache (the web app's
`st.cache_resource`) and callbacks to show waiting, loading and progress.
"""

from __future__ import annotations

from typing import Callable

from lib import devices, engine, models
from lib.errors import RunFailedError
from lib.runlock import measurement_slot
from lib.spec import RunSpec

ModelGetter = Callable[..., "models.LoadedModel"]


def preflight(spec: RunSpec) -> None:
    """Checks that need no model: device present, dtype supported, prompt fits the context."""
    devices.check_supported(spec.device, spec.dtype)
    models.check_context(models.get_entry(spec.model_id), spec)


def describe(spec: RunSpec) -> str:
    return (f"{spec.model_id} on {spec.device} in {spec.dtype}, batch {spec.batch_size}, "
            f"{spec.prompt_tokens} prompt + {spec.new_tokens} output tokens")


def run(spec: RunSpec, get_model: ModelGetter = models.load,
        on_status: Callable[[str], None] | None = None,
        on_progress: engine.Progress | None = None,
        on_wait: Callable[[str], None] | None = None) -> engine.Measurement:
    preflight(spec)
    with measurement_slot(describe(spec), on_wait=on_wait):
        loaded = get_model(spec.model_id, spec.device, spec.dtype, on_status)
        if on_status:
            on_status(f"Measuring: {describe(spec)}…")
        try:
            return engine.measure(loaded, spec, on_progress=on_progress)
        except (RuntimeError, MemoryError) as exc:
            # PyTorch reports out-of-memory and kernel failures as RuntimeError; the model and
            # the app are still fine, only this run is lost.
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise RunFailedError(
                f"The run failed inside PyTorch ({type(exc).__name__}: {first_line}). Nothing "
                "else was affected: try a smaller batch, a shorter prompt or another dtype, "
                "and run again.") from exc

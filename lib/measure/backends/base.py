"""The seam: what every way of producing a result provides, and nothing more.

A `Backend` says what it supports (model kinds, devices, dtypes, the RunSpec factors it honours)
and whether its numbers are measured or estimated; it states its memory need before loading,
loads a model (timed, the move to the device included), and prepares a `Session` for one spec.
A `Session` runs one call with the spec's fixed shapes and returns its raw clock readings
(`Timing`); it knows nothing of warm-ups, repetitions, statistics or memory tracking, which the
backend-neutral loop in `lib.measure.engine` owns. Like hyperfine's `Executor`, a backend can be swapped
for a fake one (`lib.measure.backends.fake`), so the loop is tested with exact numbers.

Subclasses set the class attributes and implement `load` and `session`; the defaults below fit
any backend that runs a torch model on this machine.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lib.core.errors import UnsupportedError
from lib.models.catalog import CatalogEntry, get_entry
from lib.core.kinds import CAUSAL_LM
from lib.core.results import MEASURED
from lib.core.spec import DEVICES, RunSpec, field_info
from lib.core.stacks import (STACK_SETTINGS, STACKS, TRANSFORMERS, check_format, get_stack,
                             weights_words)
from lib.core.timing import Clock, DeviceClock

if TYPE_CHECKING:
    from lib.estimate.memory import MemoryEstimate, MemoryVerdict
    from lib.models.loaded import LoadedModel

Progress = Callable[[str], None]
TECHNIQUES = ("prune", "exit_layer", "speculative")   # RunSpec fields that change how it runs


@dataclass(frozen=True)
class Timing:
    """One call's raw clock readings, in seconds on the run's clock."""
    start_s: float
    token_times_s: tuple[float, ...] = ()     # when each generated token reached the host
    end_s: float | None = None                # one-pass models: when the pass finished
    peak_memory_bytes: int | None = None      # only from backends that don't measure_memory
    kv_cache_bytes: int | None = None         # the KV cache the call ended with, if it has one


class Session(ABC):
    """One spec prepared on one loaded model: every call has the same inputs and shapes."""
    prompt_note: str | None = None            # what was done to the prompt, in plain words
    used_chat_template: bool = False
    warmup_runs: int = 1                      # untimed calls before the first timed one
    # Set by the engine: True once the person pressed Stop. A session that can stop between
    # tokens calls lib.core.errors.stop_if_asked(self.should_stop); the engine checks between calls.
    should_stop: Callable[[], bool] = staticmethod(lambda: False)

    @abstractmethod
    def run(self, clock: Clock, timed: bool) -> Timing:
        """One call. `timed`: record per-token times (warm-ups skip the recording).

        A generating model writes exactly `spec.new_tokens` tokens per call, never stopping at
        an end-of-sequence token (as `generate` does with `min_new_tokens`), so every call has
        the same shape and backends compare fairly.
        """

    @abstractmethod
    def output_text(self) -> str:
        """What the last call wrote, for people (or why it is not shown)."""

    def next_token_scores(self, windows: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        """Teacher-forced over each window of token ids, from this stack's own runtime: per
        position, the most likely next token and the negative log-likelihood of the window's
        actual next token (`lib.measure.quality`). A stack that can't report logits says so."""
        raise UnsupportedError("This software stack does not report the model's next-token "
                               "scores, so its quality can't be measured here.")


def numpy_scores(logits: "Any", window: list[int]) -> tuple[list[int], list[float]]:
    """`Session.next_token_scores` of one window from its logits (a numpy array, one row per
    position but the last): each row's most likely token, and the negative log-likelihood of
    the window's next token (a log-softmax, the row's maximum taken out first)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_total = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    following = np.asarray(window[1:len(logits) + 1])
    nll = log_total - logits[np.arange(len(logits)), following]
    return logits.argmax(axis=1).tolist(), nll.tolist()


class Backend(ABC):
    name: str = ""                            # stable id, saved with every result
    label: str = ""                           # for people
    provenance: str = MEASURED                # or ESTIMATED
    kinds: tuple[str, ...] = (CAUSAL_LM,)     # model kinds it can run
    default_for: tuple[str, ...] = ()         # model kinds it runs unless told otherwise
    devices: tuple[str, ...] = DEVICES
    # The software stack it is (lib.core.stacks): its formats are the dtypes it runs, and it must be
    # installed. None: not a stack of its own (the estimator, a fake, a remote server).
    stack: str | None = TRANSFORMERS
    dtypes: tuple[str, ...] = STACKS[TRANSFORMERS].dtypes
    factors: tuple[str, ...] = STACK_SETTINGS  # the software-stack settings it honours
    techniques: tuple[str, ...] = ()         # pruning / early exit it can apply (RunSpec fields)
    measures_memory: bool = True              # the engine tracks peak memory around each call
    isolate: bool = True                      # run its models in worker processes (lib.measure.worker)
    holds_weights: bool = True                # its loaded models take memory (not an estimate)
    load_words: str = "loading"               # what loading takes, in a refusal's words

    # --- before loading -------------------------------------------------------------------

    def check(self, entry: CatalogEntry, spec: RunSpec) -> None:
        """Cheap checks that need no model: kind, device, dtype, stack settings, context."""
        if self.provenance == MEASURED:
            entry.check_live()
        if entry.kind not in self.kinds:
            raise UnsupportedError(f"{self.label} can't run {entry.display_name} (a "
                                   f"{entry.kind} model).")
        if self.stack is not None:
            get_stack(self.stack).require()
            check_format(self.stack, spec.dtype)
        if spec.device not in self.devices or spec.dtype not in self.dtypes:
            raise UnsupportedError(
                f"{self.label} runs on {', '.join(self.devices)} in {', '.join(self.dtypes)}; "
                f"choose one of those instead of {spec.device} / {spec.dtype}.")
        for name in STACK_SETTINGS:
            default = field_info(name)["default"]
            if name not in self.factors and getattr(spec, name) != default:
                label = field_info(name)["label"]
                raise UnsupportedError(
                    f"{entry.display_name} can't use {label} = {getattr(spec, name)!r}: the way "
                    f"it runs here ({self.label}) has no such setting. Set {label} back to "
                    f"{default!r} (Software stack, in the sidebar).")
        for name in TECHNIQUES:
            if getattr(spec, name) != field_info(name)["default"] and \
                    name not in self.techniques:
                label = field_info(name)["label"]
                if self.provenance != MEASURED:
                    raise UnsupportedError(
                        f"Estimates don't model {label.lower()} yet: set it back to "
                        f"{field_info(name)['default'] or 'empty'} to estimate, or measure it "
                        "on this machine.")
                raise UnsupportedError(
                    f"{label} works on a torch model of the transformers stack; "
                    f"{self.label} can't apply it. Choose the transformers stack, or set "
                    f"{label} back to {field_info(name)['default'] or 'empty'}.")
        if self.techniques and (spec.prune is not None or spec.exit_layer is not None):
            from lib.core.techniques import kept_layers
            from lib.models.shapes import shapes
            kept_layers(shapes(spec.model_id).layers, spec)      # refuses before loading
        self.check_device(spec.device, spec.dtype)
        entry.check_context(spec.prompt_tokens, spec.new_tokens)

    def check_model(self, entry: CatalogEntry) -> None:
        """UnsupportedError unless it can run `entry` at all (in some format, on some device):
        what the catalog says of which stacks run a model."""
        if entry.kind not in self.kinds:
            raise UnsupportedError(f"{self.label} can't run {entry.display_name} (a "
                                   f"{entry.kind} model).")

    def check_device(self, device: str, dtype: str) -> None:
        from lib.machine import devices
        devices.check_supported(device, dtype)

    def load_need(self, model_id: str, dtype: str) -> "MemoryEstimate":
        """Memory to load the weights (the most held at once while loading)."""
        from lib.estimate import memory
        from lib.models.shapes import shapes
        return memory.estimate(shapes(model_id), dtype, 1, 0, 0)

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> "MemoryEstimate":
        """Memory for the whole run: weights unless loaded, KV cache, working memory."""
        from lib.estimate import memory
        from lib.models.shapes import shapes
        new_tokens = spec.new_tokens if get_entry(spec.model_id).kind == CAUSAL_LM else 0
        from lib.measure.techniques import copies_weights
        static = spec.kv_cache == "static" or spec.compile == "on"    # compiling uses it too
        # A pruned copy holds weights of its own beside the shared model's: counted again.
        return memory.estimate(shapes(spec.model_id), spec.dtype, spec.batch_size,
                               spec.prompt_tokens, new_tokens,
                               weights_loaded=weights_loaded and not copies_weights(spec),
                               attention=spec.attention,
                               kv_cache="static" if static else "dynamic", stack=spec.stack)

    def assess_memory(self, spec: RunSpec, weights_loaded: bool,
                      releasable_bytes: int = 0) -> "MemoryVerdict":
        """The one memory verdict for `spec`: the model card shows it, the guard enforces it.

        `weights_loaded`: the model is in the cache already. `releasable_bytes`: what the cache
        would free by dropping other models first (`ModelCache` computes it). When it does not
        fit, the advice names only changes from these settings that would make it fit.
        """
        from lib.estimate import memory

        entry = get_entry(spec.model_id)
        verdict = memory.assess(
            self.run_need(spec, weights_loaded), spec.device,
            f"batch {spec.batch_size} x {spec.total_tokens} tokens of {entry.display_name} in "
            f"{weights_words(self.stack, spec.dtype)}", releasable_bytes=releasable_bytes,
            weights_loaded=weights_loaded)
        if verdict.fits:
            return verdict
        if not weights_loaded and \
                self.load_need(spec.model_id, spec.dtype).total_bytes > verdict.available_bytes:
            advice = self.load_advice(spec.model_id, spec.dtype, spec.device,
                                      verdict.available_bytes)
        else:
            advice = self.run_advice(spec, weights_loaded, verdict.available_bytes)
        return dataclasses.replace(verdict, advice=advice)

    def guard_memory(self, spec: RunSpec, weights_loaded: bool,
                     releasable_bytes: int = 0) -> "MemoryVerdict":
        """Refuse, before anything is allocated, a load or a run that would not fit."""
        return self.assess_memory(spec, weights_loaded, releasable_bytes).enforce()

    def guard_load(self, model_id: str, device: str, dtype: str,
                   releasable_bytes: int = 0) -> "MemoryVerdict":
        """Refuse loading weights that alone would not fit (the run is checked by
        `guard_memory`, which includes them)."""
        from lib.estimate import memory

        verdict = memory.assess(self.load_need(model_id, dtype), device,
                                f"{self.load_words} {get_entry(model_id).display_name} in "
                                f"{weights_words(self.stack, dtype)}",
                                releasable_bytes=releasable_bytes)
        if not verdict.fits:
            verdict = dataclasses.replace(verdict, advice=self.load_advice(
                model_id, dtype, device, verdict.available_bytes))
        return verdict.enforce()

    def load_advice(self, model_id: str, dtype: str, device: str, available_bytes: int) -> str:
        """What to try when the weights alone don't fit in `available_bytes`."""
        from lib.estimate.memory import load_advice
        return load_advice(model_id, dtype, device, available_bytes)

    def run_advice(self, spec: RunSpec, weights_loaded: bool, available_bytes: int) -> str:
        """What to change when the run (not the weights alone) doesn't fit."""
        from lib.estimate import memory
        return memory.run_advice(spec, self.run_need, available_bytes, weights_loaded,
                                 self._offered_dtypes(spec.device),
                                 can_switch_attention="attention" in self.factors)

    def _offered_dtypes(self, device: str) -> tuple[str, ...]:
        from lib.machine import devices
        return tuple(d for d in devices.supported_dtypes(device) if d in self.dtypes)

    # --- loading and running --------------------------------------------------------------

    @abstractmethod
    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> "LoadedModel":
        """Load the model, timed (`load_s`) up to it being ready on the device."""

    @abstractmethod
    def session(self, loaded: "LoadedModel", spec: RunSpec) -> Session:
        """Prepare `spec` on `loaded`: inputs built once, settings applied."""

    def clock(self, device: str) -> Clock:
        return DeviceClock(device)

    def machine_load(self):
        """A context manager yielding what the rest of the machine did during a call
        (`lib.machine.activity.watch`); a fake declares it instead."""
        from lib.machine import activity
        return activity.watch()

    def busy_now(self):
        """How busy other programs keep the machine right now (`lib.machine.activity.busy_now`),
        read for a moment before a sweep to promise its time; a fake declares it instead."""
        from lib.machine import activity
        return activity.busy_now()

    def versions(self) -> dict[str, str]:
        """Library versions that produced the numbers, saved with every result."""
        return {}

    # --- quality (lib.measure.quality) ----------------------------------------------------

    def reference_scores(self, entry: CatalogEntry,
                         windows: list[list[int]]) -> tuple[list[int], list[float]]:
        """The reference model's scores over `windows` (kept, else computed and kept)."""
        from lib.measure import quality
        return quality.reference_scores(entry, windows)

    def keep_reference(self, model_id: str, windows: list[list[int]],
                       scores: tuple[list[int], list[float]]) -> None:
        """A reference run's own scores, kept for the runs compared with it."""
        from lib.measure import quality
        quality.keep_reference(model_id, windows, scores)


class NativeStackBackend(Backend):
    """An optional native engine of `lib.core.stacks` (llama.cpp, ONNX Runtime): causal LMs on the
    CPU, in its stack's own formats, with none of transformers' settings. A subclass sets
    `stack`; its name, label and formats are that stack's."""
    kinds = (CAUSAL_LM,)
    default_for = ()
    devices = ("cpu",)
    factors = ()                       # no attention kernel, static cache or torch.compile

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        stack = get_stack(cls.stack)
        cls.name, cls.label, cls.dtypes = stack.backend, stack.label, stack.dtypes

    def check(self, entry: CatalogEntry, spec: RunSpec) -> None:
        super().check(entry, spec)
        self.check_model(entry)

    def check_device(self, device: str, dtype: str) -> None:
        # Its formats are not torch dtypes: no torch probe, only the device.
        if device not in self.devices:
            raise UnsupportedError(f"{self.label} runs on the CPU here, not {device}: choose "
                                   "cpu, or the transformers stack for the GPU.")

    def versions(self) -> dict[str, str]:
        return get_stack(self.stack).versions()


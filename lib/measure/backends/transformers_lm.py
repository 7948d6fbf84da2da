"""transformers `generate` on a causal language model: the app's reference way to run a model.

Each call builds nothing: the prompt is fitted once to exactly `prompt_tokens` tokens (in the
chat template when the model has one) and the output fixed (`min_new_tokens == max_new_tokens`,
greedy), so every call has the same shapes. A timed call reads the clock (which waits for the
device) just before `generate`, then a tiny streamer records the clock each time a generated
token reaches the host: the first reading is the first token (TTFT, prefill included), the gaps
between the rest are the inter-token latencies. `benchmarks/timing_overhead.py` checks that
recording them costs under 2% against plain `generate`.
The software stack (attention kernel, static KV cache, torch.compile) is applied per session on
the shared model; compiling happens in the untimed warm-ups (two of them, since the second call
may recompile).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from lib.measure import speculative
from lib.measure.backends.base import Backend, Progress, Session, Timing
from lib.core.errors import ExplorerError, UnsupportedError, stop_if_asked
from lib.models.loaded import LoadedModel
from lib.models.catalog import RANDOM, get_entry
from lib.core.kinds import CAUSAL_LM
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec
from lib.core.timing import Clock

if TYPE_CHECKING:
    from lib.estimate.memory import MemoryEstimate


class TokenTimestamps:
    """A `generate` streamer that only reads the clock (transformers' BaseStreamer protocol).

    `put` is called once with the prompt, then once per generation step with that step's tokens.
    Untimed (`record=False`, warm-ups) it reads no clock. Either way it ends the call between two
    tokens once `should_stop()` says so: Stop takes effect within one decode step.
    """

    def __init__(self, clock: Clock, record: bool = True,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.clock, self.record, self.should_stop = clock, record, should_stop
        self.times_s: list[float] = []
        self.steps = 0                 # generation steps (speculative: several tokens each)
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.steps += 1
        # One token per sequence per step; speculative decoding hands over (1, n) accepted
        # tokens at once: they all reached the host now, one clock reading each.
        tokens = value.shape[-1] if getattr(value, "dim", lambda: 1)() == 2 else 1
        if self.record:
            now = self.clock.now()
            self.times_s.extend([now] * tokens)
        stop_if_asked(self.should_stop)

    def end(self) -> None:
        pass


class TransformersBackend(Backend):
    name = "transformers"
    label = "transformers (generate)"
    kinds = (CAUSAL_LM,)
    default_for = (CAUSAL_LM,)
    techniques = ("prune", "exit_layer", "speculative")

    def check(self, entry, spec: RunSpec) -> None:
        super().check(entry, spec)
        if spec.speculative == "none":
            return
        if spec.batch_size != 1:
            raise UnsupportedError("Speculative decoding in transformers runs one request at a "
                                   "time: set the batch size to 1.")
        if spec.kv_cache == "static" or spec.compile == "on":
            raise UnsupportedError("Speculative decoding rewinds the KV cache after each check, "
                                   "which a static cache or torch.compile can't: set KV cache "
                                   "to dynamic and torch.compile off.")
        if spec.speculative == "draft":
            speculative.draft_entry(spec.model_id)          # refuses before anything loads

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> "MemoryEstimate":
        """The base need, and a draft model's weights (loaded beside the model)."""
        need = super().run_need(spec, weights_loaded)
        if spec.speculative != "draft":
            return need
        from lib.models.shapes import shapes
        draft = shapes(speculative.draft_entry(spec.model_id).model_id)
        return dataclasses.replace(need, weights_bytes=need.weights_bytes
                                   + draft.load_peak_bytes(spec.dtype))

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        from lib.models import loading

        self.check_device(device, dtype)
        self.guard_load(model_id, device, dtype)
        return loading.load(get_entry(model_id), device, dtype, self.name, on_progress)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        import torch

        torch.set_num_threads(spec.threads)
        set_attention(loaded.model, spec.attention)
        return GenerateSession(loaded, spec)

    def versions(self) -> dict[str, str]:
        import torch
        import transformers
        return {"torch": torch.__version__, "transformers": transformers.__version__}


class GenerateSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        import torch

        from lib.measure import techniques

        self.loaded, self.spec = loaded, spec
        self.model = techniques.variant(loaded.model, spec, loaded.tokenizer)   # pruned, exiting
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text,
                            spec.prompt_kind)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        input_ids = torch.tensor([prompt.token_ids] * spec.batch_size, device=spec.device)
        self.kwargs = generate_arguments(spec, input_ids, loaded.tokenizer)
        self.plain_kwargs = dict(self.kwargs)
        draft = speculative.draft_entry(spec.model_id).model_id \
            if spec.speculative == "draft" else None
        self.speculation = speculative.Speculation(spec.speculative, draft) \
            if spec.speculative != "none" else None
        if self.speculation is not None:
            self.kwargs.update(speculative.arguments(self.model, spec))
        # Compiling happens in the first call and may recompile in the second: warm up twice.
        self.warmup_runs = max(spec.warmup_runs, 2) if spec.compile == "on" else spec.warmup_runs
        self.output = None

    def run(self, clock: Clock, timed: bool) -> Timing:
        import torch

        streamer = TokenTimestamps(clock, record=timed, should_stop=self.should_stop)
        counting = self.speculation.counting(self.model, timed) if self.speculation \
            else contextlib.nullcontext()
        with torch.inference_mode(), counting:
            start_s = clock.now()
            output = self.model.generate(**self.kwargs, streamer=streamer)
        if self.speculation is not None and timed:
            self.speculation.add_call(self.spec.new_tokens, streamer.steps)
        self.output = output.sequences
        # `cache` since transformers 5.2x, `past_key_values` before (5.17 on the GPU machine).
        kv_bytes = cache_bytes(output["cache"] if "cache" in output
                               else output.get("past_key_values"))
        output = None                          # the cache goes back to the allocator now
        if not timed:
            return Timing(start_s, end_s=clock.now())
        if len(streamer.times_s) != self.spec.new_tokens:
            raise ExplorerError(
                f"The model produced {len(streamer.times_s)} tokens instead of "
                f"{self.spec.new_tokens}; this model does not honour a fixed output length.")
        return Timing(start_s, tuple(streamer.times_s), kv_cache_bytes=kv_bytes)

    def output_text(self) -> str:
        if self.loaded.entry.weights == RANDOM:
            return (f"(Random weights: the {self.spec.new_tokens} generated tokens are "
                    "meaningless, so they are not shown. The timing is real.)")
        if self.output is None:
            return ""
        generated = self.output[0, self.spec.prompt_tokens:].tolist()
        return self.loaded.tokenizer.decode(generated, skip_special_tokens=True)

    def next_token_scores(self, windows: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        from lib.measure.quality import torch_scores
        return torch_scores(self.model, windows, self.spec.device)

    def speculative_report(self) -> dict[str, Any] | None:
        """How speculation went, and whether the output is plain greedy decoding's, token for
        token (one untimed plain call, made now)."""
        import torch

        if self.speculation is None or self.output is None:
            return None
        with torch.inference_mode():
            plain = self.model.generate(**self.plain_kwargs).sequences
        identical = bool(torch.equal(plain, self.output))
        return self.speculation.report(identical)



def generate_arguments(spec: RunSpec, input_ids: Any, tokenizer: Any) -> dict[str, Any]:
    """The exact `generate` arguments every call of this spec uses."""
    import torch

    kwargs: dict[str, Any] = dict(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        max_new_tokens=spec.new_tokens, min_new_tokens=spec.new_tokens, do_sample=False,
        pad_token_id=_pad_token_id(tokenizer),
        # The output object carries the KV cache, so its size is read, not guessed.
        return_dict_in_generate=True)
    if spec.kv_cache == "static" or spec.compile == "on":
        kwargs["cache_implementation"] = "static"
    if spec.compile == "on":
        from transformers import CompileConfig
        config = CompileConfig()
        config._compile_all_devices = True      # transformers compiles only on GPUs by default
        kwargs["compile_config"] = config
    else:
        # transformers would otherwise compile by itself on a GPU whenever the cache is static.
        kwargs["disable_compile"] = True
    return kwargs


def cache_bytes(cache: Any) -> int | None:
    """Bytes held by a transformers KV cache's tensors (keys and values of every layer); None
    when the cache has no layers to read (then the estimate stands alone)."""
    import torch

    layers = getattr(cache, "layers", None)
    if layers is None and isinstance(cache, (tuple, list)):      # the legacy tuple format
        layers = cache
    if not layers:
        return None
    total = 0
    for layer in layers:
        parts = (getattr(layer, "keys", None), getattr(layer, "values", None)) \
            if not isinstance(layer, (tuple, list)) else layer
        for tensor in parts:
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def set_attention(model: Any, attention: str) -> None:
    """Switch the attention kernel of an already loaded model (it is shared, so always set)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        return
    try:
        setter(attention)
    except (ValueError, ImportError) as exc:
        raise UnsupportedError(f"This model can't use the {attention!r} attention kernel "
                               f"({exc}). Choose the other one.") from exc


def _pad_token_id(tokenizer: Any) -> int | None:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else getattr(tokenizer, "eos_token_id", None)


BACKEND = TransformersBackend()

"""One timed run: RunSpec + loaded model -> Measurement with raw per-token timestamps.

How a request is timed (DESIGN.md's timing rules):
1. The prompt is built to exactly `prompt_tokens` tokens and the output fixed at `new_tokens`
   (`min_new_tokens == max_new_tokens`, greedy), so every repetition has the same shapes.
2. `warmup_runs` untimed calls with those exact shapes come first.
3. Each timed repetition reads the clock (which waits for the device) just before `generate`,
   then a tiny streamer records the clock each time a generated token reaches the host. The first
   reading after the start is the first token (TTFT, which includes prefill); the gaps between
   the rest are the inter-token latencies. `benchmarks/timing_overhead.py` checks that recording
   them costs under 2% against plain `generate`.
4. Repetitions continue until both `repetitions` and `min_duration_s` are reached.
The Measurement keeps every raw timestamp; `lib.stats` derives all metrics from them.

Model loading happens before and is timed on its own (`LoadedModel.load_s`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lib import memory
from lib.environment import capture_environment
from lib.errors import ExplorerError, InvalidSpecError, UnsupportedError
from lib.catalog import ENCODER, RANDOM
from lib.models import check_context
from lib.prompts import FittedPrompt, fit_prompt
from lib.spec import RunSpec
from lib.timing import Clock, DeviceClock

MAX_REPETITIONS = 1000     # hard stop for `min_duration_s` with very fast runs

Progress = Callable[[str, int, int], None]   # (stage, done, total)


@dataclass(frozen=True)
class Repetition:
    """One timed request batch: clock readings in seconds on the run's clock."""
    start_s: float
    token_times_s: tuple[float, ...]      # when each generated token reached the host
    peak_memory_bytes: int | None
    start_memory_bytes: int | None = None  # memory in use when the repetition started
    end_s: float | None = None             # encoders: when the forward pass finished


@dataclass(frozen=True)
class Measurement:
    spec: RunSpec
    environment: dict[str, Any]
    repetitions: tuple[Repetition, ...]
    warmup_s: tuple[float, ...]
    prompt_note: str | None
    used_chat_template: bool
    generated_text: str
    load_s: float | None = None
    load_source: str | None = None
    memory_method: str = ""
    kv_cache_bytes_estimate: int | None = None   # from the architecture, not measured
    quantize_s: float | None = None              # int8: quantization time, after loading
    model_kind: str = "causal-lm"                # or "encoder": one forward pass, no tokens
    weights: str = "trained"                     # "trained", "random" or "own"
    extra: dict[str, Any] = field(default_factory=dict)


class TokenTimestamps:
    """A `generate` streamer that only reads the clock (transformers' BaseStreamer protocol).

    `put` is called once with the prompt, then once per generation step with that step's tokens.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.times_s: list[float] = []
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times_s.append(self.clock.now())

    def end(self) -> None:
        pass


def measure(loaded: Any, spec: RunSpec, clock: Clock | None = None,
            on_progress: Progress | None = None) -> Measurement:
    """Time `spec` on an already loaded model (see lib.models.LoadedModel)."""
    import torch

    report = on_progress or (lambda stage, done, total: None)
    check_fits(loaded, spec)
    need = memory.estimate(loaded.shapes, spec.dtype, spec.batch_size, spec.prompt_tokens,
                           spec.new_tokens, weights_loaded=True)
    memory.guard(need, spec.device, f"batch {spec.batch_size} x {spec.total_tokens} tokens")
    torch.set_num_threads(spec.threads)
    clock = clock or DeviceClock(spec.device)

    prompt, generate_kwargs = prepare_inputs(loaded, spec)
    encoder = loaded.entry.kind == ENCODER
    _set_attention(loaded.model, spec.attention)
    # Compiling happens in the first call and may recompile in the second: warm up twice.
    warmup_runs = max(spec.warmup_runs, 2) if spec.compile == "on" and not encoder \
        else spec.warmup_runs
    if encoder:
        generate_kwargs = {key: generate_kwargs[key] for key in ("input_ids", "attention_mask")}
        call = loaded.model.__call__
    else:
        call = loaded.model.generate

    warmup_s = []
    with torch.inference_mode():
        for index in range(warmup_runs):
            report("warm-up", index, warmup_runs)
            started = clock.now()
            call(**generate_kwargs)
            warmup_s.append(clock.now() - started)

        repetitions: list[Repetition] = []
        measured_s = 0.0
        output = None
        while _keep_going(len(repetitions), measured_s, spec):
            report("measuring", len(repetitions), spec.repetitions)
            if encoder:
                with memory.track_peak(spec.device) as peak:
                    start_s = clock.now()
                    call(**generate_kwargs)
                    end_s = clock.now()
                repetitions.append(Repetition(start_s, (), peak.peak_bytes, peak.start_bytes,
                                              end_s=end_s))
                measured_s += end_s - start_s
                continue
            streamer = TokenTimestamps(clock)
            with memory.track_peak(spec.device) as peak:
                start_s = clock.now()
                output = call(**generate_kwargs, streamer=streamer)
            if len(streamer.times_s) != spec.new_tokens:
                raise ExplorerError(
                    f"The model produced {len(streamer.times_s)} tokens instead of "
                    f"{spec.new_tokens}; this model does not honour a fixed output length.")
            repetitions.append(Repetition(start_s, tuple(streamer.times_s), peak.peak_bytes,
                                          peak.start_bytes))
            measured_s += streamer.times_s[-1] - start_s
        report("done", len(repetitions), len(repetitions))

    return Measurement(
        spec=spec, environment=capture_environment(spec.device, spec.threads),
        repetitions=tuple(repetitions), warmup_s=tuple(warmup_s), prompt_note=prompt.note,
        used_chat_template=prompt.used_chat_template,
        generated_text=_describe_output(loaded, spec, output),
        load_s=getattr(loaded, "load_s", None), load_source=getattr(loaded, "source", None),
        memory_method=peak.method,
        kv_cache_bytes_estimate=None if encoder else need.kv_cache_bytes,
        quantize_s=getattr(loaded, "quantize_s", None), model_kind=loaded.entry.kind,
        weights=loaded.entry.weights)


def _describe_output(loaded: Any, spec: RunSpec, output: Any) -> str:
    if loaded.entry.kind == ENCODER:
        return (f"(An encoder writes no text: each of the {spec.batch_size} inputs became "
                f"{loaded.shapes.hidden_size} numbers per token, pooled into one embedding.)")
    if loaded.entry.weights == RANDOM:
        return (f"(Random weights: the {spec.new_tokens} generated tokens are meaningless, so "
                "they are not shown. The timing is real.)")
    generated = output[0, spec.prompt_tokens:].tolist()
    return loaded.tokenizer.decode(generated, skip_special_tokens=True)


def prepare_inputs(loaded: Any, spec: RunSpec) -> tuple[FittedPrompt, dict[str, Any]]:
    """The fitted prompt and the exact `generate` arguments every call of this spec uses."""
    import torch

    prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text)
    input_ids = torch.tensor([prompt.token_ids] * spec.batch_size, device=spec.device)
    kwargs = dict(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
        max_new_tokens=spec.new_tokens, min_new_tokens=spec.new_tokens, do_sample=False,
        pad_token_id=_pad_token_id(loaded.tokenizer))
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
    return prompt, kwargs


def _set_attention(model: Any, attention: str) -> None:
    """Switch the attention kernel of an already loaded model (it is shared, so always set)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        return
    try:
        setter(attention)
    except (ValueError, ImportError) as exc:
        raise UnsupportedError(f"This model can't use the {attention!r} attention kernel "
                               f"({exc}). Choose the other one.") from exc


def check_fits(loaded: Any, spec: RunSpec) -> None:
    """The spec must match the loaded model and fit in its context window."""
    if spec.model_id != loaded.model_id or spec.device != loaded.device or spec.dtype != loaded.dtype:
        raise InvalidSpecError(
            f"The loaded model is {loaded.model_id} on {loaded.device} in {loaded.dtype}, but the "
            f"run asks for {spec.model_id} on {spec.device} in {spec.dtype}: load that first.")
    check_context(loaded.entry, spec)


def _keep_going(done: int, measured_s: float, spec: RunSpec) -> bool:
    if done >= MAX_REPETITIONS:
        return False
    return done < spec.repetitions or measured_s < spec.min_duration_s


def _pad_token_id(tokenizer: Any) -> int | None:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else getattr(tokenizer, "eos_token_id", None)


"""A bare greedy decode loop on a causal language model: what `generate` adds, made visible.

This is the reference implementation of a bare decode loop. It loads exactly like the
transformers backend (same weights, same fitted prompt) but replaces `model.generate` with the
smallest loop that produces the same greedy tokens: one forward pass over the whole prompt into
a `DynamicCache` (prefill), then `new_tokens - 1` one-token forward passes, taking the argmax
each time with end-of-sequence banned (as `generate` does for a fixed output length). Nothing
else runs per step: no logits-processor chain, no stopping criteria, no streamer, no
attention-mask bookkeeping. Comparing its numbers with the transformers backend's on the same
spec shows the per-token cost of `generate`'s machinery.
Promises: the same shapes on every call, exactly `new_tokens` tokens (it never stops early),
greedy tokens identical to `generate`'s, and a clock reading (which waits for the device) after
each token. It honours only the attention kernel; a static KV cache or torch.compile is refused.
It is never the default: it runs only when asked for by name.
"""

from __future__ import annotations

import inspect
from typing import Any

from lib.measure.backends.base import Session, Timing
from lib.measure.backends.transformers_lm import TransformersBackend, cache_bytes, set_attention
from lib.core.errors import stop_if_asked
from lib.models.loaded import LoadedModel
from lib.models.catalog import RANDOM
from lib.core.kinds import CAUSAL_LM
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec
from lib.core.timing import Clock


class ManualLoopBackend(TransformersBackend):
    name = "manual-loop"
    label = "transformers (bare decode loop)"
    kinds = (CAUSAL_LM,)
    default_for = ()               # an explanatory alternative: users' default runs stay the same
    factors = ("attention",)       # the loop owns its cache, so there is no static cache to pick

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        import torch

        torch.set_num_threads(spec.threads)
        set_attention(loaded.model, spec.attention)
        return DecodeLoopSession(loaded, spec)


class DecodeLoopSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        import torch

        self.loaded, self.spec = loaded, spec
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text,
                            spec.prompt_kind)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        self.input_ids = torch.tensor([prompt.token_ids] * spec.batch_size, device=spec.device)
        self.warmup_runs = spec.warmup_runs
        # generate() computes logits for the last prompt position only; doing the same keeps the
        # comparison about the loop, not about a (batch x prompt x vocab) matrix nobody reads.
        params = inspect.signature(loaded.model.forward).parameters
        self.prefill_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # transformers 5 renamed `past_key_values` to `cache`; the old name still works but goes
        # through a deprecation shim on every forward pass, which would be timed here.
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        # generate() with min_new_tokens == max_new_tokens bans end-of-sequence for every step;
        # without the same ban the greedy answers differ as soon as the model wants to stop.
        eos = getattr(loaded.model.generation_config, "eos_token_id", None)
        eos = loaded.tokenizer.eos_token_id if eos is None else eos
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.banned = torch.tensor(eos, dtype=torch.long, device=spec.device)
        self.generated: Any = None

    def run(self, clock: Clock, timed: bool) -> Timing:
        import torch
        from transformers import DynamicCache

        model, times = self.loaded.model, []
        with torch.inference_mode():
            start_s = clock.now()
            # Created inside the timed span, as generate() does, so both pay for it alike.
            cache = DynamicCache(config=model.config)
            tokens = self.input_ids
            produced = []
            for step in range(self.spec.new_tokens):
                extra = self.prefill_kwargs if step == 0 else {}
                logits = model(input_ids=tokens, use_cache=True,
                               **{self.cache_arg: cache}, **extra).logits
                last = logits[:, -1, :]
                last[:, self.banned] = float("-inf")
                tokens = last.argmax(dim=-1, keepdim=True)
                produced.append(tokens)
                if timed:
                    times.append(clock.now())   # waits for the device: the token exists
                stop_if_asked(self.should_stop)
            self.generated = torch.cat(produced, dim=1)
        if not timed:
            return Timing(start_s, end_s=clock.now())
        return Timing(start_s, tuple(times), kv_cache_bytes=cache_bytes(cache))

    def output_text(self) -> str:
        if self.loaded.entry.weights == RANDOM:
            return (f"(Random weights: the {self.spec.new_tokens} generated tokens are "
                    "meaningless, so they are not shown. The timing is real.)")
        if self.generated is None:
            return ""
        return self.loaded.tokenizer.decode(self.generated[0].tolist(),
                                            skip_special_tokens=True)

    def next_token_scores(self, windows: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        from lib.measure.quality import torch_scores
        return torch_scores(self.loaded.model, windows, self.spec.device)


BACKEND = ManualLoopBackend()

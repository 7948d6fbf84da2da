"""A transformers encoder (e.g. a sentence-embedding model): one forward pass per request.

An encoder reads the whole input at once and writes no tokens, so a call is timed from the
clock reading before the forward pass to the one after it (the clock waits for the device);
there is no first token and no decode. Loading is the transformers backend's; the output length
and the KV-cache and compile settings don't apply.
"""

from __future__ import annotations

from lib.measure.backends.base import Session, Timing
from lib.measure.backends.transformers_lm import TransformersBackend, set_attention
from lib.models.loaded import LoadedModel
from lib.core.kinds import ENCODER
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec
from lib.core.timing import Clock


class EncoderBackend(TransformersBackend):
    name = "encoder"
    label = "transformers (encoder forward pass)"
    kinds = (ENCODER,)
    default_for = (ENCODER,)
    factors = ("attention",)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        import torch

        torch.set_num_threads(spec.threads)
        set_attention(loaded.model, spec.attention)
        return ForwardSession(loaded, spec)


class ForwardSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        import torch

        self.loaded, self.spec = loaded, spec
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        input_ids = torch.tensor([prompt.token_ids] * spec.batch_size, device=spec.device)
        self.inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        self.warmup_runs = spec.warmup_runs

    def run(self, clock: Clock, timed: bool) -> Timing:
        import torch

        with torch.inference_mode():
            start_s = clock.now()
            self.loaded.model(**self.inputs)
            return Timing(start_s, end_s=clock.now())

    def output_text(self) -> str:
        return (f"(An encoder writes no text: each of the {self.spec.batch_size} inputs became "
                f"{self.loaded.shapes.hidden_size} numbers per token, pooled into one embedding.)")


BACKEND = EncoderBackend()

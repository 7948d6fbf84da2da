"""A fake model whose latencies are declared, for exact engine tests.

`FakeModel.generate` follows the transformers contract the engine relies on: the streamer gets
the prompt once, then one `put` per generated token, and the return value is prompt + output
ids. Time moves only on a ManualClock: `prefill_s` before the first token, `decode_s` before
each later one. Lists give one value per call, to make a run noisy on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lib.memory import Shapes
from lib.models import CATALOG
from lib.timing import ManualClock

TINY_SHAPES = Shapes(parameters=1000, layers=2, hidden_size=8, intermediate_size=16,
                     attention_heads=2, kv_heads=1, head_dim=4, vocab_size=100)


class FakeTokenizer:
    chat_template = None
    pad_token_id = 0
    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + (ord(ch) % 90) for ch in text]          # one token per character

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(ord("a") + (i % 26)) for i in ids)


class FakeModel:
    def __init__(self, clock: ManualClock, prefill_s, decode_s) -> None:
        self.clock = clock
        self.prefill_s = prefill_s
        self.decode_s = decode_s
        self.calls: list[dict[str, Any]] = []

    def _value(self, declared):
        if isinstance(declared, (list, tuple)):
            return declared[(len(self.calls) - 1) % len(declared)]
        return declared

    def generate(self, input_ids, max_new_tokens, min_new_tokens, streamer=None, **kwargs):
        self.calls.append({"shape": tuple(input_ids.shape), "max_new_tokens": max_new_tokens,
                           "min_new_tokens": min_new_tokens, "streamed": streamer is not None,
                           **kwargs})
        if streamer is not None:
            streamer.put(input_ids)
        new = []
        for index in range(max_new_tokens):
            self.clock.advance(self._value(self.prefill_s if index == 0 else self.decode_s))
            token = torch.full((input_ids.shape[0],), 7 + index)
            new.append(token)
            if streamer is not None:
                streamer.put(token)
        if streamer is not None:
            streamer.end()
        return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)


@dataclass
class FakeLoaded:
    model: FakeModel
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    entry: Any = field(default_factory=lambda: CATALOG["smollm2-135m-instruct"])
    device: str = "cpu"
    dtype: str = "float32"
    load_s: float = 1.5
    source: str = "fake"
    loaded_at: float = 0.0
    shapes: Shapes = TINY_SHAPES

    @property
    def model_id(self) -> str:
        return self.entry.model_id


def fake_loaded(prefill_s=0.2, decode_s=0.05) -> tuple[FakeLoaded, ManualClock]:
    clock = ManualClock()
    return FakeLoaded(model=FakeModel(clock, prefill_s, decode_s)), clock

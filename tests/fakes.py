"""Helpers for tests on the fake backend (lib.backends.fake): declared latencies, exact numbers.

`measure(spec, **declared)` times a spec on a fresh FakeBackend; `fake_runner(spec)` is a sweep
point runner whose latencies grow with the batch size: prefill 0.1 s x batch, decode
0.02 + 0.01 x batch seconds per token.
"""

from __future__ import annotations

from lib import engine
from lib.backends.fake import FakeBackend, FakeTokenizer  # noqa: F401  (re-exported for tests)
from lib.memory import Shapes
from lib.results import Measurement
from lib.spec import RunSpec

TINY_SHAPES = Shapes(parameters=1000, layers=2, hidden_size=8, intermediate_size=16,
                     attention_heads=2, kv_heads=1, head_dim=4, vocab_size=100)


def measure(spec: RunSpec, backend: FakeBackend | None = None, **declared) -> Measurement:
    backend = backend or FakeBackend(**declared)
    loaded = backend.load(spec.model_id, spec.device, spec.dtype)
    return engine.measure(backend, loaded, spec)


def batch_scaling_backend() -> FakeBackend:
    return FakeBackend(prefill_s=lambda spec: 0.1 * spec.batch_size,
                       decode_s=lambda spec: 0.02 + 0.01 * spec.batch_size)


def fake_runner(spec: RunSpec) -> Measurement:
    return measure(spec, batch_scaling_backend())

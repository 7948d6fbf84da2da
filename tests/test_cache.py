"""The server-wide model cache, on the fake backend: loads once, keyed by backend, evicts well."""

import pytest

from fakes import FakeBackend
from lib.estimate import memory
from lib.measure.cache import ModelCache


def test_loads_once_and_evicts_least_recent():
    fake = FakeBackend()
    cache = ModelCache(max_entries=2)
    first = cache.get(fake, "gpt2", "cpu", "float32")
    assert cache.get(fake, "gpt2", "cpu", "float32") is first
    cache.get(fake, "smollm2-360m", "cpu", "float32")
    cache.get(fake, "gpt2", "cpu", "float32")                  # gpt2 becomes most recent
    cache.get(fake, "qwen2.5-0.5b", "cpu", "float32")          # evicts smollm2-360m
    assert ("fake", "smollm2-360m", "cpu", "float32") not in cache
    assert ("fake", "gpt2", "cpu", "float32") in cache
    assert fake.loads == ["gpt2", "smollm2-360m", "qwen2.5-0.5b"]


def test_the_key_includes_the_backend():
    one, other = FakeBackend(), FakeBackend()
    other.name = "other-fake"
    cache = ModelCache(max_entries=3)
    a = cache.get(one, "gpt2", "cpu", "float32")
    b = cache.get(other, "gpt2", "cpu", "float32")
    assert a is not b and a.loaded.backend == "fake" and b.loaded.backend == "other-fake"
    assert cache.holds(one, "gpt2", "cpu", "float32") and cache.holds(other, "gpt2", "cpu", "float32")


def test_makes_room_only_when_that_helps(monkeypatch):
    fake = FakeBackend()
    cache = ModelCache(max_entries=3)
    cache.get(fake, "gpt2", "cpu", "float32")
    cache.get(fake, "smollm2-360m", "cpu", "float32")
    # 2.8 GB free: Qwen2.5-0.5B (about 3.2 GB with margin) needs older models gone.
    free = {"bytes": 2.8e9}
    monkeypatch.setattr(memory, "free_bytes", lambda device: free["bytes"])
    from lib.measure.worker import LocalModel

    def close_and_free(handle):       # a dropped model gives its weights back
        free["bytes"] += handle.loaded.shapes.weight_bytes("float32")
    monkeypatch.setattr(LocalModel, "close", close_and_free)
    cache.get(fake, "qwen2.5-0.5b", "cpu", "float32")
    # Dropping the oldest (GPT-2, 0.5 GB) was enough: the second model stays.
    assert ("fake", "gpt2", "cpu", "float32") not in cache
    assert ("fake", "smollm2-360m", "cpu", "float32") in cache
    # The 8B in float32 can never fit: nothing is dropped for it.
    before = list(cache._models)
    cache.make_room(fake, "deepseek-r1-distill-llama-8b", "cpu", "float32")
    assert all(key in cache for key in before)


@pytest.mark.slow
def test_a_pinned_model_is_never_dropped_and_the_limit_grows_for_it():
    fake = FakeBackend()
    cache = ModelCache(max_entries=1)
    first = cache.get(fake, "gpt2", "cpu", "float32")
    cache.pin(first.key)
    cache.get(fake, "smollm2-360m", "cpu", "float32")
    assert first.key in cache and len(cache._models) == 2
    cache.unpin(first.key)
    cache.get(fake, "qwen2.5-0.5b", "cpu", "float32")
    assert first.key not in cache and len(cache._models) == 1


def test_a_dead_worker_is_replaced_on_the_next_get(monkeypatch):
    from lib.measure.worker import LocalModel
    fake = FakeBackend()
    cache = ModelCache(max_entries=2)
    first = cache.get(fake, "gpt2", "cpu", "float32")
    monkeypatch.setattr(LocalModel, "alive", property(lambda handle: handle is not first))
    assert not cache.holds(fake, "gpt2", "cpu", "float32")
    again = cache.get(fake, "gpt2", "cpu", "float32")
    assert again is not first and fake.loads == ["gpt2", "gpt2"]

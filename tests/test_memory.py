import pytest

from lib import memory
from lib.errors import MemoryGuardError
from lib.memory import Shapes

SMOL = Shapes(parameters=134_515_008, layers=30, hidden_size=576, intermediate_size=1536,
              attention_heads=9, kv_heads=3, head_dim=64, vocab_size=49152)


def test_kv_cache_per_token():
    # 2 (keys and values) x 30 layers x 3 KV heads x 64 dims x 4 bytes
    assert SMOL.kv_bytes_per_token("float32") == 46_080
    assert SMOL.kv_bytes_per_token("bfloat16") == 23_040


def test_estimate_parts():
    est = memory.estimate(SMOL, "float32", batch_size=2, prompt_tokens=100, new_tokens=28)
    assert est.weights_bytes == 134_515_008 * 4
    assert est.kv_cache_bytes == 46_080 * 2 * 128
    assert est.total_bytes > est.weights_bytes + est.kv_cache_bytes + memory.MARGIN_BYTES
    loaded = memory.estimate(SMOL, "float32", 2, 100, 28, weights_loaded=True)
    assert loaded.weights_bytes == 0


def test_guard_refuses_with_numbers_and_advice(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10**9)
    need = memory.estimate(SMOL, "float32", 64, 8000, 100)
    with pytest.raises(MemoryGuardError) as caught:
        memory.guard(need, "cpu", "batch 64 x 8100 tokens")
    message = str(caught.value)
    assert "batch 64 x 8100 tokens" in message and "1.0 GB is free" in message
    assert "smaller batch" in message
    memory.guard(memory.estimate(SMOL, "float32", 1, 8, 1, weights_loaded=True), "cpu", "tiny")


def test_peak_tracking_sees_an_allocation():
    import mmap

    import psutil
    with memory.track_peak("cpu") as peak:
        # Read inside the block: other threads may free memory before the peak's reset.
        before = psutil.Process().memory_info().rss
        # Fresh anonymous pages, touched: malloc could instead reuse memory already resident.
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"x" * (64 * 2**20))
        block.close()
    assert peak.peak_bytes >= before + 60 * 2**20
    assert peak.method


def test_format_bytes():
    from lib.metrics import format_bytes
    assert format_bytes(512) == "512 B"
    assert format_bytes(46_080) == "46.1 KB"
    assert format_bytes(3 * 10**9) == "3.0 GB"

import pytest
import torch

from lib.machine import devices
from lib.core.errors import UnsupportedError


def test_cpu_is_always_offered_and_gpus_only_when_present():
    available = devices.available_devices()
    assert available[0] == "cpu"
    assert ("cuda" in available) == torch.cuda.is_available()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cpu_runs_every_offered_dtype(dtype):
    devices.check_supported("cpu", dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_explained():
    with pytest.raises(UnsupportedError, match="not available on this machine.*cpu"):
        devices.check_supported("cuda", "float32")


def test_dtype_the_device_cannot_run_is_explained(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError('"addmm" not implemented for \'Half\'')
    devices.check_supported.cache_clear()
    monkeypatch.setattr(torch, "ones", refuse)
    try:
        with pytest.raises(UnsupportedError, match="cannot compute in float16.*Choose float32"):
            devices.check_supported("cpu", "float16")
    finally:
        monkeypatch.undo()
        devices.check_supported.cache_clear()


def test_a_plain_cpu_run_is_checked_without_importing_torch_or_transformers():
    """The CLI's own process only checks and starts the worker: on a CPU-only torch build,
    asking for the devices, checking float32 on the CPU and quieting transformers import
    neither (about 2 s a command)."""
    import subprocess
    import sys
    from pathlib import Path

    if not devices._cpu_only_build():
        pytest.skip("this torch build can see GPUs: the question needs torch")
    code = ("import sys; from lib.machine import devices; from lib.cli.output import "
            "quiet_transformers; assert devices.available_devices() == ['cpu']; "
            "devices.check_supported('cpu', 'float32'); quiet_transformers(); "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

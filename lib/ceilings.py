"""This machine's ceilings: how fast its memory and its arithmetic can possibly go, measured.

`measure(device)` takes a few seconds and finds, on the CPU or a CUDA/MPS GPU:
- sustained memory bandwidth: a copy (a = b) and a triad (a = b + 3c) over float32 buffers far
  larger than the last-level cache, counted as bytes read plus bytes written per second, the
  best of a few repeats of each, the better kernel reported;
- dense matmul throughput per dtype, 2 FLOPs per multiply-add, through `F.linear` (the call a
  model's Linear layers make) on square matrices grown until one product takes a few ms;
  int8 through the kernel the app's int8 runs use (dynamic-quantized Linear on the CPU,
  `torch._int_mm` on CUDA), or skipped with the reason in `notes`;
- the fixed cost per decoder layer of one eager-transformers decode step: two tiny random-weight
  Llama-shaped models that differ only in layer count are timed decoding token by token, and the
  difference per layer is the slope. Their arithmetic is negligible, so the slope is Python and
  kernel-launch overhead, which no bandwidth or FLOP figure explains.
It times through `lib.timing.DeviceClock` (waiting for the GPU before every clock reading) and
with the threads the app uses by default (`lib.spec.default_threads()`), restoring torch's
setting afterwards.

`machine_ceilings()` measures once per machine (CPU model, cores, memory, GPU, torch version)
and keeps the result as JSON in `lib.paths.cache_dir()`; `refresh=True` measures again. A cache
file that can't be read or makes no sense is measured over, never a traceback. Measuring takes
the machine-wide measurement slot (`lib.runlock`), so it never overlaps a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lib.errors import RunFailedError, UnsupportedError

CACHE_FILE = "ceilings.json"
CACHE_FORMAT = 1
CACHE_MAX_ENTRIES = 20            # machines x torch versions kept; the oldest go first
MATMUL_DTYPES = ("float32", "bfloat16", "float16", "int8")

# Bandwidth buffers: this many times the last-level cache, and at least BUFFER_MIN_BYTES, so the
# cache holds a sliver of them; never more than 1/BUFFER_MEMORY_SHARE of the free memory each.
LLC_MULTIPLE = 8
BUFFER_MIN_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30, "mps": 256 * 2**20}
BUFFER_MEMORY_SHARE = 8
FALLBACK_LLC_BYTES = 32 * 2**20
# Matmul size: doubled from the smallest until one product takes GROW_UNTIL_S (big enough for
# the kernel to reach its speed, small enough to stay quick), at most the device's largest.
MATMUL_SIZES = (256, 512, 1024, 2048, 4096, 8192)
MATMUL_MAX_SIZE = {"cpu": 2048, "cuda": 8192, "mps": 4096}
GROW_UNTIL_S = 0.005
# Every figure is the best of at least MIN_REPEATS samples, more while within KERNEL_BUDGET_S.
# A sample repeats its kernel until it lasts SAMPLE_S, so a GPU's launch latency doesn't count.
MIN_REPEATS, MAX_REPEATS = 3, 10
KERNEL_BUDGET_S = 0.15
SAMPLE_S = 0.005
MAX_CALLS_PER_SAMPLE = 1000
# Layer overhead: decode steps of two models that differ only in layer count, interleaved in
# rounds (the best median of each model) so a burst of load elsewhere hits both alike.
OVERHEAD_LAYERS = (2, 10)
OVERHEAD_PROMPT_TOKENS = 8
OVERHEAD_WARMUP_STEPS = 3
OVERHEAD_STEPS = 16
OVERHEAD_ROUNDS = 3
MEASURE_ESTIMATE_S = 6.0          # what those waiting in the queue are told

_log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]     # (what is being measured, fraction done)


@dataclass(frozen=True)
class Ceilings:
    device: str                                  # "cpu" | "cuda" | "mps"
    memory_bandwidth_bytes_per_s: float          # sustained: copy/triad, buffers >> LLC
    matmul_flops_per_s: dict[str, float] = field(hash=False)   # dtype -> dense FLOP/s
    layer_overhead_s: float | None = None        # eager decode: fixed cost per layer per step
    source: str = ""                             # "measured on this machine <date>, torch X"
    device_name: str = ""                        # e.g. the CPU or GPU model
    threads: int | None = None                   # CPU threads used while measuring
    measured_at: str = ""                        # UTC, ISO 8601
    measure_s: float | None = None               # how long measuring took
    notes: tuple[str, ...] = ()                  # dtypes skipped and why, kernels used
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def peak_flops(self, dtype: str) -> float:
        """The dtype's matmul FLOP/s, else float32's (the reference every device has)."""
        return self.matmul_flops_per_s.get(dtype, self.matmul_flops_per_s["float32"])

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["notes"] = list(self.notes)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Ceilings":
        """Ceilings from `to_dict`'s output; ValueError for anything that doesn't make sense."""
        if not isinstance(values, dict):
            raise ValueError("not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        flops = values.get("matmul_flops_per_s")
        if not isinstance(flops, dict) or "float32" not in flops:
            raise ValueError("matmul_flops_per_s has no float32 figure")
        for name, value in [("memory_bandwidth_bytes_per_s",
                             values.get("memory_bandwidth_bytes_per_s")), *flops.items()]:
            if not _positive(value):
                raise ValueError(f"{name} is not a positive number: {value!r}")
        overhead = values.get("layer_overhead_s")
        if overhead is not None and not (_number(overhead) and overhead >= 0):
            raise ValueError(f"layer_overhead_s is not a number of seconds: {overhead!r}")
        if values.get("device") not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unknown device {values.get('device')!r}")
        for name in ("source", "device_name", "measured_at"):
            if not isinstance(values.get(name, ""), str):
                raise ValueError(f"{name} is not text")
        notes = values.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError("notes is not a list of text")
        values["notes"] = tuple(notes)
        if not isinstance(values.get("details", {}), dict):
            raise ValueError("details is not an object")
        return cls(**values)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


# --- measuring ---------------------------------------------------------------------------------

def measure(device: str = "cpu", on_progress: Progress | None = None) -> Ceilings:
    """Measure `device`'s ceilings now (a few seconds); see the module for what and how."""
    import torch

    from lib.devices import available_devices, device_name
    from lib.spec import default_threads
    from lib.timing import DeviceClock

    if device not in available_devices():
        raise UnsupportedError(f"Device {device!r} is not available on this machine (torch "
                               f"sees: {', '.join(available_devices())}). Choose one of those.")
    tell = on_progress or (lambda what, fraction: None)
    clock = DeviceClock(device)
    threads, before = default_threads(), torch.get_num_threads()
    started = time.perf_counter()
    notes: list[str] = []
    details: dict[str, Any] = {}
    torch.set_num_threads(threads)
    try:
        with _failures_explained(device), torch.inference_mode():
            tell("memory bandwidth", 0.0)
            bandwidth = _bandwidth(torch, device, clock, details)
            flops: dict[str, float] = {}
            for done, dtype in enumerate(MATMUL_DTYPES, start=1):
                tell(f"{dtype} matrix products", done / (len(MATMUL_DTYPES) + 2))
                try:
                    flops[dtype] = _matmul_flops(torch, device, dtype, clock, details)
                except (RuntimeError, NotImplementedError, TypeError, AttributeError) as exc:
                    if dtype == "float32":
                        raise
                    notes.append(f"{dtype}: not measured ({_first_line(exc)}).")
        tell("per-layer overhead of a decode step", (len(MATMUL_DTYPES) + 1)
             / (len(MATMUL_DTYPES) + 2))
        with _failures_explained(device):
            overhead = _layer_overhead(torch, device, clock, details)
    finally:
        torch.set_num_threads(before)
        if device == "cuda":
            torch.cuda.empty_cache()     # give the buffers back: free memory is read by runs
    tell("done", 1.0)
    if "int8" in flops:
        notes.append("int8: " + ("dynamic-quantized Linear (what --dtype int8 runs)"
                                 if device == "cpu" else "torch._int_mm"))
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    threads_used = f", {threads} threads" if device == "cpu" else ""
    return Ceilings(
        device=device, memory_bandwidth_bytes_per_s=bandwidth, matmul_flops_per_s=flops,
        layer_overhead_s=overhead,
        source=f"measured on this machine {measured_at[:10]}, torch {torch.__version__}"
               f"{threads_used}",
        device_name=_device_name(device, device_name), threads=threads, measured_at=measured_at,
        measure_s=time.perf_counter() - started, notes=tuple(notes), details=details)


@contextlib.contextmanager
def _failures_explained(device: str):
    """A kernel that fails (out of memory, a driver error) ends measuring with a message that
    says what to do, never a traceback."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        raise RunFailedError(
            f"Measuring the {device}'s ceilings failed ({_first_line(exc)}). Close programs "
            "that use it and measure again (python -m lib machine --refresh).") from exc


def _device_name(device: str, device_name: Callable[[str], str]) -> str:
    if device == "cpu":
        from lib.environment import cpu_model
        return cpu_model()
    return device_name(device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _best_rate(work: float, call: Callable[[], Any], clock) -> float:
    """`work` per second of `call` at its best: at least MIN_REPEATS samples, more while within
    KERNEL_BUDGET_S; the first call is never timed (allocation, kernel selection)."""
    call()
    start = clock.now()
    call()
    single_s = max(clock.now() - start, 1e-7)
    calls = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(SAMPLE_S / single_s)))
    best_s, samples, began = math.inf, 0, clock.now()
    while samples < MIN_REPEATS or (samples < MAX_REPEATS
                                    and clock.now() - began < KERNEL_BUDGET_S):
        start = clock.now()
        for _ in range(calls):
            call()
        best_s = min(best_s, (clock.now() - start) / calls)
        samples += 1
    return work / best_s


def _bandwidth(torch, device: str, clock, details: dict) -> float:
    size = _buffer_bytes(torch, device)
    elements = size // 4
    a, b, c = (torch.empty(elements, dtype=torch.float32, device=device) for _ in range(3))
    # Touch every page first: the first write to a page is a page fault, not bandwidth.
    a.zero_()
    b.fill_(1.0)
    c.fill_(2.0)
    copy = _best_rate(2 * elements * 4, lambda: a.copy_(b), clock)
    triad = _best_rate(3 * elements * 4, lambda: torch.add(b, c, alpha=3.0, out=a), clock)
    details.update(buffer_bytes=elements * 4, copy_bytes_per_s=copy, triad_bytes_per_s=triad)
    return max(copy, triad)


def _buffer_bytes(torch, device: str) -> int:
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        cache = torch.cuda.get_device_properties(0).L2_cache_size
    else:
        import psutil
        free, cache = psutil.virtual_memory().available, last_level_cache_bytes()
    wanted = max(LLC_MULTIPLE * cache, BUFFER_MIN_BYTES[device])
    return int(min(wanted, free // BUFFER_MEMORY_SHARE))


def last_level_cache_bytes() -> int:
    """The CPU's largest cache (Linux sysfs), else FALLBACK_LLC_BYTES."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    largest = 0
    try:
        for index in root.glob("index*"):
            text = (index / "size").read_text().strip().upper()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            number = int(text.rstrip("KMG")) * units.get(text[-1:], 1)
            largest = max(largest, number)
    except (OSError, ValueError):
        return FALLBACK_LLC_BYTES
    return largest or FALLBACK_LLC_BYTES


def _matmul_flops(torch, device: str, dtype: str, clock, details: dict) -> float:
    """Dense FLOP/s of one square product in `dtype`, at the size `_grown_size` picks."""
    import torch.nn.functional as F

    def product_of(size: int) -> Callable[[], Any]:
        if dtype != "int8":
            dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                      "float16": torch.float16}
            x = torch.randn(size, size, device=device).to(dtypes[dtype])
            w = torch.randn(size, size, device=device).to(dtypes[dtype])
            return lambda: F.linear(x, w)
        if device == "cuda":
            x = torch.randint(-128, 128, (size, size), dtype=torch.int8, device=device)
            w = torch.randint(-128, 128, (size, size), dtype=torch.int8, device=device)
            return lambda: torch._int_mm(x, w)
        if device != "cpu":
            raise NotImplementedError(f"torch has no int8 matrix product on {device}")
        return _quantized_linear(torch, size)

    size = _grown_size(device, product_of, clock)
    details.setdefault("matmul_sizes", {})[dtype] = size
    return _best_rate(2 * size**3, product_of(size), clock)


def _quantized_linear(torch, size: int) -> Callable[[], Any]:
    """The int8 kernel the app's int8 runs use: torch.ao's dynamic-quantized Linear."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if not {"x86", "fbgemm", "qnnpack", "onednn"} & set(torch.backends.quantized.supported_engines):
        raise NotImplementedError("this torch build has no int8 CPU kernels")
    with warnings.catch_warnings():          # torch.ao announces its deprecation on every call
        warnings.simplefilter("ignore")
        layer = DynamicLinear(size, size)
    x = torch.randn(size, size)

    def product():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return layer(x)
    return product


def _grown_size(device: str, product_of: Callable[[int], Callable[[], Any]], clock) -> int:
    """The first size whose product takes GROW_UNTIL_S, or the device's largest."""
    largest = MATMUL_MAX_SIZE.get(device, 2048)
    size = MATMUL_SIZES[0]
    for size in (s for s in MATMUL_SIZES if s <= largest):
        product = product_of(size)
        product()
        start = clock.now()
        product()
        if clock.now() - start >= GROW_UNTIL_S:
            break
    return size


def _layer_overhead(torch, device: str, clock, details: dict) -> float:
    """Seconds per decoder layer of an eager decode step: the slope between two tiny models."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    dtype = torch.bfloat16 if device == "cuda" else torch.float32   # MPS: bf16 not everywhere
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = {layers: LlamaForCausalLM(LlamaConfig(
                hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                max_position_embeddings=512, attn_implementation="sdpa")).to(device, dtype).eval()
                for layers in OVERHEAD_LAYERS}
    finally:
        hf_logging.set_verbosity(verbosity)
    step_s = {layers: math.inf for layers in OVERHEAD_LAYERS}
    for _round in range(OVERHEAD_ROUNDS):
        for layers, model in models.items():
            step_s[layers] = min(step_s[layers],
                                 _decode_step_s(torch, model, device, clock, DynamicCache))
    few, many = OVERHEAD_LAYERS
    details["layer_step_s"] = {str(layers): seconds for layers, seconds in step_s.items()}
    return max(0.0, (step_s[many] - step_s[few]) / (many - few))


def _decode_step_s(torch, model, device: str, clock, cache_class) -> float:
    """Median seconds of one-token decode steps after a short prompt, as the app's loop runs
    them (a DynamicCache, the argmax fed back)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    # transformers 5 renamed `past_key_values` to `cache`; the old name goes through a
    # deprecation shim on every call, which would be timed.
    cache_arg = "cache" if "cache" in params else "past_key_values"
    cache = cache_class(config=model.config)
    tokens = torch.zeros(1, OVERHEAD_PROMPT_TOKENS, dtype=torch.long, device=device)
    times = []
    with torch.inference_mode():
        for step in range(OVERHEAD_WARMUP_STEPS + OVERHEAD_STEPS + 1):
            start = clock.now()
            logits = model(input_ids=tokens, use_cache=True, **{cache_arg: cache}).logits
            tokens = logits[:, -1:].argmax(dim=-1)
            end = clock.now()
            if step > OVERHEAD_WARMUP_STEPS:          # step 0 is the prefill
                times.append(end - start)
    return statistics.median(times)


# --- cached per machine ------------------------------------------------------------------------

def machine_identity(device: str) -> dict[str, Any]:
    """What the ceilings depend on: the CPU (model, cores), memory, the GPU, torch's version."""
    from importlib import metadata

    import psutil

    from lib.environment import cpu_model
    from lib.spec import default_threads

    identity: dict[str, Any] = {
        "device": device, "cpu_model": cpu_model(), "cpu_cores": os.cpu_count(),
        "threads": default_threads(), "memory_bytes": psutil.virtual_memory().total,
        "torch": metadata.version("torch"), "format": CACHE_FORMAT}
    if device != "cpu":
        from lib.devices import device_name
        identity["gpu"] = device_name(device)
    return identity


def cache_path() -> Path:
    from lib.paths import cache_dir
    return cache_dir() / CACHE_FILE


def _read_cache() -> list[dict]:
    """The cache's entries; an unreadable or damaged file reads as empty (and is measured
    over), with the reason in the log."""
    path = cache_path()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _log.warning("ignoring the damaged ceilings cache %s (%s)", path, exc)
        return []
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        _log.warning("ignoring the ceilings cache %s: no list of entries", path)
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("machine"), dict)]


def cached(device: str = "cpu") -> Ceilings | None:
    """The ceilings measured before on this machine, if any (and if they make sense)."""
    identity = machine_identity(device)
    for entry in _read_cache():
        if entry["machine"] == identity:
            try:
                return Ceilings.from_dict(entry.get("ceilings"))
            except (ValueError, TypeError) as exc:
                _log.warning("ignoring damaged cached ceilings for %s (%s)", device, exc)
    return None


def _write_cache(identity: dict[str, Any], ceilings: Ceilings) -> None:
    entries = [e for e in _read_cache() if e["machine"] != identity]
    entries = (entries + [{"machine": identity, "ceilings": ceilings.to_dict()}])
    entries = entries[-CACHE_MAX_ENTRIES:]
    path = cache_path()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1,
                                        allow_nan=False), encoding="utf-8")
        os.replace(temporary, path)              # readers see the old file or the new one
    except (OSError, ValueError) as exc:
        # Not fatal: the ceilings are measured and returned; the next call measures again.
        _log.warning("could not keep the ceilings in %s (%s)", path, exc)
        temporary.unlink(missing_ok=True)


def machine_ceilings(device: str = "cpu", refresh: bool = False,
                     on_progress: Progress | None = None,
                     on_wait: Callable[[str], None] | None = None) -> Ceilings:
    """This machine's ceilings on `device`: from the cache, else measured (and kept).

    Measuring waits for the measurement slot (`on_wait` hears the waiting notice); whoever
    measured meanwhile is used instead, unless `refresh`."""
    from lib.runlock import measurement_slot

    if not refresh:
        found = cached(device)
        if found is not None:
            return found
    with measurement_slot(f"measuring this machine's {device} ceilings", on_wait=on_wait,
                          estimate_s=MEASURE_ESTIMATE_S):
        found = None if refresh else cached(device)
        if found is None:
            found = measure(device, on_progress)
            _write_cache(machine_identity(device), found)
    return found


def available(refresh: bool = False, on_progress: Progress | None = None,
              on_wait: Callable[[str], None] | None = None) -> dict[str, Ceilings]:
    """Ceilings of the CPU, and of CUDA and MPS when present."""
    from lib.devices import available_devices
    return {device: machine_ceilings(device, refresh, on_progress, on_wait)
            for device in available_devices()}


def describe(ceilings: Ceilings) -> list[str]:
    """A few lines for people: the figures with their units, and where they came from."""
    from lib.metrics import format_bytes, format_seconds
    from lib.roofline import format_operations

    name = f" ({ceilings.device_name})" if ceilings.device_name else ""
    lines = [f"{ceilings.device}{name}: {ceilings.source}",
             f"  memory bandwidth    {format_bytes(ceilings.memory_bandwidth_bytes_per_s)}/s "
             "(read + written)"]
    for dtype, flops in ceilings.matmul_flops_per_s.items():
        lines.append(f"  matmul {dtype:<12} {format_operations(flops)} operations/s")
    if ceilings.layer_overhead_s is not None:
        lines.append(f"  per-layer overhead  {format_seconds(ceilings.layer_overhead_s)} per "
                     "decoder layer per decode step (eager transformers)")
    lines += [f"  note: {note}" for note in ceilings.notes]
    if ceilings.measure_s is not None:
        lines.append(f"  measuring took {ceilings.measure_s:.1f} s")
    return lines

"""Helpers for tests on the fake backend (lib.measure.backends.fake): declared latencies, exact numbers.

`measure(spec, **declared)` times a spec on a fresh FakeBackend; `FakePoints()` measures sweep
points (lib.measure.sweep's PointMeasurer) on a backend whose latencies grow with the batch size:
prefill 0.1 s x batch, decode 0.02 + 0.01 x batch seconds per token. It records the order in
which points were visited. `many_repetitions(count)` is a Measurement with that many repetitions,
made without measuring (charts and History must stay quick however many there are).
"""

from __future__ import annotations

import re

from lib.measure import engine
from lib.measure.backends.fake import FakeBackend, FakeTokenizer  # noqa: F401  (re-exported for tests)
from lib.machine.capability import Ceilings
from lib.models.shapes import Shapes
from lib.models.catalog import get_entry
from lib.core.results import Measurement
from lib.core.spec import RunSpec

TINY_SHAPES = Shapes(parameters=1000, layers=2, hidden_size=8, intermediate_size=16,
                     attention_heads=2, kv_heads=1, head_dim=4, vocab_size=100)


def measure(spec: RunSpec, backend: FakeBackend | None = None, **declared) -> Measurement:
    backend = backend or FakeBackend(**declared)
    loaded = backend.load(spec.model_id, spec.device, spec.dtype)
    return engine.measure(backend, loaded, spec)


def batch_scaling_backend() -> FakeBackend:
    return FakeBackend(prefill_s=lambda spec: 0.1 * spec.batch_size,
                       decode_s=lambda spec: 0.02 + 0.01 * spec.batch_size)


class FakePoints:
    """Sweep points on fake models kept in this process (one per model/device/dtype)."""

    def __init__(self, backend: FakeBackend | None = None) -> None:
        self.backend = backend or batch_scaling_backend()
        self.models: dict = {}
        self.handles: dict = {}
        self.visits: list[RunSpec] = []
        self.forgotten: list[RunSpec] = []

    def start(self, spec: RunSpec, on_progress=None, on_tick=None) -> None:
        from lib.measure.worker import LocalModel

        self.backend.check(get_entry(spec.model_id), spec)
        key = (spec.model_id, spec.device, spec.dtype)
        if key not in self.models:
            self.models[key] = LocalModel(self.backend, *key)
        self.handles[spec] = self.models[key]
        self.handles[spec].start(spec, on_progress)

    def repeat(self, spec: RunSpec, on_tick=None):
        self.visits.append(spec)
        return self.handles[spec].repeat(spec)

    def finish(self, spec: RunSpec) -> Measurement:
        return self.handles.pop(spec).finish(spec)

    def forget(self, spec: RunSpec) -> None:
        self.forgotten.append(spec)
        handle = self.handles.pop(spec, None)
        if handle is not None:
            handle.forget(spec)


def fake_runner(spec: RunSpec) -> Measurement:
    """One point measured start to end on the batch-scaling backend."""
    return measure(spec, batch_scaling_backend())


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m lib ARGV` in this process: (exit status, stdout, stderr). For what the
    command says and returns; a test of the process itself starts one."""
    from lib.cli import main

    try:
        status = main.main(argv)
    except SystemExit as exc:           # argparse's own refusals and --help
        status = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def enter_classroom(at, host: bool = False):
    """This AppTest session has entered the access code (and the host code when `host`)."""
    from lib.ui import state
    at.session_state[state.ACCESS_GRANTED] = True
    at.session_state[state.HOST_GRANTED] = host
    return at


def plain(markdown: str) -> str:
    """What a reader sees of Markdown that `lib.core.text.md` escaped: the backslashes go, and
    the invisible word joiners that keep bare addresses from becoming links; of text with
    glossary terms (lib.ui.glossary_view), the style and the terms' spans go too."""
    markdown = re.sub(r"<style>.*?</style>", "", markdown, flags=re.S)
    markdown = re.sub(r'<span class="ile-term" data-tip="[^"]*">|</span>', "", markdown)
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def many_repetitions(count: int, tokens: int = 5, kind: str | None = None,
                     spec: RunSpec | None = None) -> Measurement:
    """`count` repetitions whose per-token gaps are 20-29 ms, each as often (r % 10); an
    encoder's (`kind="encoder"`) forward passes take 50-59 ms."""
    from lib.core.results import Repetition

    spec = (spec or RunSpec(prompt_tokens=16, repetitions=2, min_duration_s=0.0, threads=1)
            ).replace(new_tokens=max(tokens, 1))
    if kind == "encoder":
        reps = tuple(Repetition(0.0, (), None, end_s=0.05 + 0.001 * (r % 10))
                     for r in range(count))
        return Measurement(spec, {}, reps, (), None, False, "", model_kind="encoder")
    reps = tuple(Repetition(0.0, tuple(0.1 + (0.02 + 0.001 * (r % 10)) * i for i in range(tokens)),
                            None) for r in range(count))
    return Measurement(spec, {}, reps, (), None, False, "")


# A machine with round ceilings: 10 GB/s of memory, 100 GFLOP/s in float32 (200 in bfloat16),
# half a millisecond per layer per decode step.
DECLARED_CEILINGS = Ceilings("cpu", 10e9, {"float32": 100e9, "bfloat16": 200e9},
                             layer_overhead_s=0.0005, source="declared by the tests")


def with_declared_ceilings(measurement: Measurement) -> Measurement:
    """The measurement as if measured on the DECLARED_CEILINGS machine."""
    import dataclasses
    return dataclasses.replace(measurement, environment={
        **measurement.environment, "ceilings": DECLARED_CEILINGS.to_dict()})


# This machine's ceilings, declared: measuring them takes seconds (lib.machine.ceilings), and a test
# needs exact numbers. Shaped like lib.machine.capability.Ceilings.
DECLARED_THIS = dict(
    device="cpu", memory_bandwidth_bytes_per_s=12e9, layer_overhead_s=0.3e-3,
    matmul_flops_per_s={"float32": 100e9, "bfloat16": 60e9, "float16": 20e9, "int8": 150e9},
    source="measured on this machine (declared by the test)")


def declare_ceilings(monkeypatch, **changes) -> list[str]:
    """`hardware.get("this")` built from DECLARED_THIS (with `changes`), never measured;
    returns the list of devices it was asked for (each time it would have measured)."""
    import types

    from lib.estimate import hardware

    asked: list[str] = []

    def machine_ceilings(device: str):
        asked.append(device)
        return types.SimpleNamespace(**{**DECLARED_THIS, **changes})

    monkeypatch.setattr(hardware, "_machine_ceilings", machine_ceilings)
    hardware.this.cache_clear()          # callers clear it again when they end
    return asked


def sweep_through_runner(base: RunSpec, factor_values: list):
    """A sweep as the app and the CLI run it (lib.measure.runner.SweepPoints with a model cache), so a
    point on a hardware profile goes to the estimator while the rest run on whatever backend
    the test installed (`backends.use`, e.g. the `fake_backend` fixture)."""
    from lib.measure import runner, sweep
    from lib.measure.cache import ModelCache

    # Not closed: its fake and estimator models hold nothing, and closing collects garbage
    # (a third of a second per test).
    cache = ModelCache(max_entries=4)
    with runner.SweepPoints(cache, "a test sweep") as points:
        return sweep.run_sweep(base, factor_values, points)


# --- load runs (lib.serving) ---------------------------------------------------------------------

SERVING_ENDPOINT = {"base_url": "http://127.0.0.1:8000/v1", "model": "smollm2-135m-instruct",
                    "api": "completions", "fixed_length": "transformers", "timeout_s": 120.0,
                    "api_key": "none"}


def load_request(index, sent, ttft, gaps, phase="measured", status="ok", reason=""):
    """A streamed request: sent at `sent`, first token after `ttft`, then one token per gap."""
    from lib.serving.records import RequestRecord

    chunks = [sent + ttft]
    for gap in gaps:
        chunks.append(chunks[-1] + gap)
    if status == "failed":
        return RequestRecord(index=index, phase=phase, sent_s=sent, status=status,
                             end_s=sent + ttft, asked_tokens=len(chunks), reason=reason)
    return RequestRecord(index=index, phase=phase, sent_s=sent, status=status,
                         first_token_s=chunks[0], chunk_s=tuple(chunks),
                         chunk_tokens=(1,) * len(chunks), end_s=chunks[-1],
                         asked_tokens=len(chunks), output_tokens=len(chunks))


# TTFT of the measured requests per concurrency: flat at 1 and 2, a knee at 4.
KNEE_TTFTS = {1: 0.20, 2: 0.22, 4: 1.0, 8: 3.0}


def load_result(levels=(1, 2, 4, 8), measured=12, ttfts=None, slo=True, target=None,
                failed_at=8, mode="concurrency"):
    """A closed-loop load run, made by hand: per level two warm-up requests, `measured` measured
    ones (TTFT from `ttfts`, rising by 1% a request; 7 tokens 50 ms apart), a cool-down one
    cancelled, and at level `failed_at` one measured request failed with HTTP 503."""
    from lib.serving import load, measures, summary
    from lib.serving.plan import LoadPlan

    ttfts = ttfts or KNEE_TTFTS
    plan = LoadPlan(mode=mode, levels=tuple(float(v) for v in levels), requests=measured,
                    warmup=2, prompt_tokens=64, new_tokens=8)
    runs, clock = [], 100.0
    for level in levels:
        base = ttfts.get(level, 0.2)
        records = [load_request(0, clock, 0.3, [0.05] * 7, phase="warm-up"),
                   load_request(1, clock, 0.3, [0.05] * 7, phase="warm-up")]
        for i in range(measured):
            records.append(load_request(2 + i, clock + 0.1 * i, base * (1 + 0.01 * i),
                                        [0.05] * 7))
        if level == failed_at:
            records.append(load_request(2 + measured, clock + 0.1 * measured, 0.4, [],
                                        status="failed", reason="HTTP 503: server busy"))
        records.append(load_request(len(records), clock + 0.1 * measured + 0.2, 0.3, [0.05],
                                    phase="cool-down", status="cancelled"))
        runs.append(load.LevelRun(float(level), records))
        clock += 20.0
    target = target or {"kind": "local", "endpoint": dict(SERVING_ENDPOINT),
                        "server": "transformers serve with SmolLM2-135M-Instruct",
                        "model_id": "smollm2-135m-instruct", "probe": "fixed length: yes"}
    return summary.result(target, plan, measures.SLO_PRESETS["mlperf-server"] if slo else None,
                         0.0, runs, {"host": "test"})


class StackFake(FakeBackend):
    """A fake that is one software stack (lib.core.stacks): it runs that stack's formats only,
    and must be installed, as the stack's real backend does; its versions are that stack's
    packages at `version`."""

    def __init__(self, stack: str, version: str = "9.9.9", **declared) -> None:
        from lib.core.stacks import STACKS

        super().__init__(**declared)
        self.stack, self.name, self.version = stack, f"fake-{stack}", version
        self.dtypes = STACKS[stack].dtypes

    def versions(self) -> dict[str, str]:
        from lib.core.stacks import STACKS
        return {package: self.version for package in STACKS[self.stack].packages}


def use_stack_fakes(monkeypatch, fakes: dict, missing: tuple = ()) -> dict:
    """Each stack in `fakes` (name -> StackFake) runs on its fake; any other has no backend
    (as ONNX Runtime before its backend), and the stacks in `missing` are not installed."""
    from lib.measure import backends
    from lib.core import stacks
    from lib.core.errors import UnsupportedError

    def for_stack(entry, stack):
        if stack not in fakes:
            raise UnsupportedError(f"{stacks.STACKS[stack].label} has no backend in this "
                                   "version of the app.")
        return fakes[stack]

    monkeypatch.setattr(backends, "for_stack", for_stack)
    monkeypatch.setattr(stacks, "installed", lambda name: name not in missing)
    return fakes


FAKE_BACKEND_ENV = "ILE_FAKE_BACKEND"
_served: list = []


class SleepingClock:
    """A `ManualClock` whose time passes for real: a browser sees a fake run take its time."""

    def __init__(self) -> None:
        import time
        self._sleep, self.time_s = time.sleep, 0.0

    def now(self) -> float:
        return self.time_s

    def advance(self, seconds: float) -> None:
        self._sleep(seconds)
        self.time_s += seconds


def serve_fake_backend_from_environment() -> FakeBackend:
    """Once per server process (Streamlit re-runs the entry script on every interaction):
    every model runs on a FakeBackend declared by $ILE_FAKE_BACKEND, in real time, on a
    machine with DECLARED_CEILINGS (nothing measures this machine)."""
    import json
    import os

    from lib.measure import backends
    from lib.machine import ceilings

    if _served:
        return _served[0]
    backend = FakeBackend(**json.loads(os.environ.get(FAKE_BACKEND_ENV) or "{}"))
    backend.clock_ = SleepingClock()
    ceilings.machine_ceilings = lambda device="cpu", refresh=False, on_progress=None, \
        on_wait=None: DECLARED_CEILINGS
    ceilings.cached = lambda device="cpu": DECLARED_CEILINGS
    # Kept referenced: a dropped generator-based context manager would run its `finally`
    # (undoing `use`) when garbage-collected.
    using = backends.use(backend)
    using.__enter__()                           # for the life of the server process
    _served.extend([backend, using])
    return backend


def make_student(teacher="smollm2-135m-instruct", layers=2, provenance=None):
    """A student folder as distill leaves it (its weights file is only a name here), in the
    cache folder of the moment."""
    import json

    from lib.models import catalog, students
    from lib.models.files import DISTILLED_FILE

    folder = students.student_folder(teacher, layers)
    folder.mkdir(parents=True)
    config = dict(catalog.CATALOG[teacher].config, num_hidden_layers=layers)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    if provenance is not False:
        (folder / DISTILLED_FILE).write_text(json.dumps(
            provenance or {"teacher": teacher, "layers": layers, "steps": 5, "seconds": 12.3}))
    return folder

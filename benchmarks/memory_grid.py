"""Does the memory estimate hold? Real peaks of real runs against `lib.estimate.memory` over a grid.

Each point runs `python -m lib run --json` in a fresh process (one warm-up-free call, so the
first call's allocations are the ones measured) and reads two peaks: the run's own
(`summary.peak_memory_bytes`, the RSS high-water mark during the timed call) and the whole
process's (`ru_maxrss` of the command and its worker: Python, torch, loading and the run
together). The
estimate is what the guard compares with free memory before anything loads (weights
included), so the process peak must stay under it: with no swap, an underestimate is an OOM
kill. The ratio estimate / process peak shows how pessimistic it is.

    .venv/bin/python benchmarks/memory_grid.py [--quick] [--models smollm2-360m ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Point:
    model_id: str
    dtype: str
    attention: str
    batch_size: int
    prompt_tokens: int
    new_tokens: int = 8
    kv_cache: str = "dynamic"

    def spec(self):
        from lib.core.spec import RunSpec
        return RunSpec(model_id=self.model_id, dtype=self.dtype, attention=self.attention,
                       batch_size=self.batch_size, prompt_tokens=self.prompt_tokens,
                       new_tokens=self.new_tokens, kv_cache=self.kv_cache)

    def flags(self) -> list[str]:
        return ["--model", self.model_id, "--dtype", self.dtype, "--attention", self.attention,
                "--batch", str(self.batch_size), "--prompt-tokens", str(self.prompt_tokens),
                "--new-tokens", str(self.new_tokens), "--kv-cache", self.kv_cache,
                "--repetitions", "1", "--min-duration", "0", "--warmup", "0"]

    def __str__(self) -> str:
        return (f"{self.model_id} {self.dtype} {self.attention} {self.kv_cache} "
                f"{self.batch_size}x{self.prompt_tokens}+{self.new_tokens}")


@dataclass(frozen=True)
class Outcome:
    point: Point
    estimate_bytes: int          # lib.estimate.memory's need before loading (weights included)
    run_peak_bytes: int          # RSS high-water mark during the timed call
    process_peak_bytes: int      # the whole process, load included
    seconds: float

    @property
    def ratio(self) -> float:
        return self.estimate_bytes / self.process_peak_bytes


def estimate_bytes(point: Point) -> int:
    from lib.measure import backends
    return backends.for_model(point.model_id).run_need(point.spec(), weights_loaded=False) \
        .total_bytes


# Runs the command and writes its descendants' peak RSS to argv[1]. Linux gives a process the
# peak RSS of the memory it replaced at exec, so a command started straight from a big process
# (a test session holding models) would report that process's peak, not its own: this small
# launcher is what the command replaces.
LAUNCHER = ("import resource, subprocess, sys; status = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN)"
            ".ru_maxrss)); sys.exit(status)")


def measure(point: Point, env: dict[str, str] | None = None) -> Outcome:
    """Run `point` in a fresh CLI process; raises with its stderr if the run failed."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        # The CLI process and its worker: RUSAGE_CHILDREN keeps the larger of their peaks.
        status = subprocess.call(
            [sys.executable, "-c", LAUNCHER, peak.name,
             sys.executable, "-m", "lib", "run", "--json", *point.flags()],
            cwd=ROOT, env=env, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        process_peak_kib = int(peak.read() or 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{point} failed ({status}): {stderr[-2000:]}")
    document = json.loads(stdout)
    run_peak = int(document["summary"]["peak_memory_bytes"]["max"])
    return Outcome(point, estimate_bytes(point), run_peak, process_peak_kib * 1024, seconds)


def grid(models: list[str], quick: bool) -> list[Point]:
    shapes = [(1, 64), (4, 1024), (4, 2048), (8, 2048)] if not quick else [(4, 1024), (8, 2048)]
    return [Point(m, d, a, b, p) for m, d, a, (b, p) in itertools.product(
        models, ("float32", "bfloat16"), ("eager", "sdpa"), shapes)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "smollm2-360m"])
    parser.add_argument("--quick", action="store_true", help="two shapes per model and dtype")
    args = parser.parse_args()
    print(f"{'point':<58}{'estimate':>10}{'run peak':>10}{'process':>10}{'est/proc':>9}"
          f"{'time':>7}")
    for point in grid(args.models, args.quick):
        outcome = measure(point)
        print(f"{str(point):<58}{outcome.estimate_bytes / 1e9:>9.2f}G"
              f"{outcome.run_peak_bytes / 1e9:>9.2f}G{outcome.process_peak_bytes / 1e9:>9.2f}G"
              f"{outcome.ratio:>9.2f}{outcome.seconds:>6.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

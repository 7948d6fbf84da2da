"""How long a typical sweep takes: the 5-point batch sweep of the default model (prompt 64,
16 new tokens) with the sweep defaults (at least 3 repetitions and 0.5 s per point, one warm-up).
The product promise is under a minute on a 2-core CPU; this prints the figure, measured now,
with the model already loaded in its worker (its load time is printed apart). The points are
measured in interleaved rounds, and noisy points get extra repetitions, as in the app.

    .venv/bin/python benchmarks/sweep_speed.py [--values 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.measure import backends, runner, sweep
from lib.measure.factors import get_factor, parse_values
from lib.measure.cache import ModelCache  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402

BUDGET_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="1,2,4,8,16")
    args = parser.parse_args()
    base = RunSpec(prompt_tokens=64, new_tokens=16, repetitions=3, min_duration_s=0.5)
    cache = ModelCache(max_entries=1)
    started = time.perf_counter()
    cache.get(backends.for_model(base.model_id), base.model_id, base.device, base.dtype)
    print(f"model ready in {time.perf_counter() - started:.1f} s (not part of the sweep figure)")
    factor = get_factor("batch")
    started = time.perf_counter()
    try:
        with runner.SweepPoints(cache, "sweep_speed benchmark") as points:
            result = sweep.run_sweep(base, [(factor, parse_values(factor, args.values))],
                                     points)
    finally:
        cache.close()
    total = time.perf_counter() - started
    for point in result.points:
        reps = len(point.measurement.repetitions) if point.measurement else 0
        print(f"batch {point.values['batch']:>3}: {point.seconds:5.1f} s ({reps} repetitions)")
    for note in result.notes:
        print(note)
    verdict = "OK" if total < BUDGET_S else "OVER BUDGET"
    print(f"{len(result.points)}-point batch sweep: {total:.1f} s (budget {BUDGET_S:.0f} s, "
          f"ratio {total / BUDGET_S:.2f}) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

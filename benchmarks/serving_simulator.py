"""The serving simulator against a real server on this machine: one measured load test of the
local `transformers serve` (continuous batching) and the simulation of the same plan, with
this machine's step times measured on the model alone (lib.serving.step_fit), never fitted to
the curve. Prints, per level, TTFT p50, TPOT p50 and the achieved rate measured and simulated,
their errors, and the knee each finds.

    .venv/bin/python benchmarks/serving_simulator.py [--concurrency 1,2,4,8] [--requests 24]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.serving import simulate, step_fit  # noqa: E402
from lib.serving.measures import KNEE_GROWTH, knee, level_summary  # noqa: E402
from lib.serving.plan import CONCURRENCY, LoadPlan  # noqa: E402

MODEL = "smollm2-135m-instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,2,4,8")
    # 24 a level: with 16 the measured p90, where the knee is read, moved it between runs.
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    levels = tuple(float(v) for v in args.concurrency.split(","))
    fitted = step_fit.measure(MODEL)
    print(f"step fit (measured on the model alone, {fitted.samples} timings): "
          f"{fitted.fixed_s * 1e3:.1f} ms (+ {fitted.prefill_fixed_s * 1e3:.1f} ms when it "
          f"reads a prompt, + {fitted.batched_fixed_s * 1e3:.1f} ms when it decodes 2 or more) "
          f"+ {fitted.per_decode_s * 1e3:.2f} ms/sequence + "
          f"{fitted.per_prompt_s * 1e3:.3f} ms/prompt token + "
          f"{fitted.per_context_s * 1e6:.2f} us/context token", flush=True)
    command = [sys.executable, "-m", "lib", "load", "--target", "local", "--model", MODEL,
               "--concurrency", args.concurrency, "--requests", str(args.requests),
               "--prompt-tokens", str(args.prompt_tokens), "--new-tokens",
               str(args.new_tokens), "--json"]
    measured = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                         check=True).stdout)
    plan = LoadPlan(mode=CONCURRENCY, levels=levels, requests=args.requests,
                    warmup=measured["plan"]["warmup"], prompt_tokens=args.prompt_tokens,
                    new_tokens=args.new_tokens)
    engine, _ = simulate.engine_for_this(MODEL, plan, fitted=fitted)
    simulated = [level_summary(level, simulate.simulate_level(engine, plan, level), None)
                 for level in levels]
    print(f"{'level':>6} {'TTFT p50 meas':>14} {'sim':>8} {'err':>6}  {'TPOT p50 meas':>14} "
          f"{'sim':>8} {'err':>6}  {'req/s meas':>10} {'sim':>6} {'err':>6}  "
          f"{'TTFT p90 meas':>14} {'sim':>8} {'err':>6}")
    for real, sim in zip(measured["levels"], simulated):
        def pair(key, stat="p50"):
            a = (real.get(key) or {}).get(stat) if stat else real.get(key)
            b = (sim.get(key) or {}).get(stat) if stat else sim.get(key)
            return a, b, (b / a - 1) if a and b else None
        cells = [pair("ttft_s"), pair("tpot_s"), pair("achieved_requests_per_s", None),
                 pair("ttft_s", "p90")]      # the knee is read on the tail
        line = f"{real['offered']:>6g}"
        for index, (a, b, err) in enumerate(cells):
            scale, unit = (1, "") if index == 2 else (1e3, "ms")
            line += (f" {a * scale:>12.1f}{unit:>2} {b * scale:>6.1f}{unit:>2} "
                     f"{err:>+6.0%} " if a and b else "  -")
        print(line)
    # The knee is the first level whose p90 TTFT reaches KNEE_GROWTH x the lightest level's:
    # each level's growth, so a knee at the threshold shows as one (a level could go either way).
    base_real = (measured["levels"][0].get("ttft_s") or {}).get("p90")
    base_sim = (simulated[0].get("ttft_s") or {}).get("p90")
    print("p90 TTFT growth over the lightest level (knee at "
          f"{KNEE_GROWTH:g}x): measured " + ", ".join(
              f"{(r.get('ttft_s') or {}).get('p90', 0) / base_real:.2f}x"
              for r in measured["levels"][1:]) + "; simulated " + ", ".join(
              f"{(s_.get('ttft_s') or {}).get('p90', 0) / base_sim:.2f}x"
              for s_ in simulated[1:]))
    real_knee, sim_knee = measured.get("knee"), knee(simulated)
    print(f"knee: measured {real_knee and real_knee['saturated']}"
          + (f" (p90 TTFT {real_knee['growth']:.2f}x the lightest level's)" if real_knee else "")
          + f", simulated {sim_knee and sim_knee.saturated}"
          + (f" ({sim_knee.growth:.2f}x)" if sim_knee else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

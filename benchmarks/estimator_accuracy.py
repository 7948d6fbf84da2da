"""How close the estimator comes on this machine: measured TTFT and TPOT against
`lib.estimate.estimator.estimate(spec, "this")` over a grid of models, number formats, batch sizes and
prompt lengths (issue 11, item 5).

This machine's ceilings (`python -m lib machine`) are what the estimate is built from, so they
are measured first, on the quiet machine, and kept as the app keeps them (`--kept-ceilings`
uses the ones measured before). On a shared virtual machine the host may take a core away for
seconds, which no load figure inside it shows: a snapshot measured then halves the matmul rates.
So they are measured again (up to SETTLE_ATTEMPTS times) until two in a row agree within
SETTLED. Then each group of points (one batch size and prompt length, a few models x number
formats) is measured as the app sweeps it (`lib.measure.runner.SweepPoints`, interleaved rounds, the
sweep defaults of at least 3 repetitions and 0.5 s per point, one warm-up), so the medians are
what the app would show. Each point's estimate is set beside its median, and the script prints
per point the ratio estimate / measured, then for TTFT and TPOT the median absolute error |est/meas - 1|, the bias
(median signed error: positive means the estimator is slow, i.e. pessimistic) and whether the
goal is met: at most 25% for TPOT and 35% for TTFT on this CPU.

Other programs using the CPU slow the measurements and not the estimates: the load before the
run and during each point (other processes' share of the CPU, as each repetition recorded it)
is printed, with a warning above `lib.core.stats.BUSY_OTHER_CPU_PERCENT`. The ceilings are measured
once more after the grid (not kept): the drift, and the errors the estimates would have had
with those, tell whether the snapshot they came from was typical.

`--busy N` runs it on a busy machine on purpose: N CPU-bound processes (`benchmarks/busy.py`,
nice 0, always stopped at exit) run while the ceilings are measured again and the grid is
measured, as a classroom PC with other programs would. The ceilings are this machine's
capability (`lib.machine.capability`): a reading taken then never lowers the quiet figures, so the
estimates stay those of the quiet machine while the measured points slow down. `--both` runs
the grid quiet first, then with N busy processes (default 2), and prints the median TPOT error
in both conditions and how the estimates and the measurements moved between them.

    .venv/bin/python benchmarks/estimator_accuracy.py [--quick] [--json] [--kept-ceilings]
        [--busy N] [--both]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import busy  # noqa: E402
from lib.machine import activity, capability, ceilings, runlock
from lib.estimate import estimator
from lib.measure import runner, sweep
from lib.measure.factors import get_factor
from lib.measure.sweep_points import PointResult
from lib.core import stats
from lib.measure.cache import ModelCache  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402

GOAL = {"ttft_s": 0.35, "tpot_s": 0.25}        # median |estimate / measured - 1| at most
METRICS = {"ttft_s": "TTFT", "tpot_s": "TPOT"}
NEW_TOKENS = 16
LOAD_SAMPLE_S = 3.0                            # how long the load is watched before the run
BUSY_PERCENT = stats.BUSY_OTHER_CPU_PERCENT
# The ceilings measured after the grid differ from those before by more than this: the machine's
# speed moved (a busy host shows in no load figure), and the errors say as much about which
# few seconds the ceilings were measured in as about the estimator.
DRIFT_WARNING = 0.15
# Ceilings measured before the grid count as settled when two in a row agree within this on
# every figure (bandwidth, float32 and bfloat16 matmul, per-layer overhead). 2 threads of
# best-of-5 float32 matmuls, once a second on this quiet VM, read 76-195 GFLOP/s (1 thread:
# 94): a snapshot can catch the host lending one core.
SETTLED = 0.10
SETTLE_ATTEMPTS = 4
DEFAULT, GPT2, MIDDLE = "smollm2-135m-instruct", "gpt2", "smollm2-360m"
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Group:
    """One sweep: a batch size and a prompt length, its models x number formats interleaved."""
    batch_size: int
    prompt_tokens: int
    models: tuple[str, ...]
    dtypes: tuple[str, ...] = DTYPES


# 16 points: the default model at every batch x prompt x dtype; GPT-2 (another layer family,
# 12 wide layers) and SmolLM2-360M (2.7x the weights) at two corners each, so every model meets
# both batch sizes, both prompt lengths and both dtypes.
GRID = (Group(1, 64, (DEFAULT, GPT2)), Group(4, 256, (DEFAULT, GPT2)),
        Group(1, 256, (DEFAULT, MIDDLE)), Group(4, 64, (DEFAULT, MIDDLE)))
QUICK = (Group(1, 64, (DEFAULT, GPT2)),)


# Between the quiet and the busy run (--both) the median TPOT error may move by this much: the
# estimates are the quiet machine's capability either way.
BOTH_GOAL_POINTS = 0.10
BUSY_DEFAULT = 2


def measure_group(group: Group, cache: ModelCache, say) -> list[PointResult]:
    base = RunSpec(batch_size=group.batch_size, prompt_tokens=group.prompt_tokens,
                   new_tokens=NEW_TOKENS, repetitions=3, min_duration_s=0.5)
    factors = [(get_factor("model"), list(group.models)),
               (get_factor("dtype"), list(group.dtypes))]
    description = f"estimator accuracy, batch {group.batch_size}, prompt {group.prompt_tokens}"
    say(f"measuring {description}: {len(group.models) * len(group.dtypes)} points")
    with runner.SweepPoints(cache, description) as points:
        result = sweep.run_sweep(base, factors, points)
    for note in result.notes:
        say(f"  {note}")
    return result.points


def compare(point: PointResult, after: capability.Ceilings) -> dict[str, Any]:
    """One point: its settings, medians, estimates (on this machine as the app has it, and
    from the ceilings measured `after` the grid), ratios and the load while it ran."""
    spec = point.spec
    row: dict[str, Any] = {"model": spec.model_id, "dtype": spec.dtype,
                           "batch": spec.batch_size, "prompt": spec.prompt_tokens,
                           "new_tokens": spec.new_tokens}
    if not point.measured:
        return {**row, "skipped": point.skipped_reason}
    estimate = estimator.estimate(spec, "this")
    estimate_after = estimator.estimate_on(spec, after)
    for metric in METRICS:
        measured = point.summary.metrics[metric].median
        estimated = estimate.summary[metric]
        row[metric] = {"measured": measured, "estimated": estimated,
                       "ratio": estimated / measured,
                       "ratio_after": estimate_after.summary[metric] / measured}
    row["bound"] = dict(estimate.bound)
    row["repetitions"] = len(point.measurement.repetitions)
    busy = [rep.other_cpu_percent for rep in point.measurement.repetitions
            if rep.other_cpu_percent is not None]
    row["other_cpu_percent"] = statistics.median(busy) if busy else None
    return row


def errors(rows: list[dict[str, Any]], ratio: str = "ratio") -> dict[str, Any]:
    """Per metric: median |est/meas - 1|, bias (median signed error), worst, and the goal."""
    found = {}
    for metric, goal in GOAL.items():
        signed = [row[metric][ratio] - 1 for row in rows if "skipped" not in row]
        if not signed:
            continue
        median_error = statistics.median(abs(e) for e in signed)
        found[metric] = {"median_abs_error": median_error, "bias": statistics.median(signed),
                         "worst_abs_error": max(abs(e) for e in signed),
                         "goal": goal, "met": median_error <= goal}
    return found


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [row for row in rows if "skipped" not in row]
    summary: dict[str, Any] = {"points": len(measured), "skipped": len(rows) - len(measured)}
    summary.update(errors(rows))
    summary["with_ceilings_after"] = errors(rows, "ratio_after")
    busy = [row["other_cpu_percent"] for row in measured if row["other_cpu_percent"] is not None]
    summary["other_cpu_percent_median"] = statistics.median(busy) if busy else None
    summary["other_cpu_percent_max"] = max(busy) if busy else None
    summary["goal_met"] = all(summary.get(m, {}).get("met", False) for m in GOAL)
    return summary


def table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    header = (f"{'point':<42} {'TTFT ms':>8} {'est':>8} {'ratio':>6}   {'TPOT ms':>8} "
              f"{'est':>7} {'ratio':>6}  {'bound (prefill/decode)':<23} {'other CPU':>9}")
    lines = [header, "-" * len(header)]
    for row in rows:
        name = f"{row['model']} {row['dtype']} b{row['batch']} p{row['prompt']}"
        if "skipped" in row:
            lines.append(f"{name:<42} skipped: {row['skipped']}")
            continue
        ttft, tpot = row["ttft_s"], row["tpot_s"]
        bound = f"{row['bound'].get('prefill', '-')}/{row['bound'].get('decode', '-')}"
        busy = row["other_cpu_percent"]
        lines.append(
            f"{name:<42} {ttft['measured'] * 1e3:8.1f} {ttft['estimated'] * 1e3:8.1f} "
            f"{ttft['ratio']:6.2f}   {tpot['measured'] * 1e3:8.2f} {tpot['estimated'] * 1e3:7.2f} "
            f"{tpot['ratio']:6.2f}  {bound:<23} "
            f"{'?' if busy is None else f'{busy:.0f}%':>9}")
    lines.append("")
    for metric, name in METRICS.items():
        if metric not in summary:
            continue
        figures = summary[metric]
        verdict = "MET" if figures["met"] else "NOT MET"
        lines.append(f"{name}: median |est/meas - 1| {figures['median_abs_error']:.1%} (goal "
                     f"<= {figures['goal']:.0%}) {verdict}; bias {figures['bias']:+.1%} "
                     f"(+ = estimate slower); worst {figures['worst_abs_error']:.1%}")
    lines.append(f"{summary['points']} points measured, {summary['skipped']} skipped; goal "
                 f"{'met' if summary['goal_met'] else 'NOT met'}")
    after = summary.get("with_ceilings_after", {})
    if after:
        lines.append("with the ceilings measured after the grid instead: " + "; ".join(
            f"{name} {after[metric]['median_abs_error']:.1%} (bias "
            f"{after[metric]['bias']:+.1%})" for metric, name in METRICS.items()
            if metric in after))
    return "\n".join(lines)


def drift(before: capability.Ceilings, after: capability.Ceilings) -> dict[str, float]:
    """after / before - 1 for the figures the CPU estimate uses."""
    old, new = figures(before), figures(after)
    return {name: new[name] / old[name] - 1 for name in old if name in new}


def settled_ceilings(say) -> capability.Ceilings:
    """This machine's ceilings measured now and kept (as `python -m lib machine --refresh`),
    again until two in a row agree within SETTLED."""
    previous = None
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        found = ceilings.machine_ceilings("cpu", refresh=True)
        say(f"ceilings, measurement {attempt}: " + ", ".join(
            f"{name} {value:.3g}" for name, value in figures(found).items()))
        if previous is not None and all(
                abs(change) <= SETTLED for change in drift(previous, found).values()):
            return found
        previous = found
    say(f"WARNING: {SETTLE_ATTEMPTS} measurements of the ceilings did not agree within "
        f"{SETTLED:.0%}: the machine's speed is drifting, the estimates use the last one.")
    return found


def figures(found: capability.Ceilings) -> dict[str, float]:
    """The figures a CPU estimate uses, in GB/s, GFLOP/s and ms."""
    values = {"memory_bandwidth": found.memory_bandwidth_bytes_per_s / 1e9}
    for dtype in DTYPES:
        values[f"matmul_{dtype}"] = found.matmul_flops_per_s[dtype] / 1e9
    if found.layer_overhead_s:
        values["layer_overhead"] = found.layer_overhead_s * 1e3
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 points only (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--kept-ceilings", action="store_true",
                        help="use the ceilings measured before instead of measuring them now")
    parser.add_argument("--busy", type=int, default=None, metavar="N",
                        help="run with N CPU-bound processes (nice 0) taking the CPU meanwhile")
    parser.add_argument("--both", action="store_true",
                        help=f"run quiet, then with --busy N processes (default {BUSY_DEFAULT}),"
                             " and compare the median TPOT errors")
    args = parser.parse_args()
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    if args.busy is not None and args.busy < 0:
        parser.error("--busy takes a number of processes, 0 or more")
    count = BUSY_DEFAULT if args.busy is None else args.busy
    conditions = [0, count] if args.both else [count if args.busy is not None else 0]
    results = {}
    for processes in conditions:
        name = _condition(processes)
        if len(conditions) > 1:
            say(f"\n=== {name} ===")
        with busy.processes(processes):
            results[name] = run_condition(args, say)
        if not args.json:
            print(results[name]["table"])
    documents = {name: {key: value for key, value in result.items() if key != "table"}
                 for name, result in results.items()}
    if len(results) == 1:
        if args.json:
            print(json.dumps(next(iter(documents.values())), indent=1))
        return 0
    comparison = compare_conditions(*results.values())
    lines = describe_comparison(comparison, *results)
    if args.json:
        for line in lines:
            say(line)
        print(json.dumps({"conditions": documents, "comparison": comparison}, indent=1))
    else:
        print("\n".join(lines))
    return 0


def _condition(processes: int) -> str:
    return "quiet" if processes == 0 else f"busy ({processes} CPU-bound processes)"


def run_condition(args, say) -> dict[str, Any]:
    """The ceilings (measured now, or kept), the grid measured, each point's estimate beside
    it: the document --json prints, with the text table under "table"."""
    before = activity.sample(LOAD_SAMPLE_S)
    say(f"other programs' CPU share before the run: {before.other_cpu_percent:.0f}% "
        f"(load average {before.load_average:.2f})")
    if (before.other_cpu_percent or 0) > BUSY_PERCENT:
        say(f"WARNING: other programs take more than {BUSY_PERCENT:.0f}% of the CPU: the "
            "measurements will be slow, the estimates (this machine's quiet capability) will "
            "not.")
    found = ceilings.cached("cpu") if args.kept_ceilings else settled_ceilings(say)
    if found is None:
        say("no ceilings kept yet: measuring them")
        found = settled_ceilings(say)
    for line in ceilings.describe(found):
        say(line)
    if (found.other_cpu_percent or 0) > ceilings.BUSY_PERCENT:
        say(f"WARNING: the ceilings are provisional, measured while other programs took "
            f"{found.other_cpu_percent:.0f}% of the CPU: rerun when the machine is quiet.")
    if args.kept_ceilings:
        say(f"(kept ceilings, measured {found.measured_at})")

    groups = QUICK if args.quick else GRID
    distinct = {(model, dtype) for g in groups for model in g.models for dtype in g.dtypes}
    cache = ModelCache(max_entries=len(distinct))      # each model loads once for all groups
    started = time.perf_counter()
    try:
        measured = [point for group in groups for point in measure_group(group, cache, say)]
    finally:
        cache.close()
    seconds = time.perf_counter() - started
    with runlock.measurement_slot("estimator accuracy: the ceilings again"):
        after = ceilings.measure("cpu")                # not kept: only to see the drift
    rows = [compare(point, after) for point in measured]
    summary = summarize(rows)
    summary["seconds"] = seconds
    summary["other_cpu_percent_before"] = before.other_cpu_percent
    summary["ceilings_drift"] = drift(found, after)
    say("ceilings measured again after the grid (a single reading, not the capability): " +
        ", ".join(f"{name} {change:+.0%}" for name, change in summary["ceilings_drift"].items()))
    moved = [name for name, change in summary["ceilings_drift"].items()
             if abs(change) > DRIFT_WARNING]
    summary["ceilings_moved"] = moved
    if moved:
        say(f"WARNING: {', '.join(moved)} moved by more than {DRIFT_WARNING:.0%} between the "
            "ceilings kept before and one reading after the grid: the machine's speed drifts "
            "(or it is busy). Compare both lines of errors, and run again.")
    if (summary["other_cpu_percent_max"] or 0) > BUSY_PERCENT:
        say(f"WARNING: other programs took up to {summary['other_cpu_percent_max']:.0f}% of the "
            "CPU during some points: their measurements are slower than this machine can go.")
    text = "\n".join([table(rows, summary), (
        f"measured in {seconds:.0f} s; other programs' CPU share: "
        f"{before.other_cpu_percent:.0f}% before, median "
        f"{_percent(summary['other_cpu_percent_median'])} and at most "
        f"{_percent(summary['other_cpu_percent_max'])} during the points")])
    return {"ceilings": found.to_dict(), "ceilings_after": after.to_dict(), "points": rows,
            "summary": summary, "table": text}


def compare_conditions(quiet: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """Median TPOT error in each condition, and per point (matched by settings) how much the
    estimate and the measurement moved from quiet to busy."""
    def key(row):
        return row["model"], row["dtype"], row["batch"], row["prompt"]
    quiet_rows = {key(row): row for row in quiet["points"] if "skipped" not in row}
    pairs = [(quiet_rows[key(row)], row) for row in loaded["points"]
             if "skipped" not in row and key(row) in quiet_rows]
    errors_of = {name: result["summary"].get("tpot_s", {}).get("median_abs_error")
                 for name, result in (("quiet", quiet), ("busy", loaded))}
    found: dict[str, Any] = {"tpot_median_abs_error": errors_of, "goal_points": BOTH_GOAL_POINTS}
    if None not in errors_of.values():
        found["difference_points"] = errors_of["busy"] - errors_of["quiet"]
        found["met"] = abs(found["difference_points"]) <= BOTH_GOAL_POINTS
    if pairs:
        # The estimator's own error, apart from the moment: the estimates made on the busy
        # machine against what the quiet machine measured for the same points. A busy moment
        # slows the measurements (the app says "busy machine" then), not what the machine can do.
        found["tpot_busy_estimate_vs_quiet_measured_error"] = statistics.median(
            abs(b["tpot_s"]["estimated"] / q["tpot_s"]["measured"] - 1) for q, b in pairs)
        found["tpot_estimate_change_median"] = statistics.median(
            b["tpot_s"]["estimated"] / q["tpot_s"]["estimated"] - 1 for q, b in pairs)
        found["tpot_measured_slowdown_median"] = statistics.median(
            b["tpot_s"]["measured"] / q["tpot_s"]["measured"] for q, b in pairs)
    return found


def describe_comparison(comparison: dict[str, Any], quiet_name: str, busy_name: str) -> list[str]:
    errors_of = comparison["tpot_median_abs_error"]
    lines = ["", f"median TPOT error |est/meas - 1|: {quiet_name} {_share(errors_of['quiet'])}, "
                 f"{busy_name} {_share(errors_of['busy'])}"]
    if "difference_points" in comparison:
        lines.append(f"difference {comparison['difference_points'] * 100:+.1f} points (goal: "
                     f"within {BOTH_GOAL_POINTS * 100:.0f}) "
                     f"{'MET' if comparison['met'] else 'NOT MET'}")
    if "tpot_busy_estimate_vs_quiet_measured_error" in comparison:
        lines.append(f"the busy run's estimates against the quiet measurements: median TPOT error "
                     f"{_share(comparison['tpot_busy_estimate_vs_quiet_measured_error'])} "
                     f"(quiet: {_share(errors_of['quiet'])}): the estimator's error, not the "
                     "moment's")
    if "tpot_estimate_change_median" in comparison:
        lines.append(f"per point, busy against quiet: estimates moved by a median "
                     f"{comparison['tpot_estimate_change_median']:+.1%}, measured TPOT by x"
                     f"{comparison['tpot_measured_slowdown_median']:.2f}")
    return lines


def _share(value: float | None) -> str:
    return "?" if value is None else f"{value:.1%}"


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


if __name__ == "__main__":
    sys.exit(main())

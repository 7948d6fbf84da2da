"""`python -m lib load`: a server under load, from the command line.

    python -m lib load --target local --model smollm2-135m-instruct --budget-s 120 --json
    python -m lib load --target local --model smollm2-135m-instruct --rates 0.5,1,2 \\
        --requests 20 --prompt-tokens 64 --new-tokens 32 --json
    python -m lib load --target http://gpu-box:8000/v1 --model meta-llama/Llama-3.1-8B-Instruct \\
        --api-key-env MY_KEY --concurrency 1,4,16,64 --slo-ttft 0.5 --slo-tpot 0.03 --csv

`--target local` starts `transformers serve` with a catalog model on this computer (stopped when
done, or when this command is interrupted or killed); anything else is an OpenAI-compatible
server's base URL. The key is read from the environment variable `--api-key-env` names, never
from the command line (a command line is visible to every user of the machine and kept in shell
histories), and it is never printed or saved.

What is not given (the levels: `--rates`/`--concurrency` left out or `auto`; `--requests`,
`--new-tokens`, `--timeout`) is planned from a calibration against the started server to fit
`--budget-s` (`lib.serving.sizing`); `plan` in the JSON then holds the calibration, `timeout_s`,
`estimated_s`, `budget_s`, `fits_budget` and `measured_s`, and `elapsed_s` the whole command's
time. `--json` prints one object with a `levels` list; each level holds the metrics under `run`'s
names (`ttft_s`, `tpot_s`, `itl_s`, `e2e_s`, each with p50/p90/p99 where there are enough
samples) and `offered`, `achieved_requests_per_s`, `output_tokens_per_s`,
`output_tokens_per_s_per_user`, `goodput_requests_per_s`, `failed`. `--csv` prints one row per
level. Every argument is checked before anything starts.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
from typing import Callable

from lib.cli import arguments
from lib.core.errors import InvalidSpecError

Out = Callable[[str], None]


def add_parser(commands) -> argparse.ArgumentParser:
    from lib.serving import measures, sizing

    parser = commands.add_parser(
        "load", help="measure a server under load: a local transformers serve, or any "
        "OpenAI-compatible URL (vLLM, SGLang, TGI, Ollama, ...)")
    parser.add_argument("--target", default="local", type=arguments.text,
                        help="'local' (start transformers serve here with --model), the "
                             "server's base URL, such as http://host:8000/v1, or 'simulate' "
                             "(a continuous-batching engine on --hardware x --gpus, simulated: "
                             "nothing runs)")
    parser.add_argument("--hardware", default=None, type=arguments.text,
                        help="simulate: a hardware profile id (python -m lib hardware)")
    parser.add_argument("--gpus", default=1, type=arguments.count,
                        help="simulate: how many devices serve the model (tensor parallel)")
    parser.add_argument("--price-per-hour", default=None, type=arguments.price, metavar="USD",
                        help="your price of an hour, for the cost of a million tokens: per "
                             "device for a simulation (default: the profile's listed on-demand "
                             "price), the whole server's for a live one (default for a local "
                             "server: a cloud VM with this machine's cores)")
    parser.add_argument("--model", default=None, type=arguments.text,
                        help="local: a catalog model id (python -m lib models); URL: the served "
                             "model's name (default: the first the server lists)")
    parser.add_argument("--api-key-env", default=None, type=arguments.text, metavar="NAME",
                        help="read the API key from this environment variable (never given on "
                             "the command line, never saved)")
    parser.add_argument("--api", default="completions", choices=["completions", "chat"],
                        help="/v1/completions (default) or /v1/chat/completions")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--rates", type=arguments.text, metavar="R1,R2,...",
                       help="open loop: requests per second, one level each, or 'auto' "
                            "(the default: sized to this machine from a first answer's time)")
    shape.add_argument("--concurrency", type=arguments.text, metavar="N1,N2,...",
                       help="closed loop: requests in flight at once, one level each, or "
                            "'auto'")
    parser.add_argument("--budget-s", default=None, type=_number, metavar="S",
                        help="time for the calibration and every level, seconds (default "
                             f"{sizing.DEFAULT_BUDGET_S:g}); what you leave open (levels, "
                             "--requests, --new-tokens, --timeout) is sized to fit it")
    add_plan_arguments(parser)
    parser.add_argument("--dtype", default=None,
                        choices=["float32", "bfloat16", "float16", "float8"],
                        help="local: the server's weights and compute, float32 (default) or "
                             "bfloat16; simulate: the weights (default: as the model is "
                             "published, else bfloat16)")
    parser.add_argument("--continuous-batching", default=True,
                        action=argparse.BooleanOptionalAction,
                        help="local: let the server batch requests as they come (default on)")
    parser.add_argument("--timeout", default=None, type=_number, metavar="S",
                        help="seconds a request may take before it counts as failed (default: "
                             "a few times the longest wait the calibration predicts)")
    parser.add_argument("--slo", default=measures.DEFAULT_SLO,
                        choices=list(measures.SLO_PRESETS),
                        help="latency targets for goodput (default: MLPerf's server targets)")
    parser.add_argument("--slo-ttft", default=None, type=_number, metavar="S",
                        help="your own target for the time to first token, seconds")
    parser.add_argument("--slo-tpot", default=None, type=_number, metavar="S",
                        help="your own target for the time per output token, seconds")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--csv", action="store_true", help="print one CSV row per level")
    return parser


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per LoadPlan field that has one (`lib.serving.plan`), with its label, help,
    limits and default; a field the sizing plans when left open defaults to None (`request`
    fills it in) and its help says what it becomes."""
    from lib.serving import plan, sizing

    for name in plan.flagged_fields():
        info = plan.field_info(name)
        bounds = f" [{info['min']}..{info['max']}]" if info["min"] is not None else ""
        default = info["default"]
        said = sizing.SIZED_DEFAULTS.get(name, "{default}").format(default=default)
        kwargs = {"dest": name, "default": None if name in sizing.OPEN_FIELDS else default,
                  "help": f"{info['label']}: {info['help']}{bounds} (default: {said})"
                  .replace("%", "%%")}
        if info["choices"]:
            kwargs["choices"] = list(info["choices"])
        else:
            kwargs["type"] = _whole if info["type"] is int else _number
        parser.add_argument(info["flag"], **kwargs)


def _number(value: str) -> float:
    try:
        number = float(arguments.text(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value[:40]!r}: give a positive number")
    return number


def _whole(value: str) -> int:
    text = arguments.text(value).strip()
    if not text.isdecimal() or len(text) > 9:
        raise argparse.ArgumentTypeError(f"{value[:40]!r}: give a whole number (0 to "
                                         "999999999)")
    return int(text)


def levels(text: str, what: str) -> tuple[float, ...]:
    """'0.5, 1, 2' -> (0.5, 1.0, 2.0); a clear error for anything else."""
    found = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise InvalidSpecError(f"{what}: {part[:40]!r} is not a number; give numbers "
                                   "separated by commas, such as 1, 2, 4.") from None
        found.append(value)
    return tuple(found)


AUTO = "auto"
PLACEHOLDER_LEVELS = (1.0,)      # replaced by the sized levels


def request(args: argparse.Namespace):
    """(Target, LoadPlan, Slo, Sizing) from the arguments, every check done, nothing started."""
    from lib.serving import measures, session, sizing
    from lib.serving.plan import CONCURRENCY, RATE, LoadPlan, field_info, flagged_fields

    if args.concurrency is not None:
        mode, typed, flag = CONCURRENCY, args.concurrency, "--concurrency"
    else:
        mode, typed, flag = RATE, args.rates or AUTO, "--rates"
    auto_levels = typed.strip().lower() == AUTO
    values = PLACEHOLDER_LEVELS if auto_levels else levels(typed, flag)
    given = {name: getattr(args, name) for name in flagged_fields()}
    left_open = {name for name in sizing.OPEN_FIELDS if given[name] is None}
    # A field left open starts from its default; the sizing replaces it.
    plan = LoadPlan(mode=mode, levels=values,
                    **{**given, **{name: field_info(name)["default"] for name in left_open}})
    budget = sizing.Sizing(budget_s=args.budget_s or sizing.DEFAULT_BUDGET_S,
                           auto_levels=auto_levels, auto_requests="requests" in left_open,
                           auto_new_tokens="new_tokens" in left_open, timeout_s=args.timeout)
    if (args.slo_ttft is None) != (args.slo_tpot is None):
        raise InvalidSpecError("Give both --slo-ttft and --slo-tpot (or neither, for a preset).")
    slo = measures.Slo(args.slo_ttft, args.slo_tpot) if args.slo_ttft is not None \
        else measures.SLO_PRESETS[args.slo]
    key = None
    if args.api_key_env is not None:
        key = os.environ.get(args.api_key_env) if args.api_key_env.isidentifier() else None
        if not key:
            raise InvalidSpecError(f"The environment variable {args.api_key_env[:60]!r} is not "
                                   "set (or empty): export it with the API key, then run again.")
    if args.target == "local":
        from lib.models.catalog import get_entry
        if not args.model:
            raise InvalidSpecError("--target local needs --model: a catalog model id "
                                   "(python -m lib models lists them).")
        get_entry(args.model)              # an unknown id is refused here, before any start
        if args.dtype not in (None, "float32", "bfloat16"):
            raise InvalidSpecError(f"--dtype {args.dtype} is for simulations: a local server "
                                   "runs float32 or bfloat16.")
        target = session.Target(session.LOCAL, model_id=args.model,
                                dtype=args.dtype or "float32",
                                continuous_batching=args.continuous_batching, api=args.api,
                                price_per_hour=args.price_per_hour)
    else:
        from lib.serving.client import check_url
        target = session.Target(session.URL, url=check_url(args.target), model=args.model or "",
                                api=args.api, api_key=key, price_per_hour=args.price_per_hour)
    return target, plan, slo, budget


def run(args: argparse.Namespace, out: Out, say: Out, print_json: Callable) -> int:
    from lib.cli.output import waiting
    from lib.records import load_tests
    from lib.serving import summary

    if args.target == "simulate":
        return simulated(args, out, say, print_json)
    if args.hardware is not None:
        raise InvalidSpecError("--hardware is for --target simulate.")
    target, plan, slo, budget = request(args)

    def progress(words: str, fraction: float) -> None:
        say(f"{words} ({fraction:.0%})")
    outcome = load_tests.measure_and_save(target, plan, slo, say=say, on_progress=progress,
                                          on_wait=waiting(), sizing=budget)
    say(outcome.probe_note)
    say(f"saved as #{outcome.entry_id} (python -m lib export {outcome.entry_id})"
        if outcome.entry_id else f"not saved: {outcome.save_error}")
    loaded = outcome.load
    if args.json:
        return print_json({**summary.cli_dict(loaded, outcome.entry_id),
                           "elapsed_s": round(_elapsed_s(), 1)})
    rows = summary.level_rows(loaded)
    if args.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        out(buffer.getvalue().rstrip("\n"))
        return 0
    out(text_table(loaded))
    _cost_lines(loaded, out)
    return 0


def add_capacity_parser(commands) -> None:
    parser = commands.add_parser(
        "plan", help="how many devices of each data-centre profile serve a rate within "
        "latency targets, and what it costs (simulated)")
    parser.add_argument("--model", required=True, type=arguments.text,
                        help="a catalog model id (python -m lib models)")
    parser.add_argument("--rate", required=True, type=_number, help="requests per second")
    parser.add_argument("--ttft-p90", required=True, type=_number, metavar="S",
                        help="p90 time to first token to meet, seconds")
    parser.add_argument("--tpot-p90", required=True, type=_number, metavar="S",
                        help="p90 time per output token to meet, seconds")
    parser.add_argument("--prompt-tokens", type=arguments.count, default=1024)
    parser.add_argument("--new-tokens", type=arguments.count, default=256)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16",
                                                          "float8"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def capacity(args: argparse.Namespace, out: Out, print_json: Callable) -> int:
    """`python -m lib plan`: the cheapest count of each profile (lib.serving.capacity)."""
    from lib.serving import capacity as sizing_up

    best = sizing_up.options(args.model, args.rate, args.ttft_p90, args.tpot_p90,
                             args.prompt_tokens, args.new_tokens, args.dtype)
    said = sizing_up.words(best, args.rate, args.ttft_p90, args.tpot_p90)
    if args.json:
        return print_json({"provenance": "simulated", "model": args.model, "rate": args.rate,
                           "targets": {"ttft_p90_s": args.ttft_p90,
                                       "tpot_p90_s": args.tpot_p90},
                           "options": [o.to_dict() for o in best], "findings": said})
    out(f"SIMULATED: {args.model} at {args.rate:g} requests/s, p90 TTFT <= {args.ttft_p90:g} s, "
        f"p90 TPOT <= {args.tpot_p90:g} s")
    for option in best:
        out(f"  {option.name:<40} "
            + (f"{option.gpus:>2} devices" if option.gpus else "   none up to 16")
            + (f"  ${option.usd_per_hour:.2f}/hour" if option.usd_per_hour else "")
            + (f"  up to {option.most_rate:.3g} requests/s" if option.most_rate else ""))
    for sentence in said:
        out(f"- {sentence}")
    return 0




def simulated(args: argparse.Namespace, out: Out, say: Out, print_json: Callable) -> int:
    """`load --target simulate`: the plan's levels through the simulated engine (nothing
    runs), with the cost of a million tokens at each level, saved in History marked
    simulated."""
    from lib.serving import measures, simulate, summary
    from lib.serving.plan import CONCURRENCY, RATE, LoadPlan, field_info, flagged_fields

    if not args.model or not args.hardware:
        raise InvalidSpecError("--target simulate needs --model (a catalog model id) and "
                               "--hardware (a profile id: python -m lib hardware lists them).")
    if args.concurrency is not None:
        mode, typed, flag = CONCURRENCY, args.concurrency, "--concurrency"
    elif args.rates is not None and args.rates.strip().lower() != AUTO:
        mode, typed, flag = RATE, args.rates, "--rates"
    else:
        raise InvalidSpecError("A simulation needs its levels: --rates R1,R2,... or "
                               "--concurrency N1,N2,... (nothing runs to size them).")
    given = {name: getattr(args, name) for name in flagged_fields()}
    defaults = {"requests": simulate.STEADY_REQUESTS}
    plan = LoadPlan(mode=mode, levels=levels(typed, flag),
                    **{name: value if value is not None else
                       defaults.get(name, field_info(name)["default"])
                       for name, value in given.items()})
    if (args.slo_ttft is None) != (args.slo_tpot is None):
        raise InvalidSpecError("Give both --slo-ttft and --slo-tpot (or neither, for a preset).")
    slo = measures.Slo(args.slo_ttft, args.slo_tpot) if args.slo_ttft is not None \
        else measures.SLO_PRESETS[args.slo]
    loaded = simulate.simulate(args.model, args.hardware, args.gpus, plan, slo, args.dtype,
                               args.price_per_hour)
    from lib.records import load_tests
    entry_id, save_error = load_tests.save(loaded)         # in History, as the page saves it
    say(f"saved as #{entry_id} (python -m lib export {entry_id})" if entry_id
        else f"not saved: {save_error}")
    if args.json:
        return print_json({**summary.cli_dict(loaded, entry_id),
                           "elapsed_s": round(_elapsed_s(), 1)})
    out("SIMULATED, not measured: " + text_table(loaded).removeprefix("simulated: "))
    _cost_lines(loaded, out)
    return 0


def _cost_lines(loaded, out: Out) -> None:
    """Each level's cost (and energy) and the goodput sentence, or how to get them."""
    from lib.serving import pricing

    said = pricing.price_words(loaded)
    if said is None:
        out("No price for this server: give --price-per-hour for the cost of a million tokens.")
        return
    out(said)
    for line in pricing.level_lines(loaded):
        out(f"  {line}")
    finding = pricing.finding(loaded)
    if finding:
        out(f"- {finding}")


def _elapsed_s() -> float:
    """Since this command's process started: imports and the server's start included."""
    import time

    import psutil
    return time.time() - psutil.Process().create_time()


def text_table(loaded) -> str:
    from lib.core.metrics import format_seconds

    def seconds(dist, key):
        value = (dist or {}).get(key)
        return format_seconds(value) if value is not None else "-"
    lines = [f"{loaded.target['server']}",
             f"{'load':>14}  {'TTFT p50':>9} {'p90':>9} {'p99':>9}  {'TPOT p50':>9}  "
             f"{'req/s':>6} {'tok/s':>7} {'tok/s/user':>10} {'goodput':>8} {'failed':>6}"]
    for level in loaded.levels:
        s = level.summary

        def number(key, digits=3):
            return f"{s[key]:.{digits}g}" if s.get(key) is not None else "-"
        lines.append(f"{level.offered:>8g} {'conc' if loaded.plan.mode == 'concurrency' else 'rps':>5}"
                     f"  {seconds(s['ttft_s'], 'p50'):>9} {seconds(s['ttft_s'], 'p90'):>9} "
                     f"{seconds(s['ttft_s'], 'p99'):>9}  {seconds(s['tpot_s'], 'p50'):>9}  "
                     f"{number('achieved_requests_per_s'):>6} {number('output_tokens_per_s'):>7} "
                     f"{number('output_tokens_per_s_per_user'):>10} "
                     f"{number('goodput_requests_per_s'):>8} {s['failed']:>6}")
    lines += ["", "p90 needs 10 requests per level, p99 100 ('-': not enough)."]
    lines += [f"- {sentence}" for sentence in loaded.findings]
    return "\n".join(lines)

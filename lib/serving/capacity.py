"""How many devices a service needs: for each data-centre hardware profile, the fewest devices
whose simulated engine (`lib.serving.simulate`) serves `rate` requests per second within the
latency targets (p90 time to first token and p90 time per output token), and what that costs.

Counts are tried in powers of two up to 16 (tensor parallelism splits a model evenly), the
first that fits the weights and meets both targets wins; the answer ranks the profiles by
cost per hour (those without a price last, by device count). Each trial simulates
`REQUESTS` requests after `WARMUP` warm-up ones at that rate: a p90 over 300 requests moves by
a few percent between seeds, so a count that passes by less than that is a close call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.core.errors import ExplorerError, InvalidSpecError

COUNTS = (1, 2, 4, 8, 16)
REQUESTS = 300
WARMUP = 30
MAX_DOUBLINGS = 6                  # the most a count is asked to serve: 64x the rate asked
PRECISION = 0.1                    # the highest rate within targets, to 10%


@dataclass(frozen=True)
class Option:
    hardware: str
    name: str
    gpus: int | None                   # None: no count up to 16 meets the targets
    ttft_p90_s: float | None = None
    tpot_p90_s: float | None = None
    usd_per_hour: float | None = None  # all devices
    usd_per_million_tokens: float | None = None
    why_not: str = ""                  # when gpus is None, or what the fewer devices missed
    most_rate: float | None = None     # the highest rate these devices serve within targets
    usd_per_million_at_most: float | None = None     # ... and a million tokens' cost there

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def options(model_id: str, rate: float, ttft_p90_s: float, tpot_p90_s: float,
            prompt_tokens: int, new_tokens: int, dtype: str | None = None) -> list[Option]:
    """Every data-centre profile's cheapest count, best first (see the module)."""
    from lib.estimate import cost, hardware
    from lib.serving import simulate
    from lib.serving.plan import LoadPlan

    for value, name in ((rate, "rate"), (ttft_p90_s, "TTFT target"),
                        (tpot_p90_s, "TPOT target")):
        if not value > 0:
            raise InvalidSpecError(f"The {name} must be a positive number (got {value!r}).")
    plan = LoadPlan(levels=(rate,), requests=REQUESTS, warmup=WARMUP,
                    prompt_tokens=prompt_tokens, new_tokens=new_tokens)
    def meets(engine, at: float) -> tuple[bool, dict]:
        summary = level_summary(at, simulate.simulate_level(engine, plan, at), None)
        ttft = summary["ttft_s"]["p90"] if summary["ttft_s"] else None
        tpot = summary["tpot_s"]["p90"] if summary["tpot_s"] else None
        return (ttft is not None and tpot is not None and ttft <= ttft_p90_s and
                tpot <= tpot_p90_s), summary

    from lib.serving.measures import level_summary
    found = []
    for profile in hardware.table().values():
        if profile.interconnect_bytes_per_s is None:       # not a data-centre device
            continue
        price = cost.price(profile.id)
        missed = ""
        chosen = None
        for gpus in COUNTS:
            try:
                engine, _ = simulate.engine_for(model_id, profile.id, gpus, dtype)
                records = simulate.simulate_level(engine, plan, rate)
            except ExplorerError as exc:
                missed = str(exc).split(": use")[0]
                continue
            summary = level_summary(rate, records, None)
            ttft = summary["ttft_s"]["p90"] if summary["ttft_s"] else None
            tpot = summary["tpot_s"]["p90"] if summary["tpot_s"] else None
            if ttft is not None and tpot is not None and ttft <= ttft_p90_s and \
                    tpot <= tpot_p90_s:
                per_hour = price.usd_per_hour * gpus if price else None
                most, at_most = _most_rate(lambda at: meets(engine, at), rate, summary)
                chosen = Option(profile.id, profile.name, gpus, ttft, tpot, per_hour,
                                cost.per_million_tokens(price.usd_per_hour, gpus,
                                                        summary["output_tokens_per_s"])
                                if price else None, missed, most,
                                cost.per_million_tokens(price.usd_per_hour, gpus,
                                                        at_most["output_tokens_per_s"])
                                if price else None)
                break
            missed = (f"{gpus} device{'s' if gpus > 1 else ''}: p90 TTFT "
                      f"{ttft * 1000:.0f} ms, p90 TPOT {tpot * 1000:.1f} ms"
                      if ttft is not None and tpot is not None else
                      f"{gpus} devices: too few answers to tell")
        found.append(chosen or Option(profile.id, profile.name, None, why_not=missed))
    return sorted(found, key=lambda o: (o.gpus is None, o.usd_per_hour is None,
                                        o.usd_per_hour or 0, o.gpus or 0))


def _most_rate(meets, rate: float, summary: dict) -> tuple[float, dict]:
    """The highest rate that still meets the targets, to within `PRECISION` (doubling from
    `rate`, which meets them, then halving the gap), and its level's summary."""
    good, good_summary, bad = rate, summary, None
    for _ in range(MAX_DOUBLINGS):
        ok, found = meets(good * 2)
        if not ok:
            bad = good * 2
            break
        good, good_summary = good * 2, found
    while bad is not None and bad / good > 1 + PRECISION:
        middle = (good + bad) / 2
        ok, found = meets(middle)
        if ok:
            good, good_summary = middle, found
        else:
            bad = middle
    return good, good_summary


def comparison(best: list[Option], ttft_p90_s: float, tpot_p90_s: float) -> str | None:
    """The options that meet the targets side by side in one sentence: the most each serves
    within the targets and a million tokens' cost there."""
    from lib.serving import pricing

    return pricing.comparison(
        [(f"{o.gpus} x {o.name}", o.most_rate, o.usd_per_million_at_most)
         for o in best if o.gpus is not None],
        f"p90 time to first token {ttft_p90_s:g} s and p90 time per output token "
        f"{tpot_p90_s * 1000:g} ms")


def words(best: list[Option], rate: float, ttft_p90_s: float, tpot_p90_s: float) -> list[str]:
    """The answer in sentences: the cheapest, the runner-up, why the rest miss, and the setups
    side by side at the most each serves."""
    said = []
    priced = [o for o in best if o.gpus is not None and o.usd_per_hour is not None]
    if priced:
        first = priced[0]
        said.append(f"Cheapest: {first.gpus} x {first.name} at ${first.usd_per_hour:.2f} an "
                    f"hour (${first.usd_per_million_tokens:.2f} per million output tokens), "
                    f"p90 TTFT {first.ttft_p90_s * 1000:.0f} ms and p90 TPOT "
                    f"{first.tpot_p90_s * 1000:.1f} ms at {rate:g} requests/s.")
        if len(priced) > 1:
            second = priced[1]
            said.append(f"Runner-up: {second.gpus} x {second.name} at "
                        f"${second.usd_per_hour:.2f} an hour"
                        + (f" (fewer fall short: {second.why_not})" if second.why_not else "")
                        + ".")
    for option in best:
        if option.gpus is None:
            said.append(f"{option.name}: no count up to 16 meets the targets"
                        + (f" ({option.why_not})." if option.why_not else "."))
    side_by_side = comparison(best, ttft_p90_s, tpot_p90_s)
    if side_by_side:
        said.append(side_by_side)
    return said

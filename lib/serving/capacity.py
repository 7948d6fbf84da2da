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
    from lib.serving.measures import level_summary
    from lib.serving.plan import LoadPlan

    for value, name in ((rate, "rate"), (ttft_p90_s, "TTFT target"),
                        (tpot_p90_s, "TPOT target")):
        if not value > 0:
            raise InvalidSpecError(f"The {name} must be a positive number (got {value!r}).")
    plan = LoadPlan(levels=(rate,), requests=REQUESTS, warmup=WARMUP,
                    prompt_tokens=prompt_tokens, new_tokens=new_tokens)

    def meets(engine, at: float) -> tuple[bool, float | None, float | None]:
        """Whether `at` requests/s meet both p90 targets, and the two p90s."""
        summary = level_summary(at, simulate.simulate_level(engine, plan, at), None)
        ttft = summary["ttft_s"]["p90"] if summary["ttft_s"] else None
        tpot = summary["tpot_s"]["p90"] if summary["tpot_s"] else None
        return (ttft is not None and tpot is not None and ttft <= ttft_p90_s
                and tpot <= tpot_p90_s), ttft, tpot

    found = []
    for profile in hardware.table().values():
        if profile.interconnect_bytes_per_s is None:       # not a data-centre device
            continue
        price = cost.price(profile.id)

        def per_million(gpus: int, at: float) -> float | None:
            # Meeting the targets, the devices keep up: they write `at` x the answer's
            # tokens a second, steadily (a finite run's window would undercount them).
            return cost.per_million_tokens(price.usd_per_hour, gpus, at * new_tokens) \
                if price else None
        missed, chosen = "", None
        for gpus in COUNTS:
            try:
                engine, _ = simulate.engine_for(model_id, profile.id, gpus, dtype)
                ok, ttft, tpot = meets(engine, rate)
            except ExplorerError as exc:
                missed = _refusal_words(gpus, str(exc))
                continue
            if ok:
                most = _most_rate(lambda at: meets(engine, at)[0], rate)
                chosen = Option(profile.id, profile.name, gpus, ttft, tpot,
                                price.usd_per_hour * gpus if price else None,
                                per_million(gpus, rate), missed, most, per_million(gpus, most))
                break
            missed = (f"{gpus} device{'s' if gpus > 1 else ''} reach p90 TTFT "
                      f"{ttft * 1000:,.0f} ms and p90 TPOT {tpot * 1000:.1f} ms"
                      if ttft is not None and tpot is not None else
                      f"{gpus} devices: too few answers to tell")
        found.append(chosen or Option(profile.id, profile.name, None, why_not=missed))
    return sorted(found, key=lambda o: (o.gpus is None, o.usd_per_hour is None,
                                        o.usd_per_hour or 0, o.gpus or 0))


def _refusal_words(gpus: int, said: str) -> str:
    """Why a count was refused, short: the weights leave no KV cache, or the simulator's own
    sentence."""
    if "leave no room for a KV cache" in said:
        return f"{gpus} device{'s' if gpus > 1 else ''} can't hold the weights and a KV cache"
    return said.split(": use")[0]


def _most_rate(meets, rate: float) -> float:
    """The highest rate that still meets the targets, to within `PRECISION` (doubling from
    `rate`, which meets them, then halving the gap)."""
    good, bad = rate, None
    for _ in range(MAX_DOUBLINGS):
        if not meets(good * 2):
            bad = good * 2
            break
        good *= 2
    while bad is not None and bad / good > 1 + PRECISION:
        middle = (good + bad) / 2
        if meets(middle):
            good = middle
        else:
            bad = middle
    return good


def comparison(best: list[Option], rate: float, ttft_p90_s: float,
               tpot_p90_s: float) -> str | None:
    """The options that meet the targets side by side in one sentence, in the table's order
    (cheapest hour first, so cheapest per token at `rate` too): each one's cost per million
    output tokens at `rate`, and how far it stretches within the targets at what cost there.
    None with fewer than two."""
    met = [o for o in best if o.gpus is not None]
    if len(met) < 2:
        return None

    def dollars(value: float | None) -> str:
        return "no price" if value is None else f"${value:.2f} per million output tokens"
    parts = [f"{o.gpus} x {o.name} at {dollars(o.usd_per_million_tokens)}"
             + (f" (up to {o.most_rate:.3g} requests/s, {dollars(o.usd_per_million_at_most)}"
                " there)" if o.most_rate else "") for o in met]
    return (f"At {rate:g} requests/s within p90 time to first token {ttft_p90_s:g} s and p90 "
            f"time per output token {tpot_p90_s * 1000:g} ms, cheapest first: "
            + "; ".join(parts) + ".")


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
    side_by_side = comparison(best, rate, ttft_p90_s, tpot_p90_s)
    if side_by_side:
        said.append(side_by_side)
    return said

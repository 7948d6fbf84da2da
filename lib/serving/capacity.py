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
            from lib.serving.measures import level_summary
            summary = level_summary(rate, records, None)
            ttft = summary["ttft_s"]["p90"] if summary["ttft_s"] else None
            tpot = summary["tpot_s"]["p90"] if summary["tpot_s"] else None
            if ttft is not None and tpot is not None and ttft <= ttft_p90_s and \
                    tpot <= tpot_p90_s:
                per_hour = price.usd_per_hour * gpus if price else None
                chosen = Option(profile.id, profile.name, gpus, ttft, tpot, per_hour,
                                cost.per_million_tokens(price.usd_per_hour, gpus,
                                                        summary["output_tokens_per_s"])
                                if price else None, missed)
                break
            missed = (f"{gpus} device{'s' if gpus > 1 else ''}: p90 TTFT "
                      f"{ttft * 1000:.0f} ms, p90 TPOT {tpot * 1000:.1f} ms"
                      if ttft is not None and tpot is not None else
                      f"{gpus} devices: too few answers to tell")
        found.append(chosen or Option(profile.id, profile.name, None, why_not=missed))
    return sorted(found, key=lambda o: (o.gpus is None, o.usd_per_hour is None,
                                        o.usd_per_hour or 0, o.gpus or 0))


def words(best: list[Option], rate: float) -> list[str]:
    """The answer in sentences: the cheapest, the runner-up, and why the rest miss."""
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
    return said

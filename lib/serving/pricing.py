"""What a load run's levels cost, live or simulated: dollars per million output tokens at each
level's achieved throughput, per million tokens within the latency targets (goodput), and the
energy of a token at the boards' stated power (an upper bound), from the run's target.

Where the price comes from (`price_of`): a simulation keeps the price it was priced with (its
profile's listed one, or the user's); a local server on this machine is priced as a cloud VM
with this machine's cores (`lib.estimate.cost`), or the user's price when given; a server URL
only has the price its user gave (what an hour of that server costs them). A live run's
`devices` is 1: its price is the whole server's. Energy needs a stated board power: only
simulated profiles that state one have it.

`finding` says one level in one sentence (the most goodput, and its price per good token);
`comparison` sets several setups side by side in one sentence (the plan's options, or saved
loads).
"""

from __future__ import annotations

from typing import Any

from lib.core.text import one_line
from lib.estimate import cost
from lib.serving.records import SIMULATED

PRICED = ("cost_per_million_tokens", "cost_per_million_good_tokens", "joules_per_token")


def price_of(target: dict[str, Any]) -> cost.Price | None:
    """The price a load's `target` was priced with (saved in it), else the default for its kind
    (this machine's for a local server; none for a URL)."""
    saved = target.get("price")
    if isinstance(saved, dict) and "usd_per_device_hour" in saved:
        amount = saved["usd_per_device_hour"]
        # An imported document may hold anything here: only a real price prices anything.
        if isinstance(amount, int | float) and not isinstance(amount, bool) and \
                0 < amount <= cost.MOST_PER_HOUR:
            return cost.Price(float(amount), one_line(str(saved.get("source", "")), 300))
        return None
    if target.get("kind") == "local":
        return cost.price("this")
    return None


def saved_price(price: cost.Price | None) -> dict[str, Any] | None:
    """A price as a target keeps it (JSON), or None."""
    return None if price is None else {"usd_per_device_hour": price.usd_per_hour,
                                       "source": price.source}


def devices_of(target: dict[str, Any]) -> int:
    gpus = target.get("gpus")
    return gpus if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0 else 1


def board_power_w(target: dict[str, Any]) -> float | None:
    """One device's stated maximum power, for a simulated profile that states it."""
    from lib.estimate import hardware

    profile = hardware.table().get(target.get("hardware")) \
        if target.get("kind") == SIMULATED and isinstance(target.get("hardware"), str) else None
    return profile.board_power_w if profile else None


def with_cost(summary: dict[str, Any], price: cost.Price | None, devices: int,
              new_tokens: int, power_w: float | None = None) -> dict[str, Any]:
    """A level's summary with `cost_per_million_tokens` (at its output throughput),
    `cost_per_million_good_tokens` (only the answers within the targets), in dollars, and
    `joules_per_token` (at the boards' stated power; None without one)."""
    good = summary.get("goodput_requests_per_s")
    tokens = summary.get("output_tokens_per_s")
    return {**summary,
            "cost_per_million_tokens": None if price is None else cost.per_million_tokens(
                price.usd_per_hour, devices, tokens),
            "cost_per_million_good_tokens": None if price is None else cost.per_million_tokens(
                price.usd_per_hour, devices, good * new_tokens if good else None),
            "joules_per_token": cost.joules_per_token(power_w, devices, tokens)}


def levels(load) -> list[dict[str, Any]]:
    """Each level's summary with its cost and energy (`with_cost`), from the load's target."""
    target = load.target
    price, devices, power = price_of(target), devices_of(target), board_power_w(target)
    return [with_cost(level.summary, price, devices, load.plan.new_tokens, power)
            for level in load.levels]


def setup_words(target: dict[str, Any]) -> str:
    """'8 x NVIDIA H200 SXM 141GB', 'this machine's server', 'the server at URL'."""
    kind = target.get("kind")
    if kind == SIMULATED:
        return f"{devices_of(target)} x {target.get('hardware_name', target.get('hardware'))}"
    if kind == "local":
        return "this machine's server"
    endpoint = target.get("endpoint") if isinstance(target.get("endpoint"), dict) else {}
    return f"the server at {endpoint.get('base_url', 'its URL')}"


def model_words(target: dict[str, Any]) -> str:
    from lib.models.catalog import get_entry

    model_id = target.get("model_id")
    try:
        return get_entry(model_id).display_name.split(" (")[0]
    except Exception:                 # noqa: BLE001 - a reopened entry's model may be gone
        endpoint = target.get("endpoint") if isinstance(target.get("endpoint"), dict) else {}
        return str(model_id or endpoint.get("model") or "its model")


def best_level(load) -> tuple[int, dict[str, Any]] | None:
    """The level with the most goodput and a price per good token, or None."""
    priced = levels(load)
    best = max(range(len(priced)), default=None,
               key=lambda i: priced[i].get("goodput_requests_per_s") or 0.0)
    if best is None or not priced[best].get("goodput_requests_per_s") or \
            priced[best].get("cost_per_million_good_tokens") is None:
        return None
    return best, priced[best]


def finding(load) -> str | None:
    """'Simulated: 8 x H200 serve DeepSeek-R1 within the targets up to 11 requests/s, at $3.16
    per million tokens that meet them': the level with the most goodput, in one sentence (None
    without a price or any good request)."""
    found = best_level(load)
    if found is None:
        return None
    best, level = found
    target = load.target
    said, verb = ("Simulated", "serve") if target.get("kind") == SIMULATED else \
        ("Measured", "serves")
    return (f"{said}: {setup_words(target)} {verb} {model_words(target)} within the targets "
            f"(goodput) up to {level['goodput_requests_per_s']:.3g} requests/s (at "
            f"{_level_words(load, load.levels[best].offered)} offered), at "
            f"${level['cost_per_million_good_tokens']:.2f} per million tokens that meet them.")


def comparison(setups: list[tuple[str, float | None, float | None]], targets: str) -> str | None:
    """Setups side by side in one sentence: each (name, requests/s within the targets, dollars
    per million tokens that meet them), the cheapest per good token first; None with fewer
    than two."""
    known = [s for s in setups if s[1]]
    if len(known) < 2:
        return None
    known.sort(key=lambda s: (s[2] is None, s[2] or 0.0, -(s[1] or 0.0)))
    parts = [f"{name} up to {rate:.3g} requests/s"
             + (f" at ${dollars:.2f} per million tokens" if dollars is not None else
                " (no price)") for name, rate, dollars in known]
    return f"Within {targets}: " + "; ".join(parts) + "."


def load_comparison(loads: list) -> str | None:
    """Saved or fresh load runs of the same model side by side (`comparison`): each at its level
    with the most goodput."""
    setups = []
    for load in loads:
        found = best_level(load)
        name = setup_words(load.target) + (" (simulated)" if load.target.get("kind") ==
                                           SIMULATED else " (measured)")
        setups.append((name, found[1]["goodput_requests_per_s"] if found else None,
                       found[1]["cost_per_million_good_tokens"] if found else None))
    slo = loads[0].slo if loads else None
    return comparison(setups, slo.words() if slo else "the targets")


def price_words(load) -> str | None:
    """What the costs below assume, in one sentence (None without a price)."""
    price = price_of(load.target)
    if price is None:
        return None
    devices = devices_of(load.target)
    said = (f"Cost at ${price.usd_per_hour:.2f} per device-hour ({price.source}), "
            f"{devices} device{'s' if devices > 1 else ''}"
            if load.target.get("kind") == SIMULATED else
            f"Cost at ${price.usd_per_hour:.2f} an hour for the server ({price.source})")
    power = board_power_w(load.target)
    if power:
        said += (f"; energy at each device's stated maximum of {power:g} W, so an upper "
                 "bound (the host, network and cooling not counted)")
    return said + "."


def level_lines(load) -> list[str]:
    """Each level's cost (and energy where known) in words, one line per level; none without
    a price."""
    if price_of(load.target) is None:
        return []
    lines = []
    for level, priced in zip(load.levels, levels(load)):
        each, good = priced["cost_per_million_tokens"], priced["cost_per_million_good_tokens"]
        energy = priced["joules_per_token"]
        line = f"{_level_words(load, level.offered)}: " + (
            "no tokens delivered" if each is None else
            f"${each:.2f} per million output tokens"
            + ((f", ${good:.2f} per million within the targets" if good else
                ", none within the targets") if load.slo is not None else ""))
        if energy is not None:
            line += f"; at most {cost.joules_words(energy)} J per token"
        lines.append(line)
    return lines


def _level_words(load, offered: float) -> str:
    """'1 request/s', '4 requests/s', '8 concurrent'."""
    unit = load.plan.unit.replace("requests", "request") if offered == 1 else load.plan.unit
    return f"{offered:g} {unit}"


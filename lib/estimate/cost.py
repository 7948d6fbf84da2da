"""What serving costs: a device-hour's price (`data/prices.json`, with its source and date, or
the user's own), the cost of a million output tokens at a throughput, and the energy of a token
at the boards' stated power (`Hardware.board_power_w`).

    cost per million tokens = price per device-hour x devices / (tokens per second x 3600) x 1e6

At a load level, the throughput is the tokens actually delivered per second; "within target"
counts only the tokens of requests that met the latency targets (goodput), so a setup that is
cheap per token but late costs more per token that arrives in time.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import InvalidSpecError

PRICES_PATH = Path(__file__).with_name("data") / "prices.json"
MOST_PER_HOUR = 10_000.0        # dollars per device-hour: more is a typing slip


@dataclass(frozen=True)
class Price:
    usd_per_hour: float               # per device
    source: str

    def words(self) -> str:
        return f"${self.usd_per_hour:.2f} per device-hour ({self.source})"


@functools.cache
def _table() -> tuple[dict, dict]:
    document = json.loads(PRICES_PATH.read_text(encoding="utf-8"))
    return document["this"], document["prices"]


def price(hardware_id: str, override: float | None = None) -> Price | None:
    """The price of one device-hour of `hardware_id`: `override` when given (the user's), else
    the table's (`this`: a cloud VM with this machine's cores); None when neither is known."""
    if override is not None:
        if not (isinstance(override, (int, float)) and math.isfinite(override)
                and 0 < override <= MOST_PER_HOUR):
            raise InvalidSpecError(f"A price per device-hour is a dollar amount from 0 to "
                                   f"10,000 (got {override!r}).")
        return Price(float(override), "your price")
    this, prices = _table()
    if hardware_id == "this":
        cores = os.cpu_count() or 1
        return Price(float(this["usd_per_core_hour"]) * cores,
                     f"a cloud VM with this machine's {cores} cores, on demand: "
                     f"{this['source']}")
    row = prices.get(hardware_id)
    if row is None:
        return None
    return Price(float(row["usd_per_hour"]),
                 f"on-demand, range ${row['range']}, {row['date']}; {row['source']}")


def per_million_tokens(price_per_hour: float, devices: int,
                       tokens_per_s: float | None) -> float | None:
    """Dollars per million tokens at `tokens_per_s` (None when nothing was delivered)."""
    if not tokens_per_s:
        return None
    return price_per_hour * devices / (tokens_per_s * 3600) * 1e6


def joules_per_token(board_power_w: float | None, devices: int,
                     tokens_per_s: float | None) -> float | None:
    """Energy per output token at the boards' stated maximum draw: an upper bound (boards
    rarely draw their maximum; the host, network and cooling are not counted). None without a
    stated power or any tokens."""
    if not board_power_w or not tokens_per_s:
        return None
    return board_power_w * devices / tokens_per_s


def at_throughput(hardware_id: str, devices: int, tokens_per_s: float | None,
                  board_power_w: float | None, override: float | None = None) -> dict:
    """An estimate's cost of a million output tokens and energy of a token, writing
    `tokens_per_s` on `devices` devices of `hardware_id` (`price`: the listed one, or
    `override`), with the price's source; None where no price or power is known."""
    found = price(hardware_id, override)
    return {"usd_per_device_hour": found.usd_per_hour if found else None,
            "price_source": found.source if found else None,
            "cost_per_million_tokens": per_million_tokens(found.usd_per_hour, devices,
                                                          tokens_per_s) if found else None,
            "joules_per_token": joules_per_token(board_power_w, devices, tokens_per_s),
            "board_power_w": board_power_w}


def words(priced: dict, devices: int) -> str:
    """`at_throughput`'s answer in one sentence."""
    if priced["cost_per_million_tokens"] is None:
        said = ("no listed price for this hardware (give one: --price-per-hour)"
                if priced["usd_per_device_hour"] is None else "no tokens written")
    else:
        said = (f"${priced['cost_per_million_tokens']:,.2f} per million output tokens at "
                f"${priced['usd_per_device_hour']:.2f} per device-hour x {devices} "
                f"({priced['price_source']})")
    if priced["joules_per_token"] is not None:
        said += (f"; at most {joules_words(priced['joules_per_token'])} J per token (each "
                 "device at "
                 f"its stated {priced['board_power_w']:g} W)")
    return said


def joules_words(value: float) -> str:
    """Joules in plain digits: '160', '5.5', '0.22' (never '1.6e+02')."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"

"""LoadPlan: the one description of a load sweep (its shape, levels, and what each request asks).

Like `RunSpec` (`lib.core.spec`), each field carries its label, help, default and limits in
`metadata`; the command line's flags (`lib.cli.load_test`) and the Serving page's widgets
(`lib.ui.serving_form`) are made from there, so no other file restates a default or a limit.
`__post_init__` refuses an impossible plan with a sentence that says what to choose instead.

Two fields are given apart by each front end: `mode` (the CLI's `--rates` / `--concurrency`,
the page's "Load shape") and `levels` (typed as a list). A page widget may ask for less than
the plan allows where a widget can't hold the whole range (`page_min`, `page_max`: a slider);
everything the plan allows is open to the command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lib.core.errors import InvalidSpecError
from lib.core.spec import MAX_PROMPT_TOKENS

CONCURRENCY, RATE = "concurrency", "rate"
MODES = (CONCURRENCY, RATE)
ARRIVALS = ("poisson", "gamma", "constant")
MAX_CONCURRENCY = 256
MAX_RATE = 1000.0
MAX_REQUESTS = 10_000            # measured requests a level, and warm-up requests a level
MAX_LEVELS = 20
MAX_NEW_TOKENS = 4096
MAX_SEED = 2**31 - 1


def _field(default: Any, label: str, help: str, flag: str | None = None,
           minimum: float | None = None, maximum: float | None = None,
           choices: tuple[str, ...] | None = None, step: float | None = None,
           noun: str | None = None, page_min: float | None = None,
           page_max: float | None = None):
    """A LoadPlan field with everything its CLI flag, its widget and its refusal are made from
    (`noun`: how a refusal names it, where the label is too long for a sentence)."""
    return field(default=default, metadata={
        "flag": flag, "label": label, "help": help, "min": minimum, "max": maximum,
        "choices": choices, "step": step, "noun": noun or label,
        "page_min": minimum if page_min is None else page_min,
        "page_max": maximum if page_max is None else page_max})


@dataclass(frozen=True)
class LoadPlan:
    """One load sweep: the shape of the load, its levels, and what each request asks."""
    mode: str = _field(
        RATE, "Load shape",
        "Closed loop: N users, each sending again as soon as its answer ends. Open loop: "
        "requests arrive on a schedule whatever the server does, as on a public service.",
        choices=MODES)
    levels: tuple[float, ...] = (0.5, 1.0, 2.0)
    requests: int = _field(
        10, "Requests per level", "Measured ones. p90 needs 10, p99 needs 100.",
        "--requests", 1, MAX_REQUESTS)
    warmup: int = _field(
        2, "Warm-up requests",
        "Sent first at each level and left out, so the queue is already in its steady state. "
        "With a fixed number of users, at least one per user. After the measured ones, "
        "cool-down requests keep the load up until the last measured one ends; they are "
        "cancelled then and not counted either.", "--warmup", 0, MAX_REQUESTS)
    arrival: str = _field(
        "poisson", "Arrivals",
        "How an open loop's requests arrive: Poisson (independent users), gamma (clumps and "
        "lulls, as burstiness says) or constant (evenly spaced).", "--arrival",
        choices=ARRIVALS)
    burstiness: float = _field(
        1.0, "Burstiness",
        "1 is Poisson; below 1 burstier (clumps of requests), above 1 more even.",
        "--burstiness", 0.01, 100.0, step=0.1,
        # A slider over 0.01 to 100 can't be set to a value; past 4 arrivals are nearly even.
        page_min=0.1, page_max=4.0)
    prompt_tokens: int = _field(
        64, "Prompt length per request (tokens)",
        "Each request's prompt, counted with the served model's tokenizer.",
        "--prompt-tokens", 1, MAX_PROMPT_TOKENS, noun="Prompt length")
    new_tokens: int = _field(
        32, "Answer length per request (tokens)",
        "Tokens each answer is asked to write.", "--new-tokens", 1, MAX_NEW_TOKENS,
        noun="Output length")
    seed: int = _field(
        0, "Arrival schedule seed", "The same seed sends the same schedule again.",
        "--seed", 0, MAX_SEED, noun="Seed")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidSpecError(f"Load shape {self.mode!r}: choose {' or '.join(MODES)}.")
        if not self.levels:
            raise InvalidSpecError("Give at least one load level.")
        if len(self.levels) > MAX_LEVELS:
            raise InvalidSpecError(f"{len(self.levels)} load levels: use at most {MAX_LEVELS}.")
        for level in self.levels:
            if not isinstance(level, (int, float)) or not math.isfinite(level) or level <= 0:
                shown = f"{level:g}" if isinstance(level, (int, float)) else repr(level)
                raise InvalidSpecError(f"Load level {shown}: every level must be a positive "
                                       "number.")
            if self.mode == CONCURRENCY and (level != int(level) or level > MAX_CONCURRENCY):
                raise InvalidSpecError(f"Concurrency {level:g}: use whole numbers from 1 to "
                                       f"{MAX_CONCURRENCY}.")
            if self.mode == RATE and level > MAX_RATE:
                raise InvalidSpecError(f"Rate {level:g} requests/s: use at most {MAX_RATE:g}.")
        if len(set(self.levels)) != len(self.levels):
            raise InvalidSpecError("Each load level may appear once: remove the repeated one.")
        for name in WHOLE_FIELDS:
            info = field_info(name)
            _whole(getattr(self, name), info["noun"], info["min"], info["max"])
        if self.arrival not in ARRIVALS:
            raise InvalidSpecError(f"Arrivals {self.arrival!r}: choose one of "
                                   f"{', '.join(ARRIVALS)}.")
        low, high = field_info("burstiness")["min"], field_info("burstiness")["max"]
        if not (isinstance(self.burstiness, (int, float)) and math.isfinite(self.burstiness)
                and low <= self.burstiness <= high):
            raise InvalidSpecError(f"Burstiness {self.burstiness!r}: use a number from {low:g} "
                                   f"to {high:g} (1 = Poisson, lower = burstier).")

    @property
    def unit(self) -> str:
        return "concurrent requests" if self.mode == CONCURRENCY else "requests/s"

    def warmup_at(self, level: float) -> int:
        """A closed loop's first `level` requests start together into an empty server: at least
        that many are warm-up, so measured requests find the batch already full."""
        return max(self.warmup, int(level)) if self.mode == CONCURRENCY else self.warmup

    def estimate_s(self, seconds_per_request: float) -> float:
        """A rough duration for the queue notice (an estimate, from a guessed request time)."""
        total = 0.0
        for level in self.levels:
            count = self.requests + self.warmup_at(level)
            # A server rarely serves N users N times as fast: count them one after another
            # (closed loop), or at least at the rate's own pace (open loop).
            total += count * seconds_per_request if self.mode == CONCURRENCY \
                else max(count / level, count * seconds_per_request / 4) + seconds_per_request
        return total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> "LoadPlan":
        fields = {name: document[name] for name in cls.__dataclass_fields__ if name in document}
        if "levels" in fields:
            fields["levels"] = tuple(fields["levels"])
        return cls(**fields)


WHOLE_FIELDS = tuple(f.name for f in dataclasses.fields(LoadPlan) if f.type == "int")


def field_info(name: str) -> dict[str, Any]:
    """Flag, label, help, limits, choices and step of one LoadPlan field, with its default and
    its type: everything a CLI flag or a widget needs."""
    plan_field = next(f for f in dataclasses.fields(LoadPlan) if f.name == name)
    kind = {"int": int, "float": float}.get(str(plan_field.type), str)
    return {**plan_field.metadata, "default": plan_field.default, "type": kind}


def flagged_fields() -> tuple[str, ...]:
    """The fields with a CLI flag of their own, in the plan's order."""
    return tuple(f.name for f in dataclasses.fields(LoadPlan) if f.metadata.get("flag"))


def _whole(value: Any, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSpecError(f"{what} {value!r}: use a whole number from {low} to {high}.")

"""A load sweep sized to this machine: levels, requests, answer length and timeout planned from
a calibration (a few requests sent one at a time to the started server), to fit a time budget.

Why: a plan written for a fast machine (fixed rates, 20 requests a level, a 120 s timeout) fails
on a slow or busy one in the worst way: every request at the lightest load times out while a
heavier level, sent later, gets answers; the run says nothing true and takes far longer than
promised. The calibration measures what one answer costs here, now (a busy machine's slowness
included), and everything follows from it:

- capacity: one request at a time, the server finishes 1 / answer_s requests per second; open
  loop levels span `LIGHTEST` to `HEAVIEST` times that (well under it to clearly past it: a
  batching server carries a few times more, so the heaviest is set far enough past), closed
  loop levels are user counts from 1 up;
- the time each level takes is simulated as a one-request-at-a-time queue with that answer
  time (the seeded arrival schedule is the one the run will send): an upper bound, since
  batching only finishes sooner, and `SAFETY` more for a machine that gets busier meanwhile;
- requests per level, levels, and (when the user did not fix it) the answer length are the
  most that fit `budget_s`; the per-request timeout is `TIMEOUT_WAITS` times the longest wait
  the simulation expects, and never under `TIMEOUT_ANSWERS` answer times.

Everything here is arithmetic on numbers handed in, so tests use a made-up calibration. Why
requests failed, the calibration's answer time in hand, is said by
`lib.serving.findings.failure_sentences`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable

from lib.core.errors import InvalidSpecError, ServingError
from lib.serving.load import intervals
from lib.serving.plan import CONCURRENCY, RATE, LoadPlan

DEFAULT_BUDGET_S = 180.0        # a load sweep sized for a lesson: about 3 minutes
MIN_BUDGET_S = 20.0
MAX_BUDGET_S = 3600.0
LIGHTEST = 0.4                  # the lightest open-loop rate, as a share of the capacity
HEAVIEST = 4.0                  # the heaviest, as a multiple of it
USER_LADDERS = {5: (1, 2, 4, 8, 16), 4: (1, 2, 4, 8), 3: (1, 3, 8)}
LEVEL_COUNTS = (5, 4, 3)        # preferred first; 3 is the least that shows a knee
REQUEST_TIERS = (10, 5, 3)      # p90 needs 10; 3 is the least that gives a median
MAX_AUTO_REQUESTS = 20
MIN_AUTO_NEW_TOKENS = 8
SAFETY = 1.3                    # the machine may get this much slower after the calibration
TIMEOUT_WAITS = 2.0             # timeout: this many times the longest expected wait
TIMEOUT_ANSWERS = 4.0           # and never under this many answer times
LEVEL_OVERHEAD_S = 1.0          # per level: threads, the cool-down's cancellation
CALIBRATION_REQUESTS = 2        # the first may still pay one-off costs; the slower one counts
CALIBRATION_TOKENS = 16         # answers timed at most this long; longer ones follow the pace
CALIBRATION_SHARE = 0.1         # a first answer slower than this share of the budget is enough
# The plan's fields a run may leave open for the sizing to plan (`Sizing.auto_requests`,
# `auto_new_tokens`), and what a field's default becomes where the plan is sized, in words for
# the command line's help (`lib.cli.load_test`).
OPEN_FIELDS = ("requests", "new_tokens")
SIZED_DEFAULTS = {
    "requests": f"as many as fit the budget, at most {MAX_AUTO_REQUESTS}",
    "warmup": "{default}, fewer where a tight budget sizes the requests",
    "new_tokens": "{default}, shorter where a slow machine needs it to fit the budget"}


@dataclass(frozen=True)
class Calibration:
    """What one answer costs on this server now: requests sent one at a time."""
    answer_s: float               # end to end, the slower of the calibration requests
    ttft_s: float
    tpot_s: float                 # per output token after the first
    new_tokens: int               # the answer length it was measured with
    spent_s: float                # the calibration's own wall time
    other_cpu_percent: float | None = None

    def answer_for(self, new_tokens: int) -> float:
        """An answer of another length: the measured one, give or take tokens at the measured
        pace (never under the first token's time)."""
        return max(self.answer_s + (new_tokens - self.new_tokens) * self.tpot_s, self.ttft_s,
                   1e-3)

    @property
    def capacity_per_s(self) -> float:
        return 1.0 / self.answer_s

    def to_dict(self) -> dict[str, Any]:
        return {"answer_s": self.answer_s, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "new_tokens": self.new_tokens, "spent_s": self.spent_s,
                "other_cpu_percent": self.other_cpu_percent}


@dataclass(frozen=True)
class Sizing:
    """What the user fixed, and the time budget; the rest is planned from the calibration."""
    budget_s: float = DEFAULT_BUDGET_S
    auto_levels: bool = True
    auto_requests: bool = True
    auto_new_tokens: bool = True
    timeout_s: float | None = None     # None: derived from the calibration

    def __post_init__(self) -> None:
        if not (isinstance(self.budget_s, (int, float)) and math.isfinite(self.budget_s)
                and MIN_BUDGET_S <= self.budget_s <= MAX_BUDGET_S):
            raise InvalidSpecError(f"Time budget {self.budget_s!r} s: use {MIN_BUDGET_S:g} to "
                                   f"{MAX_BUDGET_S:g} seconds.")

    @property
    def calibrates(self) -> bool:
        return self.auto_levels or self.auto_requests or self.timeout_s is None


@dataclass(frozen=True)
class SizedPlan:
    """The plan to run, its timeout and its time estimate (an estimate: see `estimate`)."""
    plan: LoadPlan
    timeout_s: float
    estimated_s: float | None    # calibration + levels, with the SAFETY margin
    budget_s: float
    calibration: Calibration | None
    answer_s: float | None       # the expected answer time at the planned length
    fits: bool                   # False: even the smallest plan is over the budget
    sized: tuple[str, ...] = ()  # what was planned here rather than given

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict() if self.calibration else None,
                "answer_s": self.answer_s, "timeout_s": self.timeout_s,
                "estimated_s": self.estimated_s, "budget_s": self.budget_s,
                "fits_budget": self.fits, "sized": list(self.sized)}


# --- the arithmetic ----------------------------------------------------------------------------

def rate_levels(capacity_per_s: float, count: int) -> tuple[float, ...]:
    """`count` rates from LIGHTEST to HEAVIEST times the capacity, evenly on a log scale,
    rounded to two significant digits."""
    factors = [LIGHTEST * (HEAVIEST / LIGHTEST) ** (i / (count - 1)) for i in range(count)]
    rates = []
    for factor in factors:
        rate = _two_digits(factor * capacity_per_s)
        rates.append(rate if not rates or rate > rates[-1] else rates[-1] * 1.1)
    return tuple(rates)


def _two_digits(value: float) -> float:
    digits = 1 - math.floor(math.log10(value))
    return round(value, digits) or 10.0 ** -digits


def queue_times(plan: LoadPlan, level: float, answer_s: float) -> tuple[float, float]:
    """(the level's duration, its longest request) on a server that answers one request at a
    time in `answer_s`: an upper bound for a server that batches."""
    count = plan.requests + plan.warmup_at(level)
    if plan.mode == CONCURRENCY:
        # N users keep the server busy: one answer after another, each waiting for N.
        return count * answer_s, min(level, count) * answer_s
    arrival, free, longest = 0.0, 0.0, 0.0
    for gap in [0.0, *intervals(plan, level, count - 1)]:
        arrival += gap
        free = max(free, arrival) + answer_s
        longest = max(longest, free - arrival)
    return free, longest


def estimate(plan: LoadPlan, answer_s: float) -> tuple[float, float]:
    """(seconds for every level, the longest request) with the SAFETY margin."""
    total = longest = 0.0
    for level in plan.levels:
        duration, wait = queue_times(plan, level, answer_s * SAFETY)
        total += duration + LEVEL_OVERHEAD_S
        longest = max(longest, wait)
    return total, longest


def timeout_for(longest_s: float, answer_s: float) -> float:
    return round(max(TIMEOUT_WAITS * longest_s, TIMEOUT_ANSWERS * answer_s), 1)


def size(plan: LoadPlan, calibration: Calibration, sizing: Sizing) -> SizedPlan:
    """The largest plan that fits the budget: most levels, then most requests per level, then
    (where the user left it open) shorter answers. Never fewer than 3 levels and 3 requests:
    when even that is over the budget, it says so (`fits` False) with its honest estimate."""
    remaining = sizing.budget_s - calibration.spent_s
    sized = tuple(name for name, auto in (("levels", sizing.auto_levels),
                                          ("requests", sizing.auto_requests),
                                          ("new_tokens", sizing.auto_new_tokens),
                                          ("timeout_s", sizing.timeout_s is None)) if auto)
    lengths = [plan.new_tokens]
    while sizing.auto_new_tokens and lengths[-1] // 2 >= MIN_AUTO_NEW_TOKENS:
        lengths.append(lengths[-1] // 2)
    counts = LEVEL_COUNTS if sizing.auto_levels else (len(plan.levels),)
    tiers = REQUEST_TIERS if sizing.auto_requests else (plan.requests,)
    most = max(plan.requests, MAX_AUTO_REQUESTS) if sizing.auto_requests else plan.requests
    # A tight budget gives up warm-up requests before it shortens the answers (the server is
    # warm from the calibration; they only fill its queue first).
    warmups = sorted({plan.warmup, min(plan.warmup, 1), 0}, reverse=True) \
        if sizing.auto_requests else [plan.warmup]
    for new_tokens in lengths:
        answer_s = calibration.answer_for(new_tokens)
        for warmup in warmups:
            for tier in tiers:
                for count in counts:
                    shaped = _shaped(replace(plan, warmup=warmup), answer_s, count,
                                     new_tokens, sizing)
                    requests = _most_requests(shaped, answer_s, remaining, tier, most)
                    if requests is not None:
                        return _sized(replace(shaped, requests=requests), calibration,
                                      answer_s, sizing, True, sized)
    # Nothing fits: the smallest plan, with its honest estimate.
    answer_s = calibration.answer_for(lengths[-1])
    smallest = replace(_shaped(replace(plan, warmup=warmups[-1]), answer_s, counts[-1],
                               lengths[-1], sizing), requests=tiers[-1])
    return _sized(smallest, calibration, answer_s, sizing, False, sized)


def _shaped(plan: LoadPlan, answer_s: float, count: int, new_tokens: int,
            sizing: Sizing) -> LoadPlan:
    if not sizing.auto_levels:
        return replace(plan, new_tokens=new_tokens)
    levels = rate_levels(1.0 / answer_s, count) if plan.mode == RATE \
        else tuple(float(users) for users in USER_LADDERS[count])
    return replace(plan, levels=levels, new_tokens=new_tokens)


def _most_requests(plan: LoadPlan, answer_s: float, remaining_s: float, least: int,
                   most: int) -> int | None:
    """The most measured requests per level (from `least` to `most`) that fit, or None."""
    if estimate(replace(plan, requests=least), answer_s)[0] > remaining_s:
        return None
    low, high = least, most
    while low < high:                      # the estimate grows with the request count
        middle = (low + high + 1) // 2
        if estimate(replace(plan, requests=middle), answer_s)[0] <= remaining_s:
            low = middle
        else:
            high = middle - 1
    return low


def _sized(plan: LoadPlan, calibration: Calibration, answer_s: float, sizing: Sizing,
           fits: bool, sized: tuple[str, ...]) -> SizedPlan:
    levels_s, longest = estimate(plan, answer_s)
    timeout = sizing.timeout_s if sizing.timeout_s is not None \
        else timeout_for(longest, answer_s * SAFETY)
    return SizedPlan(plan, timeout, round(calibration.spent_s + levels_s, 1), sizing.budget_s,
                     calibration, answer_s, fits, sized)


def unsized(plan: LoadPlan, timeout_s: float, budget_s: float) -> SizedPlan:
    """Everything given by the user: nothing to calibrate, no estimate to promise."""
    return SizedPlan(plan, timeout_s, None, budget_s, None, None, True, ())


# --- the calibration ---------------------------------------------------------------------------

def calibration_tokens(new_tokens: int) -> int:
    return min(new_tokens, CALIBRATION_TOKENS)


def calibrate(send: Callable[[int], Any], clock: Callable[[], float],
              other_share: Callable[[], Any] | None = None,
              new_tokens: int = CALIBRATION_TOKENS,
              budget_s: float = DEFAULT_BUDGET_S) -> Calibration:
    """Up to `CALIBRATION_REQUESTS` answers of `new_tokens`, one after another (`send(i)`
    returns a RequestRecord); the slower one counts. One is enough when it alone took more than
    `CALIBRATION_SHARE` of the budget (a slow machine must keep its budget for the load).
    Raises CalibrationError saying what happened when one got no answer."""
    from lib.serving.records import OK, SHORT

    began = clock()
    answers, failures = [], []
    for number in range(CALIBRATION_REQUESTS):
        record = send(number)
        if record.status in (OK, SHORT) and record.e2e_s is not None:
            answers.append(record)
            if record.e2e_s > CALIBRATION_SHARE * budget_s:
                break
        else:
            # One that got no answer is enough to know: the next would wait as long.
            failures.append(record.reason or record.status)
            break
    if failures:
        raise CalibrationError(
            "The server did not answer the first requests, sent one at a time to measure how "
            f"long an answer takes here ({'; '.join(dict.fromkeys(failures))}). Check that it "
            "works with one request, or give the levels, requests and timeout yourself.")
    slowest = max(answers, key=lambda r: r.e2e_s)
    tpots = [r.tpot_s for r in answers if r.tpot_s is not None]
    ttft = slowest.ttft_s if slowest.ttft_s is not None else slowest.e2e_s
    tpot = statistics.median(tpots) if tpots else 0.0
    share = other_share() if other_share is not None else None
    return Calibration(answer_s=slowest.e2e_s, ttft_s=ttft, tpot_s=tpot,
                       new_tokens=new_tokens, spent_s=clock() - began,
                       other_cpu_percent=share)


class CalibrationError(ServingError):
    """The calibration requests got no answer: nothing to size the plan from."""

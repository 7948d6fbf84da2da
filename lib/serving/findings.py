"""What a load run shows, said in sentences: the knee or its absence, throughput levelling
off, goodput against the latency targets, failed and short answers, why requests failed, and
the plan a calibration sized (`plan_words`, said before the requests are sent).

Every sentence is computed from the per-level summaries (`lib.serving.measures`) and says only
as much as the data carries: a difference within the spread is said to be one. Failures are
explained first (`failure_sentences`): a timeout at the lightest load is this machine being
slower than the timeout allows (the calibration's answer time says by how much), not a point
of the curve; past the knee it is the queue growing without end.
"""

from __future__ import annotations

import math
from typing import Any

from lib.core.metrics import format_seconds
from lib.serving.measures import KNEE_GROWTH, Knee, Slo, knee, ttft_tail
from lib.serving.sizing import TIMEOUT_ANSWERS, SizedPlan

PLATEAU = 1.10             # throughput that grows less than 10% between levels has levelled off
KEEPS_UP = 0.90            # an open loop achieving less than 90% of its offered rate falls behind
# Achieving less than half the offered rate is past capacity even where the times grew too
# little to show a knee (few requests a level): the window's last answer can't explain that.
FAR_BEHIND = 0.5

def findings(summaries: list[dict[str, Any]], mode: str, unit: str,
             slo: Slo | None) -> list[str]:
    """What the levels show, in plain sentences, each only as far as the data carries it."""
    said: list[str] = []
    levels = sorted(summaries, key=lambda s: s["offered"])
    measured_levels = [s for s in levels if s.get("ttft_s")]
    if len(measured_levels) >= 2:
        found = knee(measured_levels)
        said.append(_knee_sentence(found, measured_levels, mode, unit))
        said.extend(_throughput_sentences(measured_levels, unit))
    elif measured_levels:
        said.append("Only one level has numbers: add more levels to see how latency grows with "
                    "load.")
    if slo is not None:
        said.extend(_goodput_sentences(levels, unit, slo))
    for level in levels:
        if level["failed"]:
            reasons = "; ".join(f"{reason} ({count})" for reason, count
                                in level["failure_reasons"].items())
            said.append(f"At {_level(level['offered'], unit)}, {level['failed']} of "
                        f"{level['requests']} requests failed: {reasons}.")
        if level["stopped_early"]:
            count = level["stopped_early"]
            said.append(f"At {_level(level['offered'], unit)}, {count} "
                        f"{'answer' if count == 1 else 'answers'} of {level['requests']} "
                        "stopped before the asked length: the server ended "
                        f"{'it' if count == 1 else 'them'} at an end-of-text token (it ignored "
                        "the fixed length asked, or does not accept one). They are counted "
                        "with the tokens they had.")
    return said


def level_words(offered: float, unit: str) -> str:
    """'4 concurrent requests', '1 concurrent request', '0.5 requests/s', '1 request/s'."""
    if offered == 1:
        unit = unit.replace("requests", "request", 1)
    return f"{offered:g} {unit}"


_level = level_words


def _knee_sentence(found: Knee | None, levels: list[dict[str, Any]], mode: str,
                   unit: str) -> str:
    first, last = levels[0], levels[-1]
    behind = [s for s in levels if mode == "rate" and s["achieved_requests_per_s"] is not None
              and s["achieved_requests_per_s"] < FAR_BEHIND * s["offered"]]
    if found is None and behind:
        # The times did not grow clearly (too few requests for a queue to build up), but the
        # server finished fewer requests than were offered: it did not keep up, and saying it
        # did would contradict the throughput below.
        level = behind[0]
        return (f"No clear knee in the times, but at {_level(level['offered'], unit)} the server "
                f"finished only {level['achieved_requests_per_s']:.2g} requests/s of the "
                f"{level['offered']:g} offered: it was past its capacity there. With "
                f"{level['requests']} requests per level the queue had little time to grow; a "
                "larger time budget (more requests per level) shows the knee more clearly.")
    if found is None:
        low, _ = ttft_tail(first)
        high, statistic = ttft_tail(last)
        change = "did not grow" if high <= low else \
            f"grew {high / low:.1f}x, less than {KNEE_GROWTH:g}x or within the spread"
        return (f"No knee up to {_level(last['offered'], unit)}: the {statistic} time to first "
                f"token went from {format_seconds(low)} at the lightest load to "
                f"{format_seconds(high)} ({change}), so the server kept up. Try higher levels "
                "to find where it saturates.")
    after = next(s for s in levels if s["offered"] == found.saturated)
    before = next(s for s in levels if s["offered"] == found.last_ok)
    grew = f"the {found.statistic} {found.what} grows {found.growth:.1f}x " \
           f"({format_seconds(found.before_s)} at the lightest load → " \
           f"{format_seconds(found.after_s)} at {_level(found.saturated, unit)})" + \
           (" while the first token still came about as fast: the server takes new requests "
            "in at once and shares its work among them, so each whole answer slows down"
            if found.metric == "e2e_s" else "")
    behind = mode == "rate" and after["achieved_requests_per_s"] is not None \
        and after["achieved_requests_per_s"] < KEEPS_UP * after["offered"]
    more = (after["output_tokens_per_s"] or 0) / before["output_tokens_per_s"] \
        if before.get("output_tokens_per_s") else None
    if behind:
        return (f"Above {_level(found.last_ok, unit)} {grew}: the server is saturated. It "
                f"finished only {after['achieved_requests_per_s']:.2g} requests/s of the "
                f"{after['offered']:g} offered, so "
                + ("more and more answers share it, each slower than the last."
                   if found.metric == "e2e_s" else
                   "requests wait in a growing queue before it starts on them."))
    if more is not None and more < PLATEAU:
        change = (f"fell from {before['output_tokens_per_s']:.3g} to "
                  f"{after['output_tokens_per_s']:.3g} tokens/s" if more < 1 else
                  f"grew only {more:.2f}x")
        return (f"Above {_level(found.last_ok, unit)} {grew}, while the total output {change}: "
                "the server is saturated, and extra requests only wait in a queue.")
    growth = f", while the total output still grew {more:.1f}x" if more is not None else ""
    return (f"Above {_level(found.last_ok, unit)} {grew}{growth}: requests now wait for each "
            "other. The server shares its time among them, close to what it can carry; "
            "more load will mostly add waiting.")


def _throughput_sentences(levels: list[dict[str, Any]], unit: str) -> list[str]:
    tokens = [(s["offered"], s["output_tokens_per_s"]) for s in levels
              if s["output_tokens_per_s"] is not None]
    if len(tokens) < 2:
        return []
    best_offered, best = max(tokens, key=lambda item: item[1])
    first_offered, first = tokens[0]
    last_offered, last = tokens[-1]
    if best > first * PLATEAU:
        said = [f"Total output rose from {first:.3g} tokens/s at "
                f"{_level(first_offered, unit)} to {best:.3g} tokens/s at "
                f"{_level(best_offered, unit)} ({best / first:.1f}x)."]
    elif last < first / PLATEAU:
        said = [f"Total output fell from {first:.3g} tokens/s at {_level(first_offered, unit)} "
                f"to {last:.3g} tokens/s at {_level(last_offered, unit)}: more load made this "
                "server produce less, not more."]
    else:
        said = [f"Total output stayed near {first:.3g} tokens/s from "
                f"{_level(first_offered, unit)} on: more load did not make the server produce "
                "more."]
    later = [(offered, value) for offered, value in tokens if offered > best_offered]
    if best > first * PLATEAU and later and best > 0:
        if later[-1][1] < best / PLATEAU:
            said.append(f"Past {_level(best_offered, unit)} the total output fell, to "
                        f"{later[-1][1]:.3g} tokens/s at {_level(later[-1][0], unit)}: beyond "
                        "its capacity the server produced less, and extra requests only wait "
                        "longer.")
        elif all(value < best * PLATEAU for _, value in later):
            said.append(f"Past {_level(best_offered, unit)} the total output stops growing: "
                        "the server is at its capacity, and extra requests only wait longer.")
    users = [(s["offered"], s["output_tokens_per_s_per_user"]) for s in levels
             if s["output_tokens_per_s_per_user"]]
    if len(users) >= 2 and users[-1][1] < users[0][1] / PLATEAU:
        said.append(f"Each user's answer streamed at {users[0][1]:.3g} tokens/s at "
                    f"{_level(users[0][0], unit)} and {users[-1][1]:.3g} tokens/s at "
                    f"{_level(users[-1][0], unit)}: the server shares its speed among the "
                    "requests it runs together (the trade-off curve shows it).")
    return said


def _goodput_sentences(levels: list[dict[str, Any]], unit: str, slo: Slo) -> list[str]:
    rated = [s for s in levels if s["goodput_requests_per_s"] is not None]
    if not rated:
        return []
    best = max(rated, key=lambda s: s["goodput_requests_per_s"])
    if best["goodput_requests_per_s"] == 0:
        return [f"No request met the targets ({slo.words()}) at any level."]
    said = f"Goodput, requests per second that met {slo.words()}, peaks at " \
           f"{best['goodput_requests_per_s']:.2g} requests/s at {_level(best['offered'], unit)} " \
           f"({best['good_fraction']:.0%} of its requests met them)"
    worse = [s for s in rated if s["offered"] > best["offered"]]
    if worse:
        said += f"; at {_level(worse[-1]['offered'], unit)} {worse[-1]['good_fraction']:.0%} did"
    return [said + "."]


def failure_sentences(summaries: list[dict[str, Any]], sizing: dict[str, Any] | None,
                      unit: str) -> list[str]:
    """Why requests failed, for every level where all did and for the lightest level where any
    did: a timeout at light load is this machine being slower than the timeout allows, not a
    point of the curve. Reads a saved document's sizing defensively (it may be imported)."""
    sizing = sizing if isinstance(sizing, dict) else {}
    calibration = sizing.get("calibration") if isinstance(sizing.get("calibration"), dict) \
        else {}
    answer_s = _number(sizing.get("answer_s")) or _number(calibration.get("answer_s"))
    timeout_s = _number(sizing.get("timeout_s"))
    busy = _number(calibration.get("other_cpu_percent"))
    levels = sorted(summaries, key=lambda s: s["offered"])
    said = []
    for position, level in enumerate(levels):
        failed, requests = level.get("failed", 0), level.get("requests", 0)
        if not failed or (level.get("completed") and position > 0):
            continue
        where = level_words(level["offered"], unit)
        timed_out = any("timeout" in reason for reason in level.get("failure_reasons", {}))
        head = (f"At {where} every one of the {requests} requests failed, so this level has "
                "no point on the charts" if not level.get("completed")
                else f"At {where}, the lightest load, {failed} of {requests} requests failed")
        if not timed_out:
            said.append(f"{head}: the server refused or broke off the answers (the reasons "
                        "are below).")
        elif answer_s is not None and timeout_s is not None and answer_s >= timeout_s:
            said.append(f"{head}: each answer takes about {answer_s:.0f} s here, longer than "
                        f"the {timeout_s:g} s timeout. Raise the timeout to at least "
                        f"{math.ceil(TIMEOUT_ANSWERS * answer_s)} s, ask for shorter answers, "
                        "or pick a smaller model.")
        elif answer_s is not None and position == 0:
            machine = (f" (other programs used {busy:.0f}% of the CPU while it was timed)"
                       if busy is not None else "")
            said.append(f"{head}: one answer alone took {answer_s:.1f} s here{machine}, yet "
                        f"these got none within the {_seconds(timeout_s)} timeout, so the "
                        "server or this machine became much slower after it was timed. Run "
                        "again when the machine is quieter, or raise the timeout.")
        elif position == 0:
            said.append(f"{head}: no answer came within the {_seconds(timeout_s)} timeout even "
                        "at the lightest load, so each answer takes longer than that here. "
                        "Size the load to this machine (it times one answer first), raise the "
                        "timeout, or ask for shorter answers.")
        else:
            said.append(f"{head}: requests queued longer than the {_seconds(timeout_s)} "
                        "timeout. Past its capacity the server falls behind and the queue "
                        "grows without end: this level is past the knee.")
    return said


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0 else None


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value is not None else "request's"


def plan_words(sized: SizedPlan) -> str:
    """The sized plan in one sentence for the progress line and the CLI."""
    plan = sized.plan
    levels = ", ".join(f"{level:g}" for level in plan.levels)
    if sized.calibration is None:
        return (f"Plan: {levels} {plan.unit}, {plan.requests} measured requests each, "
                f"timeout {sized.timeout_s:g} s.")
    calibration = sized.calibration
    busy = "" if calibration.other_cpu_percent is None else \
        f" (other programs used {calibration.other_cpu_percent:.0f}% of the CPU meanwhile)"
    fit = "within" if sized.fits else "over"
    return (f"One answer of {calibration.new_tokens} tokens took {calibration.answer_s:.1f} s "
            f"here{busy}. Plan: {levels} {plan.unit}, {plan.requests} measured requests each, "
            f"answers of {plan.new_tokens} tokens, timeout {sized.timeout_s:g} s; about "
            f"{sized.estimated_s:.0f} s in all (an estimate, {fit} the {sized.budget_s:g} s "
            "budget).")

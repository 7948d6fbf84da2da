"""A load run as a saved document, reopened from its raw records, and as CSV rows.

The document keeps every request's raw timestamps (relative to the run's start) and the plan;
the per-level summaries, the knee and the findings are saved too, for people reading an export,
but `open_load` derives them again from the records, as History does for runs and sweeps. The
target is saved by `Endpoint.public()`: never the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.core import schema
from lib.serving import findings, measures
from lib.serving.load import LevelRun
from lib.serving.plan import LoadPlan
from lib.serving.measures import Slo
from lib.serving.records import PHASES, SIMULATED, STATUSES, RequestRecord

KIND = "load"
MAX_LOAD_RECORDS = 100_000       # requests in one imported load run


@dataclass(frozen=True)
class Level:
    offered: float
    records: tuple[RequestRecord, ...]
    summary: dict[str, Any]
    late_sends: int = 0
    max_late_s: float = 0.0
    stopped: bool = False


@dataclass(frozen=True)
class LoadResult:
    """A whole load run, as measured or as reopened."""
    target: dict[str, Any]         # kind "local" | "url", endpoint (public), server words, note
    plan: LoadPlan
    slo: Slo | None
    levels: tuple[Level, ...]
    environment: dict[str, Any]
    stopped: bool = False
    # The plan sized from a calibration (`SizedPlan.to_dict()` and `measured_s`), or None.
    sizing: dict[str, Any] | None = None

    @property
    def summaries(self) -> list[dict[str, Any]]:
        return [level.summary for level in self.levels]

    @property
    def knee(self) -> measures.Knee | None:
        return measures.knee(self.summaries)

    @property
    def findings(self) -> list[str]:
        # Failures come first: a level where nothing was answered must not read as a point
        # beside the levels that were.
        said = findings.failure_sentences(self.summaries, self.sizing, self.plan.unit)
        said += findings.findings(self.summaries, self.plan.mode, self.plan.unit, self.slo)
        for level in self.levels:
            if level.late_sends:
                said.append(
                    f"At {level.offered:g} {self.plan.unit} the load generator sent "
                    f"{level.late_sends} requests late (up to {level.max_late_s * 1000:.0f} ms "
                    "behind the schedule): this computer was too busy to keep the pace, so the "
                    "load offered there was a little lower than asked.")
        if self.stopped:
            measured_levels = {level.offered for level in self.levels}
            skipped = [f"{value:g}" for value in self.plan.levels if value not in measured_levels]
            said.append("The run was stopped: the levels shown are the ones measured before"
                        + (f"; not measured: {', '.join(skipped)} {self.plan.unit}."
                           if skipped else "."))
        return said

    @property
    def counting(self) -> str:
        """How the output tokens were counted and timed, in words (the issue's "say which")."""
        from collections import Counter

        from lib.serving.records import FROM_CHUNKS, FROM_TOKENIZER, FROM_USAGE, MEASURED
        sources = Counter(r.token_source for level in self.levels for r in level.records
                          if r.phase == MEASURED and r.chunk_s)
        words = {FROM_USAGE: "the server's own usage report",
                 FROM_TOKENIZER: "the tokenizer, run on each chunk's text (no usage report "
                                 "came)",
                 FROM_CHUNKS: "the chunks, one token each (neither a usage report nor a "
                              "tokenizer was available)"}
        each = [words.get(source, str(source)) for source in sorted(sources)]
        if len(each) > 1:             # answers counted differently: say how many each way
            each = [f"{said} for {sources[source]} answer{'s' if sources[source] > 1 else ''}"
                    for said, source in zip(each, sorted(sources))]
        said = "; ".join(each) or "none"
        return (f"Output tokens were counted from {said}. A chunk that carries several tokens "
                "has them spread evenly over the time since the chunk before it, since only "
                "their number is known.")

    @property
    def model(self) -> str:
        return self.target.get("model_id") or self.target["endpoint"]["model"]


def result(target: dict[str, Any], plan: LoadPlan, slo: Slo | None, origin: float,
           runs: list[LevelRun], environment: dict[str, Any],
           stopped: bool = False, sizing: dict[str, Any] | None = None) -> LoadResult:
    """The measured levels, their clocks made relative to the run's start; `stopped`: Stop
    ended the run (`run_load` says so)."""
    levels = tuple(_level(run.offered, tuple(r.shifted(origin) for r in run.records), slo,
                          run.late_sends, run.max_late_s, run.stopped) for run in runs)
    return LoadResult(target, plan, slo, levels, environment,
                      stopped=stopped or any(level.stopped for level in levels), sizing=sizing)


def _level(offered: float, records: tuple[RequestRecord, ...], slo: Slo | None,
           late_sends: int, max_late_s: float, stopped: bool) -> Level:
    return Level(offered, records, measures.level_summary(offered, records, slo), late_sends,
                 max_late_s, stopped)


def to_dict(load: LoadResult) -> dict[str, Any]:
    found = load.knee
    return {
        "kind": KIND, "load_version": 1, "target": load.target, "plan": load.plan.to_dict(),
        "slo": load.slo.to_dict() if load.slo else None, "environment": load.environment,
        "stopped": load.stopped, "knee": found.to_dict() if found else None,
        "findings": load.findings, "sizing": load.sizing,
        "levels": [{"offered": level.offered, "late_sends": level.late_sends,
                    "max_late_s": level.max_late_s, "stopped": level.stopped,
                    "summary": level.summary,
                    "records": [record.to_dict() for record in level.records]}
                   for level in load.levels],
    }


def from_dict(document: Any, path: str = "") -> LoadResult:
    """The saved document checked field by field (schema.DocumentError names the bad one) and
    every statistic derived again from the records."""
    document = schema.mapping(document, path)
    try:
        plan = LoadPlan.from_dict(schema.mapping(schema.member(document, "plan", path, True),
                                                 schema.at(path, "plan")))
    except (TypeError, ValueError) as exc:
        raise schema.DocumentError(f"{schema.at(path, 'plan')}: {exc}") from exc
    slo = None
    if document.get("slo") is not None:
        where = schema.at(path, "slo")
        saved = schema.mapping(document["slo"], where)
        slo = Slo(schema.number(saved.get("ttft_s"), schema.at(where, "ttft_s"), above=0),
                  schema.number(saved.get("tpot_s"), schema.at(where, "tpot_s"), above=0),
                  schema.string(saved.get("name", ""), schema.at(where, "name"), 200))
    target = schema.mapping(schema.member(document, "target", path, True),
                            schema.at(path, "target"))
    endpoint = schema.mapping(schema.member(target, "endpoint", schema.at(path, "target"), True),
                              schema.at(path, "target.endpoint"))
    schema.string(endpoint.get("model"), schema.at(path, "target.endpoint.model"), 4096)
    where = schema.at(path, "levels")
    saved_levels = schema.items(schema.member(document, "levels", path, True), where, 100,
                                "levels")
    levels, total = [], 0
    for number, saved in enumerate(saved_levels):
        here = schema.at(where, number)
        saved = schema.mapping(saved, here)
        offered = schema.number(saved.get("offered"), schema.at(here, "offered"), above=0)
        raw = schema.items(saved.get("records"), schema.at(here, "records"), MAX_LOAD_RECORDS,
                           "requests")
        total += len(raw)
        if total > MAX_LOAD_RECORDS:
            raise schema.DocumentError(f"{where}: more than {MAX_LOAD_RECORDS:,} requests")
        recs = tuple(_record(item, schema.at(schema.at(here, "records"), i))
                     for i, item in enumerate(raw))
        levels.append(_level(offered, recs, slo,
                             int(schema.number(saved.get("late_sends", 0),
                                               schema.at(here, "late_sends"), 0, whole=True)),
                             float(schema.number(saved.get("max_late_s", 0.0),
                                                 schema.at(here, "max_late_s"), 0)),
                             bool(saved.get("stopped", False))))
    environment = document.get("environment") or {}
    sizing = document.get("sizing")
    if sizing is not None:
        sizing = schema.mapping(sizing, schema.at(path, "sizing"))
    return LoadResult(target, plan, slo, tuple(levels),
                      schema.mapping(environment, schema.at(path, "environment")),
                      bool(document.get("stopped", False)), sizing)


_OPTIONAL_TIMES = ("first_token_s", "end_s", "queue_s")


def _record(saved: Any, path: str) -> RequestRecord:
    saved = schema.mapping(saved, path)

    def number(key: str, **limits) -> Any:
        return schema.optional(saved, key, path, schema.number, **limits)
    chunk_s = schema.numbers(saved.get("chunk_s", []), schema.at(path, "chunk_s"),
                             increasing=True)
    chunk_tokens = schema.numbers(saved.get("chunk_tokens", []),
                                  schema.at(path, "chunk_tokens"), minimum=0)
    if len(chunk_s) != len(chunk_tokens):
        raise schema.DocumentError(f"{path}: chunk_s and chunk_tokens differ in length")
    return RequestRecord(
        index=int(schema.number(saved.get("index"), schema.at(path, "index"), 0, whole=True)),
        phase=schema.choice(saved.get("phase"), schema.at(path, "phase"), PHASES),
        sent_s=float(schema.number(saved.get("sent_s"), schema.at(path, "sent_s"))),
        status=schema.choice(saved.get("status"), schema.at(path, "status"), STATUSES),
        first_token_s=number("first_token_s"), chunk_s=tuple(chunk_s),
        chunk_tokens=tuple(int(t) for t in chunk_tokens), end_s=number("end_s"),
        asked_tokens=int(number("asked_tokens", minimum=0, whole=True) or 0),
        output_tokens=int(number("output_tokens", minimum=0, whole=True) or 0),
        prompt_tokens=number("prompt_tokens", minimum=0, whole=True),
        token_source=schema.string(saved.get("token_source", ""),
                                   schema.at(path, "token_source"), 100),
        finish_reason=schema.optional(saved, "finish_reason", path, schema.string, 100),
        queue_s=number("queue_s", minimum=0),
        http_status=number("http_status", minimum=0, whole=True),
        reason=schema.string(saved.get("reason", ""), schema.at(path, "reason"), 1000))


# --- CSV --------------------------------------------------------------------------------------

STATISTICS = ("p50", "p90", "p99", "mean", "n")
RATES = ("achieved_requests_per_s", "output_tokens_per_s", "output_tokens_per_s_per_user",
         "goodput_requests_per_s", "good_fraction", "mean_in_flight")
COUNTS = ("requests", "completed", "failed", "stopped_early", "cancelled", "window_s")


def provenance_of(load: LoadResult) -> str:
    """"simulated" (nothing ran) or "measured"."""
    return SIMULATED if load.target.get("kind") == SIMULATED else "measured"


def level_rows(load: LoadResult) -> list[dict[str, Any]]:
    """One row per level: where the numbers come from (measured or simulated), the load, the
    counts, each latency's p50/p90/p99, the rates, and the cost and energy of a token
    (`lib.serving.pricing`: empty without a price or a stated power)."""
    from lib.serving import pricing

    rows = []
    provenance = provenance_of(load)
    for level, priced in zip(load.levels, pricing.levels(load)):
        summary = level.summary
        row: dict[str, Any] = {"provenance": provenance, "model": load.model,
                               "mode": load.plan.mode, "offered": level.offered,
                               "unit": load.plan.unit}
        row.update({name: summary[name] for name in COUNTS})
        for metric in (*measures.LATENCY_METRICS, "queue_s"):
            dist = summary.get(metric) or {}
            row.update({f"{metric}_{stat}": dist.get(stat) for stat in STATISTICS})
        row.update({name: summary[name] for name in RATES})
        row.update({name: priced[name] for name in pricing.PRICED})
        row["late_sends"] = level.late_sends
        rows.append(row)
    return rows


def request_rows(load: LoadResult) -> list[dict[str, Any]]:
    """One row per request, every level, with its derived latencies."""
    rows = []
    for level in load.levels:
        for record in level.records:
            rows.append({"offered": level.offered, "index": record.index,
                         "phase": record.phase, "status": record.status,
                         "sent_s": record.sent_s, "first_token_s": record.first_token_s,
                         "end_s": record.end_s, "ttft_s": record.ttft_s,
                         "tpot_s": record.tpot_s, "e2e_s": record.e2e_s,
                         "output_tokens": record.output_tokens,
                         "asked_tokens": record.asked_tokens,
                         "prompt_tokens": record.prompt_tokens, "chunks": len(record.chunk_s),
                         "token_source": record.token_source, "queue_s": record.queue_s,
                         "http_status": record.http_status, "reason": record.reason})
    return rows


def cli_dict(load: LoadResult, entry_id: int | None) -> dict[str, Any]:
    """`python -m lib load --json`: one object with a `levels` list, metrics named as `run`
    names them."""
    from lib.serving import pricing

    found = load.knee
    levels = []
    for level, priced in zip(load.levels, pricing.levels(load)):
        summary = dict(priced)
        summary.pop("failure_reasons", None)
        levels.append({**summary, "failure_reasons": level.summary["failure_reasons"],
                       "late_sends": level.late_sends})
    plan = load.plan.to_dict()
    if load.sizing:
        plan.update(load.sizing)
    return {"target": load.target, "plan": plan,
            "slo": load.slo.to_dict() if load.slo else None, "unit": load.plan.unit,
            "levels": levels, "knee": found.to_dict() if found else None,
            "findings": load.findings, "stopped": load.stopped, "history_id": entry_id,
            "provenance": provenance_of(load),
            "cost_finding": pricing.finding(load)}

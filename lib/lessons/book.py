"""The lessons, as data: one TOML file per lesson in `lib/lessons/data/`, read and checked here.

A lesson file says (see any file in data/ for the whole shape):

    id = "batch-size"                       # the lesson's name in links and the CLI
    order = 40                              # its place in the path
    chapter = "Batch size"
    title = "..."                           # a short heading
    question = "..."                        # asked in plain words, before anything runs
    why = "..."                             # the physics, in a few plain sentences
    [prediction]
    choices = ["...", "...", "..."]         # what the learner may predict, in rising order
    [measurement]
    factor = "batch"                        # an Explore factor (lib.measure.factors)
    values = [1, 8]
    settings = { prompt_tokens = 32 }       # RunSpec fields for every point
    compare = "values"                      # or "metrics", or "value"
    metric = "tpot_s"                       # a sweep table column
    versus = "ttft_s"                       # compare = "metrics": metric / versus, one point
    thresholds = [0.9, 1.1]                 # the borders between the choices
    also = ["decode_tokens_per_s"]          # reported beside it
    measures_spread = false                 # true: the number is a spread (p90 / median),
                                            # so a noisy point is no reason to doubt it
    [next]
    page = "explore"                        # or "playground"
    factor = "batch"
    values = "1,2,4,8,16"

The measured number is a ratio (`values`: the last point's metric over the first's;
`metrics`: metric over versus at the first point) or a value (`value`: the last point's
metric); the choices are its ranges, split at the thresholds (one fewer than the choices). A
lesson a teacher adds needs no code: `check` names the file and field of any mistake.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.core.errors import ExplorerError, InvalidSpecError

DATA = Path(__file__).with_name("data")
COMPARES = ("values", "metrics", "value")
PAGES = ("explore", "playground")


class LessonError(ExplorerError):
    """A lesson file that can't be used, with the file and the field."""


@dataclass(frozen=True)
class Lesson:
    id: str
    order: int
    chapter: str
    title: str
    question: str
    why: str
    choices: tuple[str, ...]
    factor: str
    values: tuple[Any, ...]
    settings: dict[str, Any] = field(hash=False)
    compare: str
    metric: str
    thresholds: tuple[float, ...]
    versus: str | None = None
    also: tuple[str, ...] = ()
    next: dict[str, Any] = field(default_factory=dict, hash=False)
    source: str = ""                          # the file it came from
    measures_spread: bool = False             # its number is the spread (a tail percentile)

    def choice_for(self, measured: float) -> int:
        """The index of the choice whose range holds `measured`."""
        return sum(measured >= border for border in self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "order": self.order, "chapter": self.chapter,
                "title": self.title, "question": self.question,
                "prediction": {"choices": list(self.choices)},
                "measurement": {"factor": self.factor, "values": list(self.values),
                                "settings": dict(self.settings), "compare": self.compare,
                                "metric": self.metric, "versus": self.versus,
                                "thresholds": list(self.thresholds), "also": list(self.also)},
                "why": self.why, "next": dict(self.next)}


@functools.cache
def lessons() -> tuple[Lesson, ...]:
    """Every lesson, in the path's order."""
    found = [read(path) for path in sorted(DATA.glob("*.toml"))]
    ids = [lesson.id for lesson in found]
    twice = sorted({name for name in ids if ids.count(name) > 1})
    if twice:
        raise LessonError(f"Two lesson files use the id {twice[0]!r}: give each its own.")
    return tuple(sorted(found, key=lambda lesson: (lesson.order, lesson.id)))


def get(lesson_id: str) -> Lesson:
    for lesson in lessons():
        if lesson.id == lesson_id:
            return lesson
    raise InvalidSpecError(f"No lesson {lesson_id!r}. The lessons: "
                           f"{', '.join(lesson.id for lesson in lessons())}.")


def read(path: Path) -> Lesson:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LessonError(f"Lesson file {path.name} can't be read ({exc}).") from None
    return check(document, path.name)


def check(document: dict[str, Any], name: str = "a lesson") -> Lesson:
    """The lesson a parsed file describes; LessonError naming what is wrong."""
    from lib.core.spec import RunSpec, field_names
    from lib.measure.factors import FACTORS
    from lib.records.table import TABLE_METRICS

    def need(table: dict, key: str, kind: type | tuple, where: str = "") -> Any:
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise LessonError(f"Lesson file {name}: {where}{key} is missing or not a "
                              f"{getattr(kind, '__name__', 'value')}.")
        return value

    prediction = need(document, "prediction", dict)
    measurement = need(document, "measurement", dict)
    choices = tuple(need(prediction, "choices", list, "prediction."))
    thresholds = tuple(float(v) for v in need(measurement, "thresholds", list, "measurement."))
    if len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise LessonError(f"Lesson file {name}: give at least two choices, as words.")
    if len(thresholds) != len(choices) - 1 or list(thresholds) != sorted(thresholds):
        raise LessonError(f"Lesson file {name}: {len(choices)} choices need "
                          f"{len(choices) - 1} thresholds between them, rising.")
    factor = need(measurement, "factor", str, "measurement.")
    if factor not in FACTORS:
        raise LessonError(f"Lesson file {name}: measurement.factor {factor!r} is not one of "
                          f"{', '.join(FACTORS)}.")
    compare = measurement.get("compare", "values")
    if compare not in COMPARES:
        raise LessonError(f"Lesson file {name}: measurement.compare is one of "
                          f"{', '.join(COMPARES)}.")
    columns = _columns(TABLE_METRICS)
    metric = need(measurement, "metric", str, "measurement.")
    versus = measurement.get("versus")
    also = tuple(measurement.get("also", ()))
    for key in (metric, versus, *also):
        if key is not None and key not in columns:
            raise LessonError(f"Lesson file {name}: {key!r} is not a column of a sweep's "
                              "table (e.g. ttft_s, tpot_s, e2e_s_p90, decode_tokens_per_s, "
                              "peak_memory_bytes, quality_agreement).")
    if compare == "metrics" and versus is None:
        raise LessonError(f"Lesson file {name}: compare = \"metrics\" needs versus.")
    values = tuple(need(measurement, "values", list, "measurement."))
    if not values or (compare == "values" and len(values) < 2):
        raise LessonError(f"Lesson file {name}: measurement.values needs "
                          f"{'two values' if compare == 'values' else 'a value'}.")
    settings = dict(measurement.get("settings", {}))
    unknown = sorted(set(settings) - set(field_names()))
    if unknown:
        raise LessonError(f"Lesson file {name}: {unknown[0]!r} is not a setting.")
    try:
        RunSpec(**settings)
    except ExplorerError as exc:
        raise LessonError(f"Lesson file {name}: its settings can't run ({exc})") from None
    next_step = dict(document.get("next", {}))
    if next_step and next_step.get("page") not in PAGES:
        raise LessonError(f"Lesson file {name}: next.page is one of {', '.join(PAGES)}.")
    texts = {key: need(document, key, str) for key in ("id", "chapter", "title", "question",
                                                        "why")}
    return Lesson(texts["id"], int(need(document, "order", int)), texts["chapter"],
                  texts["title"], texts["question"], texts["why"], choices, factor, values,
                  settings, compare, metric, thresholds, versus, also, next_step, name,
                  bool(measurement.get("measures_spread", False)))


def _columns(metrics: Any) -> set[str]:
    columns = {"quality_agreement", "quality_perplexity", "speculative_tokens_per_step"}
    for metric in metrics:
        columns |= {metric, f"{metric}_p10", f"{metric}_p90", f"{metric}_min", f"{metric}_max"}
    return columns

"""Handouts: a lesson's result as a one-page PDF (question, predictions, measurement, chart,
answer, why), and the whole path as one document, a page per lesson measured.

Drawn with fpdf2 in pure Python: its bars are rectangles, so no browser or plotting library is
needed to print one. fpdf2's built-in fonts hold Latin-1 only: other characters are written
as their nearest plain equivalent.
"""

from __future__ import annotations

import datetime
from typing import Any, Sequence

from lib.lessons import answer as answers
from lib.lessons.book import Lesson
from lib.measure.factors import FACTORS

_PLAIN = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-",
                        "…": "...", "✓": "v", "×": "x", "≈": "~", "→": "->", "≥": ">=",
                        "≤": "<=", "µ": "u"})
WIDTH = 180                       # mm of text width on A4 with 15 mm margins


def plain(text: str) -> str:
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def lesson_pdf(lesson: Lesson, rows: list[dict[str, Any]], predicted: int | None,
               class_counts: Sequence[int] | None = None) -> bytes:
    pdf = _document()
    _page(pdf, lesson, rows, predicted, class_counts)
    return bytes(pdf.output())


def path_pdf(taken: Sequence[tuple[Lesson, list[dict[str, Any]], int | None]],
             not_taken: Sequence[Lesson]) -> bytes:
    """Every lesson measured (a page each), then the lessons still to take."""
    pdf = _document()
    for lesson, rows, predicted in taken:
        _page(pdf, lesson, rows, predicted, None)
    pdf.add_page()
    _heading(pdf, "Lessons still to take" if not_taken else "Every lesson taken")
    for lesson in not_taken:
        _text(pdf, f"- {lesson.chapter}: {lesson.title}")
    return bytes(pdf.output())


def _document():
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=15)
    return pdf


def _heading(pdf, text: str, size: int = 16) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.multi_cell(WIDTH, size * 0.5, plain(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _text(pdf, text: str, size: int = 11, style: str = "") -> None:
    pdf.set_font("Helvetica", style, size)
    pdf.multi_cell(WIDTH, size * 0.45, plain(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1.5)


def _page(pdf, lesson: Lesson, rows: list[dict[str, Any]], predicted: int | None,
          class_counts: Sequence[int] | None) -> None:
    found = answers.answer(lesson, rows)
    pdf.add_page()
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(WIDTH, 5, plain(f"{lesson.chapter} - Inference Latency Explorer, "
                             f"{datetime.date.today().isoformat()}"), new_x="LMARGIN",
             new_y="NEXT")
    _heading(pdf, lesson.title)
    _text(pdf, lesson.question, 12, "B")
    _text(pdf, "The choices: " + "; ".join(f"({n}) {c}" for n, c in
                                           enumerate(lesson.choices, 1)))
    if predicted is not None:
        _text(pdf, f"Predicted: {lesson.choices[predicted]}.")
    if class_counts and sum(class_counts):
        _text(pdf, "The room predicted: " + "; ".join(
            f"{c}: {n}" for c, n in zip(lesson.choices, class_counts)) + ".")
    _bars(pdf, lesson, rows)
    verdict = found.verdict(lesson, predicted)
    if verdict:
        _text(pdf, verdict, 12, "B")
    _text(pdf, found.text)
    _heading(pdf, "Why", 13)
    from lib.lessons.taking import why
    _text(pdf, why(lesson, rows), 10)
    factor = FACTORS[lesson.factor]
    settings = ", ".join(f"{name} {value}" for name, value in lesson.settings.items())
    _text(pdf, f"Measured: {factor.label} at "
               f"{', '.join(factor.value_label(v) for v in lesson.values)}"
               f"{'; ' + settings if settings else ''}. Points marked estimate come from a "
               "model of the hardware, not a measurement.", 8)


def _bars(pdf, lesson: Lesson, rows: list[dict[str, Any]]) -> None:
    """The chart's bars as rectangles, each labelled with its value; estimates outlined only."""
    figure = answers.chart(lesson, rows)
    data = figure.data[0]
    labels, values, texts = list(data.x), [float(v) for v in data.y], list(data.text)
    opacity = list(data.marker.opacity) if data.marker.opacity is not None else []
    if not values:
        return
    top, height, left = pdf.get_y() + 4, 55.0, 25.0
    peak = max(values) or 1.0
    slot = (WIDTH - left) / len(values)
    pdf.set_font("Helvetica", "", 8)
    pdf.text(15, top - 1, plain(figure.layout.yaxis.title.text or ""))
    for index, (label, value, said) in enumerate(zip(labels, values, texts)):
        bar_height = height * value / peak
        x = 15 + left + index * slot + slot * 0.2
        estimated = bool(opacity) and opacity[index] < 1
        pdf.set_fill_color(99, 110, 250) if index % 2 == 0 else pdf.set_fill_color(239, 85, 59)
        pdf.rect(x, top + height - bar_height, slot * 0.6, bar_height,
                 style="D" if estimated else "FD")
        pdf.text(x, top + height - bar_height - 1.5, plain(str(said)))
        pdf.text(x, top + height + 5, plain(f"{label}{' (estimate)' if estimated else ''}"))
    pdf.set_y(top + height + 10)

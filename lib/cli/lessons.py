"""`python -m lib lessons` and `python -m lib lesson ID`: the guided path, headless.

`lessons` lists every lesson (its question, the choices a learner predicts from, and how long
its measurement takes on this machine when nothing else runs); `lesson ID` measures one (saved
in the history as a sweep), prints the answer computed from the data, the why and the points,
and, with `--predict N` (a choice's number, from 1), whether that prediction held.
"""

from __future__ import annotations

import argparse

from lib.cli.output import out, print_json, quiet_transformers, say, waiting
from lib.core.errors import InvalidSpecError


def add_parsers(commands) -> None:
    listing = commands.add_parser("lessons", help="list the lessons: question, choices, time")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    one = commands.add_parser("lesson", help="take one lesson: measure, answer, explain")
    one.add_argument("lesson_id", help="the lesson's id (python -m lib lessons lists them)")
    one.add_argument("--predict", type=int, default=None,
                     help="your prediction: a choice's number, from 1")
    one.add_argument("--json", action="store_true", help="print one JSON object")


def list_lessons(args: argparse.Namespace) -> int:
    from lib.lessons import book, taking

    found = []
    for lesson in book.lessons():
        document = lesson.to_dict()
        document["estimated_s"] = round(taking.quiet_estimate_s(lesson))
        found.append(document)
    if args.json:
        return print_json(found)
    for number, document in enumerate(found, 1):
        out(f"{number:>2}. {document['id']:<22} {document['chapter']}: {document['title']} "
            f"(about {document['estimated_s']} s)")
    return 0


def take_lesson(args: argparse.Namespace) -> int:
    from lib.lessons import book, taking

    lesson = book.get(args.lesson_id)
    if args.predict is not None and not 1 <= args.predict <= len(lesson.choices):
        raise InvalidSpecError(f"--predict is a choice's number, from 1 to "
                               f"{len(lesson.choices)}: "
                               + "; ".join(f"{n}. {c}" for n, c in
                                           enumerate(lesson.choices, 1)))
    quiet_transformers()
    if not args.json:
        out(lesson.question)
        for number, choice in enumerate(lesson.choices, 1):
            out(f"  {number}. {choice}")
    taken = taking.take(lesson, say, on_wait=waiting())
    predicted = None if args.predict is None else args.predict - 1
    if args.json:
        document = taken.to_dict()
        document["prediction"]["predicted"] = None if predicted is None \
            else lesson.choices[predicted]
        document["prediction"]["verdict"] = taken.answer.verdict(lesson, predicted)
        return print_json(document)
    verdict = taken.answer.verdict(lesson, predicted)
    if verdict:
        out(verdict)
    out(taken.answer.text)
    out("")
    out(f"Why: {taken.why}")
    out(f"took {taken.elapsed_s:.0f} s (estimated {taken.estimated_s:.0f} s before measuring)"
        + (f"; saved as #{taken.entry_id}" if taken.entry_id is not None else ""))
    return 0

"""Which lessons each visitor has done, with their predictions: kept in SQLite beside the history.

A visitor is the classroom mode's identity of a browser (`lib.access.classroom.owner_id`: a
salted hash of its cookie, never a name). For each visitor and lesson: the choice predicted
(the latest) and the choice the measurement gave, when it did. `class_counts` is what a host
shows the room: how many visitors predicted each choice, no one named.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from lib.core.paths import data_dir

FILE = "lessons.sqlite3"
TIMEOUT_S = 5.0


def _path() -> Path:
    return data_dir() / FILE


@contextlib.contextmanager
def _connection() -> Iterator[sqlite3.Connection]:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=TIMEOUT_S)
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS answers (visitor TEXT NOT NULL, "
                           "lesson TEXT NOT NULL, predicted INTEGER, measured INTEGER, "
                           "at REAL NOT NULL, PRIMARY KEY (visitor, lesson))")
        with connection:
            yield connection
    finally:
        connection.close()


def predict(visitor: str, lesson_id: str, choice: int) -> None:
    """Keep `visitor`'s prediction (a new one replaces the old, and clears the answer)."""
    with _connection() as db:
        db.execute("INSERT INTO answers (visitor, lesson, predicted, measured, at) VALUES "
                   "(?, ?, ?, NULL, ?) ON CONFLICT (visitor, lesson) DO UPDATE SET "
                   "predicted = excluded.predicted, measured = NULL, at = excluded.at",
                   (visitor, lesson_id, choice, time.time()))


UNTOLD = -1          # measured, but the data could not tell which choice


def answered(visitor: str, lesson_id: str, choice: int | None) -> None:
    """Keep the choice `visitor`'s measurement gave (None: it measured but could not tell)."""
    with _connection() as db:
        db.execute("UPDATE answers SET measured = ?, at = ? WHERE visitor = ? AND lesson = ?",
                   (UNTOLD if choice is None else choice, time.time(), visitor, lesson_id))


def of(visitor: str) -> dict[str, tuple[int | None, int | None]]:
    """{lesson id: (predicted, measured)} for `visitor`: measured None before a measurement,
    UNTOLD after one that could not tell."""
    with _connection() as db:
        rows = db.execute("SELECT lesson, predicted, measured FROM answers WHERE visitor = ?",
                          (visitor,)).fetchall()
    return {lesson: (predicted, measured) for lesson, predicted, measured in rows}


def class_counts(lesson_id: str, choices: int) -> list[int]:
    """How many visitors predicted each of the lesson's `choices` choices."""
    counts = [0] * choices
    with _connection() as db:
        for (predicted,) in db.execute("SELECT predicted FROM answers WHERE lesson = ?",
                                       (lesson_id,)):
            if isinstance(predicted, int) and 0 <= predicted < choices:
                counts[predicted] += 1
    return counts

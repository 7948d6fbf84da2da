"""Checking JSON documents field by field, naming the field that is wrong.

Documents come from this app's own history, from other versions of it and from files people
import, so none is trusted. Each check takes a value and where it sits (`points[2].measurement.
repetitions[3].token_offsets_s`) and returns the value, or raises `DocumentError` saying what
was expected there: "repetitions[3].token_offsets_s: expected a list of numbers". Only the fields
a reader asks about are checked, so a newer version's extra fields never stop an older one.
Numbers are finite (JSON parsers accept NaN, Infinity and 1e999), and whole numbers fit in 64
bits, the most SQLite stores and a float holds without overflowing. Nothing here quotes a
document's own text back except clipped to one line (`lib.core.text.one_line`).
"""

from __future__ import annotations

import math
from typing import Any, Collection

from lib.core import text
from lib.core.errors import ExplorerError

MAX_WHOLE = 2 ** 63 - 1


class DocumentError(ExplorerError, ValueError):
    """A document lacks a field this version needs, or holds one of the wrong type."""


def at(path: str, key: str | int) -> str:
    """Where a member sits: at('points[2]', 'values') -> 'points[2].values'."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _fail(path: str, expected: str) -> DocumentError:
    return DocumentError(f"{path or 'the document'}: {expected}")


def mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object ({{...}}), not {_kind(value)}")
    return value


def member(document: dict[str, Any], key: str, path: str, required: bool = False) -> Any:
    """The member's value; None when it is absent (or null) and not `required`."""
    value = document.get(key)
    if value is None and required:
        raise _fail(at(path, key), "missing")
    return value


def optional(document: dict[str, Any], key: str, path: str, check, *args, **kwargs) -> Any:
    """`check(value, where, ...)` when the member is present and not null, else None."""
    value = document.get(key)
    return None if value is None else check(value, at(path, key), *args, **kwargs)


def number(value: Any, path: str, minimum: float | None = None, above: float | None = None,
           whole: bool = False) -> float | int:
    """A finite number (`whole`: an integer) at least `minimum`, or greater than `above`."""
    expected = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (whole and not isinstance(value, int)):
        raise _fail(path, f"expected {expected}, not {_kind(value)}")
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_WHOLE:
        raise _fail(path, f"expected {expected}, not {value}")
    if minimum is not None and value < minimum:
        raise _fail(path, f"expected {expected} of at least {minimum}, not {value}")
    if above is not None and value <= above:
        raise _fail(path, f"expected {expected} above {above}, not {value}")
    return value


def numbers(value: Any, path: str, minimum: float | None = None,
            increasing: bool = False) -> list[float | int]:
    """A list of finite numbers, each at least `minimum`; `increasing`: none smaller than the
    one before it (clock readings)."""
    if not isinstance(value, list):
        raise _fail(path, f"expected a list of numbers, not {_kind(value)}")
    previous = None
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float) or \
                not math.isfinite(item) or abs(item) > MAX_WHOLE:
            raise _fail(path, f"expected a list of numbers ({at('', index)} is {_kind(item)})")
        if minimum is not None and item < minimum:
            raise _fail(path, f"expected numbers of at least {minimum} ({at('', index)} is "
                              f"{item})")
        if increasing and previous is not None and item < previous:
            raise _fail(path, f"expected times that never decrease ({at('', index)} is {item}, "
                              f"before it {previous})")
        previous = item
    return value


def string(value: Any, path: str, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected text, not {_kind(value)}")
    if limit is not None and len(value) > limit:
        raise _fail(path, f"expected at most {limit:,} characters, not {len(value):,}")
    return value


def choice(value: Any, path: str, choices: Collection[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(path, f"expected one of {', '.join(choices)}, not {_shown(value)}")
    return value


def items(value: Any, path: str, limit: int | None = None, what: str = "items") -> list[Any]:
    """A list of at most `limit` entries (what they are is each reader's own check)."""
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, not {_kind(value)}")
    if limit is not None and len(value) > limit:
        raise _fail(path, f"expected at most {limit:,} {what}, not {len(value):,}")
    return value


def _kind(value: Any) -> str:
    """What a JSON value is, in words, quoting short scalars: 'text "abc"', 'a list'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return _shown(value)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return "text " + repr(text.one_line(value, limit=40))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return text.one_line(value, limit=40)
    return _kind(value) if isinstance(value, dict | list | bool) or value is None \
        else type(value).__name__

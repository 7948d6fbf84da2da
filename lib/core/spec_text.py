"""RunSpec's fields as text: the command line's flags (`add_arguments`, `from_arguments`) and
a link's values (`parse_value`, `clamp` into this machine's range), all from the fields'
metadata (`lib.core.spec.field_info`), so no flag or link restates a bound or a choice."""

from __future__ import annotations

import argparse
import math
from typing import Any

from lib.core.errors import InvalidSpecError
from lib.core.spec import (SWITCH, RunSpec, default_threads, field_info, field_names)
from lib.core.stacks import ALIASES


def add_arguments(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None,
                  groups: dict[str, Any] | None = None,
                  choices: dict[str, tuple] | None = None) -> None:
    """One CLI flag per RunSpec field, with its choices, default and help (bounds included).

    `defaults` overrides a field's default for this command (sweeps repeat less per point);
    `groups` puts a field's flag in an argument group of the parser (e.g. a mutually exclusive
    one, for another way to give the same value); `choices` widens a field's choices for this
    command (estimates take float8, which the command maps onto a spec itself).
    """
    for name in field_names():
        info = {**field_info(name), **({"choices": choices[name]} if name in (choices or {})
                                       else {})}
        default = (defaults or {}).get(name, info["default"])
        bounds = ""
        if info["min"] is not None:
            bounds = f" [{info['min']}..{info['max']}]" if info["max"] is not None \
                else f" [>= {info['min']}]"
        help_text = (info["help"] + bounds).replace("%", "%%") + " (default: %(default)s)"
        kwargs: dict[str, Any] = {"dest": name, "default": default, "help": help_text}
        if info["choices"]:
            kwargs["choices"] = info["choices"] + (tuple(ALIASES) if name == "dtype"
                                                   else ())
            kwargs["metavar"] = "{" + ",".join(info["choices"]) + "}"
            if info["choices"] == SWITCH:                  # `--quality` alone means on
                kwargs.update(nargs="?", const="on")
        elif info["type"] is not str:
            kwargs["type"] = info["type"]
        (groups or {}).get(name, parser).add_argument(info["flag"], **kwargs)


def from_arguments(args: argparse.Namespace) -> RunSpec:
    """The RunSpec that `add_arguments`' flags describe; InvalidSpecError if impossible."""
    return RunSpec(**{name: getattr(args, name) for name in field_names()})



def machine_bounds(name: str) -> tuple[float | None, float | None]:
    """A numeric setting's lowest and highest value on this machine: the field's bounds, with
    threads capped at the cores present."""
    info = field_info(name)
    high = default_threads() if name == "threads" else info["max"]
    return info["min"], high


def parse_value(name: str, raw: str) -> Any:
    """One setting written as text (a link's query parameter), checked like a CLI argument:
    its type (finite numbers only) and its choices. Bounds are `clamp`'s job."""
    info = field_info(name)
    kind = info["type"]
    value: Any = raw
    if kind is not str:
        try:
            value = kind(raw.strip())
        except (ValueError, OverflowError):
            raise InvalidSpecError(f"not {'a whole number' if kind is int else 'a number'}") \
                from None
        if not math.isfinite(value):
            raise InvalidSpecError("not a finite number")
    if name == "dtype":
        value = ALIASES.get(value, value)
    if info["choices"] and value not in info["choices"]:
        raise InvalidSpecError(f"choose from {', '.join(info['choices'])}")
    return value


def clamp(name: str, value: Any) -> tuple[Any, str | None]:
    """A numeric value moved into this machine's range, with a note saying so (None if kept)."""
    low, high = machine_bounds(name)
    if low is not None and value < low:
        return type(value)(low), f"below the lowest value {low}, so {low} is used"
    if high is not None and value > high:
        why = f"this machine has {high} cores" if name == "threads" else \
            f"above the highest value {high}"
        return type(value)(high), f"{why}, so {high} is used"
    return value, None


"""The sweep factors: which RunSpec fields a sweep may vary, their values, and the grid they span.

A factor is a RunSpec field a user may vary (batch size, prompt length, dtype, model, ...).
The device factor also takes hardware profile ids (`lib.estimate.hardware`): a device of this
machine is measured, a profile is estimated (`lib.measure.backends.estimated`), so one sweep can
set this laptop's measurements beside an H200's and a TPU's estimates. `Factor.spec_fields` says
which RunSpec fields a value sets (for a profile: `hardware`), and `Factor.estimated` whether its
points are estimates; a saved sweep's device values (plain device names) mean what they always
meant. The stack factor (`lib.core.stacks`) sets the engine that runs the model. `grid` spans the
points of one or two factors and `point_spec` gives each point's settings; `lib.measure.sweep`
measures them. A factor's column in the tidy table is `factor_<name>` (`factor_column`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lib.core.errors import ExplorerError, InvalidSpecError
from lib.core.spec import (ATTENTIONS, COMPILES, DEFAULT_MODEL_ID, DEVICES, DTYPES, KV_CACHES,
                           PROMPT_KINDS, SPECULATIVE, RunSpec, default_threads, field_info)
from lib.core.stacks import STACK_NAMES, STACK_SETTINGS, TRANSFORMERS, format_name, stack_name

FACTOR_PREFIX = "factor_"
# Factors renamed since they were first saved: the old name is still read, never written (saved
# sweeps, share links, scripts). `prompt` set the prompt's length while `--prompt` sets its text.
RENAMED = {"prompt": "prompt_tokens"}


def factor_column(name: str) -> str:
    """A factor's column in the tidy table (lib.records.table): 'batch' -> 'factor_batch'. A
    renamed factor keeps the column it was first saved under ('factor_prompt'): spreadsheets
    read the CSV by its column names."""
    first = {new: old for old, new in RENAMED.items()}.get(name, name)
    return FACTOR_PREFIX + first




@dataclass(frozen=True)
class Factor:
    name: str                    # as typed on the command line
    field: str                   # the RunSpec field it sets
    default_values: Callable[[], tuple]
    numeric: bool = False        # whole numbers, typed with commas; else picked from a list
    doubling: bool = False       # values grow by doubling: draw on a log axis
    # When a value sets more than `field` (the device factor: a profile id sets `hardware`),
    # the RunSpec fields it sets; its accepted values beyond the field's choices; its words.
    settings: Callable[[Any], dict[str, Any]] | None = None
    more_choices: Callable[[], tuple] | None = None
    words: Callable[[Any], str] | None = None

    @property
    def column(self) -> str:
        """Its column in the tidy table (lib.records.table)."""
        return factor_column(self.name)

    @property
    def label(self) -> str:
        """As shown on axes and in sentences: its RunSpec field's label in a sentence's words
        ('batch size', 'KV cache', 'number format'), so the widget and the chart name one
        setting alike."""
        return field_info(self.field)["words"]

    @property
    def title(self) -> str:
        """The label starting a sentence: 'KV cache', 'CPU threads' (not 'Kv cache')."""
        return self.label[:1].upper() + self.label[1:]

    def parse(self, text: str) -> Any:
        return int(text) if self.numeric else text

    def spec_fields(self, value: Any) -> dict[str, Any]:
        """The RunSpec fields that `value` sets at a point: {field: value} for most factors."""
        return self.settings(value) if self.settings else {self.field: value}

    def choices(self) -> tuple | None:
        """Every value it accepts, or None for any value of the right type (numbers)."""
        choices = field_info(self.field)["choices"]
        if not choices:
            return None
        return tuple(choices) + (self.more_choices() if self.more_choices else ())

    def estimated(self, value: Any) -> bool:
        """Whether its points at `value` are estimated (a hardware profile), not measured."""
        return self.spec_fields(value).get("hardware") is not None

    def value_label(self, value: Any) -> str:
        """A value in words, for charts and sentences ('NVIDIA H200 SXM 141GB' for h200)."""
        return self.words(value) if self.words else str(value)


def _devices() -> tuple:
    from lib.machine.devices import available_devices
    return tuple(available_devices())


def device_values() -> list[str]:
    """What the device factor offers: this machine's devices (measured), then every hardware
    profile (estimated)."""
    return list(_devices()) + list(_profile_ids())


def _device_settings(value: str) -> dict[str, Any]:
    """A device of this machine is measured on it (no hardware profile, one device); any other
    value names a hardware profile, estimated (`lib.estimate.estimator` ignores the device then, except
    for `this`, this machine's own device modelled from its measured ceilings)."""
    if value in DEVICES:
        return {"device": value, "hardware": None, "gpus": 1}
    return {"hardware": value}


def _profile_ids() -> tuple:
    from lib.estimate import hardware
    return hardware.ids()


def _device_words(value: str) -> str:
    """'cpu' stays 'cpu'; a profile id becomes its name without the parenthesis ('NVIDIA H200
    SXM 141GB'); `this` is this machine as the estimator models it."""
    from lib.estimate import hardware

    if value in DEVICES:
        return value
    if value == hardware.THIS:
        return "This machine, modelled"
    profile = hardware.table().get(value)
    return profile.name.split(" (")[0] if profile is not None else str(value)


def _stack_settings(value: str) -> dict[str, Any]:
    """Attention kernel, KV cache and torch.compile are transformers' own settings: another
    stack's point runs with their defaults (its own kernels and cache) instead of being
    refused for a setting it doesn't have."""
    if value == TRANSFORMERS:
        return {"stack": value}
    return {"stack": value, **{name: field_info(name)["default"] for name in STACK_SETTINGS}}


FACTORS: dict[str, Factor] = {f.name: f for f in [
    Factor("model", "model_id", lambda: (DEFAULT_MODEL_ID, "gpt2", "smollm2-360m", "qwen2.5-0.5b")),
    Factor("device", "device", _devices, settings=_device_settings,
           more_choices=_profile_ids, words=_device_words),
    Factor("dtype", "dtype", lambda: DTYPES, words=lambda value: format_name(value)),
    Factor("stack", "stack", lambda: STACK_NAMES, settings=_stack_settings,
           words=stack_name),
    Factor("batch", "batch_size", lambda: (1, 2, 4, 8, 16), True, True),
    Factor("prompt_tokens", "prompt_tokens", lambda: (16, 32, 64, 128, 256, 512, 1024), True,
           True),
    Factor("output", "new_tokens", lambda: (8, 16, 32, 64, 128), True, True),
    Factor("threads", "threads", lambda: tuple(range(1, default_threads() + 1)), True),
    Factor("attention", "attention", lambda: ATTENTIONS),
    Factor("kv_cache", "kv_cache", lambda: KV_CACHES),
    Factor("compile", "compile", lambda: COMPILES),
    Factor("prune", "prune", lambda: ("none", "magnitude:0.5", "layers:10", "mlp:0.25"),
           settings=lambda value: {"prune": None if value == "none" else value},
           words=lambda value: "none" if value in (None, "none") else str(value)),
    Factor("exit_layer", "exit_layer", lambda: (10, 15, 20, 30), True),
    Factor("speculative", "speculative", lambda: SPECULATIVE),
    Factor("prompt_kind", "prompt_kind", lambda: PROMPT_KINDS),
]}
PRUNE_OPTIONS = ("none", "magnitude:0.3", "magnitude:0.5", "magnitude:0.7", "layers:5",
                 "layers:10", "layers:15", "mlp:0.1", "mlp:0.25", "mlp:0.5")


def current_name(name: str) -> str:
    """A factor's name as it is now: an old name (`RENAMED`) read from a saved sweep or a link
    becomes the new one; any other name is left for the caller to check."""
    return RENAMED.get(name, name)


def get_factor(name: str) -> Factor:
    try:
        return FACTORS[current_name(name)]
    except KeyError:
        raise InvalidSpecError(
            f"Unknown factor {name!r}: choose one of {', '.join(FACTORS)}.") from None


def parse_values(factor: Factor, text: str) -> list[Any]:
    """'1,2,4' -> [1, 2, 4] for that factor, with a clear message on bad input."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        example = "1,2,4" if factor.numeric else ",".join(factor.default_values()[:2])
        raise InvalidSpecError(f"No values given for {factor.label}: list them like {example}.")
    try:
        values = [factor.parse(part) for part in parts]
    except ValueError:
        raise InvalidSpecError(
            f"Values for {factor.label} must be whole numbers separated by commas "
            f"(got {text!r}).") from None
    choices = factor.choices()
    unknown = [value for value in values if choices and value not in choices]
    if unknown:
        raise InvalidSpecError(f"{', '.join(map(str, unknown))} is not a {factor.label}: choose "
                               f"from {', '.join(choices)}.")
    if len(set(values)) != len(values):
        raise InvalidSpecError(f"A value for {factor.label} is listed twice in {text!r}.")
    return values


def grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> list[dict[str, Any]]:
    names = [factor.name for factor, _ in factor_values]
    return [dict(zip(names, combo))
            for combo in itertools.product(*[values for _, values in factor_values])]


def check_grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> None:
    if not 1 <= len(factor_values) <= 2:
        raise InvalidSpecError("A sweep varies one factor, or two for a heatmap.")
    if len(factor_values) == 2 and factor_values[0][0].name == factor_values[1][0].name:
        raise InvalidSpecError("Pick two different factors for a two-factor sweep.")


def point_spec(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
               values: dict[str, Any]) -> RunSpec:
    """The settings of the grid point at `values` (InvalidSpecError for an impossible value,
    such as a batch of 0)."""
    by_name = {factor.name: factor for factor, _ in factor_values}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        changes.update(by_name[name].spec_fields(value))
    return base.replace(**changes)


def estimated_points(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> int:
    """How many of the grid's points are estimates (on a hardware profile), not measured."""
    count = 0
    for values in grid(factor_values):
        try:
            count += point_spec(base, factor_values, values).hardware is not None
        except ExplorerError:
            continue                 # skipped when the sweep runs, with its reason
    return count


def point_words(values: dict[str, Any]) -> str:
    """A point in words: 'software stack ONNX Runtime, number format Q4_K_M'."""
    return ", ".join(f"{FACTORS[name].label} {FACTORS[name].value_label(value)}"
                     for name, value in values.items())

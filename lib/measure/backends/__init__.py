"""Backends: one module per way of producing a result (see `base.Backend` for the protocol).

A backend module defines `BACKEND`, an instance; this package finds them by listing its own
folder, so adding a way to run models is one new file. `for_entry` picks the backend that runs a
catalog entry by default (transformers `generate` for causal LMs, a forward pass for encoders).
`for_spec` sends a spec that names a hardware profile to the estimator. Tests swap every other
choice for a fake with `use(FakeBackend(...))`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING, Iterator

from lib.measure.backends.base import Backend
from lib.core.errors import UnsupportedError
from lib.models.catalog import CatalogEntry, get_entry

if TYPE_CHECKING:
    from lib.core.spec import RunSpec

_forced: list[Backend] = []


@functools.cache
def registry() -> dict[str, Backend]:
    """Every backend module in this folder, by name (modules without `BACKEND` are helpers)."""
    found: dict[str, Backend] = {}
    for module in pkgutil.iter_modules(__path__):
        backend = getattr(importlib.import_module(f"{__name__}.{module.name}"), "BACKEND", None)
        if backend is not None:
            found[backend.name] = backend
    for kind in {kind for backend in found.values() for kind in backend.default_for}:
        defaults = [name for name, backend in found.items() if kind in backend.default_for]
        if len(defaults) > 1:      # a subclass that forgot `default_for = ()`, say
            raise RuntimeError(f"Backends {defaults} all claim {kind} models by default: "
                               "exactly one may.")
    return found


def get(name: str) -> Backend:
    if _forced:
        return _forced[-1]
    try:
        return registry()[name]
    except KeyError:
        raise UnsupportedError(f"No backend called {name!r}: choose one of "
                               f"{', '.join(registry())}.") from None


def for_entry(entry: CatalogEntry) -> Backend:
    if _forced:
        return _forced[-1]
    for backend in registry().values():
        if entry.kind in backend.default_for:
            return backend
    raise UnsupportedError(f"No backend runs {entry.display_name} (a {entry.kind} model).")


def for_model(model_id: str) -> Backend:
    return for_entry(get_entry(model_id))


def for_stack(entry: CatalogEntry, stack: str) -> Backend:
    """The backend that runs `entry` on software stack `stack` (lib.core.stacks): transformers'
    own choice by model kind, or the stack's backend (which checks, when asked, that it is
    installed and runs this model)."""
    from lib.core.stacks import TRANSFORMERS, get_stack

    if _forced:
        return _forced[-1]
    if stack == TRANSFORMERS:
        return for_entry(entry)
    chosen = get_stack(stack)
    backend = registry().get(chosen.backend)
    if backend is None:
        raise UnsupportedError(f"{chosen.label} has no backend in this version of the app.")
    if entry.kind not in backend.kinds:
        raise UnsupportedError(f"{chosen.label} can't run {entry.display_name} (a {entry.kind} "
                               "model): choose the transformers stack for it.")
    return backend


def stacks_for(entry: CatalogEntry) -> tuple[str, ...]:
    """The software stacks that run `entry` here, installed or not (lib.core.stacks names)."""
    from lib.core.stacks import STACKS

    found = []
    for name in STACKS:
        try:
            backend = registry().get(STACKS[name].backend) if name != "transformers" \
                else for_entry(entry)
            if backend is None:
                continue
            backend.check_model(entry)
        except UnsupportedError:
            continue
        found.append(name)
    return tuple(found)


def for_spec(spec: "RunSpec", entry: CatalogEntry | None = None) -> Backend:
    """The backend that produces `spec`'s result: the estimator when it names a hardware
    profile (even under `use`: an estimate loads nothing, so tests need no fake for it),
    else the one that runs its model on its software stack. `entry`: the spec's catalog
    entry, when the caller has it already (`lib.measure.runner.resolve`)."""
    if spec.hardware is not None:
        return registry()["estimator"]
    return for_stack(entry or get_entry(spec.model_id), spec.stack)


@contextlib.contextmanager
def use(backend: Backend) -> Iterator[Backend]:
    """Run everything inside the block on `backend` (tests: a fake with declared latencies)."""
    _forced.append(backend)
    try:
        yield backend
    finally:
        _forced.remove(backend)


__all__ = ["Backend", "for_entry", "for_model", "for_spec", "for_stack", "get", "registry", "use"]

"""A load test measured and saved: the one place where the command line (`python -m lib load`)
and the Serving page turn a load sweep into a history entry.

`lib.serving.session.measure` runs the sweep and hands its result back without touching the
history (serving sits below records); `measure_and_save` saves whatever it returns, a stopped
run's levels included, once it passes an import's checks (`lib.records.imports.check_saving`:
what a server sent is untrusted, and a saved entry must open), and says where the entry went
or, when it can't be saved, why not. A run that keeps nothing (it raised) saves nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from lib.records import imports
from lib.records.store import Store, StoreError
from lib.serving import session, summary
from lib.serving.plan import LoadPlan
from lib.serving.measures import Slo
from lib.serving.sizing import Sizing

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """A load run and where it was saved: `entry_id`, or None with the reason in
    `save_error`."""
    load: summary.LoadResult
    entry_id: int | None
    save_error: str | None
    probe_note: str
    measured_s: float | None = None        # calibration and levels, wall time


def measure_and_save(target: session.Target, plan: LoadPlan, slo: Slo | None, *,
                     say: Say = lambda _: None,
                     on_progress: Callable[[str, float], None] | None = None,
                     on_wait: Say | None = None, stop: threading.Event | None = None,
                     sizing: Sizing | None = None, owner: str | None = None,
                     store: Store | None = None) -> Outcome:
    """`session.measure` (its arguments, `lib.serving.session`), then the result saved as
    `owner`'s; `on_wait` hears the queue's notices and the history's, while it waits to write."""
    measured = session.measure(target, plan, slo, say=say, on_progress=on_progress,
                               on_wait=on_wait, stop=stop, sizing=sizing)
    entry_id, save_error = save(measured.load, owner=owner, store=store, on_wait=on_wait)
    return Outcome(measured.load, entry_id, save_error, measured.probe_note,
                   measured.measured_s)


def save(loaded: summary.LoadResult, owner: str | None = None, store: Store | None = None,
         on_wait: Say | None = None) -> tuple[int | None, str | None]:
    """(entry id, None) when saved; (None, why not) when the history can't be written."""
    document = summary.to_dict(loaded)
    try:
        imports.check_saving("load", document)
    except imports.ImportRefusedError as exc:
        return None, str(exc)
    store = store or Store()
    if on_wait is not None:
        store.on_wait = on_wait
    try:
        return store.save_load(document, owner=owner), None
    except StoreError as exc:
        return None, str(exc)

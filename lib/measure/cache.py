"""Loaded models kept in memory, shared by every browser session of the server.

The `ModelCache` keeps a few loaded models (`lib.models.loaded.LoadedModel`), keyed by (backend,
model, device, dtype), so a model loads once; the least recently used is dropped before a new
one loads, so its memory is free for it. What it holds are `lib.measure.worker` handles: each
model lives in its own worker process (or in this one, for backends with nothing to isolate),
so dropping a model ends its process and gives all
of its memory back, and a worker that died is replaced on the next `get`. A sweep `pin`s the
models it visits in turn, so loading one of them never drops another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable

from lib.models.loaded import CacheKey

if TYPE_CHECKING:
    from lib.measure.backends.base import Backend
    from lib.measure.worker import ModelHandle

Progress = Callable[[str], None]


class ModelCache:
    """Most recently used last; thread-safe. At most `max_entries` stay resident (each may take
    gigabytes), more while a sweep pins them."""

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max_entries
        self._models: OrderedDict[CacheKey, "ModelHandle"] = OrderedDict()
        self._pinned: set[CacheKey] = set()
        self._lock = threading.RLock()

    def get(self, backend: "Backend", model_id: str, device: str, dtype: str,
            on_progress: Progress | None = None,
            on_tick: Callable[[], None] | None = None) -> "ModelHandle":
        from lib.measure.worker import handle_for

        key = (backend.name, model_id, device, dtype)
        with self._lock:
            handle = self._models.get(key)
            # Backends are one object each; a different one under the same name (a test's new
            # fake) must not measure on the old one's model.
            if handle is not None and handle.alive and handle.backend is backend:
                self._models.move_to_end(key)
                return handle
            self.drop(key)                       # a worker that died: start a fresh one
            self.make_room(backend, model_id, device, dtype)
            handle = handle_for(backend, model_id, device, dtype, on_status=on_progress,
                                on_tick=on_tick)
            self._models[key] = handle
            return handle

    def holds(self, backend: "Backend", model_id: str, device: str, dtype: str) -> bool:
        handle = self._models.get((backend.name, model_id, device, dtype))
        return handle is not None and handle.alive and handle.backend is backend

    def make_room(self, backend: "Backend", model_id: str, device: str, dtype: str) -> None:
        """Drop least recently used models: to stay within max_entries, and while the new one
        would not fit in free memory. Drops nothing when even an empty cache would not do."""
        from lib.estimate import memory

        if not backend.holds_weights:
            return      # an estimate loads nothing: no other model needs to make way for it
        need = backend.load_need(model_id, dtype).total_bytes
        with self._lock:
            if need > memory.free_bytes(device) + self.releasable_bytes(device):
                return  # loading refuses it with the numbers; other sessions keep their models
            limit = max(self.max_entries, len(self._pinned) + 1)
            while True:
                unpinned = [key for key in self._models if key not in self._pinned]
                if not unpinned or (len(self._models) < limit
                                    and need <= memory.free_bytes(device)):
                    return
                self.drop(unpinned[0])

    def releasable_bytes(self, device: str) -> int:
        """Memory that dropping every unpinned model on `device` would give back (estimated
        from their weights: a worker process gives back more, never less)."""
        with self._lock:
            return sum(handle.loaded.shapes.weight_bytes(handle.loaded.dtype)
                       for key, handle in self._models.items()
                       if key not in self._pinned and handle.loaded.device == device
                       and handle.backend.holds_weights)

    def drop(self, key: CacheKey) -> None:
        with self._lock:
            handle = self._models.pop(key, None)
        if handle is not None:
            handle.close()
            _release_memory()

    def pin(self, key: CacheKey) -> None:
        """Keep this model loaded, whatever else loads, until `unpin` (a sweep's models)."""
        with self._lock:
            self._pinned.add(key)

    def unpin(self, key: CacheKey) -> None:
        with self._lock:
            self._pinned.discard(key)

    def close(self) -> None:
        for key in list(self._models):
            self.drop(key)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._models


def _release_memory() -> None:
    """Models that lived in this process: give their memory back now."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")     # never import torch here just to clean up
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()

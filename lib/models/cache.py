"""Loaded models kept in memory, shared by every browser session of the server.

A `LoadedModel` is whatever a backend loaded (a transformers module and its tokenizer, or a
backend's own handle), with how long loading took and where the weights came from. The
`ModelCache` keeps a few of them, keyed by (backend, model, device, dtype), so a model loads
once; the least recently used is dropped before a new one loads, so its memory is free for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lib.models.catalog import CatalogEntry

if TYPE_CHECKING:
    from lib.backends.base import Backend
    from lib.memory import Shapes

Progress = Callable[[str], None]
CacheKey = tuple[str, str, str, str]       # backend, model id, device, dtype


@dataclass
class LoadedModel:
    backend: str                      # the name of the backend that loaded it
    entry: CatalogEntry
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    load_s: float                     # until the model was ready on the device
    source: str                       # how the weights got here, in words
    loaded_at: float = 0.0            # time.time() when loading finished
    quantize_s: float | None = None   # int8 only: time spent quantizing, after load_s

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    @property
    def shapes(self) -> "Shapes":
        from lib.models.shapes import shapes
        return shapes(self.model_id)

    @property
    def key(self) -> CacheKey:
        return (self.backend, self.model_id, self.device, self.dtype)


class ModelCache:
    """Most recently used last; thread-safe. At most `max_entries` stay resident: each may take
    gigabytes."""

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max_entries
        self._models: OrderedDict[CacheKey, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, backend: "Backend", model_id: str, device: str, dtype: str,
            on_progress: Progress | None = None) -> LoadedModel:
        key = (backend.name, model_id, device, dtype)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            self.make_room(backend, model_id, device, dtype)
            loaded = backend.load(model_id, device, dtype, on_progress=on_progress)
            self._models[key] = loaded
            return loaded

    def holds(self, backend: "Backend", model_id: str, device: str, dtype: str) -> bool:
        return (backend.name, model_id, device, dtype) in self._models

    def make_room(self, backend: "Backend", model_id: str, device: str, dtype: str) -> None:
        """Drop least recently used models: to stay within max_entries, and while the new one
        would not fit in free memory. Drops nothing when even an empty cache would not do."""
        from lib import memory

        need = backend.load_need(model_id, dtype).total_bytes
        with self._lock:
            kept = sum(m.shapes.weight_bytes(m.dtype) for m in self._models.values()
                       if m.device == device)
            if need > memory.free_bytes(device) + kept:
                return  # loading refuses it with the numbers; other sessions keep their models
            while self._models and (len(self._models) >= self.max_entries
                                    or need > memory.free_bytes(device)):
                self._models.popitem(last=False)
                _release_memory()

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._models


def _release_memory() -> None:
    import gc

    gc.collect()
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

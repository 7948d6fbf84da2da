"""A model as a backend loaded it: the record every backend returns and the cache keeps.

`LoadedModel` is whatever a backend loaded (a transformers module and its tokenizer, or a
backend's own handle), with how long loading took and where the weights came from. It is data
only: `lib.models.loading` fills one for transformers, each backend in `lib.measure.backends` for
itself, and `lib.measure.cache` keys its models by `LoadedModel.key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lib.models.catalog import CatalogEntry

if TYPE_CHECKING:
    from lib.models.shapes import Shapes

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
    weights_bytes: int | None = None  # resident weights, summed over the model's tensors
    # Time spent building the stack's own copy of the weights (a GGUF or ONNX file in another
    # format) the first time it was needed, before load_s; None when a cached copy was read.
    build_s: float | None = None

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

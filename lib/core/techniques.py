"""The rules pruning, early exit and speculative decoding follow, shared by the live runs
(`lib.measure.techniques`, `lib.measure.speculative`) and the estimates
(`lib.estimate.techniques`): which layers run, how big the early-exit draft is, how many
tokens prompt lookup proposes. No torch here.

Layers are removed from the middle out (the first and last layers matter most, as pruning
studies find); early exit keeps the first K.
"""

from __future__ import annotations

from lib.core.errors import UnsupportedError
from lib.core.spec import RunSpec

PROMPT_LOOKUP_TOKENS = 10          # candidates per step, transformers' usual setting
DRAFT_FRACTION = 4                 # early-exit draft: the first quarter of the layers


def draft_layers(total: int) -> int:
    return max(1, total // DRAFT_FRACTION)


def kept_layers(total: int, spec: RunSpec) -> list[int]:
    """Which decoder layers (by index) run for `spec`; UnsupportedError when it would remove
    them all or asks for more than the model has."""
    kept = list(range(total))
    if spec.prune is not None and spec.prune.startswith("layers:"):
        remove = int(spec.prune.split(":")[1])
        if remove >= total:
            raise UnsupportedError(f"The model has {total} decoder layers: layers:{remove} would "
                                   f"remove them all. Remove at most {total - 1}.")
        middle = (total - 1) / 2
        dropped = sorted(kept, key=lambda index: (abs(index - middle), index))[:remove]
        kept = [index for index in kept if index not in dropped]
    if spec.exit_layer is not None:
        if spec.exit_layer > len(kept):
            raise UnsupportedError(
                f"Early exit after layer {spec.exit_layer}, but the model has "
                f"{len(kept)} decoder layers{' left after pruning' if len(kept) < total else ''}"
                f": choose at most {len(kept)}.")
        kept = kept[:spec.exit_layer]
    return kept

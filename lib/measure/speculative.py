"""Speculative decoding on the transformers stack: transformers' assisted generation.

- `prompt-lookup`: candidates are the tokens that followed the last few tokens' earlier match
  in the prompt (`prompt_lookup_num_tokens`): free to make, right when the answer repeats the
  prompt (quoting, rewriting), wrong in free chat;
- `early-exit`: the draft is the model's own first `draft_layers` layers (the early-exit variant
  of `lib.measure.techniques`, sharing every weight), then the whole model checks the guesses;
- `draft`: the draft is a separate, smaller trained model sharing the tokenizer: a student
  distilled from this model on this machine (`python -m lib distill`, listed by
  `lib.models.catalog.students`; the one with the fewest layers), loaded once per worker in
  the run's device and number format, its weights counted in the memory need.
Greedy either way: the output must be plain greedy decoding's, token for token (checked after
the run by one untimed plain call). Per timed call: the steps generate took (each emits the
accepted guesses plus one token of its own) and the guesses proposed (counted by wrapping the
candidate generator generate makes; None where this transformers has no such seam).
`acceptance_rate` = accepted guesses / proposed guesses; `tokens_per_step` = tokens / steps.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import TYPE_CHECKING, Any, Iterator

from lib.core.errors import UnsupportedError
from lib.core.spec import RunSpec
from lib.core.techniques import PROMPT_LOOKUP_TOKENS, draft_layers

if TYPE_CHECKING:
    from lib.models.catalog import CatalogEntry

_DRAFTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def draft_entry(model_id: str) -> "CatalogEntry":
    """The draft model for `--speculative draft`: UnsupportedError, saying how to make one,
    when this model has none."""
    from lib.models import catalog

    found = catalog.students(model_id)
    if not found:
        entry = catalog.get_entry(model_id)
        distill = (f"train one with python -m lib distill --model {model_id} (about 7 minutes "
                   "on 2 cores), or " if entry.weights == catalog.TRAINED and
                   model_id in catalog.CATALOG else "")
        raise UnsupportedError(
            f"Speculative decoding with a draft model needs a smaller trained model that shares "
            f"{entry.display_name}'s tokenizer, and there is none here: {distill}choose "
            "prompt-lookup or early-exit.")
    return found[0]


def draft_model(model: Any, spec: RunSpec) -> Any:
    """The draft's torch model, loaded once per worker for `model` (kept while it is)."""
    from lib.models import loading

    key = (spec.device, spec.dtype)
    drafts = _DRAFTS.setdefault(model, {})
    if key not in drafts:
        drafts.clear()
        drafts[key] = loading.load(draft_entry(spec.model_id), spec.device, spec.dtype,
                                   "transformers").model
    return drafts[key]


def arguments(model: Any, spec: RunSpec) -> dict[str, Any]:
    """What `generate` adds for `spec.speculative`."""
    if spec.speculative == "prompt-lookup":
        return {"prompt_lookup_num_tokens": PROMPT_LOOKUP_TOKENS}
    if spec.speculative == "draft":
        return {"assistant_model": draft_model(model, spec)}
    from lib.measure import techniques
    total = len(model.model.layers)
    draft = techniques.variant(model, RunSpec(exit_layer=draft_layers(total)))
    return {"assistant_model": draft}


class Speculation:
    """One session's counts over its timed calls."""

    def __init__(self, method: str, draft: str | None = None) -> None:
        self.method, self.draft = method, draft        # draft: the draft model's id
        self.tokens = self.steps = 0
        self.proposed: int | None = 0

    @contextlib.contextmanager
    def counting(self, model: Any, timed: bool) -> Iterator[None]:
        """Count the guesses proposed during one call (timed calls only)."""
        original = getattr(model, "_get_candidate_generator", None)
        if not timed or original is None:
            if timed:
                self.proposed = None
            yield
            return

        def counting_generator(*args: Any, **kwargs: Any) -> Any:
            generator = original(*args, **kwargs)
            get = generator.get_candidates

            def get_candidates(input_ids: Any, *more: Any, **named: Any) -> Any:
                candidates, logits = get(input_ids, *more, **named)
                if self.proposed is not None:
                    self.proposed += max(candidates.shape[-1] - input_ids.shape[-1], 0)
                return candidates, logits
            generator.get_candidates = get_candidates
            return generator

        model._get_candidate_generator = counting_generator
        try:
            yield
        finally:
            model.__dict__.pop("_get_candidate_generator", None)

    def add_call(self, tokens: int, steps: int) -> None:
        self.tokens += tokens
        self.steps += steps

    def report(self, identical: bool) -> dict[str, Any]:
        accepted = self.tokens - self.steps
        return {"method": self.method, "draft": self.draft,
                "steps": self.steps, "tokens": self.tokens,
                "proposed": self.proposed, "accepted": accepted,
                "acceptance_rate": accepted / self.proposed if self.proposed else None,
                "tokens_per_step": self.tokens / self.steps if self.steps else None,
                "tokens_identical": identical}

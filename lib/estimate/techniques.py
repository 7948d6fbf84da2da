"""What pruning, early exit and speculative decoding change in an estimate.

- **Pruning and early exit change the shapes** (`shaped`): `layers:N` and early exit keep some
  decoder layers (which ones as `lib.core.techniques.kept_layers` chooses, live too), so the
  layers' weights, FLOPs and KV cache shrink in proportion, while the embeddings and the output
  head stay whole; `mlp:S` removes the share S of each gated MLP's channels (three matrices per
  layer: gate, up, down), as live. `magnitude:S` changes nothing: the zeros stay in dense
  matrices, read and multiplied like any number (that is the lesson it teaches).
- **Speculative decoding changes what a token costs** (`speculate`): a step proposes k guesses
  (from the prompt, free; from the model's first quarter of layers; from a draft model of a
  third of its layers, as `python -m lib distill` makes by default) and one pass of the whole
  model checks k + 1 tokens. With a share `a` of guesses accepted, a step emits 1 + a k tokens,
  so

      time per token = (k x draft step + verify pass of k + 1 tokens) / (1 + a k)

  The acceptance rate and k are measured: a run on this machine reports them (`speculative`
  in its JSON), and the defaults below are such runs of the default model; `python -m lib
  estimate --acceptance-rate` states another. A rate is a property of the model pair and the
  text, not of the hardware, so it carries over.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lib.core.errors import InvalidSpecError, UnsupportedError
from lib.core.spec import RunSpec
from lib.core.techniques import PROMPT_LOOKUP_TOKENS, draft_layers, kept_layers
from lib.models.shapes import Shapes

GATED_MLP_MATRICES = 3
DRAFT_MODEL_LAYER_SHARE = 3          # a distilled draft: a third of the layers (10 of 30)


@dataclass(frozen=True)
class Speculation:
    """How `spec`'s speculative decoding is modelled: guesses per step, accepted share."""
    method: str
    guesses_per_step: float
    acceptance_rate: float
    source: str                      # where the two numbers come from, in words

    @property
    def tokens_per_step(self) -> float:
        return 1 + self.acceptance_rate * self.guesses_per_step


# Measured on this 2-core machine with SmolLM2-135M-Instruct float32 (python -m lib run
# --speculative METHOD --prompt-kind KIND, prompt 64 for chat and 160 for quote, 32 new tokens,
# 3 repetitions, 2026-12-07): (guesses per step, acceptance rate). Prompt lookup proposes only
# where the last tokens occurred in the prompt before; transformers shortens a draft model's
# guesses after each miss, and stops them where the draft is unsure (so k is small for a
# 7-minute student: 1.03).
MEASURED = {("prompt-lookup", "chat"): (3.68, 0.009),
            ("prompt-lookup", "quote"): (10.0, 0.967),
            ("early-exit", "chat"): (9.10, 0.004),
            ("early-exit", "quote"): (7.45, 0.004),
            ("draft", "chat"): (1.03, 0.031),
            ("draft", "quote"): (1.03, 0.031)}
MEASURED_SOURCE = ("measured on a 2-core CPU with SmolLM2-135M-Instruct and the built-in "
                   "{kind} prompt")


def applies(spec: RunSpec) -> bool:
    return spec.prune is not None or spec.exit_layer is not None or spec.speculative != "none"


def shaped(shape: Shapes, spec: RunSpec, model_type: str | None = None) -> Shapes:
    """The shapes `spec` runs: fewer layers, narrower MLPs, or the same (see the module)."""
    if spec.prune is None and spec.exit_layer is None:
        return shape
    kept = len(kept_layers(shape.layers, spec))
    smaller = _keep_layers(shape, kept) if kept != shape.layers else shape
    if spec.prune is not None and spec.prune.startswith("mlp:"):
        smaller = _narrow_mlp(smaller, float(spec.prune.split(":")[1]))
    return smaller


def _outside(shape: Shapes) -> tuple[int, int, bool]:
    """(parameters outside the decoder layers, the head's, whether the head is tied)."""
    head = shape.vocab_size * shape.hidden_size
    tied = shape.linear_parameters > shape.untied_linear_parameters
    # Tied: one table, the head's (lib.models.shapes counts no gathered embedding for it).
    embeddings = 0 if tied else shape.embedding_parameters if \
        shape.embedding_parameters is not None else head
    return head + embeddings + shape.hidden_size, head, tied


def _keep_layers(shape: Shapes, kept: int) -> Shapes:
    share = kept / shape.layers
    outside, head, tied = _outside(shape)
    untied_head = 0 if tied else head

    def scaled(total: int, fixed: int) -> int:
        return fixed + round((total - fixed) * share)

    return dataclasses.replace(
        shape, layers=kept, parameters=scaled(shape.parameters, outside),
        active_parameters=None if shape.active_parameters is None
        else scaled(shape.active_parameters, outside),
        linear_parameters=scaled(shape.linear_parameters, head),
        untied_linear_parameters=scaled(shape.untied_linear_parameters, untied_head),
        kv_elements_per_token=None if shape.kv_elements_per_token is None
        else round(shape.kv_elements_per_token * share),
        latent_kv_elements_per_token=None if shape.latent_kv_elements_per_token is None
        else round(shape.latent_kv_elements_per_token * share),
        routed_parameters=round(shape.routed_parameters * share),
        routed_linear_parameters=round(shape.routed_linear_parameters * share))


def _narrow_mlp(shape: Shapes, share: float) -> Shapes:
    if shape.experts:
        raise UnsupportedError("Estimates don't model mlp pruning of a mixture of experts (its "
                               "experts are many small MLPs): estimate layers:N instead.")
    removed_channels = int(share * shape.intermediate_size)
    removed = shape.layers * GATED_MLP_MATRICES * shape.hidden_size * removed_channels
    return dataclasses.replace(
        shape, intermediate_size=shape.intermediate_size - removed_channels,
        parameters=shape.parameters - removed,
        active_parameters=None if shape.active_parameters is None
        else shape.active_parameters - removed,
        linear_parameters=shape.linear_parameters - removed,
        untied_linear_parameters=shape.untied_linear_parameters - removed)


def speculation(spec: RunSpec, acceptance_rate: float | None = None,
                guesses_per_step: float | None = None) -> Speculation | None:
    """The speculation `spec` asks for, with measured (or stated) numbers; None without."""
    if spec.speculative == "none":
        return None
    guesses, rate = MEASURED[(spec.speculative, spec.prompt_kind)]
    source = MEASURED_SOURCE.format(kind=spec.prompt_kind)
    if spec.prompt_text is not None:
        source += " (your own prompt may differ: state its rate with --acceptance-rate)"
    if acceptance_rate is not None:
        if not 0 <= acceptance_rate <= 1:
            raise InvalidSpecError(f"The acceptance rate is a share of guesses, from 0 to 1 "
                                   f"(got {acceptance_rate}).")
        rate, source = acceptance_rate, "stated; guesses per step assumed"
        guesses = max(guesses, PROMPT_LOOKUP_TOKENS if spec.speculative == "prompt-lookup"
                      else 5.0)
    if guesses_per_step is not None:
        guesses = guesses_per_step
    return Speculation(spec.speculative, guesses, rate, source)


def draft_shapes(shape: Shapes, spec: RunSpec) -> Shapes | None:
    """The draft's shapes per guess (None: prompt lookup, no model runs)."""
    if spec.speculative == "early-exit":
        return _keep_layers(shape, draft_layers(shape.layers))
    if spec.speculative == "draft":
        return _keep_layers(shape, max(1, round(shape.layers / DRAFT_MODEL_LAYER_SHARE)))
    return None

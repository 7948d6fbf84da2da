"""Quality beside latency: what a run's settings cost in what the model predicts.

Measured apart from the timed calls, on the same loaded model and settings, over a fixed text
that ships with the project (`data/evaluation_text.txt`, `TEXT_SOURCE`) and is used for nothing
else. Its first `EVALUATION_TOKENS` tokens are the evaluation split, fed teacher-forced in
windows of `WINDOW_TOKENS` (each window starts afresh); at every position the session reports
its most likely next token and the negative log-likelihood of the text's actual next token
(`Session.next_token_scores`, from the stack's own runtime: a stack's quality is its own).

- *agreement*: the share of positions where the most likely next token equals the reference's,
  the reference being the same model in transformers, float32, unmodified ("agrees with the
  original model on 96% of next words"), or a distilled student's teacher;
- *perplexity*: exp(mean negative log-likelihood), beside the reference's (lower is better).

The reference's predictions are computed once per model and token ids and kept in the cache
folder; a reference run keeps its own. Building them for another stack or format loads the
reference model for a moment in the same worker, memory-checked first like any load.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from lib.core import paths
from lib.core.kinds import CAUSAL_LM
from lib.core.results import Quality
from lib.core.spec import RunSpec
from lib.core.stacks import TRANSFORMERS
from lib.models.catalog import RANDOM, get_entry
from lib.models.files import teacher_of

TEXT_FILE = Path(__file__).resolve().parent / "data" / "evaluation_text.txt"
TEXT_NAME = "a fixed text (the Declaration of Independence and two Lincoln speeches)"
TEXT_SOURCE = ("The Declaration of Independence (1776, excerpts), the Gettysburg Address (1863) "
               "and Abraham Lincoln's Second Inaugural Address (1865): public domain")
WINDOW_TOKENS = 512
EVALUATION_TOKENS = 1024          # the rest of the text is the training split (distillation)
REFERENCE_DTYPE = "float32"
REFERENCE = f"{TRANSFORMERS}, {REFERENCE_DTYPE}"
REFERENCE_FORMAT = 1              # the kept reference file's layout

Scores = tuple[list[int], list[float]]     # per position: predicted next token, its NLL


def text() -> str:
    return TEXT_FILE.read_text(encoding="utf-8")


def split_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The text's token ids, split: (evaluation, training)."""
    ids = list(tokenizer.encode(text(), add_special_tokens=False))
    return ids[:EVALUATION_TOKENS], ids[EVALUATION_TOKENS:]


def windows(ids: Sequence[int]) -> list[list[int]]:
    """`ids` in windows of WINDOW_TOKENS (the last may be shorter, never under two tokens)."""
    return [list(ids[start:start + WINDOW_TOKENS])
            for start in range(0, len(ids), WINDOW_TOKENS)
            if len(ids[start:start + WINDOW_TOKENS]) >= 2]


def unavailable_reason(entry: Any, spec: RunSpec) -> str | None:
    """Why this run has no quality to measure, or None when it has."""
    if spec.hardware is not None:
        return "an estimate runs nothing, so there is no output to judge"
    if entry.kind != CAUSAL_LM:
        return "only a model that writes tokens has next-token predictions to judge"
    if entry.weights == RANDOM:
        return ("random weights: this preset's predictions mean nothing, so there is no "
                "quality to measure (the timing is real). Use a model with trained weights")
    return None


def is_reference(spec: RunSpec) -> bool:
    """The run is the reference itself: transformers, float32, the model unmodified (neither
    pruned nor exiting early)."""
    return spec.stack == TRANSFORMERS and spec.dtype == REFERENCE_DTYPE and \
        spec.device == "cpu" and spec.prune is None and spec.exit_layer is None


def measure(backend: Any, session: Any, loaded: Any, spec: RunSpec) -> Quality:
    """The run's quality (module docstring), or why it has none. The reference's scores come
    through `backend` (`Backend.reference_scores`: a fake declares its own)."""
    from lib.core.errors import UnsupportedError

    why = unavailable_reason(loaded.entry, spec)
    if why is not None:
        return Quality(text=TEXT_NAME, unavailable=why)
    started = time.perf_counter()
    evaluation, _ = split_ids(loaded.tokenizer)
    parts = windows(evaluation)
    try:
        scores = _joined(session.next_token_scores(parts))
    except UnsupportedError as exc:
        return Quality(text=TEXT_NAME, unavailable=str(exc))
    teacher = teacher_of(loaded.entry.local_path)         # a distilled student's reference
    if is_reference(spec) and teacher is None:
        backend.keep_reference(loaded.entry.model_id, parts, scores)
        reference = scores
    else:
        reference = backend.reference_scores(get_entry(teacher) if teacher else loaded.entry,
                                             parts)
    measured = summarize(scores, reference, time.perf_counter() - started)
    if teacher:
        import dataclasses
        measured = dataclasses.replace(measured, reference=f"its teacher {teacher}, {REFERENCE}")
    return measured


def summarize(scores: Scores, reference: Scores, seconds: float | None = None) -> Quality:
    """Agreement and perplexities from the run's scores and the reference's, position by
    position (both over the same windows)."""
    predicted, nll = scores
    expected, reference_nll = reference
    if len(predicted) != len(expected) or not predicted:
        raise ValueError(f"{len(predicted)} predictions against {len(expected)} reference ones")
    agreed = sum(1 for mine, theirs in zip(predicted, expected) if mine == theirs)
    return Quality(text=TEXT_NAME, tokens=len(predicted), agreement=agreed / len(predicted),
                   perplexity=_perplexity(nll), reference_perplexity=_perplexity(reference_nll),
                   reference=REFERENCE, seconds=seconds)


def _perplexity(nll: Sequence[float]) -> float:
    mean = sum(nll) / len(nll)
    return math.exp(min(mean, 700.0))       # a broken model's is huge, never infinite


def _joined(per_window: Sequence[Scores]) -> Scores:
    predicted: list[int] = []
    nll: list[float] = []
    for window_predicted, window_nll in per_window:
        predicted += [int(token) for token in window_predicted]
        nll += [float(value) for value in window_nll]
    return predicted, nll


# --- the reference ---------------------------------------------------------------------------

def reference_scores(entry: Any, parts: list[list[int]]) -> Scores:
    """The reference's scores over `parts`: kept ones, else computed now (and kept)."""
    kept = _kept_reference(entry.model_id, parts)
    if kept is not None:
        return kept
    from lib.estimate import memory
    from lib.models import loading
    from lib.models.shapes import shapes

    memory.assess(memory.estimate(shapes(entry.model_id), REFERENCE_DTYPE, 1, 0, 0), "cpu",
                  f"loading {entry.display_name} in {REFERENCE_DTYPE} as the quality "
                  "reference").enforce()
    loaded = loading.load(entry, "cpu", REFERENCE_DTYPE, TRANSFORMERS)
    try:
        scores = _joined(torch_scores(loaded.model, parts, "cpu"))
    finally:
        del loaded
    keep_reference(entry.model_id, parts, scores)
    return scores


def torch_scores(model: Any, windows: list[list[int]],
                 device: str) -> list[tuple[list[int], list[float]]]:
    """`Session.next_token_scores` for a torch causal LM: one forward pass per window, the
    logits read in float32 whatever the model's own format."""
    import torch

    scores = []
    with torch.inference_mode():
        for window in windows:
            ids = torch.tensor([window], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            nll = -log_probs.gather(1, ids[0, 1:, None])[:, 0]
            scores.append((logits.argmax(dim=-1).tolist(), nll.tolist()))
    return scores


def _reference_path(model_id: str, parts: list[list[int]]) -> Path:
    digest = hashlib.sha256(json.dumps([model_id, parts]).encode()).hexdigest()[:24]
    return paths.cache_dir() / "quality" / f"reference-{digest}.json"


def _kept_reference(model_id: str, parts: list[list[int]]) -> Scores | None:
    try:
        document = json.loads(_reference_path(model_id, parts).read_text(encoding="utf-8"))
        predicted, nll = document["predicted"], document["nll"]
        expected = sum(len(part) - 1 for part in parts)
        if document.get("format") != REFERENCE_FORMAT or len(predicted) != expected or \
                len(nll) != expected:
            return None
        return [int(token) for token in predicted], [float(value) for value in nll]
    except (OSError, ValueError, KeyError, TypeError):
        return None                        # absent or damaged: computed again


def keep_reference(model_id: str, parts: list[list[int]], scores: Scores) -> None:
    path = _reference_path(model_id, parts)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"format": REFERENCE_FORMAT, "model_id": model_id,
                                         "predicted": scores[0], "nll": scores[1]}),
                             encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass                               # not kept: computed again next time

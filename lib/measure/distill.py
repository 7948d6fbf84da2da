"""Distillation, small and live: a student with fewer layers learns to match the teacher.

The student starts as the teacher with only `layers` of its decoder layers, spread evenly from
the first to the last (so its shapes are the same-size pruned model's), and is trained to match
the teacher's next-token distribution (KL divergence over the whole vocabulary, the teacher's
probabilities as soft targets) on the evaluation text's training split, never its evaluation
split (`lib.measure.quality`). The teacher's probabilities are computed once; the student
trains with AdamW until `steps` or the time budget, whichever comes first, reporting its loss
and the time left after each step. The result is saved as a model folder in the cache
(`lib.models.catalog.student_folder`), with `distilled.json` saying where it came from (teacher, layers, steps,
tokens, seconds, losses); The catalog lists it (`lib.models.catalog.students`, id `<teacher>-distilled-<layers>`), it runs
like any model, its quality is measured against its teacher (`lib.models.files.teacher_of`),
and it can be the draft of speculative decoding (`--speculative draft`).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

from lib.core.errors import ExplorerError
from lib.models.catalog import get_entry
from lib.models.students import student_folder, student_id
from lib.models.files import DISTILLED_FILE as PROVENANCE_FILE

WINDOW_TOKENS = 256
LEARNING_RATE = 2e-4

Progress = Callable[[str], None]


def spread_layers(total: int, layers: int) -> list[int]:
    """`layers` indexes from 0 to total - 1, evenly spread, first and last included."""
    if layers >= total:
        return list(range(total))
    if layers == 1:
        return [0]
    return sorted({round(index * (total - 1) / (layers - 1)) for index in range(layers)})


def distill(teacher_id: str, layers: int, steps: int, budget_s: float, threads: int,
            say: Progress) -> dict[str, Any]:
    """Train the student (module docstring), save it, and return its provenance."""
    import copy

    import torch

    from lib.measure import quality
    from lib.models import loading

    entry = get_entry(teacher_id)
    if entry.weights != "trained":
        raise ExplorerError(f"{entry.display_name} has random weights: there is nothing to "
                            "learn from it. Distil a model with trained weights.")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.monotonic()
    say(f"Loading the teacher, {entry.display_name}…")
    teacher = loading.load(entry, "cpu", "float32", "transformers")
    total = len(teacher.model.model.layers)
    if not 1 <= layers < total:
        raise ExplorerError(f"{entry.display_name} has {total} layers: a student has from 1 to "
                            f"{total - 1}.")
    _, training = quality.split_ids(teacher.tokenizer)
    windows = [training[start:start + WINDOW_TOKENS]
               for start in range(0, len(training) - 1, WINDOW_TOKENS)]
    windows = [window for window in windows if len(window) >= 16]
    say(f"The teacher reads the training split ({len(training):,} tokens)…")
    with torch.inference_mode():
        targets = [torch.log_softmax(teacher.model(input_ids=torch.tensor([w])).logits[0].float(),
                                     dim=-1) for w in windows]
    student = copy.deepcopy(teacher.model)
    kept = spread_layers(total, layers)
    student.model.layers = torch.nn.ModuleList(student.model.layers[index] for index in kept)
    for position, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = position
    student.config.num_hidden_layers = layers
    if isinstance(getattr(student.config, "layer_types", None), list):
        student.config.layer_types = [student.config.layer_types[index] for index in kept]
    del teacher.model
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=LEARNING_RATE)
    losses: list[float] = []
    step = 0
    deadline = started + budget_s
    while step < steps and time.monotonic() < deadline:
        window = windows[step % len(windows)]
        target = targets[step % len(windows)]
        logits = student(input_ids=torch.tensor([window])).logits[0].float()
        loss = torch.nn.functional.kl_div(torch.log_softmax(logits, dim=-1), target,
                                          log_target=True, reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        spent = time.monotonic() - started
        left = min(deadline - time.monotonic(),
                   (spent / step) * (steps - step) if step else math.inf)
        say(f"step {step}/{steps}: loss {losses[-1]:.3f}, about {max(left, 0):.0f} s left")
    student.eval()
    folder = student_folder(teacher_id, layers)
    folder.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(folder, safe_serialization=True)
    teacher.tokenizer.save_pretrained(folder)
    provenance = {"teacher": teacher_id, "layers": layers, "kept_layers": kept,
                  "steps": step, "tokens": step * WINDOW_TOKENS,
                  "data": f"the training split of {quality.TEXT_NAME} ({len(training):,} tokens)",
                  "seconds": round(time.monotonic() - started, 1),
                  "loss_first": losses[0] if losses else None,
                  "loss_last": losses[-1] if losses else None, "folder": str(folder),
                  "model_id": student_id(teacher_id, layers)}
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1), encoding="utf-8")
    return provenance

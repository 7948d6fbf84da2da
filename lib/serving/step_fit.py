"""This machine's own step times, measured in a few seconds, for simulating its local server.

The simulator's step time on a hardware profile comes from the estimator; for the server this
machine runs (`transformers serve`, eager PyTorch on the CPU) it comes from timing the model
itself: forward passes of a few decode batches (each sequence one new token over a KV cache)
and a few prompt chunks, fitted by least squares with no negative term to

    step = fixed + prefill_fixed (when the step reads any prompt tokens)
                 or batched_fixed (when it decodes two sequences or more, and reads no prompt)
           + per_decode x decode sequences + per_prompt x prompt tokens
           + per_context x context tokens the decode steps attend to

A step that reads a prompt has its own fixed cost: on a CPU a prompt chunk's first tokens
cost more than later ones (its matrix products are too small to use the cores well), and one
shared intercept made every decode step look a third slower than it is. So does a step that
decodes two sequences or more: one sequence multiplies a vector by each weight matrix (a fast,
memory-bound kernel), two or more multiply a thin matrix (another kernel, slower per step
here: 55 ms for one sequence, about 90 for two to eight on this machine's 2 cores), which a
cost growing evenly with the sequences cannot follow. Terms are kept
non-negative by solving every subset of them and keeping the best that has none below zero
(clipping a negative one after an unconstrained fit moved the others).

`FittedStep.seconds` has the simulator's step signature. It is measured on the model alone,
never from a load test's curve, so comparing the simulation with a measured load test
(`benchmarks/serving_simulator.py`) is a test of the simulation, not a fit of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DECODE_BATCHES = (1, 2, 4, 8)
CONTEXTS = (16, 80)
PROMPTS = (32, 64, 128, 256)
REPEATS = 3


@dataclass(frozen=True)
class FittedStep:
    fixed_s: float
    per_decode_s: float
    per_prompt_s: float
    per_context_s: float
    samples: int
    prefill_fixed_s: float = 0.0
    batched_fixed_s: float = 0.0

    def seconds(self, decode_seqs: int, decode_context: float, prefill_tokens: int,
                prefill_pairs: float) -> float:
        if decode_seqs + prefill_tokens == 0:
            return 0.0
        extra = self.prefill_fixed_s if prefill_tokens else \
            self.batched_fixed_s if decode_seqs >= 2 else 0.0
        return (self.fixed_s + extra + self.per_decode_s * decode_seqs
                + self.per_prompt_s * prefill_tokens + self.per_context_s * decode_context)

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def measure(model_id: str, dtype: str = "float32", threads: int | None = None,
            repeats: int = REPEATS) -> FittedStep:
    """Time the model's forward passes here and fit the step (see the module); the best of
    `repeats` timings of each."""
    import warnings

    import numpy
    import torch

    from lib.core.spec import default_threads
    from lib.models import loading
    from lib.models.catalog import get_entry

    torch.set_num_threads(threads or default_threads())
    loaded = loading.load(get_entry(model_id), "cpu", dtype, "transformers")
    model = loaded.model
    rows, times = [], []

    def timed(call) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - started)
        return best

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # past_key_values' new name
        for prompt in PROMPTS:
            ids = torch.randint(100, 1000, (1, prompt))
            rows.append((1.0, 1.0, 0.0, 0.0, prompt, 0.0))
            # A server computes the next-token logits of a prompt's last position only.
            times.append(timed(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1)))
        for context in CONTEXTS:
            for batch in DECODE_BATCHES:
                ids = torch.randint(100, 1000, (batch, context))
                cache = model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
                one = torch.randint(100, 1000, (batch, 1))

                def step(cache=cache, one=one):
                    model(input_ids=one, past_key_values=cache, use_cache=True)
                    cache.crop(-1)                 # back to the same context each time
                rows.append((1.0, 0.0, float(batch >= 2), batch, 0.0, batch * context))
                times.append(timed(step))
    fixed, prefill_fixed, batched_fixed, per_decode, per_prompt, per_context = \
        non_negative_fit(rows, times)
    return FittedStep(fixed, per_decode, per_prompt, per_context, len(times), prefill_fixed,
                      batched_fixed)


def non_negative_fit(rows: list[tuple[float, ...]], times: list[float]) -> list[float]:
    """Least squares with every term >= 0: the best of the unconstrained fits on each subset
    of the columns whose terms all come out non-negative (the rest zero). Exact, and cheap for
    a handful of columns."""
    import itertools

    import numpy

    matrix, target = numpy.array(rows, dtype=float), numpy.array(times, dtype=float)
    width = matrix.shape[1]
    best, best_error = [0.0] * width, float(numpy.sum(target ** 2))
    for size in range(1, width + 1):
        for columns in itertools.combinations(range(width), size):
            solution, *_ = numpy.linalg.lstsq(matrix[:, columns], target, rcond=None)
            if (solution < 0).any():
                continue
            error = float(numpy.sum((matrix[:, columns] @ solution - target) ** 2))
            if error < best_error:
                best_error = error
                best = [0.0] * width
                for column, value in zip(columns, solution):
                    best[column] = float(value)
    return best

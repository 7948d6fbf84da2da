"""The physical floor under a measurement: what its machine's memory and arithmetic allowed.

Every live run records the ceilings of the machine it ran on (`environment["ceilings"]`, from
`lib.machine.ceilings`); with the model's shapes (`lib.models.shapes`) and the run's settings,
`lib.estimate.roofline` gives the bytes and FLOPs of the prefill and of one decode step, their floor
times and which limit binds. This module applies that to saved things:
- `judged(measurement, summary)`: the run JSON's `floor` object (None when the run has no
  ceilings, e.g. one saved before they were recorded, or its model's shapes can't be read);
- `metric_floors(...)`: the same floor for each charted metric (latencies are floors,
  throughputs ceilings), for the sweep table's `floor_*` columns and the dashed chart lines;
  for an estimate, the floor of its hardware profile (peak figures, per device of `gpus`),
  so a chart mixing this machine with an H200 draws each point's own physics limit;
- `sentences(...)`: the plain-words explanation the Playground shows.
Bytes and arithmetic follow the run's software stack and weight format (`lib.estimate.roofline.costs`,
`matmul_dtype`): a llama.cpp Q4_K_M run's decode floor is its 4.9-bit weights and float16
cache over this machine's measured bandwidth, its arithmetic at the float32 rate.
Floors are estimates by nature: everything that shows them says so.
"""

from __future__ import annotations

from typing import Any

from lib.estimate import roofline, roofline_words
from lib.machine.capability import Ceilings
from lib.core.errors import ExplorerError
from lib.core.results import Measurement

# Each charted metric and how its floor follows from the TTFT and TPOT floors.
FLOOR_METRICS = ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "total_tokens_per_s",
                 "requests_per_s")


def _parts(measurement: Measurement):
    """(costs, floor, bandwidth, flops) for this measurement, or None. None too for a pruned,
    early-exit or speculative run: the floor assumes the whole model runs once per token."""
    spec = measurement.spec
    if spec.prune is not None or spec.exit_layer is not None or spec.speculative != "none":
        return None
    try:
        limits = Ceilings.from_dict((measurement.environment or {}).get("ceilings"))
    except ValueError:
        return None               # not recorded (older runs, estimates), or not readable
    try:
        from lib.core.stacks import stored_in_blocks
        from lib.models.shapes import shapes
        shape = shapes(measurement.spec.model_id)
        per_param = None
        if stored_in_blocks(measurement.spec.dtype) and measurement.weights_bytes:
            # The file's own bytes: a block format's bits depend on the shapes (llama.cpp
            # stores Q4_K_M rows that aren't a multiple of 256 wide as Q5_0, SmolLM2's 576).
            per_param = measurement.weights_bytes / shape.parameters
        costs = roofline.costs(shape, measurement.spec, weight_bytes_per_param=per_param)
    except (ExplorerError, OSError, ValueError):
        return None               # a model folder that is gone, a config that no longer reads
    spec = measurement.spec
    bandwidth = limits.memory_bandwidth_bytes_per_s
    flops = limits.peak_flops(roofline.matmul_dtype(spec.stack, spec.dtype,
                                                    limits.device != "cpu"))
    return costs, roofline.floor(costs, bandwidth, flops, limits.source), bandwidth, flops


def judged(measurement: Measurement, ttft_s: float | None,
           tpot_s: float | None) -> dict[str, Any] | None:
    """The run JSON's `floor` object for these measured medians (see `roofline.judge`)."""
    parts = _parts(measurement)
    if parts is None:
        return None
    costs, floor, _, _ = parts
    return roofline.judge(costs, floor, ttft_s, tpot_s)


def sentences(measurement: Measurement, ttft_s: float | None,
              tpot_s: float | None, busy: bool = False) -> list[str]:
    """`roofline_words.sentences` for this run; `busy`: other programs took a material share of the
    CPU meanwhile (`lib.estimate.why`), so time above the floor is not called overhead."""
    parts = _parts(measurement)
    if parts is None:
        return []
    costs, floor, bandwidth, flops = parts
    return roofline_words.sentences(costs, floor, ttft_s, tpot_s, bandwidth, flops, busy)


def _profile_floor(measurement: Measurement):
    """An estimate's floor: its hardware profile's figures (None for a live run)."""
    spec = measurement.spec
    if measurement.measured or spec.hardware is None:
        return None
    from lib.machine import ceilings
    from lib.estimate import hardware
    from lib.models.shapes import shapes
    if spec.hardware == hardware.THIS and ceilings.cached(spec.device) is None:
        return None               # opening a table must never start measuring this machine
    try:
        profile = hardware.get(spec.hardware, spec.device)
        costs = roofline.costs(shapes(spec.model_id), spec, devices=spec.gpus)
        products = roofline.matmul_dtype(spec.stack, spec.dtype, profile.kind != "cpu")
        return roofline.floor(costs, profile.memory_bandwidth_bytes_per_s,
                              profile.peak_flops(products), profile.source)
    except (ExplorerError, OSError, ValueError):
        return None               # a profile or model this version no longer knows


def metric_floors(measurement: Measurement) -> dict[str, float]:
    """The floor of each metric in FLOOR_METRICS this run has (lowest latencies, highest
    throughputs the machine's memory and arithmetic allow); empty without ceilings. An
    estimate's is its hardware profile's."""
    floor = _profile_floor(measurement)
    if floor is None:
        parts = _parts(measurement)
        if parts is None:
            return {}
        _, floor, _, _ = parts
    spec = measurement.spec
    ttft = floor.ttft_s
    if measurement.model_kind == "encoder":
        return {"ttft_s": ttft, "e2e_s": ttft, "requests_per_s": spec.batch_size / ttft,
                "total_tokens_per_s": spec.batch_size * spec.prompt_tokens / ttft}
    tpot = floor.tpot_s
    e2e = ttft + (spec.new_tokens - 1) * tpot
    floors = {"ttft_s": ttft, "e2e_s": e2e, "requests_per_s": spec.batch_size / e2e,
              "total_tokens_per_s": spec.batch_size * (spec.prompt_tokens + spec.new_tokens) / e2e}
    if spec.new_tokens > 1:               # as lib.core.stats: one token has no decode step to time
        floors.update(tpot_s=tpot, decode_tokens_per_s=spec.batch_size / tpot)
    return floors

"""What a run would take on hardware that is not here: roofline floors plus what real stacks add.

`estimate(spec, hardware_id, gpus)` predicts one request batch of `spec` on `gpus` devices of a
hardware profile (`lib.estimate.hardware`; `estimate_on(spec, ceilings)` on the machine whose measured
ceilings a saved run recorded) and returns an `Estimate`: the run's summary metrics as single
numbers (`ttft_s`, `tpot_s`, `e2e_s`, throughputs, `peak_memory_bytes` per device), the roofline
`floor` judged against them, which term bounds each phase, every assumption in plain words with
its source, and a memory verdict (fits, or how many devices it needs). The model, per phase:

    work      = max(bytes moved / achieved bandwidth, FLOPs / achieved FLOP/s)   (lib.estimate.roofline)
                (on a CPU the attention's FLOPs run at its own kernel's lower rate)
    overhead  = layers x a fixed cost per layer (eager kernel launches; far less compiled, or
                in a native engine: llama.cpp, ONNX Runtime)
    phase     = max(overhead, work) on an accelerator (the host launches while it computes),
                overhead + work on a CPU (one thread does both)
              + communication (2 all-reduces per layer) when the model is split over devices

Bytes and FLOPs are per device: tensor parallelism divides weights and KV cache, and a mixture
of experts spreads its experts (expert parallelism). Achieved bandwidth and FLOP/s are
published fractions of a datasheet's peak for accelerators, and for CPUs fractions of the
measured (sustained) ceilings, calibrated against runs and single kernels here (on a CPU,
attention runs at a rate of its own; benchmarks/estimator_accuracy.py measures the error over
16 runs). Every constant of `lib.estimate.calibration` says where it comes from; MoE and multi-device figures have no
calibration of their own. Float8 weights (DeepSeek-R1 as published) are an
estimator-only number format: `split_dtype` maps it to a bfloat16 run with 1-byte weights.
The software stack (`spec.stack`) sets how weights, cache and arithmetic are counted: a block
format (Q8_0, Q4_K_M, Q4_1, int4) is read at its bits per weight and multiplied in the
activations' format (`lib.estimate.roofline.matmul_dtype`), the KV cache has the stack's width
(`lib.core.stacks.kv_bytes_per_number`), and an estimate refuses a format its stack does not run.

An Estimate is never a measurement: `lib.measure.backends.estimated` turns it into one repetition
marked "estimated", and nothing derives percentiles from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lib.estimate import assumptions, calibration, device_memory
from lib.estimate.calibration import FLOAT8
from lib.machine.capability import Ceilings
from lib.core.errors import InvalidSpecError, MemoryGuardError, UnsupportedError
from lib.estimate.hardware import THIS, Hardware
from lib.models.catalog import get_entry
from lib.core.kinds import ENCODER
from lib.core.results import ESTIMATED
from lib.core.spec import DTYPES, MAX_DEVICES, RunSpec, field_info, from_saved
from lib.core.stacks import FORMATS, STACK_SETTINGS, STACKS, TRANSFORMERS, check_format
from lib.models.shapes import Shapes

ESTIMATE_DTYPES = DTYPES + (FLOAT8,)     # float8: weights only, 1 byte; never run live here


@dataclass(frozen=True)
class Estimate:
    spec: RunSpec                         # with `hardware` and `gpus` set
    hardware: Hardware
    gpus: int
    summary: dict[str, float]             # the run summary's keys, single numbers
    floor: dict[str, Any]                 # roofline.judge against the estimated times
    assumptions: list[str] = field(hash=False)
    memory_verdict: str = ""
    weights_dtype: str = ""               # spec.dtype, or "float8"
    fits: bool = True
    devices_needed: int | None = 1        # None: no number of these devices can hold it
    bound: dict[str, str] = field(default_factory=dict, hash=False)   # phase -> limiting term
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict, hash=False)
    memory_need: "device_memory.MemoryNeed | None" = None    # the whole model's and run's, all devices
    app_verdict: str = ""                 # memory_verdict, its advice in a page's words
    # Speculative decoding as modelled (lib.estimate.techniques): guesses, acceptance, steps.
    speculative: dict[str, Any] | None = field(default=None, hash=False)

    def enforce(self) -> "Estimate":
        """Raise MemoryGuardError (the verdict) when the model doesn't fit on `gpus` devices."""
        if not self.fits:
            raise MemoryGuardError(self.memory_verdict)
        return self

    @property
    def min_gpus(self) -> int | None:
        """The fewest devices of this hardware the run fits on (None: no number of them)."""
        return self.devices_needed

    def why(self) -> dict[str, str]:
        """What limits it on this hardware: `{"limit": ..., "text": ...}` (lib.estimate.explain)."""
        from lib.estimate.explain import why
        return why(self)

    def cost(self, price_per_hour: float | None = None) -> dict[str, Any]:
        """The cost of a million output tokens at this estimate's pace (its requests per
        second x the tokens each writes) and the energy of one (`lib.estimate.cost`)."""
        from lib.estimate import cost

        requests = self.summary.get("requests_per_s")
        return cost.at_throughput(
            self.hardware.id, self.gpus,
            requests * self.spec.new_tokens if requests else None,
            self.hardware.board_power_w, price_per_hour)

    def to_dict(self) -> dict[str, Any]:
        """`python -m lib estimate --json`: one object, its summary keyed like a run's, with
        `fits` and `min_gpus` (also for a run that does not fit) and `why`."""
        return {"spec": self.spec.to_dict(), "hardware": self.hardware.to_dict(),
                "gpus": self.gpus, "fits": self.fits, "min_gpus": self.min_gpus,
                "why": self.why(), "weights_dtype": self.weights_dtype,
                "summary": dict(self.summary), "bound": dict(self.bound),
                "breakdown": {phase: dict(terms) for phase, terms in self.breakdown.items()},
                "floor": dict(self.floor), "assumptions": list(self.assumptions),
                "memory_verdict": self.memory_verdict,
                "memory": {"fits": self.fits, "devices_needed": self.devices_needed},
                "speculative": self.speculative,
                "provenance": {"kind": ESTIMATED, "backend": "estimator",
                               "hardware": self.hardware.id, "gpus": self.gpus}}


def split_dtype(dtype: str) -> tuple[str, str | None]:
    """An estimate's number format as (RunSpec dtype, weights dtype or None): float8 weights
    run with bfloat16 activations and KV cache, as fp8 engines do; the rest are the spec's."""
    if dtype == FLOAT8:
        return "bfloat16", FLOAT8
    if dtype not in DTYPES:
        raise InvalidSpecError(f"dtype must be one of {', '.join(ESTIMATE_DTYPES)} for an "
                               f"estimate (got {dtype!r}).")
    return dtype, None


def check(spec: RunSpec, hardware_id: str, gpus: int, weights: str | None = None) -> None:
    """Everything an estimate refuses, before any arithmetic: the profile id (`this`: this
    machine's device, measured now if it never was), the device count, the number format and
    the context."""
    from lib.estimate import hardware

    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_DEVICES:
        raise InvalidSpecError(f"gpus must be a whole number between 1 and {MAX_DEVICES} (got "
                               f"{gpus!r}): how many devices share the model.")
    if hardware_id == THIS:
        # Built (measured, if never before) here, before any run takes the measurement slot.
        name, linked = hardware.this(spec.device).name, False     # estimated as one device
    else:
        profile = hardware.get(hardware_id)
        name, linked = profile.name, profile.interconnect_bytes_per_s is not None
    if gpus > 1 and not linked:
        raise UnsupportedError(
            f"{name} is a single device with no link to others: estimate it with --gpus 1, "
            "or pick a data-centre profile (h200, mi300x, tpu-v6e, ...).")
    if weights not in (None, FLOAT8):
        raise InvalidSpecError(f"weights must be float8 or None (got {weights!r}).")
    if weights == FLOAT8 and spec.dtype not in ("bfloat16", "float16"):
        raise InvalidSpecError("float8 weights run with 16-bit activations: use dtype "
                               "bfloat16 with them.")
    _check_stack(spec, weights)
    get_entry(spec.model_id).check_context(spec.prompt_tokens, spec.new_tokens)


def _check_stack(spec: RunSpec, weights: str | None) -> None:
    """A stack estimates only the formats it runs (float8, an estimate-only format, only with
    transformers' settings) and only the settings it has, as a live run refuses them."""
    stack = STACKS[spec.stack]
    if weights == FLOAT8 and spec.stack != TRANSFORMERS:
        raise UnsupportedError(f"{stack.label} has no float8 format: estimate float8 weights "
                               "with --stack transformers, or choose one of its own formats: "
                               f"{', '.join(stack.dtypes)}.")
    check_format(spec.stack, spec.dtype)
    if spec.stack == TRANSFORMERS:
        return
    for name in STACK_SETTINGS:
        default = field_info(name)["default"]
        if getattr(spec, name) != default:
            label = field_info(name)["label"]
            raise UnsupportedError(f"{stack.label} has no {label} setting (it is "
                                   f"{getattr(spec, name)!r} here): set it back to "
                                   f"{default!r} to estimate {stack.label}.")


def estimate(spec: RunSpec, hardware_id: str = THIS, gpus: int = 1,
             weights: str | None = None, acceptance_rate: float | None = None) -> Estimate:
    """Predict `spec` on `gpus` devices of the profile `hardware_id` (`this`: this machine's
    measured ceilings, on spec.device). `weights="float8"` stores weights in 1 byte;
    `acceptance_rate` states speculative decoding's (else the measured one)."""
    from lib.estimate import hardware

    check(spec, hardware_id, gpus, weights)
    return _estimate(spec, hardware.get(hardware_id, spec.device), gpus, weights,
                     acceptance_rate)


def estimate_on(spec: RunSpec, ceilings: Ceilings, memory_bytes: float = 0.0,
                name: str | None = None) -> Estimate:
    """Predict `spec` on one device of the machine whose `lib.machine.capability.Ceilings` these are
    (those recorded with a saved run, `environment["ceilings"]`), as `estimate(spec, "this")`
    does with this machine's: how History's error ledger judges a run measured anywhere.
    `memory_bytes` (that machine's memory) only feeds the memory verdict."""
    from lib.estimate import hardware

    get_entry(spec.model_id).check_context(spec.prompt_tokens, spec.new_tokens)
    label = name or f"{ceilings.device_name or ceilings.device}, measured"
    return _estimate(spec, hardware.from_ceilings(ceilings, label, memory_bytes), 1, None)


def _estimate(spec: RunSpec, profile: Hardware, gpus: int, weights: str | None,
              acceptance_rate: float | None = None) -> Estimate:
    from lib.estimate import roofline, techniques
    from lib.models.shapes import shapes

    # As a saved spec is read: a run measured with more threads than this machine has is
    # estimated all the same.
    spec = from_saved({**spec.to_dict(), "hardware": profile.id, "gpus": gpus})
    entry = get_entry(spec.model_id)
    full_shape = shapes(spec.model_id)
    shape = techniques.shaped(full_shape, spec)         # pruned, exiting early: fewer weights
    speculation = techniques.speculation(spec, acceptance_rate)
    encoder = entry.kind == ENCODER
    weights_dtype = weights or spec.dtype
    engine = calibration.engine_of(spec)
    # The format the products run in (a block format's weights are widened to it); float8
    # weights run at the float8 figure, with bfloat16 activations.
    products = roofline.matmul_dtype(spec.stack, spec.dtype, profile.kind != "cpu")
    costs = roofline.costs(shape, spec, devices=gpus,
                           weight_bytes_per_param=1.0 if weights == FLOAT8 else None)
    peak_flops = profile.peak_flops(weights or products)
    bandwidth_fraction = calibration.bandwidth_fraction(profile, engine)
    bandwidth = bandwidth_fraction * profile.memory_bandwidth_bytes_per_s
    layer_overhead_s, overhead_words = calibration.layer_overhead(profile, entry.config.get("model_type"),
                                                       engine != "eager")
    overlap = profile.kind != "cpu"
    activation_bytes = FORMATS[products].number_bytes

    prefill_tokens = spec.batch_size * spec.prompt_tokens
    attention_flops = _attention_flops(shape, costs)
    prefill = _phase(costs.prefill, bandwidth,
                     calibration.compute_fraction(profile, prefill_tokens, products, engine) * peak_flops,
                     shape.layers * layer_overhead_s,
                     _communication_s(profile, gpus, shape, prefill_tokens * activation_bytes),
                     overlap, attention_flops["prefill"],
                     calibration.attention_rate(profile, spec, products, "prefill"))
    breakdown = {"prefill": prefill}
    summary: dict[str, float] = {}
    speculated = None
    if encoder or spec.new_tokens == 1:
        tpot = None
        e2e = prefill["total_s"]
    else:
        decode = _phase(costs.decode, bandwidth,
                        calibration.compute_fraction(profile, spec.batch_size, products, engine)
                        * peak_flops,
                        shape.layers * layer_overhead_s,
                        _communication_s(profile, gpus, shape,
                                         spec.batch_size * activation_bytes), overlap,
                        attention_flops["decode"],
                        calibration.attention_rate(profile, spec, products, "decode"))
        breakdown["decode"] = decode
        tpot = decode["total_s"]
        if speculation is not None:
            tpot, speculated = _speculative_token_s(
                spec, speculation, full_shape, shape, costs, decode, profile, gpus, weights,
                products, engine, bandwidth, peak_flops, layer_overhead_s, overlap,
                activation_bytes)
        e2e = prefill["total_s"] + (spec.new_tokens - 1) * tpot
    if not encoder:
        summary["ttft_s"] = prefill["total_s"]
    if tpot is not None:
        summary["tpot_s"] = tpot
    summary["e2e_s"] = e2e
    if tpot is not None:
        summary["decode_tokens_per_s"] = spec.batch_size / tpot
    counted = spec.prompt_tokens + (0 if encoder else spec.new_tokens)
    summary["total_tokens_per_s"] = spec.batch_size * counted / e2e
    summary["requests_per_s"] = spec.batch_size / e2e

    need = device_memory.memory_need(shape, spec, weights == FLOAT8, encoder)
    draft = techniques.draft_shapes(full_shape, spec) if spec.speculative == "draft" else None
    if draft is not None:       # a separate draft model's weights sit beside the model's
        extra = draft.parameters if weights == FLOAT8 else draft.weight_bytes(spec.dtype)
        need = dataclasses.replace(need, weights_bytes=need.weights_bytes + extra)
    usable = (1 - device_memory.MEMORY_HEADROOM_FRACTION) * profile.memory_bytes
    per_device = need.per_device(gpus)
    summary["peak_memory_bytes"] = float(per_device)
    needed = need.devices_needed(usable)
    fits = per_device <= usable
    verdict, app_verdict = (device_memory.verdict(entry.display_name, spec, weights_dtype, profile, gpus,
                                     need, usable, needed, app) for app in (False, True))

    floor = roofline.floor(costs, profile.memory_bandwidth_bytes_per_s, peak_flops,
                           source=f"{profile.name}: {profile.source}")
    judged = roofline.judge(costs, floor, None if encoder else summary["ttft_s"], tpot)
    if encoder:
        judged = {**judged, "prefill_bound": roofline.bound(
            floor.prefill_memory_s, floor.prefill_compute_s, e2e)}
    bound = {phase: terms["limited_by"] for phase, terms in breakdown.items()}
    said = assumptions.listed(profile, spec, gpus, engine, weights_dtype, products,
                               peak_flops, bandwidth_fraction, layer_overhead_s,
                               overhead_words, overlap, shape, encoder)
    said += assumptions.technique_words(spec, full_shape, shape, speculated)
    return Estimate(spec=spec, hardware=profile, gpus=gpus, summary=summary, floor=judged,
                    assumptions=said, memory_verdict=verdict,
                    weights_dtype=weights_dtype, fits=fits,
                    devices_needed=device_memory.min_devices(profile, needed), app_verdict=app_verdict,
                    bound=bound, breakdown=breakdown, memory_need=need,
                    speculative=speculated)


# --- the pieces -----------------------------------------------------------------------------------

def _speculative_token_s(spec: RunSpec, speculation: Any, full_shape: Shapes, shape: Shapes,
                         costs: Any, decode: dict[str, Any], profile: Hardware, gpus: int,
                         weights: str | None, products: str, engine: str, bandwidth: float,
                         peak_flops: float, layer_overhead_s: float, overlap: bool,
                         activation_bytes: float) -> tuple[float, dict[str, Any]]:
    """Time per emitted token with speculative decoding (lib.estimate.techniques): k guesses
    from the draft, one pass checking k + 1 tokens, 1 + a k tokens out."""
    from lib.estimate import roofline, techniques

    guesses = speculation.guesses_per_step
    checked = 1 + guesses
    if profile.kind == "cpu":     # few rows: measured, see calibration
        verify = {"total_s": decode["total_s"]
                  * (1 + calibration.CPU_VERIFY_EXTRA_PER_GUESS * guesses)}
    else:                         # the weights are read once for all k + 1 tokens
        verify_cost = roofline.PhaseCost(
            weight_bytes=costs.decode.weight_bytes, kv_bytes=costs.decode.kv_bytes,
            flops=costs.decode.flops * checked)
        verify = _phase(verify_cost, bandwidth,
                        calibration.compute_fraction(profile, round(checked), products, engine)
                        * peak_flops, shape.layers * layer_overhead_s,
                        _communication_s(profile, gpus, shape, checked * activation_bytes),
                        overlap)
    draft_s = 0.0
    draft_shape = techniques.draft_shapes(full_shape, spec)
    if draft_shape is not None and guesses:
        draft_costs = roofline.costs(draft_shape, spec, devices=gpus,
                                     weight_bytes_per_param=1.0 if weights == FLOAT8 else None)
        draft_s = _phase(draft_costs.decode, bandwidth,
                         calibration.compute_fraction(profile, 1, products, engine) * peak_flops,
                         draft_shape.layers * layer_overhead_s,
                         _communication_s(profile, gpus, draft_shape, activation_bytes),
                         overlap)["total_s"]
    per_token = (guesses * draft_s + verify["total_s"]) / speculation.tokens_per_step
    return per_token, {"method": speculation.method, "guesses_per_step": guesses,
                       "acceptance_rate": speculation.acceptance_rate,
                       "tokens_per_step": speculation.tokens_per_step,
                       "source": speculation.source, "draft_step_s": draft_s,
                       "verify_s": verify["total_s"], "plain_step_s": decode["total_s"],
                       "per_token_s": per_token}


def _attention_flops(shape: Shapes, costs: Any) -> dict[str, float]:
    """The attention part of each phase's FLOPs, as lib.estimate.roofline counts it inside them: QK^T
    and AV, 2 FLOPs x (key + value width) per (query, key) pair over all heads and layers; a
    causal prefill has P(P+1)/2 pairs per sequence (an encoder P^2), a decode step its context."""
    if shape.kv_elements_per_token:
        per_pair = 2 * shape.kv_elements_per_token * shape.attention_heads / shape.kv_heads
    else:
        per_pair = 2 * 2 * shape.layers * shape.attention_heads * shape.head_dim
    prompt = costs.prompt_tokens
    pairs = prompt * (prompt + 1) / 2 if costs.has_decode else prompt * prompt
    per_sequence = costs.batch_size * per_pair / costs.devices
    return {"prefill": per_sequence * pairs, "decode": per_sequence * costs.decode_context_tokens}


def _phase(cost: Any, bandwidth: float, flops: float, overhead_s: float,
           communication_s: float, overlap: bool, attention_flops: float = 0.0,
           attention_flops_per_s: float | None = None) -> dict[str, Any]:
    """One phase's terms. With `attention_flops_per_s` (CPUs), the attention part of the
    FLOPs runs at that rate after the products, and `compute_s` is both together."""
    memory_s = cost.bytes_moved / bandwidth
    attention_s = 0.0
    if attention_flops_per_s:
        attention_s = attention_flops / attention_flops_per_s
        compute_s = (cost.flops - attention_flops) / flops + attention_s
    else:
        compute_s = cost.flops / flops
    work_s = max(memory_s, compute_s)
    busy_s = max(overhead_s, work_s) if overlap else overhead_s + work_s
    terms = {"memory": memory_s, "compute": compute_s, "overhead": overhead_s,
             "communication": communication_s}
    return {"memory_s": memory_s, "compute_s": compute_s, "attention_s": attention_s,
            "overhead_s": overhead_s, "communication_s": communication_s,
            "total_s": busy_s + communication_s, "limited_by": max(terms, key=terms.get)}


def _communication_s(profile: Hardware, gpus: int, shape: Shapes,
                     bytes_per_hidden: float) -> float:
    """Two ring all-reduces per layer of `bytes_per_hidden` x hidden_size bytes."""
    if gpus == 1:
        return 0.0
    payload = bytes_per_hidden * shape.hidden_size
    one_way = profile.interconnect_one_way_bytes_per_s
    per_all_reduce = calibration.ALL_REDUCE_LATENCY_S + 2 * (gpus - 1) / gpus * payload / one_way
    return calibration.ALL_REDUCES_PER_LAYER * shape.layers * per_all_reduce

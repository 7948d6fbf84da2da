"""Why a run took as long as it did: one limit and plain words, the run JSON's `why` object.

`explain(measurement, summary)` names exactly one of LIMITS:
- "busy machine" comes first: when other programs took more than BUSY_PERCENT of the CPU
  during the run (median over its repetitions, `stats.point_noise`), nothing else can be told
  from its times. The text gives the share and how much slower the run was than this machine
  manages quietly: the estimate for the same settings from the machine's ceilings recorded with
  the run (`estimator.estimate_on`; its physical floor where no estimate can be made).
- otherwise the limit of the phase that took most of the run's time, as the floor judges it
  (`lib.estimate.floors`: "memory bandwidth", "compute", or "overhead" when far above both floors); for
  an estimate, the estimator's largest term on its hardware ("interconnect" for the link
  between devices).
None when nothing can be said (no ceilings recorded, an estimate for this machine before its
ceilings were measured).

`format_speed_here(...)` reconciles the general rule the help texts state ("bfloat16 is often
faster") with this machine's measured matmul rates: which holds here, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.core import stats
# One vocabulary for live runs and estimates (`lib.estimate.explain` explains an estimate).
from lib.estimate.explain import (BUSY_MACHINE, COMPUTE, INTERCONNECT, LIMITS,  # noqa: F401
                              MEMORY_BANDWIDTH, OVERHEAD)
from lib.estimate.explain import TERM_LIMITS as LIMIT_OF_TERM
from lib.core.errors import ExplorerError
from lib.core.metrics import format_seconds
from lib.core.results import Measurement

# Other programs above this share of the CPU make a run's times say more about them than about
# the model: the same line beyond which a point is called noisy (on 2 cores, half a core taken
# away; with the run's threads on every core, each waits its turn). One rule for both.
BUSY_PERCENT = stats.BUSY_OTHER_CPU_PERCENT
# A half-precision matmul rate within this of float32's is "about the same speed".
SAME_SPEED = 0.10
# CPU flags of native matrix (or vector dot-product) instructions for each half format.
NATIVE_FLAGS = {"bfloat16": ("amx_bf16", "avx512_bf16"), "float16": ("amx_fp16", "avx512_fp16")}

LIMIT_WORDS = {
    MEMORY_BANDWIDTH: "limited by memory bandwidth: the weights have to be read from memory "
                      "for every step, and reading them is what takes the time",
    COMPUTE: "limited by arithmetic (compute): the processor's rate of multiplications sets "
             "the time",
    OVERHEAD: "limited by overhead: the arithmetic and the memory traffic take a fraction of "
              "the time, and the software's own work per step takes the rest",
    INTERCONNECT: "limited by the interconnect: the devices wait for each other's partial "
                  "results",
}
PHASE_WORDS = {"prefill": "reading the prompt (prefill)",
               "decode": "writing the answer token by token (decode)"}


@dataclass(frozen=True)
class Why:
    limit: str                              # one of LIMITS
    text: str
    other_cpu_percent: float | None = None  # busy machine: other programs' median share
    slowdown: float | None = None           # busy machine: measured over the quiet figure

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "text": self.text,
                "other_cpu_percent": self.other_cpu_percent, "slowdown": self.slowdown}


def is_busy(other_cpu_percent: float | None) -> bool:
    return other_cpu_percent is not None and other_cpu_percent > BUSY_PERCENT


def explain(measurement: Measurement, summary: stats.Summary) -> Why | None:
    if not measurement.measured:
        return _estimated(measurement)
    other = stats.point_noise(measurement, summary).other_cpu_percent
    if is_busy(other):
        return _busy(measurement, summary, other)
    return _bound(measurement, summary)


def _median(summary: stats.Summary, name: str) -> float | None:
    dist = summary.metrics.get(name)
    return dist.median if dist else None


def _busy(measurement: Measurement, summary: stats.Summary, other: float) -> Why:
    metric = "tpot_s" if "tpot_s" in summary.metrics else "e2e_s"
    unit = "per token" if metric == "tpot_s" else "per request"
    measured = _median(summary, metric)
    quiet, source, quiet_figures = _quiet_figure(measurement, metric)
    text = f"Other programs used {other:.0f}% of the CPU during this run; "
    slowdown = measured / quiet if quiet and measured else None
    if slowdown is None:
        text += ("how much slower that made it can't be said: no figures of this machine "
                 "when quiet were recorded with the run.")
    elif slowdown <= 1 + SAME_SPEED and not quiet_figures:
        text += (f"how much slower that made it can't be said: it took "
                 f"{format_seconds(measured)} {unit} against {format_seconds(quiet)} ({source}).")
        slowdown = None
    elif slowdown > 1 + SAME_SPEED:
        text += (f"it took {slowdown:.1f}× as long {unit} as this machine manages when quiet "
                 f"({format_seconds(measured)} against {format_seconds(quiet)}, {source}).")
    else:
        text += (f"it was not clearly slower than this machine manages when quiet "
                 f"({format_seconds(measured)} {unit} against {format_seconds(quiet)}, "
                 f"{source}), but the other programs may have disturbed its numbers.")
    text += (" The breakdown below can't tell you why it is slow until it is run again on a "
             "quiet machine: close other programs, then press Run again.")
    return Why(BUSY_MACHINE, text, other, slowdown)


def _quiet_figure(measurement: Measurement, metric: str) -> tuple[float | None, str, bool]:
    """What this machine manages for `metric` when quiet: the estimate from the ceilings
    recorded with the run, else the floor they give; where it comes from; and whether those
    ceilings were measured quietly. (None, "", False) without ceilings."""
    from lib.estimate import estimator, floors
    from lib.machine.capability import Ceilings

    try:
        ceilings = Ceilings.from_dict((measurement.environment or {}).get("ceilings"))
    except ValueError:
        return None, "", False
    try:
        predicted = estimator.estimate_on(measurement.spec, ceilings).summary.get(metric)
    except (ExplorerError, OSError, ValueError):
        predicted = None
    # Figures measured while the machine was busy are low, so the slowdown against them is too.
    caveat = "" if not is_busy(ceilings.other_cpu_percent) else (
        f"; those figures were themselves measured while other programs used "
        f"{ceilings.other_cpu_percent:.0f}% of the CPU, so the true slowdown is larger")
    if predicted:
        return predicted, ("estimate from its measured figures" + caveat if caveat
                           else "estimate from its quiet figures"), not caveat
    floor = floors.metric_floors(measurement).get(metric)
    return (floor, "its physical floor, the least time its memory and arithmetic allow"
            + caveat, not caveat) if floor else (None, "", False)


def _dominant_phase(ttft_s: float | None, tpot_s: float | None, new_tokens: int) -> str:
    if tpot_s is not None and (new_tokens - 1) * tpot_s >= (ttft_s or 0.0):
        return "decode"
    return "prefill"


def _bound(measurement: Measurement, summary: stats.Summary) -> Why | None:
    from lib.estimate import floors

    ttft = _median(summary, "ttft_s") or _median(summary, "e2e_s")
    tpot = _median(summary, "tpot_s")
    judged = floors.judged(measurement, ttft, tpot)
    if judged is None:
        return None
    phase = _dominant_phase(ttft, tpot, measurement.spec.new_tokens)
    term = judged.get(f"{phase}_bound") or judged.get("prefill_bound")
    limit = LIMIT_OF_TERM[term]
    e2e = _median(summary, "e2e_s")
    spent = ttft if phase == "prefill" else (measurement.spec.new_tokens - 1) * tpot
    share = f" ({spent / e2e:.0%} of its time)" if e2e and spent <= e2e else ""
    text = (f"Most of this run{share} went to {PHASE_WORDS[phase]}, and that is "
            f"{LIMIT_WORDS[limit]}. " + " ".join(floors.sentences(measurement, ttft, tpot)))
    return Why(limit, text.strip())


def _estimated(measurement: Measurement) -> Why | None:
    """An estimate's limit on its hardware, as `lib.estimate.explain` words it."""
    from lib.machine import ceilings
    from lib.estimate import estimator, hardware

    spec = measurement.spec
    if spec.hardware is None or (spec.hardware == hardware.THIS
                                 and ceilings.cached(spec.device) is None):
        return None               # explaining must never start measuring this machine
    try:
        found = estimator.estimate(spec, spec.hardware, spec.gpus).why()
    except (ExplorerError, OSError, ValueError):
        return None
    return Why(found["limit"], found["text"])


# --- number formats: the general rule against this machine ---------------------------------------

def format_speed_here(dtype: str, matmul_flops_per_s: dict[str, float], device: str = "cpu",
                      cpu_flags: frozenset[str] | None = None,
                      other_cpu_percent: float | None = None) -> str | None:
    """Whether `dtype` (bfloat16 or float16) multiplies faster than float32 on the machine
    whose measured matmul rates these are, e.g. "On this machine bfloat16 is slower, not
    faster: ...", with why (the CPU's native instructions, from `cpu_flags` when they are this
    machine's; None: unknown). None for other formats or without both figures.
    `other_cpu_percent`: other programs' share while the rates were measured."""
    from lib.estimate.roofline_words import format_flops_rate

    half, float32 = matmul_flops_per_s.get(dtype), matmul_flops_per_s.get("float32")
    if dtype not in NATIVE_FLAGS or not half or not float32:
        return None
    ratio = half / float32
    rates = (f"matrix products run at {format_flops_rate(half)} in {dtype} against "
             f"{format_flops_rate(float32)} in float32 here")
    if ratio < 1 - SAME_SPEED:
        sentence = (f"On this machine {dtype} is slower, not faster: {rates} "
                    f"({1 / ratio:.1f}× slower). {_why_slow(dtype, device, cpu_flags)} It "
                    "still halves the memory each token reads, so it can win where reading "
                    "the weights takes the time and loses where arithmetic does (reading a "
                    "long prompt).")
    elif ratio > 1 + SAME_SPEED:
        sentence = (f"On this machine {dtype} is faster: {rates} ({ratio:.1f}× faster), and "
                    "it halves the memory each token reads.")
    else:
        sentence = (f"On this machine {dtype} arithmetic is about as fast as float32's: "
                    f"{rates}. Its gain here is the halved memory each token reads.")
    if is_busy(other_cpu_percent):
        sentence += (f" These rates were measured while other programs used "
                     f"{other_cpu_percent:.0f}% of the CPU, so they may be low.")
    return sentence


def _why_slow(dtype: str, device: str, cpu_flags: frozenset[str] | None) -> str:
    if device != "cpu":
        return f"This device's library multiplies {dtype} more slowly than float32."
    if cpu_flags is None:
        return (f"A processor without native {dtype} matrix instructions converts {dtype} "
                "numbers to float32 for every product.")
    native = [flag for flag in NATIVE_FLAGS[dtype] if flag in cpu_flags]
    if not native:
        return (f"This CPU has no native {dtype} matrix unit, so {dtype} numbers are "
                "converted to float32 for every product, which costs more than it saves.")
    return (f"This CPU has {dtype} instructions ({', '.join(native)}), but the library's "
            f"{dtype} kernels ran slower here than its float32 ones.")


def format_speed_of_run(measurement: Measurement) -> str | None:
    """`format_speed_here` for a run's own format, from the ceilings recorded with it (this
    CPU's flags only when it ran on this CPU)."""
    from lib.machine.capability import Ceilings
    from lib.machine.environment import cpu_flags, cpu_model

    environment = measurement.environment or {}
    try:
        ceilings = Ceilings.from_dict(environment.get("ceilings"))
    except ValueError:
        return None
    flags = cpu_flags() if environment.get("cpu_model") == cpu_model() else None
    return format_speed_here(measurement.spec.dtype, ceilings.matmul_flops_per_s,
                             ceilings.device, flags, ceilings.other_cpu_percent)


def format_speed_on_this_machine(dtype: str, device: str) -> str | None:
    """`format_speed_here` from this machine's ceilings as measured before (never measures:
    None until they are)."""
    from lib.machine import ceilings
    from lib.machine.environment import cpu_flags

    found = ceilings.cached(device)
    if found is None:
        return None
    return format_speed_here(dtype, found.matmul_flops_per_s, device, cpu_flags(),
                             found.other_cpu_percent)

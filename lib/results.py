"""What a run produced: raw repetitions, the Measurement around them, and their one JSON form.

A `Measurement` holds the spec, the environment it ran in, where the numbers came from
(`Provenance`: which backend, measured or estimated, library versions) and the raw per-token
timestamps of every repetition. Nothing here stores only an average: `lib.stats` derives every
metric from the raw data. `to_dict` / `from_dict` are the only mapping between a Measurement and
the documents that history, exports and `python -m lib run --json` hold; `from_dict` also opens
documents written before provenance was recorded (they were all measured with transformers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.models.catalog import CAUSAL_LM, ENCODER
from lib.spec import RunSpec

MEASURED, ESTIMATED = "measured", "estimated"


@dataclass(frozen=True)
class Repetition:
    """One timed request batch: clock readings in seconds on the run's clock."""
    start_s: float
    token_times_s: tuple[float, ...]      # when each generated token reached the host
    peak_memory_bytes: int | None
    start_memory_bytes: int | None = None  # memory in use when the repetition started
    end_s: float | None = None             # encoders: when the forward pass finished
    kv_cache_bytes: int | None = None      # the KV cache the call ended with (from its tensors)
    other_cpu_percent: float | None = None  # machine CPU used by other processes meanwhile
    load_average: float | None = None       # the 1-minute load average when it ended


@dataclass(frozen=True)
class Provenance:
    backend: str                          # the lib.backends name that produced the numbers
    kind: str = MEASURED                  # MEASURED now, or ESTIMATED from a model of the hardware
    versions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Measurement:
    spec: RunSpec
    environment: dict[str, Any]
    repetitions: tuple[Repetition, ...]
    warmup_s: tuple[float, ...]
    prompt_note: str | None
    used_chat_template: bool
    generated_text: str
    provenance: Provenance = Provenance("transformers")
    load_s: float | None = None
    load_source: str | None = None
    memory_method: str = ""
    kv_cache_bytes_estimate: int | None = None   # from the architecture, not measured
    quantize_s: float | None = None              # int8: quantization time, after loading
    model_kind: str = CAUSAL_LM                  # or ENCODER: one forward pass, no tokens
    weights: str = "trained"                     # "trained", "random" or "own"
    weights_bytes: int | None = None             # resident weights, summed over the tensors
    memory_estimate_bytes: int | None = None     # what the guard estimated for the whole run

    @property
    def measured(self) -> bool:
        return self.provenance.kind == MEASURED


def to_dict(measurement: Measurement) -> dict[str, Any]:
    """The raw document: everything needed to rebuild the Measurement (see `from_dict`)."""
    return {
        "spec": measurement.spec.to_dict(),
        "environment": measurement.environment,
        "provenance": {"backend": measurement.provenance.backend,
                       "kind": measurement.provenance.kind,
                       "versions": dict(measurement.provenance.versions)},
        "load": {"load_s": measurement.load_s, "source": measurement.load_source,
                 "quantize_s": measurement.quantize_s},
        "model": {"kind": measurement.model_kind, "weights": measurement.weights,
                  "weights_bytes": measurement.weights_bytes},
        "warmup_s": list(measurement.warmup_s),
        "prompt": {"note": measurement.prompt_note,
                   "used_chat_template": measurement.used_chat_template},
        "generated_text": measurement.generated_text,
        "memory_method": measurement.memory_method,
        "kv_cache_bytes_estimate": measurement.kv_cache_bytes_estimate,
        "memory_estimate_bytes": measurement.memory_estimate_bytes,
        "repetitions": [
            {"token_offsets_s": [t - rep.start_s for t in rep.token_times_s],
             "end_offset_s": None if rep.end_s is None else rep.end_s - rep.start_s,
             "start_memory_bytes": rep.start_memory_bytes,
             "peak_memory_bytes": rep.peak_memory_bytes,
             "kv_cache_bytes": rep.kv_cache_bytes,
             "other_cpu_percent": rep.other_cpu_percent,
             "load_average": rep.load_average}
            for rep in measurement.repetitions],
    }


def from_dict(document: dict[str, Any]) -> Measurement:
    """Rebuild a Measurement from `to_dict`'s document (derived fields in it are ignored).

    Timestamps come back as offsets from each repetition's start (start_s = 0), which is all
    any metric needs.
    """
    repetitions = tuple(
        Repetition(start_s=0.0, token_times_s=tuple(rep["token_offsets_s"]),
                   peak_memory_bytes=rep.get("peak_memory_bytes"),
                   start_memory_bytes=rep.get("start_memory_bytes"),
                   end_s=rep.get("end_offset_s"), kv_cache_bytes=rep.get("kv_cache_bytes"),
                   other_cpu_percent=rep.get("other_cpu_percent"),
                   load_average=rep.get("load_average"))
        for rep in document["repetitions"])
    load = document.get("load") or {}
    model = document.get("model") or {}
    prompt = document.get("prompt") or {}
    environment = document.get("environment") or {}
    kind = model.get("kind", CAUSAL_LM)
    origin = document.get("provenance") or {
        # Written before backends existed: every result was measured with transformers.
        "backend": "encoder" if kind == ENCODER else "transformers", "kind": MEASURED,
        "versions": {name: environment[name] for name in ("torch", "transformers")
                     if name in environment}}
    return Measurement(
        spec=RunSpec(**document["spec"]), environment=environment,
        repetitions=repetitions, warmup_s=tuple(document.get("warmup_s") or ()),
        prompt_note=prompt.get("note"), used_chat_template=bool(prompt.get("used_chat_template")),
        generated_text=document.get("generated_text", ""),
        provenance=Provenance(origin["backend"], origin.get("kind", MEASURED),
                              dict(origin.get("versions") or {})),
        load_s=load.get("load_s"), load_source=load.get("source"),
        memory_method=document.get("memory_method", ""),
        kv_cache_bytes_estimate=document.get("kv_cache_bytes_estimate"),
        memory_estimate_bytes=document.get("memory_estimate_bytes"),
        quantize_s=load.get("quantize_s"), model_kind=kind,
        weights=model.get("weights", "trained"), weights_bytes=model.get("weights_bytes"))

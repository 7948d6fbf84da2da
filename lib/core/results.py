"""What a run produced: raw repetitions, the Measurement around them, and their one JSON form.

A `Measurement` holds the spec, the environment it ran in, where the numbers came from
(`Provenance`: which backend, measured or estimated, library versions) and the raw per-token
timestamps of every repetition. Nothing here stores only an average: `lib.core.stats` derives every
metric from the raw data. `to_dict` / `from_dict` are the only mapping between a Measurement and
the documents that history, exports and `python -m lib run --json` hold; `from_dict` also opens
documents written before provenance was recorded (they were all measured with transformers).

`from_dict` is also that document's schema: a document saved by any version, edited by hand or
imported from a file either gives a Measurement every metric and chart can be computed from, or
raises `lib.core.schema.DocumentError` naming the field ("repetitions[3].token_offsets_s: expected a
list of numbers"). Fields it doesn't know (derived ones, a newer version's) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.core import schema, text
from lib.core.errors import InvalidSpecError
from lib.core.kinds import CAUSAL_LM, ENCODER, MODEL_KINDS
from lib.core.spec import RunSpec, from_saved

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
    backend: str                          # the lib.measure.backends name that produced the numbers
    kind: str = MEASURED                  # MEASURED now, or ESTIMATED from a model of the hardware
    versions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Quality:
    """What a run's settings cost in quality (`lib.measure.quality`), measured apart from its
    timing on a fixed evaluation text, against the reference (transformers, float32).

    `agreement`: the share of next-token predictions equal to the reference's; `perplexity`:
    exp of the mean negative log-likelihood of the text's own next tokens (and the reference's,
    for the change); `unavailable`: why nothing was measured (random weights have no quality)."""
    text: str
    tokens: int = 0                          # predictions compared
    agreement: float | None = None
    perplexity: float | None = None
    reference_perplexity: float | None = None
    reference: str = ""
    seconds: float | None = None             # how long measuring it took (not in any latency)
    unavailable: str | None = None

    @property
    def measured(self) -> bool:
        return self.unavailable is None and self.agreement is not None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "agreement": self.agreement,
                "perplexity": self.perplexity,
                "reference_perplexity": self.reference_perplexity,
                "reference": self.reference, "seconds": self.seconds,
                "unavailable": self.unavailable}


def format_perplexity(value: float) -> str:
    """'19.75', '454', '2,718,118,525': two decimals while they mean something."""
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def quality_from_dict(value: Any, path: str) -> Quality:
    """A saved `Quality`, every field checked (`lib.core.schema`)."""
    document = schema.mapping(value, path)

    def short(key: str) -> str | None:
        return schema.optional(document, key, path, schema.string, 300)

    return Quality(
        text=short("text") or "", reference=short("reference") or "",
        tokens=schema.optional(document, "tokens", path, schema.number, 0, whole=True) or 0,
        agreement=schema.optional(document, "agreement", path, _share),
        perplexity=schema.optional(document, "perplexity", path, schema.number, 1),
        reference_perplexity=schema.optional(document, "reference_perplexity", path,
                                             schema.number, 1),
        seconds=schema.optional(document, "seconds", path, schema.number, 0),
        unavailable=short("unavailable"))


def speculative_from_dict(value: Any, path: str) -> dict[str, Any]:
    """A saved speculative-decoding report (`lib.measure.speculative`), every field checked."""
    document = schema.mapping(value, path)
    counts = {key: schema.optional(document, key, path, schema.number, 0, whole=True)
              for key in ("steps", "tokens", "proposed", "accepted")}
    identical = document.get("tokens_identical")
    if identical is not None and not isinstance(identical, bool):
        raise schema.DocumentError(f"{schema.at(path, 'tokens_identical')}: expected true or "
                                   "false")
    return {"method": schema.optional(document, "method", path, schema.string, 40) or "",
            **counts, "acceptance_rate": schema.optional(document, "acceptance_rate", path,
                                                         _share),
            "tokens_per_step": schema.optional(document, "tokens_per_step", path,
                                               schema.number, 0),
            "tokens_identical": identical}


def _share(value: Any, path: str) -> float:
    share = schema.number(value, path, 0)
    if share > 1:
        raise schema.DocumentError(f"{path}: expected a share from 0 to 1, not {share}")
    return share


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
    build_s: float | None = None                 # a stack's converted file, built before loading
    model_kind: str = CAUSAL_LM                  # or ENCODER: one forward pass, no tokens
    weights: str = "trained"                     # "trained", "random" or "own"
    weights_bytes: int | None = None             # resident weights, summed over the tensors
    memory_estimate_bytes: int | None = None     # what the guard estimated for the whole run
    quality: Quality | None = None               # measured only when the spec asks for it
    speculative: dict[str, Any] | None = field(default=None, hash=False, compare=False)

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
                 "quantize_s": measurement.quantize_s, "build_s": measurement.build_s},
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
        **({"quality": measurement.quality.to_dict()} if measurement.quality else {}),
        **({"speculative": dict(measurement.speculative)} if measurement.speculative else {}),
    }


def from_dict(document: Any, path: str = "") -> Measurement:
    """Rebuild a Measurement from `to_dict`'s document (derived fields in it are ignored).

    Timestamps come back as offsets from each repetition's start (start_s = 0), which is all
    any metric needs. Every field is checked first (`lib.core.schema`): DocumentError names the one
    that is missing or wrong, prefixed with `path` (where the document sits in a bigger one).
    """
    document = schema.mapping(document, path)
    spec = spec_from_saved(schema.member(document, "spec", path, required=True),
                           schema.at(path, "spec"))
    model, model_path = _section(document, "model", path), schema.at(path, "model")
    kind = schema.optional(model, "kind", model_path, schema.choice, MODEL_KINDS) \
        or CAUSAL_LM
    where = schema.at(path, "repetitions")
    listed = schema.items(schema.member(document, "repetitions", path, required=True), where)
    if not listed:
        raise schema.DocumentError(f"{where}: expected at least one repetition, not an empty "
                                   "list")
    repetitions = tuple(_repetition(rep, schema.at(where, index), kind)
                        for index, rep in enumerate(listed))
    load, load_path = _section(document, "load", path), schema.at(path, "load")
    prompt, prompt_path = _section(document, "prompt", path), schema.at(path, "prompt")
    environment = _section(document, "environment", path)
    origin, origin_path = _section(document, "provenance", path), schema.at(path, "provenance")
    if origin:
        provenance = Provenance(
            schema.string(schema.member(origin, "backend", origin_path, required=True),
                          schema.at(origin_path, "backend")),
            schema.optional(origin, "kind", origin_path, schema.choice, (MEASURED, ESTIMATED))
            or MEASURED,
            dict(schema.optional(origin, "versions", origin_path, schema.mapping) or {}))
    else:
        # Written before backends existed: every result was measured with transformers.
        provenance = Provenance("encoder" if kind == ENCODER else "transformers", MEASURED,
                                {name: environment[name] for name in ("torch", "transformers")
                                 if name in environment})

    def number(section: dict[str, Any], key: str, section_path: str) -> float | None:
        return schema.optional(section, key, section_path, schema.number, 0)

    return Measurement(
        spec=spec, environment=environment, repetitions=repetitions,
        warmup_s=tuple(schema.optional(document, "warmup_s", path, schema.numbers, 0) or ()),
        prompt_note=schema.optional(prompt, "note", prompt_path, schema.string),
        used_chat_template=bool(schema.optional(prompt, "used_chat_template", prompt_path,
                                                _flag)),
        generated_text=schema.optional(document, "generated_text", path, schema.string) or "",
        provenance=provenance,
        load_s=number(load, "load_s", load_path),
        load_source=schema.optional(load, "source", load_path, schema.string),
        memory_method=schema.optional(document, "memory_method", path, schema.string) or "",
        kv_cache_bytes_estimate=number(document, "kv_cache_bytes_estimate", path),
        memory_estimate_bytes=number(document, "memory_estimate_bytes", path),
        quantize_s=number(load, "quantize_s", load_path),
        build_s=number(load, "build_s", load_path), model_kind=kind,
        weights=schema.optional(model, "weights", model_path, schema.string) or "trained",
        weights_bytes=number(model, "weights_bytes", model_path),
        quality=schema.optional(document, "quality", path, quality_from_dict),
        speculative=schema.optional(document, "speculative", path, speculative_from_dict))


def spec_from_saved(fields: Any, path: str) -> RunSpec:
    """`lib.core.spec.from_saved`, its complaint prefixed with where the spec sits."""
    try:
        return from_saved(schema.mapping(fields, path))
    except InvalidSpecError as exc:
        raise schema.DocumentError(f"{path}: {text.one_line(exc, limit=300)}") from None


def _section(document: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """An optional object member ({} when absent)."""
    return schema.optional(document, key, path, schema.mapping) or {}


def _flag(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise schema.DocumentError(f"{path}: expected true or false")
    return value


def _repetition(rep: Any, path: str, kind: str) -> Repetition:
    """One repetition, with the timestamps every metric divides by: a generated token's
    offsets never decrease and end after the start (and the last after the first, for the
    decode rate); an encoder's forward pass ends after it starts."""
    rep = schema.mapping(rep, path)
    where = schema.at(path, "token_offsets_s")
    offsets = schema.numbers(schema.member(rep, "token_offsets_s", path, required=True), where,
                             minimum=0, increasing=True)
    end_s = schema.optional(rep, "end_offset_s", path, schema.number, 0)
    if kind == ENCODER:
        if offsets:
            raise schema.DocumentError(f"{where}: an encoder generates no tokens, so expected "
                                       "an empty list")
        if end_s is None or end_s <= 0:
            raise schema.DocumentError(f"{schema.at(path, 'end_offset_s')}: expected the "
                                       "forward pass's duration, a number above 0")
    elif not offsets or offsets[-1] <= 0 or (len(offsets) > 1 and offsets[-1] <= offsets[0]):
        raise schema.DocumentError(f"{where}: expected at least one token time, the last one "
                                   "later than the start and than the first token")
    measured = {name: schema.optional(rep, name, path, schema.number, 0)
                for name in ("peak_memory_bytes", "start_memory_bytes", "kv_cache_bytes",
                             "other_cpu_percent", "load_average")}
    return Repetition(start_s=0.0, token_times_s=tuple(offsets), end_s=end_s, **measured)

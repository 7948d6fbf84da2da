"""What a user sees about a model before anything loads: its size, shape, and memory needs.

`model_card()` turns a catalog entry, its meta-device shapes and the chosen settings into plain
rows, next to the backend's memory verdict (`lib.estimate.memory.MemoryVerdict`: fits / does not fit,
with the numbers), the very one the guard enforces; the page and the CLI show them as they are.
Nothing here allocates a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.estimate.memory import MemoryVerdict
from lib.models.shapes import Shapes
from lib.core.metrics import format_bytes
from lib.models.catalog import GROUPS, CatalogEntry
from lib.core.kinds import ENCODER
from lib.core.spec import RunSpec
from lib.core.stacks import kv_bytes_per_number


WEIGHT_WORDS = {"trained": "trained weights", "random": "random weights",
                "own": "your weights"}


@dataclass(frozen=True)
class ModelCard:
    title: str
    summary: str                    # e.g. "135M parameters, trained weights"
    description: str
    source: str                     # where the weights come from, in words
    rows: tuple[tuple[str, str], ...]
    memory: MemoryVerdict           # the same verdict the guard enforces

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def memory_verdict(self) -> str:
        return self.memory.message


def format_count(n: int) -> str:
    for value, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= value:
            return f"{n / value:.2f}{unit}" if n < 10 * value else f"{n / value:.1f}{unit}"
    return str(n)


def model_card(entry: CatalogEntry, shapes: Shapes, spec: RunSpec,
               verdict: MemoryVerdict) -> ModelCard:
    """`verdict`: the backend's memory verdict for this spec (`Backend.assess_memory`)."""
    params = format_count(shapes.parameters)
    if shapes.active_parameters and shapes.active_parameters < shapes.parameters:
        params += (f" in total, {format_count(shapes.active_parameters)} active per token "
                   "(each token uses only some experts)")
    attention = f"{shapes.attention_heads} heads"
    if shapes.kv_heads != shapes.attention_heads:
        attention += f", {shapes.kv_heads} key/value heads (grouped-query attention)"
    rows = [
        ("Parameters", params),
        ("Layers", str(shapes.layers)),
        ("Hidden size", str(shapes.hidden_size)),
        ("Attention", attention),
        ("Vocabulary", f"{shapes.vocab_size:,} tokens"),
        ("Context length", f"{shapes.context_length:,} tokens"),
        (f"Weights in {spec.dtype}", format_bytes(shapes.weight_bytes(spec.dtype))),
    ]
    if spec.dtype == "int8":
        rows.append(("While loading", "the float32 weights twice (torch copies the model "
                     "before quantizing it) and the int8 weights, "
                     f"{format_bytes(shapes.load_peak_bytes('int8'))} at most"))
    if entry.kind == ENCODER:
        rows.append(("KV cache", "none: an encoder reads the input once and writes no tokens"))
    else:
        per_token = shapes.kv_bytes_per_token(spec.dtype, spec.stack)
        rows.append(("KV cache", f"each token of context costs {format_bytes(per_token)}"))
        if shapes.latent_kv_elements_per_token:
            latent = shapes.latent_kv_elements_per_token * kv_bytes_per_number(spec.stack,
                                                                               spec.dtype)
            rows.append(("Latent attention (MLA)",
                         f"an engine that caches the compressed latent needs only "
                         f"{format_bytes(latent)} per token ({per_token / latent:.0f}x less); "
                         "transformers caches the full keys and values"))
    return ModelCard(
        title=entry.display_name, description=entry.description,
        summary=f"{format_count(shapes.parameters)} parameters, {WEIGHT_WORDS[entry.weights]}",
        source=GROUPS[entry.weights], rows=tuple(rows), memory=verdict)

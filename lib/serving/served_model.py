"""What a local server loads, and whether it fits: the folder `transformers serve` reads for a
catalog model, and the memory guard that refuses a server before anything starts.

- `serve_folder(model_id)`: the default model's converted folder, a random-weight preset saved
  once as safetensors with SmolLM2's tokenizer (lib.models.saved), a hub model's safetensors,
  or your own folder; a folder without tokenizer files is refused (a server reads prompts);
- `check_memory`: weights in the chosen dtype, the KV cache of the largest concurrency x
  (prompt + output) tokens and working memory (`lib.estimate.memory`) against what is free
  now, refused with the app's usual explanation and how many concurrent requests would fit.

Nothing here imports Streamlit or torch at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lib.core.errors import ModelLoadError, UnsupportedError

Say = Callable[[str], None]

VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def serve_folder(model_id: str, say: Say = print) -> Path:
    """A folder `transformers serve` can load for `model_id` (created once where needed)."""
    from lib.models import saved
    from lib.models.catalog import OWN, RANDOM, package_file

    entry = servable_entry(model_id)
    if entry.weights == RANDOM:
        return saved.random_folder(entry, say)
    if entry.weights != OWN:
        return saved.converted(entry, say) if entry.package_path.endswith(".gguf") \
            else with_tokenizer(package_file(entry), entry.display_name)
    if entry.hub_id:
        return _hub_folder(entry.hub_id, say)
    path = Path(entry.local_path)
    if path.suffix.lower() == ".gguf":
        raise UnsupportedError(
            f"{path.name} is a single .gguf file; the local server loads model folders. Load "
            "it once in the app's other pages, or convert it into a folder (config.json, "
            "*.safetensors, tokenizer.json) and give that folder.")
    return with_tokenizer(path, entry.display_name)


def servable_entry(model_id: str):
    from lib.core.kinds import ENCODER
    from lib.models.catalog import get_entry

    entry = get_entry(model_id)
    entry.check_live()
    if entry.kind == ENCODER:
        raise UnsupportedError(
            f"{entry.display_name} is an encoder: it reads text and writes no text, so a "
            "text-generation server cannot serve it. Pick a model that writes text "
            "(SmolLM2-135M-Instruct, or any random-weight preset).")
    return entry


def with_tokenizer(folder: Path, name: str) -> Path:
    if not any((folder / file).exists() for file in VOCABULARY_FILES):
        raise ModelLoadError(
            f"{folder} has no tokenizer files, and a server needs one to read prompts. Add the "
            f"model's tokenizer (tokenizer.json and tokenizer_config.json) to {name}'s folder.")
    return folder


def _hub_folder(hub_id: str, say: Say) -> Path:
    from lib.models import hub

    hub.check_reachable(hub_id)           # offline: the app's usual refusal, at once
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    say(f"Downloading {hub_id} from the hub (safetensors weights only)…")
    try:
        path = snapshot_download(hub_id, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"])
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not download {hub_id} ({exc}).") from exc
    return with_tokenizer(Path(path), hub_id)


def check_memory(model_id: str, dtype: str, max_concurrency: int, prompt_tokens: int,
                 new_tokens: int):
    """The server's memory against what is free now; raises `MemoryGuardError` (with the
    app's usual sentence) unless it fits. Returns the `MemoryVerdict`.

    Concurrent requests each hold a KV cache of prompt + output tokens, so the largest
    concurrency counts as the batch. transformers picks the sdpa kernel on CPU, and the
    process's own cost (Python, torch, the HTTP stack) is inside `memory.MARGIN_BYTES`. Saving
    a random preset first needs its bfloat16 weights, less than serving them."""
    from lib.estimate import memory
    from lib.models.shapes import shapes

    shape = shapes(model_id)

    def need(concurrency: int):
        return memory.estimate(shape, dtype, concurrency, prompt_tokens, new_tokens,
                               attention="sdpa")

    what = (f"a local server of {display_name(model_id)} in {dtype} with {max_concurrency} "
            f"concurrent request{'s' if max_concurrency != 1 else ''} of {prompt_tokens:,} + "
            f"{new_tokens:,} tokens")
    verdict = memory.assess(need(max_concurrency), "cpu", what)
    if not verdict.fits:
        fitting = next((c for c in range(max_concurrency - 1, 0, -1)
                        if need(c).total_bytes <= verdict.available_bytes), None)
        advice = (f"At most {fitting} concurrent requests fit; or try a shorter prompt, fewer "
                  "output tokens, bfloat16, or a smaller model." if fitting else
                  "Try bfloat16, a shorter prompt, fewer output tokens, or a smaller model.")
        verdict = memory.MemoryVerdict(verdict.need, verdict.free_bytes, "cpu", what, advice)
    return verdict.enforce()


def display_name(model_id: str) -> str:
    from lib.models.catalog import get_entry
    return get_entry(model_id).display_name

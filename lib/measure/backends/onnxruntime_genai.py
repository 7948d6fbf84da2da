"""ONNX Runtime (through onnxruntime-genai's generate() API) on a graph exported once.

The model is exported the first time it is needed, per weight format (float32, or int4: 4-bit
blocks in MatMulNBits), by onnxruntime-genai's model builder into the cache folder
(`lib.models.onnx_build`); that export is timed as `build_s`, and `load_s` covers only opening
the exported folder (`og.Model`). `onnxruntime_genai` is imported only when a model loads, so
the app works without it (the plain setup installs it).

Exact shapes, like every backend: the prompt is fitted to exactly `prompt_tokens` ids by
`lib.core.prompts.fit_prompt` with the transformers tokenizer the builder copied into the export (the
same files as the source folder's, so the ids are those of the transformers stack), repeated for
each sequence of the batch. Each call is one request: a `Generator` with
`min_length == max_length == prompt + new tokens` and greedy search, so end-of-sequence can't end
it early and every call writes exactly `new_tokens` tokens.

Where the time goes, measured with onnxruntime-genai 0.18: `append_tokens` runs the whole
prefill (the graph over every prompt position) and keeps the last position's logits; the first
`generate_next_token` only picks a token from them (0.1 ms); each later one first runs the graph
on the token before, then picks. So the clock is read before the `Generator` is made (it
allocates the KV cache, under 1 ms, as `generate` does inside transformers' timing), and after
each `generate_next_token` once `get_next_tokens` has handed the token over: the first reading
is the first token (prefill included), and, as with transformers, the last token is never fed
back. On the CPU every call returns when its work is done; nothing is deferred.

Threads: ONNX Runtime fixes them when a graph is opened (`intra_op_num_threads`, set through a
config overlay), so a session asking for another count reopens it (untimed, under a second).
Memory: the engine measures the worker's RSS as for transformers. GenAI allocates the KV cache
for the whole `max_length` up front (`past_present_share_buffer`), in float32 whatever the
weights, and the exported graph computes logits for every prompt position during the prefill;
the estimate below counts both, and the export's own peak before anything is built.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.measure.backends.base import (NativeStackBackend, Progress, Session, Timing,
                                       numpy_scores)
from lib.core.errors import ExplorerError, ModelLoadError, stop_if_asked
from lib.models import onnx_build
from lib.models.loaded import LoadedModel
from lib.models.catalog import RANDOM, get_entry
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec, default_threads
from lib.core.stacks import FLOAT32_BYTES, ONNXRUNTIME, import_stack
from lib.core.timing import Clock, DeviceClock

if TYPE_CHECKING:
    from lib.estimate.memory import MemoryEstimate

KV_BYTES = 4                 # keys and values in float32 on the CPU, int4 weights or not


def _import_og() -> Any:
    return import_stack(ONNXRUNTIME)


class OrtModel:
    """An opened export and the thread count it was opened with."""

    def __init__(self, folder: Path, threads: int) -> None:
        self.folder = folder
        decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        self.kv_bytes_per_token = (2 * decoder["num_hidden_layers"]
                                   * decoder["num_key_value_heads"] * decoder["head_size"]
                                   * KV_BYTES)
        self.threads = threads
        self.model = self._open(threads)

    def use_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.model = None               # the old session's memory goes before the new one
            self.model = self._open(threads)
            self.threads = threads

    def _open(self, threads: int) -> Any:
        og = _import_og()
        try:
            config = og.Config(str(self.folder))
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
            return og.Model(config)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"ONNX Runtime could not open {self.folder} ({exc}). Delete that folder and run "
                "again to export the model afresh.") from exc


class OnnxRuntimeBackend(NativeStackBackend):
    stack = ONNXRUNTIME
    load_words = "exporting and opening"      # a first load exports the model in float32

    def check_model(self, entry) -> None:
        super().check_model(entry)
        onnx_build.check_supported(entry)

    # --- memory ---------------------------------------------------------------------------

    def load_need(self, model_id: str, dtype: str) -> "MemoryEstimate":
        return self._need(model_id, dtype, 1, 0, 0, weights_loaded=False)

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> "MemoryEstimate":
        return self._need(spec.model_id, spec.dtype, spec.batch_size, spec.prompt_tokens,
                          spec.new_tokens, weights_loaded)

    def _need(self, model_id: str, dtype: str, batch: int, prompt: int, new: int,
              weights_loaded: bool) -> "MemoryEstimate":
        """Weights as exported (the files' size once they exist), the float32 KV cache of
        batch x (prompt + new) tokens, the prefill's working memory with its logits for every
        prompt position; before the first export, at least the builder's peak (it ends before
        the model opens, so it counts as working memory, not on top of the weights)."""
        from lib.estimate import memory
        from lib.models.shapes import shapes

        shape, folder = shapes(model_id), onnx_build.onnx_folder(model_id, dtype)
        built = onnx_build.is_built(folder)
        weights = 0 if weights_loaded else \
            onnx_build.model_bytes(folder) if built else shape.weight_bytes(dtype)
        kv = shape.kv_bytes_per_token("float32") * batch * (prompt + new)
        activations = 0
        if prompt:
            activations = (memory.prefill_working_bytes(shape, "float32", batch, prompt, "sdpa",
                                                        prompt)
                           + batch * prompt * shape.vocab_size * FLOAT32_BYTES)
        if not weights_loaded and not built:
            export = onnx_build.build_need_bytes(get_entry(model_id))
            activations = max(activations, export - weights - kv)
        margin = memory.MARGIN_BYTES + int(memory.MARGIN_FRACTION * (weights + kv + activations))
        return memory.MemoryEstimate(weights, kv, activations, margin)

    def load_advice(self, model_id: str, dtype: str, device: str, available_bytes: int) -> str:
        from lib.core.metrics import format_bytes
        from lib.models.shapes import shapes

        built = onnx_build.is_built(onnx_build.onnx_folder(model_id, dtype))
        what = "The weights alone don't fit" if built else ("Exporting it for ONNX Runtime "
                                                            "first loads the whole model in "
                                                            "float32, which doesn't fit")
        for other in self.dtypes:
            if other != dtype and self.load_need(model_id, other).total_bytes <= available_bytes:
                size = format_bytes(shapes(model_id).weight_bytes(other))
                return f"{what}. Choose {other} (weights about {size}), or a smaller model."
        return f"{what}. Choose a smaller model."

    # --- loading and running --------------------------------------------------------------

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        entry = get_entry(model_id)
        entry.check_live()
        self.check_device(device, dtype)
        _import_og()                               # not installed: say so before any export
        onnx_build.check_supported(entry)
        self.guard_load(model_id, device, dtype)
        say = on_progress or (lambda message: None)
        folder, build_s = onnx_build.built(entry, dtype, say)
        say(f"Opening {entry.display_name} ({dtype}) with ONNX Runtime…")
        tokenizer = _tokenizer(folder)
        clock = DeviceClock("cpu")
        started = clock.now()
        handle = OrtModel(folder, default_threads())
        load_s = clock.now() - started
        source = (f"exported to ONNX ({dtype}) by onnxruntime-genai's model builder" +
                  (", first use" if build_s is not None else ", cached copy"))
        if entry.weights == RANDOM:
            source += "; random weights"
        return LoadedModel(backend=self.name, entry=entry, model=handle, tokenizer=tokenizer,
                           device=device, dtype=dtype, load_s=load_s, source=source,
                           loaded_at=time.time(), weights_bytes=onnx_build.model_bytes(folder),
                           build_s=build_s)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return GeneratorSession(loaded, spec)


def _tokenizer(folder: Path) -> Any:
    """The transformers tokenizer the builder copied beside the graph (the source folder's
    files), so prompts are the same ids as on the transformers stack."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The ONNX export in {folder} has no usable tokenizer ({exc}). "
                             "Delete that folder and run again to export it afresh.") from exc


class GeneratorSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        import numpy as np

        self.loaded, self.spec = loaded, spec
        self.handle: OrtModel = loaded.model
        self.handle.use_threads(spec.threads)
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text,
                            spec.prompt_kind)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        self.input_ids = np.array([prompt.token_ids] * spec.batch_size, dtype=np.int32)
        self.warmup_runs = spec.warmup_runs
        self.output: list[int] = []

    def run(self, clock: Clock, timed: bool) -> Timing:
        og = _import_og()
        spec, times, out = self.spec, [], []
        length = spec.prompt_tokens + spec.new_tokens
        start_s = clock.now()
        params = og.GeneratorParams(self.handle.model)
        params.set_search_options(max_length=length, min_length=length, do_sample=False,
                                  batch_size=spec.batch_size)
        generator = og.Generator(self.handle.model, params)
        generator.append_tokens(self.input_ids)            # the prefill runs here
        for _ in range(spec.new_tokens):
            if generator.is_done():
                raise ExplorerError(
                    f"ONNX Runtime ended after {len(out)} tokens instead of {spec.new_tokens}; "
                    "it did not honour a fixed output length.")
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
            if timed:
                times.append(clock.now())
            stop_if_asked(self.should_stop)
        end_s = clock.now()
        del generator                                      # its KV cache goes back now
        self.output = out
        if not timed:
            return Timing(start_s, end_s=end_s)
        return Timing(start_s, tuple(times),
                      kv_cache_bytes=self.handle.kv_bytes_per_token * spec.batch_size * length)

    def output_text(self) -> str:
        if self.loaded.entry.weights == RANDOM:
            return (f"(Random weights: the {self.spec.new_tokens} generated tokens are "
                    "meaningless, so they are not shown. The timing is real.)")
        return self.loaded.tokenizer.decode(self.output, skip_special_tokens=True)

    def next_token_scores(self, windows: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        """ONNX Runtime's own logits: after the prompt is appended, the graph's `logits`
        output holds every position's."""
        import numpy as np

        og = _import_og()
        scores = []
        for window in windows:
            params = og.GeneratorParams(self.handle.model)
            params.set_search_options(max_length=len(window) + 1, batch_size=1)
            generator = og.Generator(self.handle.model, params)
            generator.append_tokens(np.array([window], dtype=np.int32))
            logits = np.asarray(generator.get_output("logits"))[0, :len(window) - 1]
            del generator
            scores.append(numpy_scores(logits, window))
            stop_if_asked(self.should_stop)
        return scores


BACKEND = OnnxRuntimeBackend()

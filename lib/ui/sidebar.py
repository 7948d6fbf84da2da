"""The shared settings sidebar, drawn from RunSpec's field metadata, with the model picker.

Every widget takes its label, help, bounds, step, choices and default from
`lib.core.spec.field_info`; only what depends on this machine (devices present, dtypes they can
run, cores, software stacks installed), on the chosen stack (its own weight formats; attention,
KV cache and torch.compile are transformers' settings) or on the chosen model (an encoder writes
no tokens) is decided here. `settings_sidebar()` returns a RunSpec, or None with the reason
shown, and stores it for the pages (`current_spec()`).
The model card is `lib.ui.model_card_view`'s; Explore's factor values, `lib.ui.explore_form`'s.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from lib.core import stack_build, text
from lib.core.errors import ExplorerError
from lib.core.spec import RunSpec, default_threads, field_info
from lib.core.stacks import FORMATS, LLAMA_CPP, STACK_SETTINGS, STACKS, TRANSFORMERS
from lib.machine import devices
from lib.core import kinds
from lib.models import catalog
from lib.ui import door, state
from lib.ui.links import restore_from_link
from lib.core.stacks import stack_name

GROUP_LABELS = {catalog.TRAINED: "Trained (real text)",
                catalog.RANDOM: "Famous architectures, random weights",
                catalog.OWN: "Your own model"}
MEASUREMENT_FIELDS = ("repetitions", "threads", "warmup_runs", "min_duration_s")


def _listed(words: list[str]) -> str:
    return f"{', '.join(words[:-1])} and {words[-1]}"


# "Attention kernel, KV cache and torch.compile": the stack-only settings as their widgets say.
STACK_SETTING_LABELS = _listed([field_info(name)["label"] for name in STACK_SETTINGS])


def widget(name: str, **overrides: Any) -> Any:
    """The widget of one RunSpec field, as its metadata describes it."""
    info = field_info(name)
    common = {"label": info["label"], "help": info["help"], "key": state.setting(name),
              "disabled": overrides.pop("disabled", False)}
    # A value set by a shared link is in session state already; a default too would conflict.
    value = {} if state.setting(name) in st.session_state else \
        {"value": "" if info["default"] is None else info["default"]}
    kind = info["widget"]
    if kind == "checkbox":                   # an off/on setting: ticked is "on"
        if isinstance(st.session_state.get(common["key"]), str):    # from a shared link
            st.session_state[common["key"]] = st.session_state[common["key"]] == "on"
        value = {} if common["key"] in st.session_state else {"value": info["default"] == "on"}
        return "on" if st.checkbox(**common, **value) else "off"
    if kind == "select":
        return st.selectbox(options=overrides.get("options", list(info["choices"])),
                            format_func=overrides.get("format_func", str), **common)
    if kind == "text":
        return st.text_area(placeholder="Leave empty to use the built-in prompt.", **common,
                            **value)
    bounds = {"min_value": info["min"], "max_value": overrides.get("max_value", info["max"])}
    if kind == "slider":
        return st.slider(**bounds, **common, **value)
    step = info["step"] or (1 if info["type"] is int else None)
    return st.number_input(**bounds, step=step, **common, **value)


def settings_sidebar() -> RunSpec | None:
    restore_from_link()
    values: dict[str, Any] = {}
    with st.sidebar:
        st.header("Settings")
        st.caption("Shared by the Playground and Explore pages (Serving under load has its "
                   "own). Hover the ? next to a setting for what it changes.")
        values["model_id"], entry = _model_picker()
        values["device"] = widget("device", options=devices.available_devices())
        values["stack"] = _stack_picker()
        values["dtype"] = _dtype_picker(values["stack"], values["device"])
        values["batch_size"] = widget("batch_size")
        # No per-model maximum here: a prompt beyond the model's context gets an explanation.
        values["prompt_tokens"] = widget("prompt_tokens")
        is_encoder = entry is not None and entry.kind == kinds.ENCODER
        values["new_tokens"] = widget("new_tokens", disabled=is_encoder)
        if is_encoder:
            st.caption("An encoder writes no tokens, so output length is not used.")
        values["quality"] = widget("quality")
        with st.expander("Measurement"):
            for name in MEASUREMENT_FIELDS:
                if name == "threads" and default_threads() == 1:
                    values[name] = 1
                    st.caption(f"{field_info(name)['label']}: 1 (this machine has one core).")
                    continue
                values[name] = widget(name, **({"max_value": default_threads()}
                                               if name == "threads" else {}))
        with st.expander("Software stack settings"):
            if values["stack"] != TRANSFORMERS:
                values.update({name: field_info(name)["default"] for name in STACK_SETTINGS})
                st.caption(text.md(
                    f"{STACK_SETTING_LABELS} are transformers settings: "
                    f"{stack_name(values['stack'])} has its own kernels and cache. "
                    "Choose the transformers stack to change them."))
            else:
                for name in STACK_SETTINGS:
                    values[name] = widget(name)
            if values["compile"] == "on":
                st.warning("Compiling takes about a minute on a CPU before the first run; it is "
                           "timed in the warm-up, never in a latency.")
        values["prune"], values["exit_layer"], values["speculative"] = \
            _techniques(values["stack"], values["quality"] == "on", entry)
        values["hardware"], values["gpus"] = _hardware_picker()
        with st.expander("Your own prompt"):
            values["prompt_kind"] = widget("prompt_kind")
            prompt = widget("prompt_text")
            if prompt and not prompt.strip():
                st.caption("The box holds only spaces, so the built-in prompt is used.")
            values["prompt_text"] = prompt if prompt and prompt.strip() else None
    spec = None
    st.session_state[state.SPEC_PROBLEM] = None
    if values["model_id"] is not None:
        try:
            spec = RunSpec(**values)
        except ExplorerError as exc:
            st.sidebar.error(text.md(exc))
            st.session_state[state.SPEC_PROBLEM] = str(exc)
    st.session_state[state.SPEC] = spec
    return spec


def _techniques(stack: str, quality_on: bool, entry: catalog.CatalogEntry | None
                ) -> tuple[str | None, int | str | None, str]:
    """Pruning, early exit, speculative decoding and distillation: what they buy in speed and
    cost in quality (transformers)."""
    with st.expander("Speed-ups: pruning, early exit, speculative decoding, distillation"):
        if stack != TRANSFORMERS:
            st.caption(text.md(f"They work on the torch model itself, so they apply to the "
                               f"transformers stack, not {stack_name(stack)}."))
            return None, None, "none"
        chosen = widget("speculative")
        if chosen != "none":
            st.caption("Batch 1, dynamic KV cache. Try the quote prompt (under *Your own "
                       "prompt*) with prompt-lookup: the answer repeats the prompt.")
        if chosen == "draft" and entry is not None:
            _draft_words(entry)
        prune_info, exit_info = field_info("prune"), field_info("exit_layer")
        typed = st.text_input(prune_info["label"], key=state.setting("prune"),
                              help=prune_info["help"],
                              placeholder="none (e.g. magnitude:0.5, layers:10, mlp:0.25)")
        key = state.setting("exit_layer")
        if isinstance(st.session_state.get(key), int):          # from a shared link
            st.session_state[key] = str(st.session_state[key])
        # A text box, not a number box: emptied, a number box goes back to its lowest value.
        exit_typed = st.text_input(exit_info["label"], key=key, help=exit_info["help"],
                                   placeholder="every layer (or a number, e.g. 15)").strip()
        exit_layer: int | str | None = None
        if exit_typed:
            exit_layer = int(exit_typed) if exit_typed.isdigit() else exit_typed
        if (typed.strip() or exit_layer is not None) and not quality_on:
            st.caption("Tick *Measure quality too* to see what it costs.")
        if entry is not None and entry.model_id in catalog.CATALOG and \
                entry.weights == catalog.TRAINED and entry.kind == kinds.CAUSAL_LM:
            _distillation(entry)
        return (typed.strip() or None), exit_layer, chosen


def _draft_words(entry: catalog.CatalogEntry) -> None:
    from lib.measure import speculative
    try:
        draft = speculative.draft_entry(entry.model_id)
    except ExplorerError:
        can_train = entry.model_id in catalog.CATALOG and entry.weights == catalog.TRAINED
        st.caption(text.md(
            f"No draft model for {entry.display_name} yet: it needs a smaller trained model "
            "that shares its tokenizer. "
            + ("Train one below (*Distillation*), or choose prompt-lookup or early-exit."
               if can_train else "Choose prompt-lookup or early-exit.")))
        return
    st.caption(text.md(f"The draft: {draft.display_name}, a separate model that shares its "
                       "tokenizer."))


DISTILL_LAYERS = 10


def _distillation(entry: catalog.CatalogEntry) -> None:
    """A button that trains a smaller student of this model in the background, and how far
    it got (the fragment refreshes itself while it runs)."""
    from lib.measure import distill_job

    st.markdown("**Distillation**")
    job = distill_job.state()
    if job.status == distill_job.RUNNING:
        _distill_progress()
        return
    found = catalog.students(entry.model_id)
    if found:
        st.caption(text.md(f"Students of this model, in the model list: "
                           f"{', '.join(e.display_name for e in found)}."))
    if job.status == distill_job.FAILED:
        st.caption(text.md(job.words()))
    st.caption(f"Train a {DISTILL_LAYERS}-layer student to imitate {entry.display_name}: "
               "about 7 minutes on a quiet 2-core PC; it trains for at most 8, so a busy PC "
               "gets fewer steps, not a longer wait. It runs in the background; measurements "
               "wait meanwhile.")
    if not door.is_host():
        st.caption("Only the host can start a training here.")
        return
    if st.button(f"Train a {DISTILL_LAYERS}-layer student", key="distill_start"):
        distill_job.start(entry.model_id, DISTILL_LAYERS)
        st.rerun()


@st.fragment(run_every=3)
def _distill_progress() -> None:
    from lib.measure import distill_job

    job = distill_job.state()
    st.caption(text.md(job.words()))
    if job.status != distill_job.RUNNING:
        st.rerun()          # done or failed: the whole page, so the model list has it


def stack_option(name: str) -> str:
    """'llama.cpp (being built: about 3 min left)', 'ONNX Runtime (not installed)'."""
    chosen = STACKS[name]
    if not chosen.optional or chosen.installed:
        return chosen.label
    if name == LLAMA_CPP:
        build = stack_build.state()
        if build.status == stack_build.BUILDING:
            left = "" if build.left_s is None else \
                f": {stack_build.minutes_words(build.left_s)} left"
            return f"{chosen.label} (being built{left})"
        if build.status == stack_build.FAILED:
            return f"{chosen.label} (could not be built here)"
    return f"{chosen.label} (not installed)"


def _stack_picker() -> str:
    """The software stack: every one is offered, a missing one marked, so people see what the
    app can compare. llama.cpp is compiled in the background once the app is up (started
    here); while it builds, its progress shows under the select, and choosing a stack that is
    not ready says where it stands (and the model card keeps Run off)."""
    stack_build.start_background()
    key = state.setting("stack")
    if st.session_state.get(key) not in STACKS:
        st.session_state.pop(key, None)             # a stale or damaged value: the default
    chosen = widget("stack", options=list(STACKS), format_func=stack_option)
    if not STACKS[LLAMA_CPP].installed and \
            stack_build.state().status == stack_build.BUILDING:
        _build_progress(chosen == LLAMA_CPP)
    elif STACKS[chosen].optional and not STACKS[chosen].installed:
        st.error(text.md(STACKS[chosen].missing_reason()))
    return chosen


@st.fragment(run_every=10)
def _build_progress(chosen: bool) -> None:
    """llama.cpp's build, redrawn every 10 s; once it ends, the whole page is drawn again so
    the stack select offers it (or says why not)."""
    build = stack_build.state()
    if build.status != stack_build.BUILDING:
        st.rerun(scope="app")
    if chosen:
        st.progress(build.progress.fraction if build.progress else 0.0,
                    text=text.md(build.words()))
    else:
        st.caption(text.md(build.words()))


def dtype_options(stack: str, device: str) -> list[str]:
    """The number formats to offer: the stack's own, and for transformers only those the
    device can run (int8 has CPU kernels only)."""
    formats = STACKS[stack].dtypes
    if stack != TRANSFORMERS:
        return list(formats)
    return [d for d in devices.supported_dtypes(device) if d in formats]


def _dtype_picker(stack: str, device: str) -> str:
    """The number format, among the chosen stack's. A format the stack doesn't run (it was
    chosen for another stack) becomes float32, which every stack runs, and a note says so."""
    options = dtype_options(stack, device)
    key = state.setting("dtype")
    earlier = st.session_state.get(key)
    if earlier is not None and earlier not in options:
        st.session_state[key] = "float32" if "float32" in options else options[0]
        st.info(text.md(f"{stack_name(stack)} does not run weights in "
                        f"{FORMATS[earlier].label if earlier in FORMATS else earlier}, so the "
                        f"number format is now {st.session_state[key]}."))
    chosen = widget("dtype", options=options, format_func=lambda d: FORMATS[d].label)
    if stack == TRANSFORMERS and device != "cpu":
        st.caption("int8 is offered on the CPU only: torch's dynamic int8 quantization has "
                   "no GPU kernels.")
    if stack == TRANSFORMERS:
        # The help's general rule (faster where native) against this machine's measured rates.
        from lib.estimate import why
        here = why.format_speed_on_this_machine(chosen, device)
        if here:
            st.caption(text.md(here))
    return chosen


def _hardware_picker() -> tuple[str | None, int]:
    """'What if': measure here (the default), or estimate on a hardware profile."""
    from lib.estimate import hardware

    key = state.setting("hardware")
    options: list[str | None] = [None, *hardware.ids()]
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)             # a stale or damaged value: measure here
    names = {profile_id: hardware.table()[profile_id].name
             for profile_id in hardware.table()}
    with st.expander("What if: other hardware (estimates)"):
        chosen = st.selectbox(
            field_info("hardware")["label"], options, key=key,
            format_func=lambda h: "This machine: measure it live" if h is None else
            "This machine: estimate (no run)" if h == hardware.THIS else
            f"{names.get(h, h)}: estimate", help=field_info("hardware")["help"])
        if chosen is None:
            st.caption("Runs are measured here, now. Pick a profile to see what other "
                       "hardware would do: an ESTIMATE from a model of that hardware "
                       "(its published memory bandwidth and compute).")
            return None, 1
        gpus = widget("gpus")
        st.caption("Estimates are computed, not measured: they are labelled as such on every "
                   "page, in History and in exports.")
    return chosen, gpus


def current_spec() -> RunSpec | None:
    return st.session_state.get(state.SPEC)


def _model_picker() -> tuple[str | None, catalog.CatalogEntry | None]:
    """Group (trained / random / own), then the model; the user's own model is typed in.
    Classroom mode offers visitors the catalog only: paths and hub ids are the host's."""
    groups = [g for g in catalog.GROUPS if g != catalog.OWN or door.is_host()]
    if st.session_state.get(state.MODEL_GROUP) not in groups:
        st.session_state.pop(state.MODEL_GROUP, None)
    group = st.radio("Kind of model", options=groups, format_func=GROUP_LABELS.get,
                     key=state.MODEL_GROUP,
                     help="Trained models write real text. Random-weight models have the real "
                          "shapes of famous models, so they run at the real speed, but their "
                          "output is meaningless. Or bring your own.")
    if group == catalog.OWN:
        reference = st.text_input(
            "Folder, .gguf file or hub id", key=state.OWN_MODEL,
            placeholder="/path/to/model-folder  or  org/name",
            help="A local Hugging Face folder (with config.json), a .gguf file, or a hub id "
                 "such as HuggingFaceTB/SmolLM2-360M (only when this machine is online). "
                 "Remote code is never run.").strip()
        if not reference:
            st.caption("Type a path or a hub id to use your own model.")
            return None, None
        try:
            with st.spinner("Reading the model's configuration…"):
                entry = catalog.get_entry(reference)
        except ExplorerError as exc:
            st.error(text.md(exc))
            return None, None
        st.caption(text.md(f"{entry.description} "
                           f"{'Encoder' if entry.kind == kinds.ENCODER else ''}"))
        return entry.model_id, entry
    estimating = st.session_state.get(state.setting("hardware")) is not None
    # Estimation-only entries (DeepSeek-R1 at full size) are offered when estimating.
    entries = {m: e for m, e in catalog.CATALOG.items()
               if e.weights == group and (estimating or not e.estimate_only)}
    if group == catalog.TRAINED:                  # students distilled on this machine
        entries.update((e.model_id, e) for e in catalog.students())
    options = list(entries)
    if st.session_state.get(state.model_choice(group)) not in options:
        st.session_state.pop(state.model_choice(group), None)
    info = field_info("model_id")
    model_id = st.selectbox(info["label"], options=options, help=info["help"],
                            key=state.model_choice(group),
                            format_func=lambda m: entries[m].display_name)
    entry = entries[model_id]
    st.caption(entry.description)
    return model_id, entry

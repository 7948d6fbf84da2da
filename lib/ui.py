"""The Streamlit side of lib: shared settings widgets, the model cache, session state, and running.

The only module in lib that imports Streamlit. It owns:
- the session-state keys (`KEY_*`), so pages never invent their own;
- `settings_sidebar()`, which draws the shared settings from RunSpec's field metadata (labels,
  help, bounds) and returns a RunSpec, or None with the reason shown;
- `model_cache()`, the one `st.cache_resource` wrapper: a server-wide `models.ModelCache`, so a
  model loads once per (model, device, dtype) and is shared by every browser session;
- `run_with_status()`, which runs a spec through lib.runner, shows queueing, loading and progress,
  and turns any ExplorerError into an `st.error` so a failed run never takes the page down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from lib import catalog, devices, history, modelcard, models, runner, stats, sweep
from lib.store import Store
from lib.engine import Measurement
from lib.errors import ExplorerError
from lib.spec import ATTENTIONS, COMPILES, KV_CACHES, RunSpec, default_threads, field_info

KEY_SPEC = "spec"                  # the RunSpec built from the sidebar this rerun
KEY_RESULT = "playground_result"   # the last Result shown on the Playground
KEY_SWEEP = "explore_sweep"        # the last SweepResult shown on Explore
KEY_SWEEP_LIVE = "explore_live"    # the sweep in progress: its finished points, kept on Stop
WIDGET_PREFIX = "setting_"         # widget keys: setting_<RunSpec field>

MODEL_CACHE_ENTRIES = 2            # models kept in memory at once (each can be GBs)
PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
MAX_PROMPT_TOKENS = 131_072        # the longest context in the catalog
GROUP_LABELS = {catalog.TRAINED: "Trained (real text)",
                catalog.RANDOM: "Famous architectures, random weights",
                catalog.OWN: "Your own model"}


def run_app() -> None:
    """The router: page config, the page list, the shared sidebar, then the chosen page.

    Page paths are absolute so the same router runs from app.py or from a test harness.
    """
    st.set_page_config(page_title="Inference Latency Explorer", page_icon="⏱️", layout="wide")
    page = st.navigation([
        st.Page(PAGES_DIR / "playground.py", title="Playground", icon=":material/play_arrow:",
                default=True),
        st.Page(PAGES_DIR / "explore.py", title="Explore factors", icon=":material/show_chart:"),
        st.Page(PAGES_DIR / "history.py", title="History", icon=":material/history:"),
    ])
    settings_sidebar()
    page.run()


@dataclass(frozen=True)
class Result:
    measurement: Measurement
    summary: stats.Summary
    model_note: str          # how the model got ready, e.g. "loaded in 1.2 s" or "already in memory"
    saved_id: int | None = None
    save_problem: str | None = None


def _widget(kind, name: str, **kwargs):
    info = field_info(name)
    if WIDGET_PREFIX + name in st.session_state:
        kwargs.pop("value", None)    # set by a shared link: a default too would be a conflict
    return kind(info["label"], help=info["help"], key=WIDGET_PREFIX + name, **kwargs)


LINK_RESTORED = "_link_restored"
EXPLORE_LINK_KEYS = ("factor", "values")


def restore_from_link() -> None:
    """Fill the widgets from the page's query parameters, once per browser session.

    Opening a shared link restores the settings; it never starts a run by itself.
    """
    if st.session_state.get(LINK_RESTORED):
        return
    st.session_state[LINK_RESTORED] = True
    params = st.query_params
    defaults = RunSpec()
    for name in RunSpec.__dataclass_fields__:
        if name not in params:
            continue
        raw = params[name]
        if name == "model_id":
            entry = catalog.CATALOG.get(raw)
            group = entry.weights if entry else catalog.OWN
            st.session_state[WIDGET_PREFIX + "model_group"] = group
            st.session_state[WIDGET_PREFIX + ("own_model" if group == catalog.OWN
                                              else f"model_id_{group}")] = raw
            continue
        default = getattr(defaults, name)
        try:
            value = type(default)(raw) if default is not None else raw
        except ValueError:
            continue                  # a damaged link keeps that setting at its default
        st.session_state[WIDGET_PREFIX + name] = value
    if "factor" in params and params["factor"] in sweep.FACTORS:
        st.session_state["explore_factor_0"] = params["factor"]
        if "values" in params and sweep.FACTORS[params["factor"]].parse is int:
            st.session_state[f"explore_values_0_{params['factor']}"] = params["values"]


def share_link(spec: RunSpec, extra: dict[str, str] | None = None) -> None:
    """Show a link that reopens this page with these settings (it does not start a run)."""
    defaults = RunSpec()
    params = {name: str(value) for name, value in spec.to_dict().items()
              if value is not None and value != getattr(defaults, name)}
    params.update(extra or {})
    from urllib.parse import urlencode, urlsplit, urlunsplit
    parts = urlsplit(st.context.url or "")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))
    with st.expander("Share these settings"):
        st.caption("Anyone opening this link sees this page with these settings filled in; "
                   "nothing runs until they press the button.")
        st.code(url, language=None)


def settings_sidebar() -> RunSpec | None:
    restore_from_link()
    defaults = RunSpec()
    with st.sidebar:
        st.header("Settings")
        st.caption("Shared by every page. Hover the ? next to a setting for what it changes.")
        model_id, entry = _model_picker()
        device = _widget(st.selectbox, "device", options=devices.available_devices())
        dtype = _widget(st.selectbox, "dtype", options=devices.supported_dtypes(device))
        if device != "cpu":
            st.caption("int8 is offered on the CPU only: torch's dynamic int8 quantization has "
                       "no GPU kernels.")
        batch_size = _widget(st.slider, "batch_size", min_value=1, max_value=64,
                             value=defaults.batch_size)
        # No per-model maximum here: a prompt beyond the model's context gets an explanation.
        prompt_tokens = _widget(st.number_input, "prompt_tokens", min_value=8,
                                max_value=MAX_PROMPT_TOKENS, value=defaults.prompt_tokens,
                                step=8)
        is_encoder = entry is not None and entry.kind == models.ENCODER
        new_tokens = _widget(st.number_input, "new_tokens", min_value=1, max_value=512,
                             value=defaults.new_tokens, step=1, disabled=is_encoder)
        if is_encoder:
            st.caption("An encoder writes no tokens, so output length is not used.")
        with st.expander("Measurement"):
            repetitions = _widget(st.number_input, "repetitions", min_value=1, max_value=100,
                                  value=defaults.repetitions)
            if default_threads() > 1:
                threads = _widget(st.slider, "threads", min_value=1,
                                  max_value=default_threads(), value=defaults.threads)
            else:
                threads = 1
                st.caption("CPU threads: 1 (this machine has one core).")
            warmup_runs = _widget(st.number_input, "warmup_runs", min_value=0, max_value=5,
                                  value=defaults.warmup_runs)
            min_duration_s = _widget(st.number_input, "min_duration_s", min_value=0.0,
                                     max_value=600.0, value=defaults.min_duration_s, step=0.5)
        with st.expander("Software stack"):
            attention = _widget(st.selectbox, "attention", options=list(ATTENTIONS))
            kv_cache = _widget(st.selectbox, "kv_cache", options=list(KV_CACHES))
            compile_ = _widget(st.selectbox, "compile", options=list(COMPILES))
            if compile_ == "on":
                st.warning("Compiling takes about a minute on a CPU before the first run; it is "
                           "timed in the warm-up, never in a latency.")
        with st.expander("Your own prompt"):
            prompt_text = _widget(st.text_area, "prompt_text", value="",
                                  placeholder="Leave empty to use the built-in prompt.")
            if prompt_text and not prompt_text.strip():
                st.caption("The box holds only spaces, so the built-in prompt is used.")
    if model_id is None:
        st.session_state[KEY_SPEC] = None
        return None
    try:
        spec = RunSpec(model_id=model_id, device=device, dtype=dtype, batch_size=batch_size,
                       prompt_tokens=int(prompt_tokens), new_tokens=int(new_tokens),
                       repetitions=int(repetitions), min_duration_s=float(min_duration_s),
                       warmup_runs=int(warmup_runs), threads=threads, attention=attention,
                       kv_cache=kv_cache, compile=compile_,
                       prompt_text=prompt_text if prompt_text.strip() else None)
    except ExplorerError as exc:
        st.sidebar.error(str(exc))
        spec = None
    st.session_state[KEY_SPEC] = spec
    return spec


def _model_picker() -> tuple[str | None, catalog.CatalogEntry | None]:
    """Group (trained / random / own), then the model; the user's own model is typed in."""
    group = st.radio("Kind of model", options=list(catalog.GROUPS), format_func=GROUP_LABELS.get,
                     key=WIDGET_PREFIX + "model_group",
                     help="Trained models write real text. Random-weight models have the real "
                          "shapes of famous models, so they run at the real speed, but their "
                          "output is meaningless. Or bring your own.")
    if group == catalog.OWN:
        reference = st.text_input(
            "Folder, .gguf file or hub id", key=WIDGET_PREFIX + "own_model",
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
            st.error(str(exc))
            return None, None
        st.caption(f"{entry.description} {'Encoder' if entry.kind == models.ENCODER else ''}")
        return entry.model_id, entry
    options = [m for m, e in catalog.CATALOG.items() if e.weights == group]
    # One widget per group, so switching groups and back keeps each group's choice.
    info = field_info("model_id")
    model_id = st.selectbox(info["label"], options=options, help=info["help"],
                            key=f"{WIDGET_PREFIX}model_id_{group}",
                            format_func=lambda m: catalog.CATALOG[m].display_name)
    entry = catalog.CATALOG[model_id]
    st.caption(entry.description)
    return model_id, entry


def model_card(spec: RunSpec) -> bool:
    """The chosen model's size, shape and memory needs, shown before anything loads.

    Returns False (with the reason shown) when the settings can't run as they are.
    """
    try:
        entry = catalog.get_entry(spec.model_id)
        card = modelcard.model_card(entry, models.shapes(spec.model_id), spec,
                                    weights_loaded=loaded_now(spec))
        models.check_context(entry, spec)
    except ExplorerError as exc:
        st.error(str(exc))
        return False
    with st.expander(f"About the model: {card.title} ({card.summary})"):
        st.write(card.description)
        st.markdown("\n".join(f"- **{label}:** {value}" for label, value in card.rows))
        st.caption(f"Weights: {card.source}.")
    (st.caption if card.fits else st.error)(card.memory_verdict)
    return True


def loaded_now(spec: RunSpec) -> bool:
    """Whether this spec's model is already in the server's memory (its weights are resident)."""
    return (spec.model_id, spec.device, spec.dtype) in model_cache()


def current_spec() -> RunSpec | None:
    return st.session_state.get(KEY_SPEC)


@st.cache_resource(show_spinner=False)
def model_cache() -> models.ModelCache:
    """The server-wide model cache: one per Streamlit process, shared by all sessions."""
    return models.ModelCache(max_entries=MODEL_CACHE_ENTRIES)


def run_with_status(spec: RunSpec) -> Result | None:
    """Run `spec`, showing each stage; None (with the reason on the page) if it could not run."""
    queue_notice = st.empty()
    status = st.status("Starting…", expanded=True)
    progress = status.progress(0.0)

    def on_wait(message: str) -> None:
        status.update(label="Waiting in the queue…", state="running")
        queue_notice.info(message)

    def on_status(message: str) -> None:
        status.update(label=message)
        status.write(message)

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "warm-up":
            progress.progress(0.0, text=f"Warm-up run {done + 1} of {total} (not timed)")
        elif stage == "measuring":
            fraction = min(done / max(total, 1), 1.0)
            progress.progress(fraction, text=f"Timed repetition {done + 1} (at least {total})")
        else:
            progress.progress(1.0, text=f"Done: {done} repetitions timed")

    asked_at = time.time()
    used: list[models.LoadedModel] = []

    def get_model(model_id: str, device: str, dtype: str, on_status=None) -> models.LoadedModel:
        used.append(model_cache().get(model_id, device, dtype, on_progress=on_status))
        return used[-1]

    try:
        measurement = runner.run(spec, get_model=get_model, on_status=on_status,
                                 on_progress=on_progress, on_wait=on_wait)
    except ExplorerError as exc:
        queue_notice.empty()
        status.update(label="The run could not start", state="error", expanded=False)
        st.error(str(exc))
        return None
    queue_notice.empty()
    if used[-1].loaded_at >= asked_at:
        model_note = (f"Model loaded in {measurement.load_s:.1f} s ({measurement.load_source}); "
                      "loading is never counted in a latency.")
    else:
        model_note = (f"Model was already in memory (its load took {measurement.load_s:.1f} s "
                      "earlier); loading is never counted in a latency.")
    status.update(label=f"Measured {len(measurement.repetitions)} repetitions", state="complete",
                  expanded=False)
    if spec.compile == "on" and measurement.warmup_s:
        model_note += (f" torch.compile: the first warm-up, which includes compiling, took "
                       f"{measurement.warmup_s[0]:.1f} s (not counted in any latency).")
    if measurement.quantize_s is not None:
        model_note += (f" Its Linear layers were quantized to int8 in {measurement.quantize_s:.1f} s "
                       "(also not counted); int8 answers drift slightly from float32's.")
    summary = stats.summarize(measurement)
    saved_id, problem = history.save_run(Store(), measurement, summary)
    return Result(measurement, summary, model_note, saved_id, problem)


def factor_values_input(factor: sweep.Factor, key: str, device: str) -> list | None:
    """Values for one factor: a list to pick from, or numbers typed with commas."""
    if factor.parse is not int:
        options = {"model": list(catalog.CATALOG), "dtype": devices.supported_dtypes(device),
                   "device": devices.available_devices()}.get(factor.name) \
            or list(factor.default_values())
        defaults = [v for v in factor.default_values() if v in options]
        chosen = st.multiselect(
            f"Values of {factor.label}", options, default=defaults, key=key,
            format_func=lambda v: catalog.CATALOG[v].display_name if factor.name == "model"
            else v)
        return chosen or None
    if key not in st.session_state:
        st.session_state[key] = ", ".join(str(v) for v in factor.default_values())
    text = st.text_input(f"Values of {factor.label} (comma-separated)", key=key)
    try:
        return sweep.parse_values(factor, text)
    except ExplorerError as exc:
        st.error(str(exc))
        return None


def run_sweep_with_status(base: RunSpec,
                          factor_values: list[tuple[sweep.Factor, list]]) -> sweep.SweepResult:
    """Run a sweep showing which point runs, its repetitions and the time left.

    Finished points go into session state as they finish, so a Stop (which reruns the page and
    interrupts this one) keeps them: see `partial_sweep()`.
    """
    factors = [f.name for f, _ in factor_values]
    recorder = history.SweepRecorder(Store(), base, factors, len(sweep.grid(factor_values)))
    st.session_state[KEY_SWEEP_LIVE] = {"base": base, "planned": 0, "points": [],
                                        "factors": factors, "recorder": recorder}
    live = st.session_state[KEY_SWEEP_LIVE]

    def on_point(point: sweep.PointResult) -> None:
        live["points"].append(point)
        recorder.add(point)
    progress = st.progress(0.0, text="Starting the sweep…")
    notice = st.empty()

    def on_progress(done: int, total: int, values: dict, eta_s: float | None) -> None:
        live["planned"] = total
        if done >= total:
            progress.progress(1.0, text=f"Done: {total} points")
            return
        where = ", ".join(f"{sweep.FACTORS[name].label} {value}" for name, value in values.items())
        eta = f"; about {eta_s:.0f} s left" if eta_s is not None else ""
        progress.progress(done / total, text=f"Point {done + 1} of {total}: {where} (at least "
                          f"{base.repetitions} repetitions after a warm-up){eta}")

    def run_point(spec: RunSpec):
        def on_wait(message: str) -> None:
            notice.info(message)
        measurement = runner.run(spec, get_model=lambda *a: model_cache().get(*a), on_wait=on_wait)
        notice.empty()
        return measurement

    result = sweep.run_sweep(base, factor_values, run_point, on_progress=on_progress,
                             on_point=on_point)
    recorder.finish(result.stopped)
    st.session_state.pop(KEY_SWEEP_LIVE, None)
    result.saved = (recorder.entry_id, recorder.problem)
    return result


def partial_sweep() -> sweep.SweepResult | None:
    """A sweep interrupted by Stop (or any rerun): the points it finished, marked stopped."""
    live = st.session_state.pop(KEY_SWEEP_LIVE, None)
    if not live or not live["points"]:
        return None
    live["recorder"].finish(stopped=True)
    result = sweep.SweepResult(live["base"], live["factors"], points=live["points"],
                               stopped=True, planned=live["planned"])
    result.saved = (live["recorder"].entry_id, live["recorder"].problem)
    return result

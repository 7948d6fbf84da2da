"""Shared fixtures: one model cache folder and one loaded default model for the whole session.

The measurement queue (lib.machine.runlock) gets a folder of its own per test session. The cache is
`$ILE_TEST_CACHE_DIR` when set (`scripts/test.sh` sets it to the git-ignored `.cache/tests`, so
converted models, built llama.cpp and ONNX files and this machine's measured ceilings are
reused between runs; CI can keep that folder), else a temporary folder; the first test that
loads the default model pays the one-off conversion. Tests that only read the default model
share one load of it (`default_model`).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

# The app's settings in the environment of whoever runs the tests (a classroom, an access
# code, a history folder) don't reach them: each test sets the ones it depends on.
for _setting in [name for name in os.environ if name.startswith("ILE_")]:
    if _setting != "ILE_TEST_CACHE_DIR":
        del os.environ[_setting]

# Tests never compile llama.cpp (lib.core.stack_build): not the app pages they draw, nor the servers
# they start, which inherit this.
os.environ["ILE_BUILD_STACKS"] = "0"


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory) -> Path:
    path = Path(os.environ.get("ILE_TEST_CACHE_DIR") or tmp_path_factory.mktemp("ile-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


DEFAULT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_model(model_cache_dir):
    """The default model, loaded once per session (float32 on CPU, transformers backend), for
    the tests that run it without changing it."""
    from lib.measure import backends

    # Session-scoped, so it runs before the per-test cache fixture: point at the same folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ILE_CACHE_DIR", str(model_cache_dir))
        loaded = backends.get("transformers").load(DEFAULT_MODEL, "cpu", "float32")
    yield loaded


@pytest.fixture(scope="session", autouse=True)
def _own_measurement_queue(tmp_path_factory):
    """This test session's own queue folder (lib.machine.runlock): parallel test runs and the app never
    wait for each other. Set in os.environ, so servers and CLI processes started by tests
    queue with this session."""
    before = os.environ.get("ILE_RUNTIME_DIR")
    os.environ["ILE_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("ile-runtime"))
    yield
    if before is None:
        os.environ.pop("ILE_RUNTIME_DIR", None)
    else:
        os.environ["ILE_RUNTIME_DIR"] = before


@pytest.fixture(autouse=True)
def _isolated_cache(model_cache_dir, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("ILE_CACHE_DIR", str(model_cache_dir))
    # Run history goes to a throwaway folder, never the user's.
    monkeypatch.setenv("ILE_DATA_DIR", str(tmp_path_factory.mktemp("ile-data")))


@pytest.fixture(autouse=True)
def _declared_ceilings(request, monkeypatch):
    """Fast tests run on a machine with declared ceilings (`fakes.DECLARED_CEILINGS`), so no
    run measures this machine's (a few seconds of full load); the slow tests (real models,
    the browser) and lib.machine.ceilings' own tests measure for real."""
    if request.node.get_closest_marker("slow") or request.module.__name__ == "test_ceilings":
        return
    from fakes import DECLARED_CEILINGS
    from lib.machine import ceilings

    monkeypatch.setattr(ceilings, "machine_ceilings",
                        lambda device="cpu", refresh=False, on_progress=None, on_wait=None:
                        DECLARED_CEILINGS)
    monkeypatch.setattr(ceilings, "cached", lambda device="cpu": DECLARED_CEILINGS)


@pytest.fixture
def fake_backend(monkeypatch):
    """Every model runs on a fake backend with declared latencies (prefill 0.2 s, 50 ms/token).

    A fake model holds no memory, so dropping it from the model cache needn't collect garbage
    (with torch imported, a collection takes a quarter of a second: most of a fake run's time)."""
    from lib.measure import backends, cache
    from lib.measure.backends.fake import FakeBackend

    monkeypatch.setattr(cache, "_release_memory", lambda: None)
    with backends.use(FakeBackend()) as backend:
        yield backend


@pytest.fixture(scope="session", autouse=True)
def _streamlit_prepared_once():
    """What every AppTest run repeats that can't change during a test session is done once:
    reading the metadata of every installed package for Streamlit components (a third of a
    second, at each AppTest's start) and compiling each page script (at each run)."""
    if "streamlit" not in sys.modules:        # no page test collected: nothing to speed up
        yield
        return
    from streamlit.components.v2 import manifest_scanner
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    scan = functools.cache(manifest_scanner.scan_component_manifests)
    compiled = ScriptCache()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_scanner, "scan_component_manifests",
                      lambda max_workers=None: list(scan()))
        for module in (app_test, local_script_runner):
            patch.setattr(module, "ScriptCache", lambda: compiled)
        yield


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, model_cache_dir):
    """The app as a user starts it (`streamlit run app.py`, the project's config: 127.0.0.1),
    started once for every browser test that only needs it running (a start takes seconds)."""
    import servers
    from test_browser import require_browser

    require_browser()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = dict(os.environ, ILE_CACHE_DIR=str(model_cache_dir))
    with servers.streamlit_app(log, env) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def _chromium():
    """One headless Chromium for the session (a launch takes a second or two)."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser(_chromium):
    """The session's Chromium; the pages and contexts a test opened are closed after it, so
    no page of one test is left talking to a server during the next."""
    yield _chromium
    for context in _chromium.contexts:
        context.close()


@pytest.fixture
def hub_unreachable(monkeypatch):
    """The Hugging Face hub can't be reached, whatever this machine's network and environment:
    hub access is not switched off (no HF_HUB_OFFLINE) and the hub's address is a closed port."""
    from huggingface_hub import constants
    from sse_server import closed_port_url

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", closed_port_url().removesuffix("/v1"))


CLASSROOM_ACCESS_CODE, CLASSROOM_HOST_CODE = "class-code-1", "host-code-1"


@pytest.fixture
def classroom_on(monkeypatch):
    """Classroom mode with both codes set (`fakes.enter_classroom(at)` gets an AppTest past them)."""
    monkeypatch.setenv("ILE_CLASSROOM", "1")
    monkeypatch.setenv("ILE_ACCESS_CODE", CLASSROOM_ACCESS_CODE)
    monkeypatch.setenv("ILE_HOST_CODE", CLASSROOM_HOST_CODE)


def pytest_collection_modifyitems(items):
    """With pytest-xdist (scripts/test.sh runs two workers, `--dist loadgroup`): the browser
    tests go to one worker together. They mostly wait (on pages, servers and the fake backend's
    real-time latencies), so the other worker's CPU-bound tests run meanwhile, and they share
    one app server and one Chromium. A file whose tests share state in the test cache stays
    on one worker too."""
    one_file = {"test_backend_onnxruntime.py"}   # rebuilds the int4 export the others load
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
        elif item.path.name in one_file:
            item.add_marker(pytest.mark.xdist_group(item.path.name))

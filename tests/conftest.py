"""Shared fixtures: one model cache folder for the whole test session.

The measurement queue (lib.machine.runlock) gets a folder of its own per test session. The cache is
`$ILE_TEST_CACHE_DIR` when set (CI sets it so the converted model is reused between
runs), else a temporary folder; the first test that loads the default model pays the one-off
conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never compile llama.cpp (lib.core.stack_build): not the app pages they draw, nor the servers
# they start, which inherit this.
os.environ["ILE_BUILD_STACKS"] = "0"


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory) -> Path:
    path = Path(os.environ.get("ILE_TEST_CACHE_DIR") or tmp_path_factory.mktemp("ile-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


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
def fake_backend():
    """Every model runs on a fake backend with declared latencies (prefill 0.2 s, 50 ms/token)."""
    from lib.measure import backends
    from lib.measure.backends.fake import FakeBackend

    with backends.use(FakeBackend()) as backend:
        yield backend


CLASSROOM_ACCESS_CODE, CLASSROOM_HOST_CODE = "class-code-1", "host-code-1"


@pytest.fixture
def classroom_on(monkeypatch):
    """Classroom mode with both codes set (`fakes.enter_classroom(at)` gets an AppTest past them)."""
    monkeypatch.setenv("ILE_CLASSROOM", "1")
    monkeypatch.setenv("ILE_ACCESS_CODE", CLASSROOM_ACCESS_CODE)
    monkeypatch.setenv("ILE_HOST_CODE", CLASSROOM_HOST_CODE)


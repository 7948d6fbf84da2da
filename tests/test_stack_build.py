"""lib.core.stack_build: llama.cpp's background build, its progress, time left, lock and states, and
the stack lookup that notices a stack installed while the app runs. pip never runs here."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys

import pytest

from lib.core import stack_build, stacks
from lib.core.errors import UnsupportedError
from lib.core.stack_build import (BUILDING, FAILED, INSTALLED, MISSING, BuildState, Progress,
                             parse_progress, time_left)

NINJA_LOG = """Processing ./llama-cpp-python
  *** Configuring CMake...
  [1/260] Building C object vendor/llama.cpp/ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
  [139/260] Building CXX object vendor/llama.cpp/src/CMakeFiles/llama.dir/llama-model.cpp.o
  [140/260] Building CXX object vendor/llama.cpp/src/CMakeFiles/llama.dir/llama-vocab.cpp.o
"""
MAKE_LOG = """  [  3%] Building C object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o
  [ 45%] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(stack_build, "installed_version", lambda: None)
    return tmp_path


def hold_lock(cache):
    """A builder in another process, as the lock shows it (flock is per open file)."""
    handle = (cache / stack_build.LOCK_NAME).open("a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def test_progress_is_read_from_ninja_steps_and_from_make_percentages():
    assert parse_progress(NINJA_LOG) == Progress(140 / 260, 140, 260)
    assert parse_progress(MAKE_LOG) == Progress(0.45)
    assert parse_progress("Collecting diskcache\n  Downloading ...") is None


def test_time_left_scales_the_time_so_far_once_past_the_first_steps():
    assert time_left(60.0, Progress(0.25, 65, 260)) == pytest.approx(180.0)
    # Before 5%, the typical build less the time spent, never below a minute.
    assert time_left(30.0, Progress(0.02, 5, 260)) == stack_build.TYPICAL_BUILD_S - 30.0
    assert time_left(30.0, None) == stack_build.TYPICAL_BUILD_S - 30.0
    assert time_left(1000.0, None) == 60.0


def test_a_held_lock_is_a_build_with_its_step_and_time_left(cache):
    (cache / stack_build.LOG_NAME).write_text(NINJA_LOG.replace("[140/260]", "[65/260]"))
    (cache / stack_build.RESULT_NAME).write_text(json.dumps({"status": BUILDING,
                                                             "started": 1000.0}))
    with hold_lock(cache):
        build = stack_build.state(now=1060.0)
        assert stack_build.busy_words() == "llama.cpp is being built"
    assert build.status == BUILDING and build.progress.step == 65
    assert build.elapsed_s == 60.0 and build.left_s == pytest.approx(180.0)
    assert build.words().startswith("llama.cpp is being built for this machine (step 65 of "
                                    "260, about 3 min left); you can use the other stacks")
    assert stack_build.state().status == MISSING              # the lock let go: not building
    assert stack_build.busy_words() is None


def test_states_after_the_build(cache, monkeypatch):
    monkeypatch.setenv(stack_build.BUILD_ENV, "1")
    missing = stack_build.state()
    assert missing.status == MISSING
    assert missing.automatic == (sys.prefix != sys.base_prefix)
    (cache / stack_build.RESULT_NAME).write_text(json.dumps(
        {"status": FAILED, "error": "error: 'immintrin.h' file not found"}))
    failed = stack_build.state()
    assert failed.status == FAILED
    assert failed.words().startswith("llama.cpp could not be built on this machine: error: "
                                     "'immintrin.h' file not found. The app tried to compile "
                                     "llama-cpp-python 0.3.36")
    assert str(cache / stack_build.LOG_NAME) in failed.words()
    monkeypatch.setattr(stack_build, "installed_version", lambda: "0.3.36")
    assert stack_build.state().status == INSTALLED          # a later build succeeded


@pytest.mark.parametrize("state", [
    BuildState(BUILDING), BuildState(BUILDING, Progress(0.5, 130, 260), 60.0, 60.0),
    BuildState(FAILED, error="x"), BuildState(MISSING), BuildState(MISSING, automatic=False)])
def test_no_state_asks_for_a_command(state):
    words = state.words()
    assert "setup.sh" not in words and "pip " not in words and "python -m" not in words


def test_missing_words_say_whether_this_app_builds_it():
    assert "compiles it in the background" in BuildState(MISSING).words()
    assert "does not compile it by itself" in BuildState(MISSING, automatic=False).words()


def test_a_build_holds_the_lock_and_records_a_failure(cache, monkeypatch):
    seen = {}

    def fake_pip(command, env, stdout, **_):
        seen["held"] = stack_build.busy_words() is not None
        seen["command"], seen["cmake"] = command, env["CMAKE_ARGS"]
        stdout.write("  [12/260] Building C object ggml.c.o\n"
                     "  error: command 'cc' failed: No such file or directory\n")
        return 1

    monkeypatch.setattr(subprocess, "call", fake_pip)
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    assert stack_build.build() == 1
    assert seen["held"] and seen["cmake"] == stack_build.CMAKE_ARGS
    assert seen["command"][1:5] == ["-m", "pip", "install", "-v"]
    result = json.loads((cache / stack_build.RESULT_NAME).read_text())
    assert result["status"] == FAILED and result["returncode"] == 1
    assert result["error"] == "error: command 'cc' failed: No such file or directory"
    assert stack_build.state().status == FAILED


def test_a_build_finds_the_pinned_version_installed_and_does_nothing(cache, monkeypatch):
    monkeypatch.setattr(stack_build, "installed_version", stack_build.pinned_version)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("pip ran"))
    assert stack_build.build() == 0


def test_the_app_starts_one_background_build_at_low_priority(cache, monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: started.append(command))
    monkeypatch.setattr(stack_build, "_started_here", False)
    monkeypatch.setattr(stack_build, "wanted", lambda: True)
    monkeypatch.setattr(stack_build, "LOCK_WAIT_S", 0.0)     # the fake builder never locks
    with hold_lock(cache):                     # another app's build: this one waits for it
        assert not stack_build.start_background()
    assert stack_build.start_background()
    assert not stack_build.start_background()  # once per app process
    assert started == [["nice", "-n", "19", sys.executable, "-m", "lib.core.stack_build"]]


def test_tests_and_system_pythons_never_build(monkeypatch):
    monkeypatch.setattr(stack_build, "installed_version", lambda: None)
    monkeypatch.setenv(stack_build.BUILD_ENV, "0")
    assert not stack_build.wanted()
    monkeypatch.setenv(stack_build.BUILD_ENV, "1")
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    assert not stack_build.wanted()


def test_a_stack_installed_while_the_app_runs_is_found_without_a_restart(monkeypatch):
    found = {"llama_cpp": False}
    monkeypatch.setattr(stacks, "_look_up", lambda module: found.get(module, False))
    stacks._found_once.cache_clear()
    assert not stacks.installed("llama.cpp")
    found["llama_cpp"] = True
    assert stacks.installed("llama.cpp")
    stacks._found_once.cache_clear()


def test_importing_a_stack_retries_once_then_says_where_it_stands(monkeypatch):
    import importlib

    calls = []

    def flaky(name):
        calls.append(name)
        if len(calls) == 1:
            raise ImportError(name)
        return "module"

    monkeypatch.setattr(importlib, "import_module", flaky)
    assert stacks.import_stack("llama.cpp") == "module" and calls == ["llama_cpp"] * 2
    monkeypatch.setattr(importlib, "import_module", lambda name: (_ for _ in ()).throw(
        ImportError(name)))
    monkeypatch.setattr(stack_build, "installed_version", lambda: None)
    with pytest.raises(UnsupportedError, match="llama.cpp is not installed") as raised:
        stacks.import_stack("llama.cpp")
    assert "scripts/setup.sh --stacks" in raised.value.cli_hint


def test_setup_builds_in_the_foreground_and_shows_the_log_s_end_when_it_fails(cache, monkeypatch,
                                                                               capsys):
    def fake_build():
        (cache / stack_build.LOG_NAME).write_text("step\nerror: no compiler\n")
        return 1

    monkeypatch.setattr(stack_build, "build", fake_build)
    assert stack_build.main(["--foreground"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("  Compiling llama.cpp (llama-cpp-python 0.3.36): several minutes")
    assert err.endswith("step\nerror: no compiler\n")
    monkeypatch.setattr(stack_build, "installed_version", stack_build.pinned_version)
    assert stack_build.main(["--foreground"]) == 0 and capsys.readouterr() == ("", "")

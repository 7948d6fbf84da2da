"""Building llama.cpp for this machine, behind the app's back, and saying how far it got.

PyPI has no prebuilt wheel of llama-cpp-python (only its source), so the plain setup leaves
llama.cpp out and the app compiles it once it is up: `start_background()` starts
`python -m lib.core.stack_build` at the lowest priority (nice 19), which installs
`requirements-llama.txt` into the app's own virtual environment with pip, verbose, into a log
in the cache folder. pip's wheel cache makes every later install instant. One build at a time
on the machine: the builder holds a file lock for as long as it works, so a second app, a
second browser session or `scripts/setup.sh --stacks` waits for it (and then finds it done)
instead of compiling alongside. `state()` reads the lock, the log and the last result into a
`BuildState`: missing, building (step n of N from cmake's progress lines, time left from the
time spent so far), failed (with the error) or installed. Its `words()` are for the screen and
never ask for a command; the CLI adds one (`CLI_HINT`).

Nothing here imports llama.cpp, Streamlit or torch: the sidebar asks on every rerun.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.paths import cache_dir

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements-llama.txt"
PACKAGE, MODULE = "llama-cpp-python", "llama_cpp"
LOG_NAME, LOCK_NAME, RESULT_NAME = "llama-cpp-build.log", "llama-cpp-build.lock", \
    "llama-cpp-build.json"
BUILD_ENV = "ILE_BUILD_STACKS"        # "0": the app never starts a build (the tests set it)
CLI_HINT = "`scripts/setup.sh --stacks` builds it now, in the foreground (several minutes)."
# Portable x86-64 kernels (AVX2/FMA/F16C), no detection of this CPU's own features and no AMX:
# on this kind of virtual machine a native build crashes with an illegal instruction, because
# the CPU reports features the hypervisor does not allow. `$CMAKE_ARGS` replaces them.
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
              "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
              "-DLLAMA_CURL=OFF")
# A whole build on 2 otherwise quiet cores takes about 5 minutes (README, "Software stacks"):
# the time-left guess until the compile is 5% done; past that its own pace is the guess.
TYPICAL_BUILD_S = 330.0
LOCK_WAIT_S = 3.0                    # how long the app waits for a new builder to start
MIN_FRACTION = 0.05                  # extrapolate the time left only past the first 5%
# cmake's progress: Ninja prints "[140/260] Building CXX object ...", Make "[ 45%] Building ...".
_NINJA_STEP = re.compile(r"^\s*\[\s*(\d+)/(\d+)\]", re.MULTILINE)
_MAKE_PERCENT = re.compile(r"^\s*\[\s*(\d+)%\]", re.MULTILINE)
_ERROR_LINE = re.compile(r"(error|Error|ERROR)[: ]")

MISSING, BUILDING, FAILED, INSTALLED = "missing", "building", "failed", "installed"


@dataclass(frozen=True)
class Progress:
    fraction: float                  # 0..1 of the compile
    step: int | None = None          # Ninja's step and step count; None from Make's percent
    steps: int | None = None


@dataclass(frozen=True)
class BuildState:
    status: str                      # MISSING, BUILDING, FAILED or INSTALLED
    progress: Progress | None = None
    elapsed_s: float | None = None   # since the build started
    left_s: float | None = None      # an estimate: see `time_left`
    error: str | None = None         # a failed build's last error line
    log: Path | None = None
    automatic: bool = True           # whether this app builds it when missing (`wanted`)

    def words(self) -> str:
        """For the screen: where llama.cpp stands and what to do meanwhile, never a command."""
        if self.status == INSTALLED:
            return "llama.cpp is installed."
        if self.status == BUILDING:
            where = "getting ready to compile" if self.progress is None else \
                f"step {self.progress.step} of {self.progress.steps}" \
                if self.progress.step is not None else f"{self.progress.fraction:.0%} done"
            left = "" if self.left_s is None else f", {minutes_words(self.left_s)} left"
            return (f"llama.cpp is being built for this machine ({where}{left}); you can use "
                    "the other stacks meanwhile, and it becomes choosable here when done.")
        if self.status == FAILED:
            what = f": {self.error}" if self.error else ""
            return (f"llama.cpp could not be built on this machine{what}. The app tried to "
                    f"compile {PACKAGE} {pinned_version()} for this CPU in the background, at "
                    f"low priority; the whole log is in {self.log}. The other stacks work as "
                    "usual.")
        if not self.automatic:
            return ("llama.cpp is not installed on this machine, and this copy of the app does "
                    "not compile it by itself (it runs outside its own virtual environment, or "
                    "automatic builds are off). The other stacks work as usual.")
        return ("llama.cpp is not installed on this machine yet: the app compiles it in the "
                "background once it is up (a few minutes at low priority), and it becomes "
                "choosable here when done. The other stacks work meanwhile.")


def minutes_words(seconds: float) -> str:
    """'about 3 min', 'under a minute'."""
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60)} min"


def parse_progress(log_text: str) -> Progress | None:
    """The compile's last progress line in a pip -v log: Ninja's "[n/N]" or Make's "[ p%]"."""
    steps = _NINJA_STEP.findall(log_text)
    if steps:
        step, total = (int(v) for v in steps[-1])
        return Progress(step / total if total else 0.0, step, total)
    percents = _MAKE_PERCENT.findall(log_text)
    if percents:
        return Progress(int(percents[-1]) / 100)
    return None


def time_left(elapsed_s: float, progress: Progress | None) -> float:
    """Seconds left: the time so far scaled by what is left once past MIN_FRACTION (a busy
    machine's slower pace included), else the typical build less the time so far."""
    if progress is not None and progress.fraction >= MIN_FRACTION:
        return elapsed_s * (1 - progress.fraction) / progress.fraction
    return max(TYPICAL_BUILD_S - elapsed_s, 60.0)


def pinned_version() -> str:
    match = re.search(rf"^{re.escape(PACKAGE)}==(\S+)", REQUIREMENTS.read_text(), re.MULTILINE)
    return match.group(1) if match else "?"


def installed_version() -> str | None:
    """The version importable now: looked up afresh each time (a build may have just finished;
    the import system notices a changed folder by its modification time)."""
    try:
        if importlib.util.find_spec(MODULE) is None:
            return None
        return importlib.metadata.version(PACKAGE)
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None


def _paths() -> tuple[Path, Path, Path]:
    folder = cache_dir()
    return folder / LOG_NAME, folder / LOCK_NAME, folder / RESULT_NAME


def lock_is_held(lock: Path) -> bool:
    """Whether a builder holds the lock now (a dead builder's lock is free: the OS drops it)."""
    try:
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def state(now: float | None = None) -> BuildState:
    log, lock, result_path = _paths()
    now = time.time() if now is None else now
    if lock_is_held(lock):
        result = _read_result(result_path)
        started = result.get("started", now)
        try:
            progress = parse_progress(log.read_text(errors="replace"))
        except OSError:
            progress = None
        elapsed = max(now - started, 0.0)
        return BuildState(BUILDING, progress, elapsed, time_left(elapsed, progress), log=log)
    if installed_version() is not None:
        return BuildState(INSTALLED, log=log)
    result = _read_result(result_path)
    if result.get("status") == FAILED:
        return BuildState(FAILED, error=result.get("error"), log=log)
    return BuildState(MISSING, log=log, automatic=_may_build())


def busy_words() -> str | None:
    """'llama.cpp is being built' while a build runs (for a busy-machine note), else None."""
    _log, lock, _result = _paths()
    return "llama.cpp is being built" if lock_is_held(lock) else None


def wanted() -> bool:
    """Whether this app should build llama.cpp: not installed at the pinned version, inside a
    virtual environment (never into a system Python), and not turned off."""
    return _may_build() and installed_version() != pinned_version()


def _may_build() -> bool:
    return os.environ.get(BUILD_ENV, "1") != "0" and sys.prefix != sys.base_prefix


_started_here = False


def start_background() -> bool:
    """Start one background build, once per app process, when `wanted()`; True if started.
    None starts while another holds the lock (a later rerun starts one if that build was for
    another copy of the app); the builder itself waits for the lock, should two start at once."""
    global _started_here
    if _started_here:
        return False
    if not wanted():          # installed at the pin, or never here: so for this whole process
        _started_here = True  # (spares the sidebar a package lookup on every rerun)
        return False
    if lock_is_held(_paths()[1]):
        return False
    _started_here = True
    subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "lib.core.stack_build"], cwd=REPO,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    # Until the builder holds the lock the page would say "not installed": wait for it a little.
    deadline = time.monotonic() + LOCK_WAIT_S
    while time.monotonic() < deadline and not lock_is_held(_paths()[1]):
        time.sleep(0.05)
    return True


def _last_error(log_text: str) -> str | None:
    lines = [line.strip() for line in log_text.splitlines() if _ERROR_LINE.search(line)]
    return lines[-1][:300] if lines else None


def build() -> int:
    """Install requirements-llama.txt into this Python's environment, holding the lock; the
    pip exit status. Waits for a build already running, then skips what it installed."""
    log, lock, result_path = _paths()
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if installed_version() == pinned_version():
            return 0
        started = time.time()
        result_path.write_text(json.dumps({"status": BUILDING, "started": started}))
        env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS") or CMAKE_ARGS,
               "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL")
               or str(os.cpu_count() or 1)}
        command = [sys.executable, "-m", "pip", "install", "-v", "-r", str(REQUIREMENTS)]
        with log.open("w") as out:
            out.write(f"{time.ctime(started)}: {' '.join(command)}\nCMAKE_ARGS={env['CMAKE_ARGS']}\n")
            out.flush()
            status = subprocess.call(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        finished = time.time()
        outcome = {"status": INSTALLED if status == 0 else FAILED, "started": started,
                   "finished": finished, "seconds": round(finished - started, 1),
                   "returncode": status}
        if status != 0:
            with contextlib.suppress(OSError):
                outcome["error"] = _last_error(log.read_text(errors="replace")) or \
                    f"pip stopped with status {status}"
        result_path.write_text(json.dumps(outcome))
        return status


def main(argv: list[str]) -> int:
    """`python -m lib.core.stack_build [--foreground]`: build now (the app starts it in the
    background; setup.sh in the foreground, which says where the log is and how it ended)."""
    if "--foreground" not in argv:
        return build()
    log = _paths()[0]
    if installed_version() == pinned_version():
        return 0
    if lock_is_held(_paths()[1]):
        print(f"  llama.cpp is being built in the background already: waiting for it; log: "
              f"{log}", flush=True)
    else:
        print(f"  Compiling llama.cpp ({PACKAGE} {pinned_version()}): several minutes; log: "
              f"{log}", flush=True)
    status = build()
    if status != 0:
        print(f"  llama.cpp could not be built; the end of {log}:", file=sys.stderr)
        with contextlib.suppress(OSError):
            print("\n".join(log.read_text(errors="replace").splitlines()[-25:]), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

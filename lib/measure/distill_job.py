"""Distillation started from a page: `python -m lib distill` in the background, and how far it got.

A page's button calls `start(teacher, layers)`, which starts `python -m lib.measure.distill_job
TEACHER LAYERS` in a session of its own: it holds a file lock for as long as it works and runs
`python -m lib distill` with its output in a log in the cache folder. The training itself holds
the measurement slot like any run (runs wait for it, and it waits for them). `state()` reads the
lock, the log and the last result into a `JobState` on every rerun (no torch, no Streamlit):
running (the last step, the loss, the time left the trainer itself computes), failed (the last
line of the log) or done (the student's model id). One job at a time on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.paths import cache_dir
from lib.core.stack_build import REPO, lock_is_held, minutes_words

RUNNING, FAILED, DONE, IDLE = "running", "failed", "done", "idle"
TYPICAL_S = 450.0          # 300 steps on 2 quiet cores, with loading: 418 s measured
LOCK_WAIT_S = 3.0
_STEP = re.compile(r"step (\d+)/(\d+): loss ([0-9.]+), about (\d+) s left")


@dataclass(frozen=True)
class JobState:
    status: str                      # RUNNING, FAILED, DONE or IDLE (never started here)
    teacher: str | None = None
    layers: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    left_s: float | None = None
    last_line: str = ""              # the log's last line (what it is doing, or the error)
    model_id: str | None = None      # DONE: the student's id in the catalog

    def words(self) -> str:
        """For the screen, in plain words."""
        if self.status == RUNNING:
            if self.step is None:
                return (f"Distilling a {self.layers}-layer student: {self.last_line or 'starting'} "
                        f"(the whole training takes {minutes_words(TYPICAL_S)} on a quiet "
                        "2-core PC, longer on a busy one; measurements wait meanwhile).")
            return (f"Distilling a {self.layers}-layer student: step {self.step} of "
                    f"{self.steps}, loss {self.loss:.3f}, {minutes_words(self.left_s or 0)} "
                    "left. Measurements wait until it is done.")
        if self.status == FAILED:
            return f"The last distillation stopped: {self.last_line or 'no reason given'}."
        if self.status == DONE:
            return (f"Distillation done: the student is in the model list "
                    f"({self.model_id}).")
        return ""


def _paths() -> tuple[Path, Path, Path]:
    folder = cache_dir() / "distilled"
    return folder / "distill.log", folder / "distill.lock", folder / "distill.json"


def _read_result(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _last_lines(log: Path) -> list[str]:
    try:
        with log.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - 8192, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def state() -> JobState:
    log, lock, result_path = _paths()
    result = _read_result(result_path)
    teacher, layers = result.get("teacher"), result.get("layers")
    lines = _last_lines(log)
    last = lines[-1][:300] if lines else ""
    if lock_is_held(lock):
        for line in reversed(lines):
            found = _STEP.search(line)
            if found:
                step, steps, loss, left = found.groups()
                return JobState(RUNNING, teacher, layers, int(step), int(steps), float(loss),
                                float(left), last)
        return JobState(RUNNING, teacher, layers, last_line=last)
    if result.get("status") == DONE:
        return JobState(DONE, teacher, layers, model_id=result.get("model_id"))
    if result.get("status") in (RUNNING, FAILED):     # a job that died holds no lock
        return JobState(FAILED, teacher, layers, last_line=last)
    return JobState(IDLE)


def start(teacher: str, layers: int) -> bool:
    """Start one background distillation; False when one is running already."""
    log, lock, _result = _paths()
    lock.parent.mkdir(parents=True, exist_ok=True)
    if lock_is_held(lock):
        return False
    subprocess.Popen([sys.executable, "-m", "lib.measure.distill_job", teacher, str(layers)],
                     cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + LOCK_WAIT_S
    while time.monotonic() < deadline and not lock_is_held(lock):
        time.sleep(0.05)
    return True


def run(teacher: str, layers: int) -> int:
    """Hold the lock and run `python -m lib distill`, its output in the log."""
    from lib.models.students import student_id

    log, lock, result_path = _paths()
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 1                       # another job is running
        started = time.time()
        result_path.write_text(json.dumps({"status": RUNNING, "teacher": teacher,
                                           "layers": layers, "started": started}))
        command = [sys.executable, "-m", "lib", "distill", "--model", teacher,
                   "--layers", str(layers)]
        with log.open("w") as out:
            status = subprocess.call(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        outcome = {"status": DONE if status == 0 else FAILED, "teacher": teacher,
                   "layers": layers, "started": started,
                   "seconds": round(time.time() - started, 1), "returncode": status}
        if status == 0:
            outcome["model_id"] = student_id(teacher, layers)
        with contextlib.suppress(OSError):
            result_path.write_text(json.dumps(outcome))
        return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], int(sys.argv[2])))

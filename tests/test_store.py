"""The history store: round trips, concurrent writers, a killed sweep, damaged files."""

import errno
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fakes import FakePoints, fake_runner
from lib.records import documents, saving, wording, table
from lib.core import stats
from lib.measure import sweep
from lib.measure.factors import get_factor
from lib.records import store as store_module
from lib.core.spec import RunSpec
from lib.records.store import Store, StoreError

ROOT = Path(__file__).resolve().parent.parent
BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0,
               warmup_runs=1, threads=1)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "history.sqlite3")


def _measured():
    measurement = fake_runner(BASE.replace(batch_size=2))
    return measurement, stats.summarize(measurement)


def test_run_round_trip_keeps_raw_samples_and_derived_numbers(store):
    measurement, summary = _measured()
    entry_id, problem = saving.save_run(measurement, summary, store)
    assert problem is None
    exported = store.export(entry_id)
    rebuilt = documents.measurement_from_document(exported)
    again = stats.summarize(rebuilt)
    assert rebuilt.spec == measurement.spec
    for name, dist in summary.metrics.items():
        assert again.metrics[name].values == pytest.approx(dist.values)
    listed = store.list()
    assert listed[0]["id"] == entry_id and listed[0]["kind"] == "run"


def test_export_import_export_is_identical_but_for_origin(store, tmp_path):
    measurement, summary = _measured()
    entry_id, _ = saving.save_run(measurement, summary, store)
    store.set_note(entry_id, "before class")
    first = store.export(entry_id)
    other = Store(tmp_path / "other.sqlite3")
    imported = other.import_document(json.loads(json.dumps(first)))
    second = other.export(imported)
    assert second.pop("imported_from") == measurement.environment["cpu_model"]
    assert first.pop("imported_from") is None
    assert second == first
    assert other.list()[0]["imported_from"]


def test_sweep_points_are_saved_as_they_finish(store):
    recorder = saving.SweepRecorder(BASE, ["batch"], planned=3, store=store)
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2, 4])],
                             FakePoints(), on_point=recorder.add)
    recorder.finish(result.stopped)
    exported = store.export(recorder.entry_id)
    assert exported["status"] == "complete" and len(exported["points"]) == 3
    rebuilt = documents.sweep_from_document(exported)
    for key in ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "factor_batch"):
        assert [r[key] for r in table.rows(rebuilt)] == pytest.approx(
            [r[key] for r in table.rows(result)])


def _writer(path, worker, count):
    store = Store(path)
    for index in range(count):
        store.start_sweep({"base": {"model_id": f"m{worker}", "device": "cpu"},
                           "factors": [], "planned": index})


def test_concurrent_writers_from_several_processes(tmp_path):
    path = tmp_path / "shared.sqlite3"
    workers = [multiprocessing.Process(target=_writer, args=(path, w, 15)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    assert len(Store(path).list()) == 60


@pytest.mark.slow
def test_a_killed_sweep_keeps_its_finished_points(tmp_path):
    # A real process killed with -9, on the fake backend (tests/fake_backend_cli.py: 20 ms a
    # token in real time, no model to load). Rounds visit every point; a point leaves them when
    # it has its minimum: 2 s of timed repetitions. The 64- and 96-token points have it after a
    # repetition or two each; the 2-token point needs dozens, for about 2 s more: the kill
    # lands in those.
    env = dict(os.environ, ILE_DATA_DIR=str(tmp_path),
               ILE_FAKE_BACKEND=json.dumps({"prefill_s": 0.02, "decode_s": 0.02}))
    process = subprocess.Popen(
        [sys.executable, "tests/fake_backend_cli.py", "sweep", "--factor", "output", "--values",
         "2,64,96", "--prompt-tokens", "16", "--repetitions", "1", "--min-duration", "2",
         "--warmup", "0", "--threads", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(tmp_path / "history.sqlite3")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if store.path.exists() and store.list() and store.list()[0]["points"] >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    entry = store.list()[0]
    assert entry["kind"] == "sweep" and entry["status"] == "partial"
    assert entry["points"] == 2
    rebuilt = documents.sweep_from_document(store.export(entry["id"]))
    assert sorted(p.values["output"] for p in rebuilt.points) == [64, 96]


def test_damaged_file_gives_a_clear_message_and_measuring_goes_on(tmp_path):
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    measurement, summary = _measured()
    entry_id, problem = saving.save_run(measurement, summary, Store(path))
    assert entry_id is None
    assert "damaged" in problem and str(path) in problem


def test_read_only_folder_is_explained(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    Store(folder / "history.sqlite3").list()
    os.chmod(folder, 0o500)
    os.chmod(folder / "history.sqlite3", 0o400)
    try:
        if os.geteuid() == 0:
            pytest.skip("root ignores file permissions")
        with pytest.raises(StoreError, match="writable"):
            Store(folder / "history.sqlite3").set_note(1, "x")
    finally:
        os.chmod(folder, 0o700)


def test_locked_database_is_explained(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite3"
    Store(path).list()
    monkeypatch.setattr("lib.records.store.BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            Store(path).start_sweep({"base": {"model_id": "m", "device": "cpu"}})
    finally:
        holder.rollback()
        holder.close()


def test_unknown_id_and_foreign_files_are_explained(store):
    with pytest.raises(StoreError, match="No saved run or sweep with id 42"):
        store.export(42)
    with pytest.raises(StoreError, match="not an Inference Latency Explorer export"):
        store.import_document({"hello": "world"})


def test_read_only_database_is_explained_even_as_root(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")
    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(StoreError, match="can't be written here.*ILE_DATA_DIR"):
        Store(tmp_path / "history.sqlite3").list()


def test_old_database_gains_owner_and_shared_and_still_opens(tmp_path):
    import shutil
    path = tmp_path / "history.sqlite3"
    shutil.copy(ROOT / "tests" / "fixtures" / "history-0ec4227.sqlite3", path)
    store = Store(path)
    entries = store.list()
    assert [e["id"] for e in entries] == [6, 5, 4, 3, 2, 1]
    assert all(e["owner"] is None and e["shared"] is False for e in entries)
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(entries)")}
    assert {"owner", "shared"} <= columns
    assert store.export(4)["kind"] == "sweep"                     # documents untouched
    store.set_shared(4, True)
    assert Store(path).list()[2]["shared"] is True                # and reopening is fine


def test_owners_see_their_own_and_shared_and_change_only_their_own(store):
    measurement, summary = _measured()
    mine, _ = saving.save_run(measurement, summary, store, owner="alice")
    theirs, _ = saving.save_run(measurement, summary, store, owner="bob")
    legacy, _ = saving.save_run(measurement, summary, store)
    assert [e["id"] for e in store.list(visible_to="alice")] == [mine]
    store.set_shared(theirs, True)
    assert [e["id"] for e in store.list(visible_to="alice")] == [theirs, mine]
    assert len(store.list()) == 3                                  # the host sees all
    assert not store.delete(theirs, only_owner="alice")
    assert not store.set_note(legacy, "x", only_owner="alice")
    assert store.set_note(mine, "mine", only_owner="alice")
    assert store.delete(mine, only_owner="alice")
    assert [e["id"] for e in store.list()] == [legacy, theirs]
    with pytest.raises(StoreError, match="No saved run or sweep with id 99"):
        store.set_shared(99, True)


def test_sweep_owner_and_models_come_from_its_points(store):
    recorder = saving.SweepRecorder(BASE, ["model"], planned=2, store=store, owner="alice")
    result = sweep.run_sweep(BASE, [(get_factor("model"), ["gpt2", "smollm2-360m"])],
                             FakePoints(), on_point=recorder.add)
    recorder.finish(result.stopped)
    entry = store.list()[0]
    assert entry["owner"] == "alice" and entry["factors"] == ["model"]
    assert entry["model_id"] == "smollm2-135m-instruct"           # the sidebar's, never run
    assert entry["models"] == ["gpt2", "smollm2-360m"]
    assert [e["id"] for e in store.list(model_id="gpt2")] == [entry["id"]]
    assert store.list(model_id="smollm2-135m-instruct") == []


def test_import_belongs_to_the_importer(store, tmp_path):
    measurement, summary = _measured()
    entry_id, _ = saving.save_run(measurement, summary, store, owner="alice")
    other = Store(tmp_path / "other.sqlite3")
    imported = other.import_document(store.export(entry_id), owner="bob")
    assert other.list()[0]["owner"] == "bob" and other.list()[0]["id"] == imported
    assert "owner" not in store.export(entry_id)          # an export never carries the owner


def test_entries_edited_by_hand_are_still_listed_and_labelled(store):
    entry_id, _ = saving.save_run(*_measured(), store)
    hand_edited = [
        "not JSON at all",
        json.dumps({"spec": "hello"}),
        json.dumps({"spec": {"batch_size": [1]}}),
    ]
    with sqlite3.connect(store.path) as db:
        ids = [db.execute("INSERT INTO entries (kind, created_at, model_id, device, status, "
                          "document) VALUES ('run', '2026-01-01T00:00:00Z', 'm', 'cpu', "
                          "'complete', ?)", (document,)).lastrowid for document in hand_edited]
        sweep_id = db.execute(
            "INSERT INTO entries (kind, created_at, model_id, device, status, document) VALUES "
            "('sweep', '2026-01-01T00:00:00Z', 'm', 'cpu', 'partial', ?)",
            (json.dumps({"factors": [["batch"], 5, "batch"]}),)).lastrowid
        for position, point in enumerate(['{"values": [1, 2]}', "{oops",
                                          json.dumps({"values": {"batch": [1]},
                                                      "measurement": {"spec": {"model_id": 5}}})]):
            db.execute("INSERT INTO sweep_points VALUES (?, ?, ?)", (sweep_id, position, point))
    listed = {e["id"]: e for e in store.list()}
    assert set(listed) == {entry_id, sweep_id, *ids}
    assert [listed[i]["spec"] for i in ids] == [None, None, {"batch_size": [1]}]
    assert wording.entry_label(listed[ids[2]]) == "run: m, batch [1]"
    assert listed[sweep_id]["factors"] == ["batch"] and listed[sweep_id]["models"] == ["m"]
    assert wording.entry_label(listed[sweep_id]) == "batch size sweep: [1] — m (2 skipped)"
    assert store.list(model_id="m")


def test_ids_sqlite_cannot_hold_are_simply_not_there(store):
    huge = 10 ** 20
    with pytest.raises(StoreError, match=f"No saved run or sweep with id {huge}"):
        store.export(huge)
    with pytest.raises(StoreError, match=f"No saved run or sweep with id {huge}"):
        store.set_shared(huge, True)
    assert store.delete(huge) is False and store.set_note(huge, "x") is False


# --- a damaged, busy, read-only or full history is never reported as saved (issue 10) --------

def _fill_and_damage(path: Path) -> bytes:
    """A history of several pages, then random bytes over its middle third (header intact)."""
    store = Store(path)
    measurement, summary = _measured()
    for _ in range(20):
        saving.save_run(measurement, summary, store)
    data = bytearray(path.read_bytes())
    assert len(data) >= 16 * 4096 and not Path(f"{path}-wal").exists()   # all in the file
    start, end = len(data) // 3, 2 * len(data) // 3
    data[start:end] = random.Random(1).randbytes(end - start)
    time.sleep(0.05)                       # a new modification time, even on a coarse clock
    path.write_bytes(bytes(data))
    return bytes(data)


def test_damaged_pages_are_never_reported_as_saved(tmp_path):
    path = tmp_path / "history.sqlite3"
    damaged = _fill_and_damage(path)
    measurement, summary = _measured()
    entry_id, problem = saving.save_run(measurement, summary, Store(path))
    assert entry_id is None
    assert f"The history file {path} is damaged" in problem and "move it aside" in problem
    with pytest.raises(StoreError, match="is damaged"):
        Store(path).list()
    assert path.read_bytes() == damaged                  # user data is never touched


def test_cli_says_not_saved_for_a_damaged_history(tmp_path, monkeypatch, capsys, fake_backend):
    from lib.cli import main
    monkeypatch.setenv("ILE_DATA_DIR", str(tmp_path))
    _fill_and_damage(tmp_path / "history.sqlite3")
    assert main.main(["run", "--prompt-tokens", "16", "--new-tokens", "3", "--repetitions", "1",
                     "--min-duration", "0", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "saved as #" not in err
    assert "not saved: The history file" in err and "is damaged" in err


def test_integrity_is_checked_once_per_version_of_the_file(store, monkeypatch):
    store.list()                                     # makes the file
    store.list()                                     # checks it
    checks = []
    real = store_module._quick_check
    monkeypatch.setattr(store_module, "_quick_check",
                        lambda connection: checks.append(1) or real(connection))
    store.list()
    store.list()
    assert checks == []                              # unchanged since the last check
    measurement, summary = _measured()
    saving.save_run(measurement, summary, store)    # the file changes: checked again next time
    store.list()
    assert len(checks) == 1


@pytest.fixture
def quick_busy(monkeypatch):
    """A waiting notice after 0.2 s and giving up after 0.8 s, so tests stay fast."""
    monkeypatch.setattr(store_module, "BUSY_TRY_S", 0.05)
    monkeypatch.setattr(store_module, "BUSY_NOTICE_S", 0.2)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.8)


def test_busy_limits_are_a_notice_after_2_s_and_a_bound():
    assert store_module.BUSY_NOTICE_S == 2.0
    assert 2.0 < store_module.BUSY_TIMEOUT_S <= 15.0


def _lock_exclusively(path: Path, readers_too: bool = False) -> sqlite3.Connection:
    holder = sqlite3.connect(path, check_same_thread=False)
    if readers_too:                        # a program that keeps even readers out
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE entries SET note = note")
    return holder


@pytest.mark.slow
def test_locked_database_says_it_waits_then_gives_up_unsaved(tmp_path, quick_busy):
    path = tmp_path / "history.sqlite3"
    Store(path).list()
    holder = _lock_exclusively(path)
    told = []
    started = time.monotonic()
    try:
        measurement, summary = _measured()
        entry_id, problem = saving.save_run(
            measurement, summary, Store(path),
            on_wait=lambda message: told.append((time.monotonic() - started, message)))
    finally:
        holder.rollback()
        holder.close()
    took = time.monotonic() - started
    assert entry_id is None
    assert "locked by another program" in problem and str(path) in problem
    assert 0.8 <= took < 2.5
    assert len(told) == 1 and 0.2 <= told[0][0] < 0.6
    assert "waiting for the history database (locked by another program)" in told[0][1]


@pytest.mark.slow
def test_a_lock_released_while_waiting_still_saves(tmp_path, quick_busy):
    path = tmp_path / "history.sqlite3"
    Store(path).list()
    holder = _lock_exclusively(path)
    release = threading.Timer(0.5, lambda: (holder.rollback(), holder.close()))
    release.start()
    told = []
    measurement, summary = _measured()
    entry_id, problem = saving.save_run(measurement, summary, Store(path), on_wait=told.append)
    release.join()
    assert problem is None and entry_id == 1
    assert len(told) == 1
    assert [e["id"] for e in Store(path).list()] == [1]


@pytest.mark.slow
def test_sweep_recorder_passes_the_waiting_notice_on(tmp_path, quick_busy):
    path = tmp_path / "history.sqlite3"
    Store(path).list()
    holder = _lock_exclusively(path)
    told = []
    try:
        recorder = saving.SweepRecorder(BASE, ["batch"], 2, store=Store(path, on_wait=told.append))
    finally:
        holder.rollback()
        holder.close()
    assert recorder.entry_id is None and "locked by another program" in recorder.problem
    assert told and "waiting for the history database" in told[0]


def test_read_only_file_is_named(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    path = tmp_path / "history.sqlite3"
    Store(path).list()
    os.chmod(path, 0o400)
    measurement, summary = _measured()
    _, problem = saving.save_run(measurement, summary, Store(path))
    assert f"The history file {path} is read-only" in problem


def test_read_only_folder_is_named(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        measurement, summary = _measured()
        _, problem = saving.save_run(measurement, summary, Store(folder / "history.sqlite3"))
        assert f"The history folder {folder} is read-only" in problem
        assert "ILE_DATA_DIR" in problem
    finally:
        os.chmod(folder, 0o700)


class _FullDisk(sqlite3.Connection):
    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def test_full_disk_is_named(tmp_path, monkeypatch):
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect",
                        lambda *args, **kwargs: real_connect(*args, factory=_FullDisk, **kwargs))
    measurement, summary = _measured()
    path = tmp_path / "history.sqlite3"
    entry_id, problem = saving.save_run(measurement, summary, Store(path))
    assert entry_id is None
    assert f"The disk holding {path} is full" in problem and "free some space" in problem


@pytest.mark.parametrize("free_bytes, words", [
    (4096, "is full"),                         # a journal write that hit a full disk
    (50 * 2**30, "failed to read or write it"),     # room enough: the disk itself
])
def test_a_disk_io_error_is_named_by_the_free_space(tmp_path, free_bytes, words, monkeypatch):
    """SQLite reports a full disk met while writing its journal as "disk I/O error"."""
    import shutil

    from lib.records import store_problems
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(store_problems.shutil, "disk_usage",
                        lambda folder: usage._replace(free=free_bytes))
    path = tmp_path / "history.sqlite3"
    problem = store_problems.advice(path, sqlite3.OperationalError("disk I/O error"))
    assert f"The disk holding {path} {words}" in problem and "ILE_DATA_DIR" in problem


def test_no_space_for_the_folder_is_named(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "mkdir", no_space)
    with pytest.raises(StoreError, match="is full"):
        Store(tmp_path / "new" / "history.sqlite3").list()

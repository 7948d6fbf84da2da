"""The CLI's history subcommands in-process (fast): labels in `history`, `share`, `delete`, and
`export` of ids that aren't there or entries that can't be opened (`import` is in
test_imports.py)."""

import re
import sqlite3

import pytest

from fakes import FakePoints, fake_runner
from lib.cli import main as cli_module
from lib.records import saving
from lib.core import stats
from lib.measure import sweep
from lib.measure.factors import get_factor
from lib.core.spec import RunSpec
from lib.records.store import Store


def test_share_marks_an_entry_and_history_labels_it(capsys):
    base = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)
    recorder = saving.SweepRecorder(base, ["batch"], 2, store=Store())
    sweep.run_sweep(base, [(get_factor("batch"), [1, 8])], FakePoints(),
                    on_point=recorder.add)
    recorder.finish(False)
    assert cli_module.main(["share", str(recorder.entry_id)]) == 0
    assert "is shared with the class" in capsys.readouterr().out
    assert cli_module.main(["history"]) == 0
    line = capsys.readouterr().out.strip()
    assert "batch size sweep: 1, 8 — smollm2-135m-instruct  shared" in line
    assert re.search(r"cpu {2,}complete {2,}batch size sweep", line)   # columns never touch
    assert cli_module.main(["share", str(recorder.entry_id), "--off"]) == 0
    assert Store().list()[0]["shared"] is False
    assert cli_module.main(["share", "4242"]) == 2
    assert "No saved run or sweep with id 4242" in capsys.readouterr().err


def saved_run(store):
    measurement = fake_runner(RunSpec(prompt_tokens=16, new_tokens=3, repetitions=2,
                                      min_duration_s=0.0, threads=1))
    return saving.save_run(measurement, stats.summarize(measurement), store)[0]


def test_delete_removes_an_entry_and_explains_an_unknown_id(capsys):
    store = Store()
    entry_id = saved_run(store)
    assert cli_module.main(["delete", str(entry_id)]) == 0
    assert capsys.readouterr().out.strip() == f"deleted #{entry_id}"
    assert store.list() == []
    for unknown in (str(entry_id), "99999999999999999999"):
        assert cli_module.main(["delete", unknown]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: No saved run or sweep with id {unknown}: `python -m lib history` "
                       "lists them."]
    with pytest.raises(SystemExit) as refused:
        cli_module.main(["delete", "-5"])
    assert refused.value.code == 2
    assert "'-5' is not an id that `history` shows" in capsys.readouterr().err


def test_huge_ids_are_not_there_rather_than_an_overflow(capsys):
    for command in (["export", "99999999999999999999"], ["export", "99999999999999999999",
                                                         "--csv"],
                    ["share", "99999999999999999999"]):
        assert cli_module.main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No saved run or sweep with id 99999999999999999999" in err[0]


def test_a_damaged_entry_exports_a_clear_message_not_a_traceback(capsys):
    store = Store()
    good = store.export(saved_run(store))
    damaged = store.save_run({k: v for k, v in good.items() if k != "repetitions"})
    with sqlite3.connect(store.path) as db:
        not_json = db.execute(
            "INSERT INTO entries (kind, created_at, model_id, device, status, document) "
            "VALUES ('sweep', '2026-01-01T00:00:00Z', 'x', 'cpu', 'complete', '{oops')").lastrowid
    for entry_id, reason in ((damaged, "repetitions: missing"),
                             (not_json, "what it saved is not JSON")):
        for flag in ("--json", "--csv"):
            assert cli_module.main(["export", str(entry_id), flag]) == 2
            out, err = capsys.readouterr()
            assert not out
            [line] = err.strip().splitlines()
            assert line.startswith(f"error: #{entry_id} can't be opened: {reason}")
            assert line.endswith(f". `python -m lib delete {entry_id}` removes it.")
    assert cli_module.main(["history"]) == 0                 # the list still shows them all
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert cli_module.main(["delete", str(not_json)]) == 0


def test_an_estimate_is_listed_on_its_hardware_profile_and_device_count(capsys):
    """No device of this machine ran an estimate: History names the profile and how many of
    its devices ('h100-sxm x 8'), marked estimated, and filters on that."""
    from lib.measure import runner

    store = Store()
    measurement = runner.run(RunSpec(model_id="gpt2", dtype="bfloat16", new_tokens=2,
                                     hardware="h100-sxm", gpus=8))
    run_id = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    base = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)
    devices = saving.SweepRecorder(base, ["device"], 2, store=store)
    sweep.run_sweep(base, [(get_factor("device"), ["cpu", "h200"])], FakePoints(),
                    on_point=devices.add)
    devices.finish(False)
    on_h100 = base.replace(hardware="h100-sxm", gpus=2)
    batches = saving.SweepRecorder(on_h100, ["batch"], 2, store=store)
    sweep.run_sweep(on_h100, [(get_factor("batch"), [1, 8])], FakePoints(),
                    on_point=batches.add)
    batches.finish(False)
    listed = {e["id"]: e["device"] for e in store.list()}
    assert listed[run_id] == "h100-sxm x 8"
    assert listed[devices.entry_id] == "cpu, h200 x 1"
    assert listed[batches.entry_id] == "h100-sxm x 2"
    assert [e["id"] for e in store.list(device="h100-sxm x 8")] == [run_id]
    assert store.list(device="cpu") == []
    assert cli_module.main(["history"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith(f"#{run_id} "))
    assert "  h100-sxm x 8 (estimated)  complete" in line

"""The CLI's history subcommands in-process (fast): labels in `history`, and `share`."""

from fakes import FakePoints, fake_runner
from lib import cli as cli_module
from lib import history, sweep
from lib.spec import RunSpec
from lib.store import Store


def test_share_marks_an_entry_and_history_labels_it(capsys):
    base = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)
    recorder = history.SweepRecorder(base, ["batch"], 2, store=Store())
    sweep.run_sweep(base, [(sweep.get_factor("batch"), [1, 8])], FakePoints(),
                    on_point=recorder.add)
    recorder.finish(False)
    assert cli_module.main(["share", str(recorder.entry_id)]) == 0
    assert "is shared with the class" in capsys.readouterr().out
    assert cli_module.main(["history"]) == 0
    line = capsys.readouterr().out.strip()
    assert "batch size sweep: 1, 8 — smollm2-135m-instruct  shared" in line
    assert cli_module.main(["share", str(recorder.entry_id), "--off"]) == 0
    assert Store().list()[0]["shared"] is False
    assert cli_module.main(["share", "4242"]) == 2
    assert "No saved run or sweep with id 4242" in capsys.readouterr().err

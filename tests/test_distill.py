"""Distillation (lib.measure.distill): the student's layers, its provenance, the CLI's checks,
and one real step on the default model (slow)."""

from __future__ import annotations

import json

import pytest

from fakes import run_cli
from lib.measure import distill
from lib.models.files import teacher_of


def test_the_student_keeps_layers_spread_from_first_to_last():
    assert distill.spread_layers(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert distill.spread_layers(30, 2) == [0, 29] and distill.spread_layers(30, 1) == [0]
    assert distill.spread_layers(4, 9) == [0, 1, 2, 3]


def test_a_folder_says_whose_student_it_is(tmp_path):
    assert teacher_of(tmp_path) is None and teacher_of(None) is None
    (tmp_path / distill.PROVENANCE_FILE).write_text(json.dumps({"teacher":
                                                                "smollm2-135m-instruct"}))
    assert teacher_of(tmp_path) == "smollm2-135m-instruct"
    (tmp_path / distill.PROVENANCE_FILE).write_text("[1, 2]")             # damaged: no teacher
    assert teacher_of(tmp_path) is None


@pytest.mark.parametrize("argv, words", [
    (["distill", "--layers", "0"], "is not a count"),
    (["distill", "--minutes", "nan"], "is not a time budget"),
    (["distill", "--model", "gpt2", "--steps", "1"], "random weights"),
])
def test_the_cli_refuses_what_cannot_be_distilled(argv, words, capsys):
    status, out, err = run_cli(argv, capsys)
    assert status == 2 and words in err and "Traceback" not in err


@pytest.mark.slow
def test_one_step_saves_a_student_that_runs_and_is_judged_against_its_teacher(tmp_path,
                                                                            monkeypatch):
    from lib.core.spec import RunSpec
    from lib.measure import backends, quality
    from lib.models import catalog, loading

    said = []
    provenance = distill.distill("smollm2-135m-instruct", 10, 1, 120, 2, said.append)
    folder = provenance["folder"]
    assert provenance["steps"] == 1 and provenance["loss_last"] > 0
    assert teacher_of(folder) == "smollm2-135m-instruct"
    assert any(line.startswith("step 1/1: loss") for line in said)
    entry = catalog.get_entry(folder)
    student = loading.load(entry, "cpu", "float32", "transformers")
    assert len(student.model.model.layers) == 10
    spec = RunSpec(model_id=folder, prompt_tokens=16, new_tokens=2, quality="on")
    session = backends.get("transformers").session(student, spec)
    measured = quality.measure(backends.get("transformers"), session, student, spec)
    assert measured.reference.startswith("its teacher smollm2-135m-instruct")
    assert 0 <= measured.agreement < 1

"""Distillation (lib.measure.distill): the student's layers, its provenance, the CLI's checks,
and one real step on the default model (slow)."""

from __future__ import annotations

import json

import pytest

from fakes import make_student, run_cli
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


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_a_student_distilled_here_is_a_model_in_the_list(own_cache):
    from lib.models import catalog

    assert catalog.students() == []
    with pytest.raises(Exception, match="python -m lib distill --model smollm2-135m-instruct "
                                        "--layers 2"):
        catalog.get_entry("smollm2-135m-instruct-distilled-2")
    make_student(layers=2)
    make_student(layers=4, provenance=False)                      # training not finished: no file
    make_student(layers=6, provenance={"teacher": "gpt2"})        # someone else's
    [entry] = catalog.students("smollm2-135m-instruct")
    assert entry.model_id == "smollm2-135m-instruct-distilled-2"
    assert entry.weights == catalog.TRAINED and "5 training steps in 12 s" in entry.description
    assert catalog.get_entry(entry.model_id) == entry == catalog.listed_entry(entry.model_id)
    assert catalog.listed_ids()[-1] == entry.model_id
    assert catalog.listed_entry("/etc") is None                # a path is the user's own


def test_the_draft_is_the_student_or_a_refusal_that_says_how_to_make_one(own_cache, capsys):
    from lib.core.errors import UnsupportedError
    from lib.measure import speculative

    with pytest.raises(UnsupportedError, match="train one with python -m lib distill"):
        speculative.draft_entry("smollm2-135m-instruct")
    with pytest.raises(UnsupportedError, match="choose prompt-lookup or early-exit"):
        speculative.draft_entry("gpt2")
    status, out, err = run_cli(["run", "--speculative", "draft", "--prompt-tokens", "16"],
                               capsys)
    assert status == 2 and "train one with python -m lib distill" in err
    make_student(layers=8)
    make_student(layers=3)
    assert speculative.draft_entry("smollm2-135m-instruct").model_id.endswith("-distilled-3")


def test_a_distillation_started_from_a_page_reports_its_steps(own_cache):
    import fcntl

    from lib.measure import distill_job

    assert distill_job.state().status == distill_job.IDLE
    log, lock, result = distill_job._paths()
    lock.parent.mkdir(parents=True)
    result.write_text(json.dumps({"status": "running", "teacher": "smollm2-135m-instruct",
                                  "layers": 10}))
    log.write_text("Loading the teacher, SmolLM2-135M-Instruct…\n")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        job = distill_job.state()
        assert job.status == distill_job.RUNNING and job.step is None
        assert "Loading the teacher" in job.words()
        log.write_text("step 1/300: loss 9.100, about 500 s left\n"
                       "step 2/300: loss 8.250, about 420 s left\n")
        job = distill_job.state()
        assert (job.step, job.steps, job.loss, job.left_s) == (2, 300, 8.25, 420.0)
        assert "step 2 of 300, loss 8.250, about 7 min left" in job.words()
        assert distill_job.start("smollm2-135m-instruct", 10) is False     # one at a time
    log.write_text("error: the model is too big\n")
    job = distill_job.state()                       # the lock went with the process
    assert job.status == distill_job.FAILED and "too big" in job.words()
    result.write_text(json.dumps({"status": "done", "teacher": "smollm2-135m-instruct",
                                  "layers": 10, "model_id": "smollm2-135m-instruct-distilled-10"}))
    assert "smollm2-135m-instruct-distilled-10" in distill_job.state().words()


@pytest.mark.slow
def test_one_step_saves_a_student_that_runs_is_judged_against_its_teacher_and_drafts(
        default_model):
    import shutil

    from lib.core.spec import RunSpec
    from lib.core.timing import DeviceClock
    from lib.measure import backends, quality
    from lib.measure.backends.transformers_lm import GenerateSession
    from lib.models import catalog, loading

    said = []
    provenance = distill.distill("smollm2-135m-instruct", 10, 1, 120, 2, said.append)
    folder = provenance["folder"]
    try:
        assert provenance["steps"] == 1 and provenance["loss_last"] > 0
        assert teacher_of(folder) == "smollm2-135m-instruct"
        assert any(line.startswith("step 1/1: loss") for line in said)
        entry = catalog.get_entry(provenance["model_id"])
        assert entry.local_path == folder
        student = loading.load(entry, "cpu", "float32", "transformers")
        assert len(student.model.model.layers) == 10
        spec = RunSpec(model_id=entry.model_id, prompt_tokens=16, new_tokens=2, quality="on")
        session = backends.get("transformers").session(student, spec)
        measured = quality.measure(backends.get("transformers"), session, student, spec)
        assert measured.reference.startswith("its teacher smollm2-135m-instruct")
        assert 0 <= measured.agreement < 1
        # The student as the teacher's draft: the teacher's own tokens, whatever it guesses.
        drafted = RunSpec(prompt_tokens=16, new_tokens=6, threads=2, speculative="draft")
        need = backends.get("transformers").run_need(drafted, weights_loaded=True)
        assert need.weights_bytes > 0                    # the draft's weights, beside the model
        session = GenerateSession(default_model, drafted)
        timing = session.run(DeviceClock("cpu"), timed=True)
        assert len(timing.token_times_s) == 6
        report = session.speculative_report()
        assert report["tokens_identical"] is True and report["draft"] == entry.model_id
        assert report["proposed"] > 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)       # other tests' model lists stay as they were

"""Lessons (lib.lessons): the files, the answers computed from points, the CLI on the fake
backend with declared latencies (exact), progress, handouts."""

from __future__ import annotations

import json

import pytest

from fakes import run_cli
from lib.lessons import answer as answers
from lib.lessons import book, progress

CHAPTERS = {"What latency is", "Prompt length and prefill", "Output length and decode",
            "Batch size", "Model size and architecture", "Number formats and quantization",
            "Software stacks and compilers", "Hardware", "Memory and the KV cache",
            "Tail latency", "Pruning, early exit, distillation", "Speculative decoding"}


def test_the_path_covers_the_chapters_in_a_course_s_order():
    lessons = book.lessons()
    assert len(lessons) >= 10 and {lesson.chapter for lesson in lessons} == CHAPTERS
    assert [lesson.order for lesson in lessons] == sorted(lesson.order for lesson in lessons)
    assert lessons[0].id == "latency"


def _document(**changes):
    document = {"id": "x", "order": 1, "chapter": "c", "title": "t", "question": "q?",
                "why": "w", "prediction": {"choices": ["less", "same", "more"]},
                "measurement": {"factor": "batch", "values": [1, 8], "metric": "tpot_s",
                                "thresholds": [0.9, 1.1]}}
    for path, value in changes.items():
        where = document
        *parents, last = path.split(".")
        for parent in parents:
            where = where[parent]
        where[last] = value
    return document


@pytest.mark.parametrize("changes, words", [
    ({"measurement.thresholds": [1.1]}, "3 choices need 2 thresholds"),
    ({"measurement.thresholds": [1.1, 0.9]}, "rising"),
    ({"measurement.factor": "colour"}, "not one of"),
    ({"measurement.metric": "speed"}, "not a column"),
    ({"measurement.values": [1]}, "needs two values"),
    ({"measurement.settings": {"batch_size": 0}}, "can't run"),
    ({"measurement.settings": {"flavour": 1}}, "'flavour' is not a setting"),
    ({"measurement.compare": "metrics"}, "needs versus"),
    ({"question": 3}, "question is missing or not a str"),
])
def test_a_lesson_file_with_a_mistake_says_which_field(changes, words):
    with pytest.raises(book.LessonError, match=words):
        book.check(_document(**changes), "mine.toml")
    assert book.check(_document()).choice_for(1.0) == 1


def _row(value, low=None, high=None, batch=1, noisy=False, **more):
    row = {"factor_batch": batch, "batch_size": batch, "status": "measured", "provenance": "measured",
           "tpot_s": value, "tpot_s_p10": low, "tpot_s_p90": high, "tpot_s_min": low,
           "tpot_s_max": high, "noisy": noisy, "skipped_reason": ""}
    row.update(more)
    return row


def test_the_answer_is_the_measured_range_or_says_it_cannot_tell():
    lesson = book.check(_document())
    apart = answers.answer(lesson, [_row(0.050, 0.049, 0.051), _row(0.080, 0.078, 0.082, 8)])
    assert apart.trusted and apart.choice == 2 and apart.measured == pytest.approx(1.6)
    assert "went from 50 ms (batch size 1) to 80 ms (batch size 8), 1.60x" in apart.text
    assert apart.verdict(lesson, 2).endswith("Measured: more. Right.")
    assert apart.verdict(lesson, 0) == "You predicted: less. Measured: more."
    overlap = answers.answer(lesson, [_row(0.050, 0.040, 0.070), _row(0.060, 0.045, 0.075, 8)])
    assert not overlap.trusted and overlap.choice is None
    assert "within the noise (their p10–p90 spreads overlap): measure again" in overlap.text
    assert "can't tell yet" in overlap.verdict(lesson, 0)
    noisy = answers.answer(lesson, [_row(0.050, 0.040, 0.070, noisy=True),
                                    _row(0.052, 0.045, 0.075, 8)])
    assert not noisy.trusted
    skipped = answers.answer(lesson, [_row(0.050, 0.049, 0.051),
                                      _row(None, batch=8, status="skipped",
                                           skipped_reason="Too big.")])
    assert not skipped.trusted and "Too big." in skipped.text


def test_two_metrics_of_one_point_and_a_lone_value_answer_too():
    lesson = book.check(_document(**{"measurement.compare": "metrics",
                                     "measurement.metric": "ttft_s",
                                     "measurement.versus": "tpot_s",
                                     "measurement.values": [256]}))
    found = answers.answer(lesson, [_row(0.05, 0.049, 0.051, ttft_s=0.4)])
    assert found.choice == 2 and found.measured == pytest.approx(8.0)
    valued = book.check(_document(**{"measurement.compare": "value",
                                     "measurement.metric": "quality_agreement",
                                     "measurement.thresholds": [0.5, 0.95]}))
    found = answers.answer(valued, [_row(0.05, batch=1, quality_agreement=1.0),
                                    _row(0.05, batch=8, quality_agreement=0.38)])
    assert found.choice == 0 and "agreement with the original model on next words 38%" \
        in found.text


def test_the_cli_lists_the_lessons_with_their_time_on_this_machine(capsys):
    status, out, err = run_cli(["lessons", "--json"], capsys)
    assert status == 0, err
    listed = json.loads(out)
    assert len(listed) >= 10
    for lesson in listed:
        assert lesson["question"].endswith("?") and len(lesson["prediction"]["choices"]) >= 2
        assert 0 < lesson["estimated_s"] <= 90, lesson["id"]


def test_a_lesson_taken_headless_answers_from_its_points(fake_backend, capsys):
    fake_backend.decode_s = lambda spec: 0.05 * (1 + 0.2 * (spec.batch_size - 1))
    status, out, err = run_cli(["lesson", "batch-size", "--json", "--predict", "1"], capsys)
    assert status == 0, err
    taken = json.loads(out)
    tpots = [point["tpot_s"] for point in taken["points"]]
    assert tpots == pytest.approx([0.05, 0.05 * 2.4])            # declared: exact
    assert taken["answer"]["measured"] == pytest.approx(2.4)
    assert taken["answer"]["choice"] == "2 to 5 times slower"
    assert taken["prediction"]["verdict"] == ("You predicted: less than 2 times slower. "
                                              "Measured: 2 to 5 times slower.")
    assert "went from 50 ms (batch size 1) to 120 ms (batch size 8), 2.40x. Meanwhile decode " \
        "throughput went from 20.0/s to 66.7/s." in taken["answer"]["text"]
    assert taken["why"].startswith("A decode step reads every weight")
    assert taken["saved_id"] is not None
    status, out, err = run_cli(["lesson", "batch-size", "--predict", "9"], capsys)
    assert status == 2 and "--predict is a choice's number, from 1 to 3" in err
    status, out, err = run_cli(["lesson", "nonsense"], capsys)
    assert status == 2 and "No lesson 'nonsense'" in err


def test_progress_keeps_each_visitor_s_predictions_and_counts_the_room():
    progress.predict("a", "batch-size", 0)
    progress.predict("b", "batch-size", 2)
    progress.predict("c", "batch-size", 2)
    progress.answered("a", "batch-size", 1)
    assert progress.of("a") == {"batch-size": (0, 1)}
    progress.predict("a", "batch-size", 1)              # predicting again clears the answer
    assert progress.of("a") == {"batch-size": (1, None)}
    assert progress.class_counts("batch-size", 3) == [0, 1, 2]
    assert progress.class_counts("latency", 3) == [0, 0, 0]


def test_a_handout_is_a_pdf_with_the_lesson_on_it():
    from lib.lessons import handouts

    lesson = book.get("batch-size")
    rows = [_row(0.050, 0.049, 0.051), _row(0.080, 0.078, 0.082, 8)]
    pdf = handouts.lesson_pdf(lesson, rows, 0, [1, 2, 0])
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    whole = handouts.path_pdf([(lesson, rows, 0)], [book.get("latency")])
    assert whole.startswith(b"%PDF") and len(whole) > len(pdf)
    assert handouts.plain("TTFT – 3× “fast” ✓") == "TTFT - 3x \"fast\" v"


def test_the_readme_s_glossary_is_the_app_s():
    from pathlib import Path

    from lib.core import glossary

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert glossary.markdown_section() in readme
    assert [term for _, _, term in glossary.find("The KV cache and the cache; TTFT, p99.")] \
        == ["KV cache", "TTFT", "p99"]


def test_a_number_on_a_border_or_a_noisy_point_s_spread_across_one_is_no_answer():
    lesson = book.check(_document(**{"measurement.compare": "metrics",
                                     "measurement.metric": "ttft_s",
                                     "measurement.versus": "tpot_s",
                                     "measurement.values": [256]}))
    border = answers.answer(lesson, [_row(0.05, 0.049, 0.051, ttft_s=0.0535)])   # 1.07 ~ 1.1
    assert not border.trusted and "on the border between \"same\" and \"more\"" in border.text
    band = dict(ttft_s_p10=0.30, ttft_s_p90=0.50, ttft_s_min=0.30, ttft_s_max=0.50)
    clear = answers.answer(lesson, [_row(0.05, 0.049, 0.051, noisy=True, ttft_s=0.4, **band)])
    assert clear.trusted and clear.choice == 2 and "all of its spread gives the same" in \
        clear.text
    wide = dict(ttft_s_p10=0.03, ttft_s_p90=0.50, ttft_s_min=0.03, ttft_s_max=0.50)
    unsure = answers.answer(lesson, [_row(0.05, 0.049, 0.051, noisy=True, ttft_s=0.4, **wide)])
    assert not unsure.trusted and "reaches into another answer" in unsure.text

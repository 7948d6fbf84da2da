"""lib.records.export.export_file_name: downloads say what they hold, in safe characters."""

import datetime
import re

from lib.records.export import export_file_name
from lib.core.spec import RunSpec


def test_names_say_kind_factor_model_and_date():
    assert export_file_name("sweep", ["smollm2-135m-instruct"], "csv", ["batch"],
                            "2026-11-30T10:11:12Z") == \
        "ile-sweep-batch-smollm2-135m-instruct-2026-11-30.csv"
    assert export_file_name("run", ["gpt2"], "json", when=datetime.date(2026, 11, 30)) == \
        "ile-run-gpt2-2026-11-30.json"
    assert export_file_name("sweep", ["gpt2", "smollm2-360m", "qwen2.5-0.5b", "a", "b"], "csv",
                            ["model"], "2026-11-30") == \
        "ile-sweep-model-gpt2-smollm2-360m-qwen2.5-0.5b-and-2-more-2026-11-30.csv"


def test_paths_and_odd_characters_are_made_safe():
    name = export_file_name("run", ["/home/Ann Smith/../models/My Model v2.gguf"], "json",
                            when="2026-11-30")
    assert name == "ile-run-my-model-v2.gguf-2026-11-30.json"
    for model in ("org/Name", "a\\b:c*?", "..", "模型"):
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*\.json",
                            export_file_name("run", [model], "json", when="2026-11-30"))


def test_cards_follow_the_one_percentile_gate():
    from fakes import measure
    from lib.records import export
    from lib.core import stats
    from lib.core.spec import RunSpec

    few = measure(RunSpec(prompt_tokens=16, new_tokens=4, repetitions=3, min_duration_s=0.0,
                          threads=1), prefill_s=[0.1, 0.2, 0.3, 0.4])
    cards = {c["label"]: c for c in export.metric_cards(few, stats.summarize(few))}
    # Warm-up took 0.1 s; the timed ones 0.2, 0.3, 0.4: too few for p10/p90, so the range.
    assert cards["Time to first token (TTFT)"]["spread"] == "200.0 ms – 400.0 ms (range, n=3)"
    many = measure(RunSpec(prompt_tokens=16, new_tokens=4, repetitions=10, min_duration_s=0.0,
                           threads=1), prefill_s=[0.1 * k for k in range(1, 12)])
    cards = {c["label"]: c for c in export.metric_cards(many, stats.summarize(many))}
    assert cards["Time to first token (TTFT)"]["spread"].endswith("(p10–p90, n=10)")


def test_a_build_time_is_told_only_by_the_run_that_built_the_file():
    """The Playground's model note: a stack's converted file built while loading is named with
    its build time; a later run on the model already in memory doesn't claim it built it."""
    import dataclasses

    from fakes import fake_runner
    from lib.ui.running import _model_note
    measurement = dataclasses.replace(fake_runner(RunSpec(repetitions=1, min_duration_s=0.0)),
                                      build_s=1.9)
    assert "built in 1.9 s" in _model_note(measurement, was_loaded=False)
    later = _model_note(measurement, was_loaded=True)
    assert "already in memory" in later and "built" not in later

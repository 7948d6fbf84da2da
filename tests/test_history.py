"""lib.records.documents's words: entry labels, settings differences and what changed since a result."""

import pytest

from lib.records import documents, saving, wording
from lib.core.spec import RunSpec


def entry(**fields):
    base = {"kind": "sweep", "model_id": "smollm2-135m-instruct", "factors": [],
            "point_values": [], "models": ["smollm2-135m-instruct"], "skipped": 0, "spec": None}
    return {**base, **fields}


def test_sweep_labels_name_factor_values_and_models_run():
    assert wording.entry_label(entry(factors=["batch"],
                                     point_values=[{"batch": 1}, {"batch": 8}])) == \
        "batch size sweep: 1, 8 — smollm2-135m-instruct"
    assert wording.entry_label(entry(factors=["model"], models=["gpt2", "smollm2-360m"],
                                     point_values=[{"model": "gpt2"},
                                                   {"model": "smollm2-360m"}])) == \
        "model sweep: gpt2, smollm2-360m"
    two = entry(factors=["batch", "output"], skipped=1,
                point_values=[{"batch": 1, "output": 8}, {"batch": 1, "output": 16},
                              {"batch": 2, "output": 8}])
    assert wording.entry_label(two) == \
        "batch size × output length (tokens) sweep: 1, 2 × 8, 16 — smollm2-135m-instruct " \
        "(1 skipped)"
    assert wording.entry_label(entry(factors=["prompt"])) == \
        "prompt length (tokens) sweep: no points yet — smollm2-135m-instruct"


def test_run_label_names_model_and_key_settings():
    spec = RunSpec(model_id="gpt2", batch_size=2, prompt_tokens=16, new_tokens=5,
                   attention="eager").to_dict()
    assert wording.entry_label({"kind": "run", "model_id": "gpt2", "spec": spec}) == \
        "run: gpt2, batch 2, prompt 16, output 5, float32, attention eager"


def test_settings_differences_and_changes():
    a, b = RunSpec(batch_size=1), RunSpec(batch_size=4, dtype="bfloat16")
    same, differing = wording.settings_differences([a.to_dict(), b.to_dict()])
    assert differing == ["dtype", "batch_size"]
    assert same["prompt_tokens"] == 64 and "batch_size" not in same
    assert wording.spec_changes(a, b) == ["Number format (dtype) float32, now bfloat16",
                                          "Batch size 1, now 4"]
    assert wording.sweep_changes(a, [("batch", [1, 2])], b, [("batch", [1, 2])]) == \
        ["Number format (dtype) float32, now bfloat16"]
    assert wording.sweep_changes(a, [("batch", [1, 2])], a, [("batch", [1, 4])]) == \
        ["values of batch size 1, 2, now 1, 4"]


def test_open_entry_names_what_is_wrong_and_never_raises_anything_else():
    from lib.records.store import DamagedEntryError

    sweep_document = {"kind": "sweep", "base": RunSpec().to_dict(), "factors": ["batch"],
                      "points": [{"values": {"batch": 1}, "measurement": {
                          "spec": RunSpec().to_dict(),
                          "repetitions": [{"token_offsets_s": [0.1]}] * 3 + [{}]}}]}
    with pytest.raises(DamagedEntryError, match=r"^#7 can't be opened: points\[0\]\.measurement"
                                                r"\.repetitions\[3\]\.token_offsets_s: missing$"):
        documents.open_entry(sweep_document, 7)
    with pytest.raises(DamagedEntryError, match="^It can't be opened: kind: missing"):
        documents.open_entry({"spec": {}})
    opened = documents.open_entry({**sweep_document, "points": []})
    assert opened.kind == "sweep" and opened.rows == [] and opened.csv == ""


def test_estimates_are_listed_exported_and_named_as_estimates():
    from fakes import fake_runner
    from lib.measure import runner
    from lib.core import stats
    from lib.records.store import Store

    store = Store()
    estimate = runner.run(RunSpec(model_id="gpt2", hardware="h200", gpus=2, new_tokens=3))
    estimate_id, _ = saving.save_run(estimate, stats.summarize(estimate), store)
    measured = fake_runner(RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1,
                                   min_duration_s=0.0, threads=1))
    measured_id, _ = saving.save_run(measured, stats.summarize(measured), store)
    # A sweep mixing this machine's measurements with a profile's estimates.
    sweep_id = store.start_sweep(documents.sweep_document(measured.spec, ["batch"], 2))
    for position, point in enumerate((measured, estimate)):
        store.add_sweep_point(sweep_id, position, {
            "values": {"batch": position + 1},
            "measurement": documents.run_document(point, stats.summarize(point))})
    empty_estimate_sweep = store.start_sweep(documents.sweep_document(
        RunSpec(hardware="tpu-v6e"), ["batch"], 2))
    listed = {e["id"]: e for e in store.list()}
    assert [listed[i]["provenance"] for i in (estimate_id, measured_id, sweep_id,
                                              empty_estimate_sweep)] == \
        ["estimated", "measured", "measured and estimated", "estimated"]
    assert [wording.provenance_mark(listed[i]) for i in (estimate_id, measured_id, sweep_id)] \
        == [" (estimate)", "", " (partly estimated)"]
    exported = store.export(estimate_id)
    assert exported["provenance"]["kind"] == "estimated"
    assert exported["provenance"]["backend"] == "estimator"
    assert wording.estimate_words(documents.open_entry(exported)) == \
        "ESTIMATE (not measured) from a model of NVIDIA H200 SXM 141GB x 2"
    assert wording.estimate_words(documents.open_entry(store.export(measured_id))) is None
    assert wording.estimate_words(documents.open_entry(store.export(sweep_id))) == \
        "PARTLY ESTIMATED: 1 of 2 points come from a model of NVIDIA H200 SXM 141GB x 2, " \
        "not a measurement"
    assert wording.hardware_words("this", 1) == "this machine (its measured ceilings) x 1"
    assert wording.hardware_words("h900", 4) == "h900 x 4"      # saved by a newer version


def test_a_reopened_sweep_lists_its_points_in_the_grids_order_not_the_finishing_order():
    from fakes import FakePoints
    from lib.measure import sweep
    from lib.measure.factors import get_factor
    from lib.records.documents import point_document, sweep_from_document
    base = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=2, min_duration_s=0.0, threads=1)
    result = sweep.run_sweep(base, [(get_factor("batch"), [1, 2, 4])], FakePoints())
    documents = [point_document(point) for point in result.points]
    document = {"base": base.to_dict(), "factors": ["batch"], "points": documents[::-1]}
    reopened = sweep_from_document(document)
    assert [p.values["batch"] for p in reopened.points] == [1, 2, 4]
    older = {**document, "points": [{k: v for k, v in d.items() if k != "index"}
                                    for d in documents[::-1]]}      # saved before `index`
    assert [p.values["batch"] for p in sweep_from_document(older).points] == [4, 2, 1]


def test_a_stack_sweep_label_names_stacks_in_words_in_the_order_chosen(tmp_path):
    from lib.records.store import Store

    store = Store(tmp_path / "documents.sqlite3")
    sweep_id = store.start_sweep({"base": {"model_id": "smollm2-135m-instruct", "device": "cpu"},
                                  "factors": ["stack"]})
    chosen = ["transformers", "llama.cpp", "onnxruntime"]
    # Saved as they finished: the skipped ONNX Runtime point first.
    for position, index in enumerate([2, 0, 1]):
        store.add_sweep_point(sweep_id, position, {"values": {"stack": chosen[index]},
                                                   "index": index})
    [listed] = store.list()
    assert wording.entry_label(listed).startswith(
        "software stack sweep: transformers, llama.cpp, ONNX Runtime")
    assert wording.entry_label(entry(factors=["batch"], stack="onnxruntime")).endswith(
        "on ONNX Runtime")
    assert wording.run_settings_text({"model_id": "m", "dtype": "q4_k_m", "stack": "llama.cpp"}) \
        == "m, Q4_K_M, on llama.cpp"


def test_a_sweep_saved_under_a_factors_old_name_opens_under_its_new_one():
    from lib.records.documents import sweep_from_document
    document = {"base": RunSpec().to_dict(), "factors": ["prompt"],
                "points": [{"values": {"prompt": 16}, "index": 0}]}
    reopened = sweep_from_document(document)
    assert reopened.factors == ["prompt_tokens"]
    assert [p.values for p in reopened.points] == [{"prompt_tokens": 16}]
    assert wording.entry_label(entry(factors=["prompt"], point_values=[{"prompt": 16}])) == \
        "prompt length (tokens) sweep: 16 — smollm2-135m-instruct"

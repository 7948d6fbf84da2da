"""lib.records.imports: an export from elsewhere is checked whole before anything is stored, and what is
stored opens. The CLI's `import` is driven in-process (lib.cli.main.main), so every hostile file is
a fast test: exit 2, one line on stderr, no traceback, no entry."""

import copy
import json
import os

import pytest

from fakes import FakePoints, fake_runner
from lib.cli import main
from lib.records import documents, saving, imports
from lib.core import stats
from lib.measure import sweep
from lib.measure.factors import get_factor
from lib.core.spec import RunSpec
from lib.records.store import EXPORT_FORMAT, Store

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)


@pytest.fixture
def run_export():
    """A run exported by this version (saved to a throwaway store, then taken out again)."""
    store = Store()
    measurement = fake_runner(BASE)
    entry_id = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    document = store.export(entry_id)
    store.delete(entry_id)
    return document


@pytest.fixture
def sweep_export():
    store = Store()
    recorder = saving.SweepRecorder(BASE, ["batch"], 2, store=store)
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], FakePoints(),
                             on_point=recorder.add)
    recorder.finish(result.stopped)
    document = store.export(recorder.entry_id)
    store.delete(recorder.entry_id)
    return document


def as_bytes(document) -> bytes:
    return json.dumps(document).encode()


def import_via_cli(path, capsys):
    """`python -m lib import PATH`, in-process: (exit status, stderr lines, stdout)."""
    try:
        status = main.main(["import", str(path)])
    except SystemExit as exc:             # argparse's way out; import's never is
        status = exc.code
    out, err = capsys.readouterr()
    return status, err.strip().splitlines(), out


def test_an_export_imports_and_opens_as_it_was(run_export):
    checked = imports.check_bytes(as_bytes(run_export), "run.json")
    entry_id = Store().import_document(checked.document)
    again = Store().export(entry_id)
    assert again.pop("imported_from") and run_export.pop("imported_from") is None
    assert again == run_export
    assert checked.models == ("smollm2-135m-instruct",)


def test_a_newer_versions_extra_fields_are_ignored(run_export, capsys, tmp_path):
    newer = copy.deepcopy(run_export)
    newer["format"] = "inference-latency-explorer/7"
    newer["spec"]["speculative_decoding"] = {"draft_model": "tiny"}    # a field not known here
    newer["repetitions"][0]["energy_joules"] = 1.5
    newer["provenance"]["signature"] = "abc"
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer))
    status, err, out = import_via_cli(path, capsys)
    assert status == 0 and not err and out.startswith("imported as #")
    entry_id = int(out.split("#")[1])
    assert Store().export(entry_id)["format"] == EXPORT_FORMAT   # stored as this version's
    assert main.main(["export", str(entry_id), "--csv"]) == 0
    assert "ttft_s_median" in capsys.readouterr().out


def test_a_run_measured_with_more_threads_than_this_machine_has_opens(run_export):
    run_export["spec"]["threads"] = (os.cpu_count() or 1) * 64
    entry_id = Store().import_document(imports.check_bytes(as_bytes(run_export)).document)
    opened = documents.open_entry(Store().export(entry_id))
    assert opened.measurement.spec.threads == (os.cpu_count() or 1) * 64


def without(document, *path):
    document = copy.deepcopy(document)
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    del target[last]
    return document


def changed(document, value, *path):
    document = copy.deepcopy(document)
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    return document


OVERFLOW = "1e999 goes here"


def encoded(document) -> bytes:
    return json.dumps(document).replace(json.dumps(OVERFLOW), "1e999").encode()


RUN_CASES = [
    (lambda d: without(d, "repetitions"), "repetitions: missing"),
    (lambda d: changed(d, "hello", "spec"), "spec: expected an object ({...}), not text 'hello'"),
    (lambda d: changed(d, [], "repetitions"), "repetitions: expected at least one repetition"),
    (lambda d: changed(d, "0.1, 0.2", "repetitions", 1, "token_offsets_s"),
     "repetitions[1].token_offsets_s: expected a list of numbers, not text '0.1, 0.2'"),
    (lambda d: changed(d, [0.1, "0.2"], "repetitions", 1, "token_offsets_s"),
     "repetitions[1].token_offsets_s: expected a list of numbers ([1] is text '0.2')"),
    (lambda d: changed(d, [0.3, 0.2], "repetitions", 0, "token_offsets_s"),
     "repetitions[0].token_offsets_s: expected times that never decrease"),
    (lambda d: changed(d, [0.2, 0.2], "repetitions", 0, "token_offsets_s"),
     "the last one later than the start and than the first token"),
    (lambda d: changed(d, 1000, "spec", "batch_size"),
     "spec: batch_size must be between 1 and 64 (got 1000)"),
    (lambda d: changed(d, 5, "spec", "model_id"), "spec: model_id must be text (got int)"),
    (lambda d: changed(d, -1, "repetitions", 0, "peak_memory_bytes"),
     "repetitions[0].peak_memory_bytes: expected a number of at least 0, not -1"),
    (lambda d: changed(d, "yes", "prompt", "used_chat_template"),
     "prompt.used_chat_template: expected true or false"),
    (lambda d: changed(d, "seq2seq", "model", "kind"),
     "model.kind: expected one of causal-lm, encoder, not text 'seq2seq'"),
    (lambda d: changed(d, "encoder", "model", "kind"),
     "repetitions[0].token_offsets_s: an encoder generates no tokens"),
    (lambda d: changed(d, "other", "kind"), "kind: expected one of run, sweep"),
    (lambda d: changed(d, "yesterday", "created_at"), "created_at: expected a UTC time"),
    (lambda d: changed(d, "x" * 10_001, "note"), "note: expected at most 10,000 characters"),
    (lambda d: changed(d, "other-app/1", "format"), "is not an Inference Latency Explorer export"),
    (lambda d: changed(d, "x" * 5000, "environment", "cpu_model"),
     "environment.cpu_model: expected at most 4,096 characters, not 5,000"),
    # Python writes an infinite float as Infinity (refused as such); 1e999 reads as one too.
    (lambda d: changed(d, [0.1, OVERFLOW], "repetitions", 0, "token_offsets_s"),
     "repetitions[0].token_offsets_s: expected a list of numbers ([1] is inf)"),
    (lambda d: changed(d, {"x": OVERFLOW}, "summary"), "a number in it is too large"),
]


@pytest.mark.parametrize("damage, message", RUN_CASES)
def test_a_bad_run_export_is_refused_naming_the_field_and_nothing_is_stored(
        run_export, damage, message):
    with pytest.raises(imports.ImportRefusedError) as refused:
        imports.check_bytes(encoded(damage(run_export)), "run.json")
    assert str(refused.value).startswith("Can't import run.json: ")
    assert message in str(refused.value)
    assert Store().list() == []


SWEEP_CASES = [
    (lambda d: changed(d, "abc", "points"), "points: expected a list, not text 'abc'"),
    (lambda d: changed(d, ["batch", "batch"], "factors"), "factors: expected one factor, or two"),
    (lambda d: changed(d, ["speed"], "factors"), "factors[0]: expected one of model, device"),
    (lambda d: without(d, "points", 1, "values", "batch"), "points[1].values.batch: missing"),
    (lambda d: changed(d, "two", "points", 1, "values", "batch"),
     "points[1].values.batch: expected a whole number, not text 'two'"),
    (lambda d: without(d, "points", 1, "measurement", "repetitions"),
     "points[1].measurement.repetitions: missing"),
    (lambda d: changed(d, "x", "base", "device"), "base: device must be one of cpu, cuda, mps"),
]


@pytest.mark.parametrize("damage, message", SWEEP_CASES)
def test_a_bad_sweep_export_is_refused_naming_the_field(sweep_export, damage, message):
    with pytest.raises(imports.ImportRefusedError, match="^Can't import sweep.json: ") as refused:
        imports.check_bytes(json.dumps(damage(sweep_export)).encode(), "sweep.json")
    assert message in str(refused.value)
    assert Store().list() == []


@pytest.mark.slow
def test_counts_are_limited_before_anything_is_built(run_export, sweep_export):
    # The finding: 96,339 repetitions imported in seconds, then every opening took minutes.
    many = changed(run_export, [{"token_offsets_s": [0.1]}] * 96_339, "repetitions")
    with pytest.raises(imports.ImportRefusedError,
                       match=r"repetitions: expected at most 10,000 repetitions, not 96,339"):
        imports.check_bytes(as_bytes(many))
    skipped = {"values": {"batch": 1}, "skipped_reason": "too big", "seconds": 0.0}
    wide = changed(sweep_export, [skipped] * (imports.MAX_POINTS + 1), "points")
    with pytest.raises(imports.ImportRefusedError, match="points: expected at most 4,096 points"):
        imports.check_bytes(as_bytes(wide))
    values = b"[" + b"0," * imports.MAX_VALUES + b"0]"
    with pytest.raises(imports.ImportRefusedError, match="more than any export of this app"):
        imports.check_bytes(values)


def test_a_refused_round_trip_stores_nothing(run_export, monkeypatch):
    """What the checks don't foresee, opening it does: the import is refused, not stored."""
    from lib.records import export

    def broken(measurement, summary):
        raise ZeroDivisionError("float division by zero")
    monkeypatch.setattr(export, "metric_cards", broken)
    with pytest.raises(imports.ImportRefusedError,
                       match="ZeroDivisionError: float division by zero"):
        imports.check_bytes(as_bytes(run_export))
    assert Store().list() == []


def hostile_files(tmp_path, run_export):
    """(name, path) of every kind of file `import` must refuse."""
    files = {}

    def write(name, data: bytes):
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    write("list.json", json.dumps([run_export]).encode())
    write("spec-hello.json", json.dumps({**run_export, "spec": "hello"}).encode())
    write("deep.json", b"[" * 100_000 + b"]" * 100_000)
    write("deep-object.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    write("empty.json", b"")
    write("latin1.json", json.dumps({**run_export, "note": "caf\u00e9"},
                                    ensure_ascii=False).encode("latin-1"))
    write("nan.json", json.dumps({**run_export, "load": {"load_s": float("nan")}}).encode())
    write("infinity.json", b'{"format": "inference-latency-explorer/1", "x": -Infinity}')
    write("not-json.json", b"{not json")
    write("cut-short.json", json.dumps(run_export).encode()[:-30])
    write("bare-word.json", b'{"kind": run}')
    write("points-abc.json", json.dumps({**run_export, "kind": "sweep", "base": BASE.to_dict(),
                                         "factors": ["batch"], "points": "abc"}).encode())
    files["huge.json"] = tmp_path / "huge.json"
    with open(files["huge.json"], "wb") as f:
        f.truncate(imports.MAX_FILE_BYTES + 1)            # sparse: nothing written to disk
    files["folder"] = tmp_path / "folder"
    files["folder"].mkdir()
    files["fifo"] = tmp_path / "fifo"
    os.mkfifo(files["fifo"])                               # opening it must not wait
    files["zero-link.json"] = tmp_path / "zero-link.json"
    files["zero-link.json"].symlink_to("/dev/zero")
    files["/dev/zero"] = "/dev/zero"
    files["missing.json"] = tmp_path / "missing.json"
    return files


EXPECTED = {
    "list.json": "is not an Inference Latency Explorer export (one JSON object), but a JSON list",
    "spec-hello.json": "spec: expected an object ({...}), not text 'hello'",
    "deep.json": "nested more than 32 levels deep",
    "deep-object.json": "nested more than 32 levels deep",
    "empty.json": "it is empty",
    "latin1.json": "is not UTF-8 text (byte 0xe9",
    "nan.json": "it holds NaN, which is not a number",
    "infinity.json": "it holds -Infinity, which is not a number",
    "not-json.json": "it is not JSON: its brackets don't pair up",
    "cut-short.json": "it is not JSON: its brackets don't pair up (was it cut short?)",
    "bare-word.json": "it is not JSON (Expecting value: line 1 column 10",
    "points-abc.json": "points: expected a list, not text 'abc'",
    "huge.json": "it is larger than 64 MiB",
    "folder": "it is a folder, not a file written by `python -m lib export`",
    "fifo": "it is a pipe (FIFO), not a file",
    "zero-link.json": "it is a device, not a file",
    "/dev/zero": "it is a device, not a file",
    "missing.json": "Can't read",
}


def test_every_hostile_file_exits_2_with_one_line_and_stores_nothing(tmp_path, run_export,
                                                                     capsys):
    for name, path in hostile_files(tmp_path, run_export).items():
        status, err, out = import_via_cli(path, capsys)
        assert status == 2, name
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert EXPECTED[name] in err[0], (name, err[0])
        assert "Traceback" not in err[0] and not out, name
    assert Store().list() == []


def test_an_upload_over_the_limit_is_refused_before_parsing(monkeypatch, run_export):
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 1000)
    with pytest.raises(imports.ImportRefusedError, match="is larger than"):
        imports.check_bytes(as_bytes(run_export), "big.json")


def test_a_load_result_that_would_not_open_again_is_not_saved(tmp_path, monkeypatch):
    """A live load run goes through an import's checks before it is saved: a number no JSON
    reader takes (a server's 400-digit queue time read as infinity, say) is refused with its
    reason, and nothing is stored."""
    from fakes import load_result
    from lib.records import load_tests
    from lib.serving import summary

    store = Store(tmp_path / "history.sqlite3")
    good = summary.to_dict(load_result())
    bad = copy.deepcopy(good)
    bad["levels"][0]["records"][0]["queue_s"] = float("inf")
    monkeypatch.setattr(load_tests.summary, "to_dict", lambda loaded: bad)
    entry_id, problem = load_tests.save(load_result(), store=store)
    assert entry_id is None and problem.startswith("it would not open again")
    assert "Infinity" in problem and store.list() == []
    monkeypatch.setattr(load_tests.summary, "to_dict", lambda loaded: good)
    entry_id, problem = load_tests.save(load_result(), store=store)
    assert problem is None and documents.open_entry(store.export(entry_id))

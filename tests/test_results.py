"""lib.core.results: one to_dict/from_dict pair, and documents saved before it still open the same.

tests/fixtures/history-0ec4227.sqlite3 was written by the code at commit 0ec4227 (before the
backend seam): runs of the trained, encoder and random-weight models, a batch sweep, a prompt
sweep with a skipped point, a note and an import. Its CSV exports, written by that code too,
are the numbers every entry must still give.
"""

import csv
import io
import shutil
from pathlib import Path

import pytest

from fakes import measure
from lib.records import documents, export
from lib.core import results, stats
from lib.core.kinds import ENCODER
from lib.core.results import MEASURED, Provenance
from lib.core.spec import RunSpec
from lib.records.store import Store

FIXTURES = Path(__file__).with_name("fixtures")
OLD_DB = FIXTURES / "history-0ec4227.sqlite3"


def same_numbers(left: dict, right: dict, gated: bool = False) -> bool:
    """Nested dicts of numbers (or None) equal to floating-point rounding. `gated`: `left` is
    derived now, `right` was saved before the percentile gate covered p10 (issue 9), so a p10
    hidden now must have had fewer samples than the gate asks for; and before the gaps between
    tokens knew their `requests` (issue 20), so a tail of them hidden now had too few requests."""
    new = {"requests"} if gated else set()
    assert left.keys() - new == right.keys() - new
    for key, value in left.items():
        if key in new and key not in right:
            continue
        if isinstance(value, dict):
            same_numbers(value, right[key], gated)
        elif gated and key == "p10" and value is None and left["n"] < stats.MIN_SAMPLES[10]:
            assert right[key] is not None
        elif gated and key in ("p10", "p90", "p95", "p99") and value is None and \
                left.get("requests") is not None:
            assert left["requests"] < stats.MIN_SAMPLES[int(key[1:])]
        elif value is None or right[key] is None:
            assert value is right[key], key
        else:
            assert value == pytest.approx(right[key]), key
    return True


def test_round_trip_keeps_everything():
    measurement = measure(RunSpec(batch_size=2, prompt_tokens=16, new_tokens=4, repetitions=3,
                                  min_duration_s=0.0, threads=1, prompt_text="Hello"))
    again = results.from_dict(results.to_dict(measurement))
    assert again.provenance == measurement.provenance
    assert again.provenance.versions == {"fake": "1"}
    assert again.spec == measurement.spec and again.warmup_s == measurement.warmup_s
    assert again.prompt_note == measurement.prompt_note and again.load_s == measurement.load_s
    assert same_numbers(stats.summarize(again).to_dict(), stats.summarize(measurement).to_dict())


@pytest.fixture
def old_store(tmp_path):
    path = tmp_path / "history.sqlite3"
    shutil.copy(OLD_DB, path)
    return Store(path)


def test_documents_saved_before_the_seam_open_with_their_saved_numbers(old_store):
    entries = {e["id"]: e for e in old_store.list()}
    assert [entries[i]["kind"] for i in range(1, 7)] == ["run"] * 3 + ["sweep"] * 2 + ["run"]
    assert entries[1]["note"] == "before class" and entries[6]["imported_from"]
    for entry_id in (1, 2, 3, 6):
        document = old_store.export(entry_id)
        measurement = documents.measurement_from_document(document)
        # No provenance was saved then: it is inferred from the model kind, as measured.
        expected = "encoder" if measurement.model_kind == ENCODER else "transformers"
        assert measurement.provenance.backend == expected
        assert measurement.provenance.kind == MEASURED
        assert measurement.provenance.versions["torch"] == document["environment"]["torch"]
        # The summary stored that day and the one derived now are the same numbers.
        assert same_numbers(stats.summarize(measurement).to_dict(), document["summary"],
                            gated=True)
        rewritten = export.to_dict(measurement, stats.summarize(measurement))
        assert same_numbers(rewritten["summary"], document["summary"], gated=True)
        assert [r["token_offsets_s"] for r in rewritten["repetitions"]] == \
            [r["token_offsets_s"] for r in document["repetitions"]]


@pytest.mark.parametrize("entry_id", [1, 2, 3, 4, 5, 6])
def test_old_entries_export_the_same_csv_numbers(old_store, entry_id):
    opened = documents.open_entry(old_store.export(entry_id), entry_id)    # as History opens it
    new = list(csv.DictReader(io.StringIO(opened.csv)))
    old = list(csv.DictReader((FIXTURES / f"history-0ec4227-{entry_id}.csv").open()))
    assert len(new) == len(old)
    for new_row, old_row in zip(new, old):
        # Columns may be added at the end, never lost or moved: spreadsheets read by position.
        assert list(new_row)[:len(old_row)] == list(old_row)
        for column, value in old_row.items():
            if column == "seconds_spent" or value == new_row[column]:
                continue
            if column.endswith(("_p10", "_p90")) and new_row[column] == "":
                # Hidden now by the one percentile gate: too few samples for it.
                n_column = column.rsplit("_", 1)[0] + "_n"
                assert int(new_row[n_column]) < stats.MIN_SAMPLES[10], column
                continue
            assert float(new_row[column]) == pytest.approx(float(value)), column


def test_provenance_defaults_for_a_minimal_document():
    document = {"spec": RunSpec().to_dict(), "repetitions": [{"token_offsets_s": [0.1, 0.2]}]}
    measurement = results.from_dict(document)
    assert measurement.provenance == Provenance("transformers")
    assert measurement.repetitions[0].token_times_s == (0.1, 0.2)

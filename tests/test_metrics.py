"""The metric registry: every metric stats computes is registered, and formatted by its unit."""

import pytest

from lib.core import metrics
from lib.core.stats import REPETITION_METRICS


def test_every_computed_metric_is_registered_with_words():
    assert set(REPETITION_METRICS) | {"itl_s"} == set(metrics.METRICS)
    for metric in metrics.METRICS.values():
        assert metric.label and metric.short_label and len(metric.meaning) > 20
        assert metric.unit in (metrics.SECONDS, metrics.TOKENS_PER_S, metrics.REQUESTS_PER_S,
                               metrics.BYTES)


def test_direction_of_better():
    assert not metrics.get("ttft_s").higher_is_better
    assert metrics.get("decode_tokens_per_s").higher_is_better


@pytest.mark.parametrize("name, value, text", [
    ("ttft_s", 0.2, "200.0 ms"), ("e2e_s", 2.5, "2.50 s"), ("decode_tokens_per_s", 1234.5,
                                                            "1,234.5/s"),
    ("peak_memory_bytes", 540_000_000, "540.0 MB"), ("tpot_s", None, "-"),
    ("first_warmup_s", 0.05, "50.0 ms"),          # not a metric: read by its unit suffix
    # small values keep two significant digits: never "0.0/s"
    ("requests_per_s", 0.049, "0.049/s"), ("requests_per_s", 0.0049, "0.0049/s"),
    ("requests_per_s", 0.491, "0.49/s"), ("requests_per_s", 0.0999, "0.10/s"),
    ("decode_tokens_per_s", 0.000049, "0.000049/s"), ("itl_s", 0.00004, "0.040 ms"),
    ("requests_per_s", 12.0, "12.0/s"),
])
def test_format_value(name, value, text):
    assert metrics.format_value(name, value) == text


def test_charts_draw_memory_in_the_same_decimal_megabytes_the_tables_write():
    peak = metrics.get("peak_memory_bytes")
    assert peak.display_unit == "MB"
    assert f"{540_000_000 * peak.display_scale:.1f} MB" == metrics.format_bytes(540_000_000)
    assert metrics.get("ttft_s").display_scale == 1000
    assert metrics.get("requests_per_s").display_scale == 1

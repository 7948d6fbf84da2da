import numpy as np
import pytest

from lib.core.results import Measurement, Repetition
from lib.core.spec import RunSpec
from lib.core.stats import (MIN_SAMPLES, Distribution, inter_token_latencies, percentile,
                       repetition_metrics, summarize)


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0, 4.0], [5.0], [3.0, 1.0, 2.0],
                                    list(np.linspace(0.1, 9.7, 37))])
@pytest.mark.parametrize("q", [0, 10, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(values, q):
    assert percentile(values, q) == pytest.approx(np.percentile(values, q), abs=1e-12)


def test_percentile_exact_values():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_tail_percentiles_hidden_until_enough_samples():
    assert Distribution(tuple(range(MIN_SAMPLES[90] - 1))).percentile(90) is None
    assert Distribution(tuple(range(MIN_SAMPLES[90]))).percentile(90) == pytest.approx(8.1)
    assert Distribution(tuple(range(99))).percentile(99) is None
    assert Distribution(tuple(range(100))).percentile(99) == pytest.approx(98.01)


def test_distribution_median_and_iqr():
    dist = Distribution((1.0, 2.0, 3.0, 4.0, 100.0))
    assert dist.median == 3.0
    assert dist.iqr == 2.0
    assert dist.relative_iqr == pytest.approx(2 / 3)
    assert dist.to_dict()["n"] == 5


def test_repetition_metrics_follow_design_definitions():
    rep = Repetition(start_s=10.0, token_times_s=(10.3, 10.35, 10.4, 10.45, 10.5),
                     peak_memory_bytes=2000, start_memory_bytes=500)
    m = repetition_metrics(rep, batch_size=4, prompt_tokens=11)
    assert m["ttft_s"] == pytest.approx(0.3)
    assert m["e2e_s"] == pytest.approx(0.5)
    assert m["tpot_s"] == pytest.approx(0.05)
    assert m["decode_tokens_per_s"] == pytest.approx(4 * 4 / 0.2)
    assert m["total_tokens_per_s"] == pytest.approx(4 * 16 / 0.5)
    assert m["requests_per_s"] == pytest.approx(8.0)
    assert m["run_memory_bytes"] == 1500
    assert inter_token_latencies(rep) == pytest.approx([0.05] * 4)


def test_single_token_has_no_tpot():
    m = repetition_metrics(Repetition(0.0, (0.25,), None), 1, 8)
    assert "tpot_s" not in m and "decode_tokens_per_s" not in m
    assert m["ttft_s"] == m["e2e_s"] == 0.25


def _measurement(ttfts, tpot=0.05, tokens=5, warmup=1):
    reps = tuple(Repetition(0.0, tuple(t + i * tpot for i in range(tokens)), None) for t in ttfts)
    spec = RunSpec(batch_size=1, prompt_tokens=8, new_tokens=tokens, warmup_runs=warmup)
    return Measurement(spec, {}, reps, (), None, False, "")


def test_summary_warns_on_noise_and_few_samples():
    steady = summarize(_measurement([0.30, 0.30, 0.31, 0.30, 0.30]))
    assert "noisy" not in {w.code for w in steady.warnings}
    noisy = summarize(_measurement([0.2, 0.3, 0.4, 0.5, 0.6]))
    codes = {w.code: w for w in noisy.warnings}
    assert "noisy" in codes and "TTFT" in codes["noisy"].message
    assert codes["noisy"].hint
    few = summarize(_measurement([0.3, 0.3], warmup=0))
    assert {"few_repetitions", "no_warmup", "too_few_for_percentile"} <= {w.code for w in few.warnings}


def test_summary_itl_pools_all_gaps():
    summary = summarize(_measurement([0.3] * 5, tokens=5))
    assert summary.metrics["itl_s"].n == 5 * 4
    assert summary.metrics["itl_s"].median == pytest.approx(0.05)

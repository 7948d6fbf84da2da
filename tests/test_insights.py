from lib.views.comparable import spreads_overlap
from lib.views.insights import findings
from lib.measure.factors import FACTORS

BATCH, DTYPE, ATTENTION = FACTORS["batch"], FACTORS["dtype"], FACTORS["attention"]


def row(value, ttft, tpot, decode, e2e=None, memory=None, status="measured", spread=0.02,
        noisy=False, other_cpu=None, p10_p90=False):
    """A tidy-table row; each metric's samples spread `spread` either side of its median, as
    p10/p90 (`p10_p90`, 10 samples or more) or else as the min-max range of a few samples."""
    medians = {"ttft_s": ttft, "tpot_s": tpot, "decode_tokens_per_s": decode,
               "e2e_s": e2e or ttft}
    out = {"factor_batch": value, "factor_dtype": value, "factor_attention": value,
           "status": status, **medians, "peak_memory_bytes": memory,
           "skipped_reason": "" if status == "measured" else "Too big for this machine. Try less.",
           "noisy": noisy if status == "measured" else None, "other_cpu_percent": other_cpu}
    for metric, median in medians.items():
        low, high = (median * (1 - spread), median * (1 + spread)) if median else (None, None)
        out.update({f"{metric}_p10": low if p10_p90 else None,
                    f"{metric}_p90": high if p10_p90 else None,
                    f"{metric}_min": low * 0.9 if low and p10_p90 else low,
                    f"{metric}_max": high * 1.1 if high and p10_p90 else high})
    return out


def test_numeric_findings_state_the_measured_ratios():
    table = [row(1, 0.1, 0.020, 50.0, memory=100_000_000),
             row(16, 0.8, 0.072, 220.0, memory=300_000_000),
             row(4, 0.3, 0.030, 130.0, memory=150_000_000)]
    sentences = findings(table, BATCH)
    assert sentences == [
        "From batch size 1 to 16, decode throughput grew 4.4x (50.0 to 220.0 tokens/s) while "
        "the time per token grew 3.6x (20 ms to 72 ms).",
        "From batch size 1 to 16, the time to first token grew 8.0x (100 ms to 800 ms).",
        "Peak memory went from 100.0 MB to 300.0 MB (+200.0 MB)."]          # decimal MB, as tables write


def test_small_changes_are_called_the_same():
    sentences = findings([row(1, 0.1, 0.020, 50.0), row(2, 0.105, 0.021, 48.0)], BATCH)
    assert "decode throughput stayed about the same" in sentences[0]


def test_overlapping_spreads_are_within_the_noise_not_a_ratio():
    # TPOT 20 ms vs 24 ms (1.2x) but each point's samples spread 15%: the ranges overlap.
    # Throughput 50 -> 330 tokens/s is far beyond its spread, so that ratio is still a finding.
    table = [row(1, 0.1, 0.020, 50.0, spread=0.15), row(8, 0.8, 0.024, 330.0, spread=0.15)]
    sentences = findings(table, BATCH)
    assert sentences[0] == ("From batch size 1 to 8, decode throughput grew 6.6x "
                            "(50.0 to 330.0 tokens/s).")
    assert sentences[1] == (
        "Batch size 1 vs 8: the difference in time per token (20 ms vs 24 ms) is within the "
        "noise (the spreads of their samples overlap); rerun on a quieter machine or with more "
        "repetitions to tell.")
    assert "1.2x" not in " ".join(sentences)


def test_the_same_medians_with_tight_spreads_are_a_finding():
    table = [row(1, 0.1, 0.020, 50.0, spread=0.02), row(8, 0.8, 0.024, 330.0, spread=0.02)]
    assert "the time per token grew 1.2x (20 ms to 24 ms)" in findings(table, BATCH)[0]


def test_p10_p90_is_used_where_the_point_has_the_samples():
    # p10-p90 (+-5%) are apart although the min-max ranges (+-15.5%) would overlap.
    a, b = row(1, 0.1, 0.020, 50.0, spread=0.05, p10_p90=True), \
        row(2, 0.1, 0.024, 50.0, spread=0.05, p10_p90=True)
    assert spreads_overlap(a, b, "tpot_s") is False
    assert spreads_overlap({**a, "tpot_s_p10": None}, b, "tpot_s") is True   # a: range
    a_wide = row(1, 0.1, 0.021, 50.0, spread=0.10, p10_p90=True)     # 1.14x, overlapping
    sentence = findings([a_wide, b], BATCH)[1]
    assert "(their p10–p90 spreads overlap)" in sentence


def test_a_noisy_point_is_named_and_never_sold_as_a_ratio():
    table = [row(1, 0.1, 0.020, 50.0), row(4, 0.3, 0.030, 130.0),
             row(16, 0.8, 0.072, 220.0, noisy=True, other_cpu=41.6, spread=0.9)]
    caution, *sentences = findings(table, BATCH)
    # Busy first: measured while other programs took the CPU, no finding can say why.
    assert caution.startswith("1 of 3 measured points ran while other programs used up to "
                              "42% of the CPU.")
    assert sentences[0] == (
        "Batch size 1 vs 16: the differences in decode throughput (50.0 tokens/s vs 220.0 "
        "tokens/s) and time per token (20 ms vs 72 ms) are within the noise (batch size 16 is a "
        "noisy point); rerun on a quieter machine or with more repetitions to tell.")
    assert "within the noise" in sentences[1] and "time to first token" in sentences[1]
    assert sentences[-1] == ("Noisy point: batch size 16 (other programs used 42% of the CPU "
                             "while it was measured). Its numbers are doubtful.")
    assert not any("x (" in s for s in sentences)                  # no "3.6x (...)" ratio


def test_a_noisy_point_from_its_own_spread_says_so():
    table = [row(1, 0.1, 0.020, 50.0, noisy=True, other_cpu=3.0), row(2, 0.2, 0.04, 50.0)]
    assert findings(table, BATCH)[-1].startswith(
        "Noisy point: batch size 1 (its repetitions disagreed: their middle half spans more "
        "than 10% of the median)")


def test_categorical_findings_name_fastest_and_slowest():
    table = [row("float32", 0.134, 0.0427, 23.4), row("bfloat16", 0.052, 0.0237, 42.2),
             row("float16", 0.330, 0.0173, 57.7), row("int8", 0, None, None, status="skipped")]
    sentences = findings(table, DTYPE)
    assert sentences[0] == ("Fastest time per output token: float16 (17 ms); slowest: float32 "
                            "(43 ms), 2.5x slower.")
    assert sentences[1].startswith("But the first token came soonest with bfloat16 (52 ms)")
    assert sentences[2] == "Number format int8 could not run: Too big for this machine."


def test_categorical_overlap_is_within_the_noise():
    table = [row("float32", 0.134, 0.0300, 23.4, spread=0.2),
             row("bfloat16", 0.052, 0.0237, 42.2, spread=0.2)]
    assert findings(table, DTYPE) == [
        "Number format bfloat16 vs float32: the difference in time per output token (24 ms vs "
        "30 ms) is within the noise (the spreads of their samples overlap); rerun on a quieter "
        "machine or with more repetitions to tell."]


def test_one_point_is_not_a_comparison():
    assert "nothing to compare" in findings([row(1, 0.1, 0.02, 50.0)], BATCH)[0]


def test_categorical_ties_are_called_ties():
    sentences = findings([row("sdpa", 0.18, 0.0393, 25.4), row("eager", 0.184, 0.0399, 25.1)],
                         ATTENTION)
    assert sentences == ["Every attention kernel gave about the same time per output token "
                         "(39 ms to 40 ms): here, this factor barely matters."]


def test_up_and_down_curves_are_not_sold_as_trends():
    table = [row(1, 0.1, 0.040, 25.0), row(2, 0.2, 0.0685, 29.0), row(4, 0.3, 0.0599, 66.0),
             row(8, 0.5, 0.0582, 137.0)]
    sentence = findings(table, BATCH)[0]
    assert "(40 ms to 58 ms, not steadily: it peaked at 68 ms at batch size 2)" in sentence


def test_small_rates_and_times_keep_their_digits():
    table = [row(1, 0.0004, 0.0002, 0.049), row(2, 0.0009, 0.0004, 0.0049)]
    sentence = findings(table, BATCH)[0]
    assert "(0.049 to 0.0049 tokens/s)" in sentence and "(0.20 ms to 0.40 ms)" in sentence


def test_a_skipped_point_keeps_the_factor_name_as_written():
    table = [{**row(value, 0.1, 0.02, 50.0, status=status), "factor_kv_cache": value}
             for value, status in (("dynamic", "measured"), ("static", "skipped"))]
    sentences = findings(table, FACTORS["kv_cache"])
    assert sentences[-1] == "KV cache static could not run: Too big for this machine."


def test_memory_that_barely_moved_is_said_to_stay_the_same():
    rows = [row(1, 0.1, 0.02, 50.0, memory=1.000e9), row(8, 0.1, 0.02, 400.0, memory=1.004e9)]
    sentences = findings(rows, BATCH)
    assert "Peak memory stayed about the same (1.0 GB)." in sentences
    assert not any("went from 1.0 GB to 1.0 GB" in s for s in sentences)


def test_categorical_memory_is_stated_even_when_latencies_are_noisy():
    rows = [row("float32", 0.2, 0.060, 16.0, memory=960e6, noisy=True, other_cpu=40.0,
                spread=0.9),
            row("bfloat16", 0.1, 0.055, 18.0, memory=696e6, noisy=True, other_cpu=40.0,
                spread=0.9)]
    sentences = findings(rows, DTYPE)
    assert any("within the noise" in s for s in sentences)
    assert "Least peak memory: bfloat16 (696.0 MB); most: float32 (960.0 MB), 1.4x as much." \
        in sentences


# --- estimated points: labelled, and never judged as samples ------------------------------------

DEVICE = FACTORS["device"]


def device_row(value, tpot, provenance, spread=0.02, memory=None):
    """A device sweep's row: estimates have one value (min = max = it, no p10/p90)."""
    out = row(value, tpot * 2, tpot, 1 / tpot, memory=memory,
              spread=0.0 if provenance == "estimated" else spread)
    out.update(factor_device=value, provenance=provenance,
               noisy=None if provenance == "estimated" else False)
    return out


def test_a_measured_point_against_an_estimate_says_which_is_which():
    sentences = findings([device_row("cpu", 0.125, "measured"),
                          device_row("h200", 0.005, "estimated")], DEVICE)
    assert sentences[0] == ("Fastest time per output token: NVIDIA H200 SXM 141GB (5.0 ms, "
                            "estimated); slowest: this machine's cpu (125 ms, measured), "
                            "25.0x slower.")
    assert sentences[1] == ("NVIDIA H200 SXM 141GB (estimated) would write tokens 25.0x "
                            "faster than this machine's cpu (measured): 5.0 ms vs 125 ms per "
                            "token.")
    assert "compares a prediction with a measurement" in sentences[-1]


def test_an_estimate_inside_a_measured_spread_is_not_called_noise():
    # The cpu's samples span 10-30 ms; the estimate of 15 ms lies inside: still a ratio.
    sentences = findings([device_row("cpu", 0.020, "measured", spread=0.5),
                          device_row("tpu-v6e", 0.015, "estimated")], DEVICE)
    assert not any("noise" in sentence for sentence in sentences)
    assert "would write tokens 1.3x faster than this machine's cpu (measured)" in sentences[1]


def test_a_sweep_of_estimates_states_its_ratios_and_says_they_are_estimates():
    estimated = [dict(row(b, 0.1 * b, 0.02, 50.0 * b, spread=0.0), provenance="estimated",
                      noisy=None) for b in (1, 8)]
    sentences = findings(estimated, BATCH)
    assert sentences[0].startswith("Estimated: from batch size 1 to 8, decode throughput grew "
                                   "8.0x")
    assert all(sentence.startswith("Estimated: ") for sentence in sentences[:-1])
    assert sentences[-1].startswith("Every point here is an estimate from a model of the "
                                    "hardware, not a measurement")


def test_one_estimate_is_not_called_measured():
    from lib.views.insights import only_point_words
    estimate = dict(row(1, 0.1, 0.02, 50.0, spread=0.0), provenance="estimated", noisy=None)
    assert findings([estimate], BATCH)[0] == ("Fewer than two points were estimated, so there "
                                              "is nothing to compare yet.")
    assert only_point_words([estimate]).startswith("Only one point was estimated, so")
    measured = row(1, 0.1, 0.02, 50.0)
    assert only_point_words([measured]).startswith("Only one point was measured, so")


def test_a_noisy_measurement_against_an_estimate_keeps_the_ratio_and_says_it_is_noisy():
    cpu = dict(device_row("cpu", 0.25, "measured"), noisy=True, other_cpu_percent=42.0)
    caution, *sentences = findings([cpu, device_row("h200", 0.019, "estimated")], DEVICE)
    assert caution.startswith("1 of 1 measured points ran while other programs used up to 42%")
    assert not any("within the noise" in sentence for sentence in sentences)
    assert sentences[1] == ("NVIDIA H200 SXM 141GB (estimated) would write tokens 13.2x "
                            "faster than this machine's cpu (measured): 19 ms vs 250 ms per "
                            "token (the measurement is noisy: other programs used 42% of the "
                            "CPU while it was measured).")
    assert sentences[-1].startswith("Noisy point: device cpu")


# --- the software stack ----------------------------------------------------------------------

STACK = FACTORS["stack"]


def stack_row(stack, dtype, ttft, tpot, memory=None, **kwargs):
    """A point of a stack sweep (or a stack x number format grid)."""
    return {**row(stack, ttft, tpot, tpot and 1 / tpot, memory=memory, **kwargs),
            "factor_stack": stack,
            "stack": stack, "dtype": dtype}


def test_a_stack_sweep_states_each_trade_off_against_transformers_float32():
    table = [stack_row("llama.cpp", "q4_k_m", 0.44, 0.012, memory=210_000_000),
             stack_row("transformers", "float32", 0.20, 0.037, memory=560_000_000),
             stack_row("onnxruntime", "int4", 0.15, 0.019, memory=300_000_000)]
    assert findings(table, STACK) == [
        "llama.cpp Q4_K_M writes tokens 3.1x faster than transformers float32 (12 ms vs 37 ms "
        "per token), but reads the prompt 2.2x slower (440 ms vs 200 ms to the first token).",
        "ONNX Runtime int4 writes tokens 1.9x faster than transformers float32 (19 ms vs 37 ms "
        "per token), and reads the prompt 1.3x faster (150 ms vs 200 ms to the first token).",
        "Lowest time per token: llama.cpp Q4_K_M (12 ms); lowest time to first token: "
        "ONNX Runtime int4 (150 ms).",
        "Peak memory against transformers float32 (560.0 MB): llama.cpp Q4_K_M 210.0 MB "
        "(0.4x), ONNX Runtime int4 300.0 MB (0.5x)."]


def test_a_stack_difference_inside_the_spreads_is_within_the_noise():
    # TTFT 200 ms vs 230 ms, each spread 15%: overlapping, so no ratio for the prompt.
    table = [stack_row("transformers", "float32", 0.20, 0.037, spread=0.15),
             stack_row("llama.cpp", "float32", 0.23, 0.012, spread=0.15)]
    sentences = findings(table, STACK)
    assert sentences[0] == (
        "llama.cpp float32 writes tokens 3.1x faster than transformers float32 (12 ms vs 37 ms "
        "per token); the difference in time to first token (230 ms vs 200 ms) is within the "
        "noise (the spreads of their samples overlap).")
    assert sentences[1] == ("Lowest time per token: llama.cpp float32 (12 ms); lowest time to "
                            "first token: transformers float32 (200 ms, within the noise of "
                            "llama.cpp float32 (230 ms)).")
    assert "1.1x" not in " ".join(sentences) and "1.2x" not in " ".join(sentences)


def test_a_noisy_stack_point_is_never_a_ratio():
    table = [stack_row("transformers", "float32", 0.20, 0.037),
             stack_row("llama.cpp", "q8_0", 0.40, 0.015, noisy=True, other_cpu=55.0,
                       spread=0.9),
             ]
    table[1]["tpot_s_max"] = 0.040         # one of its samples as slow as the reference's
    caution, *sentences = findings(table, STACK)
    assert "can't be trusted for why" in caution
    assert sentences[0] == (
        "llama.cpp Q8_0 vs transformers float32: the differences in time per token (15 ms vs "
        "37 ms) and time to first token (400 ms vs 200 ms) are within the noise (llama.cpp Q8_0 "
        "is a noisy point); rerun on a quieter machine or with more repetitions to tell.")


def test_without_transformers_float32_the_first_point_is_the_reference():
    table = [stack_row("llama.cpp", "q4_1", 0.30, 0.010),
             stack_row("llama.cpp", "float16", 0.30, 0.020)]
    sentences = findings(table, STACK)
    assert sentences[0] == (
        "llama.cpp float16 writes tokens 2.0x slower than llama.cpp Q4_1 (20 ms vs 10 ms per "
        "token), and reads the prompt about as fast (300 ms vs 300 ms to the first token).")
    assert sentences[1] == ("Lowest time per token: llama.cpp Q4_1 (10 ms); lowest time to "
                            "first token: llama.cpp Q4_1 (300 ms, within the noise of llama.cpp "
                            "float16 (300 ms)).")


def test_a_skipped_stack_says_why_in_its_own_words():
    table = [stack_row("transformers", "float32", 0.20, 0.037),
             stack_row("llama.cpp", "float32", 0.30, 0.012),
             {**stack_row("onnxruntime", "float32", None, None, status="skipped"),
              "skipped_reason": "ONNX Runtime has no backend in this version of the app."}]
    assert findings(table, STACK)[-1] == (
        "Software stack ONNX Runtime could not run: ONNX Runtime has no backend in this version "
        "of the app.")


def test_a_stack_by_format_heatmap_has_trade_offs_and_groups_the_formats_not_run():
    from lib.views.insights import heatmap_findings

    skipped = {"status": "skipped"}
    table = [stack_row("transformers", "float32", 0.20, 0.040),
             stack_row("llama.cpp", "float32", 0.25, 0.020),
             {**stack_row("transformers", "q4_k_m", None, None, **skipped),
              "skipped_reason": "transformers (PyTorch) does not run weights in Q4_K_M. It is..."},
             stack_row("llama.cpp", "q4_k_m", 0.30, 0.010),
             {**stack_row("llama.cpp", "int8", None, None, **skipped),
              "skipped_reason": "llama.cpp does not run weights in int8 (dynamic). Choose..."},
             {**stack_row("onnxruntime", "float32", None, None, **skipped),
              "skipped_reason": "ONNX Runtime has no backend in this version of the app."}]
    for cell in table:
        cell["factor_dtype"] = cell["dtype"]
    assert heatmap_findings(table, [STACK, FACTORS["dtype"]]) == [
        "llama.cpp float32 writes tokens 2.0x faster than transformers float32 (20 ms vs 40 ms "
        "per token), but reads the prompt 1.2x slower (250 ms vs 200 ms to the first token).",
        "llama.cpp Q4_K_M writes tokens 4.0x faster than transformers float32 (10 ms vs 40 ms "
        "per token), but reads the prompt 1.5x slower (300 ms vs 200 ms to the first token).",
        "Lowest time per token: llama.cpp Q4_K_M (10 ms); lowest time to first token: "
        "transformers float32 (200 ms).",
        "Not run, since the stack doesn't run that format: transformers Q4_K_M; llama.cpp int8.",
        "ONNX Runtime, float32: could not run: ONNX Runtime has no backend in this version of "
        "the app."]
    # Any other pair of factors gets no stack sentences, only the cells that could not run.
    assert heatmap_findings(table, [STACK, BATCH])[-1].endswith(
        "could not run: ONNX Runtime has no backend in this version of the app.")


def test_a_noisy_point_whose_every_sample_is_apart_still_gives_its_ratio():
    """A busy machine blurs the size of a gap, not its direction: when every sample of one
    point beats every sample of the other (same interleaved rounds), the ratio is stated."""
    table = [stack_row("transformers", "float32", 0.20, 0.060, noisy=True, other_cpu=60.0,
                       spread=0.3),
             stack_row("llama.cpp", "q4_k_m", 0.21, 0.008, noisy=True, other_cpu=60.0,
                       spread=0.3)]
    from lib.views.insights import heatmap_findings
    caution, *sentences = heatmap_findings(table, [STACK, FACTORS["dtype"]])
    assert caution.startswith("2 of 2 measured points ran while other programs used up to 60%")
    assert sentences[0].startswith("llama.cpp Q4_K_M writes tokens 7.5x faster than "
                                   "transformers float32 (8.0 ms vs 60 ms per token)")
    assert "time to first token (210 ms vs 200 ms) is within the noise (both points are " \
           "noisy)" in sentences[0]

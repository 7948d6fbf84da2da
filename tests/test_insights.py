from lib.insights import findings
from lib.sweep import FACTORS

BATCH, DTYPE, ATTENTION = FACTORS["batch"], FACTORS["dtype"], FACTORS["attention"]


def row(value, ttft, tpot, decode, e2e=None, memory=None, status="measured"):
    return {"factor_batch": value, "factor_dtype": value, "factor_attention": value,
            "status": status, "ttft_s": ttft,
            "tpot_s": tpot, "decode_tokens_per_s": decode, "e2e_s": e2e or ttft,
            "peak_memory_bytes": memory,
            "skipped_reason": "" if status == "measured" else "Too big for this machine. Try less."}


def test_numeric_findings_state_the_measured_ratios():
    table = [row(1, 0.1, 0.020, 50.0, memory=100 * 2**20),
             row(16, 0.8, 0.072, 220.0, memory=300 * 2**20),
             row(4, 0.3, 0.030, 130.0, memory=150 * 2**20)]
    sentences = findings(table, BATCH)
    assert sentences[0] == ("From batch size 1 to 16, decode throughput grew 4.4x (50.0 to 220.0 "
                            "tokens/s) while the time per token grew 3.6x (20 ms to 72 ms).")
    assert sentences[1] == ("From batch size 1 to 16, the time to first token grew 8.0x "
                            "(100 ms to 800 ms).")
    assert sentences[2] == "Peak memory went from 100 MB to 300 MB."


def test_small_changes_are_called_the_same():
    sentences = findings([row(1, 0.1, 0.020, 50.0), row(2, 0.105, 0.021, 48.0)], BATCH)
    assert "decode throughput stayed about the same" in sentences[0]


def test_categorical_findings_name_fastest_and_slowest():
    table = [row("float32", 0.134, 0.0427, 23.4), row("bfloat16", 0.052, 0.0237, 42.2),
             row("float16", 0.330, 0.0173, 57.7), row("int8", 0, None, None, status="skipped")]
    sentences = findings(table, DTYPE)
    assert sentences[0] == ("Fastest time per output token: float16 (17 ms); slowest: float32 "
                            "(43 ms), 2.5x slower.")
    assert sentences[1].startswith("But the first token came soonest with bfloat16 (52 ms)")
    assert sentences[2] == "Number format int8 could not run: Too big for this machine."


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


def test_a_skipped_point_keeps_the_factor_name_as_written():
    table = [{**row(value, 0.1, 0.02, 50.0, status=status), "factor_kv_cache": value}
             for value, status in (("dynamic", "measured"), ("static", "skipped"))]
    sentences = findings(table, FACTORS["kv_cache"])
    assert sentences[-1] == "KV cache static could not run: Too big for this machine."

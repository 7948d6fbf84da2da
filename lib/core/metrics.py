"""The metric registry: every number the app reports, named once, with its words and unit.

Names follow docs/MEASURING.md (unit in the name); `lib.core.stats` computes them, and the report, the CLI
tables, the charts, the pages and the findings take their labels, units, plain meanings and
"which way is better" from here, so a metric is explained the same way everywhere.
`format_value` writes any value for people: seconds as ms or s, bytes in decimal units (1 MB =
10^6 bytes, in charts too), and small numbers with enough significant digits that none reads as
zero ("0.049/s", never "0.0/s").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS, TOKENS_PER_S, REQUESTS_PER_S, BYTES = "s", "tokens/s", "requests/s", "bytes"


@dataclass(frozen=True)
class Metric:
    name: str                # as in tables, JSON and CSV, e.g. "ttft_s"
    label: str               # for headings and cards
    short_label: str         # for legends, axes and narrow columns
    unit: str                # SECONDS, TOKENS_PER_S, REQUESTS_PER_S or BYTES
    meaning: str             # one plain sentence
    higher_is_better: bool

    def format(self, value: float | None) -> str:
        return format_value(self.name, value)

    @property
    def display_unit(self) -> str:
        """The unit charts draw it in: seconds as ms, bytes as MB."""
        return {SECONDS: "ms", BYTES: "MB"}.get(self.unit, self.unit)

    @property
    def display_scale(self) -> float:
        """What a value in the metric's own unit is multiplied by to be in `display_unit`
        (MB are decimal, as `format_bytes` writes them)."""
        return {SECONDS: 1000, BYTES: 1e-6}.get(self.unit, 1)

    @property
    def plain_label(self) -> str:
        """The label without its abbreviation, to start a sentence or name a target: 'Time to
        first token', 'Inter-token latency'."""
        return self.label.split(" (")[0]

    @property
    def words(self) -> str:
        """Its name inside a sentence: the label in lower case without its abbreviation,
        'time to first token', 'decode throughput'."""
        return self.plain_label.lower()

    @property
    def titled(self) -> str:
        """The label with its unit, for axes, colour bars and pickers."""
        return f"{self.label}, {self.display_unit}"


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("ttft_s", "Time to first token (TTFT)", "TTFT", SECONDS,
           "How long until the first word appears: reading the prompt (prefill) plus one step.",
           higher_is_better=False),
    Metric("tpot_s", "Time per output token (TPOT)", "TPOT", SECONDS,
           "Average time for each following token: the writing speed a reader sees.",
           higher_is_better=False),
    Metric("e2e_s", "End-to-end latency", "end-to-end", SECONDS,
           "From sending the request to the last token: the whole wait.", higher_is_better=False),
    Metric("decode_tokens_per_s", "Decode throughput", "decode tokens/s", TOKENS_PER_S,
           "Tokens written per second across the whole batch, after the first.",
           higher_is_better=True),
    Metric("total_tokens_per_s", "Total throughput", "tokens/s", TOKENS_PER_S,
           "Prompt and output tokens handled per second, across the batch.",
           higher_is_better=True),
    Metric("requests_per_s", "Requests per second", "requests/s", REQUESTS_PER_S,
           "How many whole requests finish per second.", higher_is_better=True),
    Metric("peak_memory_bytes", "Peak memory", "peak memory", BYTES,
           "The most memory in use during a repetition by the model's own process: its "
           "weights, KV cache, working memory, Python and the inference engine (PyTorch, "
           "llama.cpp or ONNX Runtime; on a GPU: memory held by tensors). The web app and other loaded models are not in it.",
           higher_is_better=False),
    Metric("run_memory_bytes", "Memory added by the run", "run memory", BYTES,
           "What the request itself added on the GPU: KV cache and working memory.",
           higher_is_better=False),
    Metric("itl_s", "Inter-token latency (ITL)", "ITL", SECONDS,
           "Each gap between two consecutive tokens.", higher_is_better=False),
]}

LATENCIES = ("ttft_s", "tpot_s", "e2e_s")        # per request, drawn together
TAIL_METRICS = ("ttft_s", "tpot_s", "e2e_s", "itl_s")   # shown with p90/p95/p99


def get(name: str) -> Metric:
    return METRICS[name]


def format_bytes(n: float) -> str:
    """Decimal units (1 GB = 10^9 bytes), as model cards and shops use them."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# Below 1, a number keeps this many significant digits: 0.049, 0.0049, never 0.0.
SMALL_SIGNIFICANT_DIGITS = 2


def format_number(value: float) -> str:
    """One decimal from 1 up (1,234.5), two significant digits below 1 (0.49, 0.049, 0.0049),
    and no exponent, which people outside engineering don't read."""
    if value == 0:
        return "0"
    if abs(value) < 1:      # round first, so 0.0999 becomes 0.10, not 0.100
        value = float(f"{value:.{SMALL_SIGNIFICANT_DIGITS}g}")
    if abs(value) >= 1:
        return f"{value:,.1f}"
    decimals = SMALL_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


_SCALES = ((1e15, "quadrillion"), (1e12, "trillion"), (1e9, "billion"), (1e6, "million"),
           (1e3, "thousand"))


def format_operations(count: float) -> str:
    """A count in words people read: "35.2 billion", never 3.5e10."""
    for scale, word in _SCALES:
        if abs(count) >= scale:
            return f"{format_number(count / scale)} {word}"
    return format_number(count)


def format_seconds(seconds: float) -> str:
    return f"{format_number(seconds * 1000)} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_value(name: str, value: float | None) -> str:
    """A metric's value for people; names outside the registry are read by their unit suffix."""
    if value is None:
        return "-"
    unit = METRICS[name].unit if name in METRICS else _unit_from_name(name)
    if unit == BYTES:
        return format_bytes(value)
    if unit in (TOKENS_PER_S, REQUESTS_PER_S):
        return f"{format_number(value)}/s"
    if unit == SECONDS:
        return format_seconds(value)
    return format_number(value)


def _unit_from_name(name: str) -> str | None:
    if name.endswith("_bytes"):
        return BYTES
    if name.endswith("_per_s"):
        return TOKENS_PER_S
    if name.endswith("_s"):
        return SECONDS
    return None

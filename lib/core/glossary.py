"""The glossary: every technical word the app uses, in one or two plain sentences.

One source for the pages' hover explanations (`lib.ui.glossary_view`), the README's Glossary
section (a test keeps it the same as `GLOSSARY`) and the metrics' own help (their `meaning`,
`lib.core.metrics`, is the entry for their names). `find(text)` says which terms a text uses,
whole words only, longest first, so "KV cache" wins over "cache".
"""

from __future__ import annotations

import re

from lib.core.metrics import METRICS

_METRIC_TERMS = {"TTFT": "ttft_s", "TPOT": "tpot_s", "ITL": "itl_s",
                 "end-to-end latency": "e2e_s"}

GLOSSARY: dict[str, str] = {
    **{term: METRICS[key].meaning for term, key in _METRIC_TERMS.items()},
    "latency": "How long something takes, from asking to getting it: here, the time for a "
               "model to answer.",
    "throughput": "How much work gets done per second: tokens per second, or requests per "
                  "second, counted over everyone being served.",
    "token": "The piece of text a model reads and writes at a time: a word, part of a word, "
             "or a punctuation mark. 100 tokens are about 75 English words.",
    "prefill": "The model's first pass over the whole prompt, all its tokens at once. It "
               "ends with the first output token, so it sets the time to first token.",
    "decode": "Writing the answer one token at a time: each token is one pass of the model, "
              "reusing what it remembered of the prompt (the KV cache).",
    "KV cache": "What the model keeps of every token it has read (its keys and values, in "
                "every layer), so the next token needn't read them again. It grows with the "
                "prompt, the answer and the batch.",
    "batch": "Several requests run together in one pass of the model. Each weight read from "
             "memory then serves every request in the batch.",
    "memory bandwidth": "How many bytes per second the processor can read from memory. Writing "
                        "each token reads every weight, so it often sets the speed.",
    "FLOP/s": "Floating-point operations per second: how fast the hardware does arithmetic. "
              "A model does about 2 operations per parameter per token.",
    "roofline": "The fastest a step could go on given hardware: its bytes over the memory "
                "bandwidth, or its arithmetic over the FLOP/s, whichever is longer.",
    "floor": "The roofline's time for a step: the least it could take on that hardware, "
             "nothing wasted. Real runs are slower; how much slower says where time goes.",
    "quantization": "Storing the model's numbers in fewer bits (8 or 4 instead of 16 or 32): "
                    "less to read per token, at some cost in quality.",
    "p50": "The median: half the runs were faster, half slower. The typical run.",
    "p90": "The time 90% of runs stayed under: the slowest tenth took longer. Needs at least "
           "10 runs to mean anything.",
    "p99": "The time 99% of runs stayed under: the slowest 1 in 100. Needs at least 100 "
           "runs to measure.",
    "tail latency": "The slow end of the spread (p90, p99): what the unluckiest requests "
                    "wait, which services promise and users remember.",
    "overhead": "Time spent on anything but moving weights or doing arithmetic: launching "
                "each small operation, Python between them, waiting.",
    "perplexity": "How surprised a model is by a text, on average: lower is better. A change "
                  "in it shows a modified model got worse at predicting real text.",
    "agreement": "How often a modified model's most likely next word is the original's, over "
                 "a fixed text: the plain-words measure of what a speed-up cost.",
    "pruning": "Removing parts of a model (weights, layers, channels) to make it smaller; "
               "only removing whole structures makes it faster.",
    "distillation": "Training a smaller model (the student) to imitate a bigger one (the "
                    "teacher), so it keeps more of its quality than pruning alone.",
    "speculative decoding": "Guessing several next tokens cheaply, then checking them all in "
                            "one pass of the model: every right guess is a token for free, "
                            "and the output never changes.",
    "early exit": "Producing each token from the model's first layers only, skipping the "
                  "rest: faster, and less accurate.",
    "goodput": "The requests per second that met their latency targets: throughput that "
               "counts only answers that came in time.",
    "knee": "The load at which a server stops keeping up: past it, waiting times climb "
            "steeply while throughput barely grows.",
    "estimate": "A number computed from a model of the hardware, not measured: always "
                "labelled so, and never used as a measurement.",
}

_PATTERN = re.compile(
    r"(?<![\w/-])(" + "|".join(re.escape(term) for term in
                               sorted(GLOSSARY, key=len, reverse=True)) + r")(?![\w/-])")


def find(text: str) -> list[tuple[int, int, str]]:
    """(start, end, term) of the first use of each glossary term in `text`, whole words, in
    order (one explanation per term is enough)."""
    found, seen = [], set()
    for match in _PATTERN.finditer(text):
        if match.group(1) not in seen:
            seen.add(match.group(1))
            found.append((match.start(), match.end(), match.group(1)))
    return found


def markdown_section() -> str:
    """The README's Glossary section body: one line per term."""
    return "\n".join(f"- **{term}**: {GLOSSARY[term]}" for term in GLOSSARY)

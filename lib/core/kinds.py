"""Model kinds: what a model does with a request, the one fact every layer branches on.

A causal language model (`CAUSAL_LM`) reads the prompt and then writes tokens one at a time; an
encoder (`ENCODER`) reads the prompt in one forward pass and writes none, so it has no decode,
no time to first token and no KV cache. The catalog sets each entry's kind, saved results
record it, and the backends say which kinds they run.
"""

CAUSAL_LM, ENCODER = "causal-lm", "encoder"
MODEL_KINDS = (CAUSAL_LM, ENCODER)

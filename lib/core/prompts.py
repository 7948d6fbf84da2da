"""Prompts built to an exact token count.

Prefill time depends on how many tokens go in, so "prompt length 64" must mean exactly 64 tokens,
whatever the text. `fit_prompt` wraps the text in the model's chat template when it has one (so a
chat model answers in real words), then cuts or repeats the text inside it until the whole prompt
has exactly the requested number of tokens. It says what it did in `note`, for the page to show.
The built-in prompt keeps its question at the end, so cutting never loses what is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUILTIN_CONTEXT = (
    "Latency is the time a person waits for an answer. A language model answers in two phases. "
    "First it reads the whole prompt at once, which is called prefill; then it writes the answer "
    "one token at a time, which is called decode. Prefill is one big burst of arithmetic, while "
    "each decode step must read every weight of the model from memory again. "
)
BUILTIN_QUESTION = "In two sentences, explain why answering a question takes a computer some time."
# The "quote" kind is the passage repeated as plain text, no question and no chat template: the
# model goes on copying it, so the answer repeats the prompt, which is where speculative decoding
# by prompt lookup pays (a small chat model asked to quote paraphrases instead).
QUOTE = "quote"
MIN_TEMPLATE_ROOM = 8     # below this many tokens for the text itself, skip the chat template
_PLACEHOLDER = "\u2063CONTENT\u2063"


@dataclass(frozen=True)
class FittedPrompt:
    token_ids: tuple[int, ...]
    text_tokens: int           # tokens of the user's (or built-in) text before fitting
    used_chat_template: bool
    note: str | None           # what was done to reach the exact length, in plain words


def fit_prompt(tokenizer: Any, prompt_tokens: int, text: str | None = None,
               kind: str = "chat") -> FittedPrompt:
    """`kind`: the built-in prompt's (chat, or QUOTE); ignored for your own text."""
    if text is None and kind == QUOTE:
        body = _repeat_to(_encode(tokenizer, BUILTIN_CONTEXT), prompt_tokens)
        return FittedPrompt(tuple(body), len(_encode(tokenizer, BUILTIN_CONTEXT)), False,
                            "The quote prompt is the built-in passage repeated as plain text, "
                            "without the chat template: the model goes on copying it.")
    prefix, suffix = _template_parts(tokenizer)
    template_tokens = len(prefix) + len(suffix)
    room = prompt_tokens - template_tokens
    used_template = room >= MIN_TEMPLATE_ROOM
    if not used_template:
        prefix, suffix, room = [], [], prompt_tokens

    if text is None:
        question = _encode(tokenizer, " " + BUILTIN_QUESTION)
        context = _encode(tokenizer, BUILTIN_CONTEXT)
        if room <= len(question):
            body = question[-room:]
        else:
            body = _repeat_to(context, room - len(question)) + question
        note = None
        source_tokens = len(context) + len(question)
    else:
        own = _encode(tokenizer, text)
        source_tokens = len(own)
        if len(own) > room:
            body = own[:room]
            note = (f"Your prompt is {len(own)} tokens; only its first {room} were used so the "
                    f"prompt is exactly {prompt_tokens} tokens. Set the prompt length to "
                    f"{prompt_tokens - room + len(own)} to send all of it.")
        elif len(own) < room:
            body = _repeat_to(own + _encode(tokenizer, " "), room)
            note = (f"Your prompt is {len(own)} tokens; it was repeated to fill {room} tokens so "
                    f"the prompt is exactly {prompt_tokens} tokens.")
        else:
            body, note = own, None
        if used_template:
            note = ((note + " ") if note else "") + (
                f"The chat template adds {prompt_tokens - room} tokens around it.")
    if not used_template and template_tokens:
        note = ((note + " ") if note else "") + (
            f"At {prompt_tokens} tokens the prompt is too short for the model's chat template "
            f"(it needs {template_tokens + MIN_TEMPLATE_ROOM}), so the model sees raw text and "
            "its answer may be nonsense; the timing is still real.")
    ids = tuple(prefix + body + suffix)
    assert len(ids) == prompt_tokens, (len(ids), prompt_tokens)
    return FittedPrompt(ids, source_tokens, used_template, note)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _repeat_to(ids: list[int], length: int) -> list[int]:
    if not ids:
        raise ValueError("cannot repeat an empty prompt")
    times = -(-length // len(ids))
    return (ids * times)[:length]


def _template_parts(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids the chat template puts before and after a user message (empty if none)."""
    if not getattr(tokenizer, "chat_template", None):
        return [], []
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _PLACEHOLDER}], tokenize=False, add_generation_prompt=True)
    before, _, after = rendered.partition(_PLACEHOLDER)
    return _encode(tokenizer, before), _encode(tokenizer, after)

import pytest

from fakes import FakeTokenizer
from lib.core.prompts import BUILTIN_QUESTION, fit_prompt


class TemplatedTokenizer(FakeTokenizer):
    chat_template = "<user>{content}</user><bot>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return f"<user>{messages[0]['content']}</user><bot>"


@pytest.mark.parametrize("length", [8, 9, 50, 300, 4096])
def test_builtin_prompt_has_exact_length_and_keeps_question(length):
    tok = FakeTokenizer()
    fitted = fit_prompt(tok, length)
    assert len(fitted.token_ids) == length
    assert fitted.note is None
    question = tok.encode(" " + BUILTIN_QUESTION)
    tail = question[-length:]
    assert list(fitted.token_ids[-len(tail):]) == tail


def test_long_user_prompt_is_cut_with_a_note():
    fitted = fit_prompt(FakeTokenizer(), 20, "x" * 50)
    assert fitted.token_ids == tuple(FakeTokenizer().encode("x" * 20))
    assert "first 20" in fitted.note and "50 tokens" in fitted.note


def test_short_user_prompt_is_repeated_with_a_note():
    fitted = fit_prompt(FakeTokenizer(), 20, "abc")
    assert len(fitted.token_ids) == 20
    assert "repeated" in fitted.note


def test_chat_template_wraps_the_text_and_is_counted():
    tok = TemplatedTokenizer()
    fitted = fit_prompt(tok, 60, "hello")
    assert fitted.used_chat_template
    assert len(fitted.token_ids) == 60
    assert fitted.token_ids[:6] == tuple(tok.encode("<user>"))
    assert fitted.token_ids[-12:] == tuple(tok.encode("</user><bot>"))
    assert "chat template adds 18 tokens" in fitted.note


def test_too_short_for_template_falls_back_to_plain_text():
    fitted = fit_prompt(TemplatedTokenizer(), 20, "hello")
    assert not fitted.used_chat_template
    assert len(fitted.token_ids) == 20


def test_cut_note_says_how_to_send_everything():
    fitted = fit_prompt(TemplatedTokenizer(), 60, "y" * 100)
    assert "Set the prompt length to 118 to send all of it" in fitted.note


def test_dropping_the_template_is_said():
    fitted = fit_prompt(TemplatedTokenizer(), 20)
    assert "too short for the model's chat template (it needs 26)" in fitted.note

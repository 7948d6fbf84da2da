"""lib.core.text: hostile text is shown as written, in Markdown, HTML and a terminal."""

import pytest

from lib.core import text

HOSTILE = [
    "[Your session expired - click here](https://evil.example/login)",
    "![x](https://tracker.example/pixel.png)",
    "https://evil.example/bare",
    ":red[alarm] :material/warning: $x^2$",
    "<script>alert(1)</script> **bold** `code` # heading",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_md_escapes_every_punctuation_character(value):
    escaped = text.md(value)
    # Every punctuation character is preceded by a backslash, so no Markdown construct can form.
    for i, char in enumerate(escaped):
        if char in "[]()!:<>*`#$" and (i == 0 or escaped[i - 1] != "\\"):
            pytest.fail(f"{char!r} unescaped at {i} in {escaped!r}")
    assert escaped.replace("\\", "").replace("\u2060", "") == value.replace("\\", "")


@pytest.mark.parametrize("address", ["http://evil.example/a", "see www.evil.example/b",
                                     "WWW.evil.example", "x@evil.example"])
def test_md_breaks_every_bare_address_streamlit_would_link(address):
    """Streamlit links `www.`, `scheme://` and `name@host` in text it has already unescaped:
    a word joiner inside each pattern keeps it text."""
    shown = text.md(address).replace("\\", "")
    for pattern in ("://", "www.", "x@"):
        assert pattern not in shown.lower()
    assert shown.replace("\u2060", "") == address


def test_md_renders_back_to_the_original_text():
    markdown_it = pytest.importorskip("markdown_it")
    value = HOSTILE[0]
    html = markdown_it.MarkdownIt().render(text.md(value))
    assert "<a" not in html and "evil.example/login" in html


def test_html_escapes_tags_and_quotes():
    assert text.html('<a href="x">y</a>') == "&lt;a href=&quot;x&quot;&gt;y&lt;/a&gt;"


def test_terminal_strips_escape_sequences_and_controls_keeps_newlines():
    note = "a\x1b[2J\x1b]0;pwned\x07b\x1b[31mred\x1b[0m\tc\nd\x07\u202eevil"
    assert text.terminal(note) == "abred\tc\ndevil"


def test_one_line_folds_and_clips():
    assert text.one_line("a\n\nb  c") == "a b c"
    assert text.one_line("x" * 300, limit=10) == "x" * 9 + "…"


def test_bytes_that_were_not_utf8_show_as_replacement_characters():
    import os
    typed = "caf" + os.fsdecode(b"\xff\xfe")          # how Python hands over such a command line
    assert text.terminal(typed) == "caf\ufffd\ufffd"
    assert text.md(typed).encode("utf-8") and text.html(typed).encode("utf-8")

"""Text from outside the app, made safe to show: in the browser, in charts, in a terminal.

Anything a person typed, a link carried, an import held or a model file said (a model id, a note,
a path, an error message that quotes one of those) may contain Markdown, HTML or terminal escape
sequences. Shown raw, a model id like `[Session expired](https://evil.example)` becomes a
clickable link in an error box, `![](https://tracker.example/x.png)` makes every viewer's
browser fetch an image, and `\x1b]0;title\x07` in a note retitles the terminal that prints it.

One rule, one helper per medium:
- `md(value)`: for Streamlit calls that render Markdown (`st.error`, `st.caption`,
  `st.markdown`, headers, expander labels). Every ASCII punctuation character is
  backslash-escaped (CommonMark renders `\\x` as `x`), which also disarms Streamlit's own
  extensions (`:red[...]`, `:material/...:`, `$...$`); bare addresses (`www.`, `http://`,
  `name@host`), which Streamlit links after unescaping, get an invisible word joiner inside.
- `html(value)`: for Plotly labels, legends and hover text, which render a subset of HTML
  (`<a href>`, `<img>` is not, but `<b>`, `<br>` are).
- `terminal(value)`: for everything the CLI prints: escape sequences and other control
  characters removed, newlines and tabs kept.
All three first drop control characters (except newline and tab) and Unicode direction
overrides, which can make text read differently from what it is, and show lone surrogates (bytes
that were not UTF-8, as Python hands over a command line's or a file name's) as U+FFFD: they
can't be encoded as UTF-8, so a terminal or a browser can't be given them as they are.
Lib's own messages are plain text by contract (the CLI prints them as they are), so the web app
escapes whole messages with `md()`; page code writes Markdown only around escaped values.
"""

from __future__ import annotations

import html as _html
import re
import string

# C0 and C1 controls except \t and \n, DEL, and the bidirectional overrides/isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# ANSI/VT escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte ones.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
                     r"|\x9b[0-?]*[ -/]*[@-~]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_WWW = re.compile(r"(?i)(w)(ww\.)")


def clean(value: object) -> str:
    """`str(value)` without escape sequences and control characters (newline and tab kept)."""
    text = value if isinstance(value, str) else str(value)
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", _ESCAPE.sub("", text)))


def md(value: object) -> str:
    """Shown by a Markdown renderer exactly as written: no links, images, formatting or icons.
    Escaping is not enough for bare addresses: Streamlit's Markdown links `www.`, `http://`
    and `name@host` in the text it has already unescaped, so an invisible word joiner
    (U+2060) goes inside each of those patterns first."""
    text = clean(value).replace("://", ":\u2060//").replace("@", "\u2060@")
    return _MD_SPECIAL.sub(r"\\\1", _WWW.sub("\\1\u2060\\2", text))


def html(value: object) -> str:
    """Shown by an HTML-subset renderer (Plotly) exactly as written."""
    return _html.escape(clean(value), quote=True)


def terminal(value: object) -> str:
    """Printed to a terminal exactly as written, without anything that would control it."""
    return clean(value)


def one_line(value: object, limit: int = 200) -> str:
    """A value for a single line of a message: newlines folded into spaces, long text clipped."""
    text = " ".join(clean(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

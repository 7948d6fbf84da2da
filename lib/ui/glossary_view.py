"""Glossary terms explained on hover: any text the pages show through `hovered` gets each
technical term (`lib.core.glossary`) underlined with a dotted line, its explanation shown when
the pointer rests on it (a CSS tooltip drawn from the term's `data-tip`, so it shows in every
browser and on a projector alike).

Safe with any text: every piece of it is escaped for Markdown (`lib.core.text.md` puts a
backslash before every punctuation mark, `<` included, so nothing in it can open a tag), and
only this module's own span, with the glossary's own words in its attribute, is markup.
"""

from __future__ import annotations

import html

import streamlit as st

from lib.core import glossary, text

CSS = """
<style>
.ile-term { border-bottom: 1px dotted currentColor; cursor: help; position: relative; }
.ile-term:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 1.6em;
  z-index: 1000; width: max-content; max-width: 22rem; padding: 0.45rem 0.6rem;
  background: #262730; color: #fff; border-radius: 0.4rem; font-size: 0.9rem;
  font-weight: normal; line-height: 1.35; white-space: normal; }
</style>
"""


def hovered(value: object) -> str:
    """`value` as Markdown-and-HTML-safe text, its glossary terms wrapped for hover."""
    plain = text.clean(value)
    pieces, at = [], 0
    for start, end, term in glossary.find(plain):
        pieces.append(text.md(plain[at:start]))
        tip = html.escape(f"{term}: {glossary.GLOSSARY[term]}", quote=True)
        pieces.append(f'<span class="ile-term" data-tip="{tip}">{text.md(term)}</span>')
        at = end
    pieces.append(text.md(plain[at:]))
    return "".join(pieces)


def markdown(value: object, container=st, heading: int = 0) -> None:
    """Show `value` (plain text) with its terms explained on hover; `heading`: as a heading
    of that level (1-4)."""
    prefix = "#" * heading + " " if heading else ""
    paragraphs = [hovered(part) for part in text.clean(value).split("\n\n")]
    container.markdown(CSS + "\n\n".join(prefix + part for part in paragraphs),
                       unsafe_allow_html=True)


def own(markdown_text: str, container=st) -> None:
    """The app's own Markdown (a page's introduction: formatting kept, never user text), with
    its terms explained on hover."""
    pieces, at = [], 0
    for start, end, term in glossary.find(markdown_text):
        tip = html.escape(f"{term}: {glossary.GLOSSARY[term]}", quote=True)
        pieces += [markdown_text[at:start],
                   f'<span class="ile-term" data-tip="{tip}">{markdown_text[start:end]}</span>']
        at = end
    pieces.append(markdown_text[at:])
    container.markdown(CSS + "".join(pieces), unsafe_allow_html=True)


def bullets(sentences: list[str], container=st) -> None:
    """Plain sentences (findings) as a list, their terms explained on hover."""
    if sentences:
        container.markdown(CSS + "\n".join(f"- {hovered(sentence)}" for sentence in sentences),
                           unsafe_allow_html=True)

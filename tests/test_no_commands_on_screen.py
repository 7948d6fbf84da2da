"""No screen tells a browser user to run a terminal command (the CLI and the README may).

Scans every string the pages and the UI modules write (docstrings aside), the settings' labels
and help texts (the widgets show them), the catalog's descriptions (the sidebar shows them) and
the stacks' and formats' words. Messages that lib shares with the CLI keep their command in
`ExplorerError.cli_hint`, which only the CLI prints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lib.models import catalog
from lib.core.spec import RunSpec, field_info
from lib.core.stacks import FORMATS, STACKS

ROOT = Path(__file__).resolve().parent.parent
SCREEN_FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"),
                       *(ROOT / "lib" / "ui").glob("*.py")])
COMMAND = re.compile(r"python -m|scripts/|setup\.sh|pip install|streamlit run")


def screen_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


@pytest.mark.parametrize("path", SCREEN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_and_ui_write_no_command(path):
    assert [s for s in screen_strings(path) if COMMAND.search(s)] == []


def test_the_scan_finds_a_command_where_there_is_one(tmp_path):
    page = tmp_path / "page.py"
    page.write_text('"""Docs may cite python -m lib run."""\nst.error(f"run {x} with '
                    'scripts/setup.sh --stacks")\n')
    assert [s for s in screen_strings(page) if COMMAND.search(s)] == \
        [" with scripts/setup.sh --stacks"]


def test_settings_catalog_and_stack_words_name_no_command():
    import dataclasses

    words = [field_info(f.name)[key] or "" for f in dataclasses.fields(RunSpec)
             for key in ("label", "help")]
    words += [entry.description for entry in catalog.CATALOG.values()]
    words += [s.words for s in STACKS.values()] + [f.words for f in FORMATS.values()]
    words += [s.missing_reason() for s in STACKS.values()]
    assert [w for w in words if COMMAND.search(w)] == []

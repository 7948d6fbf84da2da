"""The architecture as a rule: every import in lib/, pages/ and app.py, read from the syntax tree
(imports inside functions too), points down the layers of `lib.LAYERS` or stays in its own
package, and the module graph has no cycle. Also: no module over 400 lines, and lib/ holds
packages, not a pile of flat modules.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import lib

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {package: floor for floor, packages in enumerate(lib.LAYERS) for package in packages}
TOP = len(lib.LAYERS)                     # pages/ and app.py sit above every package
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [*ROOT.glob("lib/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py"]
    return {_module_name(path): path for path in files}


MODULES = _sources()


def _known(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (None: not ours)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def imports_of(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import of ours in `module`, at any depth (read once
    per session: two tests walk the graph)."""
    path = MODULES[module]
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package_parts[:len(package_parts) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            known = _known(target)
            if known and known != module:
                found.append((known, node.lineno))
    return found


def floor_of(module: str) -> tuple[int, str]:
    """(floor, package) of a module: lib.<package>... by LAYERS; pages and app.py on top; the lib
    package itself (its version and LAYERS) and `python -m lib` outside the rule."""
    parts = module.split(".")
    if parts[0] != "lib":
        return TOP, parts[0]
    if len(parts) == 1:
        return -1, "lib"
    if parts[1] == "__main__":
        return TOP, "__main__"
    return FLOOR[parts[1]], parts[1]


def test_every_package_in_lib_is_a_layer():
    packages = {path.parent.name for path in ROOT.glob("lib/*/__init__.py")}
    assert packages == set(FLOOR), "a package in lib/ that lib.LAYERS doesn't place (or the reverse)"


def test_lib_holds_packages_not_flat_modules():
    flat = sorted(path.name for path in ROOT.glob("lib/*.py"))
    assert [name for name in flat if name not in ("__init__.py", "__main__.py")] == []


def test_every_package_says_its_job_and_what_it_may_import():
    for package in FLOOR:
        doc = ast.get_docstring(ast.parse((ROOT / "lib" / package / "__init__.py").read_text()))
        assert doc and "Imports:" in doc, f"lib/{package}/__init__.py: job and 'Imports:' line"


def test_imports_point_down_the_layers():
    wrong = []
    for module in MODULES:
        floor, package = floor_of(module)
        for target, line in imports_of(module):
            target_floor, target_package = floor_of(target)
            if target_package == package or target_floor < floor:
                continue
            wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} "
                         f"({package} may not import {target_package})")
    assert wrong == []


def test_no_import_cycle():
    graph = {module: {target for target, _ in imports_of(module)} for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:                     # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_module_over_400_lines():
    long = {str(path.relative_to(ROOT)): lines for path in MODULES.values()
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_rule_sees_imports_inside_functions(tmp_path):
    """The checker itself: an import inside a function counts like one at the top."""
    code = "def f():\n    from lib.records import store\n"
    imports = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.ImportFrom)]
    assert imports and imports[0].module == "lib.records"
    assert floor_of("lib.records.store")[0] > floor_of("lib.core.spec")[0]
    assert ("lib.records.store", 2) in [
        (_known(f"{node.module}.{alias.name}"), node.lineno)
        for node in imports for alias in node.names]


def test_no_file_refers_to_documents_outside_the_repo():
    """What a maintainer needs lives in the repo (docs/): no citation of the team's notes."""
    outside = ("DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")
    tracked = [path for pattern in ("lib/**/*", "pages/*", "tests/*.py", "benchmarks/*",
                                    "scripts/*", "docs/*", "*.md", "*.py", ".streamlit/*")
               for path in ROOT.glob(pattern) if path.is_file() and ".venv" not in path.parts]
    cited = [f"{path.relative_to(ROOT)}: {name}" for path in tracked
             for name in outside if name in path.read_text(errors="replace")]
    assert cited == []


def test_the_architecture_and_the_readme_name_every_package():
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    for package in FLOOR:
        assert f"| `{package}` |" in architecture, f"docs/ARCHITECTURE.md: the {package} row"
        assert f"{package}/" in layout, f"README's Layout: lib/{package}/"

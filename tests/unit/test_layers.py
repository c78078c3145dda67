"""The package's layers (docs/architecture.md), checked from the source: every import of every module under
src/nslab — at the top, inside functions, under ``TYPE_CHECKING`` — goes to its own layer or a lower one, and
no modules import each other in a circle (lazy imports count: a circle is a circle whenever it closes).
There is no list of exceptions. And ``bench/`` takes nothing from ``tests/`` (no ``sys.path`` tricks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "nslab"

#: Lowest first; a module's layer is named by the first part of its name under ``nslab``.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundation", frozenset({"errors", "values", "records", "paths", "naming", "linux", "model"})),
    ("drivers", frozenset({"drivers"})),
    ("core", frozenset({"core"})),
    ("ns", frozenset({"ns"})),
    ("daemons", frozenset({"daemons"})),
    ("tools", frozenset({"tools"})),
    ("api", frozenset({"lab"})),
    ("cli", frozenset({"cli", "pytest_plugin", "__main__", ""})),  # "": the package itself (__init__.py)
)


def layer(module: str) -> int:
    """The index in :data:`LAYERS` of ``module`` (a dotted name under nslab, "" for the package)."""
    top = module.partition(".")[0]
    for index, (_name, tops) in enumerate(LAYERS):
        if top in tops:
            return index
    raise AssertionError(f"nslab.{module} is in no layer: add its folder to LAYERS (and docs/architecture.md)")


def modules() -> dict[str, Path]:
    """Dotted name under nslab ("" for nslab itself, "core" for core/__init__.py) -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported nslab module, line) for every import statement anywhere in the file. ``from X import a``
    is an import of ``X.a`` when that is a module, else of ``X``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "nslab" or alias.name.startswith("nslab."):
                    yield _known(alias.name[len("nslab."):] if "." in alias.name else "", known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "nslab" or node.module.startswith("nslab.")):
                source = node.module[len("nslab."):] if "." in node.module else ""
            else:
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}" if source else alias.name
                yield (child if child in known else _known(source, known)), node.lineno


def _known(name: str, known: dict[str, Path]) -> str:
    assert name in known, f"import of nslab.{name}, which does not exist"
    return name


def graph() -> dict[str, dict[str, list[int]]]:
    """module -> {imported module: the lines that import it}."""
    known = modules()
    out: dict[str, dict[str, list[int]]] = {}
    for module, path in known.items():
        edges = out.setdefault(module, {})
        for target, line in imports(module, path, known):
            lines = edges.setdefault(target, []) if target != module else []
            if line not in lines:
                lines.append(line)
    return out


def _label(module: str) -> str:
    return f"nslab.{module}" if module else "nslab"


def test_every_module_is_in_a_layer():
    assert all(layer(m) >= 0 for m in modules())  # layer() names a module that is in none


def test_every_import_goes_down_the_layers():
    wrong = [
        f"{_label(m)} ({LAYERS[layer(m)][0]}) imports {_label(t)} ({LAYERS[layer(t)][0]}), line {line}"
        for m, edges in graph().items() for t, lines in edges.items() if layer(t) > layer(m) for line in lines
    ]
    assert not wrong, "imports against the layer order (lowest first: " + ", ".join(n for n, _ in LAYERS) + \
        "):\n" + "\n".join(wrong)


def circles(edges: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Each set of modules that import each other in a circle (a strongly connected component of more than
    one module), as one circle through all of them found by walking the imports. Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _circle_text(component: list[str], edges: dict[str, dict[str, list[int]]]) -> str:
    """``a -> b (line) -> ... -> a``: the shortest way back to the first module, within the component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node]):
            if nxt == start:
                way = paths[node] + [start]
                steps = " -> ".join(f"{_label(a)} (line {edges[a][b][0]})" for a, b in zip(way, way[1:], strict=False))
                return f"{steps} -> {_label(start)}" + (
                    f"; all of {', '.join(map(_label, component))} are in it" if len(component) > len(way) - 1 else "")
            if nxt in members and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"no circle through {component}")


def test_no_import_circles():
    edges = graph()
    found = [_circle_text(c, edges) for c in circles(edges)]
    assert not found, "modules that import each other in a circle (lazy imports included):\n" + "\n".join(found)


def test_circles_and_layers_are_found(tmp_path: Path):
    """The checks above can fail: a circle and an upward import made up here are reported."""
    made_up = {"core.a": {"core.b": [3]}, "core.b": {"core.a": [7, 9]}, "drivers.x": {}}
    assert [_circle_text(c, made_up) for c in circles(made_up)] == [
        "nslab.core.a (line 3) -> nslab.core.b (line 7) -> nslab.core.a"]
    assert layer("drivers.docker") < layer("core.connect") < layer("ns.targets") < layer("lab") < layer("cli.main")
    known = modules()
    sample = PACKAGE / "core" / "connect.py"
    made = tmp_path / "made.py"  # as if it were src/nslab/core/made.py
    made.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..ns.targets import Target\n"
                    "def f():\n    from ..lab import Lab\n    import nslab.tools.check\n    from . import state\n")
    assert sorted(imports("core.made", made, known)) == [("core.state", 7), ("lab", 5), ("ns.targets", 3),
                                                         ("tools.check", 6)]
    found = {t for t, _ in imports("core.connect", sample, known)}
    assert found >= {"errors", "naming", "core.apply", "core.features.containers", "drivers", "model"}


# --- bench/ --------------------------------------------------------------------------------------------------
BENCH = ROOT / "bench"
TESTS = ROOT / "tests"


def _test_modules() -> set[str]:
    """Names a module of tests/ could be imported by, were tests/ on sys.path (``sandbox``, ``conftest``)."""
    names = {"tests"}
    for path in TESTS.rglob("*.py"):
        names.add(path.stem)
    for path in TESTS.rglob("*"):
        if path.is_dir():
            names.add(path.name)
    return names - {"__init__"}


def test_bench_imports_nothing_from_tests():
    from_tests = _test_modules()
    wrong = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for name in names:
                if name.partition(".")[0] in from_tests:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name} (from tests/)")
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                    and node.value.id == "sys":
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: changes or reads sys.path")
    for path in sorted(BENCH.rglob("*.sh")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "PYTHONPATH" in line:
                wrong.append(f"{path.relative_to(ROOT)}:{number}: sets PYTHONPATH")
    assert not wrong, "bench/ must stand on src/nslab and itself:\n" + "\n".join(wrong)

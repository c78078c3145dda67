"""Every module and code name docs/architecture.md cites in backquotes exists in the code.

Read from the source (ast), nothing imported. What counts as a citation, in `backquotes` outside fenced blocks:
- a path: ``core/spec.py``, ``drivers/``, ``tests/sandbox.py``, ``tests/unit`` (a ``.py`` file, a folder with
  a trailing ``/``, or anything under a folder of the repository) — relative to src/nslab or to the
  repository (absolute paths such as ``/run/netns`` name the machine's files, not ours; an all-capitals part
  such as ``NAME`` is a placeholder and the citation is skipped);
- a dotted name: ``nslab.core.features``, ``features.FEATURES``, ``apply._signals_deferred``, ``Lab.up``,
  ``drivers.fake.fake_drivers()`` — a module (named by its trailing dotted parts) and then names inside it,
  or a class and one of its members (file names such as ``nslab.yaml`` are not code; a name nslab does not
  have whose first part is another importable module, such as ``subprocess.run``, is that module's);
- a class name (``Lab``, ``Drivers``) and a call (``plan_up(ctx) -> ...``, ``commands()``): defined somewhere.
Lower-case single words (``up``, ``tc``, ``to_json``) are left alone: they are as often commands as code.
"""

import ast
import importlib.util
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "nslab"

_IDENT = r"[A-Za-z_]\w*"
_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")
_FILES = {"md", "yaml", "yml", "json", "toml", "conf", "txt", "sh", "pyi", "cfg", "ini", "html", "svg", "pcapng"}
_DOTTED = re.compile(rf"^{_IDENT}(\.{_IDENT})+(\(\))?$")
_CLASS = re.compile(r"^[A-Z][a-z]\w*$")
_CALL = re.compile(rf"^({_IDENT})\(")


@dataclass
class Code:
    """The names in src/nslab: each module's top-level names, each class's members, every def and class."""

    modules: dict[str, set[str]] = field(default_factory=dict)  # "nslab.core.apply" -> top-level names
    members: dict[str, set[str]] = field(default_factory=dict)  # class name -> members (all classes of that name)
    defined: set[str] = field(default_factory=set)  # every function, method and class name

    @classmethod
    def read(cls, package: Path) -> "Code":
        code = cls()
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            tree = ast.parse(path.read_text())
            code.modules[module] = _names(tree.body)
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    code.members.setdefault(node.name, set()).update(_names(node.body))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    code.defined.add(node.name)
        return code

    def has_dotted(self, dotted: str) -> bool:
        parts = dotted.removesuffix("()").split(".")
        for module, names in self.modules.items():
            mparts = module.split(".")
            for size in range(len(parts), 0, -1):
                if mparts[-size:] == parts[:size]:
                    rest = parts[size:]
                    if not rest or (rest[0] in names and (len(rest) == 1 or self._member(rest[0], rest[1:]))):
                        return True
        return parts[0] in self.members and self._member(parts[0], parts[1:])

    def _member(self, klass: str, rest: list[str]) -> bool:
        return len(rest) == 1 and rest[0] in self.members.get(klass, set())


def _names(body: list[ast.stmt]) -> set[str]:
    """The names a module or class body defines: defs, classes, assignments, imports."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def citations(markdown: str) -> list[str]:
    """The backquoted spans of a Markdown text, fenced code blocks left out."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"`([^`\n]+)`", prose)


def _is_path(cited: str, root: Path) -> bool:
    if not _PATH.match(cited):
        return False
    return cited.endswith((".py", "/")) or ("/" in cited and (root / cited.split("/")[0]).is_dir())


def _elsewhere(dotted: str) -> bool:
    """Whether ``dotted`` starts with a module that is not nslab's (the standard library, a dependency)."""
    first = dotted.split(".")[0]
    return first != "nslab" and importlib.util.find_spec(first) is not None


def missing(markdown: str, code: Code, package: Path = PACKAGE, root: Path = ROOT) -> list[str]:
    """The citations in ``markdown`` that name nothing in the code, each once, in order."""
    out: list[str] = []
    for cited in dict.fromkeys(citations(markdown)):
        if _is_path(cited, root):
            if any(re.fullmatch(r"[A-Z]+(\.py)?", part) for part in cited.split("/")):
                continue
            found = (package / cited).exists() or (root / cited).exists()
        elif _DOTTED.match(cited):
            if cited.rsplit(".", 1)[1] in _FILES:
                continue
            found = code.has_dotted(cited.removeprefix("nslab.")) or _elsewhere(cited)
        elif call := _CALL.match(cited):
            found = call.group(1) in code.defined
        elif _CLASS.match(cited):
            found = cited in code.defined
        else:
            continue
        if not found:
            out.append(cited)
    return out


def test_every_name_cited_in_the_architecture_exists():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert missing(doc, Code.read(PACKAGE)) == []


def test_the_check_finds_names_that_do_not_exist():
    doc = textwrap.dedent("""
    Real: `core/apply.py`, `drivers/`, `tests/sandbox.py`, `apply._signals_deferred`, `Lab.up`, `Drivers`,
    `nslab.core.features`, `features.FEATURES`, `drivers.fake.fake_drivers()`, `commands()`, `/run/netns`,
    `core/features/NAME.py`, `up`, `ip netns`, `tests/unit`, `README.md`, `nslab.yaml`, `subprocess.run`,
    `tcp/80`.
    Wrong: `apply.py`, `core/nothing.py`, `nowhere/`, `apply._gone`, `Lab.fly`, `Nobody`, `nslab.core.nope`,
    `features.NOPE`, `vanished(ctx) -> X`, `tests/nowhere`.
    ```
    `core/in_a_fence.py`
    ```
    """)
    assert missing(doc, Code.read(PACKAGE)) == [
        "apply.py", "core/nothing.py", "nowhere/", "apply._gone", "Lab.fly", "Nobody", "nslab.core.nope",
        "features.NOPE", "vanished(ctx) -> X", "tests/nowhere",
    ]

"""The project's documentation as the acceptance tests read it: README.md and docs/*.md, their fenced code
blocks (with the file and line each starts on) and their headings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^([ \t]*)```(\S*)[^\n]*\n(.*?)^\1```[ \t]*$", flags=re.S | re.M)


def doc_files() -> list[Path]:
    """README.md, then every docs/*.md in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of one file (an indented one, in a list item, with its indent removed)."""
    source = path.read_text()
    out = []
    for m in FENCE.finditer(source):
        indent = m.group(1)
        lines = m.group(3).splitlines(keepends=True)
        text = "".join(line[len(indent):] if line.startswith(indent) else line for line in lines)
        out.append(Block(path, source.count("\n", 0, m.start()) + 1, m.group(2), text))
    return out


def code_blocks(language: str) -> list[Block]:
    """Every ```LANGUAGE block of the documentation, in file order."""
    return [b for path in doc_files() for b in blocks_of(path) if b.language == language]


def without_fences(source: str) -> str:
    """The text with every fenced block blanked out (line numbers kept): a `# comment` in a block is no heading."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), source)

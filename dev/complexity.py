"""Fail when a function or method is above cyclomatic complexity 15, as radon counts it.

`radon cc` only grades (C is 11-20), so this checks the numbers. Classes are not checked: radon's score for a
class is a summary of its methods, which are checked one by one. Usage: complexity.py FOLDER|FILE...
"""

import sys
from pathlib import Path

from radon.complexity import add_inner_blocks, cc_visit
from radon.visitors import Function

LIMIT = 15


def too_complex(where: Path) -> list[str]:
    found = []
    for path in sorted(where.rglob("*.py")) if where.is_dir() else [where]:
        for block in add_inner_blocks(cc_visit(path.read_text())):
            if isinstance(block, Function) and block.complexity > LIMIT:
                found.append(f"{path}:{block.lineno}: {block.fullname} has complexity {block.complexity} > {LIMIT}")
    return found


def main(paths: list[str]) -> int:
    found = [line for where in paths for line in too_complex(Path(where))]
    print("\n".join(found) or f"complexity: every function <= {LIMIT}", file=sys.stderr if found else sys.stdout)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

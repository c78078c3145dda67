"""Issue 13, done when: the corpus of bad lab files and arguments (tests/unit/test_bad_inputs.py) through the
real CLI and the real drivers, in a throwaway host: exit 2, one line per problem with file:line and field,
no traceback, and the machine unchanged."""

from __future__ import annotations

from test_bad_inputs import ARGS, FILES

from labs import nslab
from sandbox import sh


def machine() -> str:
    """Links, namespaces, rules, lab state and /etc/netns (not /run/nslab/.lock: the machine lock)."""
    return sh("ip -o link; ip netns list; nft list ruleset; ls /run/nslab /etc/netns").stdout


def test_every_bad_input_exits_2_with_file_line_field_and_changes_nothing(host, tmp_path):
    before = machine()
    path = tmp_path / "lab.yaml"
    failures = []
    for text, expected in FILES:
        path.write_text(text)
        result = nslab("up", "-f", str(path), check=False)
        lines = result.stderr.strip().splitlines()
        wanted = [f"nslab: {path}:{n}: {field}" for n, field in expected]
        if (result.returncode != 2 or "Traceback" in result.stderr or len(lines) != len(wanted)
                or not all(line.startswith(w) for line, w in zip(lines, wanted, strict=False))):
            failures.append(f"{text!r}: exit {result.returncode}\n{result.stderr}")
    for argv in ARGS:
        result = nslab(*argv, check=False, cwd=tmp_path)
        if result.returncode != 2 or "Traceback" in result.stderr or not result.stderr.strip():
            failures.append(f"nslab {' '.join(argv)}: exit {result.returncode}\n{result.stderr}")
    assert not failures, "\n".join(failures)
    assert len(FILES) + len(ARGS) >= 60
    assert machine() == before

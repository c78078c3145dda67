"""Issue 13: `-o json|yaml` on the read commands that probe (`check`, `doctor`), `--json` kept as the alias of
`-o json` (real kernel, throwaway host)."""

from __future__ import annotations

import json

import yaml

from labs import nslab

LAB = "name: ro\nnetworks: {n: {internal: true}}\nhosts:\n  a: {networks: [n]}\n  b: {networks: [n]}\n"


def test_check_and_doctor_print_the_same_document_as_json_or_yaml(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    try:
        as_json = json.loads(nslab("check", "ro", "--json", "--timeout", "3").stdout)
        as_yaml = yaml.safe_load(nslab("check", "ro", "-o", "yaml", "--timeout", "3").stdout)
        assert as_yaml["lab"] == as_json["lab"] == "ro"
        cells = {(c["source"], c["target"], c["reachable"]) for c in as_yaml["cells"]}
        assert ("a", "b", True) in cells and cells == {(c["source"], c["target"], c["reachable"])
                                                          for c in as_json["cells"]}
        assert json.loads(nslab("check", "ro", "-o", "json", "--timeout", "3").stdout)["cells"]
        doc = nslab("doctor", "ro", "-o", "yaml", check=False)
        assert doc.returncode in (0, 1) and "findings" in yaml.safe_load(doc.stdout), doc.stderr
        both = nslab("check", "ro", "--json", "-o", "yaml", check=False)
        assert both.returncode == 2 and "--json is -o json" in both.stderr
    finally:
        nslab("down", "ro")


DUAL = """\
name: rd
networks:
  front: {subnet: 10.81.0.0/24, subnet6: "fd00:81::/64"}
  back: {subnet: 10.81.1.0/24, subnet6: "fd00:81:1::/64", internal: true}
hosts:
  web: {networks: [front, back], publish: ["6000:80"]}
"""


def _on_a_terminal(*args: str, columns: int) -> str:
    """``nslab ARGS`` with its stdout on a terminal ``columns`` wide (a pty): what a person sees."""
    import os
    import pty
    import subprocess

    from labs import NSLAB

    leader, follower = pty.openpty()
    proc = subprocess.run([NSLAB, *args], stdout=follower, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "COLUMNS": str(columns)}, timeout=60)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_up_and_status_show_both_families_routes_once_and_fit_the_terminal(labs):
    path = labs.write(DUAL)
    up = nslab("up", "-f", str(path)).stdout
    row = next(line.split() for line in up.splitlines() if line.startswith("web "))
    assert row[3] == "10.81.0.2/24" and row[4].startswith("fd00:81::") and row[5] == "front"  # both families

    piped = nslab("status", "rd").stdout  # piped: whole rows, each names its host
    rows = [line for line in piped.splitlines() if line.startswith("web ")]
    assert len(rows) == 2 and "default via 10.81.0.1" in rows[0]
    assert " via " not in rows[1] and "fd00:81:1:" in rows[1]  # routes once per host, not on every row
    (published,) = [line.split() for line in piped.splitlines() if line.startswith("*:6000")]
    assert published[:2] == ["*:6000", "[::]:6000"] and published[-1].startswith("[fd00:81::")

    seen = _on_a_terminal("status", "rd", columns=100)
    assert max(len(line) for line in seen.splitlines()) <= 100 and "…" not in seen
    assert any(line.split() == ["default", "via", "fd00:81::1"] for line in seen.splitlines())  # a line of its own
    assert "fe80::" not in seen  # link-local routes: the kernel's, every interface has one
    wide = _on_a_terminal("status", "rd", "--wide", columns=100)
    assert any(len(line) > 100 for line in wide.splitlines())  # --wide: whole rows

"""The summary `nslab up` prints: a rich table for small labs, plain aligned columns for big ones."""

from __future__ import annotations

from nslab.cli import render
from nslab.lab import Lab


def _lab(hosts: int):
    body = "".join(f"  h{i}: {{networks: [lan]}}\n" for i in range(1, hosts + 1))
    return Lab.from_text(f"name: t\nnetworks:\n  lan: {{subnet: 10.60.0.0/16}}\nhosts:\n{body}  solo: {{}}\n").resolve()


def test_big_lab_is_printed_as_plain_columns(capsys):
    render.up_table(_lab(render.PLAIN_ROWS + 10), changed=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "lab t"
    assert lines[1].split() == ["host", "namespace", "interface", "address", "on"]
    assert lines[3].split() == ["h1", "t-h1", "eth0", "10.60.0.2/16", "network", "lan"]
    assert lines[-1].split() == ["solo", "t-solo", "lo", "127.0.0.1/8", "(loopback", "only)"]
    assert len(lines) == 3 + render.PLAIN_ROWS + 11
    assert len({line.index("t-h") for line in lines[3:-1]}) == 1  # aligned


def test_small_lab_keeps_the_rich_table(capsys):
    render.up_table(_lab(2), changed=False)
    out = capsys.readouterr().out
    assert "lab t (already up to date)" in out and "t-h2" in out and "(loopback only)" in out

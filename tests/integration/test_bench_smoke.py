"""The benchmark suite (bench/) runs end to end at its smallest size. No timing is asserted here: this only
proves that `python -m bench` produces its table rows (the numbers are for bench/README.md's readers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_smallest_run_prints_the_table(host):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "10", "--repeat", "1", "--exec-calls", "3", "--skip", "publish,ls",
         "--scale-networks", "1", "2", "--scale-per-network", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    labels = [row.split(" | ")[0] for row in rows]
    for expected in ("up N=10", "down N=10", "`nslab exec HOST true`", "API `exec_host", "resident processes",
                     "`nslab up`, 6 hosts (2 networks of 3)"):
        assert any(expected in label for label in labels), f"no row {expected!r} in:\n{result.stdout}"
    assert not any("error:" in row for row in rows), result.stdout
    assert "real machine: unchanged" in result.stdout

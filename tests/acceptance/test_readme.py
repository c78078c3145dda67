"""The documentation's scenarios, exactly as written there (README.md or docs/*.md), end to end through the CLI
and the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from docblocks import Block, code_blocks

NSLAB = str(Path(sys.executable).parent / "nslab")


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, **kwargs)


def demo_lab() -> str:
    """The lab file of the README's tour: the one block that starts with `# nslab.yaml`."""
    (block,) = [b for b in code_blocks("yaml") if b.text.startswith("# nslab.yaml")]
    return block.text


def python_examples(keep) -> list[Block]:
    found = [b for b in code_blocks("python") if keep(b.text)]
    assert found, "no such Python example in README.md or docs/*.md"
    return found


def test_readme_lab_file_and_commands(host, tmp_path):
    (tmp_path / "nslab.yaml").write_text(demo_lab())

    dry = run(NSLAB, "up", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "ip netns add demo-web1" in dry.stdout
    up = run(NSLAB, "up", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    for promised in ("demo-web1", "10.80.1.20/24", "eth1"):
        assert promised in up.stdout

    assert run("ip", "netns", "exec", "demo-web1", "ping", "-c1", "-W1", "10.80.1.20").returncode == 0
    assert run("nsenter", "--net=/run/netns/demo-db", "ip", "link", "show", "eth1").returncode == 0
    assert "alias nslab:demo:net:front" in run("ip", "link", "show").stdout
    doc = json.loads(run(NSLAB, "status", "--json").stdout)
    assert doc["version"] == 1 and doc["labs"][0]["name"] == "demo"
    assert run(NSLAB, "exec", "web1", "--", "ping", "-c1", "-W1", "web2").returncode == 0  # the tour's exec
    assert run(NSLAB, "exec", "web1", "--", "sh", "-c", "exit 5").returncode == 5

    assert run(NSLAB, "down", "-f", "nslab.yaml", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in Path("/run/netns").iterdir()) == ["wan"]


def test_readme_python_api(host, tmp_path):
    """Every copy of the API example (the README's tour, docs/api.md) runs as written."""
    (tmp_path / "nslab.yaml").write_text(demo_lab())
    for example in python_examples(lambda text: "Lab.load(" in text and "fake_drivers" not in text):
        result = run(sys.executable, "-c", example.text, cwd=tmp_path)
        assert result.returncode == 0, f"{example.where}: {result.stderr}"
        first_line = result.stdout.splitlines()[0]
        assert first_line.startswith("0 PING 10.80.1.20"), example.where
        assert sorted(p.name for p in Path("/run/netns").iterdir()) == ["wan"], example.where


def test_readme_lab_over_fake_drivers(tmp_path):
    """The example of a lab over fake drivers: no root, nothing made on the machine."""
    (tmp_path / "nslab.yaml").write_text(demo_lab())
    for example in python_examples(lambda text: "fake_drivers" in text):
        result = run(sys.executable, "-c", example.text, cwd=tmp_path)
        assert result.returncode == 0, f"{example.where}: {result.stderr}"
        assert result.stdout.strip() == str(["demo-db", "demo-lonely", "demo-web1", "demo-web2"]), example.where

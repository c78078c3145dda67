"""The README's scenarios, exactly as written there, end to end through the CLI and the API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
NSLAB = str(Path(sys.executable).parent / "nslab")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, **kwargs)


def test_readme_lab_file_and_commands(host, tmp_path):
    (lab_text,) = [b for b in code_blocks("yaml") if b.startswith("# nslab.yaml")]
    (tmp_path / "nslab.yaml").write_text(lab_text)

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
    assert run(NSLAB, "exec", "web1", "--", "sh", "-c", "exit 5").returncode == 5

    assert run(NSLAB, "down", "-f", "nslab.yaml", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in Path("/run/netns").iterdir()) == ["wan"]


def test_readme_python_api(host, tmp_path):
    (lab_text,) = [b for b in code_blocks("yaml") if b.startswith("# nslab.yaml")]
    (tmp_path / "nslab.yaml").write_text(lab_text)
    (api_example,) = [b for b in code_blocks("python") if "Lab.load" in b and "fake_drivers" not in b]
    result = run(sys.executable, "-c", api_example, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("0 PING 10.80.1.20")
    assert sorted(p.name for p in Path("/run/netns").iterdir()) == ["wan"]


def test_readme_lab_over_fake_drivers(tmp_path):
    """The README's example of a lab over fake drivers: no root, nothing made on the machine."""
    (lab_text,) = [b for b in code_blocks("yaml") if b.startswith("# nslab.yaml")]
    (tmp_path / "nslab.yaml").write_text(lab_text)
    (example,) = [b for b in code_blocks("python") if "fake_drivers" in b]
    result = run(sys.executable, "-c", example, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(["demo-db", "demo-lonely", "demo-web1", "demo-web2"])

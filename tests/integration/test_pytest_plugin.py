"""The pytest plugin: the README's example test, exactly as written there, runs green with ``pytest`` inside a
throwaway host and leaves nothing behind; a failing test still takes its lab down; names are unique."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_impair import private_resolver

from nslab.pytest_plugin import unique_name

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_file(language: str, first_line: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


@pytest.fixture
def project(host, tmp_path):
    private_resolver(tmp_path)
    work = tmp_path / "project"
    work.mkdir()
    (work / "lab.yaml").write_text(readme_file("yaml", "# lab.yaml"))
    (work / "client.py").write_text(readme_file("python", "# client.py"))
    return work


def pytest_run(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=directory,
                          capture_output=True, text=True)


def nothing_left() -> list[str]:
    left = [p.name for p in Path("/run/netns").iterdir() if p.name != "wan"]
    left += [p.name for p in Path("/run/nslab").iterdir() if not p.name.startswith(".")]
    left += [p for p in os.listdir("/proc") if p.isdigit() and _is_nslab_process(p)]
    return left


def _is_nslab_process(pid: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nslab.daemons.delayer" in cmdline or b"nslab.daemons.supervise" in cmdline


def test_readme_example_runs_green_and_leaves_nothing(project):
    (project / "test_retry.py").write_text(readme_file("python", "# test_retry.py"))
    result = pytest_run(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert nothing_left() == []


def test_a_failing_test_still_takes_its_labs_down(project):
    (project / "test_fails.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.nslab('lab.yaml')\n"
        "def test_fails(nslab_lab, nslab_labs):\n"
        "    other = nslab_labs(open('lab.yaml').read())\n"
        "    assert other.name != nslab_lab.name and nslab_lab.name.startswith('retry-')\n"
        "    nslab_lab.impair('client', delay=10)\n"
        "    assert False, 'on purpose'\n"
    )
    result = pytest_run(project)
    assert result.returncode == 1 and "on purpose" in result.stdout, result.stdout + result.stderr
    assert nothing_left() == []


def test_unique_names_are_valid_lab_names():
    from nslab.core.spec import LAB_NAME

    names = {unique_name("a-very-long-lab-name") for _ in range(50)}
    assert len(names) == 50 and all(LAB_NAME.fullmatch(n) for n in names)
    assert LAB_NAME.fullmatch(unique_name("ab-cd"))


def test_two_sessions_at_once_bring_the_same_lab_file_up_without_colliding(project):
    """What ``pytest -n 2`` does: two processes, the same lab file, at the same time."""
    (project / "test_retry.py").write_text(readme_file("python", "# test_retry.py"))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "partition"]
    runs = [subprocess.Popen(argv, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert nothing_left() == []


def test_a_marker_naming_a_missing_file_fails_in_one_line(project):
    (project / "test_missing.py").write_text(
        'import pytest\n\n@pytest.mark.nslab("nope.yaml")\ndef test_x(nslab_lab):\n    pass\n')
    result = pytest_run(project, "test_missing.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"nslab: no lab file {project / 'nope.yaml'} (a relative path is taken from the test's folder)" \
        in result.stdout
    assert "Traceback" not in result.stdout and "raise " not in result.stdout, result.stdout

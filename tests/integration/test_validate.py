"""Issue 24 item 7: ``nslab validate`` and ``nslab config`` as a user who is not root (uid 65534, in a
throwaway host): every problem at once and exit 2, or exit 0; nothing written anywhere."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from labs import NSLAB, nslab
from nslab import paths

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
GOOD = """\
name: val
networks: {front: {}}
hosts:
  web: {networks: [front], run: exec sleep 100, resources: {memory: 64M, cpus: 0.5, pids: 100}}
  db: {networks: [front]}
"""
BAD = """\
name: val
networks: {front: {subnet: 10.300.0.0/24}}
hosts:
  web: {networks: [front, nope], resources: {memory: 1k}}
  db: {networks: [front], bogus: 1}
"""


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AS_NOBODY, NSLAB, *args], capture_output=True, text=True, cwd=cwd)


def tree(*roots: str) -> set[str]:
    """Every path under ``roots``, and under /tmp those of uid 65534 (other processes write there too)."""
    found = {os.path.join(d, f) for root in roots for d, dirs, files in os.walk(root) for f in files + dirs}
    found |= {os.path.join(d, f) for d, dirs, files in os.walk("/tmp") for f in files + dirs
              if _owner(os.path.join(d, f)) == 65534}
    return found


def _owner(path: str) -> int | None:
    try:
        return os.lstat(path).st_uid
    except FileNotFoundError:  # another process's file, gone meanwhile
        return None


def test_validate_and_config_as_nobody_write_nothing(host, tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    folder.chmod(0o777)  # nobody could write here: it must not
    (folder / "good.yaml").write_text(GOOD)
    (folder / "bad.yaml").write_text(BAD)
    before = tree(str(folder), paths.state_root())
    bad = as_nobody("validate", "-f", "bad.yaml", cwd=folder)
    assert bad.returncode == 2, bad.stderr
    problems = [line for line in bad.stderr.splitlines() if line.startswith("nslab: bad.yaml:")]
    assert [p.split(":")[2] for p in problems] == ["2", "4", "4", "5"], bad.stderr
    for what in ("networks.front.subnet", "hosts.web.resources.memory", "hosts.web.networks.nope", "hosts.db.bogus"):
        assert what in bad.stderr
    assert "skipped (needs root)" in bad.stderr and "Traceback" not in bad.stderr
    good = as_nobody("validate", "-f", "good.yaml", cwd=folder)
    assert good.returncode == 0 and "lab val is valid" in good.stdout, good.stderr
    rendered = as_nobody("config", "-f", "good.yaml", "-o", "json", cwd=folder)
    assert rendered.returncode == 0, rendered.stderr
    lab = json.loads(rendered.stdout)
    assert lab["hosts"]["web"]["resources"] == {"memory": 64 << 20, "cpus": 0.5, "pids": 100}
    assert lab["hosts"]["db"]["interfaces"][0]["address"].endswith("/24")
    assert as_nobody("config", "-f", "bad.yaml", cwd=folder).returncode == 2
    assert tree(str(folder), paths.state_root()) == before


def test_validate_as_root_checks_the_machine(host, tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    result = nslab("validate", "-f", str(tmp_path / "good.yaml"))
    assert "skipped" not in result.stderr and "lab val is valid" in result.stdout
    assert "name: val" in nslab("config", "-f", str(tmp_path / "good.yaml")).stdout

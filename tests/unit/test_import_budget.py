"""The fast paths' import budget: each runs in a fresh interpreter, over the fakes, and must not have imported
what it does not need (pydantic + PyYAML ~200 ms, click ~30 ms, rich ~40 ms: more than the work itself).

- ``exec``: the CLI's fast path and the modules that enter a namespace: none of the heavy libraries, nor
  typing, re, json, threading, subprocess, dataclasses, ctypes (linux.py uses _ctypes; see cli/fast_exec.py),
  nor the rest of the CLI, the pipeline's package, the exception tree (until something fails), fcntl, warnings;
- ``up`` of a lab file kept by core/kept.py (a new lab and an unchanged one) and ``down``, over the fakes:
  no pydantic, PyYAML, click or rich, nor subprocess, shutil, pathlib or hashlib;
- ``status`` and ``status --json``: no pydantic, PyYAML, click or rich.

Nothing here is timed: the modules loaded are what can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("pydantic", "pydantic_core", "yaml", "click", "rich", "annotated_types")
#: what up and down of a kept lab file do not run either (no command is spawned; no tree is copied)
UPDOWN_NEVER = (*HEAVY, "subprocess", "shutil", "pathlib", "hashlib")
EXEC_NEVER = (*HEAVY, "typing", "re", "json", "threading", "subprocess", "dataclasses", "ipaddress", "ctypes")

LAB = """\
name: budget
networks:
  lan: {subnet: 10.83.0.0/24}
hosts:
  web:
    networks: [lan]
    publish: ["6000:80"]
    run: exec sleep 1000
  db:
    networks: [lan]
links:
  - [web, db]
"""

_REPORT = """
import json, sys
print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1].split(","))))
"""


_REPORT_PLAIN = """
import sys
watched = sys.argv[1].split(",")
print("MODULES [" + ", ".join('"%s"' % m for m in sorted(sys.modules) if m.split(".")[0] in watched) + "]")
"""


def _loaded(body: str, watch: tuple[str, ...], state: str, *, report_json: bool = True) -> list[str]:
    """Run ``body`` in a fresh interpreter; the modules of ``watch`` it left in sys.modules."""
    # (json is imported for the report only after the body ran, and only when the body did not)
    watched = ",".join(watch)
    tail = _REPORT if report_json else _REPORT_PLAIN
    script = textwrap.dedent(body) + tail
    env = {**os.environ, "NSLAB_STATE_DIR": state}
    proc = subprocess.run([sys.executable, "-c", script, watched], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES "))
    found: list[str] = json.loads(line[len("MODULES "):])
    return found


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
def lab_file(tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    return str(path)


def test_exec_path_imports_nothing_heavy(state):
    body = """
    from nslab.cli import fast_exec
    from nslab import paths, linux
    from nslab.ns import nsenter
    assert fast_exec.run_exec("web", ["true"]) is None  # no lab is up: left to click, nothing done
    fast_exec._lab_host("budget/web")
    """
    assert _loaded(body, EXEC_NEVER, state, report_json=False) == []
    # nor the pipeline's package (which labs are up is read from paths.py), nor the exception tree until
    # something fails, nor `warnings` (os.execvp's PATH search imports it; nsenter searches PATH itself)
    found = _loaded(body, ("nslab", "fcntl", "warnings"), state, report_json=False)
    assert "nslab.ns.nsenter" in found  # (the check sees what it looks for)
    heavier = ("nslab.core", "nslab.errors", "nslab.cli.fast", "fcntl", "warnings")
    assert [m for m in found if m in heavier] == []


def _kept(lab_file: str, state: str) -> None:
    """The lab file read the full way once (its plan made over the fakes): kept for the next runs."""
    _loaded(f"""
    from nslab.drivers.fake import fake_drivers
    from nslab.lab import Lab
    Lab.load({lab_file!r}, drivers=fake_drivers(), check=False).up(dry_run=True)
    """, HEAVY, state)


def test_up_of_a_kept_file_imports_neither_pydantic_yaml_click_nor_rich(lab_file, state):
    _kept(lab_file, state)
    body = f"""
    from nslab.core import lifecycle, load
    from nslab.drivers.fake import fake_drivers
    from nslab.cli import render
    drivers = fake_drivers()
    assert load.kept_file({lab_file!r}).entry is not None
    result = lifecycle.up_file({lab_file!r}, drivers)   # a new lab
    assert result.applied
    render.changes(result.changes())
    render.up_table(result.lab, changed=True)
    result = lifecycle.up_file({lab_file!r}, drivers)   # unchanged
    assert not result.applied
    """
    assert _loaded(body, UPDOWN_NEVER, state) == []


def test_down_imports_neither_pydantic_yaml_click_nor_rich(lab_file, state):
    _kept(lab_file, state)
    body = f"""
    from nslab.core.lifecycle import up_file
    from nslab.drivers.fake import fake_drivers
    from nslab.cli import fast
    from nslab.lab import down
    drivers = fake_drivers()
    up_file({lab_file!r}, drivers)
    assert down("budget", drivers)
    """
    assert _loaded(body, UPDOWN_NEVER, state) == []


def test_status_imports_neither_pydantic_yaml_click_nor_rich(lab_file, state):
    _kept(lab_file, state)
    body = f"""
    import io, contextlib
    from nslab.core.lifecycle import up_file
    from nslab.drivers.fake import fake_drivers
    from nslab.cli import fast, render
    import nslab.lab
    drivers = fake_drivers()
    up_file({lab_file!r}, drivers)
    doc = nslab.lab.status("budget", drivers)
    assert [h["name"] for h in doc["labs"][0]["hosts"]] == ["web", "db"]
    render.status(doc)
    fast.print_doc(doc, "json")
    assert fast.run_fast(["status", "--json", "nobody"]) == 2  # the plain form, from argv
    """
    assert _loaded(body, HEAVY, state) == []


def test_the_budget_check_sees_a_heavy_import(state):
    """The check itself can fail: a body that reads a lab file the full way shows pydantic and yaml."""
    found = _loaded("import nslab.core.spec\n", HEAVY, state)
    assert "pydantic" in found and "yaml" in found

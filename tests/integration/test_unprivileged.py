"""Issue 13: the read-only commands as a user who is not root, with a lab up (in a throwaway host).

What the kernel shows anyone is shown (``ls``: the names under /run/netns and this machine's interfaces;
``status -q``: the labs that are up); what needs root says why and exits 1, never a false "no labs are up",
"damaged" state or "it creates namespaces"."""

from __future__ import annotations

import json
import subprocess

import pytest

from labs import NSLAB, nslab

LAB = """\
name: np
networks: {n: {}}
hosts:
  a: {networks: [n], run: exec sleep 1000}
  b: {networks: [n]}
"""
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_NOBODY, NSLAB, *args], capture_output=True, text=True, cwd="/")


@pytest.fixture
def lab_up(labs):
    labs.up(LAB)


def test_ls_shows_names_and_this_machine_with_a_note(lab_up):
    result = as_nobody("ls", "-o", "json")
    assert result.returncode == 0, result.stderr
    spaces = json.loads(result.stdout)["namespaces"]
    names = {n for ns in spaces for n in ns["names"]}
    assert {"np-a", "np-b", "wan"} <= names
    machine = next(ns for ns in spaces if ns["machine"])
    assert "eth0" in [i["name"] for i in machine["interfaces"]]  # its own namespace needs no setns
    assert "need root" in result.stderr and "sudo nslab ls" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_names_the_labs_and_says_why_root_is_needed(lab_up):
    quiet = as_nobody("status", "-q")
    assert (quiet.returncode, quiet.stdout.split()) == (0, ["np"]), quiet.stderr
    for args in (["status"], ["status", "np"], ["status", "np/a", "-o", "json"]):
        result = as_nobody(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert "readable by root only" in result.stderr and "sudo" in result.stderr, result.stderr
        assert "np" in result.stderr and "no labs are up" not in result.stderr
    gone = as_nobody("status", "gone")  # as for root: no root is needed to say so
    assert gone.returncode == 2 and "gone" in gone.stderr and "sudo" not in gone.stderr, gone.stderr


@pytest.mark.parametrize(("args", "why"), [
    (["logs", "np"], "service logs are kept under /run/nslab"),
    (["logs", "np/a"], "service logs are kept under /run/nslab"),
    (["graph", "np"], "graph reads the labs' state"),
    (["exec", "np/a", "--", "true"], "entering a network namespace needs CAP_SYS_ADMIN"),
    (["exec", "a", "true"], "entering a network namespace needs CAP_SYS_ADMIN"),
    (["exec", "netns:np-a", "true"], "entering a network namespace needs CAP_SYS_ADMIN"),
    (["check", "np"], "check sends probes"),
    (["doctor"], "doctor looks inside"),
    (["down", "np"], "needs root"),
])
def test_what_needs_root_says_why(lab_up, args, why):
    result = as_nobody(*args)
    assert result.returncode == 1, (args, result.stderr)
    assert why in result.stderr and "sudo" in result.stderr, result.stderr
    assert "creates namespaces" not in result.stderr and "damaged" not in result.stderr
    assert "Traceback" not in result.stderr
    assert nslab("status", "-q").stdout.split() == ["np"]  # nothing was changed or taken down

"""Issues 13 and 26: a user who is not root, with root's lab up (in a throwaway host). Rootless labs are the
user's own (tests/integration/test_rootless.py): root's labs are neither shown to nor changed by the user.

What the kernel shows anyone is shown (``ls``: the names under /run/netns and this machine's interfaces); the
user's ``status`` has no lab (theirs: none), and what would touch root's lab says that none of the user's labs
is up and root's need sudo, exits 1 and changes nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from labs import nslab

LAB = """\
name: np
networks: {n: {}}
hosts:
  a: {networks: [n], run: exec sleep 1000}
  b: {networks: [n]}
"""
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@pytest.fixture
def as_nobody(labs, user_nslab):
    """With root's lab up: ``as_nobody(ARGS...)`` runs ``nslab ARGS`` as uid 65534."""
    labs.up(LAB)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*AS_NOBODY, "env", "-u", "XDG_RUNTIME_DIR", user_nslab, *args], capture_output=True,
                              text=True, cwd="/")

    return run


def test_ls_shows_names_and_this_machine_with_a_note(as_nobody):
    result = as_nobody("ls", "-o", "json")
    assert result.returncode == 0, result.stderr
    spaces = json.loads(result.stdout)["namespaces"]
    names = {n for ns in spaces for n in ns["names"]}
    assert {"np-a", "np-b", "wan"} <= names
    machine = next(ns for ns in spaces if ns["machine"])
    assert "eth0" in [i["name"] for i in machine["interfaces"]]  # its own namespace needs no setns
    assert "need root" in result.stderr and "sudo nslab ls" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_shows_only_the_users_labs(as_nobody):
    quiet = as_nobody("status", "-q")
    assert (quiet.returncode, quiet.stdout) == (0, ""), quiet.stderr
    table = as_nobody("status")
    assert table.returncode == 0 and "np" not in table.stdout, table.stdout + table.stderr
    gone = as_nobody("status", "np")  # root's lab is not the user's: as for a lab that is not up
    assert gone.returncode == 2 and "np" in gone.stderr, gone.stderr


@pytest.mark.parametrize("args", [
    ["graph", "np"],
    ["exec", "np/a", "--", "true"],
    ["exec", "a", "true"],
    ["check", "np"],
    ["doctor"],
    ["down", "np"],
])
def test_roots_lab_is_out_of_reach(as_nobody, args):
    result = as_nobody(*args)
    assert result.returncode in (1, 2), (args, result.stderr)
    assert "Traceback" not in result.stderr and "damaged" not in result.stderr
    assert "no lab of yours is up" in result.stderr or "np" in result.stderr, result.stderr
    assert nslab("status", "-q").stdout.split() == ["np"]  # nothing was changed or taken down

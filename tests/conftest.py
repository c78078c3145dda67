"""Test wiring: the throwaway host for integration/acceptance tests, and the proof that the real machine
ends the session exactly as it started (no namespace, link, nft table, /etc/netns entry or state left)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from sandbox import ThrowawayHost, machine_snapshot, user_venv

pytest_plugins = ["docker_engine"]  # the session's Docker engine and the containers fixture, for any module

_before: dict[str, list[str]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        _before.update(machine_snapshot())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _before:
        return
    after = machine_snapshot()
    leftovers = {k: sorted(set(after[k]) - set(_before[k])) for k in after}
    leftovers = {k: v for k, v in leftovers.items() if v}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leftovers:
        if reporter:
            reporter.write_line(f"FAILED: the real machine was left with {leftovers}", red=True)
        session.exitstatus = 1
    elif reporter:
        reporter.write_line("machine unchanged: no namespace, link, nft table, /etc/netns entry, state or cgroup left")


@pytest.fixture
def host():
    """A throwaway host for one test (see nslab.tools.sandbox); requires root."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    h = ThrowawayHost().enter()
    try:
        yield h
    finally:
        h.leave()


@pytest.fixture
def labs(host, tmp_path):
    """Lab files brought up through the CLI for one test (``labs.up(TEXT)``), each taken down after it and
    checked gone (state, namespaces, marked links), whatever the test did."""
    from labs import Labs

    files = Labs(tmp_path)
    yield files
    files.down_all()


@pytest.fixture
def lab(labs, tmp_path):
    """``lab(TEXT)`` brings up a lab with services (stopped fast at ``down``) and returns its name; the machine's
    resolver is a private one, never the real machine's."""
    from labs import SERVICES_ENV, lab_name, private_resolver

    private_resolver(tmp_path)
    labs.env = SERVICES_ENV

    def up(text: str) -> str:
        labs.up(text)
        return lab_name(text)

    return up


@pytest.fixture(scope="session")
def user_nslab():
    """nslab for a user who is not root (uid 65534): Debian's python in a venv under /tmp that the user can
    run (this one is under /root, mode 0700), made once per session (sandbox.user_venv)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    version = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {version}, not this interpreter's minor version")
    directory = tempfile.mkdtemp(prefix="nslab-user-venv-")
    try:
        yield user_venv(directory)
    finally:
        shutil.rmtree(directory)

"""What the integration tests share: the ``nslab`` command, lab files brought up for one test and proven gone
after it (:class:`Labs`, the ``labs`` fixture of tests/conftest.py), waiting for the kernel or a daemon, and a
resolver that is never the real machine's.

Everything here runs inside the test's throwaway host (tests/sandbox.py): it touches only what the test made.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from nslab import linux, naming, paths
from sandbox import WAN_ADDRESS, sh

NSLAB = str(Path(sys.executable).parent / "nslab")
#: For labs with services: stop them fast at `down`, and keep `status` rows whole.
SERVICES_ENV = {**os.environ, "NSLAB_STOP_TIMEOUT": "1", "COLUMNS": "200"}

T = TypeVar("T")


def nslab(
    *args: str, check: bool = True, ok: Collection[int] = (0,), **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Runs ``nslab ARGS`` (``kwargs`` go to subprocess.run); with ``check``, an exit code outside ``ok`` fails
    the test with the command's output."""
    result = subprocess.run([NSLAB, *args], capture_output=True, text=True, **kwargs)
    if check and result.returncode not in ok:
        raise AssertionError(f"nslab {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def lab_status(name: str, **kwargs: Any) -> dict[str, Any]:
    """The lab's document in ``nslab status NAME --json`` (which must exit 0)."""
    doc: dict[str, Any] = json.loads(nslab("status", name, "--json", **kwargs).stdout)["labs"][0]
    return doc


def settled(observe: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0, interval: float = 0.02) -> T:
    """``observe()`` once ``done`` holds for it, else its last value after ``timeout`` seconds: the caller's
    assert then shows what is still there (namespaces `down` unpinned are dismantled asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = observe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """The first truthy value of ``predicate()``; the test fails when none came within ``timeout`` seconds."""
    value = settled(predicate, bool, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")
    return value


def alive(pid: int) -> bool:
    """Running: a zombie has ended (a supervisor whose parent is init is reaped when init comes to it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def private_resolver(directory: Path, nameserver: str = WAN_ADDRESS) -> None:
    """The throwaway host's /etc/resolv.conf names ``nameserver`` (by default the wan namespace): a lab never
    asks the real machine's resolver."""
    resolv = directory / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\n")
    linux.mount(str(resolv), "/etc/resolv.conf", None, linux.MS_BIND)


def up_refused(path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Writes ``text`` to ``path``: ``nslab up`` of it must exit 2 (bad input) before changing any link or
    namespace. Returns its result (one line per problem on stderr)."""
    path.write_text(text)
    before = sh("ip -o link; ip netns list").stdout
    result = nslab("up", "-f", str(path), check=False)
    assert result.returncode == 2, result.stderr
    assert sh("ip -o link; ip netns list").stdout == before
    return result


def lab_name(text: str) -> str:
    """The ``name:`` of a lab file's text."""
    found = re.search(r"^name:\s*(\S+)", text, re.MULTILINE)
    assert found, f"a lab file without a name:\n{text}"
    return found.group(1)


def lab_leftovers(name: str) -> list[str]:
    """What is left of lab ``name``: its state directory, its hosts' namespaces, links marked as its (their
    veths go a little after their namespaces, so a short wait for those)."""
    state = [paths.lab_dir(name)] if os.path.exists(paths.lab_dir(name)) else []
    namespaces = [n for n in os.listdir(paths.NETNS_DIR) if n.startswith(f"{name}-")]
    mark = f"{naming.OWNER_PREFIX}{name}:"

    def marked_links() -> list[str]:
        links = json.loads(sh("ip -j link show").stdout)
        return [link["ifname"] for link in links if link.get("ifalias", "").startswith(mark)]

    return state + namespaces + settled(marked_links, lambda left: not left)


class Labs:
    """The lab files one test brings up through the CLI; :meth:`down_all` takes each down and checks that
    nothing of it is left."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.names: list[str] = []
        self.env: dict[str, str] | None = None  # of every nslab command it runs (None: the test's own)

    def write(self, text: str, file: str = "nslab.yaml") -> Path:
        """Writes a lab file (it goes down at the end of the test whatever the test does with it)."""
        path = self.directory / file
        path.write_text(text)
        if (name := lab_name(text)) not in self.names:
            self.names.append(name)
        return path

    def up(self, text: str, file: str = "nslab.yaml", **kwargs: Any) -> Path:
        """Writes a lab file and brings it up (``nslab up -f``, which must succeed); returns its path."""
        path = self.write(text, file)
        nslab("up", "-f", str(path), env=self.env, **kwargs)
        return path

    def down_all(self) -> None:
        for name in reversed(self.names):
            nslab("down", name, env=self.env)
            assert lab_leftovers(name) == [], f"lab {name} is not gone after down"

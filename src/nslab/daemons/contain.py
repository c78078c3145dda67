"""The supervisor's side of ``pid: private`` (supervise.py): one PID namespace per host, shared by that host's
services, each with a minimal init (PID 1) that reaps the zombies its orphans leave.

The supervisor makes a host's namespace the first time one of its services starts: ``unshare(CLONE_NEWPID)``
then ``fork`` (the child is PID 1 of the new namespace: the init), then ``setns`` back to its own, so its other
children stay where they were. A service is forked into its host's namespace the same way (``setns`` to the
init's, ``fork``, ``setns`` back): it is still the supervisor's child (waited for, restarted, tracked in its
cgroup, listed by ``status`` with its pid on the machine); inside, it sees only its host's processes.
The init dies with the supervisor (``PR_SET_PDEATHSIG``), and the kernel kills what runs in a namespace whose
init died; the supervisor stops a host's init when no service of that host runs in it any more.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

from .. import linux
from ..drivers import procfs

_INIT_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _init() -> None:
    """PID 1 of a host's namespace: reap every child that ends; leave on SIGTERM (or with the supervisor)."""
    try:
        signal.set_wakeup_fd(-1)
        os.closerange(3, 65536)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        with open("/proc/self/comm", "w") as fh:
            fh.write("nslab-init")
        signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_SIGNALS)  # PID 1 gets only what it waits for
        while signal.sigwait(_INIT_SIGNALS) in (signal.SIGCHLD, signal.SIGHUP):
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
        os._exit(0)
    finally:
        os._exit(1)


class PidNamespaces:
    """The hosts' PID namespaces: host -> (its init's pid, an open descriptor of the namespace)."""

    def __init__(self) -> None:
        self.inits: dict[str, tuple[int, int]] = {}
        self.own = -1  # the supervisor's own PID namespace, opened on first use

    def fork_for(self, spec: dict[str, Any]) -> Callable[[], int]:
        """``os.fork`` for a service: into its host's namespace when it has ``pid: private``."""
        if (spec.get("contain") or {}).get("pid") != "private":
            return os.fork
        return lambda: self._fork_into(spec["host"])

    def _fork_into(self, host: str) -> int:
        fd = self._namespace(host)
        linux.setns(fd, linux.CLONE_NEWPID)
        pid = os.fork()
        if pid:
            linux.setns(self.own, linux.CLONE_NEWPID)
        return pid

    def _namespace(self, host: str) -> int:
        found = self.inits.get(host)
        if found is not None and procfs.is_running(found[0], None):
            return found[1]
        if found is not None:
            self._forget(host)
        if self.own < 0:
            self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        linux.unshare(linux.CLONE_NEWPID)
        try:
            pid = os.fork()
            if pid == 0:
                _init()
        finally:  # (the child never gets here: it is the init)
            linux.setns(self.own, linux.CLONE_NEWPID)
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.inits[host] = (pid, fd)
        return fd

    def exited(self, pid: int) -> None:
        """A child ended: if it was an init, its namespace is gone (and what ran in it)."""
        for host, (init, _fd) in list(self.inits.items()):
            if init == pid:
                self._forget(host)

    def _forget(self, host: str) -> None:
        _pid, fd = self.inits.pop(host)
        os.close(fd)

    def keep(self, hosts: Iterable[str]) -> None:
        """Stop the inits of hosts other than ``hosts`` (no service of theirs runs in a namespace any more)."""
        wanted = set(hosts)
        for host in [h for h in self.inits if h not in wanted]:
            pid, _fd = self.inits[host]
            self._forget(host)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def close(self) -> None:
        self.keep(())
        if self.own >= 0:
            os.close(self.own)
            self.own = -1


def private_hosts(services: Iterable[dict[str, Any]]) -> set[str]:
    """The hosts whose services run in a PID namespace of their own."""
    return {s["host"] for s in services if (s.get("contain") or {}).get("pid") == "private"}

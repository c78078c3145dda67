"""Processes a lab owns: the per-lab supervisor, the process trees of its services, their logs.

Tracking. Every service runs in its own cgroup v2 (``<cgroup2 mount>/nslab/<lab>-<id>/<host>.<n>``): a
process cannot leave it by forking, double-forking or ``setsid``, so ``down`` finds the whole tree. Stopping
is SIGTERM to every member, then ``cgroup.kill`` (SIGKILL) after a timeout, then ``rmdir``. Where cgroup v2 is
not mounted or not writable, the fallback marks each service's processes with an environment variable
(``NSLAB_SERVICE=<token>``, inherited by every descendant that does not scrub its environment) and finds them
by scanning ``/proc/*/environ``. What nslab did not start but still runs inside a lab's hosts (``exec -d``,
a shell) is found by network namespace (:class:`NamespaceTracker`, ``ip netns pids`` for many at once) and
stopped the same way by ``down``.

Files of lab L (``/run/nslab/L/``): ``services.json`` (what the supervisor runs, written by ``up``),
``services.status.json`` (what it is doing, written by the supervisor), ``logs/HOST.N.log`` (stdout+stderr of
service N of HOST, with ``[nslab]`` lines for starts, exits and restarts), ``logs/supervisor.log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

from .. import paths

SERVICE_ENV = "NSLAB_SERVICE"
STOP_TIMEOUT = float(os.environ.get("NSLAB_STOP_TIMEOUT", "5"))


# --- paths -----------------------------------------------------------------------------------------
def config_path(lab: str) -> str:
    return os.path.join(paths.lab_dir(lab), "services.json")


def status_path(lab: str) -> str:
    return os.path.join(paths.lab_dir(lab), "services.status.json")


def logs_dir(lab: str) -> str:
    return os.path.join(paths.lab_dir(lab), "logs")


def log_path(lab: str, host: str, n: int) -> str:
    return os.path.join(logs_dir(lab), f"{host}.{n}.log")


def write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# --- cgroups ---------------------------------------------------------------------------------------
def cgroup2_mount() -> str | None:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid systems)."""
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mount_point = left.split(" ")[4]
                    if os.access(mount_point, os.W_OK) and os.path.exists(os.path.join(mount_point, "cgroup.procs")):
                        return mount_point
    except OSError:
        pass
    return None


def cgroup_members(cgroup: str) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, files in os.walk(cgroup):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    pids += [int(p) for p in fh.read().split()]
            except OSError:
                continue
    return pids


def remove_cgroup(cgroup: str) -> bool:
    """rmdir a cgroup tree bottom-up; True if it is gone."""
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return not os.path.exists(cgroup)


def marked_pids(token: str) -> list[int]:
    """Fallback tracking: every process whose environment carries ``NSLAB_SERVICE=<token>``."""
    needle = f"{SERVICE_ENV}={token}".encode() + b"\0"
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read() + b"\0":
                    out.append(int(entry))
        except OSError:
            continue
    return out


class Tracker:
    """The processes of one service: its cgroup, or (fallback) its environment mark."""

    def __init__(self, cgroup: str | None, token: str):
        self.cgroup = cgroup
        self.token = token

    def members(self) -> list[int]:
        if self.cgroup:
            return cgroup_members(self.cgroup)
        return marked_pids(self.token)

    def signal(self, sig: int) -> None:
        if self.cgroup and sig == signal.SIGKILL and os.path.exists(os.path.join(self.cgroup, "cgroup.kill")):
            try:
                with open(os.path.join(self.cgroup, "cgroup.kill"), "w") as fh:
                    fh.write("1")
                return
            except OSError:
                pass
        for pid in self.members():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def ancestors() -> set[int]:
    """This process and its parents up to init."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def namespace_pids(net_inodes: set[int], spared: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Every process whose network namespace is one of ``net_inodes`` (``ip netns pids``, many at once),
    except ``spared`` ones."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in net_inodes:
                out.append(int(entry))
        except OSError:  # gone, or a zombie (its namespaces are released already)
            continue
    return out


def describe(pid: int) -> str:
    """``1234 (sleep 60)``: a pid and its command line, for messages."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    return f"{pid} ({command[:60]})"


class NamespaceTracker(Tracker):
    """Whatever still runs inside some network namespaces: ``nslab exec -d`` leftovers, shells, strays."""

    def __init__(self, net_inodes: set[int]):
        super().__init__(None, "")
        self.net_inodes = net_inodes
        # `nslab down` typed in a shell inside the lab (`nslab shell web1`): not that shell, nor us
        self.spared = ancestors()

    def members(self) -> list[int]:
        return namespace_pids(self.net_inodes, self.spared) if self.net_inodes else []


def stop_trees(trackers: Iterable[Tracker], timeout: float = STOP_TIMEOUT, reap: Any = None) -> list[Tracker]:
    """SIGTERM every process of every tracker, SIGKILL what is left after ``timeout``; returns survivors."""
    trackers = list(trackers)
    for t in trackers:
        t.signal(signal.SIGTERM)
        t.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        if reap is not None:
            reap()
        alive = [t for t in trackers if t.members()]
        if not alive:
            return []
        if time.monotonic() >= deadline:
            if killed:
                return alive
            for t in alive:
                t.signal(signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 3
        time.sleep(0.02)


# --- processes -------------------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (with the pid, an identity that survives pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_alive(pid: int | None, started: int | None) -> bool:
    if not pid:
        return False
    now = start_time(pid)
    if now is None or (started is not None and now != started):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- the supervisor, seen from `up` and `down` -----------------------------------------------------
def start_supervisor(lab: str, config: dict[str, Any], wait: float = 10.0) -> dict[str, Any]:
    """Write the config, start ``python -m nslab.supervise LAB`` detached; return once it is ready."""
    from ..errors import KernelError

    os.makedirs(logs_dir(lab), exist_ok=True)
    write_json(config_path(lab), config)
    try:
        os.unlink(status_path(lab))
    except FileNotFoundError:
        pass
    log = open(os.path.join(logs_dir(lab), "supervisor.log"), "ab")
    try:
        # The supervisor forks once more and this process exits: it is nobody's child, and no zombie stays.
        subprocess.run(
            [sys.executable, "-m", "nslab.supervise", lab],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, check=True,
            env={**os.environ, "NSLAB_STATE_DIR": paths.state_root()},
        )
    except subprocess.CalledProcessError as exc:
        raise KernelError(f"cannot start the service supervisor of lab {lab} (see {log.name})") from exc
    finally:
        log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = read_json(status_path(lab))
        if status and status.get("ready"):
            if status.get("error"):
                stop_supervisor(lab, {"pid": status.get("pid"), "start": status.get("start"), **config})
                raise KernelError(f"lab {lab}: {status['error']}")
            return {"pid": status["pid"], "start": status["start"], **config}
        time.sleep(0.01)
    raise KernelError(f"the service supervisor of lab {lab} did not report ready (see {logs_dir(lab)})")


def stop_supervisor(lab: str, record: dict[str, Any] | None, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop the supervisor and every process of every service (whole trees); return what survived."""
    record = record or read_json(config_path(lab)) or {}
    pid, started = record.get("pid"), record.get("start")
    if is_alive(pid, started):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout + 5
        while is_alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.02)
        if is_alive(pid, started):
            os.kill(pid, signal.SIGKILL)
    # Whatever the supervisor did or did not do, make sure of it from the recorded cgroups / marks.
    trackers = [Tracker(s.get("cgroup"), s["token"]) for s in record.get("services", [])]
    survivors = stop_trees(trackers, timeout)
    failures = [f"lab {lab}: processes {t.members()} of a service survived SIGKILL" for t in survivors]
    root = record.get("cgroup")
    if root and os.path.exists(root) and not remove_cgroup(root):
        failures.append(f"lab {lab}: cannot remove cgroup {root}")
    if root:
        remove_parent(root)
    return failures


def remove_parent(root: str) -> None:
    """The shared ``nslab`` cgroup goes with the last lab that used it."""
    try:
        os.rmdir(os.path.dirname(root))
    except OSError:
        pass

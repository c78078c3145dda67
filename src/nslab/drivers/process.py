"""Processes a lab owns: the per-lab supervisor, the process trees of its services, their logs.

Tracking. Every service runs in its own cgroup v2 (``<cgroup2 mount>/nslab/<lab>-<id>/<host>.<n>``): a
process cannot leave it by forking, double-forking or ``setsid``, so ``down`` finds the whole tree. Stopping
is SIGTERM to every member, then ``cgroup.kill`` (SIGKILL) after a timeout, then ``rmdir``. Where cgroup v2 is
not mounted or not writable, the fallback marks each service's processes with an environment variable
(``NSLAB_SERVICE=<token>``, inherited by every descendant that does not scrub its environment) and finds them
in ``/proc/*/environ``. What nslab did not start but still runs inside a lab's hosts (``exec -d``, a shell)
is found by network namespace (:class:`NamespaceTracker`, ``ip netns pids`` for many at once) and stopped the
same way by ``down``. Replaces ``kill``/``pkill`` and ``ip netns pids``; every read of ``/proc`` goes through
drivers/procfs.py.

Files of lab L (``/run/nslab/L/``, named in paths.py): ``services.json`` (what the supervisor runs, written
by ``up``), ``services.status.json`` (what it is doing, written by the supervisor), ``logs/HOST.N.log``
(stdout+stderr of service N of HOST, with ``[nslab]`` lines for starts, exits and restarts),
``logs/supervisor.log``. Both JSON files are written atomically (drivers/files.py).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import paths
from . import files, procfs

SERVICE_ENV = "NSLAB_SERVICE"
#: The mark of a supervisor being started (``LAB/TAG``): found by it should it not come up (see start_supervisor).
SUPERVISOR_ENV = "NSLAB_SUPERVISOR"
def _stop_timeout(default: float = 5.0) -> float:
    """``NSLAB_STOP_TIMEOUT``: seconds between SIGTERM and SIGKILL (as ``docker stop -t``); a value that is not a
    number of seconds is ignored, with a one-line warning, rather than breaking every command."""
    text = os.environ.get("NSLAB_STOP_TIMEOUT")
    if text is None:
        return default
    try:
        value = float(text)
        if not 0 <= value <= 3600:
            raise ValueError
        return value
    except ValueError:
        sys.stderr.write(f"nslab: warning: NSLAB_STOP_TIMEOUT={text!r} is not 0..3600 seconds; using {default:g}\n")
        return default


STOP_TIMEOUT = _stop_timeout()



# --- cgroups ---------------------------------------------------------------------------------------
def cgroup2_mount() -> str | None:
    """Where cgroup v2 is mounted (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid systems)."""
    for mount in procfs.mounts():
        if mount.fstype == "cgroup2" and os.access(mount.point, os.W_OK):
            if os.path.exists(os.path.join(mount.point, "cgroup.procs")):
                return mount.point
    return None


def cgroup_members(cgroup: str) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, names in os.walk(cgroup):
        if "cgroup.procs" in names:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    pids += [int(p) for p in fh.read().split()]
            except OSError:
                continue
    return pids


def remove_cgroup(cgroup: str) -> bool:
    """rmdir a cgroup tree bottom-up, and its v1 mirrors (limits); True if it is gone."""
    remove_mirrors(cgroup)
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return not os.path.exists(cgroup)


def marked_pids(token: str, key: str = SERVICE_ENV) -> list[int]:
    """Fallback tracking: every process whose environment carries ``NSLAB_SERVICE=<token>`` (or ``key``)."""
    me = os.getpid()
    return [pid for pid in procfs.pids() if pid != me and procfs.environ_has(pid, key, token)]


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


def namespace_pids(net_inodes: set[int], spared: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Every process whose network namespace is one of ``net_inodes`` (``ip netns pids``, many at once),
    except ``spared`` ones."""
    return [pid for pid in procfs.pids() if pid not in spared and procfs.ns_inode(pid, "net") in net_inodes]


class NamespaceTracker(Tracker):
    """Whatever still runs inside some network namespaces: ``nslab exec -d`` leftovers, shells, strays."""

    def __init__(self, net_inodes: set[int]):
        super().__init__(None, "")
        self.net_inodes = net_inodes
        # `nslab down` typed in a shell inside the lab (`nslab shell web1`): not that shell, nor us
        self.spared = procfs.ancestors()

    def members(self) -> list[int]:
        return namespace_pids(self.net_inodes, self.spared) if self.net_inodes else []


def stop_inside(namespaces: list[str]) -> list[str]:
    """Stop what still runs inside these named namespaces (``nslab exec -d``, a shell, the children of an
    interrupted ``nslab run``) as a container's processes are stopped: SIGTERM, then SIGKILL. Otherwise it
    would keep the namespace, and with it the host's veth, alive after ``down``. Returns what survived."""
    inodes = set()
    for namespace in namespaces:
        try:
            inodes.add(os.stat(paths.netns_path(namespace)).st_ino)
        except OSError:
            continue
    tracker = NamespaceTracker(inodes)
    if not tracker.members():
        return []
    survivors = stop_trees([tracker])
    return [f"processes still running inside the lab: {procfs.describe(p)}" for t in survivors for p in t.members()]


def stop_trees(
    trackers: Iterable[Tracker], timeout: float = STOP_TIMEOUT, reap: Callable[[], object] | None = None
) -> list[Tracker]:
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


# --- limits (``resources:``, core/features/limits.py) ------------------------------------------------------
#: What each limit needs: the controller, its cgroup v2 file, its cgroup v1 file.
_CONTROLLERS = {"cpus": ("cpu", "cpu.max", "cpu.cfs_quota_us"), "memory": ("memory", "memory.max",
                "memory.limit_in_bytes"), "pids": ("pids", "pids.max", "pids.max")}
_CFS_PERIOD = 100000


def v1_mounts() -> dict[str, str]:
    """Controller -> where it is mounted as cgroup v1 (``/sys/fs/cgroup/memory``; ``cpu,cpuacct`` gives both)."""
    found: dict[str, str] = {}
    for mount in procfs.mounts():
        if mount.fstype == "cgroup":
            for controller in os.path.basename(mount.point).split(","):
                found.setdefault(controller, mount.point)
    return found


def _relative(cgroup: str) -> str | None:
    """A service's cgroup v2 path relative to its mount (``nslab/LAB-TAG/HOST.N``): the same path under a v1
    controller is its v1 mirror."""
    mount = cgroup2_mount()
    return os.path.relpath(cgroup, mount) if mount and cgroup.startswith(mount + "/") else None


def v1_mirrors(cgroup: str) -> list[str]:
    """The v1 mirrors of a v2 cgroup that exist (one per v1 controller nslab limited)."""
    relative = _relative(cgroup)
    if relative is None:
        return []
    return [p for p in (os.path.join(m, relative) for m in set(v1_mounts().values())) if os.path.isdir(p)]


def _v2_enabled(cgroup: str, controller: str) -> bool:
    """Enable ``controller`` down to ``cgroup`` (each ancestor's ``cgroup.subtree_control``); False where the v2
    hierarchy does not have it (bound to v1)."""
    mount = cgroup2_mount()
    if mount is None or not cgroup.startswith(mount + "/"):
        return False
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as fh:
            if controller not in fh.read().split():
                return False
        parent, chain = mount, []
        for part in os.path.relpath(os.path.dirname(cgroup), mount).split("/"):
            chain.append(parent)
            parent = os.path.join(parent, part)
        chain.append(parent)
        for directory in chain:
            with open(os.path.join(directory, "cgroup.subtree_control"), "w") as fh:
                fh.write(f"+{controller}")
    except OSError:
        return False
    return True


def _limit_text(key: str, value: float, v2: bool) -> str:
    if key == "cpus":
        return f"{int(value * _CFS_PERIOD)} {_CFS_PERIOD}" if v2 else str(int(value * _CFS_PERIOD))
    return str(int(value))


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def limit(cgroup: str, limits: dict[str, float]) -> list[str]:
    """Write ``limits`` (``cpus``, ``memory`` bytes, ``pids``) for the cgroup v2 ``cgroup`` (made already):
    in it where v2 has the controller, else in its v1 mirror (made here). Returns what could not be set."""
    failures = []
    for key, value in limits.items():
        controller, v2_file, v1_file = _CONTROLLERS[key]
        try:
            if _v2_enabled(cgroup, controller):
                _write(os.path.join(cgroup, v2_file), _limit_text(key, value, True))
                continue
            mount, relative = v1_mounts().get(controller), _relative(cgroup)
            if mount is None or relative is None:
                failures.append(f"{key}: no cgroup {controller} controller to write it to")
                continue
            mirror = os.path.join(mount, relative)
            os.makedirs(mirror, exist_ok=True)
            if key == "cpus":
                _write(os.path.join(mirror, "cpu.cfs_period_us"), str(_CFS_PERIOD))
            _write(os.path.join(mirror, v1_file), _limit_text(key, value, False))
        except OSError as exc:
            failures.append(f"{key}: {exc.strerror}")
    return failures


def join_mirrors(cgroup: str) -> None:
    """Move the calling process into the v1 mirrors of its cgroup (the service's child, before it execs)."""
    for mirror in v1_mirrors(cgroup):
        _write(os.path.join(mirror, "cgroup.procs"), "0")


def oom_kills(cgroup: str | None) -> int:
    """How many processes of the cgroup (or its v1 memory mirror) the kernel's OOM killer killed so far."""
    if not cgroup:
        return 0
    places = [(os.path.join(cgroup, "memory.events"), "oom_kill")]
    memory, relative = v1_mounts().get("memory"), _relative(cgroup)
    if memory and relative:
        places.append((os.path.join(memory, relative, "memory.oom_control"), "oom_kill"))
    total = 0
    for path, key in places:
        try:
            with open(path) as fh:
                total += sum(int(line.split()[1]) for line in fh if line.split()[:1] == [key])
        except (OSError, ValueError, IndexError):
            continue
    return total


def remove_mirrors(cgroup: str) -> None:
    """rmdir the v1 mirrors of a v2 cgroup tree (its services' limits), bottom-up."""
    relative = _relative(cgroup)
    if relative is None:
        return
    for mount in set(v1_mounts().values()):
        mirror = os.path.join(mount, relative)
        if os.path.isdir(mirror):
            for dirpath, _dirs, _files in sorted(os.walk(mirror), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            try:
                os.rmdir(os.path.dirname(mirror))  # the shared ``nslab`` parent goes with the last lab's
            except OSError:
                pass


# --- processes -------------------------------------------------------------------------------------
def is_alive(pid: int | None, started: int | None) -> bool:
    """Whether the process recorded as (``pid``, start time ``started``) still runs (not a reused pid)."""
    return procfs.is_running(pid, started)


#: A process younger than this may still be entering its host (fork, then setns): not judged yet (seconds).
SETTLING = 1.0


def outside(pid: int, net: str, uts: str | None, cgroup: str | None) -> list[str]:
    """What of its place the process ``pid`` is not in: ``network namespace`` (not the one pinned at ``net``),
    ``hostname namespace`` (``uts``), ``cgroup``. Nothing for a process that is gone (a zombie too), just
    started, or whose place is not there to compare with (a pin missing is the wiring's or the hostnames'
    drift)."""
    age = procfs.age(pid)
    if age is None or age < SETTLING:
        return []
    found = []
    for kind, path, what in (("net", net, "network namespace"), ("uts", uts, "hostname namespace")):
        want = _pinned_inode(path) if path else None
        have = procfs.ns_inode(pid, kind)
        if want is not None and have is not None and want != have:
            found.append(what)
    if cgroup and os.path.isdir(cgroup) and pid not in cgroup_members(cgroup) and procfs.is_running(pid):
        found.append("cgroup")  # (a zombie has left its cgroup already: its supervisor reaps it at once)
    return found


def _pinned_inode(path: str) -> int | None:
    """The inode of the namespace bind-mounted at ``path`` (None: no namespace is pinned there)."""
    try:
        pinned = os.stat(path)
    except OSError:
        return None
    return pinned.st_ino if pinned.st_dev == os.stat(procfs.ns_path("self", "net")).st_dev else None


# --- the supervisor, seen from `up` and `down` -----------------------------------------------------
def start_supervisor(lab: str, config: dict[str, Any], wait: float = 10.0) -> dict[str, Any]:
    """Write the config, start ``python -m nslab.daemons.supervise LAB`` detached; return once it is ready."""
    import subprocess

    from ..errors import KernelError

    files.private_dir(paths.lab_dir(lab))
    files.private_dir(paths.logs_dir(lab))
    files.write_json(paths.supervisor_config(lab), config)
    try:
        os.unlink(paths.services_status(lab))
    except FileNotFoundError:
        pass
    log = open(os.open(paths.supervisor_log(lab), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
    mark = f"{lab}/{config.get('tag')}"
    try:
        # The supervisor forks once more and this process exits: it is nobody's child, and no zombie stays.
        subprocess.run(
            [sys.executable, "-m", "nslab.daemons.supervise", lab],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, check=True,
            env={**os.environ, "NSLAB_STATE_DIR": paths.state_root(), SUPERVISOR_ENV: mark},
        )
        return _ready(lab, config, wait, mark)
    except BaseException as exc:
        _abandon(lab, config, mark)
        if isinstance(exc, subprocess.CalledProcessError):
            raise KernelError(f"cannot start the service supervisor of lab {lab} (see {log.name})") from exc
        raise
    finally:
        log.close()


def _ready(lab: str, config: dict[str, Any], wait: float, mark: str) -> dict[str, Any]:
    """The supervisor's record once its status says it runs ``config``; an error as soon as it is gone (looked
    for by its ``mark`` every quarter second)."""
    from ..errors import KernelError

    deadline = time.monotonic() + wait
    look = time.monotonic() + 0.25
    while time.monotonic() < deadline:
        status = files.read_json(paths.services_status(lab))
        if status and status.get("ready"):
            if status.get("error"):
                raise KernelError(f"lab {lab}: {status['error']}")
            return {"pid": status["pid"], "start": status["start"], **config}
        if time.monotonic() > look:
            if not marked_pids(mark, SUPERVISOR_ENV):
                raise KernelError(f"the service supervisor of lab {lab} exited before it was ready "
                                  f"(see {paths.supervisor_log(lab)})")
            look = time.monotonic() + 0.25
        time.sleep(0.01)
    raise KernelError(f"the service supervisor of lab {lab} did not report ready (see {paths.logs_dir(lab)})")


def _abandon(lab: str, config: dict[str, Any], mark: str) -> None:
    """A supervisor that did not come up (an error, no status within the wait, the state directory full, a
    signal): it stops, found by its mark, and so does every service it started, found by the config's cgroups
    (or marks); nothing of it is left for ``down``."""
    for pid in marked_pids(mark, SUPERVISOR_ENV):
        stop_process(pid, procfs.start_time(pid), 1.0)
    stop_supervisor(lab, config, timeout=1.0)


def reload_supervisor(lab: str, record: dict[str, Any], config: dict[str, Any], wait: float = 30.0) -> dict[str, Any]:
    """Hand the running supervisor a new config (SIGHUP): it restarts only the services whose definition
    changed. Returns its new record once its status shows the new config."""
    from ..errors import KernelError

    files.write_json(paths.supervisor_config(lab), config)
    pid, started = record.get("pid"), record.get("start")
    if pid is None or not is_alive(pid, started):
        raise KernelError(f"the service supervisor of lab {lab} is not running")
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = files.read_json(paths.services_status(lab)) or {}
        if status.get("hash") == config.get("hash"):
            if status.get("error"):
                raise KernelError(f"lab {lab}: {status['error']}")
            return {"pid": pid, "start": started, **config}
        if not is_alive(pid, started):
            break
        time.sleep(0.01)
    raise KernelError(f"the service supervisor of lab {lab} did not take its new config (see {paths.logs_dir(lab)})")


def stop_supervisor(lab: str, record: dict[str, Any] | None, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop the supervisor and every process of every service (whole trees); return what survived."""
    record = record or files.read_json(paths.supervisor_config(lab)) or {}
    stop_process(record.get("pid"), record.get("start"), timeout + 5)
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


def stop_process(pid: int | None, started: int | None, timeout: float) -> None:
    """SIGTERM the recorded process, SIGKILL after ``timeout``; nothing if it is gone (or the pid reused)."""
    if pid is None or not is_alive(pid, started):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while is_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.02)
    if is_alive(pid, started):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_parent(root: str) -> None:
    """The shared ``nslab`` cgroup goes with the last lab that used it."""
    try:
        os.rmdir(os.path.dirname(root))
    except OSError:
        pass


def new_cgroup_root(lab: str) -> str | None:
    """A fresh cgroup for the next supervisor of ``lab`` (``<cgroup2>/nslab/<lab>-<random>``, not created
    yet: the supervisor makes it), or None where cgroup v2 is not writable (services are then tracked by their
    environment mark)."""
    mount = cgroup2_mount()
    return os.path.join(paths.cgroups_dir(mount), f"{lab}-{os.urandom(4).hex()}") if mount else None


class LiveProcesses:
    """The processes driver handed to the lab core (drivers/protocols.py: ``Processes``)."""

    def start_supervisor(self, lab: str, config: dict[str, Any]) -> dict[str, Any]:
        return start_supervisor(lab, config)

    def stop_supervisor(self, lab: str, record: dict[str, Any] | None) -> list[str]:
        return stop_supervisor(lab, record)

    def reload_supervisor(self, lab: str, record: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        return reload_supervisor(lab, record, config)

    def is_alive(self, pid: int | None, started: int | None) -> bool:
        return is_alive(pid, started)

    def cgroup_root(self, lab: str) -> str | None:
        return new_cgroup_root(lab)

    def stop_inside(self, namespaces: list[str]) -> list[str]:
        return stop_inside(namespaces)

    def outside(self, pid: int, net: str, uts: str | None, cgroup: str | None) -> list[str]:
        return outside(pid, net, uts, cgroup)

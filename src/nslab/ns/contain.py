"""Confining the calling process before it execs a service or ``nslab run``'s command (core/features/contain.py
resolves what; this applies it): its mounts, then its user, capabilities and no_new_privs.

Called in a single-threaded child that already has a mount namespace of its own (nsenter.enter_host or
throwaway.enter_fresh make one, ``/`` a slave of the machine's, so nothing here reaches the machine):

1. ``pid: private``: a fresh ``/proc`` (the child was forked into its PID namespace: it shows only those);
2. ``private_tmp``: the host's own directory bound over ``/tmp``; ``writable:`` paths bound over themselves;
3. ``read_only``: every mount read-only at once (``mount_setattr(AT_RECURSIVE)`` keeps nosuid/nodev/noexec,
   which ``mount -o remount,bind,ro`` one mount at a time would reset), then those binds read-write again;
4. fresh tmpfs on ``/tmp`` and ``/run`` (``tmpfs:``);
5. the bounding set less what it may not keep (as root, which may still drop them), the user and its groups
   (capabilities kept across the change of uid only for ``cap_add``), the three capability sets, the ambient
   set for a non-root user's ``cap_add`` (so they survive exec), and ``PR_SET_NO_NEW_PRIVS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import linux
from ..errors import KernelError
from ..model import CAPABILITIES, Containment

TMPFS_FLAGS = linux.MS_NOSUID | linux.MS_NODEV


def _mount(what: str, call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except OSError as exc:
        raise KernelError(f"{what}: {exc.strerror}") from None


def mounts(contain: Containment, private_tmp: str | None = None) -> None:
    """Steps 1-4 in the calling process's own mount namespace."""
    if contain.pid == "private":
        _mount("cannot mount /proc", linux.mount, "proc", "/proc", "proc",
               linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    binds = list(contain.writable)
    if private_tmp:
        os.makedirs(private_tmp, exist_ok=True)
        os.chmod(private_tmp, 0o1777)
        _mount(f"cannot bind {private_tmp} over /tmp", linux.mount, private_tmp, "/tmp", None,
               linux.MS_BIND | linux.MS_REC)
        binds.append("/tmp")
    for path in contain.writable:
        _mount(f"writable: {path}", linux.mount, path, path, None, linux.MS_BIND | linux.MS_REC)
    if contain.read_only:
        _mount("read_only: cannot make / read-only", linux.mount_setattr, "/", linux.MOUNT_ATTR_RDONLY)
        for path in binds:
            _mount(f"cannot keep {path} writable", linux.mount_setattr, path, 0, linux.MOUNT_ATTR_RDONLY)
    for path in contain.mounts():
        if not (private_tmp and path == "/tmp"):
            _mount(f"tmpfs: {path}", linux.mount, "tmpfs", path, "tmpfs", TMPFS_FLAGS, "mode=1777")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def _permitted() -> int:
    """The calling thread's permitted capabilities (it cannot keep more than these)."""
    try:
        with open("/proc/thread-self/status") as fh:
            return next(int(line.split()[1], 16) for line in fh if line.startswith("CapPrm:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return (1 << len(CAPABILITIES)) - 1


def identity(contain: Containment) -> dict[str, str]:
    """Step 5; returns what the environment says about the user (HOME, USER, LOGNAME)."""
    kept = contain.capabilities()
    mask = sum(1 << n for n, name in enumerate(CAPABILITIES) if name in kept) & _permitted()
    changed = not contain.all_capabilities()
    try:
        if changed:
            _each(linux.PR_CAPBSET_DROP, ~mask, _last_capability() + 1)
        env = _become(contain, mask) if contain.uid else {}
        if changed or contain.uid:
            linux.capset(mask, mask, 0 if contain.root() else mask)
        if not contain.root():
            _each(linux.PR_CAP_AMBIENT, mask, len(CAPABILITIES), linux.PR_CAP_AMBIENT_RAISE)
        if not contain.new_privileges():
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise KernelError(f"cannot confine the process ({contain.user or 'root'}): {exc.strerror}") from None
    return env


def _each(option: int, mask: int, count: int, sub: int | None = None) -> None:
    """``prctl(option, [sub,] N)`` for each capability N below ``count`` that is in ``mask``."""
    for n in range(count):
        if mask >> n & 1:
            linux.prctl(option, n) if sub is None else linux.prctl(option, sub, n)


def _become(contain: Containment, mask: int) -> dict[str, str]:
    """Change to the user and its groups, keeping the capabilities in ``mask`` (permitted only, until capset)."""
    assert contain.uid is not None and contain.gid is not None
    if mask:
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(contain.groups))
    os.setresgid(contain.gid, contain.gid, contain.gid)
    os.setresuid(contain.uid, contain.uid, contain.uid)
    name = contain.user.partition(":")[0] if contain.user and not contain.user[0].isdigit() else str(contain.uid)
    return {"HOME": contain.home or "/", "USER": name, "LOGNAME": name}


def apply(contain: Containment, private_tmp: str | None = None) -> dict[str, str]:
    """Everything, in order; returns the environment the command gets on top of its own."""
    mounts(contain, private_tmp)
    return identity(contain)


def _wait_for(pid: int) -> int:
    """Wait for child ``pid``, reaping any other child on the way; its exit status as a shell reports it."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 127
        except InterruptedError:
            continue
        if done == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _forward(pid: int, signals: tuple[int, ...]) -> None:
    import signal

    for sig in signals:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def fork_pid_namespace(close: tuple[int, ...] = ()) -> None:
    """``unshare --pid --fork`` with an init: returns in the process that is to exec the command (PID 2 of a
    new PID namespace); the calling process waits for the namespace's init and exits with its status, and the
    init (PID 1) reaps every orphan until the command ends, then exits with its status (the kernel then kills
    what is left inside). SIGTERM and SIGHUP are passed on to the command; Ctrl-C reaches it from the terminal.
    ``close``: descriptors only the command keeps (the two waiting processes close them)."""
    import signal

    try:
        linux.unshare(linux.CLONE_NEWPID)
    except OSError as exc:
        raise KernelError(f"cannot make a PID namespace: {exc.strerror}") from None
    forwarded = (signal.SIGTERM, signal.SIGHUP)
    init = os.fork()
    if init:
        _close(close)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _forward(init, forwarded)
        os._exit(_wait_for(init))
    command = os.fork()
    if command == 0:
        return
    _close(close)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _forward(command, forwarded)
    os._exit(_wait_for(command))

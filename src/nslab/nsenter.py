"""Entering namespaces to run a command: the primitive behind ``nslab exec``, ``shell`` and ``Lab.exec``.

Replaces ``ip netns exec NAME CMD`` and ``nsenter --net=/run/netns/NAME CMD``. The semantics are those of
``ip netns exec``: setns(net) [+ setns(uts)], then a private mount namespace (``/`` made rslave) in which
``/sys`` is remounted for the new network namespace and every file of ``/etc/netns/NAME/`` is bind-mounted
over its ``/etc`` twin (this is how a host gets its own resolv.conf and hosts).

:func:`enter_host` changes the *calling process*, so it is used right before ``exec`` (the CLI) or in a
freshly forked child (``preexec_fn``, the API). It imports nothing heavy: the exec path stays fast.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Mapping, Sequence

from . import linux
from .errors import KernelError, TargetError

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"


def _open_ns(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TargetError(f"{what} does not exist ({path})") from None
    except OSError as exc:
        raise TargetError(f"cannot open {what} ({path}): {exc.strerror}") from None


def enter_host(namespace: str, uts_path: str | None = None) -> None:
    """Make the calling (single-threaded) process live in host ``namespace`` as ``ip netns exec`` does."""
    net_fd = _open_ns(os.path.join(NETNS_DIR, namespace), f"namespace {namespace}")
    uts_fd = _open_ns(uts_path, f"hostname namespace of {namespace}") if uts_path else None
    try:
        linux.setns(net_fd, linux.CLONE_NEWNET)
        if uts_fd is not None:
            linux.setns(uts_fd, linux.CLONE_NEWUTS)
    except OSError as exc:
        raise KernelError(f"cannot enter {namespace}: {exc.strerror}") from None
    finally:
        os.close(net_fd)
        if uts_fd is not None:
            os.close(uts_fd)
    etc_dir = os.path.join(ETC_NETNS_DIR, namespace)
    try:
        entries = os.listdir(etc_dir)
    except FileNotFoundError:
        entries = []
    _private_mounts(namespace, entries)


def _private_mounts(namespace: str, etc_entries: Sequence[str]) -> None:
    try:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount("none", "/", None, linux.MS_SLAVE | linux.MS_REC)
    except OSError as exc:
        raise KernelError(f"cannot make a private mount namespace: {exc.strerror}") from None
    # /sys shows the network namespace of whoever mounted it: remount it so /sys/class/net is ours.
    try:
        linux.umount("/sys")
        linux.mount(namespace, "/sys", "sysfs", 0)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM):
            raise KernelError(f"cannot remount /sys: {exc.strerror}") from None
    etc_dir = os.path.join(ETC_NETNS_DIR, namespace)
    for entry in etc_entries:
        source = os.path.join(etc_dir, entry)
        target = os.path.join("/etc", entry)
        if not os.path.exists(target):
            continue  # ip netns exec skips these too; there is nothing to bind over
        try:
            linux.mount(source, target, "none", linux.MS_BIND)
        except OSError as exc:
            raise KernelError(f"cannot bind {source} over {target}: {exc.strerror}") from None


def exec_in_host(
    namespace: str,
    argv: Sequence[str],
    uts_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Replace this process with ``argv`` running inside the host. Returns only by raising."""
    enter_host(namespace, uts_path)
    try:
        if env is None:
            os.execvp(argv[0], list(argv))
        os.execvpe(argv[0], list(argv), dict(env))
    except FileNotFoundError:
        raise TargetError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise TargetError(f"permission denied: {argv[0]}") from None


def run_in_host(
    namespace: str,
    argv: Sequence[str],
    uts_path: str | None = None,
    **popen_kwargs: object,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` inside the host: the child enters the namespaces before it execs."""
    if not os.path.exists(os.path.join(NETNS_DIR, namespace)):
        raise TargetError(f"namespace {namespace} does not exist")

    def child() -> None:
        enter_host(namespace, uts_path)

    return subprocess.run(list(argv), preexec_fn=child, **popen_kwargs)  # type: ignore[call-overload]

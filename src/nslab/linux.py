"""Thin wrappers for the libc calls Python 3.11 lacks: setns, unshare, mount, umount2, sethostname, inotify,
and a filesystem mounted nowhere (fsopen + fsmount).

Owns nothing but the syscall boundary; every failure becomes an ``OSError`` with errno, so callers convert
it into the nslab error tree. Kept free of heavy imports: the ``exec`` path uses it. So the functions are
made from ctypes' C half (``_ctypes``) alone, declared the way ``ctypes.CDLL(None, use_errno=True)`` declares
them: importing ``ctypes`` itself (its Python half: the type zoo, ``struct``, ``ctypes._endian``) cost ~3 ms
of the ~16 ms of a whole ``nslab exec`` (tests/unit/test_linux_calls.py checks them against ctypes).
"""

from __future__ import annotations

import _ctypes
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms): `nslab exec` imports this
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
CLONE_FS = 0x00000200

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

NS_TYPES = {
    "net": CLONE_NEWNET,
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}

class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
    _type_ = "i"


class _ULong(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_ulong
    _type_ = "L"


class _CharP(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_char_p
    _type_ = "z"


class _VoidP(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_void_p
    _type_ = "P"


class _Function(_ctypes.CFuncPtr):  # what CDLL(None, use_errno=True) makes: cdecl, errno kept, int result
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Libc:
    # the process itself, libc included (ctypes' CDLL(None); typeshed omits dlopen's None)
    _handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]


def _libc_function(name: str, *argtypes: type) -> _Function:
    function = _Function((name, _Libc))  # type: ignore[arg-type]  # (any object with _handle, as CDLL)
    if argtypes:
        function.argtypes = argtypes
    return function


class _Calls:
    """The libc functions, each looked up on first use."""

    def __getattr__(self, name: str) -> _Function:
        function = _libc_function(name, *_ARGTYPES.get(name, ()))
        setattr(self, name, function)
        return function


_ARGTYPES: dict[str, tuple[type, ...]] = {
    "mount": (_CharP, _CharP, _CharP, _ULong, _VoidP),
    "umount2": (_CharP, _Int),
}
_libc = _Calls()


def _check(result: int, what: str, target: str = "") -> None:
    if result != 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target or None)


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        "mount",
        target,
    )


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), "umount", target)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


IN_MODIFY, IN_NONBLOCK, IN_CLOEXEC = 0x2, 0o4000, 0o2000000


def inotify_init() -> int:
    """A non-blocking inotify descriptor."""
    fd: int = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        _check(-1, "inotify_init1")
    return fd


def inotify_watch(fd: int, path: str, mask: int = IN_MODIFY) -> int:
    """Watch ``path`` (the same file always gets the same watch descriptor)."""
    wd: int = _libc.inotify_add_watch(fd, path.encode(), mask)
    if wd < 0:
        _check(-1, "inotify_add_watch", path)
    return wd


# The new mount API (Linux 5.2): the same numbers on every architecture (the unified syscall table).
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
FSOPEN_CLOEXEC, FSCONFIG_CMD_CREATE, FSMOUNT_CLOEXEC = 1, 6, 1


def detached_mount(fstype: str) -> int:
    """A new instance of filesystem ``fstype`` (no source, no options: ``proc``, ``tmpfs``, ...) mounted nowhere:
    an fd to open files under (``dir_fd=``); the mount goes with the last fd that refers to it. Nothing to
    clean up, nothing visible to anyone else."""
    context: int = _libc.syscall(_ULong(_SYS_FSOPEN), _CharP(fstype.encode()), _ULong(FSOPEN_CLOEXEC))
    if context < 0:
        _check(-1, "fsopen", fstype)
    try:
        if _libc.syscall(_ULong(_SYS_FSCONFIG), _ULong(context), _ULong(FSCONFIG_CMD_CREATE), _VoidP(None),
                         _VoidP(None), _ULong(0)) < 0:
            _check(-1, "fsconfig", fstype)
        fd: int = _libc.syscall(_ULong(_SYS_FSMOUNT), _ULong(context), _ULong(FSMOUNT_CLOEXEC), _ULong(0))
        if fd < 0:
            _check(-1, "fsmount", fstype)
        return fd
    finally:
        os.close(context)


def require_root(why: str) -> None:
    """Raise the message a non-root user needs: what needs root, and why (``why``)."""
    if os.geteuid() != 0:
        from .errors import EnvironmentProblem

        raise EnvironmentProblem(f"nslab needs root for this ({why}): run it with sudo")


def in_thread(work: Callable[[], T], name: str = "nslab-ns") -> T:
    """Run ``work`` in a fresh thread and hand back its result or exception.

    The one way nslab changes namespaces without moving the caller: ``setns``/``unshare`` act on the
    calling thread only, so a short-lived thread can enter another namespace, open a socket or spawn a
    process there, and vanish; the rest of the process never moves.
    """
    import threading

    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=body, name=name)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]

"""Thin wrappers for the libc calls Python 3.11 lacks: setns, unshare, mount, umount2, sethostname, inotify,
a filesystem mounted nowhere (fsopen + fsmount); and the one way nslab does something inside another namespace
and comes back (:func:`in_namespace`, :class:`Visit`).

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

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
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

if TYPE_CHECKING:
    from typing import Any

    _Simple = _ctypes._SimpleCData[Any]  # (generic in typeshed only)

    def _dlopen(_name: str | None, _flag: int, /) -> int: ...  # None: the process itself (typeshed omits it)
else:
    _Simple = _ctypes._SimpleCData
    _dlopen = _ctypes.dlopen


class _Int(_Simple):  # ctypes.c_int
    _type_ = "i"


class _ULong(_Simple):  # ctypes.c_ulong
    _type_ = "L"


class _CharP(_Simple):  # ctypes.c_char_p
    _type_ = "z"


class _VoidP(_Simple):  # ctypes.c_void_p
    _type_ = "P"


class _Function(_ctypes.CFuncPtr):  # what CDLL(None, use_errno=True) makes: cdecl, errno kept, int result
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


_PROCESS = _dlopen(None, 0)  # the process itself, libc included (ctypes' CDLL(None))


def _libc_function(name: str, *argtypes: type) -> _Function:
    function = _Function(_ctypes.dlsym(_PROCESS, name))
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
    """Raise the message a user who is not root (and not inside their keeper's namespaces, where they are root:
    daemons/keeper.py) needs: none of their labs is up, and this needs root (``why``) otherwise."""
    if os.geteuid() != 0:
        from .errors import EnvironmentProblem

        raise EnvironmentProblem(f"no lab of yours is up, and without one this needs root ({why}): `nslab up` "
                                 "brings up a lab of yours, root's labs need sudo")


# --- doing something inside another namespace ------------------------------------------------------------
# setns and unshare move the calling thread only. Two ways, both here: in_namespace(fd, work) runs ``work``
# in a short-lived thread that enters and ends (the caller never moves: a socket made there stays in that
# namespace); `with Visit(fd):` takes the calling thread there and back (a worker thread visiting many).
_NS_FILES = {flag: name for name, flag in NS_TYPES.items()}


def own_namespace(nstype: int = CLONE_NEWNET) -> int:
    """The calling thread's namespace of ``nstype``, opened: the way back, for a thread that visits many."""
    return os.open(f"/proc/thread-self/ns/{_NS_FILES[nstype]}", os.O_RDONLY | os.O_CLOEXEC)


class Visit:
    """``with Visit(fd):`` the calling thread is in the namespace of the open file ``fd`` for the block and back
    in its own afterwards, also when the block raises; ``fd`` stays the caller's. ``fd`` None: a new namespace
    (``unshare``; gone when nothing holds it). ``home``: the thread's own namespace (:func:`own_namespace`), for a
    thread that visits many in turn; else it is opened and closed here. A class, not a contextlib generator:
    the ``exec`` path imports this module."""

    __slots__ = ("_moved", "_own", "fd", "home", "nstype")

    def __init__(self, fd: int | None, nstype: int = CLONE_NEWNET, home: int = -1) -> None:
        self.fd, self.nstype, self.home = fd, nstype, home
        self._own = self._moved = False

    def __enter__(self) -> None:
        self._own = self.home < 0
        if self._own:
            self.home = own_namespace(self.nstype)
        try:
            if self.fd is None:
                unshare(self.nstype)
            else:
                setns(self.fd, self.nstype)
            self._moved = True
        except BaseException:
            self._close()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._moved:
                setns(self.home, self.nstype)
        finally:
            self._moved = False
            self._close()

    def _close(self) -> None:
        if self._own:
            os.close(self.home)
            self.home, self._own = -1, False


def in_namespace(fd: int | None, work: Callable[[], T], nstype: int = CLONE_NEWNET, name: str = "nslab-ns") -> T:
    """``work()`` inside the namespace of the open file ``fd`` (None: a new one, gone with the thread unless
    ``work`` keeps it), in a short-lived thread: the caller never moves, and the thread needs no way back."""

    def inside() -> T:
        if fd is None:
            unshare(nstype)
        else:
            setns(fd, nstype)
        return work()

    return in_thread(inside, name)


def in_thread(work: Callable[[], T], name: str = "nslab-ns") -> T:
    """Run ``work`` in a fresh thread and hand back its result or exception (what :func:`in_namespace` runs
    in: ``setns``/``unshare`` act on the calling thread only, so the rest of the process never moves)."""
    import threading

    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=body, name=name)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


# --- containment (ns/contain.py): capabilities, no_new_privs, recursive read-only mounts ----------------------
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1
_CAPABILITY_VERSION_3 = 0x20080522
_ARGTYPES["prctl"] = (_Int, _ULong, _ULong, _ULong, _ULong)
_ARGTYPES["capset"] = (_CharP, _CharP)
_ARGTYPES["mount_setattr"] = (_Int, _CharP, _Int, _CharP, _ULong)


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, arg2, arg3, 0, 0), "prctl")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets (bit N: capability N)."""
    import struct

    header = struct.pack("Ii", _CAPABILITY_VERSION_3, 0)
    words = [(mask >> shift) & 0xFFFFFFFF for shift in (0, 32) for mask in (effective, permitted, inheritable)]
    _check(_libc.capset(header, struct.pack("6I", *words)), "capset")


def mount_setattr(path: str, set_flags: int, clear_flags: int = 0) -> None:
    """Change mount attributes (``MOUNT_ATTR_*``) of ``path`` and every mount below it, keeping the others
    (nosuid, nodev...); mount(2)'s ``MS_REMOUNT|MS_BIND`` works on one mount at a time and resets them."""
    import struct

    attr = struct.pack("QQQQ", set_flags, clear_flags, 0, 0)
    _check(_libc.mount_setattr(AT_FDCWD, path.encode(), AT_RECURSIVE, attr, len(attr)), "mount_setattr", path)

"""The hostname driver: UTS namespaces kept without any process, bind-mounted on a file.

A host's hostname lives in a UTS namespace of its own, pinned on ``/run/nslab/<lab>/uts/<host>`` the way
``unshare --uts=FILE hostname NAME`` does it; ``nslab exec`` enters it. Each lab's ``uts`` directory is a small
tmpfs of its own, so ``down`` drops every pin with one lazy unmount. All pins of one call are made in one worker
thread (unshare, sethostname, bind-mount per host): a big lab pays no thread per host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .. import linux
from ..errors import KernelError

#: Holds only empty files that UTS namespaces are bind-mounted on.
UTS_TMPFS = "mode=755,size=64k"
UTS_TMPFS_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def is_mounted(path: str) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except FileNotFoundError:
        return False


class LiveHostnamePins:
    def is_kept(self, path: str) -> bool:
        return is_mounted(path)

    def keep(self, pins: Iterable[tuple[str, str]]) -> None:
        """Make (or update) the UTS namespace kept at each ``(path, hostname)``; no process stays."""
        pins = list(pins)
        for directory in sorted({os.path.dirname(path) for path, _ in pins}):
            _prepare_dir(directory)
        done: list[str] = []

        def work() -> None:
            home = linux.own_namespace(linux.CLONE_NEWUTS)
            try:
                for path, hostname in pins:
                    done.append(path)
                    _pin(path, hostname, home)
            finally:
                os.close(home)

        try:
            linux.in_thread(work, "nslab-uts")
        except OSError as exc:
            raise KernelError(f"cannot keep the hostname namespace at {done[-1]}: {exc.strerror}") from None

    def hostnames(self, paths: list[str]) -> dict[str, str]:
        """The hostname of the UTS namespace kept at each of ``paths`` (a path without one is left out): one
        worker thread enters each in turn (drift and ``up`` compare them with the lab's)."""

        def work() -> dict[str, str]:
            found: dict[str, str] = {}
            home = linux.own_namespace(linux.CLONE_NEWUTS)
            try:
                for path in paths:
                    if is_mounted(path):
                        found[path] = _hostname_in(path, home)
            finally:
                os.close(home)
            return found

        return linux.in_thread(work, "nslab-uts") if paths else {}

    def drop(self, path: str) -> list[str]:
        try:
            while is_mounted(path):
                linux.umount(path, linux.MNT_DETACH)
            if os.path.exists(path):
                os.unlink(path)
        except OSError as exc:
            return [f"cannot remove the hostname namespace {path}: {exc.strerror}"]
        return []

    def drop_dir(self, directory: str) -> list[str]:
        """Drop every pin under ``directory`` (one lazy unmount of its tmpfs), then the directory."""
        try:
            for _ in range(8):  # a tmpfs (or a stack of them): MNT_DETACH takes every pin mounted inside along
                if not is_mounted(directory):
                    break
                linux.umount(directory, linux.MNT_DETACH)
        except OSError as exc:
            return [f"cannot unmount the hostname namespaces at {directory}: {exc.strerror}"]
        failures: list[str] = []
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return []
        for entry in entries:  # pins of the layout without a tmpfs
            failures += self.drop(os.path.join(directory, entry))
        try:
            os.rmdir(directory)
        except OSError:
            pass
        return failures


def _pin(path: str, hostname: str, home: int) -> None:
    """From the calling (worker) thread, whose own UTS namespace is ``home``: set ``hostname`` in the namespace
    kept at ``path``, making it if new."""
    kept = is_mounted(path)
    fd = os.open(path, os.O_RDONLY) if kept else None
    try:
        with linux.Visit(fd, linux.CLONE_NEWUTS, home=home):
            linux.sethostname(hostname)
            if not kept:
                os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o444))
                linux.mount("/proc/thread-self/ns/uts", path, None, linux.MS_BIND)
    finally:
        if fd is not None:
            os.close(fd)


def _hostname_in(path: str, home: int) -> str:
    """From the calling (worker) thread, whose own UTS namespace is ``home``: the hostname of the one kept at
    ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with linux.Visit(fd, linux.CLONE_NEWUTS, home=home):
            return os.uname().nodename
    finally:
        os.close(fd)


def _prepare_dir(directory: str) -> None:
    """Give the lab's ``uts`` directory its own small tmpfs (once), so that ``down`` unmounts every pin at
    once. A directory that already holds pins (made before the tmpfs existed) is left as it is."""
    os.makedirs(directory, exist_ok=True)
    if is_mounted(directory) or os.listdir(directory):
        return
    try:
        linux.mount("tmpfs", directory, "tmpfs", UTS_TMPFS_FLAGS, UTS_TMPFS)
    except OSError as exc:
        raise KernelError(f"cannot mount a tmpfs on {directory}: {exc.strerror}") from None

"""Network sysctls of the caller's namespace, through ``/proc/sys`` (which shows the reader's netns).

Replaces ``sysctl -w``. Values are the strings the kernel prints (``"0"``, ``"1"``), so a recorded value is
restored byte for byte. The firewall feature uses it for ``net.ipv4.ip_forward`` and per-bridge
``route_localnet``; validation asks it which of a host's ``sysctls:`` a namespace lacks (``sysctl -a`` in a
fresh ``unshare -n``).
"""

from __future__ import annotations

import os

from ..errors import KernelError


def path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def exists(key: str) -> bool:
    return os.path.exists(path(key))


def read(key: str) -> str:
    try:
        with open(path(key)) as f:
            return f.read().strip()
    except OSError as exc:
        raise KernelError(f"cannot read sysctl {key}: {exc.strerror}") from exc


def write(key: str, value: str) -> None:
    try:
        with open(path(key), "w") as f:
            f.write(value)
    except OSError as exc:
        raise KernelError(f"cannot set sysctl {key}={value}: {exc.strerror}") from exc


def unusable_in_new_namespace(keys: list[str]) -> dict[str, str]:
    """Of ``keys``, those a new network namespace cannot take, each with why ("unknown" or "read-only").

    Looked up in a fresh namespace (a thread unshares one, reads /proc/sys/net there and vanishes with it):
    the machine's own /proc/sys/net has keys no other namespace has (net.core.rmem_max) and its interfaces.
    Where a namespace cannot be made (not root), the machine's view is the best there is.
    """
    from .. import linux

    def work() -> dict[str, str]:
        out: dict[str, str] = {}
        for key in keys:
            if not os.path.exists(path(key)):
                out[key] = "unknown"
            elif os.geteuid() == 0 and not os.access(path(key), os.W_OK):
                out[key] = "read-only"
        return out

    try:
        return linux.in_namespace(None, work, name="nslab-sysctl")
    except OSError:
        return work()


class LiveSysctls:
    def read(self, key: str) -> str:
        return read(key)

    def write(self, key: str, value: str) -> None:
        write(key, value)

    def exists(self, key: str) -> bool:
        return exists(key)

    def unusable_in_new_namespace(self, keys: list[str]) -> dict[str, str]:
        return unusable_in_new_namespace(keys)

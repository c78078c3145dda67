"""Network sysctls of the caller's namespace, through ``/proc/sys`` (which shows the reader's netns).

Replaces ``sysctl -w``. Values are the strings the kernel prints (``"0"``, ``"1"``), so a recorded value is
restored byte for byte. The firewall feature uses it for ``net.ipv4.ip_forward`` and per-bridge
``route_localnet``.
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


class LiveSysctls:
    def read(self, key: str) -> str:
        return read(key)

    def write(self, key: str, value: str) -> None:
        write(key, value)

    def exists(self, key: str) -> bool:
        return exists(key)

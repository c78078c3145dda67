"""Network sysctls of the caller's namespace, through ``/proc/sys`` (which shows the reader's netns).

Only what the firewall needs: ``net.ipv4.ip_forward`` and per-interface ``route_localnet``. Values are the
strings the kernel prints (``"0"``, ``"1"``), so a recorded value is restored byte for byte.
"""

from __future__ import annotations

import os

from ..errors import KernelError

IP_FORWARD = "net.ipv4.ip_forward"


def path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def route_localnet(interface: str) -> str:
    """The key of ``route_localnet`` of one interface (interface names have no dots in nslab)."""
    return f"net.ipv4.conf.{interface}.route_localnet"


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

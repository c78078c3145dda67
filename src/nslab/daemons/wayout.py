"""A rootless keeper's way out (daemons/keeper.py): pasta when it is new enough, else slirp4netns.

pasta (of the passt project) is faster than slirp4netns, but releases before 2023_12_04 lack what rootless
networking needs of it: that is the minimum RootlessKit's pasta network driver and nerdctl's rootless docs
require, and nslab takes the same line. pasta says its version on the first line of ``pasta --version``: an
upstream build ``pasta 2023_12_04.b86afe3``, a distribution's its package version (``0.0~git20231204...``,
``0^20231204.g...``); Debian 12's passt (0.0~git20230309) says ``pasta unknown version``, which counts as too
old. The date in it is what is compared.

Published ports do not depend on the way out: the keeper relays them from sockets made in the machine's
namespace (its binder), whichever it is. pasta itself has not run under nslab: no pasta of 2023_12_04 or later
is packaged for the machines nslab is tested on (Debian 12), so :func:`pasta_argv` and the keeper's wait for
pasta's tap0 are untested.
"""

from __future__ import annotations

#: The oldest pasta nslab uses (RootlessKit's minimum for its pasta driver).
PASTA_MINIMUM = (2023, 12, 4)
PASTA_MINIMUM_SAID = "2023_12_04"


class WayOut:
    """The program that connects the keeper's network namespace to the machine's network: ``name``
    (``slirp4netns`` or ``pasta``), its ``path``, and ``why`` (why not pasta, when pasta is there but too old)."""

    def __init__(self, name: str, path: str, why: str = ""):
        self.name, self.path, self.why = name, path, why

    def said(self) -> str:
        """The way out as ``status`` says it: ``slirp4netns (pasta unknown version is older than 2023_12_04)``."""
        return f"{self.name} ({self.why})" if self.why else self.name


def version_date(said: str) -> tuple[int, int, int] | None:
    """The release date in ``pasta --version``'s first line (``2023_12_04``, ``git20231204``, ``0^20231204``);
    None when it names none."""
    digits = ""
    for ch in said:  # (no `re` on this path: the keeper's start is waited for)
        if ch.isdigit():
            digits += ch
            if len(digits) == 8:
                break
        elif ch == "_" and len(digits) in (4, 6):
            continue
        else:
            digits = ""
    if len(digits) != 8 or not digits.startswith("20"):
        return None
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    return (year, month, day) if 1 <= month <= 12 and 1 <= day <= 31 else None


def pasta_version(path: str) -> str:
    """The first line of ``pasta --version`` without the leading ``pasta``; empty when it could not be run."""
    import subprocess

    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (done.stdout or done.stderr).strip().split("\n")[0].strip()
    return first[len("pasta"):].strip() if first.startswith("pasta") else first


def choose() -> WayOut:
    """pasta if on PATH and new enough, else slirp4netns; EnvironmentProblem naming the fix when neither."""
    import shutil

    from ..errors import EnvironmentProblem

    why = ""
    pasta = shutil.which("pasta")
    if pasta is not None:
        said = pasta_version(pasta) or "of no version"
        date = version_date(said)
        if date is not None and date >= PASTA_MINIMUM:
            return WayOut("pasta", pasta)
        why = f"pasta {said} is older than {PASTA_MINIMUM_SAID}"
    slirp = shutil.which("slirp4netns")
    if slirp is not None:
        return WayOut("slirp4netns", slirp, why)
    also = f" ({why})" if why else ""
    raise EnvironmentProblem(f"rootless labs need slirp4netns (or pasta {PASTA_MINIMUM_SAID} or newer) for their "
                             f"way out, and it is not on PATH{also}: install it (apt-get install slirp4netns) or "
                             "run nslab as root")


def recorded(root: str) -> str:
    """The way out the user's keeper chose, as ``status`` says it (its record in the state root)."""
    from .. import paths

    try:
        with open(paths.keeper_way_out(root)) as fh:
            return fh.read().strip() or "slirp4netns"
    except OSError:
        return "slirp4netns"


def record(root: str, way: WayOut) -> None:
    from .. import paths

    with open(paths.keeper_way_out(root), "w") as fh:
        fh.write(way.said() + "\n")


def pasta_argv(path: str, keeper: int, address: str, gateway: str, dns: str, tap: str, mtu: int) -> list[str]:
    """pasta attached to the keeper's user and network namespaces, configuring ``tap`` as slirp4netns would
    (address, gateway, DNS forwarded), no port forwarded either way (the keeper relays published ports), the
    machine's loopback not reachable, IPv4 only, in the foreground (the keeper's helper child)."""
    return [path, "--foreground", "--config-net", f"--ns-ifname={tap}", f"--mtu={mtu}", f"--address={address}",
            "--netmask=24", f"--gateway={gateway}", f"--dns-forward={dns}", "--no-map-gw", "--ipv4-only",
            "--tcp-ports=none", "--udp-ports=none", "-T", "none", "-U", "none",
            f"--userns=/proc/{keeper}/ns/user", f"--netns=/proc/{keeper}/ns/net"]


def configured(tap: str, address: str) -> bool:
    """Whether ``tap`` has ``address`` in this network namespace (pasta has no ready fd: the keeper looks)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            got = fcntl.ioctl(sock, 0x8915, struct.pack("256s", tap.encode()))  # SIOCGIFADDR
        except OSError:
            return False
    return socket.inet_ntoa(got[20:24]) == address

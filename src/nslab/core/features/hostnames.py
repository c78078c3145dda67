"""Feature 'hostnames': every host has its own hostname, in a UTS namespace kept without a process.

The namespace is pinned on ``/run/nslab/<lab>/uts/<host>`` (drivers/uts.py) and entered by ``nslab exec``.
A converge touches only hosts whose pin is missing (drift, which ``status`` names) or whose hostname changed;
``down`` unmounts the lab's ``uts`` tmpfs, taking every pin with it.

Replaces: ``touch FILE && unshare --uts=FILE hostname NAME``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...drivers.uts import UTS_TMPFS
from ...errors import Problem
from ...paths import uts_dir, uts_path
from ...values import Value, field
from ..plan import Action
from . import DownContext, FeaturePlan, UpContext, ValidateContext

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Lab
    from ..difference import Difference

KEY = "hostnames"
STATUS_KEY = "hostsetup"


class HostnamesRecord(Value):
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"uts": path, "hostname": name}

    def to_json(self) -> dict[str, Any]:
        return {"hosts": self.hosts}

    @classmethod
    def from_json(cls, data: Any) -> HostnamesRecord:
        data = data if isinstance(data, dict) else {}
        return cls(dict(data.get("hosts") or {}))


def validate(ctx: ValidateContext) -> list[Problem]:
    from ...errors import field_path

    problems = []
    for name, host in ctx.lab.hosts.items():
        if len(host.hostname.encode()) > 64:
            path = ("hosts", name, "hostname")
            problems.append(Problem("a hostname has at most 64 characters", field_path(path), ctx.file,
                                    ctx.source.line(path)))
    return problems


class KeepHostnames(Action):
    """Pins ``(path, hostname)``; ``before``: the hostname each pin had (None: new pin)."""

    lab: str
    pins: tuple[tuple[str, str], ...]
    before: tuple[str | None, ...]
    mount_dir: bool = False  # the lab's uts tmpfs is not there yet

    def commands(self) -> list[str]:
        out = []
        if self.mount_dir:
            directory = uts_dir(self.lab)
            out.append(f"mkdir -p {directory} && mount -t tmpfs -o nosuid,nodev,noexec,{UTS_TMPFS} tmpfs {directory}")
        for (path, hostname), old in zip(self.pins, self.before, strict=True):
            if old is None:
                out.append(f"touch {path} && unshare --uts={path} hostname {hostname}")
            else:
                out.append(f"nsenter --uts={path} hostname {hostname}")
        return out

    def summary(self) -> str:
        return f"set {len(self.pins)} hostname(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.uts.keep(self.pins)
        new = tuple(path for (path, _), old in zip(self.pins, self.before, strict=True) if old is None)
        back = tuple((path, old) for (path, _), old in zip(self.pins, self.before, strict=True) if old is not None)
        return UndoHostnames(new, back)


class UndoHostnames(Action):
    drop: tuple[str, ...]
    restore: tuple[tuple[str, str], ...]

    def commands(self) -> list[str]:
        return [f"umount {p} && rm {p}" for p in self.drop] + [
            f"nsenter --uts={p} hostname {h}" for p, h in self.restore
        ]

    def summary(self) -> str:
        return f"undo {len(self.drop) + len(self.restore)} hostname(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        from ...errors import KernelError

        failures = [f for path in self.drop for f in drivers.uts.drop(path)]
        if self.restore:
            drivers.uts.keep(self.restore)
        if failures:
            raise KernelError("; ".join(failures))
        return None


class DropHostnames(Action):
    """Pins of hosts that left the lab (``paths``), or the lab's whole ``uts`` directory (``directory``)."""

    paths: tuple[str, ...] = ()
    directory: str = ""

    def commands(self) -> list[str]:
        out = [f"umount {p} && rm {p}" for p in self.paths]
        if self.directory:
            out.append(f"umount -l {self.directory} && rmdir {self.directory}")
        return out

    def summary(self) -> str:
        return "remove hostnames"

    def teardown(self, drivers: Drivers) -> list[str]:
        failures = [f for path in self.paths for f in drivers.uts.drop(path)]
        if self.directory:
            failures += drivers.uts.drop_dir(self.directory)
        return failures

    def apply(self, drivers: Drivers) -> Action | None:
        from ...errors import KernelError

        failures = self.teardown(drivers)
        if failures:
            raise KernelError("; ".join(failures))
        return None  # a host that left is not brought back with its old hostname by a rollback: it is recreated


def _wanted(lab: Lab) -> dict[str, dict[str, str]]:
    """host -> its pin and hostname (a container has its own: Docker's Hostname)."""
    return {name: {"uts": uts_path(lab.name, name), "hostname": h.hostname} for name, h in lab.hosts.items()
            if h.container is None}


def plan_up(ctx: UpContext) -> FeaturePlan:
    lab, uts = ctx.lab, ctx.drivers.uts
    old = HostnamesRecord.from_json(ctx.record)
    want = _wanted(lab)
    gone = tuple(h["uts"] for name, h in old.hosts.items() if name not in want and "uts" in h)
    pins: list[tuple[str, str]] = []
    before: list[str | None] = []
    seen = uts.hostnames([pin["uts"] for pin in want.values()])  # (a hostname changed by hand is set back)
    for name, pin in want.items():
        previous = seen.get(pin["uts"])
        if name in ctx.recreated or previous != pin["hostname"]:
            pins.append((pin["uts"], pin["hostname"]))
            before.append(previous)
    after: list[Action] = []
    if gone:
        after.append(DropHostnames(paths=gone))
    if pins:
        directory = uts_dir(lab.name)
        mount_dir = not uts.is_kept(directory)
        after.append(KeepHostnames(lab.name, tuple(pins), tuple(before), mount_dir))
    return FeaturePlan(after=after, record=HostnamesRecord(want))


def plan_down(ctx: DownContext) -> FeaturePlan:
    record = HostnamesRecord.from_json(ctx.record)
    directory = uts_dir(ctx.name)
    elsewhere = tuple(sorted(h["uts"] for h in record.hosts.values() if h.get("uts", directory).rpartition("/")[0]
                             != directory))  # pins kept where an older layout put them
    return FeaturePlan(before=[DropHostnames(paths=elsewhere, directory=directory)])


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    return {}


def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    """A host's kept UTS namespace gone, or its hostname changed (``up`` pins it again)."""
    from ..difference import Difference

    want = _wanted(lab)
    seen = drivers.uts.hostnames([pin["uts"] for pin in want.values()])
    found = []
    for name, pin in want.items():
        now = seen.get(pin["uts"])
        if now is None:
            found.append(Difference(f"host {name}: its hostname namespace {pin['uts']} is missing", "hostname",
                                    host=name))
        elif now != pin["hostname"]:
            found.append(Difference(f"host {name}: hostname is {now}, not {pin['hostname']}", "hostname", host=name))
    return found

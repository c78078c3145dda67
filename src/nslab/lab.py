"""The typed Python API of a lab: load, up, down, status, exec. The CLI is a thin layer over this.

A facade: loading a lab file is core/load.py's pipeline (read -> validate -> resolve -> keep), a lab's life on
the machine (up, converge, down, status) is core/lifecycle.py's, the tests of the network are tools'.

    >>> with Lab.load("nslab.yaml") as lab:          # up on enter, down on exit
    ...     print(lab.exec("web1", ["ip", "-br", "addr"], capture_output=True).stdout)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .core import load, state
from .core.lifecycle import Progress, UpResult, down, status
from .core.lifecycle import plan as plan_lab
from .core.lifecycle import up as up_lab
from .drivers import Drivers
from .errors import NslabError, Problem, TargetError
from .model import Lab as ResolvedLab
from .ns import nsenter

if TYPE_CHECKING:
    import subprocess

    from .core.plan import Plan
    from .ns.targets import Target
    from .tools import check as check_mod


class Lab:
    """A lab file, loaded and validated (nothing on the machine changes until :meth:`up`).

    ``drivers``: the kernel boundaries to work through (default: the real ones, made on first use).
    ``machine``: of a lab across machines (``machines:`` in its file), the part this machine builds, as ``nslab up
    --machine`` (None: the part recorded here, else the machine whose address is local).
    """

    def __init__(self, lab_file: load.LabFile, drivers: Drivers | None = None, machine: str | None = None) -> None:
        self.file = lab_file
        self.drivers = drivers
        self.machine = machine
        self._targets: dict[str, Target] = {}  # host -> where its namespaces are (Lab.exec)
        self.repairs: list[str] = []  # the drift the last plan repairs

    @classmethod
    def load(cls, path: str | os.PathLike[str], drivers: Drivers | None = None, check: bool = True,
             machine: str | None = None) -> Lab:
        """Read the lab file ``path`` (``-``: standard input) and check it whole: schema, references,
        addresses, published ports, and (``check``) conflicts with the machine and the other labs. Every problem
        is raised at once, in one :class:`~nslab.errors.UserError`. ``check=False`` leaves the machine's part
        to :meth:`up` (it checks again under the machine lock)."""
        lab = cls(load.read(path), drivers, machine)
        lab._raise_problems(check)
        return lab

    @classmethod
    def from_text(cls, text: str, path: str = "", drivers: Drivers | None = None, check: bool = False,
                  machine: str | None = None) -> Lab:
        """Like :meth:`load`; a file without schema problems is checked against the machine only with ``check``."""
        lab = cls(load.from_text(text, path or "<string>", os.path.realpath(path) if path else ""), drivers, machine)
        lab._raise_problems(check)
        return lab

    def _raise_problems(self, machine: bool) -> None:
        """Raise every problem: with ``machine``, or when the file has schema problems (they come with all the
        others: the rest of the file's and the machine's)."""
        parsed = self.file.parsed
        if not machine and not (parsed is not None and parsed.problems):
            return
        drivers = self.drivers or Drivers.live()
        try:
            _, problems = self.validate(drivers, state.LabState.load(self.name))
        finally:
            if self.drivers is None:
                drivers.close()
        if problems:
            raise load.problem_error(problems, self.file)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def path(self) -> str:
        """The lab file's real path ("" for standard input or text)."""
        return self.file.path

    # ------------------------------------------------------------------------------------------
    def validate(
        self, drivers: Drivers | None, recorded: state.LabState | None = None
    ) -> tuple[ResolvedLab, list[Problem]]:
        """Every problem of the lab in one pass, changing nothing (see :func:`nslab.core.load.validate`).
        Returns the lab as far as it resolved, and the problems in file order."""
        checked = load.validate(self.file, drivers, recorded, self.machine)
        return checked.lab, checked.problems

    def resolve(self, drivers: Drivers | None = None, recorded: state.LabState | None = None) -> ResolvedLab:
        """Resolve against the machine (its routes/addresses and the other labs) and validate every feature,
        without changing anything; every problem is raised at once."""
        return load.resolved(self.file, drivers, recorded, self.machine)

    def plan(self, drivers: Drivers, recorded: state.LabState | None) -> tuple[ResolvedLab, Plan, dict[str, Any]]:
        """The desired lab, the plan that brings the machine there, and the records to keep once it is applied."""
        planned = plan_lab(self.file, drivers, recorded, machine=self.machine)
        self.repairs = planned.repairs
        return planned.lab, planned.plan, planned.records

    def up(self, dry_run: bool = False, progress: Progress | None = None, only: Sequence[str] | None = None,
           profiles: Sequence[str] = ()) -> UpResult:
        """Bring the lab up, or converge it to the file if it is up already. Idempotent. If anything fails,
        everything this run did is undone: the lab that was up stays as it was; a new lab leaves nothing.
        ``only``/``profiles``: part of its hosts, as ``up --only``/``--profile``."""
        from .core.lifecycle import Subset

        subset = Subset(tuple(only) if only is not None else None, tuple(profiles))
        result = up_lab(self.file, self.drivers, dry_run, progress, subset, self.machine)
        self.repairs = list(result.repairs)
        return result

    def down(self) -> None:
        down(self.name, self.drivers, self.machine)

    def status(self) -> dict[str, Any]:
        return status(self.name, self.drivers, self.machine)

    def exec(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``host`` (``subprocess.run`` keywords pass through); returns its result.

        The host's network, hostname and /etc/netns files apply, as with ``nslab exec``; this process stays
        where it is. The host's namespace paths are looked up once per Lab (not per call).
        """
        target = self._targets.get(host)
        if target is None or not os.path.exists(target.net_path):
            from .ns.targets import resolve

            target = self._targets[host] = resolve(f"{self.name}/{host}")
        return nsenter.run_in_target(target, argv, **kwargs)

    def port(self, host: str, port: int | str) -> int:
        """The machine's port that ``port`` of ``host`` is published on (``80``, ``"80/tcp"``, ``"53/udp"``), as
        ``nslab port LAB/HOST PORT`` prints it: handy when the lab file leaves the host port to ``up``
        (``publish: ["80"]``). Raises TargetError when it is not published."""
        from .core.features.firewall.record import published_ports

        number, _, proto = str(port).partition("/")
        proto = proto or "tcp"
        for p in published_ports(self.name, host):
            if str(p.port) == number and p.proto == proto:
                return p.host_port
        raise TargetError(f"no public port '{number}/{proto}' published for {self.name}/{host}")

    def __enter__(self) -> Lab:
        self.up()
        return self

    # -- testing the network (check.py, features/links.py) --------------------------------------
    def check(self, port: str | None = None, source: str | None = None,
              timeout: float | None = None, ipv6: bool = False) -> check_mod.Matrix:
        """The reachability matrix of the lab that is up (``nslab check``): every cell probed, with the
        verdict the lab implies; ``.ok`` when all match. ``port``: ``"80"`` (TCP) or ``"53/udp"``; ``timeout``:
        how long an unanswered cell is waited for (seconds; default that of ``nslab check``); ``ipv6``: probe
        over IPv6 (``nslab check -6``)."""
        from .tools import check as check_mod

        if timeout is None:
            return check_mod.check(self.name, port, source, self.drivers, ipv6=ipv6)
        return check_mod.check(self.name, port, source, self.drivers, timeout=timeout, ipv6=ipv6)

    def link(self, host: str, iface: str | None = None, up: bool = True) -> list[str]:
        """``nslab link LAB/HOST[:IF] up|down``: both ends of the interface (every interface of the host when
        ``iface`` is None); kept as intended state. Returns the ``HOST:IF`` changed."""
        from .core.features.links import set_link

        drivers = self.drivers or Drivers.live()
        try:
            return set_link(self.name, host, iface, up, drivers)
        finally:
            if self.drivers is None:
                drivers.close()

    def stop(self, *hosts: str) -> None:
        """``nslab stop LAB/HOST,..``: their services stop, their interfaces go down (features/hoststate.py)."""
        self._host_state(list(hosts), "stop")

    def start(self, *hosts: str) -> None:
        self._host_state(list(hosts), "start")

    def restart(self, *hosts: str) -> None:
        self._host_state(list(hosts), "restart")

    def _host_state(self, hosts: list[str], verb: str) -> None:
        from .core.lifecycle import change_hosts

        drivers = self.drivers or Drivers.live()
        try:
            change_hosts(self.name, hosts, verb, drivers)
        finally:
            if self.drivers is None:
                drivers.close()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- impairments and partitions (faults.py) ---------------------------------------------------------
    def impair(self, host: str, iface: str | None = None, *, direction: str | None = None,
               clear: bool | str | Sequence[str] = False, duration: float | str | None = None,
               **amounts: float | int | str | None) -> str:
        """Impair ``host``'s interface (default: its first, ``eth0``) with ``amounts``: ``loss``, ``duplicate``,
        ``reorder``, ``corrupt`` in percent (``30`` or ``"30%"``), ``rate`` (``"10mbit"``), ``delay``/``jitter`` in
        ms (``50`` or ``"50ms"``), in ``direction`` "out" (what the host sends; the default), "in" (everything it
        receives) or "both". Only the kinds named change (0 removes one). ``clear=True`` removes every kind (a
        list, or ``"delay,loss"``: those kinds), of every interface when ``iface`` is None. ``duration`` (seconds,
        or ``"30s"``): what this sets clears itself after it. Returns what the interface suffers now, one line."""
        from .core import faults

        return faults.impair(self.name, host, iface, self.drivers, clear=clear, direction=direction,
                             duration=duration, **amounts)

    def partition(self, a: str, b: str, *, oneway: bool = False) -> str:
        """Cut hosts or networks ``a`` and ``b`` from each other, both ways, established connections too
        (``oneway``: only what ``a`` sends to ``b``). Returns what changed, one line."""
        from .core import faults

        return faults.partition(self.name, a, b, self.drivers, oneway=oneway)

    def heal(self, a: str | None = None, b: str | None = None) -> str:
        """Remove the partition between ``a`` and ``b``; every partition when none is given."""
        from .core import faults

        return faults.heal(self.name, a, b, self.drivers)


def find_host(host: str, lab: str | None = None) -> tuple[str, str]:
    """``[LAB/]HOST`` -> (lab, host); HOST alone must be unique among the labs that are up."""
    from .ns.targets import lab_and_host

    return lab_and_host(f"{lab}/{host}" if lab else host)


def exec_host(lab: str, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` inside ``host`` of lab ``lab`` (network, hostname, /etc/netns files); the caller's
    own namespaces never change (see :func:`nslab.ns.nsenter.spawn_in_target`)."""
    from .ns.targets import resolve

    return nsenter.run_in_target(resolve(f"{lab}/{host}"), argv, **kwargs)


__all__ = ["Lab", "UpResult", "down", "exec_host", "find_host", "status", "NslabError"]

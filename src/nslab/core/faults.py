"""Impairments and partitions changed at run time, by lab name (``nslab impair/partition/heal``, ``Lab.impair``).

The same path as ``up``, for one feature's record (:func:`nslab.core.apply.change`): lock -> read the lab's state
-> the feature plans from its recorded record to the new one (features/impair.py, features/partitions.py) ->
apply with one undo journal -> save the new record in the state, so ``status`` lists it, a converge keeps it
and ``down`` removes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TargetError, UserError
from .apply import change

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..model import Impairment
    from .plan import Action


def impair(lab: str, host: str, iface: str | None = None, drivers: Drivers | None = None, *, clear: bool = False,
           **settings: Any) -> None:
    """Impair ``host``'s interface ``iface`` (default: its first) with ``settings`` (loss, rate, delay, jitter,
    direction, as in the lab file); ``clear``: remove its impairment (every interface when ``iface`` is None)."""
    from .features import impair as feature

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        ifname = _interface(lab, resolved, host, iface, must_exist=bool(iface) or not clear)
        old = feature.ImpairRecord.from_json(record)
        hosts = {h: dict(ifs) for h, ifs in old.hosts.items()}
        if clear:
            ifs = hosts.get(host, {})
            for name in [ifname] if iface else list(ifs):
                ifs.pop(name, None)
        else:
            hosts.setdefault(host, {})[ifname] = feature.entry(_impairment(ifname, settings), "cli")
            if settings.get("delay") or settings.get("jitter"):
                _require(feature.delay_support(drivers))
        new = feature.ImpairRecord({h: ifs for h, ifs in hosts.items() if ifs})
        return feature.plan_change(resolved, old, new, drivers), new

    change(lab, feature.KEY, drivers, plan)


def _interface(lab: str, resolved: Any, host: str, iface: str | None, must_exist: bool) -> str:
    """``iface`` of ``host``, or its first interface ("" for none); raises when the host is not in the lab or,
    when ``must_exist``, has no such interface."""
    target = resolved.hosts.get(host)
    if target is None:
        raise TargetError(f"lab '{lab}' has no host '{host}'")
    names = [str(i.name) for i in target.interfaces]
    ifname = iface or (names[0] if names else "")
    if must_exist and ifname not in names:
        raise UserError(f"host '{host}' has no interface '{ifname}' (it has: {', '.join(names) or 'none'})")
    return ifname


def _impairment(interface: str, settings: dict[str, Any]) -> Impairment:
    """``settings`` checked by the lab file's schema for ``impair:`` entries."""
    from pydantic import ValidationError

    from .features.impair import impairment
    from .spec import ImpairSpec

    try:
        checked = ImpairSpec.model_validate({k: v for k, v in settings.items() if v is not None})
    except ValidationError as exc:
        raise UserError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    if not checked.active():
        raise UserError("say what to impair: loss, rate, delay or jitter (or clear)")
    return impairment(interface, checked)


def _require(missing: list[str]) -> None:
    if missing:
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem("; ".join(missing))


def partition(lab: str, a: str, b: str, drivers: Drivers | None = None) -> None:
    """Cut ``a`` from ``b`` (hosts or networks of ``lab``), both ways, established connections included."""
    from .features import partitions as feature

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        problems = feature.problems_of(resolved, a, b)
        if problems:
            raise UserError("; ".join(problems))
        old = feature.PartitionsRecord.from_json(record)
        cuts = list(old.cuts)
        if frozenset((a, b)) not in old.pairs():
            cuts.append([a, b, "cli"])
        new = feature.PartitionsRecord(cuts)
        return feature.plan_change(resolved, old, new), new

    change(lab, feature.KEY, drivers, plan)


def heal(lab: str, a: str | None = None, b: str | None = None, drivers: Drivers | None = None) -> None:
    """Remove the partition between ``a`` and ``b``, or every partition of the lab when both are None."""
    from .features import partitions as feature

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        old = feature.PartitionsRecord.from_json(record)
        if (a is None) != (b is None):
            raise UserError("heal takes two sides (A B), or none to heal every partition")
        if a is not None and frozenset((a, b)) not in old.pairs():
            raise UserError(f"lab '{lab}' has no partition between '{a}' and '{b}'")
        new = feature.PartitionsRecord([c for c in old.cuts if a is not None and frozenset(c[:2]) != {a, b}])
        return feature.plan_change(resolved, old, new), new

    change(lab, feature.KEY, drivers, plan)

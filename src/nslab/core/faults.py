"""Impairments and partitions changed at run time, by lab name (``nslab impair/partition/heal``, ``Lab.impair``).

The same path as ``up``, for one feature's record (:func:`nslab.core.apply.change`): lock -> read the lab's state
-> the feature plans from its recorded record to the new one (features/impair.py, features/partitions.py) ->
apply with one undo journal -> save the new record in the state, so ``status`` lists it, a converge keeps it
and ``down`` removes it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem, NslabError, TargetError, UserError
from .apply import change

if TYPE_CHECKING:
    from ..drivers import Drivers
    from .plan import Action


def impair(lab: str, host: str, iface: str | None = None, drivers: Drivers | None = None, *,
           clear: bool | str | Iterable[str] = False, direction: str | None = None, duration: float | str | None = None,
           **settings: Any) -> str:
    """Impair ``host``'s interface ``iface`` (default: its first) with ``settings`` (loss, rate, delay, jitter,
    duplicate, reorder, corrupt, as in the lab file), in ``direction`` "out" (the default), "in" or "both". Only
    the kinds named change: what the interface already suffers otherwise stays (an amount of 0 removes one).
    ``clear``: True (or "all") removes every kind, a list (or "delay,loss") those kinds, in ``direction`` (both
    when not given), of ``iface`` (every interface when None). ``duration`` (seconds, or "500ms", "30s", "2m"):
    what this sets clears itself after it (the lab's delayer keeps the time). Returns one line: what the
    interface suffers now."""
    from .features import impair as feature

    cleared = _kinds_to_clear(clear)
    amounts = _amounts({k: v for k, v in settings.items() if v is not None})
    if cleared and amounts:
        raise UserError("--clear takes no amounts: clear some kinds, or set some")
    if not cleared and not amounts:
        raise UserError(f"say what to impair: {', '.join(feature.KINDS)} (or clear)")
    seconds = parse_duration(duration) if duration is not None else None
    if direction not in (None, *feature.DIRECTIONS):
        raise UserError(f"direction '{direction}': in, out or both")
    sides = feature.DIRECTIONS[direction or ("both" if cleared else "out")]
    said: list[str] = []

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        ifname = _interface(lab, resolved, host, iface, must_exist=bool(iface) or not cleared)
        old = feature.ImpairRecord.from_json(record)
        hosts = copy.deepcopy(old.hosts)
        ifs = hosts.setdefault(host, {})
        targets = [ifname] if iface or not cleared else sorted(ifs)
        for name in targets:
            _edit_checked(ifs, name, sides, amounts, cleared, seconds, drivers)
        new = feature.ImpairRecord({h: i for h, i in hosts.items() if i})
        now = [feature.describe(r) for r in feature.rows(new) if r["host"] == host and r["interface"] in targets]
        said.append(f"{lab}/{host}:{','.join(targets) or ifname or '-'} now: {'; '.join(now) or 'unimpaired'}")
        return feature.plan_change(resolved, old, new, drivers), new

    change(lab, feature.KEY, drivers, plan)
    from .events import emit

    emit(lab, "impair", host, now=said[0].split(" now: ", 1)[1])
    return said[0]


def _edit_checked(ifs: dict[str, Any], name: str, sides: tuple[str, ...], amounts: dict[str, float],
                  cleared: tuple[str, ...], seconds: float | None, drivers: Drivers) -> None:
    """:func:`_edit` of interface ``name`` in ``ifs``, refused when it asks what the kernel cannot do; an
    interface left with nothing goes."""
    from .features import impair as feature

    e = ifs.setdefault(name, {"in": {}, "out": {}})
    _edit(e, sides, amounts, cleared, seconds)
    for d in sides:
        _refuse(feature.conflicts(e[d]), UserError)
        _refuse(feature.support(e[d], drivers), EnvironmentProblem)
    if not e["in"] and not e["out"]:
        del ifs[name]


def _edit(e: dict[str, Any], sides: tuple[str, ...], amounts: dict[str, float], cleared: tuple[str, ...],
          seconds: float | None) -> None:
    """One interface's entry after ``impair``: ``cleared`` kinds gone, ``amounts`` set (0: gone), each with the
    time it clears itself when ``seconds`` is given."""
    until: dict[str, float] = e.pop("until", {})
    for d in sides:
        for kind in cleared:
            e[d].pop(kind, None)
            until.pop(f"{d}:{kind}", None)
        for kind, amount in amounts.items():
            until.pop(f"{d}:{kind}", None)
            if amount:
                e[d][kind] = amount
                if seconds:
                    until[f"{d}:{kind}"] = time.time() + seconds
            else:
                e[d].pop(kind, None)
    e["source"] = "cli"
    if until:
        e["until"] = until


def expire(lab: str, drivers: Drivers | None = None) -> None:
    """Clear what ``impair --for`` set and whose time has come (the lab's delayer calls this when it is due)."""
    from .features import impair as feature

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        old = feature.ImpairRecord.from_json(record)
        hosts = copy.deepcopy(old.hosts)
        due = time.time() + 0.05
        for ifs in hosts.values():
            for name, e in list(ifs.items()):
                for key, when in list(e.get("until", {}).items()):
                    if when <= due:
                        d, _, kind = key.partition(":")
                        e[d].pop(kind, None)
                        del e["until"][key]
                if not e.get("until"):
                    e.pop("until", None)
                if not e["in"] and not e["out"]:
                    del ifs[name]
        new = feature.ImpairRecord({h: i for h, i in hosts.items() if i})
        return feature.plan_change(resolved, old, new, drivers), new

    change(lab, feature.KEY, drivers, plan)


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: float | str) -> float:
    """``500ms``, ``30s``, ``2m``, ``1h`` or a number of seconds -> seconds."""
    import re

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not found or float(found.group(1)) <= 0:
        raise UserError(f"duration '{text}': a positive number with ms, s, m or h (500ms, 30s, 2m)")
    return float(found.group(1)) * _DURATION_UNITS[found.group(2) or "s"]


def _kinds_to_clear(clear: bool | str | Iterable[str]) -> tuple[str, ...]:
    from .features.impair import KINDS

    if clear is True or clear == "all":
        return KINDS
    if not clear:
        return ()
    named = [k.strip() for k in (clear.split(",") if isinstance(clear, str) else clear) if k.strip()]
    unknown = [k for k in named if k not in KINDS]
    if unknown:
        raise UserError(f"--clear {','.join(unknown)}: not a kind of impairment ({', '.join(KINDS)}, or all)")
    return tuple(named)


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


def _amounts(settings: dict[str, Any]) -> dict[str, float]:
    """The kinds named in ``settings``, checked by the lab file's schema for ``impair:`` entries."""
    from pydantic import ValidationError

    from .features.impair import KINDS
    from .spec import ImpairSpec

    unknown = sorted(set(settings) - set(KINDS))
    if unknown:
        raise UserError(f"not a kind of impairment: {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
    try:
        checked = ImpairSpec.model_validate(settings)
    except ValidationError as exc:
        raise UserError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    return {k: float(getattr(checked, k)) for k in settings}


def _refuse(problems: list[str], error: type[NslabError]) -> None:
    if problems:
        raise error("; ".join(problems))


def partition(lab: str, a: str, b: str, drivers: Drivers | None = None, *, oneway: bool = False) -> str:
    """Cut ``a`` from ``b`` (hosts or networks of ``lab``), both ways, established connections included;
    ``oneway``: drop only what ``a`` sends to ``b``. Returns one line: what changed."""
    from .features import partitions as feature

    said: list[str] = []

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        problems = feature.problems_of(resolved, a, b)
        if problems:
            raise UserError("; ".join(problems))
        old = feature.PartitionsRecord.from_json(record)
        cuts = [list(c) for c in old.cuts]
        arrow = f"{a} -> {b}" if oneway else f"{a} <-> {b}"
        if any(feature.covers(c, a, b, oneway) for c in cuts):
            said.append(f"{lab}: {arrow} already cut")
        else:
            cuts.append([a, b, "cli", "oneway"] if oneway else [a, b, "cli"])
            said.append(f"{lab}: cut {arrow}" + (f" ({b} -> {a} still passes)" if oneway else ""))
        new = feature.PartitionsRecord(cuts)
        return feature.plan_change(resolved, old, new), new

    change(lab, feature.KEY, drivers, plan)
    return said[0]


def heal(lab: str, a: str | None = None, b: str | None = None, drivers: Drivers | None = None) -> str:
    """Remove the partitions between ``a`` and ``b`` (either way), or every partition of the lab when both are
    None. Returns one line: what changed."""
    from .features import partitions as feature

    said: list[str] = []

    def plan(resolved: Any, record: Any, drivers: Drivers) -> tuple[list[Action], Any]:
        old = feature.PartitionsRecord.from_json(record)
        if (a is None) != (b is None):
            raise UserError("heal takes two sides (A B), or none to heal every partition")
        if a is not None and frozenset((a, b)) not in old.pairs():
            raise UserError(f"lab '{lab}' has no partition between '{a}' and '{b}'")
        kept = [c for c in old.cuts if a is not None and frozenset(c[:2]) != {a, b}]
        gone = len(old.cuts) - len(kept)
        said.append(f"{lab}: healed {a} <-> {b}" if a is not None else
                    f"{lab}: healed {gone} partition(s)" if gone else f"{lab}: no partition to heal")
        new = feature.PartitionsRecord(kept)
        return feature.plan_change(resolved, old, new), new

    change(lab, feature.KEY, drivers, plan)
    return said[0]

"""The lab file as its own test: ``expect:`` (verdicts over the reachability model's) and ``tests:`` (cases
``nslab test`` runs), resolved into :class:`~nslab.model.Expectation` and :class:`~nslab.model.LabTest`.

A host name in ``from``/``to`` may be a glob (``web*``); each must name at least one host of the lab (``to`` may
also be ``outside``). ``to: "b:80"`` is TCP port 80, ``"b:53/udp"`` UDP; without a port the entry covers every
probe. A test's ``name`` defaults to ``tests[i]``; an ``exec:`` test expects exit 0 and an ``http:`` one status
200 unless ``expect:`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ..model import Expectation, LabTest

if TYPE_CHECKING:
    from .spec import ExpectSpec, LabSpec, LabTestSpec

OUTSIDE = "outside"
Report = Callable[[tuple[Any, ...], str], None]


def _hosts_named(pattern: str, hosts: Iterable[str]) -> list[str]:
    return [h for h in hosts if fnmatchcase(h, pattern)]


def _known(pattern: str, hosts: list[str], loc: tuple[Any, ...], report: Report, outside: bool = False) -> bool:
    if (outside and pattern == OUTSIDE) or _hosts_named(pattern, hosts):
        return True
    what = "no host matches" if any(c in pattern for c in "*?[") else "unknown host"
    report(loc, f"{what} '{pattern}' (hosts: {', '.join(hosts) or 'none'})")
    return False


def split_port(text: str) -> tuple[str, str | None, int | None]:
    """``b``, ``b:80``, ``b:53/udp`` -> (host, proto, port); ValueError for a bad port."""
    host, sep, rest = text.rpartition(":")
    if not sep:
        return text, None, None
    number, _, proto = rest.partition("/")
    proto = (proto or "tcp").lower()
    if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in ("tcp", "udp"):
        raise ValueError(f"'{text}': expected HOST, HOST:PORT or HOST:PORT/udp (PORT in 1-65535)")
    return host, proto, int(number)


def _expectation(n: int, e: ExpectSpec, hosts: list[str], report: Report) -> Expectation | None:
    loc = ("expect", n)
    try:
        target, proto, port = split_port(e.to)
    except ValueError as exc:
        report((*loc, "to"), str(exc))
        return None
    ok = _known(e.source, hosts, (*loc, "from"), report)
    ok = _known(target, hosts, (*loc, "to"), report, outside=True) and ok
    return Expectation(e.source, target, e.reach, proto, port) if ok else None


def _test(n: int, t: LabTestSpec, hosts: list[str], report: Report) -> LabTest | None:
    if t.source not in hosts:
        report(("tests", n, "from"), f"unknown host '{t.source}' (hosts: {', '.join(hosts) or 'none'})")
        return None
    e = t.expect
    return LabTest(t.name or f"tests[{n}]", t.source, t.exec, t.http, 0 if e.exit is None else e.exit, e.stdout,
                   200 if e.status is None else e.status, e.body)


def resolve(spec: LabSpec, report: Report) -> tuple[tuple[Expectation, ...], tuple[LabTest, ...]]:
    """The lab file's ``expect:`` and ``tests:``; each unknown host is a problem at its field."""
    hosts = list(spec.hosts)
    expect = [_expectation(n, e, hosts, report) for n, e in enumerate(spec.expect)]
    tests = [_test(n, t, hosts, report) for n, t in enumerate(spec.tests)]
    names: dict[str, int] = {}
    for n, t in enumerate(tests):
        if t is not None and t.name in names:
            report(("tests", n, "name"), f"test name '{t.name}' is also tests[{names[t.name]}]'s")
        elif t is not None:
            names[t.name] = n
    return tuple(e for e in expect if e is not None), tuple(t for t in tests if t is not None)


def expected(expect: Iterable[Expectation], source: str, target: str, proto: str, port: int | None,
             model: bool) -> tuple[bool, bool]:
    """(the verdict, whether an ``expect:`` entry gave it): the last entry covering the cell wins over ``model``."""
    found = [e.reach for e in expect if e.covers(source, target, proto, port)]
    return (found[-1], True) if found else (model, False)

"""``nslab doctor``: find the classic reasons a namespace cannot reach what it should, and say the fix.

Three parts: :mod:`.observe` looks (read-only; one ARP request per gateway and one DNS query per nameserver
the namespace names are the only packets sent), :mod:`.checks` judges (pure functions, unit-tested over
hand-made views), and :func:`diagnose` here decides what to look at:

- a target (anything ``nslab exec`` accepts): that namespace, plus the machine checks for its lab if it is a
  lab host;
- a lab name: every host of the lab and the machine checks for that lab;
- nothing: every lab that is up, every named namespace (``ip netns``), and the machine.

Replaces reading ``ip -n NS link/route``, ``sysctl``, ``nft list ruleset``, ``cat resolv.conf``, ``arping``
and ``dig`` by hand and knowing what each answer means.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from . import checks
from .checks import Finding, check_machine, check_namespace
from .observe import NsView

if TYPE_CHECKING:
    from ...core.state import LabState
    from ...ns.targets import Target


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_to(text: str | None) -> tuple[Address, str | None] | None:
    """``--to ADDR[:PORT[/udp]]`` (``[ADDR6]:PORT`` for IPv6 with a port) -> (address, port text or None)."""
    from ...errors import UserError
    from ..check import parse_port

    if not text:
        return None
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        bad = bool(rest) and port is None
    elif text.count(":") == 1:
        address, _, port = text.partition(":")
        bad = False
    else:
        address, port, bad = text, None, False
    try:
        if bad:
            raise ValueError(text)
        parsed = ipaddress.ip_address(address)
        if port is not None:
            parse_port(port)
    except (ValueError, UserError):
        raise UserError(f"--to {text}: expected ADDR, ADDR:PORT, ADDR:PORT/udp or [ADDR6]:PORT") from None
    return parsed, port


def _mark_routers(views: dict[str, NsView]) -> None:
    """A namespace forwards when another one routes via one of its addresses (lab hosts: when the model says)."""
    gateways = {r.gateway for v in views.values() for r in v.routes if r.gateway}
    for view in views.values():
        if view.planned:
            continue
        mine = {str(a.ip) for lk in view.links for a in lk.addresses}
        view.forwards = bool(mine & gateways) and len([lk for lk in view.links if lk.name != "lo"]) > 1


def _plan(view: NsView, st: LabState, host: str) -> None:
    """What the reachability model expects of a lab host: its default route (as `status` names it) and whether
    it forwards, from the lab as recorded and the faults in force."""
    from .. import reach

    topo = reach.Topology(st.lab, reach.faults_from(st.lab, st.extra))
    view.planned = True
    view.forwards = topo.forwards(host)
    default = next(((dev, via) for net, dev, via in topo.tables[host].routes if net.prefixlen == 0), None)
    view.default_via = (str(default[1]), default[0]) if default is not None else None


def _lab_targets(st: LabState) -> list[Target]:
    from ...ns.targets import Target
    from ...paths import netns_path

    return [Target(f"{st.lab.name}/{h.name}", f"{st.lab.name}/{h.name}", netns_path(h.namespace),
                   netns_name=h.namespace, lab=st.lab.name, host=h.name) for h in st.lab.hosts.values()]


def _selection(what: str | None) -> tuple[list[Target], list[LabState]]:
    from ...core import state
    from ...core.which import lab_or_host
    from ...drivers.netlink import list_named_namespaces
    from ...ns import targets

    named = lab_or_host(what) if what else None
    if named is not None:
        return _lab_targets(named), [named]
    if what:
        target = targets.resolve(what)
        labs = [s for s in [state.LabState.load(target.lab)] if s is not None] if target.lab else []
        return [target], labs
    labs = state.all_states()
    chosen = [t for st in labs for t in _lab_targets(st)]
    owned = {t.netns_name for t in chosen}
    chosen += [targets.resolve(f"netns:{name}") for name in list_named_namespaces() if name not in owned]
    return chosen, labs


def _observe(chosen: list[Target], by_lab: dict[str, LabState], to: Address | None,
             findings: list[Finding]) -> dict[str, NsView]:
    """Each chosen namespace's view (a lab host's with what the model expects of it); unreadable ones are
    findings."""
    from ...errors import TargetError
    from .observe import observe_namespace

    views: dict[str, NsView] = {}
    for target in chosen:
        try:
            views[target.label] = observe_namespace(target, to)
        except TargetError as exc:
            findings.append(Finding("unreadable", target.label, str(exc), "it cannot be examined", ()))
            continue
        st = by_lab.get(target.lab or "")
        if st is not None and target.host is not None and target.host in st.lab.hosts:
            _plan(views[target.label], st, target.host)
    _mark_routers(views)
    return views


def diagnose(what: str | None = None, to: str | None = None, drivers: Any = None) -> list[Finding]:
    """Every finding for ``what`` (a target, a lab, or everything); [] when healthy."""
    from ...drivers import Drivers
    from .observe import observe_machine

    wanted = parse_to(to)
    chosen, labs = _selection(what)
    by_lab = {st.lab.name: st for st in labs}
    findings: list[Finding] = []
    views = _observe(chosen, by_lab, wanted[0] if wanted else None, findings)
    for view in views.values():
        findings += check_namespace(view)
    if wanted is not None:
        findings += _probe_to(chosen, views, by_lab, wanted)
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        for st in labs:
            host = next((t.host for t in chosen if t.lab == st.lab.name and len(chosen) == 1), None)
            findings += _matrix(st.lab.name, host, drivers)
        if labs or what is None:
            findings += check_machine(observe_machine(drivers, labs, views))
    finally:
        if own:
            drivers.close()
    return findings


def _probe_to(chosen: list[Target], views: dict[str, NsView], by_lab: dict[str, LabState],
              wanted: tuple[Address, str | None]) -> list[Finding]:
    """``--to``: one probe from each namespace that has a route there (ICMP echo, a TCP connect or a UDP round
    trip); one that fails is a finding, with the hops the model expects for a lab host."""
    from ...drivers.probe import LiveProber
    from .. import check

    address, port = wanted
    proto, number = check.parse_port(port)
    shown = f"[{address}]:{port}" if port and address.version == 6 else f"{address}:{port}" if port else str(address)
    todo = [t for t in chosen if t.label in views and t.netns_name
            and checks.route_for(views[t.label], address) is not None]
    outcomes = LiveProber().probe([(t.netns_name or "", str(address)) for t in todo], proto, number, check.TIMEOUT)
    out = []
    for target, (reached, result) in zip(todo, outcomes, strict=True):
        if reached:
            continue
        fix = _model_says(by_lab.get(target.lab or ""), target.host, address, shown)
        out.append(Finding("unreachable-to", target.label, f"{shown} is not reached ({result})",
                           f"a {proto if number else 'ping'} probe from inside the namespace got no answer",
                           fix))
    return out


def _matrix(lab: str, host: str | None, drivers: Any) -> list[Finding]:
    """``nslab check``'s matrix of ``lab`` (``host``'s row only, when one host is examined): each cell whose
    probe disagrees with the reachability model is a finding, with the hops the model expects."""
    from .. import check

    out = []
    for c in check.check(lab, source=host, drivers=drivers).cells:
        if c.ok:
            continue
        seen = "reached" if c.reachable else "not reached"
        want = "reachable" if c.expected else "blocked"
        by = "an expect: entry says" if c.by == "expect" else "the lab's model says"
        target = c.target if c.target == check.OUTSIDE else f"{c.target} ({c.address})"
        out.append(Finding("unexpected-" + ("reach" if c.reachable else "block"), f"{lab}/{c.source}",
                           f"{target} is {seen} ({c.result}) but {by} {want}",
                           f"expected hops: {c.path}" if c.path else "the model expects no path",
                           (f"nslab check --explain {c.source} {c.target} {lab}",)))
    return out


def _model_says(st: LabState | None, host: str | None, address: Address, shown: str) -> tuple[str, ...]:
    """For a lab host: what the reachability model says of ``address``, and how to see its hops."""
    from .. import check

    if st is None or host is None or host not in st.lab.hosts:
        return ()
    v = check.verdict(st.lab, st.extra, host, str(address), address.version == 6)
    return (f"# the lab's model: {'reachable' if v.reachable else 'blocked: ' + v.why}",
            f"# expected hops: {v.path()}", f"nslab check --explain {host} {shown} {st.lab.name}")


def report(findings: list[Finding]) -> dict[str, Any]:
    return {"version": 1, "healthy": not findings, "findings": [f.to_json() for f in findings]}


__all__ = ["Finding", "diagnose", "parse_to", "report"]

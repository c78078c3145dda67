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

from .checks import Finding, check_machine, check_namespace
from .observe import NsView

if TYPE_CHECKING:
    from ...core.state import LabState
    from ...ns.targets import Target


def parse_to(text: str | None) -> ipaddress.IPv4Address | None:
    """``ADDR[:PORT]`` of ``--to`` -> the address (the port is accepted for the user's convenience)."""
    from ...errors import UserError

    if not text:
        return None
    address = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        raise UserError(f"--to {text}: not an IPv4 ADDR[:PORT]") from None


def _mark_routers(views: dict[str, NsView]) -> None:
    """A namespace forwards when another one routes via one of its addresses."""
    gateways = {r.gateway for v in views.values() for r in v.routes if r.gateway}
    for view in views.values():
        mine = {str(a.ip) for lk in view.links for a in lk.addresses}
        view.forwards = bool(mine & gateways) and len([lk for lk in view.links if lk.name != "lo"]) > 1


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


def diagnose(what: str | None = None, to: str | None = None, drivers: Any = None) -> list[Finding]:
    """Every finding for ``what`` (a target, a lab, or everything); [] when healthy."""
    from ...drivers import Drivers
    from ...errors import TargetError
    from .observe import observe_machine, observe_namespace

    address = parse_to(to)
    chosen, labs = _selection(what)
    views: dict[str, NsView] = {}
    findings: list[Finding] = []
    for target in chosen:
        try:
            views[target.label] = observe_namespace(target, address)
        except TargetError as exc:
            findings.append(Finding("unreadable", target.label, str(exc), "it cannot be examined", ()))
    _mark_routers(views)
    for view in views.values():
        findings += check_namespace(view)
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        if labs or what is None:
            findings += check_machine(observe_machine(drivers, labs, views))
    finally:
        if own:
            drivers.close()
    return findings


def report(findings: list[Finding]) -> dict[str, Any]:
    return {"version": 1, "healthy": not findings, "findings": [f.to_json() for f in findings]}


__all__ = ["Finding", "diagnose", "parse_to", "report"]

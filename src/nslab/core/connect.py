"""``nslab connect LAB/NETWORK TARGET`` / ``nslab disconnect``: put an existing container (any target with a
network namespace: ``container:NAME``, ``pid:PID``, ``netns:NAME``) on a lab network, as
``docker network connect`` does, and take it off again.

The target gets a veth: ``ethN`` inside (the first free N), with a free address of the network's subnet (taken
from the top, away from the addresses the lab gives its hosts from the bottom), and the machine end
(``nsv<hash>``, nslab's link group, the ownership mark ``nslab:<lab>:host:+<container>:<ifname>``) on the
network's bridge. No route is changed inside: the container keeps its own default route.

Both go the way of every change to a lab that is up (:func:`nslab.core.apply.change`): typed actions
(features/containers.py: :class:`ConnectVeth`, :class:`AttachConnected`, :class:`Disconnect`) that print
themselves (``--dry-run``), applied with one undo journal (a failure midway leaves nothing), then the
containers feature's record (``connected``) saved, so ``down`` removes exactly these and nothing else.

Targets are resolved by ns/targets.py, a layer above: the caller hands :func:`connect` the resolver
(``locate``), which it calls once the lab and the network are known to exist, under the machine lock.

Replaces: ``ip link add ethN netns PID type veth peer name nsvX``, ``ip -n .. addr add``,
``ip link set nsvX master BRIDGE alias ... up``, ``ip link del nsvX``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConflictError, TargetError, UserError
from ..naming import mac_address, owner_alias, short_hash
from .apply import change
from .features.containers import KEY, AttachConnected, ConnectVeth, ContainersRecord, Disconnect

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..model import Lab
    from .plan import Action, Plan


class Place(Protocol):
    """A resolved target, as ``nslab.ns.targets.Target`` has it: the text given, a label for messages, its
    network namespace file, the container's name (container: targets) and the lab (lab hosts)."""

    text: str
    label: str
    net_path: str
    container: str | None
    lab: str | None


def _lab_network(text: str) -> tuple[str, str]:
    lab, sep, network = text.partition("/")
    if not sep or not lab or not network:
        raise UserError(f"'{text}' is not LAB/NETWORK")
    return lab, network


def _check_network(lab: Lab, network: str) -> None:
    if network not in lab.networks:
        known = ", ".join(lab.networks) or "none"
        raise TargetError(f"lab '{lab.name}' has no network '{network}' (networks: {known})")


def _who(target: Place) -> str:
    return str(target.container or target.label.replace(" ", ":"))


def _free_address(lab: Lab, network: str, record: ContainersRecord) -> ipaddress.IPv4Interface:
    net = lab.networks[network]
    used = {net.gateway.ip} | {i.address.ip for h in lab.hosts.values() for i in h.interfaces
                               if i.network == network}
    used |= {ipaddress.IPv4Interface(c["address"]).ip for c in record.connected if c["network"] == network}
    for address in reversed(list(net.subnet.hosts())):
        if address not in used:
            return ipaddress.IPv4Interface(f"{address}/{net.subnet.prefixlen}")
    raise ConflictError(f"network {network} has no free address left")


def connect(text: str, target_text: str, locate: Callable[[str], Place], drivers: Drivers | None = None,
            dry_run: bool = False) -> tuple[dict[str, str], Plan]:
    """Connect the target ``target_text`` (resolved by ``locate``: ``nslab.ns.targets.resolve``) to
    ``LAB/NETWORK``; returns the record entry (container, network, ifname, address, veth, target) and the plan
    (applied unless ``dry_run``)."""
    lab_name, network = _lab_network(text)
    entry: dict[str, str] = {}

    def plan(lab: Lab, recorded: Any, drivers: Drivers) -> tuple[list[Action], ContainersRecord]:
        _check_network(lab, network)
        target = locate(target_text)
        if target.lab is not None:
            raise UserError(f"{target.text} is a lab host: put it on the network in its lab file")
        who = _who(target)
        record = ContainersRecord.from_json(recorded)
        if any(c["container"] == who and c["network"] == network for c in record.connected):
            raise ConflictError(f"{who} is connected to {text} already")
        address = _free_address(lab, network, record)
        inside = drivers.kernel.links_at(target.net_path)
        names = {lk.name for lk in inside}
        ifname = next(f"eth{n}" for n in range(0, 10000) if f"eth{n}" not in names)
        veth = "nsv" + short_hash(lab.name, "connect", who, network)
        entry.update(container=who, network=network, ifname=ifname, address=str(address), veth=veth,
                     target=target.text)
        actions: list[Action] = [
            ConnectVeth(target.net_path, ifname, max([lk.index for lk in inside] + [9]) + 1,
                        mac_address(lab.name, "connect", who, ifname), address, veth),
            AttachConnected(veth, lab.networks[network].bridge, owner_alias(lab.name, "host", f"+{who}", ifname)),
        ]
        return actions, ContainersRecord(record.hosts, [*record.connected, dict(entry)])

    return entry, change(lab_name, KEY, drivers, plan, dry_run)


def disconnect(text: str, target_text: str, drivers: Drivers | None = None,
               dry_run: bool = False) -> tuple[dict[str, str], Plan]:
    """Remove what :func:`connect` added (the veth; its end inside goes with it); returns the record entry it
    was and the plan (applied unless ``dry_run``)."""
    lab_name, network = _lab_network(text)
    who = target_text.partition(":")[2] if target_text.startswith("container:") else target_text
    entry: dict[str, str] = {}

    def plan(lab: Lab, recorded: Any, drivers: Drivers) -> tuple[list[Action], ContainersRecord]:
        _check_network(lab, network)
        record = ContainersRecord.from_json(recorded)
        found = next((c for c in record.connected if c["network"] == network and who in (c["container"],
                      c.get("target"))), None)
        if found is None:
            raise TargetError(f"{target_text} is not connected to {text} (by nslab connect)")
        entry.update(found)
        return [Disconnect((found["veth"],))], ContainersRecord(record.hosts,
                                                                [c for c in record.connected if c is not found])

    return entry, change(lab_name, KEY, drivers, plan, dry_run)


__all__ = ["Place", "connect", "disconnect"]

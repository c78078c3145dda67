"""``nslab connect LAB/NETWORK TARGET`` / ``nslab disconnect``: put an existing container (any target with a
network namespace: ``container:NAME``, ``pid:PID``, ``netns:NAME``) on a lab network, as
``docker network connect`` does, and take it off again.

The target gets a veth: ``ethN`` inside (the first free N), with a free address of the network's subnet (taken
from the top, away from the addresses the lab gives its hosts from the bottom), and the machine end
(``nsv<hash>``, nslab's link group, the ownership mark ``nslab:<lab>:host:+<container>:<ifname>``) on the
network's bridge. No route is changed inside: the container keeps its own default route. The lab's record
(features/containers.py, ``connected``) keeps each one, so ``down`` removes exactly these and nothing else.

Replaces: ``ip link add ethN netns PID type veth peer name nsvX``, ``ip -n .. addr add``,
``ip link set nsvX master BRIDGE alias ... up``, ``ip link del nsvX``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from ..errors import ConflictError, TargetError, UserError
from ..naming import LINK_GROUP, mac_address, owner_alias, short_hash
from . import state
from .features.containers import KEY, ContainersRecord


def _lab_network(text: str) -> tuple[state.LabState, str]:
    lab, sep, network = text.partition("/")
    if not sep or not lab or not network:
        raise UserError(f"'{text}' is not LAB/NETWORK")
    st = state.LabState.load(lab)
    if st is None:
        raise TargetError(f"no lab '{lab}' is up")
    if network not in st.lab.networks:
        known = ", ".join(st.lab.networks) or "none"
        raise TargetError(f"lab '{lab}' has no network '{network}' (networks: {known})")
    return st, network


def _who(target: Any) -> str:
    return str(target.container or target.label.replace(" ", ":"))


def _free_address(st: state.LabState, network: str, record: ContainersRecord) -> ipaddress.IPv4Interface:
    net = st.lab.networks[network]
    used = {net.gateway.ip} | {i.address.ip for h in st.lab.hosts.values() for i in h.interfaces
                               if i.network == network}
    used |= {ipaddress.IPv4Interface(c["address"]).ip for c in record.connected if c["network"] == network}
    for address in reversed(list(net.subnet.hosts())):
        if address not in used:
            return ipaddress.IPv4Interface(f"{address}/{net.subnet.prefixlen}")
    raise ConflictError(f"network {network} has no free address left")


def connect(text: str, target_text: str) -> dict[str, str]:
    """Connect ``target_text`` to ``LAB/NETWORK``; returns the record entry (container, network, ifname,
    address, veth)."""
    from ..ns.targets import resolve

    with state.machine_lock():
        st, network = _lab_network(text)
        target = resolve(target_text)
        if target.lab is not None:
            raise UserError(f"{target_text} is a lab host: put it on the network in its lab file")
        who = _who(target)
        record = ContainersRecord.from_json(st.extra.get(KEY))
        if any(c["container"] == who and c["network"] == network for c in record.connected):
            raise ConflictError(f"{who} is connected to {text} already")
        address = _free_address(st, network, record)
        veth = "nsv" + short_hash(st.lab.name, "connect", who, network)
        net = st.lab.networks[network]
        ifname = _plug(target.net_path, veth, net.bridge, address, st.lab.name, who)
        entry = {"container": who, "network": network, "ifname": ifname, "address": str(address), "veth": veth,
                 "target": target_text}
        record.connected.append(entry)
        st.extra[KEY] = record.to_json()
        st.save()
        return entry


def disconnect(text: str, target_text: str) -> dict[str, str]:
    """Remove what :func:`connect` added (the veth; its end inside goes with it)."""
    from ..drivers.netlink import NetlinkKernel

    with state.machine_lock():
        st, network = _lab_network(text)
        record = ContainersRecord.from_json(st.extra.get(KEY))
        who = target_text.partition(":")[2] if target_text.startswith("container:") else target_text
        entry = next((c for c in record.connected if c["network"] == network and who in (c["container"],
                      c.get("target"))), None)
        if entry is None:
            raise TargetError(f"{target_text} is not connected to {text} (by nslab connect)")
        kernel = NetlinkKernel()
        try:
            present = {lk.name for lk in kernel.owned_links()}
            failures = kernel.remove_links([entry["veth"]]) if entry["veth"] in present else []
        finally:
            kernel.close()
        if failures:
            from ..errors import KernelError

            raise KernelError("; ".join(failures))
        record.connected.remove(entry)
        st.extra[KEY] = record.to_json()
        st.save()
        return entry


def _plug(net_path: str, veth: str, bridge: str, address: ipaddress.IPv4Interface, lab: str, who: str) -> str:
    """The veth: ``ethN`` inside the namespace at ``net_path`` with ``address``, ``veth`` on ``bridge``."""
    import socket

    from ..drivers import rtnl
    from ..drivers.netlink import open_namespace
    from ..drivers.rtnl import Batch

    ns = open_namespace(net_path)
    machine = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        inside = rtnl.links(ns.sock, with_addresses=False)
        names = {lk.name for lk in inside}
        ifname = next(f"eth{n}" for n in range(0, 10000) if f"eth{n}" not in names)
        index = max([lk.index for lk in inside] + [9]) + 1
        batch = Batch()
        rtnl.add_veth(batch, ifname, veth, machine, index=index, mac=mac_address(lab, "connect", who, ifname),
                      group=LINK_GROUP)
        rtnl.add_address(batch, index, address, f"{ifname} in {net_path}")
        rtnl.set_up(batch, index, f"{ifname} in {net_path}")
        batch.commit_or_raise(ns.sock)
        try:
            ports = Batch()
            rtnl.attach_port(ports, veth, socket.if_nametoindex(bridge), owner_alias(lab, "host", f"+{who}", ifname))
            root = rtnl.open_socket()
            try:
                ports.commit_or_raise(root)
            finally:
                root.close()
        except BaseException:
            gone = Batch()
            rtnl.delete_link(gone, ifname)
            gone.commit(ns.sock)
            raise
        return ifname
    finally:
        os.close(machine)
        ns.close()


__all__ = ["connect", "disconnect"]

"""The netlink driver's one link primitive (``Kernel.add_links``) on the real kernel, for kinds nslab has no module
for yet: what the next link kinds (macvlan, VXLAN) will hand it, with no new driver method. Each test in its own
throwaway host."""

from __future__ import annotations

import ipaddress
import json
import struct

from nslab.drivers.netlink import NetlinkKernel, create_namespaces
from nslab.drivers.rtnl import LinkEnd, NewLink, attr, attr_u32
from nslab.naming import LINK_GROUP
from sandbox import sh

IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE = 1, 4
IFLA_VXLAN_ID, IFLA_VXLAN_PORT = 1, 15


def _made(names: list[str]) -> None:
    for ns in create_namespaces(names).values():
        ns.close()


def _link(namespace: str, name: str) -> dict:
    (found,) = json.loads(sh(f"ip -n {namespace} -j -d addr show dev {name}").stdout)
    return found


def test_a_macvlan_made_beside_its_parent_lands_in_its_namespace(host):
    sh("ip link add k2par type veth peer name k2pb && ip link set k2par up")  # its parent, on the machine
    _made(["k2-a"])
    kernel = NetlinkKernel()
    try:
        end = LinkEnd("k2-a", "mv0", mac="02:00:00:00:0a:01", mtu=1400, group=LINK_GROUP, alias="nslab:k2:toy",
                      addresses=(ipaddress.IPv4Interface("10.70.0.2/24"),),
                      routes=((ipaddress.IPv4Network("10.71.0.0/16"), ipaddress.IPv4Address("10.70.0.1")),))
        kernel.add_links([NewLink("macvlan", end, attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE), made_in="",
                                  lower="k2par")])
        found = _link("k2-a", "mv0")
        assert found["linkinfo"]["info_kind"] == "macvlan" and found["linkinfo"]["info_data"]["mode"] == "bridge"
        assert (found["address"], found["mtu"], found["ifalias"], found["group"]) == (
            "02:00:00:00:0a:01", 1400, "nslab:k2:toy", str(LINK_GROUP))
        assert "UP" in found["flags"] and {"local": "10.70.0.2", "prefixlen": 24} in [
            {"local": a["local"], "prefixlen": a["prefixlen"]} for a in found["addr_info"]]
        assert "10.71.0.0/16 via 10.70.0.1" in sh("ip -n k2-a route").stdout
        assert "mv0" not in sh("ip link").stdout  # moved off the machine by the creating request
        assert kernel.remove_link_ends([("k2-a", "mv0")]) == []
        assert "mv0" not in sh("ip -n k2-a link").stdout
    finally:
        kernel.close()


def test_a_vxlan_made_in_its_namespace_with_its_kind_s_data(host):
    _made(["k2-b"])
    kernel = NetlinkKernel()
    try:
        data = attr_u32(IFLA_VXLAN_ID, 4242) + attr(IFLA_VXLAN_PORT, struct.pack(">H", 14789))
        kernel.add_links([NewLink("vxlan", LinkEnd("k2-b", "vx0", mtu=1450, addresses=(
            ipaddress.IPv4Interface("10.72.0.1/30"), ipaddress.IPv6Interface("fd00:72::1/64"))), data)])
        found = _link("k2-b", "vx0")
        info = found["linkinfo"]["info_data"]
        assert (found["linkinfo"]["info_kind"], info["id"], info["port"], found["mtu"]) == ("vxlan", 4242, 14789, 1450)
        assert {a["local"] for a in found["addr_info"]} >= {"10.72.0.1", "fd00:72::1"}
    finally:
        kernel.close()

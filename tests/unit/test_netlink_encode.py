"""The hand-packed netlink requests decode, with pyroute2's own decoder, to exactly what was meant."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from nslab.drivers import rtnl as nl
from nslab.errors import KernelError


def _one(build, cls):
    batch = nl.Batch()
    build(batch)
    ((data, what),) = batch.messages
    msg = cls(data)
    msg.decode()
    assert msg["header"]["length"] == len(data)
    assert msg["header"]["flags"] & (nl.NLM_F_REQUEST | nl.NLM_F_ACK) == nl.NLM_F_REQUEST | nl.NLM_F_ACK
    return msg, what


def test_bridge():
    msg, what = _one(lambda b: nl.add_bridge(b, "nsl12345678"), ifinfmsg)
    assert msg["header"]["type"] == nl.RTM_NEWLINK and msg["flags"] & 1 and msg["change"] & 1
    assert msg.get_attr("IFLA_IFNAME") == "nsl12345678"
    assert msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "bridge"
    assert what == "add bridge nsl12345678"
    msg, _ = _one(lambda b: nl.add_bridge(b, "nsl12345678", "02:11:22:33:44:55"), ifinfmsg)
    assert msg.get_attr("IFLA_ADDRESS") == "02:11:22:33:44:55"


def test_veth_with_peer_in_another_namespace():
    msg, _ = _one(lambda b: nl.add_veth(b, "eth0", "nsvabcdef12", 7, index=10), ifinfmsg)
    assert msg["index"] == 10 and msg.get_attr("IFLA_IFNAME") == "eth0"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "nsvabcdef12"
    assert peer.get_attr("IFLA_NET_NS_FD") == 7
    msg, _ = _one(lambda b: nl.add_veth(b, "eth0", "eth1", 7, mac="02:00:00:00:00:01", peer_mac="02:00:00:00:00:02"),
                  ifinfmsg)
    assert msg.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:01"
    peer = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:02" and peer.get_attr("IFLA_NET_NS_FD") == 7


def test_a_veth_described_as_a_new_link_packs_as_add_veth():
    """The generic link primitive (what core/kinds/veth.py hands the driver) sends the very bytes of add_veth."""
    end = nl.LinkEnd("k-a", "eth1", mac="02:00:00:00:00:01", mtu=9000)
    peer = nl.LinkEnd("k-b", "eth2", mac="02:00:00:00:00:02", mtu=9000)
    generic, veth = nl.Batch(), nl.Batch()
    nl.add_link(generic, nl.NewLink("veth", end, peer=peer), 7)
    nl.add_veth(veth, "eth1", "eth2", 7, mtu=9000, mac="02:00:00:00:00:01", peer_mac="02:00:00:00:00:02")
    assert generic.messages == veth.messages
    grouped = nl.LinkEnd("k-a", "eth1", group=9)
    generic, veth = nl.Batch(), nl.Batch()
    nl.add_link(generic, nl.NewLink("veth", grouped, peer=nl.LinkEnd("k-b", "eth2", group=9)), 7)
    nl.add_veth(veth, "eth1", "eth2", 7, group=9)
    assert generic.messages[0][0] == veth.messages[0][0]


def test_a_new_link_carries_its_kind_s_data():
    """A kind without a peer: its IFLA_INFO_DATA as the kind packed it (here vxlan's id and port)."""
    data = nl.attr_u32(1, 4242) + nl.attr(15, struct.pack(">H", 14789))  # IFLA_VXLAN_ID, IFLA_VXLAN_PORT
    link = nl.NewLink("vxlan", nl.LinkEnd("k-a", "vx0", mtu=1450, group=9), data)
    msg, what = _one(lambda b: nl.add_link(b, link), ifinfmsg)
    assert what == "add vxlan vx0"
    assert msg.get_attr("IFLA_IFNAME") == "vx0" and msg.get_attr("IFLA_MTU") == 1450
    assert msg.get_attr("IFLA_GROUP") == 9
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "vxlan"
    assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_VXLAN_ID") == 4242
    assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_VXLAN_PORT") == 14789
    bare, _ = _one(lambda b: nl.add_link(b, nl.NewLink("dummy", nl.LinkEnd("k-a", "d0"))), ifinfmsg)
    assert bare.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA") is None


def test_a_new_link_made_beside_its_parent_moves_into_its_namespace():
    link = nl.NewLink("macvlan", nl.LinkEnd("k-a", "mv0"), nl.attr_u32(1, 4), made_in="", lower="eth0")
    msg, _ = _one(lambda b: nl.add_link(b, link, ns_fd=9, lower=3), ifinfmsg)
    assert (msg.get_attr("IFLA_LINK"), msg.get_attr("IFLA_NET_NS_FD")) == (3, 9)
    assert msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("IFLA_MACVLAN_MODE") == "bridge"


def test_what_follows_a_new_link_in_its_namespace():
    end = nl.LinkEnd("k-a", "eth1", alias="nslab:k:link", addresses=(
        ipaddress.IPv4Interface("10.9.0.1/30"), ipaddress.IPv6Interface("fd00::1/64")),
        routes=((ipaddress.IPv4Network("10.8.0.0/16"), ipaddress.IPv4Address("10.9.0.2")),))
    batch = nl.Batch()
    nl.configure_end(batch, 12, end)
    assert [what for _, what in batch.messages] == [
        "set alias nslab:k:link", "add address 10.9.0.1/30 to eth1 in k-a", "set addrgenmode of eth1 in k-a",
        "add address fd00::1/64 to eth1 in k-a", "set eth1 in k-a up", "add 10.8.0.0/16 route via 10.9.0.2 in k-a"]


def test_set_state_by_name():
    msg, what = _one(lambda b: nl.set_state(b, "nsvabcdef12", False, "port"), ifinfmsg)
    assert msg.get_attr("IFLA_IFNAME") == "nsvabcdef12" and msg["flags"] == 0 and msg["change"] == 1
    assert what == "set port down"
    msg, _ = _one(lambda b: nl.set_state(b, "eth0", True, "eth0"), ifinfmsg)
    assert msg["flags"] == 1 and msg["change"] == 1


def test_attach_port_and_set_up():
    msg, _ = _one(lambda b: nl.attach_port(b, "nsvabcdef12", 4, "nslab:demo:host:web1:eth0"), ifinfmsg)
    assert msg.get_attr("IFLA_MASTER") == 4 and msg.get_attr("IFLA_IFALIAS") == "nslab:demo:host:web1:eth0"
    assert msg["flags"] & 1 and msg["change"] & 1
    assert msg.get_attr("IFLA_AF_SPEC") is None  # connect's ports keep the kernel's IPv6 default
    batch = nl.Batch()
    nl.attach_port(batch, "nsvabcdef12", 4, "x", no_link_local=True)
    first, second = (ifinfmsg(data) for data, _ in batch.messages)
    for m in (first, second):
        m.decode()
    inet6 = first.get_attr("IFLA_AF_SPEC").get_attr("AF_INET6")  # before up: the address comes with up
    assert inet6.get_attr("IFLA_INET6_ADDR_GEN_MODE") == nl.IN6_ADDR_GEN_MODE_NONE and first["change"] == 0
    assert first.get_attr("IFLA_IFNAME") == "nsvabcdef12"
    assert second.get_attr("IFLA_MASTER") == 4 and second["flags"] & 1
    msg, _ = _one(lambda b: nl.set_up(b, 12, "eth2"), ifinfmsg)
    assert msg["index"] == 12 and msg["flags"] == msg["change"] == 1


def test_address_and_default_route():
    address = ipaddress.IPv4Interface("10.80.1.2/24")
    msg, _ = _one(lambda b: nl.add_address(b, 10, address, "eth0"), ifaddrmsg)
    assert msg["header"]["type"] == nl.RTM_NEWADDR
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (2, 24, 10)
    assert msg.get_attr("IFA_LOCAL") == "10.80.1.2" and msg.get_attr("IFA_BROADCAST") == "10.80.1.255"
    msg, _ = _one(lambda b: nl.add_default_route(b, ipaddress.IPv4Address("10.80.1.1"), "ns"), rtmsg)
    assert msg["header"]["type"] == nl.RTM_NEWROUTE
    assert (msg["dst_len"], msg["table"], msg["proto"], msg["type"]) == (0, 254, 4, 1)
    assert msg.get_attr("RTA_GATEWAY") == "10.80.1.1"


def test_delete_by_name():
    msg, _ = _one(lambda b: nl.delete_link(b, "nsl12345678"), ifinfmsg)
    assert msg["header"]["type"] == nl.RTM_DELLINK and msg.get_attr("IFLA_IFNAME") == "nsl12345678"


def test_hairpin_on_a_bridge_port():
    msg, what = _one(lambda b: nl.set_hairpin(b, "nsvabcdef12", True), ifinfmsg)
    assert msg["header"]["type"] == nl.RTM_NEWLINK and msg.get_attr("IFLA_IFNAME") == "nsvabcdef12"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge"
    assert info.get_attr("IFLA_INFO_SLAVE_DATA").get_attr("IFLA_BRPORT_MODE") == 1
    assert what == "hairpin on for nsvabcdef12"


class _ScriptedSocket:
    """Answers each dump request from a script: a list of (flags, leftover) per attempt, where leftover
    answers carry another sequence number (what an abandoned earlier exchange leaves on a socket)."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []
        self.pending = []

    def send(self, data):
        self.sent.append(data)
        seq = struct.unpack_from("I", data, 8)[0]
        flags, leftover = self.script.pop(0)
        messages = []
        if leftover:
            messages.append(self._msg(16, 0x2, seq - 1000, b"stale"))
        messages.append(self._msg(16, flags, seq, b"one!"))
        messages.append(self._msg(16, flags, seq, b"two!"))
        messages.append(self._msg(nl.NLMSG_DONE, 0x2, seq, struct.pack("i", 0)))
        self.pending = [b"".join(messages[:2]), b"".join(messages[2:])]

    def recvmsg_into(self, buffers):
        data = self.pending.pop(0)
        buffers[0][: len(data)] = data
        return len(data), [], 0, None

    @staticmethod
    def _msg(mtype, flags, seq, payload):
        payload += b"\0" * (-len(payload) % 4)
        return struct.pack("IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


def test_dumps_skip_stale_answers_and_retry_when_interrupted():
    request = struct.pack("IHHII", 16, nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 1, 0)
    sock = _ScriptedSocket([(0x2 | nl.NLM_F_DUMP_INTR, True), (0x2, True)])
    answers = nl.dump(sock, request)
    assert [data[offset + 16 : offset + length] for data, offset, length in answers] == [b"one!", b"two!"]
    assert len(sock.sent) == 2  # asked again after the interrupted dump
    first, second = (struct.unpack_from("I", s, 8)[0] for s in sock.sent)
    assert first != second


def test_a_dump_that_never_settles_is_an_error():
    request = struct.pack("IHHII", 16, nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 1, 0)
    sock = _ScriptedSocket([(0x2 | nl.NLM_F_DUMP_INTR, False)] * nl.DUMP_ATTEMPTS)
    with pytest.raises(KernelError, match="interrupted"):
        nl.dump(sock, request)


def test_parsed_addresses_are_kept_and_the_tables_stay_bounded(monkeypatch):
    monkeypatch.setattr(nl, "_PARSED_LIMIT", 2)
    monkeypatch.setattr(nl, "_GATEWAYS", {})
    first = nl._remember(nl._GATEWAYS, b"\x0a\x00\x00\x01", "10.0.0.1")
    assert nl._GATEWAYS.get(b"\x0a\x00\x00\x01") is first  # found again without being made again
    nl._remember(nl._GATEWAYS, b"\x0a\x00\x00\x02", "10.0.0.2")
    nl._remember(nl._GATEWAYS, b"\x0a\x00\x00\x03", "10.0.0.3")  # the limit reached: emptied, then kept
    assert nl._GATEWAYS == {b"\x0a\x00\x00\x03": "10.0.0.3"}

"""The delayer's nfnetlink_queue messages (no root): what it sends is what the kernel ABI says, and it finds the
packet ids in what the kernel sends (several messages per buffer, attributes in any order, error answers)."""

from __future__ import annotations

import struct

import pytest

from nslab.daemons import delayer


def nlmsg(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def packet(packet_id: int) -> bytes:
    mark = delayer._attr(8, struct.pack("!I", 7))  # another attribute first (NFQA_MARK)
    header = delayer._attr(delayer.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 4))
    return nlmsg(3 << 8 | delayer.NFQNL_MSG_PACKET, struct.pack("!BBH", 2, 0, 5) + mark + header)


def test_packet_ids_of_every_message_in_a_buffer():
    assert delayer.packet_ids(packet(1) + packet(70000) + packet(3)) == [1, 70000, 3]
    assert delayer.packet_ids(nlmsg(delayer.NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16)) == []


def test_an_error_answer_raises():
    with pytest.raises(OSError, match="Operation not permitted"):
        delayer.packet_ids(nlmsg(delayer.NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16))


def test_verdict_and_bind_follow_the_abi():
    message = delayer.verdict(5, 42)
    length, kind, flags = struct.unpack_from("=IHH", message)
    assert (length, kind, flags) == (len(message), 3 << 8 | 1, 1)
    assert struct.unpack_from("!BBH", message, 16) == (0, 0, 5)  # AF_UNSPEC, version 0, queue 5 (big endian)
    assert struct.unpack_from("=HH", message, 20) == (12, delayer.NFQA_VERDICT_HDR)
    assert struct.unpack_from("!II", message, 24) == (delayer.NF_ACCEPT, 42)
    bind, params = delayer.bind_request(9)
    assert struct.unpack_from("!BxH", bind, 24) == (delayer.NFQNL_CFG_CMD_BIND, 0)
    assert struct.unpack_from("!IB", params, 24) == (0, delayer.NFQNL_COPY_META)

"""capture's pure parts: the pcapng writer read back, the filter compiler's errors, the line per packet,
and TARGET[:IF] parsing."""

from __future__ import annotations

import io
import struct

import pytest

from nslab.errors import EnvironmentProblem, UserError
from nslab.tools.capture import bpf, pcapng, split_spec, summary

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ether(kind: int, payload: bytes) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", kind) + payload


def ipv4(proto: int, payload: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    addr = [bytes(int(x) for x in a.split(".")) for a in (src, dst)]
    head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + addr[0] + addr[1]
    return ether(0x0800, head + payload)


def test_pcapng_blocks_lengths_and_options_read_back():
    out = io.BytesIO()
    writer = pcapng.Writer(out)
    a = writer.interface("lab/web1:eth0", 1, description="web1")
    b = writer.interface("container:app:eth0", 1)
    assert (a, b) == (0, 1) and writer.interface("lab/web1:eth0", 1) == 0  # described once
    writer.packet(b, 1_700_000_000_123_456_789, b"\x01\x02\x03", direction=pcapng.OUTBOUND)
    writer.packet(a, 5, b"x" * 64)
    data = out.getvalue()
    kinds = [kind for kind, _ in pcapng.blocks(data)]
    assert kinds == [pcapng.SHB, pcapng.IDB, pcapng.IDB, pcapng.EPB, pcapng.EPB]
    assert len(data) % 4 == 0
    shb = next(body for kind, body in pcapng.blocks(data) if kind == pcapng.SHB)
    assert struct.unpack_from("<IHHq", shb) == (0x1A2B3C4D, 1, 0, -1)
    assert pcapng.interface_names(data) == ["lab/web1:eth0", "container:app:eth0"]
    idb = [body for kind, body in pcapng.blocks(data) if kind == pcapng.IDB][0]
    assert struct.unpack_from("<HHI", idb) == (1, 0, 262144)
    options = dict(pcapng.parse_options(idb[8:]))
    assert options[pcapng.IF_TSRESOL] == b"\x09" and options[pcapng.IF_DESCRIPTION] == b"web1"
    assert pcapng.packets(data) == [(1, 1_700_000_000_123_456_789, b"\x01\x02\x03"), (0, 5, b"x" * 64)]
    epb = [body for kind, body in pcapng.blocks(data) if kind == pcapng.EPB][0]
    assert struct.unpack_from("<II", epb, 12) == (3, 3)  # captured, original length
    flags = dict(pcapng.parse_options(epb[20 + 4:]))  # 3 bytes of data padded to 4
    assert struct.unpack("<I", flags[pcapng.EPB_FLAGS]) == (pcapng.OUTBOUND,)


def test_pcapng_reader_refuses_a_bad_trailer():
    data = bytearray(pcapng.block(pcapng.EPB, b"abcd"))
    data[-1] ^= 1
    with pytest.raises(ValueError):
        list(pcapng.blocks(bytes(data)))


def test_filter_compile_and_its_error_is_a_user_error():
    try:
        program = bpf.compile_filter("icmp")
    except EnvironmentProblem as exc:
        pytest.skip(f"libpcap missing (dev/setup.sh installs libpcap0.8): {exc}")
    assert program and program[-1][0] == 0x06  # ends in BPF_RET
    assert len(bpf.pack(program)) == 8 * len(program)
    with pytest.raises(UserError, match="filter 'tcp port banana'"):
        bpf.compile_filter("tcp port banana")
    with pytest.raises(UserError, match="syntax error"):
        bpf.compile_filter("and and")


def test_lines_for_tcp_udp_icmp_arp_ipv6():
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 7, 9, 5 << 4, 0x12, 1024, 0, 0)
    assert summary.describe(ipv4(6, tcp)) == "10.0.0.1:40000 → 10.0.0.2:80 TCP [S.] seq 7 ack 9"
    udp = struct.pack("!HHHH", 5353, 53, 8 + 3, 0) + b"abc"
    assert summary.describe(ipv4(17, udp)) == "10.0.0.1:5353 → 10.0.0.2:53 UDP len 3"
    icmp = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"payload"
    assert summary.describe(ipv4(1, icmp)) == "10.0.0.1 → 10.0.0.2 ICMP echo request id 7 seq 1"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MAC_A + bytes([10, 0, 0, 1]) + bytes(6) + bytes([10, 0, 0, 2])
    assert summary.describe(ether(0x0806, arp)) == "ARP who-has 10.0.0.2 tell 10.0.0.1"
    reply = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + MAC_A + bytes([10, 0, 0, 1]) + MAC_B + bytes([10, 0, 0, 2])
    assert summary.describe(ether(0x0806, reply)) == "ARP reply 10.0.0.1 is-at 02:00:00:00:00:01"
    six = struct.pack("!IHBB", 6 << 28, 8, 58, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    assert summary.describe(ether(0x86DD, six + struct.pack("!BBHHH", 128, 0, 0, 1, 2))) == (
        "::1 → ::2 ICMPv6 echo request id 1 seq 2"
    )
    assert summary.describe(ether(0x88CC, b"")) == "ethertype 0x88cc"
    assert summary.describe(b"\x00" * 5) == "(truncated frame)"


def test_line_has_time_place_direction_and_length():
    frame = ipv4(1, struct.pack("!BBHHH", 0, 0, 0, 3, 4))
    line = summary.line(1_000_000_000 * 3600 + 42_000, "lab/web1:eth0", frame, outgoing=False)
    assert line.endswith(" lab/web1:eth0 < 10.0.0.1 → 10.0.0.2 ICMP echo reply id 3 seq 4, 42 bytes")
    assert ".000042 " in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1", ("web1", None)),
        ("web1:eth0", ("web1", "eth0")),
        ("lab/web1:any", ("lab/web1", "any")),
        ("pid:42", ("pid:42", None)),
        ("pid:42:eth1", ("pid:42", "eth1")),
        ("netns:blue:veth0", ("netns:blue", "veth0")),
        ("container:app", ("container:app", None)),
        ("path:/proc/1/ns/net:eth0", ("path:/proc/1/ns/net", "eth0")),
    ],
)
def test_split_spec(text, expected):
    assert split_spec(text) == expected


def test_split_spec_refuses_an_empty_interface():
    with pytest.raises(UserError):
        split_spec("web1:")

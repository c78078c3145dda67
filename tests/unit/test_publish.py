"""Docker's publish syntax: [[HOST_IP:]HOST_PORT[-END]:]PORT[-END][/tcp|/udp] (pure parsing)."""

from __future__ import annotations

import ipaddress

import pytest

from nslab.core.publish import ANY, PICK, Mapping, parse
from nslab.errors import PublishSyntaxError

IP = ipaddress.IPv4Address
IP6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6000:8080", [Mapping(ANY, 6000, 8080, "tcp", both=True)]),  # both families, as Docker
        ("0.0.0.0:6001:8080", [Mapping(ANY, 6001, 8080, "tcp")]),  # IPv4 only
        (":6001:8080", [Mapping(ANY, 6001, 8080, "tcp", both=True)]),
        ("127.0.0.1:5353:53/udp", [Mapping(IP("127.0.0.1"), 5353, 53, "udp")]),
        ("7000:80/TCP", [Mapping(ANY, 7000, 80, "tcp", both=True)]),
        ("6000-6002:8080-8082", [Mapping(ANY, 6000 + i, 8080 + i, "tcp", both=True) for i in range(3)]),
        (" 1:65535 ", [Mapping(ANY, 1, 65535, "tcp", both=True)]),
        ("[::1]:6000:80", [Mapping(IP6("::1"), 6000, 80, "tcp")]),
        ("[::]:6000-6001:80-81/udp", [Mapping(IP6("::"), 6000 + i, 80 + i, "udp") for i in range(2)]),
        ("[2001:db8::2]:6000:80", [Mapping(IP6("2001:db8::2"), 6000, 80, "tcp")]),
        # no host port: picked at up, as Docker's -p 8080 (both families, unless a HOST_IP says one)
        ("8080", [Mapping(ANY, PICK, 8080, "tcp", both=True)]),
        (":8080", [Mapping(ANY, PICK, 8080, "tcp", both=True)]),
        ("53/udp", [Mapping(ANY, PICK, 53, "udp", both=True)]),
        ("127.0.0.1::53/udp", [Mapping(IP("127.0.0.1"), PICK, 53, "udp")]),
        ("[::1]::53/udp", [Mapping(IP6("::1"), PICK, 53, "udp")]),
        ("::80", [Mapping(ANY, PICK, 80, "tcp", both=True)]),
        ("8080-8081", [Mapping(ANY, PICK, 8080, "tcp", both=True), Mapping(ANY, PICK, 8081, "tcp", both=True)]),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0", "port 0 is out of range"),
        (":x", "port 'x' is not a port"),
        ("localhost::80", "HOST_IP 'localhost' is not an IPv4 address"),
        ("0:80", "host port 0 is out of range"),
        ("6000:70000", "port 70000 is out of range"),
        ("6000:80/sctp", "protocol 'sctp' is not supported"),
        ("[::1]6000:80", "an IPv6 HOST_IP is written [ADDRESS]:HOST_PORT:PORT"),
        ("[::1]:6000", "is not [HOST_IP]:HOST_PORT:PORT"),
        ("[10.0.0.1]:6000:80", "HOST_IP '[10.0.0.1]' is not an IPv6 address"),
        ("[fe80::1]:6000:80", "link-local"),
        ("::1:6000:80", "an IPv6 HOST_IP?"),
        ("localhost:6000:80", "HOST_IP 'localhost' is not an IPv4 address"),
        ("6000-6001:80", "differ in length"),
        ("6002-6000:80-82", "ends before it starts"),
        ("6000-:80", "is not a port or a range"),
        ("a:b", "host port 'a' is not a port"),
        ("web", "'web' is not [[HOST_IP:]HOST_PORT:]PORT"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(PublishSyntaxError) as err:
        parse(text)
    assert message in str(err.value)


def test_overlaps():
    a, b = parse("6000:80")[0], parse("127.0.0.1:6000:81")[0]
    assert a.overlaps(b) and b.overlaps(a)
    assert not b.overlaps(parse("198.51.100.2:6000:80")[0])
    assert not a.overlaps(parse("6000:80/udp")[0])
    assert b.label() == "127.0.0.1:6000/tcp" and a.label() == "6000/tcp"
    picked = parse("80")[0]
    assert picked.picked and not a.picked
    assert not picked.overlaps(parse("80")[0]) and not picked.overlaps(a)  # claims nothing until picked


def test_overlaps_by_family():
    both, v4, v6, lo6 = (parse(t)[0] for t in ("6000:80", "0.0.0.0:6000:80", "[::]:6000:80", "[::1]:6000:80"))
    assert both.overlaps(v4) and both.overlaps(v6) and both.overlaps(lo6)
    assert not v4.overlaps(v6) and not v4.overlaps(lo6) and v6.overlaps(lo6)
    assert v6.label() == "[::]:6000/tcp" and lo6.label() == "[::1]:6000/tcp" and v4.label() == "0.0.0.0:6000/tcp"

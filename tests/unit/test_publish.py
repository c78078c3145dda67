"""Docker's publish syntax: [[HOST_IP:]HOST_PORT[-END]:]PORT[-END][/tcp|/udp] (pure parsing)."""

from __future__ import annotations

import ipaddress

import pytest

from nslab.publish import ANY, PICK, Mapping, PublishSyntaxError, parse

IP = ipaddress.IPv4Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6000:8080", [Mapping(ANY, 6000, 8080, "tcp")]),
        ("0.0.0.0:6001:8080", [Mapping(ANY, 6001, 8080, "tcp")]),
        (":6001:8080", [Mapping(ANY, 6001, 8080, "tcp")]),
        ("127.0.0.1:5353:53/udp", [Mapping(IP("127.0.0.1"), 5353, 53, "udp")]),
        ("7000:80/TCP", [Mapping(ANY, 7000, 80, "tcp")]),
        ("6000-6002:8080-8082", [Mapping(ANY, 6000 + i, 8080 + i, "tcp") for i in range(3)]),
        (" 1:65535 ", [Mapping(ANY, 1, 65535, "tcp")]),
        # no host port: picked at up, as Docker's -p 8080
        ("8080", [Mapping(ANY, PICK, 8080, "tcp")]),
        (":8080", [Mapping(ANY, PICK, 8080, "tcp")]),
        ("53/udp", [Mapping(ANY, PICK, 53, "udp")]),
        ("127.0.0.1::53/udp", [Mapping(IP("127.0.0.1"), PICK, 53, "udp")]),
        ("::80", [Mapping(ANY, PICK, 80, "tcp")]),
        ("8080-8081", [Mapping(ANY, PICK, 8080, "tcp"), Mapping(ANY, PICK, 8081, "tcp")]),
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
        ("[::1]:6000:80", "IPv6 HOST_IP is not supported"),
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

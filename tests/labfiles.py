"""Lab files that unit and integration tests both read (the same lab over the fake drivers and the kernel), and
:func:`lab_text`, which writes the usual shape of a lab file (name, networks, hosts) from what differs."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def lab_text(
    name: str, networks: Mapping[str, str], hosts: Mapping[str, str], internal: Collection[str] = (), more: str = ""
) -> str:
    """A lab file: ``networks`` maps a network to its subnet ("": IPAM chooses), those named in ``internal`` get no
    NAT; ``hosts`` maps a host to its keys as a flow mapping's inside (``networks: [front], run: exec sleep 9``;
    "": none); ``more`` (YAML) follows the hosts. One line per network and per host, in the order given."""
    lines = [f"name: {name}", "networks:"]
    for network, subnet in networks.items():
        keys = ([f"subnet: {subnet}"] if subnet else []) + (["internal: true"] if network in internal else [])
        lines.append(f"  {network}: {{{', '.join(keys)}}}")
    lines.append("hosts:")
    lines += [f"  {host}: {{{keys}}}" for host, keys in hosts.items()]
    return "\n".join(lines) + "\n" + more


def listing_lab(name: str, host: str, key: str, entries: list[str], more: str = "") -> str:
    """A lab of one network ``n`` and ``host`` on it, whose ``key`` lists ``entries`` one per line: entry i is on
    line 7 + i, so a test of errors with file:line sees each entry's own line. ``more`` (YAML) adds hosts."""
    head = f"name: {name}\nnetworks: {{n: {{}}}}\nhosts:\n  {host}:\n    networks: [n]\n    {key}:\n"
    return head + "".join(f"      {entry}\n" for entry in entries) + more


#: The example of issue 2: both forms of a host's networks, a host on no network, two links web1-db.
ISSUE_EXAMPLE = """\
name: demo
networks:
  front:
    subnet: 10.80.1.0/24
  back: {}
hosts:
  web1:
    networks: [front]
  web2:
    networks: {front: 10.80.1.20, back: null}
  db:
    networks: [back]
  lonely: {}
links:
  - [web1, db]
  - {endpoints: [web1, db], subnet: 10.90.0.0/30}
"""

#: Name lookups: a NAT network and an internal one, fixed addresses, a host with its own hostname.
DNS_LAB = lab_text(
    "dn", {"front": "10.77.1.0/24", "back": "10.77.2.0/24"}, internal=["back"], hosts={
        "a": "networks: {front: 10.77.1.10}",
        "b": "networks: {front: 10.77.1.11, back: 10.77.2.11}, hostname: bee",
        "c": "networks: {back: 10.77.2.12}",
    },
)

#: `nslab check`'s lab: two NAT networks, an internal one, a link (web1 and db share nothing but the link) and a
#: host on no network. CHECK_REACH is the matrix it implies besides a host reaching itself.
CHECK_LAB = lab_text(
    "chk", {"front": "10.81.1.0/24", "back": "10.81.2.0/24", "secure": "10.81.3.0/24"}, internal=["secure"], hosts={
        "web1": "networks: [front]", "web2": "networks: [front]", "db": "networks: [back]",
        "vault": "networks: [secure]", "both": "networks: [back, secure]", "alone": "",
    },
    more="links:\n  - {endpoints: [web1, db], subnet: 10.90.0.0/30}\n",
)
CHECK_HOSTS = ["web1", "web2", "db", "vault", "both", "alone"]
CHECK_REACH = {
    ("web1", "web2"), ("web2", "web1"), ("web1", "db"), ("db", "web1"), ("db", "both"), ("both", "db"),
    ("vault", "both"), ("both", "vault"),
    ("web1", "outside"), ("web2", "outside"), ("db", "outside"), ("both", "outside"),
}

#: The router example of docs/lab-file.md: a and b talk through `router` (ip_forward), nothing else routes.
ROUTER = """\
name: rt
x-side: &side {internal: true}
networks:
  left: {subnet: 10.81.1.0/24, <<: *side}
  right: {subnet: 10.81.2.0/24, <<: *side, mtu: 9000}
hosts:
  router:
    networks: {left: 10.81.1.254, right: 10.81.2.254}
    sysctls: {net.ipv4.ip_forward: 1}
  a:
    networks: [left]
    default: 10.81.1.254
  b:
    networks: {right: {address: 10.81.2.10, mac: "02:aa:00:00:00:0b", mtu: 1400}}
    routes: [{to: 10.81.1.0/24, via: 10.81.2.254}]
"""

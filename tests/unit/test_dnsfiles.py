"""dnsfiles: resolv.conf parsing, upstream discovery (the loopback-stub pitfall), hosts/resolv.conf rendering."""

from __future__ import annotations

import pytest

from labfiles import DNS_LAB
from nslab.core.features.dns import render as dnsfiles
from nslab.lab import Lab

LAB = DNS_LAB + """\
  d: {}
  e: {}
links:
  - {endpoints: [c, e], subnet: 10.90.0.0/30}
"""


def resolved(text: str = LAB):
    return Lab.from_text(text).resolve()


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_parse_resolv_conf():
    rc = dnsfiles.parse_resolv_conf(
        "# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n"
        "domain a.example\nsearch b.example c.example ; trailing\noptions edns0 trust-ad\n"
    )
    assert rc.nameservers == ("127.0.0.53", "fe80::1")
    assert rc.search == ("b.example", "c.example")
    assert rc.options == ("edns0", "trust-ad")


def test_real_servers_are_used_as_they_are(tmp_path):
    up = dnsfiles.discover_upstream(write(tmp_path, "r", "nameserver 127.0.0.53\nnameserver 192.0.2.1\n"),
                                    str(tmp_path / "none"))
    assert up.servers == ("192.0.2.1",) and up.stubs == ()


@pytest.mark.parametrize("stub", ["127.0.0.53", "127.0.0.1", "127.1.2.3", "::1"])
def test_loopback_stub_uses_systemd_resolved_upstreams(tmp_path, stub):
    up = dnsfiles.discover_upstream(
        write(tmp_path, "r", f"nameserver {stub}\nsearch corp.example\n"),
        write(tmp_path, "u", "nameserver 192.0.2.7\nnameserver 2001:db8::7\n"),
    )
    assert up.servers == ("192.0.2.7",)  # hosts are IPv4-only
    assert up.search == ("corp.example",)


def test_loopback_stub_without_upstream_file_goes_through_the_forwarder(tmp_path):
    up = dnsfiles.discover_upstream(write(tmp_path, "r", "nameserver 127.0.0.53\n"), str(tmp_path / "none"))
    assert up.servers == () and up.stubs == ("127.0.0.53",)
    lab = resolved()
    dns = dnsfiles.host_dns(lab.hosts["a"], up)
    assert dns.forward and dns.nameservers == ("10.77.1.1",)
    text = dnsfiles.render_resolv_conf("dn", dns)
    assert [line for line in text.splitlines() if line.startswith("nameserver")] == ["nameserver 10.77.1.1"]


def test_never_a_loopback_nameserver_in_a_host(tmp_path):
    lab = resolved()
    for machine in ("nameserver 127.0.0.53\n", "nameserver ::1\n", ""):
        up = dnsfiles.discover_upstream(write(tmp_path, "r", machine), str(tmp_path / "none"))
        for host in lab.hosts.values():
            text = dnsfiles.render_resolv_conf("dn", dnsfiles.host_dns(host, up))
            servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")]
            assert not any(s.startswith("127.") or s == "::1" for s in servers), (machine, host.name, text)


def test_hosts_without_nat_get_no_upstream():
    lab = resolved()
    up = dnsfiles.Upstream(servers=("192.0.2.1",), source="/etc/resolv.conf")
    assert dnsfiles.host_dns(lab.hosts["a"], up).nameservers == ("192.0.2.1",)
    for name in ("c", "d", "e"):
        dns = dnsfiles.host_dns(lab.hosts[name], up)
        assert dns.nameservers == () and dns.via.startswith("none")


def test_lab_file_overrides_per_lab_and_per_host():
    lab = resolved(LAB.replace("name: dn\n", "name: dn\ndns: [192.0.2.53]\ndns_search: [lab.example]\n")
                   .replace("hostname: bee}", "hostname: bee, dns: ['2001:db8::53'], dns_search: []}"))
    up = dnsfiles.Upstream(servers=("192.0.2.1",), search=("m.example",))
    a = dnsfiles.host_dns(lab.hosts["a"], up)
    b = dnsfiles.host_dns(lab.hosts["b"], up)
    c = dnsfiles.host_dns(lab.hosts["c"], up)
    assert (a.nameservers, a.search) == (("192.0.2.53",), ("lab.example",))
    assert (b.nameservers, b.search) == (("2001:db8::53",), ())
    assert c.nameservers == ("192.0.2.53",)  # explicit servers are written even for internal hosts


def test_hosts_file_names_every_host_by_a_reachable_address():
    lab = resolved()

    def table(me: str) -> dict[str, str]:
        out = {}
        for line in dnsfiles.render_hosts(lab, lab.hosts[me]).splitlines():
            if line and not line.startswith("#"):
                address, *names = line.split()
                for n in names:
                    out.setdefault(n, address)
        return out

    a, b, c, e = table("a"), table("b"), table("c"), table("e")
    assert a["b"] == a["b.dn"] == a["bee"] == "10.77.1.11"  # shared network front
    assert a["c"] == "10.77.2.12"
    assert c["b"] == "10.77.2.11"  # shared network back, not b's first address
    assert c["e"] == "10.90.0.2" and e["c"] == "10.90.0.1"  # shared link
    assert b["a"] == "10.77.1.10" and a["a"] == "10.77.1.10"
    assert "d" not in a  # loopback only: nothing to resolve to
    assert a["localhost"] == "127.0.0.1"


def test_search_domain_validation():
    assert dnsfiles.SEARCH_DOMAIN.match("corp.example")
    assert dnsfiles.SEARCH_DOMAIN.match("lab")
    assert dnsfiles.SEARCH_DOMAIN.match("x.example.")
    for bad in ("bad domain", "-x.example", "a..b", "", "x" * 64):
        assert not dnsfiles.SEARCH_DOMAIN.match(bad), bad


def _reference_hosts_file(lab, me) -> str:
    """The hosts file decided host by host with _reachable_address (what HostsFiles shares work for)."""
    lines = [
        f"# written by nslab for lab {lab.name}: every host as NAME and NAME.{lab.name}",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{me.interfaces[0].address.ip if me.interfaces else '127.0.1.1'}\t" + " ".join(dnsfiles._names(lab, me)),
    ]
    for other in lab.hosts.values():
        address = dnsfiles._reachable_address(lab, me, other) if other.name != me.name else None
        if address is not None:
            lines.append(f"{address}\t" + " ".join(dnsfiles._names(lab, other)))
    return "\n".join(lines) + "\n"


def test_shared_hosts_files_equal_the_host_by_host_rendering():
    extra = "  f: {networks: [front, back]}\n  g: {networks: [back]}\n  h: {networks: [front]}\nlinks:\n"
    lab = resolved(LAB.replace("links:\n", extra) + "  - {endpoints: [a, g]}\n")
    shared = dnsfiles.HostsFiles(lab)
    for host in lab.hosts.values():
        assert shared.render(host) == _reference_hosts_file(lab, host) == dnsfiles.render_hosts(lab, host)
    assert len(shared._views) < len(lab.hosts)  # hosts on the same networks shared one list

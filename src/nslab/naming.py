"""How nslab names what it creates, and how it recognises what it made: both directions in one place.

- a host is the named namespace ``<lab>-<host>``;
- a network is the bridge ``nsl<hash>``, a host's machine-side veth ``nsv<hash>`` (always <= 15 characters);
- a bridge and every interface inside a host get a MAC address derived from their names (:func:`mac_address`);
- every link nslab makes on the machine is in link group :data:`LINK_GROUP` from the instant it exists, and
  carries an ownership mark in its alias (``ip link`` shows it): ``nslab:<lab>:net:<network>`` on a bridge,
  ``nslab:<lab>:host:<host>:<ifname>`` on a host's veth. :func:`owner_alias` writes a mark, :func:`parse_owner`
  reads one back.

Stdlib only and cheap to import (``nslab exec`` resolves lab hosts with it).
"""

from __future__ import annotations

try:  # hashlib imports OpenSSL's _hashlib first (~4 ms on every command); blake2 is built in
    from _blake2 import blake2s as blake2s
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2s as blake2s

#: Every machine-side link nslab makes carries an alias starting with this (set right after creation) ...
OWNER_PREFIX = "nslab:"
#: ... and is in this link group from the request that creates it (``ip link show group 7238508``; "nsl" in
#: ASCII), so even a link whose creator was killed before the alias was set is recognisably nslab's.
LINK_GROUP = 0x6E736C


def is_run_lab(lab: str) -> bool:
    """The one-host lab of an ``nslab run`` (``run-<pid>[a-z]``): never a lab file's, gone when the run ends."""
    rest = lab[4:].rstrip("abcdefghijklmnopqrstuvwxyz")
    return lab.startswith("run-") and rest.isdigit() and len(lab) - 4 - len(rest) <= 1


def short_hash(*parts: str, length: int = 8) -> str:
    return blake2s("/".join(parts).encode(), digest_size=8).hexdigest()[:length]


def namespace_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def bridge_name(lab: str, network: str) -> str:
    return "nsl" + short_hash(lab, network)


def host_veth_name(lab: str, host: str, ifname: str) -> str:
    return "nsv" + short_hash(lab, host, ifname)


def mac_address(lab: str, *parts: str) -> str:
    """A locally administered unicast MAC address derived from names (``lab, "net", network`` for a bridge,
    ``lab, "host", host, ifname`` for an interface inside a host): an object made again (``up`` recreating a
    host, a link or a bridge) gets the same address, so its neighbours' ARP caches stay right. With a random
    address, hosts kept a stale entry for seconds; and a bridge without an address of its own takes its lowest
    port's, which changed whenever a host was recreated (the gateway was unreachable meanwhile)."""
    raw = bytearray(blake2s("/".join((lab, *parts)).encode(), digest_size=6).digest())
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def owner_alias(lab: str, *parts: str) -> str:
    """The ownership mark of a link: ``nslab:<lab>:net:<network>`` or ``nslab:<lab>:host:<host>:<if>``."""
    return OWNER_PREFIX + ":".join((lab, *parts))


class Owner:
    """A parsed ownership mark: ``lab``, ``kind`` (``net`` or ``host``) and ``name`` (network or host)."""

    __slots__ = ("lab", "kind", "name")

    def __init__(self, lab: str, kind: str, name: str) -> None:
        self.lab, self.kind, self.name = lab, kind, name

    def __repr__(self) -> str:
        return f"Owner({self.lab!r}, {self.kind!r}, {self.name!r})"


def parse_owner(alias: str) -> Owner | None:
    """The owner named by a link's alias, or None when the link is not nslab's."""
    if not alias.startswith(OWNER_PREFIX):
        return None
    parts = alias[len(OWNER_PREFIX) :].split(":")
    if len(parts) < 3 or parts[1] not in ("net", "host"):
        return None
    return Owner(parts[0], parts[1], parts[2])

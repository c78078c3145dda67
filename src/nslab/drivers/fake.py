"""The fake twin of :class:`nslab.drivers.netlink.NetlinkKernel` for unit tests of apply/plan logic.

It keeps namespaces, bridges and links as sets and can be told to fail a given operation, so rollback and
"down goes on past errors" are testable without root.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from ..errors import KernelError
from ..model import Host, Lab, Link, Network


class FakeKernel:
    def __init__(self, fail_on: str | None = None):
        self.namespaces: set[str] = set()
        self.bridges: set[str] = set()
        self.link_ends: set[tuple[str, str]] = set()
        self.calls: list[str] = []
        self.fail_on = fail_on

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.fail_on == what:
            raise KernelError(f"{what}: injected failure")

    def close(self) -> None:
        pass

    def named_namespaces(self) -> frozenset[str]:
        return frozenset(self.namespaces)

    def owned_links(self) -> list:
        return []

    def machine_networks(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        return []

    def add_bridges(self, lab: Lab, networks: list[Network]) -> None:
        self._call("add_bridges")
        self.bridges |= {n.bridge for n in networks}

    def remove_links(self, names: list[str]) -> list[str]:
        self._call("remove_links")
        self.bridges -= set(names)
        return []

    def remove_links_later(self, names: list[str]) -> Callable[[], list[str]]:
        failures = self.remove_links(names)
        return lambda: failures

    def clear_stale_links(self, names: list[str]) -> list[str]:
        self._call("clear_stale_links")
        return []

    def add_hosts(self, lab: Lab, hosts: list[Host]) -> None:
        self._call("add_hosts")
        clash = {h.namespace for h in hosts} & self.namespaces
        if clash:
            raise KernelError(f"namespace {sorted(clash)[0]} already exists")
        self.namespaces |= {h.namespace for h in hosts}

    def remove_namespaces(self, names: list[str]) -> list[str]:
        self._call("remove_namespaces")
        self.namespaces -= set(names)
        self.link_ends = {e for e in self.link_ends if e[0] not in names}
        return []

    def add_links(self, lab: Lab, links: list[Link]) -> None:
        self._call("add_links")
        self.link_ends |= {(lab.hosts[lk.a].namespace, lk.a_ifname) for lk in links}

    def remove_link_ends(self, ends: list[tuple[str, str]]) -> list[str]:
        self._call("remove_link_ends")
        self.link_ends -= set(ends)
        return []

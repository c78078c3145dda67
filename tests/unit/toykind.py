"""Kind 'toy': a link kind defined entirely in the tests, to prove that a kind is one module plus one registration
(tests/unit/test_kind_plugin.py registers it with ``kinds.register("toy", "toykind")``; nothing under src/ names it).

A toy link puts one interface of kernel kind ``toy`` (a kind only the fake kernel knows) in each of its two hosts,
no peer between them, each with its address of the link's subnet, the link's ``label:`` as its alias, and the
label packed as the kind's IFLA_INFO_DATA. Schema: the common link fields and ``label`` (at most 8 characters).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal

from nslab.core.difference import Difference
from nslab.core.plan import Action, raise_on
from nslab.drivers import Drivers
from nslab.drivers.rtnl import LinkEnd, LinkInfo, NewLink, attr_string
from nslab.model import Host, Interface, Lab, Link

KIND = "toy"
_schema: list[type[Any]] = []


def schema() -> type[Any]:
    if not _schema:
        from pydantic import field_validator

        from nslab.core.spec import LinkSpec

        class ToySpec(LinkSpec):
            kind: Literal["toy"]
            label: str

            @field_validator("label")
            @classmethod
            def _short(cls, value: str) -> str:
                if len(value) > 8:
                    raise ValueError(f"'{value}' is longer than 8 characters")
                return value

        _schema.append(ToySpec)
    return _schema[0]


def resolve(resolution: Any, written: Any, a_ifname: str, b_ifname: str, subnet: ipaddress.IPv4Network,
            subnet6: ipaddress.IPv6Network | None) -> Link:
    first, second = list(subnet.hosts())[:2]
    a, b = written.endpoints
    return Link(a=a, b=b, a_ifname=a_ifname, b_ifname=b_ifname, subnet=subnet,
                a_address=ipaddress.IPv4Interface(f"{first}/{subnet.prefixlen}"),
                b_address=ipaddress.IPv4Interface(f"{second}/{subnet.prefixlen}"),
                kind=KIND, options=(("label", written.label),))


def add(lab: Lab, links: tuple[Link, ...]) -> Action:
    return AddToys(lab, links)


def remove(lab: Lab, links: tuple[Link, ...]) -> Action:
    return RemoveToys(lab, links)


def ends(lab: Lab, link: Link) -> list[tuple[str, str]]:
    """Each host's toy interface, ``a``'s first."""
    namespaces = (lab.hosts[link.a].namespace, lab.hosts[link.b].namespace)
    return list(zip(namespaces, (link.a_ifname, link.b_ifname), strict=True))


def label(link: Link) -> str:
    return str(dict(link.options)["label"])


def new_links(lab: Lab, link: Link) -> list[NewLink]:
    """One interface in each host: no peer, the label as the kind's data and as the alias."""
    return [NewLink(KIND, LinkEnd(namespace, ifname, alias=f"toy:{label(link)}", addresses=(address,)),
                    attr_string(1, label(link)))
            for (namespace, ifname), address in zip(ends(lab, link), (link.a_address, link.b_address), strict=True)]


class AddToys(Action):
    lab: Lab
    links: tuple[Link, ...]

    def commands(self) -> list[str]:
        return [f"ip -n {new.end.namespace} link add {new.end.name} type toy label {label(lk)}"
                for lk in self.links for new in new_links(self.lab, lk)]

    def apply(self, drivers: Drivers) -> Action | None:
        undo = RemoveToys(self.lab, self.links)
        try:
            drivers.kernel.add_links([new for lk in self.links for new in new_links(self.lab, lk)])
        except BaseException:
            drivers.kernel.remove_link_ends(undo.ends())
            raise
        return undo


class RemoveToys(Action):
    lab: Lab
    links: tuple[Link, ...]

    def ends(self) -> list[tuple[str, str]]:
        return [end for lk in self.links for end in ends(self.lab, lk)]

    def commands(self) -> list[str]:
        return [f"ip -n {ns} link del {ifname}" for ns, ifname in self.ends()]

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_link_ends(self.ends()))
        return AddToys(self.lab, self.links)


def drift(lab: Lab, host: Host, interface: Interface, seen: LinkInfo | None, machine: Mapping[str, LinkInfo],
          want_up: bool) -> list[Difference]:
    """Missing, or not a toy: the link is made again."""
    assert interface.link is not None
    lk = lab.links[interface.link]
    key = (lk.a, lk.b, lk.a_ifname, lk.b_ifname)
    where = f"host {host.name}: toy {interface.name}"
    if seen is None:
        return [Difference(f"{where} is missing", "link", host=host.name, link=key)]
    if seen.kind != KIND:
        return [Difference(f"{where} is a {seen.kind or 'plain'} link", "link", host=host.name, link=key)]
    return []

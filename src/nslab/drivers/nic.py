"""The machine's own interfaces that a lab borrows (``networks: {lan: {external: eth1}}``, core/features/external.py):
reading one whole (addresses, routes, state, MTU, master), changing it, and whether the kernel has 802.1q.

- reading: ``ip -j -d addr show dev IF`` and ``ip -j [-6] route show table main dev IF`` (three short processes,
  once per borrowed interface and ``up``/``down``): the routes of the machine are kept with every attribute
  ``ip`` shows (proto, scope, metric, src), which the netlink driver's route reader does not carry;
- changing: ``ip -batch -`` (``-force`` to go on past a failing line when giving an interface back, so that
  everything that can come back does), one process per change; the lines are the ones ``--dry-run`` prints;
- 802.1q: asking the kernel for a link of kind ``vlan`` with no settings (one netlink request, nothing is made):
  "unknown kind" (EOPNOTSUPP) means no 802.1q, "invalid settings" (EINVAL) means it has it.

Replaces: ``ip addr show dev IF``, ``ip route show dev IF``, ``ip link set IF master BR``, ``ip addr add/del``,
``ip route replace``, ``modprobe 8021q``.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from ..errors import EnvironmentProblem, KernelError
from ..values import Value

#: routes the kernel makes and removes with an address or a link: never carried over by hand
_KERNEL_PROTOCOLS = ("kernel",)


class Nic(Value):
    """One of the machine's interfaces as it is: what giving it back restores. Addresses as ``ip`` writes them
    (``192.0.2.10/24``), routes as the words after ``ip route replace`` without ``dev`` (a default route
    written ``0.0.0.0/0`` or ``::/0``: ``ip -batch`` lines take no ``-6``); ``master``: the name of the bridge
    it is a port of ("" none)."""

    name: str
    kind: str = ""
    up: bool = False
    mtu: int = 0
    master: str = ""
    loopback: bool = False
    addresses: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "up": self.up, "mtu": self.mtu, "master": self.master,
                "loopback": self.loopback, "addresses": list(self.addresses), "routes": list(self.routes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Nic:
        return cls(str(data["name"]), str(data.get("kind", "")), bool(data.get("up")), int(data.get("mtu", 0)),
                   str(data.get("master", "")), bool(data.get("loopback")),
                   tuple(str(a) for a in data.get("addresses", ())), tuple(str(r) for r in data.get("routes", ())))


def route_words(route: dict[str, Any], six: bool) -> str | None:
    """An entry of ``ip -j route show dev IF`` as the words of ``ip route replace`` (no ``dev``); None for the
    routes the kernel keeps itself (an address's subnet, link-local, multicast)."""
    if route.get("protocol") in _KERNEL_PROTOCOLS or route.get("type", "unicast") != "unicast":
        return None
    dst = str(route.get("dst", ""))
    if dst == "default":
        dst = "::/0" if six else "0.0.0.0/0"
    if six and dst.startswith("fe80:"):
        return None
    words = [dst]
    for key, word in (("gateway", "via"), ("protocol", "proto"), ("scope", "scope"), ("metric", "metric"),
                      ("prefsrc", "src")):
        if key in route and not (key == "scope" and route[key] == "global"):
            words += [word, str(route[key])]
    return " ".join(words)


def nic_from_json(link: dict[str, Any], routes4: list[dict[str, Any]], routes6: list[dict[str, Any]]) -> Nic:
    """A :class:`Nic` from what ``ip -j -d addr show`` and ``ip -j route show`` print for one interface."""
    addresses = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", ())
                      if a.get("family") in ("inet", "inet6") and a.get("scope") not in ("link", "host"))
    routes = [route_words(r, False) for r in routes4] + [route_words(r, True) for r in routes6]
    return Nic(
        name=str(link["ifname"]),
        kind=str(link.get("linkinfo", {}).get("info_kind", "")),
        up="UP" in link.get("flags", ()),
        mtu=int(link.get("mtu", 0)),
        master=str(link.get("master", "")),
        loopback="LOOPBACK" in link.get("flags", ()),
        addresses=addresses,
        routes=tuple(r for r in routes if r is not None),
    )


def _ip() -> str:
    import shutil  # (here: the lab core imports this module for :class:`Nic`, on every ``up`` and ``down``)

    found = shutil.which("ip")
    if found is None:
        raise EnvironmentProblem("the ip command is missing (apt-get install iproute2)")
    return found


class LiveNics:
    """The machine's interfaces through ``ip`` (see the module's docstring)."""

    def interface(self, name: str) -> Nic | None:
        """The interface ``name`` of the machine as it is now; None when there is none."""
        import subprocess

        ip = _ip()
        shown = subprocess.run([ip, "-j", "-d", "addr", "show", "dev", name], capture_output=True, text=True)
        if shown.returncode != 0 or not shown.stdout.strip():
            return None
        (link,) = json.loads(shown.stdout)
        routes = [json.loads(subprocess.run([ip, "-j", family, "route", "show", "table", "main", "dev", name],
                                            capture_output=True, text=True).stdout or "[]")
                  for family in ("-4", "-6")]
        return nic_from_json(link, routes[0], routes[1])

    def change(self, lines: list[str], force: bool = False) -> None:
        """Run ``lines`` (each an ``ip`` command line, ``ip`` first) as one ``ip -batch -``; ``force``: go on past
        a failing line. A failure raises KernelError with ip's own message."""
        import subprocess

        words = [line.split(" ", 1)[1] if line.startswith("ip ") else line for line in lines]
        argv = [_ip(), *(["-force"] if force else []), "-batch", "-"]
        result = subprocess.run(argv, input="\n".join(words) + "\n", capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelError(f"ip: {result.stderr.strip() or 'failed'}")

    def has_vlan(self) -> bool:
        """Whether the kernel makes 802.1q VLAN links (it loads 8021q on demand when it can)."""
        from .rtnl import Batch, LinkEnd, NewLink, add_link, delete_link, open_socket

        sock = open_socket()
        try:
            batch = Batch()
            add_link(batch, NewLink("vlan", LinkEnd("", "nslab-vlanprobe")))
            failures = batch.commit(sock, tolerate=(errno.EINVAL, errno.ENODEV))
            if not failures:  # (no kernel makes a VLAN without its id and parent; if one did, it goes)
                delete_link(batch, "nslab-vlanprobe")
                batch.commit(sock, tolerate=(errno.ENODEV,))
            return not failures
        finally:
            sock.close()

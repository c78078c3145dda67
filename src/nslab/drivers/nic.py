"""The machine's own interfaces that a lab borrows (``networks: {lan: {external: eth1}}``, core/features/external.py):
reading one whole (addresses, routes, state, MTU, master), changing it, and whether the kernel has 802.1q.

- reading: ``ip -j -d addr show dev IF`` and, per family, ``ip -j -d -4|-6 -batch -`` of ``route show table all``
  and ``rule show`` (three short processes, once per borrowed interface and ``up``/``down``): the routes of the
  interface in ``main`` are kept with every attribute ``ip`` shows (proto, scope, metric, src, onlink, pref, the
  metrics, expires), which the netlink driver's route reader does not carry; its addresses with their flags and
  finite lifetimes (as read, with the :func:`time.monotonic` instant, so that they are counted down when added
  again); what cannot be carried (multipath and nexthop-object routes through it, its routes in other tables,
  policy rules naming it, time metrics) is named in ``Nic.unsafe``;
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
from collections.abc import Sequence
from typing import Any

from ..errors import EnvironmentProblem, KernelError
from ..values import Value

#: routes the kernel makes and removes with an address or a link: never carried over by hand
_KERNEL_PROTOCOLS = ("kernel",)
#: route metrics ``ip -j`` shows as plain numbers or words, carried as ``ip route replace`` takes them
_METRICS = ("mtu", "advmss", "window", "initcwnd", "initrwnd", "hoplimit", "reordering", "cwnd", "ssthresh",
            "quickack", "fastopen_no_cookie", "congctl")
#: address flags ``ip addr add`` takes back
_ADDRESS_FLAGS = ("noprefixroute", "mngtmpaddr", "home")
_FOREVER = 4294967295


class Nic(Value):
    """One of the machine's interfaces as it is: what giving it back restores. Addresses as ``ip`` writes them
    (``192.0.2.10/24``), routes as the words after ``ip route replace`` without ``dev`` (a default route
    written ``0.0.0.0/0`` or ``::/0``: ``ip -batch`` lines take no ``-6``); ``master``: the name of the bridge
    it is a port of ("" none). ``details``: address -> the words after it in ``ip addr add`` (flags, and
    ``valid_lft N preferred_lft M`` when not forever, as at ``read_at``, :func:`time.monotonic`; a route's
    ``expires N`` too); ``mac``: its link-layer address; ``nslab``: a link nslab made (its alias or group);
    ``unsafe``: what it has that cannot be carried to a bridge (one phrase each: multipath routes, routes in
    other tables, policy rules naming it)."""

    name: str
    kind: str = ""
    up: bool = False
    mtu: int = 0
    master: str = ""
    loopback: bool = False
    addresses: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    mac: str = ""
    nslab: bool = False
    unsafe: tuple[str, ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    read_at: float = 0.0

    def words(self, address: str) -> str:
        """The words after ``address`` in ``ip addr add`` ("" none)."""
        return dict(self.details).get(address, "")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "up": self.up, "mtu": self.mtu, "master": self.master,
                "loopback": self.loopback, "addresses": list(self.addresses), "routes": list(self.routes),
                "mac": self.mac, "nslab": self.nslab, "unsafe": list(self.unsafe), "details": dict(self.details),
                "read_at": self.read_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Nic:
        return cls(str(data["name"]), str(data.get("kind", "")), bool(data.get("up")), int(data.get("mtu", 0)),
                   str(data.get("master", "")), bool(data.get("loopback")),
                   tuple(str(a) for a in data.get("addresses", ())), tuple(str(r) for r in data.get("routes", ())),
                   str(data.get("mac", "")), bool(data.get("nslab")), tuple(str(u) for u in data.get("unsafe", ())),
                   tuple((str(a), str(w)) for a, w in dict(data.get("details", {})).items()),
                   float(data.get("read_at", 0.0)))


def aged(words: str, elapsed: float) -> str | None:
    """``words`` (an ``ip addr add`` or ``ip route replace`` line) with its ``valid_lft``, ``preferred_lft`` and
    ``expires`` counted down by ``elapsed`` seconds; None when what it gives has expired meanwhile."""
    out = words.split()
    for i, word in enumerate(out[:-1]):
        if word in ("valid_lft", "preferred_lft", "expires") and out[i + 1].isdigit():
            left = int(out[i + 1]) - int(elapsed)
            if left <= 0 and word != "preferred_lft":
                return None
            out[i + 1] = str(max(left, 0))
    return " ".join(out)


def route_words(route: dict[str, Any], six: bool) -> str | None:
    """An entry of ``ip -j -d route show`` as the words of ``ip route replace`` (no ``dev``): proto, scope,
    metric, src, onlink, pref, the metrics (mtu, advmss, ...), expires; None for the routes the kernel keeps
    itself (an address's subnet, link-local, multicast, table local)."""
    if (route.get("protocol") in _KERNEL_PROTOCOLS or route.get("table") == "local"
            or route.get("type", "unicast") != "unicast"):
        return None
    dst = str(route.get("dst", ""))
    if dst == "default":
        dst = "::/0" if six else "0.0.0.0/0"
    if six and dst.startswith("fe80:"):
        return None
    return " ".join([dst, *_route_options(route)])


def _route_options(route: dict[str, Any]) -> list[str]:
    """The words after a route's destination in ``ip route replace`` (defaults left out: scope global, pref
    medium)."""
    words = []
    for key, word in (("gateway", "via"), ("protocol", "proto"), ("scope", "scope"), ("metric", "metric"),
                      ("prefsrc", "src"), ("pref", "pref"), ("expires", "expires")):
        if key in route and route[key] not in ("global", "medium"):
            words += [word, str(route[key])]
    for metrics in route.get("metrics", ()):
        words += [f"{k} {v}" for k, v in metrics.items() if k in _METRICS]
    return words + [f for f in route.get("flags", ()) if f == "onlink"]


def _unsafe_route(route: dict[str, Any], name: str) -> str | None:
    """Why ``route`` (an entry of ``ip -j -d route show table all``) of interface ``name`` cannot be carried to
    a bridge (None: it can, or it is not ``name``'s)."""
    hops = [h.get("dev") for h in route.get("nexthops", ())] + [route.get("nh_info", {}).get("dev")]
    dst = route.get("dst", "")
    if name in hops:
        return f"multipath or nexthop-object route {dst}"
    if route.get("dev") != name or route.get("table") == "local" or route.get("protocol") in _KERNEL_PROTOCOLS:
        return None
    if route.get("table", "main") != "main":
        return f"route {dst} in table {route['table']}"
    if route.get("type", "unicast") != "unicast":
        return f"{route['type']} route {dst}"
    odd = [k for m in route.get("metrics", ()) for k in m if k not in _METRICS]
    return f"route {dst} with {', '.join(odd)}" if odd else None


def _address(entry: dict[str, Any]) -> tuple[str, str]:
    """An entry of ``addr_info`` as ``(A/P, the words after it in ip addr add)``."""
    words = [f for f in _ADDRESS_FLAGS if entry.get(f)]
    valid, preferred = entry.get("valid_life_time", _FOREVER), entry.get("preferred_life_time", _FOREVER)
    if valid != _FOREVER:
        words += ["valid_lft", str(valid), "preferred_lft", str(preferred)]
    return f"{entry['local']}/{entry['prefixlen']}", " ".join(words)


def nic_from_json(link: dict[str, Any], routes4: list[dict[str, Any]], routes6: list[dict[str, Any]],
                  rules: Sequence[dict[str, Any]] = (), read_at: float = 0.0) -> Nic:
    """A :class:`Nic` from what ``ip -j -d addr show`` prints for one interface, ``ip -j -d -4|-6 route show
    table all`` (all of the machine's routes) and ``ip -j -4|-6 rule show``."""
    name = str(link["ifname"])
    addresses = [_address(a) for a in link.get("addr_info", ())
                 if a.get("family") in ("inet", "inet6") and a.get("scope") not in ("link", "host")]
    carried = [route_words(r, six) for six, table in ((False, routes4), (True, routes6)) for r in table
               if r.get("dev") == name and _unsafe_route(r, name) is None]
    unsafe = [u for u in (_unsafe_route(r, name) for r in (*routes4, *routes6)) if u is not None]
    unsafe += [f"policy rule {r.get('priority')} ({'iif' if r.get('iif') == name else 'oif'} {name})"
               for r in rules if name in (r.get("iif"), r.get("oif"))]
    return _nic(link, addresses, carried, unsafe, read_at)


def _nic(link: dict[str, Any], addresses: list[tuple[str, str]], routes: list[str | None], unsafe: list[str],
         read_at: float) -> Nic:
    from ..naming import LINK_GROUP, OWNER_PREFIX

    return Nic(
        name=str(link["ifname"]),
        kind=str(link.get("linkinfo", {}).get("info_kind", "")),
        up="UP" in link.get("flags", ()),
        mtu=int(link.get("mtu", 0)),
        master=str(link.get("master", "")),
        loopback="LOOPBACK" in link.get("flags", ()),
        addresses=tuple(a for a, _ in addresses),
        routes=tuple(r for r in routes if r is not None),
        mac=str(link.get("address", "")),
        nslab=str(link.get("ifalias", "")).startswith(OWNER_PREFIX) or str(link.get("group")) == str(LINK_GROUP),
        unsafe=tuple(unsafe),
        details=tuple((a, w) for a, w in addresses if w),
        read_at=read_at,
    )


def _ip() -> str:
    import shutil  # (here: the lab core imports this module for :class:`Nic`, on every ``up`` and ``down``)

    found = shutil.which("ip")
    if found is None:
        raise EnvironmentProblem("the ip command is missing (apt-get install iproute2)")
    return found


def _documents(text: str) -> list[list[dict[str, Any]]]:
    """The JSON documents ``ip -j -batch`` prints one after the other."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip()) ) < len(text):
        document, at = decoder.raw_decode(text, at)
        out.append(document)
    return out


class LiveNics:
    """The machine's interfaces through ``ip`` (see the module's docstring)."""

    def interface(self, name: str) -> Nic | None:
        """The interface ``name`` of the machine as it is now; None when there is none."""
        import subprocess
        import time

        ip = _ip()
        read_at = time.monotonic()
        shown = subprocess.run([ip, "-j", "-d", "addr", "show", "dev", name], capture_output=True, text=True)
        if shown.returncode != 0 or not shown.stdout.strip():
            return None
        (link,) = json.loads(shown.stdout)
        routes: list[list[dict[str, Any]]] = []
        rules: list[dict[str, Any]] = []
        for family in ("-4", "-6"):  # (one process each: its routes in every table, then its policy rules)
            both = subprocess.run([ip, "-j", "-d", family, "-batch", "-"], input="route show table all\nrule show\n",
                                  capture_output=True, text=True).stdout
            documents = _documents(both)
            routes.append(documents[0] if documents else [])
            rules += documents[1] if len(documents) > 1 else []
        return nic_from_json(link, routes[0], routes[1], rules, read_at)

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

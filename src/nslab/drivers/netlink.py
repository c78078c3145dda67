"""The netlink driver (:class:`NetlinkKernel`): named network namespaces, bridges, veths, addresses and routes
of labs, and the link state, hairpin and view of hosts that features and ``status`` need. The wire format is
drivers/rtnl.py's; this module decides what to ask, and where.

Replaces: ``ip netns add/del``, ``ip link add ... type veth peer ... netns``, ``ip link add type bridge``,
``ip link set ... master/alias/up/down``, ``ip addr add``, ``ip route add ... proto static``, and the read side
(``ip -j link/addr/route``) that ``status``, drift and IPAM need.

How it stays fast:
- a namespace is made without a fork: one worker thread ``unshare(CLONE_NEWNET)``s, bind-mounts
  ``/proc/thread-self/ns/net`` onto ``/run/netns/NAME``, opens a netlink socket there (a socket stays bound
  to the namespace it was opened in) and ``setns`` back — about 1 ms per namespace;
- each host's veth is created from inside its namespace with its peer placed on the machine (``IFLA_NET_NS_FD``
  in the peer info), every link in nslab's link group from that very request; all peers are enslaved to their
  bridges in one batch at the end;
- links between hosts, of any kind, are made from the description their kind gives (:meth:`NetlinkKernel.
  add_links`, rtnl.NewLink): one request per link, then one batch per end;
- interfaces inside hosts get no automatic IPv6 link-local address (:func:`_no_ipv6_autoconf`): a big lab's
  bridge otherwise floods every host's IPv6 housekeeping packets to every other host;
- ``down`` deletes bridges in a worker thread while namespaces are unpinned (:meth:`NetlinkKernel.
  remove_links_later`); ``up`` waits for veths of namespaces still being dismantled instead of deleting them
  one by one (:meth:`NetlinkKernel.clear_stale_links`).

Read-only callers use :func:`open_namespace`, which never creates anything.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from .. import linux
from ..errors import KernelError
from ..model import Host, Lab, Network, Route
from ..naming import LINK_GROUP, OWNER_PREFIX, mac_address, owner_alias
from ..paths import NETNS_DIR, netns_path
from ..values import Value
from . import rtnl
from .rtnl import (
    Batch,
    LinkInfo,
    NewLink,
    RouteInfo,
    add_address,
    add_bridge,
    add_default_route,
    add_link,
    add_veth,
    attach_port,
    configure_end,
    delete_link,
    links,
    routes,
    set_addr_gen_mode,
    set_alias,
    set_hairpin,
    set_state,
    set_up,
)


class Namespace(Value):
    """An open named namespace: its nsfs fd (for IFLA_NET_NS_FD) and a netlink socket inside it."""

    name: str
    fd: int
    sock: socket.socket

    @property
    def path(self) -> str:
        return netns_path(self.name)

    def close(self) -> None:
        self.sock.close()
        os.close(self.fd)


def ensure_netns_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so every mount namespace sees names."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    try:
        linux.mount("none", NETNS_DIR, None, linux.MS_SHARED | linux.MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise KernelError(f"cannot prepare {NETNS_DIR}: {exc.strerror}") from exc
        linux.mount(NETNS_DIR, NETNS_DIR, "none", linux.MS_BIND | linux.MS_REC)
        linux.mount("none", NETNS_DIR, None, linux.MS_SHARED | linux.MS_REC)


def create_namespaces(names: Iterable[str], dual_stack: frozenset[str] = frozenset()) -> dict[str, Namespace]:
    """Create named namespaces (all in one worker thread, no fork). All-or-nothing. In those of ``dual_stack``
    IPv6 addresses outlive an interface put down (``keep_addr_on_down``: ``nslab link ... up`` finds them)."""
    names = list(names)
    ensure_netns_dir()

    def work() -> dict[str, Namespace]:
        made: dict[str, Namespace] = {}
        home = linux.own_namespace()
        sysctls = SysctlRoot()
        try:
            for name in names:
                path = netns_path(name)
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
                except FileExistsError:
                    raise KernelError(f"namespace {name} already exists (not made by this lab)") from None
                try:
                    with linux.Visit(None, home=home):  # a new namespace, named by the bind mount
                        made[name] = _made_here(name, path, sysctls.fd(), name in dual_stack)
                except OSError as exc:
                    _remove_namespace_file(path)
                    raise KernelError(f"cannot create namespace {name}: {exc.strerror}") from exc
        except BaseException:
            for ns in made.values():
                ns.close()
                _remove_namespace_file(ns.path)
            raise
        finally:
            os.close(home)
            sysctls.close()
        return made

    return linux.in_thread(work, "nslab-netns")


class SysctlRoot:
    """``/proc/sys`` of a procfs instance of our own, renewed every :data:`SYSCTL_ROOT_USES` namespaces.

    Why: the kernel's dentry cache keeps one ``/proc/sys/net`` entry per network namespace that looked there,
    all in one hash chain under the same ``/proc/sys``, and every lookup of ``/proc/sys/net/...`` walks that
    chain (``proc_sys_compare``). A lab whose every new namespace writes a sysctl through ``/proc`` paid for
    the square of its hosts: 12-25 % of the CPU of an ``up`` of 3,000 hosts (perf), ~5 % at 1,000. A procfs
    instance mounted nowhere (:func:`nslab.linux.detached_mount`) has dentries of its own, gone with it: every
    chain stays short. Where the kernel cannot make one (before 5.2, no privilege), :meth:`fd` is None and
    the writes go through ``/proc/sys`` itself.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self._uses = 0
        self._available = True

    def fd(self) -> int | None:
        """A directory fd of ``/proc/sys`` for the next namespace's writes, or None: use the absolute path."""
        if self._uses >= SYSCTL_ROOT_USES:
            self.close()
        if self._fd is None and self._available:
            try:
                proc = linux.detached_mount("proc")
            except OSError:
                self._available = False
                return None
            try:
                self._fd = os.open("sys", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
            finally:
                os.close(proc)  # the directory fd keeps the mount alive
        self._uses += 1
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._uses = None, 0


#: Namespaces whose sysctls go through one procfs instance (the longest dentry chain it gets).
SYSCTL_ROOT_USES = 64


def _new_namespace_defaults(sysctl_root: int | None, dual: bool) -> None:
    """In the calling thread's new namespace: no automatic IPv6 link-local addresses; on a dual-stack host,
    addresses kept when an interface goes down and no DAD delay (IPAM made addresses unique; link-local usable
    at once). ``sysctl_root``: a directory fd of ``/proc/sys`` (:class:`SysctlRoot`), or None."""
    _no_ipv6_autoconf(sysctl_root)
    if dual:
        _write_proc(KEEP_ADDR_ON_DOWN, b"1", sysctl_root)
        _write_proc(NO_DAD, b"0", sysctl_root)


#: Set in a dual-stack host's new namespace: the kernel otherwise drops an interface's IPv6 addresses (and the
#: routes through them) when it goes down, and ``up`` does not bring them back. (Paths under ``/proc/sys``.)
KEEP_ADDR_ON_DOWN = "net/ipv6/conf/default/keep_addr_on_down"
NO_DAD = "net/ipv6/conf/default/accept_dad"
ADDR_GEN_MODE = "net/ipv6/conf/default/addr_gen_mode"


def _write_proc(path: str, value: bytes, sysctl_root: int | None = None) -> None:
    """Write the sysctl file ``path`` (under ``/proc/sys``, or under the directory fd ``sysctl_root``) of the
    calling thread's namespace; nothing to do where the kernel lacks it."""
    try:
        if sysctl_root is None:
            fd = os.open(f"/proc/sys/{path}", os.O_WRONLY)
        else:
            fd = os.open(path, os.O_WRONLY, dir_fd=sysctl_root)
    except OSError:  # IPv6 disabled on this kernel: nothing to set
        return
    try:
        os.write(fd, value)
    except OSError:
        pass
    finally:
        os.close(fd)


def _no_ipv6_autoconf(sysctl_root: int | None = None) -> None:
    """In the calling thread's (new) namespace: interfaces made from now on get no automatic IPv6 link-local
    address (``addr_gen_mode`` 1 = none; IPv6 itself stays on, addresses can be added by hand).

    Lab hosts are IPv4. With link-local addresses every host's DAD, router solicitation and MLD packets were
    flooded by the bridge to every other host: O(N^2) packets that kept both CPUs busy for seconds after the
    ``up`` of a big lab (``down`` of 1000 hosts 1.05 s -> 0.43 s, ``up`` 2.1 s -> 1.6 s, measured). ``lo``
    keeps ``::1``. ``sysctl_root``: as :func:`_write_proc`.
    """
    _write_proc(ADDR_GEN_MODE, b"1", sysctl_root)


def _made_here(name: str, path: str, sysctl_root: int | None, dual_stack: bool) -> Namespace:
    """In the new namespace the calling thread is in: set it up (its sysctls through ``sysctl_root``:
    :class:`SysctlRoot`), name it (bind mount at ``path``), open it."""
    _new_namespace_defaults(sysctl_root, dual=dual_stack)
    linux.mount("/proc/thread-self/ns/net", path, "none", linux.MS_BIND)
    fd = os.open(path, os.O_RDONLY)
    try:
        return Namespace(name, fd, rtnl.open_socket())
    except OSError:
        os.close(fd)
        raise


#: The machine's own network namespace, for :func:`open_namespace` (read from this process's main thread).
MACHINE_NET = "/proc/self/ns/net"


def open_namespace(name_or_path: str) -> Namespace:
    """Open an existing namespace (a name under /run/netns or any nsfs path). Never creates one."""
    path = name_or_path if "/" in name_or_path else netns_path(name_or_path)

    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return Namespace(os.path.basename(path), fd, linux.in_namespace(fd, rtnl.open_socket, name="nslab-netns"))
        except OSError:
            os.close(fd)
            raise
    except OSError as exc:
        raise KernelError(f"cannot open namespace {path}: {exc.strerror}") from exc


def root_socket() -> socket.socket:
    """A netlink socket in the caller's (the machine's) namespace."""
    return rtnl.open_socket()


def _remove_namespace_file(path: str) -> None:
    try:
        linux.umount(path)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def delete_namespace(name: str) -> bool:
    """`ip netns del`: drop the name; the kernel frees the namespace (and its veths) when unused.

    Returns False when there was no such name.
    """
    path = netns_path(name)
    try:
        linux.umount(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        if exc.errno != errno.EINVAL:  # EINVAL: not mounted (a half-made name); the file still goes
            raise KernelError(f"cannot unmount {path}: {exc.strerror}") from exc
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KernelError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


def list_named_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------------
# The operations apply.py needs (drivers/fake.py has the same surface for unit tests)
# ---------------------------------------------------------------------------------------------------

#: Below this MTU an interface has no IPv6 (RFC 8200), and the kernel refuses IPv6 settings for it.
IPV6_MIN_MTU = 1280
#: How long ``link ... up`` waits for the carrier of the ends it brought up (seconds).
CARRIER_WAIT = 2.0
#: Hosts made at once: bounds the open fds (one nsfs fd + one socket per namespace).
HOST_CHUNK = 256
#: How long ``up`` waits for the kernel to dismantle the veths of namespaces just unpinned (seconds): in all,
#: and without any of them disappearing.
STALE_WAIT = 10.0
STALE_STALL = 1.0


def port_index(position: int) -> int:
    """The ifindex a host's n-th bridge port gets inside its fresh namespace (lo is 1): no lookup needed."""
    return 10 + position


class _Observing:
    def __init__(self, kernel: NetlinkKernel) -> None:
        self.kernel = kernel
        self.outer = True

    def __enter__(self) -> None:
        self.outer = not self.kernel._observing
        self.kernel._observing = True

    def __exit__(self, *exc: object) -> None:
        if self.outer:
            self.kernel._observing = False
            self.kernel._links = self.kernel._bare = self.kernel._routes = None


def _ports_batch(lab: Lab, hosts: list[Host]) -> Batch:
    """Every host's machine-side veth end enslaved to its bridge, with its ownership mark: one batch."""
    ports = Batch()
    bridge_index: dict[str, int] = {}
    ipv6 = os.path.exists("/proc/net/if_inet6")  # the kernel has IPv6 (in the machine's namespace)
    for h in hosts:
        for port in h.interfaces:
            if port.network is None or port.host_veth is None:
                continue
            bridge = lab.networks[port.network].bridge
            if bridge not in bridge_index:
                bridge_index[bridge] = socket.if_nametoindex(bridge)
            attach_port(ports, port.host_veth, bridge_index[bridge], owner_alias(lab.name, "host", h.name, port.name),
                        no_link_local=ipv6 and (port.mtu or 1500) >= IPV6_MIN_MTU)
    return ports


class NetlinkKernel:
    """Lab-level operations, each batched; each either completes or raises/reports what failed."""

    def __init__(self) -> None:
        self._root: socket.socket | None = None
        self._observing = False  # while True, the machine's links and routes are kept once read
        self._links: list[LinkInfo] | None = None  # with their addresses
        self._bare: list[LinkInfo] | None = None  # without (down needs no addresses: 300 fewer to parse)
        self._routes: list[RouteInfo] | None = None

    @property
    def root(self) -> socket.socket:
        if self._root is None:
            self._root = root_socket()
        return self._root

    def close(self) -> None:
        if self._root is not None:
            self._root.close()
            self._root = None

    # -- observation ----------------------------------------------------------------------------
    def observing(self) -> _Observing:
        """``with kernel.observing():`` the machine's links (with addresses) and routes are dumped once for
        everything inside, instead of once per question: a plan asks from five places (the lab's networks
        against the machine's, published addresses, drift, name clashes, what is ours), and nothing changes
        the machine while a plan is made. A 300-host lab has 300 links on the machine: ~10 ms a dump."""
        return _Observing(self)

    def _root_links(self, with_addresses: bool = True) -> list[LinkInfo]:
        if not self._observing:
            return links(self.root, with_addresses=with_addresses)
        if self._links is not None:
            return self._links
        if with_addresses:
            self._links = links(self.root)
            return self._links
        if self._bare is None:
            self._bare = links(self.root, with_addresses=False)
        return self._bare

    def _root_routes(self) -> list[RouteInfo]:
        if not self._observing:
            return routes(self.root)
        if self._routes is None:
            self._routes = routes(self.root, self._root_links(with_addresses=False))
        return self._routes

    def owned_links(self) -> list[LinkInfo]:
        """nslab's links on the machine: marked by alias, or (alias not set yet) by link group."""
        found = self._root_links(with_addresses=False)
        return [lk for lk in found if lk.alias.startswith(OWNER_PREFIX) or lk.group == LINK_GROUP]

    def machine_links(self) -> list[LinkInfo]:
        return self._root_links(with_addresses=False)

    def machine_addresses(self) -> frozenset[ipaddress.IPv4Address] | None:
        """The machine's IPv4 addresses (None if they cannot be read)."""
        try:
            return frozenset(a.ip for lk in self._root_links() for a in lk.addresses
                             if isinstance(a, ipaddress.IPv4Interface))
        except (OSError, KernelError):
            return None

    def host_view(self, namespace: str) -> tuple[list[LinkInfo], list[RouteInfo]] | None:
        """Links (with addresses) and IPv4 routes inside a named namespace; None if it does not exist."""
        try:
            ns = open_namespace(namespace)
        except KernelError:
            return None
        try:
            found = links(ns.sock)
            return found, _routes_of(ns.sock, found)
        finally:
            ns.close()

    def host_views(self, namespaces: list[str]) -> dict[str, tuple[list[LinkInfo], list[RouteInfo]] | None]:
        """:meth:`host_view` of many namespaces: one thread opens a netlink socket in each (no thread per
        namespace), the dumps follow from here (drift checks every host of a lab on each ``up``)."""

        def work() -> dict[str, socket.socket]:
            socks: dict[str, socket.socket] = {}
            home = linux.own_namespace()
            try:
                for name in namespaces:
                    try:
                        fd = os.open(netns_path(name), os.O_RDONLY)
                    except OSError:
                        continue  # no such namespace: None below
                    try:
                        with linux.Visit(fd, home=home):
                            socks[name] = rtnl.open_socket()
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise  # EINVAL: a name being made or removed right now (no namespace on it): None
                    finally:
                        os.close(fd)
            except BaseException:
                for sock in socks.values():
                    sock.close()
                raise
            finally:
                os.close(home)
            return socks

        socks = linux.in_thread(work, "nslab-netns")
        views: dict[str, tuple[list[LinkInfo], list[RouteInfo]] | None] = {}
        try:
            for name in namespaces:
                sock = socks.get(name)
                found = links(sock) if sock is not None else None
                views[name] = (found, _routes_of(sock, found)) if sock is not None and found is not None else None
        finally:
            for sock in socks.values():
                sock.close()
        return views

    def read_host_sysctls(self, wanted: Mapping[str, list[str]]) -> dict[str, dict[str, str | None]]:
        """The values of ``wanted`` keys inside each named namespace (None: unreadable; a namespace that does
        not exist is left out): one worker thread enters each namespace in turn (``/proc/sys`` shows the reading
        thread's), no fork. Drift compares them with the hosts' ``sysctls:``."""

        def work() -> dict[str, dict[str, str | None]]:
            from . import sysctl

            found: dict[str, dict[str, str | None]] = {}
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                for name, keys in wanted.items():
                    try:
                        fd = os.open(netns_path(name), os.O_RDONLY)
                    except OSError:
                        continue
                    try:
                        linux.setns(fd, linux.CLONE_NEWNET)
                        found[name] = {key: _read_or_none(sysctl.read, key) for key in keys}
                    finally:
                        os.close(fd)
                        linux.setns(home, linux.CLONE_NEWNET)
            finally:
                os.close(home)
            return found

        return linux.in_thread(work, "nslab-sysctl") if wanted else {}

    def set_hairpin(self, on: list[str], off: list[str]) -> list[str]:
        """Bridge ports to put in (``on``) or out of (``off``) hairpin mode; a port that went with its host
        is no failure."""
        if not on and not off:
            return []
        batch = Batch()
        for name in on:
            set_hairpin(batch, name, True)
        for name in off:
            set_hairpin(batch, name, False)
        return batch.commit(self.root, tolerate=(errno.ENODEV,))

    def default_gateway(self) -> ipaddress.IPv4Address | None:
        """The next hop of the machine's default route (its uplink gateway), if it has one."""
        for route in self._root_routes():
            if route.destination.prefixlen == 0 and route.gateway:
                return ipaddress.IPv4Address(route.gateway)
        return None

    def default_gateway6(self) -> ipaddress.IPv6Address | None:
        """The next hop of the machine's IPv6 default route, if it has one (a link-local one too)."""
        for route in routes(self.root, family=socket.AF_INET6):
            if route.destination.prefixlen == 0 and route.gateway:
                return ipaddress.IPv6Address(route.gateway)
        return None

    def set_link_state(self, ends: list[tuple[str, str]], up: bool) -> list[str]:
        """``ip [-n NS] link set IF up|down`` for each (namespace, interface); namespace '' is the machine.
        Going up, returns once every end has its carrier (at most :data:`CARRIER_WAIT` s): a probe sent right
        after ``nslab link ... up`` then finds the link carrying traffic."""
        failures = self._in_namespaces(ends, lambda batch, name, what: set_state(batch, name, up, what))
        if up and not failures:
            self._wait_for_carrier(ends)
        return failures

    def _wait_for_carrier(self, ends: list[tuple[str, str]]) -> None:
        by_ns: dict[str, set[str]] = {}
        for namespace, name in ends:
            by_ns.setdefault(namespace, set()).add(name)
        deadline = time.monotonic() + CARRIER_WAIT
        for namespace, names in by_ns.items():
            try:
                ns = open_namespace(namespace) if namespace else None
            except KernelError:
                continue
            try:
                sock = ns.sock if ns else self.root
                while time.monotonic() < deadline:
                    found = {lk.name: lk for lk in links(sock, with_addresses=False) if lk.name in names}
                    if all(lk.up and lk.carrier for lk in found.values()):
                        break
                    time.sleep(0.005)
            finally:
                if ns is not None:
                    ns.close()

    def set_default_routes(self, items: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]]) -> list[str]:
        """``ip -n NS route replace default via GW proto static`` for each (namespace, gateway), either family."""
        return self._in_namespaces(
            [(ns, str(gw)) for ns, gw in items],
            lambda batch, gw, what: add_default_route(batch, ipaddress.ip_address(gw), what),
        )

    def _in_namespaces(self, items: list[tuple[str, str]], pack: Callable[[Batch, str, str], None]) -> list[str]:
        """One batch per namespace ('' = the machine); a namespace that cannot be opened is a failure."""
        by_ns: dict[str, list[str]] = {}
        for namespace, item in items:
            by_ns.setdefault(namespace, []).append(item)
        failures: list[str] = []
        for namespace, names in by_ns.items():
            try:
                ns = open_namespace(namespace) if namespace else None
            except KernelError as exc:
                failures.append(str(exc))
                continue
            try:
                batch = Batch()
                for name in names:
                    pack(batch, name, f"{name} in {namespace}" if namespace else name)
                failures += batch.commit(ns.sock if ns else self.root)
            finally:
                if ns is not None:
                    ns.close()
        return failures

    def named_namespaces(self) -> frozenset[str]:
        return frozenset(list_named_namespaces())

    def machine_networks(self) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
        """Routes and addresses (IPv4 and IPv6) of the machine that are not nslab's own, as (network, who).
        IPv6 link-local, multicast and loopback ranges are left out: every interface has them, no lab uses them."""
        all_links = self._root_links()
        ours = {lk.name for lk in all_links if lk.alias.startswith(OWNER_PREFIX)}
        out: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for route in self._root_routes() + routes(self.root, all_links, socket.AF_INET6):
            dest: ipaddress.IPv4Network | ipaddress.IPv6Network = route.destination
            if dest.prefixlen == 0 or route.device in ours or _everywhere(dest):
                continue
            out.append((dest, f"route on {route.device or 'the machine'}"))
        for lk in all_links:
            if lk.name in ours:
                continue
            for addr in lk.addresses:
                if not addr.ip.is_loopback and not _everywhere(addr.network):
                    out.append((addr.network, f"address {addr} on {lk.name}"))
        return out

    # -- networks -------------------------------------------------------------------------------
    def add_bridges(self, lab: Lab, networks: list[Network]) -> None:
        batch = Batch()
        for n in networks:
            add_bridge(batch, n.bridge, lab.bridge_mac(n), group=LINK_GROUP)
        batch.commit_or_raise(self.root)
        for n in networks:
            index = socket.if_nametoindex(n.bridge)
            set_alias(batch, index, owner_alias(lab.name, "net", n.name))  # ignored at creation: set it now
            refuse_router_advertisements(n.bridge)
            if not lab.builds_gateway(n):
                continue  # (across machines, off its home: pure L2)
            if n.external is None:  # (a borrowed interface's addresses come instead: features/external.py)
                add_address(batch, index, n.gateway, n.bridge)
            if n.gateway6 is not None:
                add_address(batch, index, n.gateway6, n.bridge)
        batch.commit_or_raise(self.root)

    def remove_links(self, names: list[str]) -> list[str]:
        batch = Batch()
        for name in names:
            delete_link(batch, name)
        return batch.commit(self.root, tolerate=(errno.ENODEV,))

    def remove_links_later(self, names: list[str]) -> Callable[[], list[str]]:
        """Start removing machine links in a worker thread (its own socket); the returned function waits
        and gives the failures. Deleting a bridge detaches its ports one by one in the kernel (~0.25 ms each,
        the GIL released meanwhile), so the caller does other work in the time."""
        result: list[str] = []

        def work() -> None:
            try:
                sock = root_socket()
                try:
                    batch = Batch()
                    for name in names:
                        delete_link(batch, name)
                    result.extend(batch.commit(sock, tolerate=(errno.ENODEV,)))
                finally:
                    sock.close()
            except OSError as exc:
                result.append(f"deleting {', '.join(names)}: {exc.strerror or exc}")
            except Exception as exc:  # reported by wait(), never lost with the thread
                result.append(f"deleting {', '.join(names)}: {exc}")

        worker = threading.Thread(target=work, name="nslab-dellink")
        worker.start()

        def wait() -> list[str]:
            worker.join()
            return result

        return wait

    def clear_stale_links(self, names: list[str], wait: float = STALE_WAIT, stall: float = STALE_STALL) -> list[str]:
        """Wait for machine links of dying namespaces to disappear, then delete what is left.

        Waiting beats deleting: the kernel dismantles all dying namespaces in one batch, while deleting a veth
        pair on its own costs ~20 ms (measured). The wait ends when nothing has disappeared for ``stall``
        seconds (a process keeps that namespace alive) or after ``wait`` seconds in all.
        """
        left = set(names)
        start = progress = time.monotonic()
        remaining = len(left)
        while True:
            left = {name for name in left if _link_exists(name)}  # (an ioctl each: no dump to parse meanwhile)
            now = time.monotonic()
            if len(left) < remaining:
                remaining, progress = len(left), now
            if not left or now - progress >= stall or now - start >= wait:
                break
            time.sleep(0.01)
        return self.remove_links(sorted(left)) if left else []

    # -- hosts ----------------------------------------------------------------------------------
    def add_hosts(self, lab: Lab, hosts: list[Host]) -> None:
        """Create each host's namespace, veths to its bridges, addresses and default route.

        Each veth is created from inside its host's namespace with a chosen ifindex (so the address, up and
        route requests follow in the same batch, no lookup) and its peer placed in the machine's namespace.
        All peers are enslaved to their bridges at the very end, in one batch: attaching ports between
        creations made a 1000-host lab ~2x slower (measured). All-or-nothing.
        """
        made: list[str] = []
        machine_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            for start in range(0, len(hosts), HOST_CHUNK):  # bounds the open fds, not the batching
                chunk = hosts[start : start + HOST_CHUNK]
                dual = frozenset(h.namespace for h in chunk if any(i.address6 for i in h.interfaces))
                opened = create_namespaces((h.namespace for h in chunk if h.container is None), dual)
                made += opened
                try:
                    opened.update(_container_namespaces(chunk))
                    for h in chunk:
                        inside = _host_batch(lab, h, machine_ns)
                        inside.commit_or_raise(opened[h.namespace].sock)
                finally:
                    for ns in opened.values():
                        ns.close()
            _ports_batch(lab, hosts).commit_or_raise(self.root)
        except BaseException:
            for name in made:
                delete_namespace(name)
            raise
        finally:
            os.close(machine_ns)

    def configure_host(self, namespace: str, routes: list[Route], sysctls: list[tuple[str, str]]) -> list[str]:
        """Write ``sysctls`` inside the host's namespace (their former values are returned, in order), then add
        ``routes``. Replaces ``ip netns exec NS sysctl -qw KEY=VALUE`` and ``ip -n NS route add TO via VIA``."""
        ns = open_namespace(namespace)
        try:
            former = _write_sysctls_in(ns, sysctls) if sysctls else []
            batch = Batch()
            for route in routes:
                rtnl.add_route(batch, route.to, route.via, namespace)
            batch.commit_or_raise(ns.sock)
            return former
        finally:
            ns.close()

    def unconfigure_host(self, namespace: str, routes: list[Route], sysctls: list[tuple[str, str]]) -> list[str]:
        """The inverse of :meth:`configure_host`: routes deleted, sysctls written back; failures listed."""
        if not os.path.exists(netns_path(namespace)):
            return []  # gone with its namespace
        ns = open_namespace(namespace)
        try:
            batch = Batch()
            for route in routes:
                rtnl.delete_route(batch, route.to, route.via, namespace)
            failures = batch.commit(ns.sock, tolerate=(errno.ESRCH,))
            try:
                _write_sysctls_in(ns, list(reversed(sysctls)))
            except KernelError as exc:
                failures.append(str(exc))
            return failures
        finally:
            ns.close()

    def remove_namespaces(self, names: list[str]) -> list[str]:
        failures: list[str] = []
        for name in names:
            try:
                delete_namespace(name)
            except KernelError as exc:
                failures.append(str(exc))
        return failures

    # -- links between hosts --------------------------------------------------------------------
    def add_links(self, items: list[NewLink]) -> None:
        """Links of any kind, as their kinds describe them (core/kinds/): each made by one request, from inside
        its end's namespace (or where ``made_in`` says, then moved into it), its peer (if any) inside the
        peer's; then each end's alias, addresses, up and routes, in one batch per end. Every namespace involved
        is opened once ("" is the machine's)."""
        opened: dict[str, Namespace] = {}
        try:
            for item in items:
                for name in (item.made_in, item.end.namespace, item.peer.namespace if item.peer else None):
                    if name is not None and name not in opened:
                        opened[name] = open_namespace(name or MACHINE_NET)
            for item in items:
                _create(opened, item)
                for end in (item.end, item.peer):
                    if end is not None:
                        batch = Batch()
                        ns = opened[end.namespace]
                        configure_end(batch, _index_in(ns, end.name), end)
                        batch.commit_or_raise(ns.sock)
        finally:
            for opened_ns in opened.values():
                opened_ns.close()

    def remove_link_ends(self, ends: list[tuple[str, str]]) -> list[str]:
        failures = []
        for namespace, ifname in ends:
            if not os.path.exists(netns_path(namespace)):
                continue  # the namespace is gone, and its links with it
            ns = open_namespace(namespace)
            try:
                batch = Batch()
                delete_link(batch, ifname)
                failures += batch.commit(ns.sock, tolerate=(errno.ENODEV,))
            finally:
                ns.close()
        return failures

    # -- another namespace on a lab network (nslab connect) ----------------------------------------------
    def links_at(self, net_path: str) -> list[LinkInfo]:
        """The links inside the namespace at ``net_path`` (any nsfs file), without addresses. Creates nothing."""
        ns = open_namespace(net_path)
        try:
            return links(ns.sock, with_addresses=False)
        finally:
            ns.close()

    def add_veth_at(self, net_path: str, ifname: str, index: int, mac: str, address: ipaddress.IPv4Interface,
                    veth: str) -> None:
        """A veth made from inside the namespace at ``net_path``: ``ifname`` there (ifindex ``index``, ``mac``,
        ``address``, up), its peer ``veth`` on the machine, both in nslab's link group. All or nothing: when the
        address or the up fails, the veth goes again."""
        ns = open_namespace(net_path)
        machine = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            made = Batch()
            add_veth(made, ifname, veth, machine, index=index, mac=mac, group=LINK_GROUP)
            made.commit_or_raise(ns.sock)
            batch = Batch()
            add_address(batch, index, address, f"{ifname} in {net_path}")
            set_up(batch, index, f"{ifname} in {net_path}")
            try:
                batch.commit_or_raise(ns.sock)
            except KernelError:
                gone = Batch()
                delete_link(gone, ifname)
                gone.commit(ns.sock)
                raise
        finally:
            os.close(machine)
            ns.close()

    def add_fdb(self, entries: list[tuple[str, str, str]]) -> None:
        """Forwarding entries (device, MAC, destination) of VXLAN devices on the machine, in one batch:
        ``bridge fdb append 00:00:00:00:00:00 dev DEV dst D`` for the all-zero MAC, else ``bridge fdb replace MAC
        dev DEV dst D self``."""
        batch = Batch()
        for device, mac, dst in entries:
            rtnl.add_fdb(batch, socket.if_nametoindex(device), mac, ipaddress.ip_address(dst),
                         append=mac == "00:00:00:00:00:00")
        batch.commit_or_raise(self.root, tolerate=(errno.EEXIST,))

    def del_fdb(self, entries: list[tuple[str, str, str]]) -> None:
        """Forwarding entries (device, MAC, destination) of VXLAN devices removed, in one batch (one already gone
        is fine)."""
        batch = Batch()
        for device, mac, dst in entries:
            rtnl.del_fdb(batch, socket.if_nametoindex(device), mac, ipaddress.ip_address(dst))
        batch.commit_or_raise(self.root, tolerate=(errno.ENOENT,))

    def mtu_of_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
        """The MTU of the machine's interface holding ``address`` (None: no interface has it)."""
        return next((lk.mtu for lk in self._root_links() if any(a.ip == address for a in lk.addresses)), None)

    def fdb_entries(self, devices: list[str]) -> list[tuple[str, str, str]]:
        """The forwarding entries with a destination of the machine's ``devices`` (``bridge fdb show dev``)."""
        names = {lk.index: lk.name for lk in self._root_links(with_addresses=False) if lk.name in devices}
        return [(names[i], mac, dst) for i, mac, dst in rtnl.fdb(self.root, frozenset(names))]

    def attach_to_bridge(self, name: str, bridge: str, alias: str) -> None:
        """``ip link set NAME master BRIDGE alias ALIAS up``."""
        try:
            master = socket.if_nametoindex(bridge)
        except OSError:
            raise KernelError(f"attach {name}: no bridge {bridge}") from None
        batch = Batch()
        attach_port(batch, name, master, alias)
        batch.commit_or_raise(self.root)


def _link_exists(name: str) -> bool:
    with contextlib.suppress(OSError):
        return socket.if_nametoindex(name) > 0
    return False


def _container_namespaces(hosts: list[Host]) -> dict[str, Namespace]:
    """A container host's namespace exists: named by its start (features/containers.py); opened, not made.
    It gets the defaults a light host's namespace is made with (create_namespaces), before its interfaces:
    no automatic IPv6 link-local address, and on a dual-stack host IPv6 on, addresses kept when an interface
    goes down and no DAD delay."""
    opened: dict[str, Namespace] = {}
    try:
        for h in hosts:
            if h.container is not None:
                ns = opened[h.namespace] = open_namespace(h.namespace)
                defaults = [("net.ipv6.conf.default.addr_gen_mode", "1")]
                if any(i.address6 for i in h.interfaces):  # (Docker turns IPv6 off in a --network none container)
                    defaults += [("net.ipv6.conf.all.disable_ipv6", "0"), ("net.ipv6.conf.default.disable_ipv6", "0"),
                                 ("net.ipv6.conf.default.keep_addr_on_down", "1"),
                                 ("net.ipv6.conf.default.accept_dad", "0")]
                try:
                    _write_sysctls_in(ns, defaults)
                except (OSError, KernelError):
                    pass  # a kernel without IPv6: nothing to set (as create_namespaces)
    except BaseException:
        for ns in opened.values():
            ns.close()
        raise
    return opened

def _host_batch(lab: Lab, h: Host, machine_ns: int) -> Batch:
    """Inside a new host: lo up, each veth to a bridge (with its addresses, up), the default routes."""
    inside = Batch()
    set_up(inside, 1, f"lo in {h.namespace}")
    for pos, port in enumerate(i for i in h.interfaces if i.network):
        assert port.host_veth is not None  # every bridge port has one (resolve.py)
        what = f"{port.name} in {h.namespace}"
        add_veth(inside, port.name, port.host_veth, machine_ns, index=port_index(pos), mtu=port.mtu,
                 mac=port.mac or mac_address(lab.name, "host", h.name, port.name),
                 group=LINK_GROUP)  # a MAC in the lab file wins over the derived one
        add_address(inside, port_index(pos), port.address, what)
        if port.address6 is not None:  # IPv6 on: a link-local address too (it comes with up)
            set_addr_gen_mode(inside, port_index(pos), rtnl.IN6_ADDR_GEN_MODE_EUI64, what)
            add_address(inside, port_index(pos), port.address6, what)
        set_up(inside, port_index(pos), what)
    for gateway in (h.gateway, h.gateway6):
        if gateway is not None:
            add_default_route(inside, gateway, h.namespace)
    return inside


def _routes_of(sock: socket.socket, found: list[LinkInfo]) -> list[RouteInfo]:
    """A host's IPv4 routes, then its IPv6 ones where it has a global IPv6 address (a dual-stack host; the
    others are spared the second dump)."""
    out = routes(sock, found)
    if any(a.version == 6 and not a.ip.is_link_local and not a.ip.is_loopback for lk in found for a in lk.addresses):
        out += routes(sock, found, socket.AF_INET6)
    return out


def refuse_router_advertisements(bridge: str) -> None:
    """``net.ipv6.conf.BRIDGE.accept_ra=0``: a router advertisement sent by a lab host (a radvd in a service)
    must not give the machine a route into the lab. Nothing to do where the kernel has no IPv6."""
    try:
        fd = os.open(f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra", os.O_WRONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"cannot set net.ipv6.conf.{bridge}.accept_ra=0: {exc.strerror}") from exc
    try:
        os.write(fd, b"0")
    except OSError as exc:
        raise KernelError(f"cannot set net.ipv6.conf.{bridge}.accept_ra=0: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _everywhere(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return net.version == 6 and (net.is_link_local or net.is_multicast or net.is_loopback)


def _write_sysctls_in(ns: Namespace, sysctls: list[tuple[str, str]]) -> list[str]:
    """Write each sysctl inside ``ns`` (from a short-lived thread); the former values, in order."""
    from . import sysctl

    def work() -> list[str]:
        former = []
        for key, value in sysctls:
            former.append(sysctl.read(key))
            sysctl.write(key, value)
        return former

    return linux.in_namespace(ns.fd, work, name="nslab-sysctl")


def _read_or_none(read: Callable[[str], str], key: str) -> str | None:
    try:
        return read(key)
    except KernelError:
        return None


def _create(opened: dict[str, Namespace], item: NewLink) -> None:
    """The request making ``item`` (rtnl.add_link), sent where it is made."""
    made_in = item.end.namespace if item.made_in is None else item.made_in
    where = opened[made_in]
    batch = Batch()
    add_link(batch, item, opened[item.peer.namespace].fd if item.peer is not None else -1,
             opened[item.end.namespace].fd if made_in != item.end.namespace else -1,
             _index_in(where, item.lower) if item.lower else 0)
    batch.commit_or_raise(where.sock)


def _index_in(ns: Namespace, ifname: str) -> int:
    for link in links(ns.sock, with_addresses=False):
        if link.name == ifname:
            return link.index
    raise KernelError(f"{ifname} not found in {ns.name}")

"""The resolved domain model: frozen, fully concrete hosts, networks and links, and what each feature asks
of them (services, DNS, published ports, impairments, partitions).

Pure data and pure functions (stdlib only), shared by resolve (which builds it: each feature resolves its own
part of the lab file, see core/features), plan, apply, state (which stores it as JSON) and the drivers. After
resolve nothing reads the lab file: everything a feature plans from is here. Importing this is cheap, which
keeps ``nslab exec`` fast.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from .naming import (
    OWNER_PREFIX,
    blake2s,
    bridge_name,
    host_veth_name,
    mac_address,
    namespace_name,
    owner_alias,
    short_hash,
)
from .values import Value, field

__all__ = [  # the naming rules are re-exported: resolve and the drivers take them from the model
    "OWNER_PREFIX", "blake2s", "bridge_name", "host_veth_name", "namespace_name", "owner_alias", "short_hash",
]

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address
IPv6Net = ipaddress.IPv6Network
IPv6Addr = ipaddress.IPv6Address


class Occupied(Value):
    """An IPv4 or IPv6 range already in use on the machine, and who uses it (for the error message)."""

    network: IPv4Net | IPv6Net
    owner: str


class Machine(Value):
    """One machine of a lab across machines (``machines:``): its underlay address (where the others send its
    VXLAN traffic), and what picks it under an engine (a node name, node labels)."""

    name: str
    address: IPv4Addr | IPv6Addr
    node: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


class Network(Value):
    name: str
    bridge: str
    subnet: IPv4Net
    gateway: ipaddress.IPv4Interface
    internal: bool
    subnet6: IPv6Net | None = None  # a dual-stack network's IPv6 subnet; the bridge holds gateway6
    gateway6: ipaddress.IPv6Interface | None = None
    nat6: bool = True  # IPv6 egress masqueraded (else routed)
    #: the machine's interface made a port of the bridge while the lab is up (features/external.py): the bridge then
    #: holds that interface's addresses, not ``gateway`` (the LAN's router, kept from the hosts' IPAM)
    external: str | None = None
    # A lab across machines (core/overlay.py): the machine holding the gateway address, NAT and published ports,
    # the machines with a bridge of it (members or home, in ``machines:`` order), its VXLAN network identifier
    # when it spans more than one.
    home: str | None = None
    machines: tuple[str, ...] = ()
    vni: int | None = None

    def spans(self) -> bool:
        return len(self.machines) > 1


class Interface(Value):
    """An interface inside a host: on a network (veth to the bridge) or one end of a link."""

    name: str
    address: ipaddress.IPv4Interface
    network: str | None = None  # set for bridge attachments
    host_veth: str | None = None  # the machine-side end, for bridge attachments
    link: int | None = None  # index into Lab.links, for point-to-point ends
    mtu: int | None = None  # set on both ends of its veth; None: the kernel's default (1500)
    mac: str | None = None  # the interface's MAC address (lower case); None: a random one
    address6: ipaddress.IPv6Interface | None = None  # on a dual-stack network


class Route(Value):
    """A static route inside a host: ``ip route add TO via VIA proto static`` (IPv4, or IPv6 on dual-stack
    networks; both ends of one family)."""

    to: IPv4Net | IPv6Net
    via: IPv4Addr | IPv6Addr


#: The kernel's capabilities, numbered as in linux/capability.h (the index is the number); lab files and
#: ``nslab run`` name them as compose does (``NET_ADMIN``, with or without ``CAP_``).
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
)


class Containment(Value):
    """What confines the processes a host runs (``user:``, ``cap_drop:``, ``read_only:``, ``pid:``..., see
    core/features/contain.py): for a light host's services, applied by the supervisor; for a container host,
    Docker's options. Empty (the default): root with every capability in the machine's filesystem and PIDs.
    ``user`` is kept as written; ``uid``.. are what the machine's passwd/group said at resolve (light hosts)."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    home: str | None = None
    cap_drop: tuple[str, ...] = ()  # lower-case names without ``cap_``, or "all"
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool | None = None  # None: yes when ``user`` is set
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()  # fresh tmpfs mounts; with read_only and none written: /tmp and /run
    writable: tuple[str, ...] = ()  # kept read-write under read_only
    private_tmp: bool = False  # /tmp: a directory of the host's own, gone with ``down``
    pid: str = "host"  # "private": the host's services in a PID namespace of their own

    def active(self) -> bool:
        return self != NO_CONTAINMENT

    def root(self) -> bool:
        return not self.uid

    def capabilities(self) -> frozenset[str]:
        """The capabilities its processes keep: root's all (a non-root user's none) less ``cap_drop``, plus
        ``cap_add``."""
        every = set(CAPABILITIES)
        kept = set() if "all" in self.cap_drop else (every if self.root() else set()) - set(self.cap_drop)
        return frozenset(kept | (every if "all" in self.cap_add else set(self.cap_add)))

    def all_capabilities(self) -> bool:
        return self.capabilities() == frozenset(CAPABILITIES)

    def new_privileges(self) -> bool:
        """Whether exec may still gain privileges (setuid binaries, file capabilities)."""
        return not (self.no_new_privileges if self.no_new_privileges is not None else self.user is not None)

    def mounts(self) -> tuple[str, ...]:
        """The fresh tmpfs mounts its processes get."""
        return self.tmpfs or (("/tmp", "/run") if self.read_only else ())


NO_CONTAINMENT = Containment()


class Container(Value):
    """A host that is a Docker container (``hosts.NAME.image``): what it is created from. Any change of these
    recreates the container (and re-wires it); ``pull`` only says whether a missing image may be pulled."""

    name: str  # the container's name: the host's namespace name (``<lab>-<host>``)
    image: str
    command: tuple[str, ...] | None = None  # None: the image's own
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()  # Docker's ``SOURCE:TARGET[:ro]``
    user: str | None = None
    workdir: str | None = None
    pull: bool = field(default=False, compare=False)
    contain: Containment = NO_CONTAINMENT  # Docker's CapDrop/CapAdd, ReadonlyRootfs, Tmpfs, SecurityOpt


class Healthcheck(Value):
    """How the lab's supervisor probes a host's services from inside its namespace (features/services.py)."""

    probe: str  # "tcp", "http" or "exec"
    target: str  # the port, the URL or the command
    status: int | None = None  # http: the status wanted (None: any 2xx or 3xx)
    interval: float = 1.0  # seconds from one probe's start to the next
    timeout: float = 1.0
    retries: int = 3  # failed probes in a row that make it unhealthy
    start_period: float = 0.0  # seconds after a start when failures do not count


class Service(Value):
    """A ``run:`` command of a host, run and restarted by the lab's supervisor (features/services.py)."""

    command: str
    restart: str  # "no", "on-failure", "always" or "unhealthy" (on-failure, and when its host turns unhealthy)
    env: tuple[tuple[str, str], ...] = ()  # ``env:`` as written
    env_files: tuple[str, ...] = ()  # absolute paths, read when the service starts (their values never printed)
    health: Healthcheck | None = None  # its host's healthcheck
    depends_on: tuple[tuple[str, str], ...] = ()  # (host, "started" | "healthy" | "completed"), in file order


class Resources(Value):
    """Limits of a host's services (``resources:``, features/limits.py), written to each service's cgroup;
    None: no limit."""

    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None


NO_RESOURCES = Resources()


class Dns(Value):
    """A host's resolver as the lab file sets it (the host's own ``dns:``/``dns_search:`` over the lab's);
    None: not written, the machine's (features/dns)."""

    nameservers: tuple[str, ...] | None = None
    search: tuple[str, ...] | None = None


class Publish(Value):
    """A ``publish:`` entry as written (features/firewall parses and checks it), and its field path
    (``("hosts", "web", "publish", 0)``) for messages."""

    text: str
    path: tuple[str | int, ...]


class Macvlan(Value):
    """A macvlan interface of a host on one of the machine's interfaces (``macvlan:``, features/macvlan.py)."""

    name: str  # inside the host: mv0, mv1, ... in file order
    parent: str  # the machine's interface it stands on
    mode: str = "bridge"  # private | vepa | bridge | passthru
    address: ipaddress.IPv4Interface | None = None
    mac: str | None = None  # derived from the lab, host and name


class Impairment(Value):
    """What one host interface suffers (``impair:``, features/impair.py): loss, duplicate, reorder and corrupt in
    percent, rate in bit/s, delay and jitter in milliseconds (0: none), in ``direction`` "out", "in" or "both"."""

    interface: str
    loss: float = 0.0
    rate: int = 0
    delay: float = 0.0
    jitter: float = 0.0
    direction: str = "out"
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0

    def active(self) -> bool:
        return any((self.loss, self.rate, self.delay, self.jitter, self.duplicate, self.reorder, self.corrupt))


NO_DNS = Dns()


class Host(Value):
    #: What the features ask of a host; the rest is its wiring (a change there makes the host again).
    FEATURES: ClassVar[tuple[str, ...]] = ("services", "contain", "dns", "publish", "impair", "resources", "profiles",
                                           "macvlans")

    name: str
    namespace: str
    interfaces: tuple[Interface, ...]
    gateway: IPv4Addr | None
    hostname: str
    machine: str | None = None  # a lab across machines: where it lives
    routes: tuple[Route, ...] = ()  # added once the host's links exist (a route may go through one)
    sysctls: tuple[tuple[str, str], ...] = ()  # written inside the host's namespace, in file order
    container: Container | None = None  # set: the namespace is a Docker container's (features/containers.py)
    gateway6: IPv6Addr | None = None  # the IPv6 default route (the first dual-stack network not internal)
    services: tuple[Service, ...] = ()
    dns: Dns = NO_DNS
    publish: tuple[Publish, ...] = ()
    impair: tuple[Impairment, ...] = ()  # in file order, inactive entries too
    contain: Containment = NO_CONTAINMENT  # how its services are confined (a light host's; a container's: Container)
    resources: Resources = NO_RESOURCES  # its services' cgroup limits
    profiles: tuple[str, ...] = ()  # up only with `up --profile` naming one of them (features/hoststate.py)
    macvlans: tuple[Macvlan, ...] = ()  # on the machine's interfaces (features/macvlan.py)

    def wiring_differs(self, other: Host) -> bool:
        """Whether ``other`` differs from this host in more than what its features ask."""
        return any(getattr(self, f) != getattr(other, f) for f in self._fields if f not in self.FEATURES)

    def interface_on(self, network: str) -> Interface | None:
        return next((i for i in self.interfaces if i.network == network), None)


class Link(Value):
    """A point-to-point link between two hosts, of a kind (core/kinds/): a veth pair by default, which ``a``
    creates with the peer inside ``b``."""

    a: str
    b: str
    a_ifname: str
    b_ifname: str
    subnet: IPv4Net
    a_address: ipaddress.IPv4Interface
    b_address: ipaddress.IPv4Interface
    mtu: int | None = None  # of both ends; None: the kernel's default (1500)
    subnet6: IPv6Net | None = None  # a dual-stack link: ``a`` has its ::1, ``b`` its ::2
    a_address6: ipaddress.IPv6Interface | None = None
    b_address6: ipaddress.IPv6Interface | None = None
    kind: str = "veth"  # its module in core/kinds/ (what makes it, how it drifts)
    #: the kind's own settings from its part of the lab file, as its resolve gives them (JSON values)
    options: tuple[tuple[str, Any], ...] = ()


class Expectation(Value):
    """An ``expect:`` entry (core/labtests.py): the cells from ``source`` to ``target`` (host names or globs;
    ``outside``) are expected ``reach``; with ``port`` only for that probe (``proto`` tcp or udp)."""

    source: str
    target: str
    reach: bool
    proto: str | None = None
    port: int | None = None

    def covers(self, source: str, target: str, proto: str, port: int | None) -> bool:
        from fnmatch import fnmatchcase

        if self.port is not None and (self.proto, self.port) != (proto, port):
            return False
        return fnmatchcase(source, self.source) and fnmatchcase(target, self.target)


class LabTest(Value):
    """A ``tests:`` case: a command (``command``) or an HTTP GET (``url``) from host ``source``, and what its
    outcome must be (``stdout``/``body``: regular expressions, ``re.search``)."""

    name: str
    source: str
    command: str | None = None
    url: str | None = None
    exit: int = 0
    stdout: str | None = None
    status: int = 200
    body: str | None = None


class Lab(Value):
    name: str
    source: str
    networks: Mapping[str, Network]
    hosts: Mapping[str, Host]
    links: tuple[Link, ...] = ()
    partitions: tuple[tuple[str, str], ...] = ()  # hosts or networks cut from each other (features/partitions.py)
    expect: tuple[Expectation, ...] = ()  # verdicts over the reachability model's (tools/reach.py)
    tests: tuple[LabTest, ...] = ()  # what `nslab test` runs after the matrix
    # A lab across machines (core/overlay.py). The whole lab resolves alike on every machine; each machine builds
    # and records its part (``machine``): its own hosts, the networks it has a bridge of, the links with an end
    # here; the rest of the lab stays known as ``remote`` hosts and ``remote_networks`` (names, checks).
    machines: Mapping[str, Machine] = field(default_factory=dict)
    overlay_port: int = 14789
    overlay_mtu: int | None = None
    underlay_mtu: int | None = None  # what the overlay MTU assumes every machine's underlay interface has
    digest: str = ""  # sha256 of the whole lab's record: the same on every machine for the same file
    machine: str | None = None
    remote: Mapping[str, Host] = field(default_factory=dict)
    remote_networks: Mapping[str, Network] = field(default_factory=dict)
    order: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # a part's: the whole lab's hosts, networks in file order

    def whole(self) -> Lab:
        """Every host and network of the lab, here and on the other machines (what names and checks see), in file
        order (the same on every machine); the lab itself when it is not a part."""
        if not self.remote and not self.remote_networks:
            return self
        from .values import replace

        hosts, networks = {**self.hosts, **self.remote}, {**self.networks, **self.remote_networks}
        host_order, network_order = self.order
        hosts = {n: hosts[n] for n in (*host_order, *hosts) if n in hosts}
        networks = {n: networks[n] for n in (*network_order, *networks) if n in networks}
        return replace(self, hosts=hosts, networks=networks, remote={}, remote_networks={}, order=((), ()))

    def bridge_mac(self, network: Network) -> str:
        """The MAC address of ``network``'s bridge here: derived from the names; across machines a bridge that is
        not the home's has one of its own (two bridges with the gateway's MAC would each take its frames)."""
        if self.builds_gateway(network):
            return mac_address(self.name, "net", network.name)
        return mac_address(self.name, "net", network.name, self.machine or "")

    def builds_gateway(self, network: Network) -> bool:
        """Whether this machine holds ``network``'s gateway address, NAT and published ports."""
        return network.home is None or self.machine is None or network.home == self.machine

    def allocations(self) -> dict[str, Any]:
        """What IPAM decided, in the JSON shape state.py stores, so the next resolve can keep it."""
        return {
            "networks": {n.name: str(n.subnet) for n in self.networks.values()},
            "hosts": {
                h.name: {i.network: str(i.address.ip) for i in h.interfaces if i.network}
                for h in self.hosts.values()
            },
            "links": {f"{lk.a}|{lk.b}|{i}": str(lk.subnet) for i, lk in enumerate(self.links)},
            "networks6": {n.name: str(n.subnet6) for n in self.networks.values() if n.subnet6},
            "links6": {f"{lk.a}|{lk.b}|{i}": str(lk.subnet6) for i, lk in enumerate(self.links) if lk.subnet6},
            "hosts6": {h.name: six for h in self.hosts.values() if (six := _addresses6(h))},
        }


def _addresses6(host: Host) -> dict[str, str]:
    """network -> the host's IPv6 address on it (dual-stack networks only)."""
    return {i.network: str(i.address6.ip) for i in host.interfaces if i.network and i.address6}

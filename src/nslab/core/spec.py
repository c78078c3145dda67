"""The lab file as the user wrote it: its schema, YAML loading, and problems located by file:line.

This module owns the format of a lab file:

- the raw pydantic models (:class:`LabSpec` and its parts) with the checks that need no other part of the
  file; they accept the short forms (a host's networks as a list of names, a link as a pair of hosts, an
  empty entry, ``restart: no`` that YAML reads as false) and store the long form; an entry of ``links:`` is read
  with its kind's schema (``schema()`` of its module in core/kinds/, on :class:`LinkSpec`: :func:`lab_schema`);
- the name patterns :data:`LAB_NAME` (checked here) and :data:`OBJECT_NAME` (checked by :mod:`nslab.core.resolve`,
  with the references between networks, hosts and links);
- locating a problem: :class:`SourceMap` (field path -> line of its YAML node) and :func:`field_path`
  (``hosts.web1.publish[0]``), which the later stages use for their own problems too.

It knows nothing about the kernel or about other labs: :mod:`nslab.core.resolve` turns a :class:`LabSpec` into
concrete names and addresses.

A YAML syntax error, or a document that is not a mapping, is reported alone; past that every schema problem
is reported at once: pydantic collects them all, and each is located with the line of the YAML node it
concerns.
"""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..errors import Problem, SourceLines, SpecError, field_path
from . import kinds

#: libyaml's parser when PyYAML was built with it (~10x faster on a 1000-host file); its nodes carry the same
#: line marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SYSCTL_KEY = re.compile(r"^net(\.[A-Za-z0-9_*-]+)+$")
LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
OBJECT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
#: a Linux interface name (IFNAMSIZ - 1 characters, none of '/', ':' or blanks)
IFNAME = re.compile(r"^[^/:\s]{1,15}$")


def name_rule(most: int) -> str:
    """What :data:`LAB_NAME` (12) and :data:`OBJECT_NAME` (31) ask, said in words."""
    return f"at most {most} characters of a-z, 0-9 and -, starting with a letter"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: An interface MTU: 68 (IPv4's minimum) to 65535.
Mtu = Annotated[int, Field(ge=68, le=65535)]
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class NetworkSpec(_Strict):
    """A bridge on the machine that hosts attach to."""

    subnet: ipaddress.IPv4Network | None = None
    internal: bool = False
    mtu: Mtu | None = None  # of every interface on it (unless the host or interface says otherwise)
    #: IPv6 too (dual stack): ``subnet6`` as written, else a /64 of the machine's ULA range (resolve.py)
    ipv6: bool = False
    subnet6: ipaddress.IPv6Network | None = None
    #: IPv6 egress masqueraded as the machine (NAT66); false: routed, the lab's addresses leave as they are
    #: (whoever routes the machine's traffic must route the subnet6 back to it)
    nat6: bool = True
    #: one of the machine's interfaces (``eth1``) made a port of the bridge while the lab is up, its addresses and
    #: routes moved to the bridge (features/external.py); needs ``subnet:``, the LAN's
    external: str | None = None
    #: labs across machines: the machine holding its gateway, NAT and published ports (default: the first
    #: machine with a member, in file order)
    home: str | None = None

    @property
    def dual_stack(self) -> bool:
        return self.ipv6 or self.subnet6 is not None

    @field_validator("external")
    @classmethod
    def _interface_name(cls, value: str | None) -> str | None:
        if value is not None and not IFNAME.fullmatch(value):
            raise ValueError(f"'{value}' is not an interface name (1 to 15 characters, no '/', ':' or blank)")
        return value

    @model_validator(mode="after")
    def _external_needs(self) -> NetworkSpec:
        net = self
        if net.external is not None and net.subnet is None:
            raise ValueError(f"external: {net.external}: give the subnet of the LAN it is on (subnet:)")
        if net.external is not None and net.dual_stack:
            raise ValueError("external: the lab's hosts get IPv4 addresses on it (its IPv6 addresses and routes "
                             "still move to the bridge): leave out ipv6 and subnet6")
        return net

    @model_validator(mode="before")
    @classmethod
    def _ipv6_subnet_written_as_subnet(cls, data: Any) -> Any:
        """``subnet: fd00:1::/64`` means ``subnet6`` (the IPv4 subnet is then picked automatically)."""
        if isinstance(data, dict) and isinstance(data.get("subnet"), str) and ":" in data["subnet"]:
            if "subnet6" in data:
                return data  # reported by the subnet validator: two IPv6 subnets
            data = {**data, "subnet6": data["subnet"]}
            del data["subnet"]
        return data

    @field_validator("subnet", mode="before")
    @classmethod
    def _strict_subnet(cls, value: Any) -> Any:
        if isinstance(value, str):
            if ":" in value:
                raise ValueError(f"{value} is an IPv6 subnet and subnet6 is given too: one IPv6 subnet per network")
            return _network(value, ipaddress.IPv4Network, "subnet")
        return value

    @field_validator("subnet6", mode="before")
    @classmethod
    def _strict_subnet6(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _network(value, ipaddress.IPv6Network, "subnet6")
        return value

    @field_validator("subnet6")
    @classmethod
    def _unicast6(cls, value: ipaddress.IPv6Network | None) -> ipaddress.IPv6Network | None:
        if value is None:
            return value
        if value.prefixlen > 120:
            raise ValueError("an IPv6 network needs at least a /120 (the gateway and its hosts)")
        for unfit, what in ((value.is_loopback, "loopback"), (value.is_multicast, "multicast"),
                            (value.is_link_local, "link-local"), (value.is_unspecified, "unspecified"),
                            (value.overlaps(_MAPPED), "IPv4-mapped")):
            if unfit:
                raise ValueError(f"{value} is a {what} range: a lab network needs ordinary unicast addresses "
                                 "(e.g. a unique local range like fd00:1::/64)")
        return value

    @field_validator("subnet")
    @classmethod
    def _room_for_hosts(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is None:
            return value
        if value.prefixlen > 30:
            raise ValueError("a network needs at least a /30 (gateway + one host)")
        for unfit, what in ((value.is_loopback, "loopback"), (value.is_multicast, "multicast"),
                            (value.is_link_local, "link-local"), (value.is_unspecified, "unspecified"),
                            (value.overlaps(_THIS_NETWORK), "'this network' (0.0.0.0/8)"),
                            (value.is_reserved, "reserved")):
            if unfit:
                raise ValueError(f"{value} is a {what} range: a lab network needs ordinary unicast addresses "
                                 "(e.g. a private range like 10.80.1.0/24)")
        return value


def _network(value: str, kind: type[ipaddress.IPv4Network | ipaddress.IPv6Network], key: str) -> Any:
    """``value`` as a subnet of ``kind``; the problem said in words: a missing prefix as a missing prefix."""
    family = "IPv4" if kind is ipaddress.IPv4Network else "IPv6"
    if "/" not in value:
        example = "/24" if family == "IPv4" else "/64"
        raise ValueError(f"{key} {value} has no prefix length: write it as ADDRESS/PREFIX (e.g. {value}{example})")
    try:
        return kind(value, strict=True)
    except ValueError as exc:
        reason = str(exc)
    try:
        meant = kind(value, strict=False)  # the address of a host in it: the subnet's own address is meant
    except ValueError:
        raise ValueError(f"{key} {value} is not an {family} subnet ({reason})") from None
    raise ValueError(f"{key} {value} has host bits set: the subnet is {meant}")


RestartPolicy = Literal["no", "on-failure", "always", "unhealthy"]
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


# --- impairments and partitions (features/impair.py, features/partitions.py) -----------------------------
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z%]*)\s*$")


def _number_with_unit(value: Any, units: dict[str, float], default: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what}: a number with a unit ({', '.join(units)})")
    if not isinstance(value, str):
        return float(value) * units[default]
    match = _NUMBER.match(value.lower())
    if not match or (match.group(2) or default) not in units:
        raise ValueError(f"{what}: '{value}' is not a number with a unit ({', '.join(units)})")
    return float(match.group(1)) * units[match.group(2) or default]


class ImpairSpec(_Strict):
    """What one host interface suffers: ``{loss: 5%, rate: 10mbit, delay: 20ms, jitter: 5ms, direction: out}``, and
    where the kernel has netem (or nslab emulates it) ``duplicate: 1%``, ``reorder: 25%``, ``corrupt: 0.1%``.

    Stored normalised: loss, duplicate, reorder and corrupt in percent, rate in bit/s, delay and jitter in
    milliseconds (0 = none). The default
    direction is ``out`` (what the host sends, as netem impairs an interface's egress); delay and jitter apply to
    each impaired direction (``both``: a round trip gets the delay twice)."""

    loss: float = 0.0
    rate: int = 0
    delay: float = 0.0
    jitter: float = 0.0
    direction: Literal["both", "in", "out"] = "out"
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0

    @field_validator("loss", "duplicate", "reorder", "corrupt", mode="before")
    @classmethod
    def _percent(cls, value: Any, info: ValidationInfo) -> Any:
        share = _number_with_unit(value, {"%": 1.0}, "%", info.field_name or "loss")
        if not 0 <= share <= 100:
            raise ValueError(f"{info.field_name} is a percentage between 0% and 100%")
        return share

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        rate = int(_number_with_unit(value, _RATE_UNITS, "bit", "rate"))
        if rate and rate < 8000:
            raise ValueError("rate: at least 8kbit")
        return rate

    @field_validator("delay", "jitter", mode="before")
    @classmethod
    def _milliseconds(cls, value: Any) -> Any:
        ms = _number_with_unit(value, _TIME_UNITS, "ms", "delay and jitter")
        if ms > 60_000:
            raise ValueError("at most 60s")
        return ms

    def active(self) -> bool:
        return any((self.loss, self.rate, self.delay, self.jitter, self.duplicate, self.reorder, self.corrupt))


def _ip_list(value: Any) -> Any:
    """A list of IPv4 or IPv6 addresses, each bad entry one problem (not one per address family)."""
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for item in value:
        try:
            out.append(ipaddress.ip_address(item) if isinstance(item, str) else item)
        except ValueError:
            raise ValueError(f"'{item}' is not an IPv4 or IPv6 address") from None
    for item in out:
        if not isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise ValueError(f"{item!r} is not an IPv4 or IPv6 address")
        if item.is_loopback:
            raise ValueError(f"{item} is a loopback address: inside a host it is the host itself, where no "
                             "resolver runs (the 127.0.0.53 pitfall); name a server the host can reach")
        if item.is_unspecified or item.is_multicast:
            raise ValueError(f"{item} is not a nameserver's address")
    return out


_MEMORY_UNITS = {"b": 1.0, "k": 1024.0, "m": 1024.0**2, "g": 1024.0**3, "kb": 1024.0, "mb": 1024.0**2,
                 "gb": 1024.0**3}


class ResourcesSpec(_Strict):
    """Limits of a host's services (features/limits.py): ``{cpus: 0.5, memory: 64M, pids: 200}``, as Docker's
    ``--cpus``, ``--memory`` and ``--pids-limit``. Stored normalised: memory in bytes."""

    cpus: float | None = Field(default=None, gt=0, le=1024)
    memory: int | None = None
    pids: int | None = Field(default=None, ge=1)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if value is None:
            return None
        memory = int(_number_with_unit(value, _MEMORY_UNITS, "b", "memory"))
        if memory < 4 * 1024 * 1024:
            raise ValueError(f"memory: {value} is below the least a service can run in (4M)")
        return memory


class _WithDns(_Strict):
    """``dns:`` and ``dns_search:``, written for the whole lab or per host."""

    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
    dns_search: list[str] | None = None

    @field_validator("dns", mode="before")
    @classmethod
    def _dns_addresses(cls, value: Any) -> Any:
        return _ip_list(value)


class InterfaceSpec(_Strict):
    """A host's interface on a network, in the long form: ``{address: ..., mac: ..., mtu: ...}``."""

    address: ipaddress.IPv4Address | None = None
    address6: ipaddress.IPv6Address | None = None  # on a dual-stack network
    mac: str | None = None
    mtu: Mtu | None = None

    @field_validator("mac", mode="before")
    @classmethod
    def _unicast_mac(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        mac = value.lower()
        if not MAC.fullmatch(mac):
            raise ValueError(f"'{value}' is not a MAC address (six hex pairs: 02:00:00:00:00:01)")
        if int(mac[:2], 16) & 1:
            raise ValueError(f"{value} is a multicast MAC address (the first byte must be even)")
        return mac


class MacvlanSpec(_Strict):
    """A host's macvlan interface on one of the machine's interfaces (features/macvlan.py)."""

    parent: str
    mode: Literal["private", "vepa", "bridge", "passthru"] = "bridge"
    address: ipaddress.IPv4Interface | None = None  # 10.0.0.5/24; absent: no address

    @field_validator("parent")
    @classmethod
    def _interface_name(cls, value: str) -> str:
        if not IFNAME.fullmatch(value):
            raise ValueError(f"'{value}' is not an interface name (1 to 15 characters, no '/', ':' or blank)")
        return value

    @field_validator("address", mode="before")
    @classmethod
    def _with_prefix(cls, value: Any) -> Any:
        if isinstance(value, str) and "/" not in value:
            raise ValueError(f"'{value}': give the address with its prefix length (10.0.0.5/24)")
        return value


class RouteSpec(_Strict):
    """``{to: CIDR, via: ADDRESS}``: a static route inside the host (IPv4, or IPv6 on a dual-stack network)."""

    to: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: ipaddress.IPv4Address | ipaddress.IPv6Address

    @field_validator("to", mode="before")
    @classmethod
    def _network(cls, value: Any) -> Any:
        """One problem per bad value (not one per IP version)."""
        if isinstance(value, str):
            try:
                return ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                raise ValueError(f"'{value}' is not an IP network ({exc})") from None
        return value

    @field_validator("via", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"'{value}' is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _one_family(self) -> RouteSpec:
        if self.to.version != self.via.version:
            raise ValueError(f"to {self.to} and via {self.via} are of different IP versions")
        return self


# --- health and start order (features/services.py) --------------------------------------------------------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def seconds(value: Any) -> float:
    """A duration as seconds: a number of seconds, or ``500ms``, ``2s``, ``1m``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (500ms, 2s, 1m or a number of seconds)")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"'{value}' is not a duration (500ms, 2s, 1m or a number of seconds)")
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


class HealthSpec(_Strict):
    """How the supervisor probes a host's services: ``{tcp: PORT}``, ``{http: URL, status: 200}`` or
    ``{exec: CMD}``, with its timing."""

    tcp: Annotated[int, Field(ge=1, le=65535)] | None = None
    http: str | None = None
    status: Annotated[int, Field(ge=100, le=599)] | None = None  # without it: any 2xx or 3xx
    exec: str | None = None
    interval: Annotated[float, Field(gt=0)] = 1.0  # from one probe's start to the next
    timeout: Annotated[float, Field(gt=0)] = 1.0
    retries: Annotated[int, Field(ge=1)] = 3
    start_period: Annotated[float, Field(ge=0)] = 0.0  # failures then do not count

    @field_validator("interval", "timeout", "start_period", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return seconds(value)

    @field_validator("http")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^http://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"'{value}' is not an http:// URL")
        return value

    @model_validator(mode="after")
    def _one_probe(self) -> HealthSpec:
        probes = [k for k in ("tcp", "http", "exec") if getattr(self, k) is not None]
        if len(probes) != 1:
            raise ValueError("give one probe: tcp: PORT, http: URL or exec: CMD")
        if self.status is not None and self.http is None:
            raise ValueError("status: goes with an http: probe")
        return self


DependCondition = Literal["started", "healthy", "completed"]


class DependSpec(_Strict):
    condition: DependCondition = "started"


class HostSpec(_WithDns):
    """A named network namespace with interfaces on networks and links. Grouped by who resolves each field:
    resolve.py the wiring, each feature its own part (its ``resolve()``; ``dns:``/``dns_search:`` come from
    :class:`_WithDns`, for features/dns)."""

    # The wiring (resolve.py). Networks: written as a list of names or a map name -> fixed address (or the long
    # form); stored as the map, in file order.
    networks: dict[str, ipaddress.IPv4Address | InterfaceSpec | None] = Field(default_factory=dict)
    hostname: str | None = None
    machine: str | None = None  # labs across machines: where the host lives (else ``placement:``)
    mtu: Mtu | None = None  # of the host's network interfaces (over the network's)
    routes: list[RouteSpec] = Field(default_factory=list)
    #: ``none``: no default route; an address: the default route via it; unset: the first network's gateway
    default: Literal["none"] | ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    #: net.* sysctls written inside the host's namespace (e.g. ``net.ipv4.ip_forward: 1``)
    sysctls: dict[str, str] = Field(default_factory=dict)
    publish: list[str] = Field(default_factory=list)  # features/firewall
    run: str | list[str] = Field(default_factory=list)  # features/services.py
    restart: RestartPolicy = "on-failure"
    healthcheck: HealthSpec | None = None
    #: hosts whose services start before this one's (list form: ``started``); ``down`` stops in reverse
    depends_on: dict[str, DependSpec] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)  # its services' (or its container's) environment
    env_file: list[str] = Field(default_factory=list)  # KEY=VALUE files, beside the lab file; env: wins
    resources: ResourcesSpec | None = None  # features/limits.py: its services' cgroup limits
    impair: dict[str, ImpairSpec] = Field(default_factory=dict)  # features/impair.py: interface -> impairment
    #: compose-style: a host with profiles comes up only with ``up --profile NAME`` (features/hoststate.py)
    profiles: list[str] = Field(default_factory=list)
    # A Docker container as the host (features/containers.py): its image and how it is created.
    image: str | None = None
    command: str | list[str] | None = None
    volumes: list[str] = Field(default_factory=list)
    workdir: str | None = None
    pull: bool = False
    # What confines the processes it runs (features/contain.py): its services, or a container host's container.
    user: str | None = None  # NAME|UID[:GROUP|GID]
    cap_drop: list[str] = Field(default_factory=list)  # capability names (NET_ADMIN or CAP_NET_ADMIN), or ALL
    cap_add: list[str] = Field(default_factory=list)
    no_new_privileges: bool | None = None  # unset: yes when user is set
    read_only: bool = False
    tmpfs: list[str] = Field(default_factory=list)  # absolute paths
    writable: list[str] = Field(default_factory=list)
    private_tmp: bool = False
    pid: Literal["host", "private"] = "host"
    #: macvlan interfaces on the machine's interfaces (features/macvlan.py); one entry or a list
    macvlan: list[MacvlanSpec] = Field(default_factory=list)

    @field_validator("macvlan", mode="before")
    @classmethod
    def _one_macvlan(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("image")
    @classmethod
    def _image_named(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError(f"'{value}' is not an image name (repository[:tag])")
        return value

    @field_validator("command")
    @classmethod
    def _command_words(cls, value: str | list[str] | None) -> str | list[str] | None:
        import shlex

        words = [value] if isinstance(value, str) else value or []
        if any("\0" in w for w in words):
            raise ValueError("a command cannot contain a NUL character")
        if isinstance(value, str):
            try:
                if not shlex.split(value):
                    raise ValueError("an empty command: leave the field out to run the image's own")
            except ValueError as exc:
                raise ValueError(f"cannot split the command into words: {exc}") from None
        elif value is not None and not value:
            raise ValueError("an empty command: leave the field out to run the image's own")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_map(cls, value: Any) -> Any:
        if isinstance(value, list):  # Docker's list form: ["KEY=VALUE", ...]
            if not all(isinstance(v, str) and "=" in v for v in value):
                raise ValueError("a map KEY: VALUE, or a list of KEY=VALUE")
            return dict(v.split("=", 1) for v in value)
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in value.items()}
        return value

    @field_validator("volumes")
    @classmethod
    def _volume_form(cls, value: list[str]) -> list[str]:
        for volume in value:
            parts = volume.split(":")
            if len(parts) not in (2, 3) or not all(parts[:2]) or not parts[1].startswith("/"):
                raise ValueError(f"'{volume}' is not SOURCE:/TARGET[:ro|rw]")
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _list_is_started(cls, value: Any) -> Any:
        if isinstance(value, list):  # [db]: started
            if not all(isinstance(v, str) for v in value):
                raise ValueError("a list of host names, or a map host -> {condition: ...}")
            return {v: {} for v in value}
        if isinstance(value, dict):
            return {k: {} if v is None else v for k, v in value.items()}
        return value

    @field_validator("cap_drop", "cap_add", "tmpfs", "writable", "env_file", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("user")
    @classmethod
    def _user_form(cls, value: str | None) -> str | None:
        if value is not None and (not value.partition(":")[0] or any(c.isspace() or c == "\0" for c in value)):
            raise ValueError(f"'{value}' is not NAME|UID[:GROUP|GID]")
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _none_or_address(cls, value: Any) -> Any:
        if value is None or value == "none" or not isinstance(value, str):
            return value
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"'{value}' is neither none nor an IP address") from None

    @field_validator("sysctls", mode="before")
    @classmethod
    def _net_sysctls(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for key, setting in value.items():
            if not isinstance(key, str) or not SYSCTL_KEY.fullmatch(key):
                raise ValueError(f"'{key}': only net.* sysctls belong to a host's namespace (net.ipv4.ip_forward)")
            if isinstance(setting, bool) or not isinstance(setting, str | int):
                raise ValueError(f"{key}: give a number or a string, not {setting!r}")
            out[key] = str(setting)
        return out

    def interface(self, network: str) -> InterfaceSpec:
        """The long form of the host's interface on ``network``."""
        written = self.networks.get(network)
        return written if isinstance(written, InterfaceSpec) else InterfaceSpec(address=written)

    @field_validator("networks", mode="before")
    @classmethod
    def _list_is_map(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError("a list of network names, or a map name -> address")
            if len(set(value)) != len(value):
                raise ValueError("a network is listed twice")
            return {name: None for name in value}
        if isinstance(value, dict):  # `front: fd00:1::5`: an IPv6 address is the long form's address6
            return {k: {"address6": v} if isinstance(v, str) and ":" in v else v for k, v in value.items()}
        return value

    @field_validator("run", mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            if any("\0" in command for command in ([value] if isinstance(value, str) else value)):
                raise ValueError("a command cannot contain a NUL character")
            return value
        raise ValueError("a command (text) or a list of commands")

    @field_validator("hostname")
    @classmethod
    def _hostname_given(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty hostname: leave the field out to use the host's name")
        return value

    @field_validator("restart", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML 1.1 reads a bare `restart: no` as false

    def commands(self) -> list[str]:
        return [self.run] if isinstance(self.run, str) else list(self.run)


class LinkSpec(_Strict):
    """What every entry of ``links:`` has, whatever its kind: the base of each kind's schema (``schema()`` of its
    module in core/kinds/, which adds the kind's own fields and narrows ``kind`` to its name). resolve.py reads
    these fields for every kind: the two hosts, and the link's subnets (IPAM)."""

    kind: str  # the module of core/kinds/ that resolves and makes it (written ``kind:``; absent: kinds.LINK_KIND)
    endpoints: tuple[str, str]
    subnet: ipaddress.IPv4Network | None = None
    #: IPv6 too: ``subnet6`` as written, else a /64 of the machine's ULA range; the ends get ::1 and ::2
    ipv6: bool = False
    subnet6: ipaddress.IPv6Network | None = None

    @property
    def dual_stack(self) -> bool:
        return self.ipv6 or self.subnet6 is not None

    @field_validator("subnet", "subnet6", mode="before")
    @classmethod
    def _subnet_in_words(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            kind = ipaddress.IPv4Network if info.field_name == "subnet" else ipaddress.IPv6Network
            return _network(value, kind, str(info.field_name))
        return value

    @field_validator("subnet6")
    @classmethod
    def _two_addresses6(cls, value: ipaddress.IPv6Network | None) -> ipaddress.IPv6Network | None:
        if value is not None and (value.prefixlen > 126 or value.is_link_local or value.is_multicast
                                  or value.is_loopback):
            raise ValueError("a link subnet6 needs a unicast range of /126 or larger")
        return value

    @field_validator("subnet")
    @classmethod
    def _two_addresses(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is not None and value.num_addresses < 2:
            raise ValueError("a link subnet needs two addresses (/31 or larger)")
        return value


# --- the lab file as its own test (core/labtests.py) ------------------------------------------------------
class ExpectSpec(_Strict):
    """``{from: a, to: "b:80", reach: false}``: what ``check`` and ``test`` expect of the cells it names
    (host names or globs; ``to: outside``; ``:PORT`` or ``:PORT/udp`` for one probe kind), over the model's."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(alias="from")
    to: str
    reach: bool = True


class TestExpectSpec(_Strict):
    """What a test's outcome must be: ``exit`` and ``stdout`` (a command), ``status`` and ``body`` (HTTP);
    ``stdout`` and ``body`` are regular expressions (Python's ``re.search``)."""

    exit: int | None = None
    stdout: str | None = None
    status: int | None = None
    body: str | None = None

    @field_validator("stdout", "body")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class LabTestSpec(_Strict):
    """``{name, from: HOST, exec: CMD | http: URL, expect: {...}}``: a case ``nslab test`` runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = None
    source: str = Field(alias="from")
    exec: str | None = None
    http: str | None = None
    expect: TestExpectSpec = Field(default_factory=TestExpectSpec)

    @model_validator(mode="after")
    def _one_probe(self) -> LabTestSpec:
        if (self.exec is None) == (self.http is None):
            raise ValueError("give exactly one of exec: CMD and http: URL")
        if self.http is not None and not re.match(r"^http://[^/\s]+", self.http):
            raise ValueError(f"http: '{self.http}' is not an http:// URL")
        e = self.expect
        if self.exec is not None and (e.status is not None or e.body is not None):
            raise ValueError("expect: status and body are for http: tests (exec: takes exit and stdout)")
        if self.http is not None and (e.exit is not None or e.stdout is not None):
            raise ValueError("expect: exit and stdout are for exec: tests (http: takes status and body)")
        return self


class MachineSpec(_Strict):
    """One machine of a lab across machines (``machines:``): its underlay address, and for an engine (Swarm)
    the node it is or the labels that pick it."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    node: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class OverlaySpec(_Strict):
    """How machines carry a lab's networks and links between them (VXLAN, core/overlay.py)."""

    port: Annotated[int, Field(ge=1, le=65535)] = 14789  # the VXLAN UDP port, shared by every lab
    mtu: Literal["auto"] | Mtu = "auto"  # of every interface of a spanning network or link
    underlay_mtu: Annotated[int, Field(ge=1280, le=65535)] = 1500  # what ``auto`` assumes every machine has


class LabSpec(_WithDns):
    """The whole lab file."""

    name: str
    machines: dict[str, MachineSpec] = Field(default_factory=dict)  # a lab across machines
    placement: Literal["spread"] | None = None  # hosts without ``machine:``: a stable hash over the machines
    overlay: OverlaySpec = Field(default_factory=OverlaySpec)
    networks: dict[str, NetworkSpec] = Field(default_factory=dict)
    hosts: dict[str, HostSpec] = Field(default_factory=dict)
    links: list[LinkSpec] = Field(default_factory=list)
    partitions: list[tuple[str, str]] = Field(default_factory=list)  # hosts or networks cut from each other
    expect: list[ExpectSpec] = Field(default_factory=list)  # verdicts over the model's (core/labtests.py)
    tests: list[LabTestSpec] = Field(default_factory=list)  # cases `nslab test` runs

    @field_validator("name")
    @classmethod
    def _lab_name(cls, value: str) -> str:
        if not LAB_NAME.fullmatch(value):
            raise ValueError(f"lab name {value!r}: {name_rule(12)} (it prefixes namespace and interface names)")
        return value

    @field_validator("networks", "hosts", "machines", mode="before")
    @classmethod
    def _none_is_empty_map(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("links", mode="before")
    @classmethod
    def _pair_shorthand(cls, value: Any) -> Any:
        """``[a, b]`` is ``{endpoints: [a, b]}``; a link without ``kind:`` is of :data:`kinds.LINK_KIND`."""
        if isinstance(value, list):
            value = [{"endpoints": v} if isinstance(v, (list, tuple)) else v for v in value]
            return [{"kind": kinds.LINK_KIND, **v} if isinstance(v, dict) and "kind" not in v else v for v in value]
        return value


_schemas: dict[tuple[tuple[str, str], ...], type[LabSpec]] = {}


def lab_schema() -> type[LabSpec]:
    """:class:`LabSpec` with ``links:`` entries of every registered kind (core/kinds/): a union of the kinds'
    schemas, told apart by ``kind:``. Made once per set of kinds (a test may register its own)."""
    key = tuple(kinds.KINDS.items())
    made = _schemas.get(key)
    if made is None:
        from typing import Union, cast

        from pydantic import create_model

        members = tuple(kinds.kind(name).schema() for name in kinds.KINDS)
        # (typing's forms applied at run time, on members known only then: Any to the type checker)
        entry = cast(Any, Annotated)[cast(Any, Union)[members], Field(discriminator="kind")]
        made = _schemas[key] = create_model("LabSpec", __base__=LabSpec, __module__=__name__,
                                            links=(cast(Any, list)[entry], Field(default_factory=list)))
    return made


class SourceMap(SourceLines):
    """Maps a field path (tuple of keys and indexes) to the line it was written on, read from the YAML."""

    @classmethod
    def from_node(cls, node: yaml.Node | None) -> SourceMap:
        lines: dict[tuple[Any, ...], int] = {}

        def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
            lines.setdefault(path, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                for key, value in n.value:
                    child = path + (key.value,)
                    lines[child] = key.start_mark.line + 1
                    walk(value, child)
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    walk(item, path + (i,))

        if node is not None:
            walk(node, ())
        return cls(lines)


# pydantic reports which branch of a union failed; users only need the data path.
_UNION_BRANCHES = {"str", "IPv4Address", "IPv6Address", "InterfaceSpec", "literal['none']"}


def _data_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The data path of an error's location: without the union branches pydantic names (and, in an entry of
    ``links:``, without the kind that validated it: ``links.0.veth.mtu`` is ``links[0].mtu``)."""
    if len(loc) > 2 and loc[0] == "links" and isinstance(loc[1], int) and loc[2] in kinds.KINDS:
        loc = loc[:2] + loc[3:]
    return tuple(p for p in loc if not (isinstance(p, str) and (p in _UNION_BRANCHES or "[" in p)))


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    """What a schema error says, in the lab file's words."""
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if err["type"] == "union_tag_invalid":  # a link of a kind nslab has not
        return f"unknown link kind {err['ctx']['tag']!r} (kinds: {', '.join(kinds.KINDS)})"
    if err["type"] == "model_attributes_type" and loc[:1] == ("links",):
        return "a link is a pair of hosts [a, b], or a mapping with endpoints: [a, b]"
    message = str(err["msg"]).removeprefix("Value error, ")
    if "publish" in loc and isinstance(err.get("input"), int | float) and not isinstance(err["input"], bool):
        # YAML 1.1 reads 2222:22 as a base-60 number (133342): the mapping never reached us as text
        number = err["input"]
        message = f'put port mappings in quotes ("2222:22"): unquoted, YAML read this one as the number {number}'
    return message


_SCALAR_TYPES = {"ip_v4_address", "ip_v6_address", "string_type", "literal_error"}


def _wrong_branch(err: Any, errors: list[Any]) -> bool:
    """A branch of a union (``lan: ADDRESS`` or ``lan: {address: ...}``) that does not fit what was written
    (a scalar branch given a mapping, a mapping branch given a scalar), when another branch has its own say."""
    given_map = isinstance(err.get("input"), dict)
    if not ((err["type"] == "model_type" and not given_map) or (err["type"] in _SCALAR_TYPES and given_map)):
        return False
    loc = _data_loc(tuple(err["loc"]))
    return any(o is not err and _data_loc(tuple(o["loc"]))[: len(loc)] == loc for o in errors)


def _problems_from_validation(exc: ValidationError, source: SourceMap, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    errors = exc.errors()
    for err in errors:
        if _wrong_branch(err, errors):
            continue
        loc = _data_loc(tuple(err["loc"]))
        if err["type"] == "union_tag_invalid":
            loc += ("kind",)
        message = _message(err, loc)
        key = (field_path(loc), message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, field_path(loc), file, source.line(loc)))
    return problems


def _read_yaml(text: str, file: str) -> tuple[Any, SourceMap, list[Problem]]:
    """The data, its source map and its duplicate keys; a YAML syntax error, a document that is too deep or
    expands too far, or one that is not a mapping, alone (raised)."""
    _check_text(text, file)
    loader = _LOADER(text)  # parsed once: the node tree gives the lines, the same tree the data
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(f"invalid YAML: {reason}", "", file, line)]) from None
    except RecursionError:
        raise SpecError([Problem(f"nested deeper than {MAX_DEPTH} levels", "", file)]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([Problem("a lab file is a mapping with at least 'name:'", "", file, 1)])
    return data, SourceMap.from_node(node), duplicate_keys(node, file)


def _check_text(text: str, file: str) -> None:
    """Refuse, before YAML sees it, text no lab file has: a NUL character, or nesting deeper than
    :data:`MAX_DEPTH` (by flow brackets or by indentation) that would exhaust the parser's recursion."""
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise SpecError([Problem("a NUL character (a binary file?)", "", file, line)])
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    indents = {len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.strip()}
    if deepest > MAX_DEPTH or len(indents) > MAX_DEPTH:
        raise SpecError([Problem(f"nested deeper than {MAX_DEPTH} levels: not a lab file", "", file)])


def _check_size(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases would expand it beyond :data:`MAX_NODES` nodes (counted with each node's
    expanded size computed once, so the count itself stays linear in the file)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_NODES + 1  # a node that contains itself is infinite
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, MAX_NODES + 1)
        return sizes[id(node)]

    if size(root) > MAX_NODES:
        raise SpecError([Problem(f"expands to more than {MAX_NODES} values (aliases of aliases?): not a lab file",
                                 "", file)])


def duplicate_keys(root: yaml.Node | None, file: str) -> list[Problem]:
    """Keys written twice in one mapping (YAML would silently keep the last): one problem each, at the second."""
    problems: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name in first:
                    where = field_path((*path, name))
                    problems.append(Problem(f"'{name}' is written twice in one mapping (also at line {first[name]}); "
                                            "YAML would keep only the last", where, file, key.start_mark.line + 1))
                elif name is not None:
                    first[name] = key.start_mark.line + 1
                stack.append((value, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*path, i)) for i, item in enumerate(node.value)]
    return sorted(problems, key=lambda p: p.line or 0)


#: What stands for a missing or invalid lab name while the rest of a faulty file is still checked.
PLACEHOLDER_NAME = "lab"


def _prune(data: dict[str, Any], loc: tuple[Any, ...], dropped_links: set[int]) -> None:
    """Remove the part of ``data`` a schema problem at ``loc`` is about, so that the rest can be validated:
    a host's or network's field goes (the entry stays, so references to it hold), a bad link goes."""
    head = loc[0] if loc else None
    if head in ("hosts", "networks") and len(loc) >= 2 and isinstance(data.get(head), dict):
        _prune_entry(data[head], loc)
    elif head == "links" and len(loc) >= 2 and isinstance(loc[1], int):
        dropped_links.add(loc[1])
    elif head == "name":
        data["name"] = PLACEHOLDER_NAME
    elif head is not None:
        data.pop(head, None)


def _prune_entry(entries: dict[str, Any], loc: tuple[Any, ...]) -> None:
    """``_prune`` for a problem in ``hosts.NAME`` or ``networks.NAME`` (``loc``): its field goes, not the entry."""
    entry = entries.get(loc[1])
    if len(loc) >= 4 and loc[2] == "networks" and isinstance(entry, dict) and isinstance(entry.get(loc[2]), dict):
        entry[loc[2]][loc[3]] = None  # a bad fixed address: the host still gets one
    elif len(loc) >= 3 and isinstance(entry, dict):
        entry.pop(loc[2], None)
    elif loc[1] in entries:
        entries[loc[1]] = {}


def _partial(data: dict[str, Any], errors: list[tuple[Any, ...]]) -> tuple[LabSpec | None, dict[int, int]]:
    """The lab without the parts that have schema problems, and the new -> written index of each kept link."""
    import copy

    data = copy.deepcopy(data)
    data.setdefault("name", PLACEHOLDER_NAME)
    dropped: set[int] = set()
    for loc in errors:
        _prune(data, loc, dropped)
    links = data.get("links")
    kept = [i for i in range(len(links))] if isinstance(links, list) else []
    if isinstance(links, list):
        kept = [i for i in kept if i not in dropped]
        data["links"] = [links[i] for i in kept]
    try:
        partial = lab_schema().model_validate(data)
    except ValidationError:
        return None, {}
    return partial, dict(enumerate(kept))


class Parsed:
    """A lab file read as far as it goes: the spec (without the parts that have schema problems), its source
    map, the schema problems, and where each kept link was written (``links[i]`` of the spec -> of the file)."""

    __slots__ = ("spec", "source", "problems", "link_index")

    def __init__(
        self, spec: LabSpec | None, source: SourceMap, problems: list[Problem], link_index: dict[int, int]
    ) -> None:
        self.spec, self.source, self.problems, self.link_index = spec, source, problems, link_index

    def relocate(self, problem: Problem) -> Problem:
        """A problem found in the partial spec, with its link index as written in the file."""
        match = _LINK_FIELD.match(problem.field)
        if not match or not self.link_index:
            return problem
        written = self.link_index.get(int(match.group(1)), int(match.group(1)))
        rest = tuple(int(i) if i else key for key, i in _PATH_PART.findall(match.group(2)))
        line = self.source.line(("links", written, *rest))
        return Problem(problem.message, f"links[{written}]{match.group(2)}", problem.file, line)


_LINK_FIELD = re.compile(r"^links\[(\d+)\](.*)$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def substitute(text: str, file: str, environ: Mapping[str, str] | None = None) -> tuple[str, list[Problem]]:
    """``${VAR}`` and ``${VAR:-default}`` (default when unset or empty; ``${VAR-default}``: when unset) from the
    environment, ``$$`` for a literal ``$``; comment lines are left alone. An unset variable without a default
    is a problem at its line."""
    import os

    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if "$" not in line or line.lstrip().startswith("#"):
            continue

        def value(match: re.Match[str], number: int = number) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            found = env.get(name)
            if found is None or (found == "" and ":-" in match.group(0)):
                if default is None:
                    problems.append(Problem(f"variable {name} is not set (give it a default: ${{{name}:-...}})",
                                            "", file, number))
                    return ""
                return default
            return found

        lines[number - 1] = _VARIABLE.sub(value, line)
    return "\n".join(lines), problems


def _without_extensions(data: Any) -> Any:
    """Every ``x-`` key dropped, at any depth (they hold YAML anchors for defaults)."""
    if isinstance(data, dict):
        return {k: _without_extensions(v) for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    if isinstance(data, list):
        return [_without_extensions(v) for v in data]
    return data


#: How close an unknown key must be to a known one to be suggested, and to be read as that key (a typo).
SUGGEST, TYPO = 0.7, 0.8


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one model class ``annotation`` holds directly (``X``, ``X | None``, ``X | str``); None otherwise."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return found[0] if len(found) == 1 else None
    return None


def _child_model(annotation: Any, key: Any) -> type[BaseModel] | None:
    """The model of ``data[key]`` for a field of ``annotation``: dict[str, X] and list[X] reach X."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2 or origin is list and args:
        return _model_in(args[-1])
    return _model_in(annotation) if key is None else None


class _Keys:
    """Unknown keys, each reported once with its likely meaning (``did you mean 'networks'?``). A key that is
    surely a typo of one not written beside it is read as that key, so nothing that follows from the typo
    (``unknown network 'front'`` after ``netwroks:``) is reported too; any other unknown key is dropped after
    its report (the schema does not report it again)."""

    def __init__(self, source: SourceMap, file: str) -> None:
        self.source, self.file = source, file
        self.problems: list[Problem] = []
        self.seen: set[tuple[int | None, str]] = set()

    def fix(self, data: Any, model: type[BaseModel], path: tuple[Any, ...]) -> Any:
        if not isinstance(data, dict):
            return data
        fields = {(f.alias or n): f.annotation for n, f in model.model_fields.items()}
        out = {}
        for key, value in data.items():
            if isinstance(key, str) and key not in fields:
                key = self._unknown(key, list(fields), data, path)
                if key is None:
                    continue
            out[key] = self._descend(value, fields[key], path + (key,))
        return out

    def _descend(self, value: Any, annotation: Any, path: tuple[Any, ...]) -> Any:
        if path == ("links",) and isinstance(value, list):
            return [self._link(v, path + (i,)) for i, v in enumerate(value)]
        direct = _model_in(annotation)
        if direct is not None:
            return self.fix(value, direct, path)
        item = _child_model(annotation, 0)
        if item is None:
            return value
        if isinstance(value, dict):
            return {k: self.fix(v, item, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fix(v, item, path + (i,)) for i, v in enumerate(value)]
        return value

    def _link(self, value: Any, path: tuple[Any, ...]) -> Any:
        """An entry of ``links:``, checked against the schema of its kind (an unknown kind is the schema's to
        report; the short form ``[a, b]`` has no keys)."""
        name = value.get("kind", kinds.LINK_KIND) if isinstance(value, dict) else None
        if not isinstance(name, str) or name not in kinds.KINDS:
            return value
        return self.fix(value, kinds.kind(name).schema(), path)

    def _unknown(self, key: str, fields: list[str], beside: dict[Any, Any], path: tuple[Any, ...]) -> str | None:
        """Report ``key``; the key it stands for when it is surely a typo of one not written ``beside`` it."""
        import difflib

        close = difflib.get_close_matches(key, fields, 1, SUGGEST)
        meant = close[0] if close else None
        message = f"unknown key '{key}'" + (f": did you mean '{meant}'?" if meant else "")
        line = self.source.line(path + (key,))
        if (line, message) not in self.seen:  # (once for the hosts a count: makes of one written host)
            self.seen.add((line, message))
            self.problems.append(Problem(message, field_path(path + (key,)), self.file, line))
        if meant is None or meant in beside or difflib.SequenceMatcher(None, key, meant).ratio() < TYPO:
            return None
        self.source.alias(path + (key,), path + (meant,))
        return meant


def _numbered(value: Any, i: int) -> Any:
    """``{i}`` replaced by ``i`` in every string (and map key) of a host's definition."""
    if isinstance(value, str):
        return value.replace("{i}", str(i))
    if isinstance(value, dict):
        return {_numbered(k, i): _numbered(v, i) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbered(v, i) for v in value]
    return value


#: At most this many hosts from one ``count:``.
MAX_COUNT = 4096


def _expand_counts(data: dict[str, Any], source: SourceMap, file: str) -> list[Problem]:
    """Each host with ``count: N`` becomes NAME1..NAMEN (in its place, same fields, ``{i}`` numbered)."""
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not any(isinstance(h, dict) and "count" in h for h in hosts.values()):
        return []
    problems: list[Problem] = []
    expanded: dict[Any, Any] = {}
    for name, host in hosts.items():
        if not (isinstance(host, dict) and "count" in host):
            expanded[name] = host
            continue
        count = host["count"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            loc = ("hosts", name, "count")
            problems.append(Problem(f"count must be a whole number from 1 to {MAX_COUNT}, not {count!r}",
                                    field_path(loc), file, source.line(loc)))
            count = 1
        body = {k: v for k, v in host.items() if k != "count"}
        for i in range(1, count + 1):
            expanded[f"{name}{i}"] = _numbered(body, i)
            source.alias(("hosts", name), ("hosts", f"{name}{i}"))
    data["hosts"] = expanded
    return problems


def parse_all(text: str, file: str = "<string>", environ: Mapping[str, str] | None = None) -> Parsed:
    """Parse lab-file text, going on past schema problems: every one is in ``problems``, and ``spec`` is the
    rest of the file (None only when nothing could be kept), for the later stages to check too. Before the
    schema: ``${VAR}`` substitution from ``environ`` (default: the environment), ``x-`` keys dropped, hosts
    with ``count:`` expanded. A YAML syntax error, or a document that is not a mapping, raises
    :class:`SpecError` (nothing to go on with)."""
    text, early = substitute(text, file, environ)
    data, source, duplicates = _read_yaml(text, file)
    early += duplicates
    data = _without_extensions(data)
    early += _expand_counts(data, source, file)
    keys = _Keys(source, file)
    data = keys.fix(data, LabSpec, ())
    early += keys.problems
    try:
        spec = lab_schema().model_validate(data)
        return Parsed(spec, source, early, {})
    except ValidationError as exc:
        # a line whose variable is unset is reported once, as that
        unset = {p.line for p in early if p.message.startswith("variable ")}
        problems = early + [p for p in _problems_from_validation(exc, source, file) if p.line not in unset]
        problems.sort(key=lambda p: (p.line is None, p.line or 0))  # in file order
        partial, link_index = _partial(data, [_data_loc(tuple(e["loc"])) for e in exc.errors()])
        return Parsed(partial, source, problems, link_index)


def parse(text: str, file: str = "<string>") -> tuple[LabSpec, SourceMap]:
    """Parse lab-file text; raise :class:`SpecError` with every schema problem found."""
    parsed = parse_all(text, file)
    if parsed.problems or parsed.spec is None:
        raise SpecError(parsed.problems)
    return parsed.spec, parsed.source


#: Bounds on what a lab file may be (a lab of thousands of hosts stays far inside them).
MAX_FILE_BYTES = 4 << 20
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_NODES = 500_000  # YAML nodes once aliases are expanded (a "billion laughs" file is refused, not expanded)


def read(path: str | Path) -> str:
    """The text of a lab file (``-`` is standard input): a regular file of UTF-8 text, at most
    :data:`MAX_FILE_BYTES`. A FIFO, a device (``/dev/zero``) or a directory is refused without being read."""
    file = str(path)
    if file == "-":
        import sys

        return _text(sys.stdin.buffer.read(MAX_FILE_BYTES + 1), "<stdin>")
    import os
    import stat

    try:
        info = os.stat(file)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError([Problem("not a regular file (a FIFO, device or directory): give a lab file, or - "
                                     "for standard input", "", file)])
        with open(file, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError([Problem(f"cannot read lab file: {exc.strerror}", "", file)]) from None
    return _text(data, file)


def _text(data: bytes, file: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise SpecError([Problem(f"larger than {MAX_FILE_BYTES >> 20} MiB: not a lab file", "", file)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = " (UTF-16? save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError([Problem(f"not UTF-8 text{hint}", "", file, line)]) from None
    return text.removeprefix("\ufeff")


def name_of(path: str | Path) -> str:
    """The lab name a lab file gives (``${VAR}`` substituted), without checking the rest of the file."""
    import os

    from . import dotenv

    file = str(path)
    text, problems = substitute(read(path), file, dotenv.environment(os.path.realpath(file) if file != "-" else ""))
    data, source, _ = _read_yaml(text, file)
    name = data.get("name")
    if not isinstance(name, str) or not LAB_NAME.fullmatch(name):
        what = f"lab name {name!r}: {name_rule(12)}" if isinstance(name, str) else "no lab name here (name:)"
        problems.append(Problem(what, "name", file, source.line(("name",))))
    if problems:
        raise SpecError(problems)
    assert isinstance(name, str)
    return name


def load(path: str | Path) -> tuple[LabSpec, SourceMap]:
    """Read and parse a lab file."""
    return parse(read(path), str(path))

"""Targets: anything on the machine that has a network namespace, named the same way everywhere.

    [LAB/]HOST            a host of a lab that is up (/run/netns/<lab>-<host>, + its UTS namespace; a
                          container host: the container's UTS and mount namespaces too)
    netns:NAME            any `ip netns` name (/run/netns/NAME; /etc/netns/NAME/* applies as in ip netns exec)
    pid:PID               the namespaces of a running process (/proc/PID/ns/*)
    container:NAME_OR_ID  a running Docker container (its init pid, asked from the Docker API socket)
    path:FILE             any nsfs file: /proc/PID/ns/net, a Docker SandboxKey, a bind mount

:func:`resolve` turns the text into a :class:`Target` (paths of its namespace files) and checks that it exists;
:meth:`Target.open` opens one of its namespace files and checks the kind with ``NS_GET_NSTYPE``, so a
plain file or a namespace of the wrong kind is refused with one clear line. Nothing here changes anything.

The Docker client is plain HTTP over the unix socket (``http.client``), imported only for ``container:``;
it replaces ``docker inspect -f '{{.State.Pid}}'``. Cheap to import (no ``typing``, ``json`` or
``dataclasses`` at load time): ``nslab exec`` may resolve targets.
"""

from __future__ import annotations

import fcntl
import os

from .. import linux, paths
from ..core import state
from ..drivers import procfs
from ..errors import DockerUnavailable, TargetError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
KINDS = ("netns", "pid", "container", "path")
USAGE = "[LAB/]HOST, netns:NAME, pid:PID, container:NAME_OR_ID or path:FILE"
_NS_NAMES = {"net": "network", "uts": "hostname (UTS)", "mnt": "mount", "pid": "PID"}


class Target:
    """Where a target's namespaces are. ``pid`` is set when a process represents it (pid:, container:).

    ``netns_name``: for /etc/netns/<name>/* (lab hosts and netns: targets); ``uts_path``: a lab host's kept
    UTS namespace; ``lab``/``host``/``container``: what it is, for messages. (A plain class, not a
    dataclass: importing dataclasses costs ``nslab exec`` milliseconds.)
    """

    __slots__ = ("text", "label", "net_path", "pid", "netns_name", "uts_path", "lab", "host", "container",
                 "inside", "env", "workdir")

    def __init__(
        self,
        text: str,
        label: str,
        net_path: str,
        pid: int | None = None,
        netns_name: str | None = None,
        uts_path: str | None = None,
        lab: str | None = None,
        host: str | None = None,
        container: str | None = None,
        inside: bool = False,
        env: tuple[str, ...] = (),
        workdir: str | None = None,
    ) -> None:
        self.text, self.label, self.net_path, self.pid = text, label, net_path, pid
        self.netns_name, self.uts_path = netns_name, uts_path
        self.lab, self.host, self.container = lab, host, container
        self.inside = inside  # a lab host that is a container: its filesystem too (mount namespace of ``pid``)
        self.env, self.workdir = env, workdir  # the container's (KEY=VALUE) and working directory, as docker exec

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = zip(self.__slots__, self._key(), strict=True)
        return "Target(" + ", ".join(f"{name}={value!r}" for name, value in fields if value is not None) + ")"

    def ns_path(self, kind: str) -> str:
        if kind == "net":
            return self.net_path
        if kind == "uts" and self.uts_path:
            return self.uts_path
        if self.pid is None:
            what = _NS_NAMES.get(kind, kind)
            raise TargetError(
                f"{self.text}: has no {what} namespace nslab can find (only a network namespace); "
                f"use a pid: or container: target for it"
            )
        return procfs.ns_path(self.pid, kind)

    def open(self, kind: str = "net") -> int:
        """Open one namespace file of the target (O_RDONLY, never creating), checking it is one."""
        return open_ns_file(self.ns_path(kind), kind, self.text)


def open_ns_file(path: str, kind: str, text: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.startswith(procfs.PROC + "/"):
            raise TargetError(f"{text}: the process has exited") from None
        raise TargetError(f"{text}: {path} does not exist") from None
    except OSError as exc:
        raise TargetError(f"{text}: cannot open {path}: {exc.strerror}") from None
    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        os.close(fd)
        raise TargetError(f"{text}: {path} is not a namespace file (nsfs)") from None
    if nstype != linux.NS_TYPES[kind]:
        os.close(fd)
        found = next((k for k, v in linux.NS_TYPES.items() if v == nstype), "other")
        raise TargetError(f"{text}: {path} is a {found} namespace, not a {kind} namespace")
    return fd


def parse(text: str) -> tuple[str, str]:
    """'pid:42' -> ('pid', '42'); 'web1' / 'lab/web1' -> ('host', ...)."""
    kind, sep, rest = text.partition(":")
    if not sep:
        return "host", text
    if kind not in KINDS:
        raise TargetError(f"{text}: unknown target kind '{kind}:' (targets: {USAGE})")
    if not rest:
        raise TargetError(f"{text}: nothing after '{kind}:' (targets: {USAGE})")
    return kind, rest


def resolve(text: str) -> Target:
    kind, rest = parse(text)
    if kind == "host":
        return lab_host(text)
    if kind == "netns":
        if "/" in rest or rest in (".", ".."):
            raise TargetError(f"{text}: not a namespace name")
        path = paths.netns_path(rest)
        if not os.path.exists(path):
            raise TargetError(f"{text}: no named network namespace '{rest}' (see 'ip netns list')")
        return Target(text, f"netns {rest}", path, netns_name=rest)
    if kind == "pid":
        if not rest.isdigit() or int(rest) <= 0:
            raise TargetError(f"{text}: '{rest}' is not a process id")
        pid = int(rest)
        if not procfs.exists(pid):
            raise TargetError(f"{text}: no process with pid {pid}")
        return Target(text, f"pid {pid}", procfs.ns_path(pid, "net"), pid=pid)
    if kind == "container":
        info = container(rest)
        pid = info["State"]["Pid"]
        name = info.get("Name", "").lstrip("/") or rest
        return Target(text, f"container {name}", procfs.ns_path(pid, "net"), pid=pid, container=name)
    # path:
    path = os.path.abspath(rest)
    if not os.path.exists(path):
        raise TargetError(f"{text}: {path} does not exist")
    return Target(text, f"path {path}", path)


def _owner(lab_name: str, host: str) -> state.LabState:
    """The recorded lab that has ``host``: lab ``lab_name``, or ("") the one lab that is up with that host."""
    if lab_name:
        recorded = state.LabState.load(lab_name)
        if recorded is None:
            from ..core.which import not_up

            raise not_up(lab_name)
        if host not in recorded.lab.hosts:
            from ..core.which import no_host, on_another_machine

            on_another_machine(recorded.lab, host)  # (a lab across machines: the host lives elsewhere)
            raise no_host(lab_name, host, recorded.lab.hosts)
        return recorded
    owners = [s for s in state.all_states() if host in s.lab.hosts]
    if not owners:
        raise TargetError(f"no lab that is up has a host '{host}' (targets: {USAGE})")
    if len(owners) > 1:
        names = ", ".join(s.lab.name for s in owners)
        raise TargetError(f"host '{host}' is in several labs ({names}): write LAB/{host}")
    return owners[0]


def lab_and_host(text: str) -> tuple[str, str]:
    """``[LAB/]HOST`` -> (lab, host) of a lab that is up, by name only: the host is not looked into (a stopped
    container host is found too)."""
    if not text or text.count("/") > 1:
        raise TargetError(f"'{text}' is not a target ({USAGE})")
    lab_name, _, host = text.rpartition("/")
    kept = state.kept_hosts(host, lab_name or None) if host not in ("", ".", "..") else []
    return (kept[0][0], host) if len(kept) == 1 else (_owner(lab_name, host).lab.name, host)


def lab_host(text: str) -> Target:
    """``[LAB/]HOST`` of a lab that is up; HOST alone must be unique among them."""
    if not text or text.count("/") > 1:
        raise TargetError(f"'{text}' is not a target ({USAGE})")
    lab_name, _, host = text.rpartition("/")
    kept = state.kept_hosts(host, lab_name or None) if host not in ("", ".", "..") else []
    if len(kept) == 1:  # the common case, without parsing state files
        lab_name, namespace = kept[0]
        return Target(
            text,
            f"{lab_name}/{host}",
            paths.netns_path(namespace),
            netns_name=namespace,
            uts_path=paths.uts_path(lab_name, host),
            lab=lab_name,
            host=host,
        )
    recorded = _owner(lab_name, host)
    lab_name = recorded.lab.name
    namespace = recorded.lab.hosts[host].namespace
    made = recorded.lab.hosts[host].container
    if made is not None:  # a container host: all of the container (its files, hostname), as docker exec
        info = container(made.name)
        pid = info["State"]["Pid"]
        config = info.get("Config") or {}
        return Target(text, f"{lab_name}/{host}", paths.netns_path(namespace), pid=pid,
                      uts_path=procfs.ns_path(pid, "uts"), lab=lab_name, host=host, container=made.name,
                      inside=True, env=tuple(config.get("Env") or ()), workdir=config.get("WorkingDir") or None)
    uts = paths.uts_path(lab_name, host)
    return Target(
        text,
        f"{lab_name}/{host}",
        paths.netns_path(namespace),
        netns_name=namespace,
        uts_path=uts if os.path.exists(uts) else None,
        lab=lab_name,
        host=host,
    )


# ----------------------------------------------------------------------------------------------
# Docker Engine API over its unix socket
# ----------------------------------------------------------------------------------------------


def docker_get(path: str, timeout: float = 5.0) -> tuple[int, Any]:
    """GET ``path`` from the Docker API; (status, decoded JSON). Raises DockerUnavailable. The transport is the
    Docker driver's (drivers/docker.py)."""
    from ..drivers.docker import LiveDocker

    return LiveDocker(None, timeout).request("GET", path)  # the socket: DOCKER_HOST, as the driver finds it


def container(name: str) -> dict[str, Any]:
    """The inspect document of a *running* container (by name or id)."""
    from urllib.parse import quote

    if name.startswith("/") or not name:
        raise TargetError(f"container:{name}: not a container name or id")
    try:
        status, data = docker_get(f"/containers/{quote(name, safe='')}/json")
    except DockerUnavailable as exc:
        raise TargetError(str(exc)) from None  # the user named a container: their input cannot be met, exit 2
    if status == 404:
        raise TargetError(f"container:{name}: no such Docker container")
    if status != 200 or not isinstance(data, dict):
        message = data.get("message") if isinstance(data, dict) else ""
        raise TargetError(f"container:{name}: Docker answered {status} {message}".rstrip())
    st = data.get("State") or {}
    if not st.get("Running") or not st.get("Pid"):
        raise TargetError(f"container:{name}: the container is not running (status: {st.get('Status', '?')})")
    return data


def running_containers() -> list[dict[str, Any]]:
    """Inspect documents of every running container; [] when Docker is not running."""
    try:
        status, listing = docker_get("/containers/json", timeout=2.0)
    except DockerUnavailable:
        return []
    if status != 200 or not isinstance(listing, list):
        return []
    out = []
    for item in listing:
        try:
            status, data = docker_get(f"/containers/{item['Id']}/json", timeout=2.0)
        except DockerUnavailable:
            break
        if status == 200 and isinstance(data, dict) and (data.get("State") or {}).get("Running"):
            out.append(data)
    return out

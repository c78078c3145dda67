"""Feature 'containers': Docker containers as lab hosts (``hosts.NAME.image``), and containers put on a lab
network with ``nslab connect``.

A container host is created with no network of its own (Docker's ``--network none``), labelled
``nslab.lab=<lab>`` and ``nslab.host=<host>``, named like the host's namespace (``<lab>-<host>``), and started;
its network namespace is then named ``/run/netns/<lab>-<host>`` (as ``ip netns attach`` does), so the wiring
gives it eth0.., addresses and routes exactly as a light host's, and ``ip netns exec`` works on it too. Its
hostname is the container's own (Docker's ``Hostname``); its ``/etc/hosts`` and ``/etc/resolv.conf`` (files
Docker keeps for it) are written with the lab's text after the dns feature rendered it.

The wiring plans the containers with the hosts (wiring.py): a new or changed container host gets
:class:`StartContainers` right before its namespace is wired, a removed or changed one :class:`RemoveContainers`
right after its name is dropped, so a changed image/command/env/volumes/user/workdir recreates that container
only. ``down`` removes every container labelled with the lab (also when the state or the lab file is gone) and
nothing else, and the interfaces ``nslab connect`` added to other containers.

Validated before any change, each a problem reported with the others (exit 2, as for a ``container:``
target when Docker is down): Docker answers on its socket (the problem names it), each image exists (or
``pull: true``), no container of another owner has the name, ``run:`` is not mixed with ``image:``.

Replaces: ``docker create --network none --label ... && docker start && ip netns attach NS PID``,
``docker rm -f``, ``docker ps -a --filter label=nslab.lab=LAB``, ``printf > /proc/PID/root/etc/hosts``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ...errors import NslabError, Problem
from ...model import Container
from ...naming import LINK_GROUP
from ...values import Value, field
from ..plan import Action, shell_quote
from . import DownContext, FeaturePlan, Report, UpContext, ValidateContext, contain, limits

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Host, Lab
    from ..difference import Difference
    from ..spec import HostSpec

KEY = "containers"
STATUS_KEY = "containers"
LAB_LABEL = "nslab.lab"
HOST_LABEL = "nslab.host"
#: The files of a container host written with the lab's text (the dns feature renders them).
DNS_FILES = ("hosts", "resolv.conf")
#: The command of a container host whose image has none (``docker import`` makes such images).
DEFAULT_COMMAND = ("/bin/sh",)
#: Spec fields that only a container host has.
CONTAINER_FIELDS = ("command", "volumes", "workdir", "pull")


class ContainersRecord(Value):
    """Container hosts (host -> container name), the interfaces ``nslab connect`` added to containers, and the
    container hosts stopped with ``nslab stop`` (their containers stopped on purpose: not drift)."""

    hosts: dict[str, str] = field(default_factory=dict)
    #: one entry per ``nslab connect``: container, network, ifname, address, veth, target
    connected: list[dict[str, str]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "connected": self.connected, "stopped": self.stopped}

    @classmethod
    def from_json(cls, data: Any) -> ContainersRecord:
        data = data if isinstance(data, dict) else {}
        return cls(dict(data.get("hosts") or {}), list(data.get("connected") or []),
                   [str(h) for h in data.get("stopped") or []])


# --- resolve and validate ------------------------------------------------------------------------------------
def resolve(name: str, host: HostSpec, namespace: str, report: Report) -> Container | None:
    """What host ``name`` (a container host when it has ``image:``) is created from, named ``namespace``;
    None for a light host. Container fields on a light host, and ``run:`` on a container host, are problems."""
    if host.image is None:
        for key in CONTAINER_FIELDS:
            if key in host.model_fields_set:
                report(("hosts", name, key), "only a container host has this: give the host an image")
        return None
    if host.commands():
        report(("hosts", name, "run"), "a container host runs its image's command: use command:, not run:")
    import shlex

    command = shlex.split(host.command) if isinstance(host.command, str) else host.command  # as compose does
    return Container(name=namespace, image=host.image, command=tuple(command) if command is not None else None,
                     env=tuple(host.env.items()), volumes=tuple(host.volumes), user=host.user,
                     workdir=host.workdir, pull=host.pull, contain=contain.resolve(name, host, report, light=False))


def validate(ctx: ValidateContext) -> list[Problem]:
    hosts = [h for h in ctx.lab.hosts.values() if h.container is not None]
    if hosts and ctx.drivers is not None:
        return _docker_problems(ctx, hosts)
    return []


def _docker_problems(ctx: ValidateContext, hosts: list[Host]) -> list[Problem]:
    """Docker answers, each image is there (or may be pulled), no foreign container has a host's name."""
    from ...errors import field_path

    assert ctx.drivers is not None
    docker = ctx.drivers.docker
    problems: list[Problem] = []
    for host in hosts:
        assert host.container is not None
        path: tuple[Any, ...] = ("hosts", host.name, "image")
        try:
            if not host.container.pull and not docker.image_exists(host.container.image):
                problems.append(Problem(
                    f"no image {host.container.image} in Docker (on {docker.socket}); build or pull it first, "
                    f"or set pull: true", field_path(path), ctx.file, ctx.source.line(path)))
            found = docker.inspect(host.container.name)
        except NslabError as exc:  # Docker not running: one problem, naming the socket
            return [Problem(str(exc), field_path(path), ctx.file, ctx.source.line(path))]
        labels = ((found or {}).get("Config") or {}).get("Labels") or {}
        if found is not None and labels.get(LAB_LABEL) != ctx.lab.name:
            problems.append(Problem(
                f"a Docker container named {host.container.name} exists and is not this lab's; remove or rename "
                f"it", field_path(("hosts", host.name)), ctx.file, ctx.source.line(("hosts", host.name))))
    return problems


# --- the container as Docker creates it ----------------------------------------------------------------------
def container_config(lab: str, host: Host) -> dict[str, Any]:
    """The Engine API body of ``docker create --network none --hostname H --label ... IMAGE [CMD]``."""
    c = host.container
    assert c is not None
    config: dict[str, Any] = {
        "Image": c.image,
        "Hostname": host.hostname,
        "Labels": {LAB_LABEL: lab, HOST_LABEL: host.name},
        "Env": [f"{k}={v}" for k, v in c.env],
        "HostConfig": {"NetworkMode": "none", "Binds": list(c.volumes)},
        # as `docker run -dit`: an image whose command is a shell keeps running, a host to exec into
        "Tty": True,
        "OpenStdin": True,
    }
    if c.command is not None:
        config["Cmd"] = list(c.command)
    if c.user:
        config["User"] = c.user
    if c.workdir:
        config["WorkingDir"] = c.workdir
    config["HostConfig"].update(contain.docker_host_config(c.contain))
    config["HostConfig"].update(limits.docker_host_config(host.resources))
    return config


def _create_command(lab: str, host: Host) -> str:
    c = host.container
    assert c is not None
    words = ["docker create -it --name", c.name, "--network none --hostname", host.hostname,
             f"--label {LAB_LABEL}={lab} --label {HOST_LABEL}={host.name}"]
    words += [f"-e {shell_quote(f'{k}={v}')}" for k, v in c.env]
    words += [f"-v {shell_quote(v)}" for v in c.volumes]
    words += [f"-u {shell_quote(c.user)}"] if c.user else []
    words += [f"-w {shell_quote(c.workdir)}"] if c.workdir else []
    words += contain.docker_flags(c.contain)
    words.append(shell_quote(c.image))
    words += [shell_quote(w) for w in c.command or ()]
    return " ".join(words)


# --- actions -------------------------------------------------------------------------------------------------
class StartContainers(Action):
    """Create and start each container host, and name its network namespace (the wiring does the rest)."""

    lab: Lab
    hosts: tuple[Host, ...]

    def commands(self) -> list[str]:
        out: list[str] = []
        for h in self.hosts:
            assert h.container is not None
            if h.container.pull:
                out.append(f"docker image inspect {h.container.image} >/dev/null || docker pull {h.container.image}")
            out += [_create_command(self.lab.name, h), f"docker start {h.container.name}",
                    f"ip netns attach {h.namespace} $(docker inspect -f '{{{{.State.Pid}}}}' {h.container.name})"]
        return out

    def summary(self) -> str:
        return f"start {len(self.hosts)} container(s): {', '.join(h.name for h in self.hosts)}"

    def apply(self, drivers: Drivers) -> Action | None:
        docker = drivers.docker
        done: list[Host] = []
        try:
            for h in self.hosts:
                c = h.container
                assert c is not None
                if c.pull and not docker.image_exists(c.image):
                    docker.pull(c.image)
                _remove_ours(drivers, self.lab.name, c.name)  # a leftover of a killed run: ours by its label
                done.append(h)
                config = container_config(self.lab.name, h)
                if c.command is None and not docker.image_command(c.image):
                    config["Cmd"] = list(DEFAULT_COMMAND)  # an imported image (no CMD): a shell kept open
                docker.create(c.name, config)
                docker.name_netns(h.namespace, docker.start(c.name))
        except BaseException:
            RemoveContainers(self.lab, tuple(done)).teardown(drivers)  # the failure raised is the one to tell
            raise
        return RemoveContainers(self.lab, self.hosts)


def _remove_ours(drivers: Drivers, lab: str, name: str) -> None:
    found = drivers.docker.inspect(name)
    if found is not None and ((found.get("Config") or {}).get("Labels") or {}).get(LAB_LABEL) == lab:
        _raise_on(drivers.docker.remove(name))


def _raise_on(failures: list[str]) -> None:
    if failures:
        from ...errors import KernelError

        raise KernelError("; ".join(failures))


class RemoveContainers(Action):
    """``docker rm -f`` of container hosts (and their namespace names, if still there); the inverse starts them
    again. ``names``: containers found only by their label (``down`` without the lab's record)."""

    lab: Lab
    hosts: tuple[Host, ...]
    names: tuple[str, ...] = ()

    def _names(self) -> list[str]:
        return [h.container.name for h in self.hosts if h.container is not None] + list(self.names)

    def commands(self) -> list[str]:
        out = [f"ip netns del {h.namespace} 2>/dev/null || true" for h in self.hosts]
        return out + [f"docker rm -f {name}" for name in self._names()]

    def summary(self) -> str:
        return f"remove {len(self._names())} container(s)"

    def teardown(self, drivers: Drivers) -> list[str]:
        # The kernel dismantles a dead container's namespace (and the veths in it) later, in its own time:
        # the machine-side ends go now, so `down` returns with no link of the lab left.
        veths = {i.host_veth for h in self.hosts for i in h.interfaces if i.host_veth}
        failures: list[str] = []
        if veths:
            failures += drivers.kernel.remove_links([lk.name for lk in drivers.kernel.owned_links()
                                                     if lk.name in veths])
        failures += [f for name in self._names() for f in drivers.docker.remove(name)]
        named = drivers.kernel.named_namespaces() if self.hosts else frozenset()
        names = [h.namespace for h in self.hosts if h.namespace in named]
        return failures + (drivers.kernel.remove_namespaces(names) if names else [])

    def apply(self, drivers: Drivers) -> Action | None:
        _raise_on(self.teardown(drivers))
        return StartContainers(self.lab, self.hosts) if self.hosts else None


class StopContainers(Action):
    """``docker stop`` of container hosts (``nslab stop``): the container and its filesystem stay, and so does
    its namespace's name (the old namespace, pinned, keeps the host's interfaces, down). The inverse starts
    them again (:class:`ResumeContainers`)."""

    lab: Lab
    hosts: tuple[Host, ...]

    def commands(self) -> list[str]:
        return [f"docker stop {h.container.name}" for h in self.hosts if h.container is not None]

    def summary(self) -> str:
        return f"stop {len(self.hosts)} container(s): {', '.join(h.name for h in self.hosts)}"

    def apply(self, drivers: Drivers) -> Action | None:
        for h in self.hosts:
            assert h.container is not None
            drivers.docker.stop(h.container.name)
        return ResumeContainers(self.lab, self.hosts)


class ResumeContainers(Action):
    """``docker start`` of stopped container hosts (not made again: their filesystem stays), and their new
    network namespace named (the old name was dropped before, with the host: the wiring then makes its
    interfaces, as for a host made again). The inverse stops them."""

    lab: Lab
    hosts: tuple[Host, ...]

    def commands(self) -> list[str]:
        out: list[str] = []
        for h in self.hosts:
            assert h.container is not None
            out += [f"docker start {h.container.name}",
                    f"ip netns attach {h.namespace} $(docker inspect -f '{{{{.State.Pid}}}}' {h.container.name})"]
        return out

    def summary(self) -> str:
        return f"start {len(self.hosts)} stopped container(s): {', '.join(h.name for h in self.hosts)}"

    def apply(self, drivers: Drivers) -> Action | None:
        done: list[Host] = []
        try:
            for h in self.hosts:
                assert h.container is not None
                pid = drivers.docker.start(h.container.name)
                done.append(h)
                drivers.docker.name_netns(h.namespace, pid)
        except BaseException:
            StopContainers(self.lab, tuple(done)).apply(drivers)
            raise
        return StopContainers(self.lab, self.hosts)


class WriteContainerFiles(Action):
    """The lab's /etc/hosts and /etc/resolv.conf of each container host, written inside the container (in place:
    Docker bind-mounts them). ``files``: container -> file name -> text; ``previous``: what they said."""

    files: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    previous: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def commands(self) -> list[str]:
        out = []
        for container, files in self.files:
            for name, text in files:
                body = " ".join(shell_quote(line) for line in text.splitlines())
                pid = f"$(docker inspect -f '{{{{.State.Pid}}}}' {container})"
                out.append(f"printf '%s\\n' {body} > /proc/{pid}/root/etc/{name}")
        return out

    def summary(self) -> str:
        return f"write /etc/hosts and resolv.conf of {len(self.files)} container(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        done: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        before = dict(self.previous)
        try:
            for container, files in self.files:
                for name, text in files:
                    drivers.docker.write_file(container, f"/etc/{name}", text)
                done.append((container, before.get(container, ())))
        except BaseException:
            WriteContainerFiles(tuple(done)).apply(drivers)
            raise
        return WriteContainerFiles(tuple(done)) if any(files for _, files in done) else None


# --- plans ---------------------------------------------------------------------------------------------------
def wiring_steps(before: Lab, desired: Lab, removed: list[Host], added: list[Host],
                 resumed: frozenset[str] = frozenset()) -> tuple[list[Action], list[Action]]:
    """(after the hosts' removal, before their addition): the containers of the hosts the wiring removes and
    adds (wiring.py places them). ``resumed``: hosts whose container is stopped and stays as it is: started
    again, not made again (``nslab start``, or a container stopped by hand)."""
    gone = tuple(h for h in removed if h.container is not None and h.name not in resumed)
    new = tuple(h for h in added if h.container is not None and h.name not in resumed)
    again = tuple(h for h in added if h.container is not None and h.name in resumed)
    steps: list[Action] = [StartContainers(desired, new)] if new else []
    steps += [ResumeContainers(desired, again)] if again else []
    return ([RemoveContainers(before, gone)] if gone else []), steps


def plan_up(ctx: UpContext) -> FeaturePlan:
    lab = ctx.lab
    old = ContainersRecord.from_json(ctx.record)
    hosts = {h.name: h.container.name for h in lab.hosts.values() if h.container is not None}
    stopped = sorted(h for h in ctx.stopped if h in hosts)
    record = ContainersRecord(hosts, old.connected, stopped)
    if not hosts:
        return FeaturePlan(record=record)
    # (a stopped host's files are written when it starts: the wiring makes it again then)
    after = _files(ctx, {name: c for name, c in hosts.items() if name not in stopped})
    # A stopped host whose container the wiring made again (it changed in the file) stays stopped.
    again = tuple(lab.hosts[h] for h in stopped if h in ctx.recreated)
    after += [StopContainers(lab, again)] if again else []
    return FeaturePlan(after=after, record=record)


def _files(ctx: UpContext, hosts: dict[str, str]) -> list[Action]:
    """The /etc files of the running container hosts ``hosts`` (host -> container) that differ from the lab's."""
    from . import dns

    lab = ctx.lab
    texts = dns.files(lab, dns.choices(lab, ctx.drivers))
    writes: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    previous: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for name, container in hosts.items():
        want = texts[lab.hosts[name].namespace]
        now: dict[str, str | None] = {}
        if name not in ctx.recreated:
            now = {f: ctx.drivers.docker.read_file(container, f"/etc/{f}") for f in DNS_FILES}
        changed = tuple((f, want[f]) for f in DNS_FILES if now.get(f) != want[f])
        if changed:
            writes.append((container, changed))
            previous.append((container, tuple((f, t) for f, t in now.items() if t is not None)))
    return [WriteContainerFiles(tuple(writes), tuple(previous))] if writes else []


def plan_down(ctx: DownContext) -> FeaturePlan:
    """Every container labelled with the lab (by the record, the recorded lab and Docker's label filter)."""
    record = ContainersRecord.from_json(ctx.record)
    hosts = tuple(h for h in (ctx.lab.hosts.values() if ctx.lab else ()) if h.container is not None)
    extra = _others(ctx, record, hosts)
    before: list[Action] = []
    if record.connected:
        before.append(Disconnect(tuple(e["veth"] for e in record.connected)))
    if hosts or extra:
        lab = ctx.lab if ctx.lab is not None else _empty(ctx.name)
        before.append(RemoveContainers(lab, hosts, tuple(sorted(extra))))
    return FeaturePlan(before=before)


def _others(ctx: DownContext, record: ContainersRecord, hosts: tuple[Host, ...]) -> set[str]:
    """The lab's containers that are not its hosts' now: recorded ones and those with the lab's label."""
    names = {h.container.name for h in hosts if h.container is not None}
    extra = set(record.hosts.values()) - names
    if hosts or record.hosts or record.connected or (ctx.lab is None and _docker_answers()):
        extra |= _labelled(ctx) - names
    return extra


def _labelled(ctx: DownContext) -> set[str]:
    """The names of the containers Docker has with the lab's label (none when Docker is gone: the recorded
    names are tried then, and fail, each reported)."""
    try:
        return {n.lstrip("/") for entry in ctx.drivers.docker.labelled({LAB_LABEL: ctx.name})
                for n in entry.get("Names") or []}
    except NslabError:
        return set()


def _docker_answers() -> bool:
    """A Docker socket is there (a lab without a record: its containers are looked for by label)."""
    import os

    from ...drivers.docker import docker_socket

    return os.path.exists(docker_socket())


def _empty(name: str) -> Lab:
    from ...model import Lab

    return Lab(name=name, source="", networks={}, hosts={})


# --- nslab connect / disconnect (core/connect.py plans them) ----------------------------------------------------
class ConnectVeth(Action):
    """The veth ``nslab connect`` gives another namespace (a container's): ``ifname`` inside it (ifindex
    ``index``, ``mac``, ``address``, up) and ``veth`` on the machine, both in nslab's link group. The inverse
    removes ``veth`` (its peer inside goes with it)."""

    net_path: str  # the namespace's nsfs file: /proc/PID/ns/net, /run/netns/NAME, ...
    ifname: str
    index: int
    mac: str
    address: ipaddress.IPv4Interface
    veth: str

    def commands(self) -> list[str]:
        ip = _ip_inside(self.net_path)
        broadcast = " broadcast +" if self.address.network.prefixlen < 31 else ""  # as the driver sets it
        return [f"{ip} link add {self.ifname} index {self.index} address {self.mac} group {LINK_GROUP} type veth "
                f"peer name {self.veth} group {LINK_GROUP} netns /proc/$$/ns/net",
                f"{ip} addr add {self.address}{broadcast} dev {self.ifname}",
                f"{ip} link set {self.ifname} up"]

    def summary(self) -> str:
        return f"add {self.ifname} ({self.address}) in {self.net_path}"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.kernel.add_veth_at(self.net_path, self.ifname, self.index, self.mac, self.address, self.veth)
        return Disconnect((self.veth,))


def _ip_inside(net_path: str) -> str:
    """``ip`` run inside the namespace at ``net_path``: ``ip -n NAME`` for a named one, else through nsenter."""
    from shlex import quote

    from ...paths import NETNS_DIR

    directory, _, name = net_path.rpartition("/")
    return f"ip -n {quote(name)}" if directory == NETNS_DIR else f"nsenter --net={quote(net_path)} ip"


class AttachConnected(Action):
    """``ip link set VETH master BRIDGE alias ALIAS up``: the machine end of a connected veth on the lab's
    bridge, with its ownership mark. Nothing to undo of its own: the veth's removal (the inverse of
    :class:`ConnectVeth`, earlier in the journal) takes the port with it."""

    veth: str
    bridge: str
    alias: str

    def commands(self) -> list[str]:
        from shlex import quote

        return [f"ip link set {self.veth} master {self.bridge} alias {quote(self.alias)} up"]

    def summary(self) -> str:
        return f"attach {self.veth} to {self.bridge}"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.kernel.attach_to_bridge(self.veth, self.bridge, self.alias)
        return None


class Disconnect(Action):
    """``ip link del VETH``: the machine-side ends of what ``nslab connect`` added (the peer inside goes too)."""

    veths: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip link del {v}" for v in self.veths]

    def summary(self) -> str:
        return f"disconnect {len(self.veths)} container(s)"

    def teardown(self, drivers: Drivers) -> list[str]:
        present = {lk.name for lk in drivers.kernel.owned_links()}
        return drivers.kernel.remove_links([v for v in self.veths if v in present])

    def apply(self, drivers: Drivers) -> Action | None:
        _raise_on(self.teardown(drivers))
        return None


def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    """Each container host whose container is gone (``up`` makes it again, with its host's wiring) or not
    running (``up`` starts it again, its filesystem kept, and wires its host anew); not those stopped on
    purpose (``nslab stop``)."""
    from ..difference import Difference

    out: list[Difference] = []
    stopped = set(ContainersRecord.from_json(record).stopped)
    for h in lab.hosts.values():
        if h.container is None or h.name in stopped:
            continue
        try:
            info = drivers.docker.inspect(h.container.name)
        except NslabError as exc:
            out.append(Difference(f"host {h.name}: cannot ask Docker about container {h.container.name}: {exc}",
                                  "host", host=h.name))
            continue
        st = (info or {}).get("State") or {}
        if info is None:
            out.append(Difference(f"host {h.name}: container {h.container.name} is gone", "host", host=h.name))
        elif not st.get("Running"):
            out.append(Difference(f"host {h.name}: container {h.container.name} is {st.get('Status', 'stopped')}",
                                  "container", host=h.name))
    return out


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    rec = ContainersRecord.from_json(record)
    if not rec.hosts and not rec.connected:
        return {}
    out: dict[str, Any] = {}
    for host, name in rec.hosts.items():
        try:
            info = drivers.docker.inspect(name)
        except NslabError as exc:
            out[host] = {"name": name, "state": "unknown", "error": str(exc)}
            continue
        st = (info or {}).get("State") or {}
        out[host] = {"name": name, "image": ((info or {}).get("Config") or {}).get("Image"),
                     "state": st.get("Status", "missing") if info else "missing", "id": (info or {}).get("Id")}
    return {"hosts": out, "connected": rec.connected}

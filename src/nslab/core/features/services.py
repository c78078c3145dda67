"""Feature 'services': the ``run:`` commands of hosts, and the DNS forwarder, run by one supervisor per lab.

``python -m nslab.daemons.supervise LAB`` (supervise.py) starts each service inside its host (network, hostname,
/etc/netns files), restarts it by its ``restart:`` policy, logs it, and tracks its whole process tree in a
cgroup (drivers/process.py). A lab without services and without a forwarder has no process at all. A converge
keeps every service whose definition did not change running: the supervisor is handed its new config (SIGHUP)
and stops only the services that changed or must start again inside their host (before the wiring changes),
then starts the new and changed ones (at the end); a rollback hands it the former config again. A service must
start again when the wiring makes its host again (a new network namespace), when its hostname namespace is
pinned anew, or when its process runs outside them or its cgroup (:func:`strays`, which ``status`` reports as
drift). The DNS forwarder and the ``[::1]`` relay run in the machine's namespaces (the forwarder bound with
IP_FREEBIND to the gateways' addresses): a bridge or host made again does not strand them.
``down`` stops it, and whatever else still runs inside the lab's hosts, before the namespaces go.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from ...errors import KernelError
from ...model import NO_CONTAINMENT, Containment, Healthcheck, Service
from ...naming import blake2s
from ...paths import log_path, netns_path, services_status, supervisor_config, uts_path
from ...records import decode, encode
from ...values import Value
from ..plan import Action, shell_quote
from . import DownContext, FeaturePlan, Report, UpContext, contain, dns, limits
from .firewall.record import desired

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Lab
    from ..difference import Difference
    from ..spec import HostSpec, LabSpec

KEY = "services"
STATUS_KEY = "hostsetup"
Supervisor = dict[str, Any]  # the supervisor's config as written for it, plus its pid and start time


class ServicesRecord(Value):
    supervisor: Supervisor | None = None

    def to_json(self) -> dict[str, Any]:
        return {"supervisor": self.supervisor}

    @classmethod
    def from_json(cls, data: Any) -> ServicesRecord:
        supervisor = data.get("supervisor") if isinstance(data, dict) else None
        return cls(supervisor if isinstance(supervisor, dict) else None)


def resolve(name: str, host: HostSpec, report: Report, base: str = "") -> tuple[Service, ...]:
    """Host ``name``'s ``run:`` commands, one service each, with its ``restart:`` policy, environment,
    healthcheck and what it depends on; an empty command is a problem. ``base``: the lab file's folder
    (``env_file`` paths are relative to it)."""
    commands = host.commands()
    for i, command in enumerate(commands):
        if not command.strip():
            report(("hosts", name, "run") if isinstance(host.run, str) else ("hosts", name, "run", i),
                   "an empty command")
    _check_fields(name, host, report)
    health = _health(host)
    env = tuple(host.env.items()) if host.image is None else ()
    files = tuple(os.path.join(base or os.getcwd(), f) for f in host.env_file)
    for i, path in enumerate(files):
        if not os.path.isfile(path):
            report(("hosts", name, "env_file", i), f"no file {path}")
    depends = tuple((other, d.condition) for other, d in host.depends_on.items())
    return tuple(Service(command, host.restart, env, files, health, depends) for command in commands)


def _check_fields(name: str, host: HostSpec, report: Report) -> None:
    """healthcheck, depends_on and env_file belong to a light host with services; restart: unhealthy needs a
    healthcheck."""
    for key in ("healthcheck", "depends_on", "env_file"):
        if key not in host.model_fields_set:
            continue
        if host.image is not None:
            report(("hosts", name, key), "a light host's field: a container host has none yet")
        elif not host.commands():
            report(("hosts", name, key), "only a host with services has this: give it run:")
    if host.restart == "unhealthy" and host.healthcheck is None and host.commands():
        report(("hosts", name, "restart"), "restart: unhealthy needs a healthcheck:")


def _health(host: HostSpec) -> Healthcheck | None:
    check = host.healthcheck
    if check is None:
        return None
    probe, target = next((k, getattr(check, k)) for k in ("tcp", "http", "exec") if getattr(check, k) is not None)
    return Healthcheck(probe, str(target), check.status, check.interval, check.timeout, check.retries,
                       check.start_period)


def check_order(spec: LabSpec, report: Report) -> None:
    """``depends_on`` names hosts of the lab with services, and goes round in no circle."""
    for name, host in spec.hosts.items():
        for other, depend in host.depends_on.items():
            target = spec.hosts.get(other)
            if target is None:
                report(("hosts", name, "depends_on", other), f"unknown host '{other}'")
            elif other == name:
                report(("hosts", name, "depends_on", other), "a host cannot depend on itself")
            elif not target.commands():
                report(("hosts", name, "depends_on", other), f"host '{other}' runs no services (no run:)")
            elif depend.condition == "healthy" and target.healthcheck is None:
                report(("hosts", name, "depends_on", other), f"host '{other}' has no healthcheck: to be healthy")
    for cycle in _cycles({n: [o for o in h.depends_on if o in spec.hosts and o != n] for n, h in spec.hosts.items()}):
        report(("hosts", cycle[0], "depends_on", cycle[1]), f"a cycle: {' -> '.join([*cycle, cycle[0]])}")


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle of ``edges`` per strongly tied group (depth-first; each cycle as the hosts in order)."""
    found: list[list[str]] = []
    done: set[str] = set()
    for start in edges:
        path: list[str] = []
        stack = [(start, iter(edges[start]))]
        on_path = {start}
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                found.append(path[path.index(child):])
                done.update(path)
                break
            elif child not in done:
                stack.append((child, iter(edges[child])))
                on_path.add(child)
                path.append(child)
    return found


def desired_services(lab: Lab, stopped: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The services of every host but those ``stopped`` (features/hoststate.py)."""
    services = []
    for host in lab.hosts.values():
        if host.name in stopped:
            continue
        for n, service in enumerate(host.services, start=1):
            services.append({
                "id": f"{host.name}.{n}" if len(host.services) > 1 else host.name,
                "host": host.name, "n": n, "lab": lab.name, "command": service.command, "restart": service.restart,
                "namespace": host.namespace, "uts": uts_path(lab.name, host.name),
                "log": log_path(lab.name, host.name, n), **contain.service_config(lab.name, host.name, host.contain),
                **_extras(service, host.interfaces[0].address.ip if host.interfaces else None),
                **limits.service_config(host.resources),
            })
    return services


def _extras(service: Service, address: object) -> dict[str, Any]:
    """A service's environment, healthcheck and dependencies as its config has them (keys only when set, so
    a service without them keeps the config, and the process, it had; ``address``: the host's first, which a tcp
    probe tries after 127.0.0.1). ``env_file`` values stay in their
    files (the child reads them): the config names the files and a stamp of each, so an edit restarts it."""
    out: dict[str, Any] = {}
    if service.env:
        out["env"] = dict(service.env)
    if service.env_files:
        out["env_file"] = [[path, _stamp(path)] for path in service.env_files]
    if service.health is not None:
        out["health"] = {**encode(service.health), "address": str(address) if address else None}
    if service.depends_on:
        out["depends_on"] = [list(d) for d in service.depends_on]
    return out


def _stamp(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return "missing"
    return f"{info.st_size}:{info.st_mtime_ns}"


def _digest(services: list[dict[str, Any]], forward: Any, proxy: Any = None) -> str:
    text = json.dumps([services, forward, *([proxy] if proxy else [])], sort_keys=True)
    return blake2s(text.encode()).hexdigest()[:16]


def _private_pids(service: dict[str, Any]) -> bool:
    return bool((service.get("contain") or {}).get("pid") == "private")


def _service_command(service: dict[str, Any]) -> str:
    """What the supervisor does to start a service, as the command a person would type (contain.py: with the
    mount namespace, mounts and ``setpriv`` of a contained one)."""
    enter = f"nsenter --net={netns_path(service['namespace'])} --uts={service['uts']}"
    if "contain" not in service:
        return f"{enter} sh -c {shell_quote(service['command'])}{_environment_note(service)}"
    return contain.commands(decode(Containment, service["contain"]), enter, service["command"],
                            service.get("private_tmp"), f"/proc/<{service['host']}'s nslab-init>/ns/pid"
                            ) + _environment_note(service)


def _environment_note(service: dict[str, Any]) -> str:
    """What the service's environment adds: ``env:`` as written, ``env_file`` by name only (its values are
    read when it starts, never printed)."""
    words = [shell_quote(f"{k}={v}") for k, v in (service.get("env") or {}).items()]
    words += [f"<the variables of {path}>" for path, _stamp in service.get("env_file") or ()]
    return f"  # environment: {' '.join(words)}" if words else ""


# --- actions -------------------------------------------------------------------------------------------------
class StartSupervisor(Action):
    """Start the lab's supervisor with ``config``; ``record`` receives it (with its pid) once it runs."""

    lab: str
    config: Supervisor
    record: ServicesRecord

    def commands(self) -> list[str]:
        out = []
        forward = self.config.get("forward")
        if forward:
            out.append(f"# DNS forwarder on {', '.join(forward['listen'])}:53 -> {', '.join(forward['upstreams'])} "
                       "(in the lab's supervisor)")
        for p in self.config.get("proxy", ()):
            out.append(f"# relay [::1]:{p['port']}/{p['proto']} -> [{p['to']}]:{p['to_port']} "
                       "(in the lab's supervisor)")
        for host in sorted({s["host"] for s in self.config["services"] if _private_pids(s)}):
            out.append(f"# {host}: a PID namespace of its own for its services: unshare --pid --fork -- nslab-init "
                       "(reaps zombies; in the lab's supervisor)")
        for s in self.config["services"]:
            out.append(f"# service {s['id']} (restart: {s['restart']}, log {s['log']}): {_service_command(s)}")
            if "resources" in s and s.get("cgroup"):
                out += [f"#   {line}" for line in limits.commands(s["resources"], s["cgroup"])]
        out.append(f"# python -m nslab.daemons.supervise {self.lab}  # runs and supervises the above")
        return out

    def summary(self) -> str:
        ids = [s["id"] for s in self.config["services"]]
        if ids:
            return f"start services: {', '.join(ids)}"
        return "start the DNS forwarder" if self.config.get("forward") else "start the [::1] port relay"

    def apply(self, drivers: Drivers) -> Action | None:
        self.record.supervisor = drivers.processes.start_supervisor(self.lab, self.config)
        return StopSupervisor(self.lab, self.record.supervisor)


class StopSupervisor(Action):
    """Stop the supervisor and every process tree of every service; the inverse starts the same services."""

    lab: str
    supervisor: Supervisor

    def commands(self) -> list[str]:
        ids = ", ".join(s["id"] for s in self.supervisor.get("services", [])) or "none"
        return [f"kill {self.supervisor.get('pid')}  # the lab's supervisor: stops services ({ids}) with their trees"]

    def summary(self) -> str:
        ids = [s["id"] for s in self.supervisor.get("services", [])]
        return f"stop services: {', '.join(ids)}" if ids else "stop the DNS forwarder"

    def apply(self, drivers: Drivers) -> Action | None:
        failures = drivers.processes.stop_supervisor(self.lab, self.supervisor)
        if failures:
            raise KernelError("; ".join(failures))
        config = {k: v for k, v in self.supervisor.items() if k not in ("pid", "start")}
        return StartSupervisor(self.lab, config, ServicesRecord())

    def teardown(self, drivers: Drivers) -> list[str]:
        return drivers.processes.stop_supervisor(self.lab, self.supervisor)


class StopInside(Action):
    """What still runs in the lab's hosts after its services stopped (``nslab exec -d``, a shell): stopped like
    a container's processes (SIGTERM, then SIGKILL), else it would keep a namespace and its veth alive."""

    namespaces: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip netns pids {ns} | xargs -r kill" for ns in self.namespaces]

    def summary(self) -> str:
        return "stop processes inside the hosts"

    def apply(self, drivers: Drivers) -> Action | None:
        failures = drivers.processes.stop_inside(list(self.namespaces))
        if failures:
            raise KernelError("; ".join(failures))
        return None

    def teardown(self, drivers: Drivers) -> list[str]:
        return drivers.processes.stop_inside(list(self.namespaces))


class ReloadServices(Action):
    """Hand the running supervisor a new config (SIGHUP): the services whose definition changed or that left
    stop, new and changed ones start, the others keep running untouched. The inverse hands back the former."""

    lab: str
    current: Supervisor  # the running supervisor's record (config + pid)
    config: Supervisor  # what it is to run
    record: ServicesRecord

    def commands(self) -> list[str]:
        new = {s["id"]: s for s in self.config.get("services", [])}
        stop, start = self._changes()
        out = [f"kill -HUP {self.current.get('pid')}  # the lab's supervisor re-reads its config: "
               f"stops {', '.join(stop) or 'nothing'}, starts {', '.join(start) or 'nothing'}"]
        out += [f"# service {i} (restart: {new[i]['restart']}): {_service_command(new[i])}" for i in start]
        return out

    def summary(self) -> str:
        stop, start = self._changes()
        restarted = [i for i in stop if i in start]
        parts = [f"restart {', '.join(restarted)}"] if restarted else []
        parts += [f"stop {', '.join(i for i in stop if i not in start)}"] if set(stop) - set(start) else []
        parts += [f"start {', '.join(i for i in start if i not in stop)}"] if set(start) - set(stop) else []
        return "services: " + ("; ".join(parts) or "the DNS forwarder changes")

    def _changes(self) -> tuple[list[str], list[str]]:
        """(ids that stop, ids that start): a changed service is in both."""
        old = {s["id"]: s for s in self.current.get("services", [])}
        new = {s["id"]: s for s in self.config.get("services", [])}
        return [i for i in old if old[i] != new.get(i)], [i for i in new if new[i] != old.get(i)]

    def apply(self, drivers: Drivers) -> Action | None:
        self.record.supervisor = drivers.processes.reload_supervisor(self.lab, self.current, self.config)
        former = {k: v for k, v in self.current.items() if k not in ("pid", "start")}
        return ReloadServices(self.lab, self.record.supervisor, former, ServicesRecord())


# --- plans ---------------------------------------------------------------------------------------------------
def plan_up(ctx: UpContext) -> FeaturePlan:
    lab, processes = ctx.lab, ctx.drivers.processes
    services = desired_services(lab, ctx.stopped)
    forward = dns.forwarder(lab, ctx.drivers)
    proxy = desired(lab).loopback_relays()
    current = ServicesRecord.from_json(ctx.record).supervisor
    record = ServicesRecord()
    plan = FeaturePlan(record=record)
    running = current is not None and processes.is_alive(current.get("pid"), current.get("start"))
    if current is not None and (not running or not (services or forward or proxy)):
        plan.before.append(StopSupervisor(lab.name, current))  # (a dead one's leftover trees are cleaned up too)
    if not (services or forward or proxy):
        return plan
    if current is None or not running:
        config = _config(lab.name, services, forward, ctx.drivers.processes.cgroup_root(lab.name), proxy=proxy)
        plan.after.append(StartSupervisor(lab.name, config, record))
        return plan
    config = _config(lab.name, services, forward, current.get("cgroup"), current, proxy)
    record.supervisor = current
    _plan_converge(ctx, plan, current, config, record)
    return plan


def _plan_converge(ctx: UpContext, plan: FeaturePlan, current: Supervisor, config: Supervisor,
                   record: ServicesRecord) -> None:
    """The running supervisor handed ``config`` when it differs, or when processes must move (:func:`_moved`)."""
    moved = _moved(ctx, current)
    if not _same(config, current) or moved:
        _plan_reload(ctx, plan, current, config, record, moved)


def _plan_reload(ctx: UpContext, plan: FeaturePlan, current: Supervisor, config: Supervisor,
                 record: ServicesRecord, moved: set[str]) -> None:
    """The running supervisor from ``current`` to ``config``: services that change, or that must start again
    inside their host (``moved``, see :func:`_moved`), stop before the wiring changes (``before``); the rest run
    on; the new ones start ``after``."""
    name = ctx.lab.name
    old = {s["id"]: s for s in current.get("services", [])}
    new = {s["id"]: s for s in config["services"]}
    staying = [s for i, s in old.items() if new.get(i) == s and s["host"] not in moved]
    interim = {**_strip(current), "services": staying}
    interim["hash"] = _digest(staying, interim.get("forward"), interim.get("proxy"))
    if not _same(interim, current):
        plan.before.append(ReloadServices(name, current, interim, record))
        current = {**interim, "pid": current.get("pid"), "start": current.get("start")}
    if not _same(config, current):
        plan.after.append(ReloadServices(name, current, config, record))


def _strip(record: Supervisor) -> Supervisor:
    return {k: v for k, v in record.items() if k not in ("pid", "start")}


def _same(config: Supervisor, current: Supervisor) -> bool:
    return config == _strip(current)


def _config(lab: str, services: list[dict[str, Any]], forward: Any, cgroup_root: str | None,
            current: Supervisor | None = None, proxy: list[dict[str, Any]] | None = None) -> Supervisor:
    """The supervisor's config; with ``current``, every unchanged service keeps its token and cgroup.
    ``proxy``: the ports it relays from ``[::1]`` (loopproxy.py), a key only when there are some."""
    tag = (current or {}).get("tag") or (cgroup_root.rsplit("-", 1)[-1] if cgroup_root else "env")
    return {
        **({"proxy": proxy} if proxy else {}),
        "lab": lab, "hash": _digest(services, forward, proxy), "cgroup": cgroup_root, "forward": forward, "tag": tag,
        "tracking": "cgroup" if cgroup_root else "environment",
        "services": [
            {**s, "token": f"{lab}/{s['id']}/{tag}",
             "cgroup": f"{cgroup_root}/{s['host']}.{s['n']}" if cgroup_root else None}
            for s in services
        ],
    }


def plan_down(ctx: DownContext) -> FeaturePlan:
    supervisor = ServicesRecord.from_json(ctx.record).supervisor
    if supervisor is None:  # a crash between the supervisor's start and the state's save: it left its config
        supervisor = _left_behind(ctx)
    before: list[Action] = []
    if supervisor is not None:
        before.append(StopSupervisor(ctx.name, supervisor))
    # A container host's processes are Docker's to stop (features/containers.py): its init, PID 1 of its own
    # PID namespace, would ignore SIGTERM and hold `down` for the whole stop timeout.
    containers = {h.namespace for h in ctx.lab.hosts.values() if h.container} if ctx.lab else set()
    namespaces = tuple(ns for ns in ctx.namespaces if ns not in containers)
    if namespaces:
        before.append(StopInside(namespaces))
    return FeaturePlan(before=before)


def _left_behind(ctx: DownContext) -> Supervisor | None:
    files = ctx.drivers.files
    config = files.read_json(supervisor_config(ctx.name))
    if not isinstance(config, dict):
        return None
    live = files.read_json(services_status(ctx.name)) or {}
    return {**config, "pid": live.get("pid"), "start": live.get("start")}


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    supervisor = ServicesRecord.from_json(record).supervisor
    live = drivers.files.read_json(services_status(lab.name)) or {}
    alive = supervisor is not None and drivers.processes.is_alive(supervisor.get("pid"), supervisor.get("start"))
    services = []
    for s in live.get("services", []) if supervisor else []:
        entry = {k: s.get(k) for k in ("id", "host", "command", "restart", "state", "pid", "exit_code", "restarts",
                                       "processes", "log")}
        entry["oom_killed"] = bool(s.get("oom_killed"))
        if not alive and entry["state"] in ("running", "restarting", "starting"):
            entry["state"] = "unknown (supervisor gone)"
        entry.update(_confinement(lab, s.get("host")))
        services.append(entry)
    health = host_health(lab, live if alive else {})
    summary = None
    if supervisor is not None:
        summary = {"pid": supervisor.get("pid"), "running": alive, "tracking": supervisor.get("tracking"),
                   "cgroup": supervisor.get("cgroup"), "forwarder": supervisor.get("forward")}
    return {"supervisor": summary, "services": services, "health": health}


def host_health(lab: Lab, live: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per host with a healthcheck: ``{"status": starting|healthy|unhealthy, "output": the last probe's,
    "failures": in a row}`` from the supervisor's ``live`` status (starting while it has not said)."""
    said = live.get("health") or {}
    out = {}
    for host in lab.hosts.values():
        if any(s.health is not None for s in host.services):
            entry = said.get(host.name) or {}
            out[host.name] = {"status": entry.get("status", "starting"), "output": entry.get("output", ""),
                              "failures": entry.get("failures", 0)}
    return out


def _confinement(lab: Lab, host: str | None) -> dict[str, Any]:
    """A service's user and whether anything confines it beyond its host's network (status)."""
    found = lab.hosts.get(host or "")
    confined = found.contain if found is not None else NO_CONTAINMENT
    return {"user": confined.user or "root", "contained": confined.active()}


def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    """The lab's supervisor not running (``up`` starts it again)."""
    from ..difference import Difference

    supervisor = ServicesRecord.from_json(record).supervisor
    if supervisor is None:
        return []
    if not drivers.processes.is_alive(supervisor.get("pid"), supervisor.get("start")):
        return [Difference(f"services: the lab's supervisor (pid {supervisor.get('pid')}) is not running",
                           "services")]
    return [Difference(f"services: {s['id']} (pid {pid}) runs outside host {s['host']}'s {' and '.join(out)}",
                       "services", host=s["host"]) for s, pid, out in strays(lab.name, supervisor, drivers)]


# --- processes follow their host (issue 22) --------------------------------------------------------------
def strays(lab: str, supervisor: Supervisor, drivers: Drivers) -> list[tuple[dict[str, Any], int, list[str]]]:
    """(service as configured, its pid, what of its place it is outside of) for every running service whose
    process is not in its host's network or hostname namespace or not in its cgroup: a host made again under
    it, a pin replaced, a process moved by hand. The supervisor's status names the pids."""
    configured = {s["id"]: s for s in supervisor.get("services", [])}
    live = drivers.files.read_json(services_status(lab)) or {}
    found = []
    for entry in live.get("services", []):
        spec, pid = configured.get(entry.get("id")), entry.get("pid")
        if spec is None or entry.get("state") != "running" or not isinstance(pid, int):
            continue
        out = drivers.processes.outside(pid, netns_path(spec["namespace"]), spec.get("uts"), spec.get("cgroup"))
        if out:
            found.append((spec, pid, out))
    return found


def _moved(ctx: UpContext, current: Supervisor) -> set[str]:
    """Hosts whose running services must start again inside them: the wiring makes the host again (a new
    network namespace), its hostname namespace is pinned anew (the pin is gone), or a service of it already
    runs elsewhere (:func:`strays`)."""
    hosts = {s["host"] for s in current.get("services", [])} & set(ctx.lab.hosts)
    moved = hosts & ctx.recreated
    moved |= {h for h in hosts if ctx.lab.hosts[h].container is None
              and not ctx.drivers.uts.is_kept(uts_path(ctx.lab.name, h))}
    return moved | {spec["host"] for spec, _, _ in strays(ctx.lab.name, current, ctx.drivers)}

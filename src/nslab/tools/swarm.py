"""Docker Swarm as the engine: one lab over a swarm's nodes, driven from a manager through the Engine API
(``DOCKER_HOST``), no docker CLI.

``up``: a Swarm config holding the lab file, and one service per machine of the lab (labels ``nslab.lab=LAB``,
``nslab.machine=NAME``), pinned to its node (``node.hostname==NODE`` for ``node:``, else ``node.labels.K==V``
for each of ``labels:``; a lab without ``machines:`` is one part on the manager's node), in the host network,
with NET_ADMIN and SYS_ADMIN, the node's ``/run/netns`` (rshared), ``/etc/netns``, ``/run/nslab`` and
``/var/lib/nslab`` bound in and the config as ``/lab.yaml``. Its task runs the per-machine runner (``nslab
machine run``, which knows nothing of Swarm): the machine's part comes up and the runner stays as its supervisor
until SIGTERM, then takes the part down. Services a part starts live in the task's PID namespace and die with it.

``down``, ``status``, ``exec``, ``logs``, ``check``: Docker 20.10 cannot exec into a task on another node, so each
runs as a one-shot ``replicated-job`` service pinned to the machine (same mounts, capabilities, host network),
whose output comes back through the service logs API; the job is removed after.

Replaces: ``docker config create``, ``docker service create --constraint ... --network host --cap-add ...
--mount type=bind,...,bind-propagation=rshared``, ``docker service logs``, ``docker service rm``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ..drivers.docker import LAB_LABEL, LiveDocker
from ..errors import DockerError, NslabError, UserError

if TYPE_CHECKING:
    from ..model import Machine

MACHINE_LABEL = "nslab.machine"
ROLE_LABEL = "nslab.role"
#: The line the runner prints once its machine's part is up (``up`` waits for it in the service's logs).
UP_LINE = "nslab machine run: up"
#: Where the lab file is in a task.
LAB_FILE = "/lab.yaml"
#: The machine's directories a task binds in (the first one with shared propagation: the namespaces a part
#: names there show on the machine).
BINDS = ("/run/netns", "/etc/netns", "/run/nslab", "/var/lib/nslab")
#: Those whose mounts (named namespaces, kept UTS namespaces) must show on the machine: shared propagation.
SHARED = ("/run/netns", "/run/nslab")
#: Set in a job's environment: the machine's engine mark does not send its nslab back to the engine.
JOB_ENV = "NSLAB_ENGINE_JOB"
#: How long a part's runner may take to take its part down after SIGTERM (nanoseconds, Swarm's unit).
STOP_GRACE = 120 * 10**9
#: Task states after which a task will not run.
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


@dataclass(frozen=True)
class Part:
    """One machine's part of a lab: its name (None: a lab without ``machines:``) and where Swarm puts it."""

    machine: str | None
    constraints: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.machine or "local"


@dataclass
class SwarmLab:
    """A lab file as the engine needs it: its name, text and the parts (one per machine)."""

    name: str
    text: str
    parts: list[Part] = field(default_factory=list)
    hosts: dict[str, str | None] = field(default_factory=dict)  # host -> its machine: (None: not said)
    digest: str = ""  # the whole lab's digest, as each machine's part records it ("" without machines:)


def read_lab(text: str, manager_node: str, label: str = "<lab file>") -> SwarmLab:
    """The lab as every part will resolve it (the file alone: a lab across machines reads nothing of the machine
    it resolves on), checked before anything is made on the swarm: its name, its machines' placement and where
    each host lives (``machine:`` or ``placement: spread``). Problems of the file are raised all at once (exit 2);
    what only a machine can check (its routes, its VNIs) each part's ``up`` checks."""
    from ..core import load

    lab_file = load.from_text(text, label)
    checked = load.validate(lab_file, None)
    if checked.problems:
        raise load.problem_error(checked.problems, lab_file)
    lab = checked.lab
    swarm_lab = SwarmLab(lab.name, text, _parts(lab.machines), digest=lab.digest)
    if not swarm_lab.parts:
        swarm_lab.parts.append(Part(None, (f"node.id=={manager_node}",)))
    swarm_lab.hosts.update((host.name, host.machine) for host in lab.hosts.values())
    return swarm_lab


def _parts(machines: Mapping[str, Machine]) -> list[Part]:
    """Each machine's placement: ``node.hostname==NODE`` for ``node:``, ``node.labels.K==V`` per label."""
    parts, problems = [], []
    for name, machine in machines.items():
        if machine.node:
            parts.append(Part(name, (f"node.hostname=={machine.node}",)))
        elif machine.labels:
            parts.append(Part(name, tuple(f"node.labels.{k}=={v}" for k, v in sorted(machine.labels))))
        else:
            problems.append(f"machines.{name}: the swarm engine needs node: or labels: to place it")
    if problems:
        raise UserError("; ".join(problems))
    return parts


class Swarm:
    """The swarm the manager ``DOCKER_HOST`` names."""

    def __init__(self, docker: LiveDocker | None = None) -> None:
        self.docker = docker or LiveDocker(timeout=120.0)
        self._host_network = ""

    # -- the API ---------------------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, data = self.docker.request(method, path, body)
        if status not in ok:
            message = data.get("message", "") if isinstance(data, dict) else str(data or "")
            raise DockerError(f"docker: {method} {path.split('?')[0]}: {status} {message}".rstrip())
        return data

    def manager_node(self) -> str:
        info = self.call("GET", "/info")
        swarm = info.get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise UserError(f"Docker on {self.docker.socket} is not a swarm manager (`docker swarm init` makes "
                            "one; DOCKER_HOST names the engine)")
        return str(swarm["NodeID"])

    def services(self, lab: str, role: str = "part") -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{LAB_LABEL}={lab}", f"{ROLE_LABEL}={role}"]})
        status, data = self.docker.request("GET", f"/services?{urlencode({'filters': filters})}")
        if status != 200 or not isinstance(data, list):
            return []  # not a manager (or no swarm): no swarm lab here
        return data

    def tasks(self, service: str) -> list[dict[str, Any]]:
        """The tasks of a service (asked by the service filter), also once the service is removed (until each
        task's container is gone: then every task of the swarm is listed, as the filter refuses the id)."""
        query = urlencode({"filters": json.dumps({"service": [service]})})
        status, data = self.docker.request("GET", f"/tasks?{query}")
        if status != 200 or not isinstance(data, list):  # the filter refuses a removed service: every task
            data = self.call("GET", "/tasks")
        return [t for t in data if t.get("ServiceID") == service]

    def logs(self, service: str) -> tuple[str, str]:
        """(stdout, stderr) of a service's tasks so far (the frames demultiplexed)."""
        query = urlencode({"stdout": "1", "stderr": "1", "follow": "0", "tail": "all"})
        status, handle = self.docker.request("GET", f"/services/{service}/logs?{query}", stream=True)
        conn, response = handle
        out: dict[int, list[bytes]] = {1: [], 2: []}
        try:
            if status != 200:
                return "", ""
            while header := response.read(8):
                if len(header) < 8:
                    break
                out.setdefault(header[0], []).append(response.read(int.from_bytes(header[4:8], "big")))
        finally:
            conn.close()
        return b"".join(out[1]).decode(errors="replace"), b"".join(out[2]).decode(errors="replace")

    def remove_service(self, service: str) -> None:
        self.call("DELETE", f"/services/{service}", ok=(200, 204, 404))

    # -- specs -----------------------------------------------------------------------------------------------
    def host_network(self) -> str:
        """The engine's host network id (asked once per Swarm object)."""
        if self._host_network:
            return self._host_network
        data = self.call("GET", f"/networks?{urlencode({'filters': json.dumps({'name': ['host']})})}")
        for network in data:
            if network.get("Name") == "host":
                self._host_network = str(network["Id"])
                return self._host_network
        raise DockerError("docker: the engine has no host network")

    def spec(self, lab: str, part: Part, image: str, command: list[str], role: str,
             config: tuple[str, str] | None) -> dict[str, Any]:
        """The service spec of a part (``role`` part) or of a one-shot job on its machine (``role`` job)."""
        job = role == "job"
        mounts = [{"Type": "bind", "Source": path, "Target": path,
                   **({"BindOptions": {"Propagation": "rshared"}} if path in SHARED else {})}
                  for path in BINDS]
        container: dict[str, Any] = {
            "Image": image, "Command": command, "Mounts": mounts, "Init": True, "Env": [f"{JOB_ENV}=1"] if job else [],
            "CapabilityAdd": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "StopGracePeriod": STOP_GRACE,
            "Labels": {LAB_LABEL: lab, MACHINE_LABEL: part.label},
        }
        if config is not None:
            container["Configs"] = [{"File": {"Name": LAB_FILE, "UID": "0", "GID": "0", "Mode": 0o444},
                                     "ConfigID": config[0], "ConfigName": config[1]}]
        suffix = f"-{part.machine}" if part.machine else ""
        tag = f"-{hashlib.sha1(repr((command, time.time())).encode()).hexdigest()[:6]}" if job else ""
        return {
            "Name": f"nslab-{lab}{suffix}{'-job' if job else ''}{tag}",
            "Labels": {LAB_LABEL: lab, MACHINE_LABEL: part.label, ROLE_LABEL: role},
            "TaskTemplate": {
                "ContainerSpec": container,
                "Placement": {"Constraints": list(part.constraints)},
                "Networks": [{"Target": self.host_network()}],
                # A part's runner that dies is started again (its up converges what the last one left), as
                # often as it takes; a part that fails while `up` waits is removed by `up` itself.
                "RestartPolicy": {"Condition": "none" if job else "on-failure", "MaxAttempts": 0,
                                  "Delay": 10**9},
            },
            "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}} if job
            else {"Replicated": {"Replicas": 1}},
        }

    def create(self, spec: dict[str, Any]) -> str:
        return str(self.call("POST", "/services/create", spec)["ID"])

    def create_config(self, lab: str, text: str) -> tuple[str, str]:
        """The lab file as a Swarm config (configs cannot change: one per content); (id, name)."""
        name = f"nslab-{lab}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        found = self.configs(lab)
        for config in found:
            if config["Spec"]["Name"] == name:
                return str(config["ID"]), name
        data = self.call("POST", "/configs/create", {"Name": name, "Labels": {LAB_LABEL: lab},
                                                     "Data": base64.b64encode(text.encode()).decode()})
        return str(data["ID"]), name

    def configs(self, lab: str) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{LAB_LABEL}={lab}"]})
        return list(self.call("GET", f"/configs?{urlencode({'filters': filters})}"))

    def lab_text(self, lab: str) -> str | None:
        """The lab file of a swarm lab, from its newest config."""
        found = sorted(self.configs(lab), key=lambda c: str(c.get("CreatedAt", "")))
        if not found:
            return None
        data = self.call("GET", f"/configs/{quote(found[-1]['ID'])}")
        return base64.b64decode(data["Spec"]["Data"]).decode()

    # -- one-shot jobs ---------------------------------------------------------------------------------------
    def run_jobs(self, lab: str, jobs: list[tuple[Part, list[str]]], image: str, timeout: float = 120.0,
                 ) -> list[tuple[int, str, str]]:
        """Run each job's command once on its part's machine, all at the same time; (exit status, stdout,
        stderr) of each, in order. The jobs' services are removed after."""
        services: list[str] = []
        try:
            for part, command in jobs:
                services.append(self.create(self.spec(lab, part, image, command, "job", None)))
            pairs = zip(services, (part for part, _command in jobs), strict=True)
            return [self._job_result(service, part, timeout) for service, part in pairs]
        finally:
            for service in services:
                self.remove_service(service)

    def _job_result(self, service: str, part: Part, timeout: float) -> tuple[int, str, str]:
        task = self._wait_ended(service, timeout, part)
        out, err = self.logs(service)
        status = task.get("Status") or {}
        if status.get("State") != "complete" and not (status.get("ContainerStatus") or {}).get("ContainerID"):
            return 1, out, err + _task_error(task, part) + "\n"
        return int((status.get("ContainerStatus") or {}).get("ExitCode", 1)), out, err

    def image_id(self, image: str) -> str:
        """How tasks name ``image``: a pushed image by its registry digest (``REPO@sha256:…``: a node that lacks
        it pulls exactly that one); a local build by the id the manager has (no pull is tried: ``nslab image
        build`` makes the same id on every node from the same machine); the name as given when the manager
        lacks it (each node pulls it)."""
        status, data = self.docker.request("GET", f"/images/{quote(image, safe='')}/json")
        if status != 200 or not isinstance(data, dict) or not data.get("Id"):
            return image
        pushed = [d for d in data.get("RepoDigests") or [] if d.split("@")[0] == _repository(image)]
        return str((pushed or data.get("RepoDigests") or [data["Id"]])[0])

    def node_name(self, node: str) -> str:
        """A node's hostname (its id when the manager does not say)."""
        status, data = self.docker.request("GET", f"/nodes/{quote(node, safe='')}")
        if status == 200 and isinstance(data, dict):
            return str((data.get("Description") or {}).get("Hostname") or node)
        return node

    def _wait_ended(self, service: str, timeout: float, part: Part) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.tasks(service)
            for task in tasks:
                state = (task.get("Status") or {}).get("State", "")
                if state in ENDED or _missing_image(task):
                    time.sleep(0.2)  # the last log lines
                    task["x-node"] = self.node_name(str(task.get("NodeID", "")))
                    return task
            if time.monotonic() > deadline:
                raise NslabError(f"machine {part.label}: the job did not finish within {timeout:.0f} s")
            time.sleep(0.1)


def _missing_image(task: dict[str, Any]) -> bool:
    return "No such image" in str((task.get("Status") or {}).get("Err", ""))


def _task_error(task: dict[str, Any], part: Part) -> str:
    status = task.get("Status") or {}
    err = str(status.get("Err") or status.get("Message") or status.get("State"))
    image = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", "")
    if _missing_image(task):
        return (f"machine {part.label}: node {task.get('x-node') or task.get('NodeID', '?')} has no image "
                f"{image.split('@')[0][:19]} "
                f"(`nslab image build` on it, or push it to a registry)")
    return f"machine {part.label}: {err}"


# -- the operations ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: the lab, its machines, its time in all and the longest of the parts' own ``up``."""

    lab: str
    machines: list[str]
    seconds: float
    part_seconds: float


def up(text: str, image: str, timeout: float = 180.0, swarm: Swarm | None = None, label: str = "<lab file>"
       ) -> UpReport:
    """Bring the lab in ``text`` up over the swarm: every node that takes a part must have ``image`` (checked
    first by a one-shot job per machine), then a config and one service per machine; returns once every part
    says it is up. When a part fails (or on Ctrl-C/SIGTERM) what this made is removed again, every part that
    came up taken down, and the error names the machine."""
    started = time.monotonic()
    swarm = swarm or Swarm()
    lab = read_lab(text, swarm.manager_node(), label)
    if swarm.services(lab.name):
        raise UserError(f"lab {lab.name} is up on the swarm already: `nslab down {lab.name}` first")
    image = swarm.image_id(image)
    _check_nodes(swarm, lab, image)
    services: dict[str, str] = {}
    try:
        config = swarm.create_config(lab.name, text)
        for part in lab.parts:
            command = ["nslab", "machine", "run", "-f", LAB_FILE, "--held-by", "swarm",
                       *(["--machine", part.machine] if part.machine else [])]
            services[part.label] = swarm.create(swarm.spec(lab.name, part, image, command, "part", config))
        _wait_up(swarm, lab, services, timeout)
    except BaseException:
        _undo(swarm, lab.name)
        raise
    took = [_part_seconds(swarm.logs(service)[0]) for service in services.values()]
    return UpReport(lab.name, [p.label for p in lab.parts], time.monotonic() - started, max(took))


def _undo(swarm: Swarm, lab: str) -> None:
    """A failed ``up``'s services and config removed (each part that came up is taken down by its runner)."""
    try:
        if swarm.services(lab):
            down(lab, swarm=swarm)
        for config in swarm.configs(lab):
            swarm.call("DELETE", f"/configs/{config['ID']}", ok=(200, 204, 404))
    except NslabError:
        pass  # the error that made up fail is the one to report; `nslab down LAB` finishes the rest


def _part_seconds(out: str) -> float:
    """The time a runner's ``up`` took, from its line ``nslab machine run: up in S s``."""
    for line in out.splitlines():
        if line.startswith(UP_LINE + " in "):
            return float(line.split()[-2])
    return 0.0


def _check_nodes(swarm: Swarm, lab: SwarmLab, image: str) -> None:
    """A tiny job on every machine's node first: a node without the image (or the directories a part binds)
    is named, in one line each, before any service of the lab exists."""
    problems = []
    results = swarm.run_jobs(lab.name, [(part, ["nslab", "--version"]) for part in lab.parts], image, 60.0)
    for part, (code, _out, err) in zip(lab.parts, results, strict=True):
        if code != 0:
            problems.append(err.strip().splitlines()[-1] if err.strip() else f"machine {part.label}: exit {code}")
    if problems:
        raise NslabError("; ".join(problems))


def _wait_up(swarm: Swarm, lab: SwarmLab, services: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(services)
    while waiting:
        for machine, service in list(waiting.items()):
            if _part_is_up(swarm, next(p for p in lab.parts if p.label == machine), service):
                del waiting[machine]
        if waiting and time.monotonic() > deadline:
            raise NslabError(f"machine {sorted(waiting)[0]}: its part was not up after {timeout:.0f} s")
        if waiting:
            time.sleep(0.2)


def _part_is_up(swarm: Swarm, part: Part, service: str) -> bool:
    """Whether the part's runner said it is up; raises naming the machine when its task ended."""
    out, err = swarm.logs(service)
    if UP_LINE in out:
        return True
    failed = [t for t in swarm.tasks(service) if (t.get("Status") or {}).get("State") in ENDED or _missing_image(t)]
    if failed:
        said = " | ".join(line for line in err.strip().splitlines()[-3:])
        raise NslabError(_task_error(failed[0], part) + (f": {said}" if said else ""))
    return False


def is_swarm_lab(lab: str, swarm: Swarm | None = None) -> bool:
    """Whether the swarm ``DOCKER_HOST`` names runs lab ``lab`` (False when there is no manager there)."""
    try:
        return bool((swarm or Swarm()).services(lab))
    except NslabError:
        return False


def down(lab: str, timeout: float = 180.0, swarm: Swarm | None = None) -> list[str]:
    """Remove the lab's services (each part's runner takes its part down), wait until every task is gone, then
    remove its configs; returns the machines whose parts went."""
    swarm = swarm or Swarm()
    services = swarm.services(lab)
    if not services:
        raise UserError(f"no swarm lab '{lab}' (no service labelled {LAB_LABEL}={lab})")
    for service in services:
        swarm.remove_service(service["ID"])
    deadline = time.monotonic() + timeout
    failed = [line for service in services if (line := _ended(swarm, service, deadline, timeout))]
    for config in swarm.configs(lab):
        swarm.call("DELETE", f"/configs/{config['ID']}", ok=(200, 204, 404))
    if failed:
        raise NslabError("; ".join(failed) + " (its service logs say why)")
    return sorted(str(s["Spec"]["Labels"].get(MACHINE_LABEL)) for s in services)


def _ended(swarm: Swarm, service: dict[str, Any], deadline: float, timeout: float) -> str:
    """Wait until every task of a removed part's service has ended: "" when its runner's down succeeded, else a
    line naming the machine."""
    machine = service["Spec"]["Labels"].get(MACHINE_LABEL)
    tasks = swarm.tasks(service["ID"])
    while [t for t in tasks if (t.get("Status") or {}).get("State") not in ENDED]:
        if time.monotonic() > deadline:
            raise NslabError(f"machine {machine}: its part did not go within {timeout:.0f} s")
        time.sleep(0.2)
        tasks = swarm.tasks(service["ID"])
    last = max(tasks, key=lambda t: str(t.get("CreatedAt") or ""), default=None)
    code = _exit_code(last) if last is not None else 0
    return f"machine {machine}: its runner's down exited {code}" if code else ""


def _exit_code(task: dict[str, Any]) -> int:
    """A task's container exit status (0 when it never ran a container)."""
    return int(((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode") or 0)


def _lab_parts(swarm: Swarm, lab: str) -> tuple[SwarmLab, str]:
    """The lab as its config holds it, and the image its parts run."""
    services = swarm.services(lab)
    text = swarm.lab_text(lab)
    if not services or text is None:
        raise UserError(f"no swarm lab '{lab}' (no service labelled {LAB_LABEL}={lab})")
    image = str(services[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]).split("@")[0]
    return read_lab(text, swarm.manager_node()), image


#: The verbs whose job says which machine's part it means (``--machine NAME``); exec and logs name a host, which
#: is local to the machine the job runs on.
PER_MACHINE = ("status", "check", "down")


def on_machines(lab: str, argv: list[str], machines: list[str] | None = None,
                swarm: Swarm | None = None) -> Iterator[tuple[str, int, str, str]]:
    """Run ``nslab ARGV`` once on each machine's node (``--machine NAME`` added for the :data:`PER_MACHINE`
    verbs of a lab with machines): (machine, exit status, stdout, stderr) for each."""
    swarm = swarm or Swarm()
    parsed, image = _lab_parts(swarm, lab)
    parts = [part for part in parsed.parts if machines is None or part.label in machines]
    jobs = [(part, ["nslab", "machine", "job", *argv,
                    *(["--machine", part.machine] if part.machine and argv[0] in PER_MACHINE else [])])
            for part in parts]
    for part, result in zip(parts, swarm.run_jobs(lab, jobs, image), strict=True):
        yield (part.label, *result)


def machine_of(lab: str, host: str, swarm: Swarm | None = None) -> list[str] | None:
    """The machine a host's ``machine:`` names (None: the file does not say; every machine is asked)."""
    swarm = swarm or Swarm()
    parsed, _image = _lab_parts(swarm, lab)
    if host not in parsed.hosts:
        raise UserError(f"lab {lab} has no host {host}")
    machine = parsed.hosts[host]
    if machine is None and len(parsed.parts) == 1:
        return [parsed.parts[0].label]
    return [machine] if machine else None


def status(lab: str, swarm: Swarm | None = None) -> dict[str, Any]:
    """One status document for the lab: each machine's ``status --json`` under ``machines``, with its digest;
    ``digest`` is the lab's digest computed on the manager from the Swarm config's text, and ``differs`` names
    the machines whose recorded digest is not that one."""
    swarm = swarm or Swarm()
    expected = _lab_parts(swarm, lab)[0].digest
    machines: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for machine, code, out, err in on_machines(lab, ["status", lab, "--json"], swarm=swarm):
        try:
            machines[machine] = json.loads(out)
        except ValueError:
            problems[machine] = (err.strip() or f"exit {code}").splitlines()[-1]
    digests = {m: _digest(doc) for m, doc in machines.items()}
    return {"name": lab, "engine": "swarm", "machines": machines, "failed": problems, "digest": expected,
            "differs": sorted(m for m, d in digests.items() if expected and d and d != expected)}


def _repository(image: str) -> str:
    """An image name without its tag (``reg:5000/nslab:1`` -> ``reg:5000/nslab``; a registry port is kept)."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    return image[:slash + 1] + image[slash + 1:].split(":", 1)[0]


def _digest(doc: dict[str, Any]) -> str | None:
    for lab in doc.get("labs", []):
        if lab.get("digest"):
            return str(lab["digest"])
    return str(doc["digest"]) if doc.get("digest") else None

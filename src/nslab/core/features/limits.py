"""Resource limits of what a host runs (``resources: {cpus: 0.5, memory: 64M, pids: 200}``): part of the
services feature, as contain.py is.

Resolved into a :class:`~nslab.model.Resources`; each of the host's services carries them in the supervisor's
config (:func:`service_config`), and the supervisor writes them to the service's cgroup before it starts
(drivers/process.py :func:`~nslab.drivers.process.limit`: ``cpu.max``, ``memory.max``, ``pids.max`` on cgroup
v2; ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``, ``pids.max`` where a controller is mounted as v1). The
whole tree of a service shares them, as a container's processes share theirs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...model import NO_RESOURCES, Resources

if TYPE_CHECKING:
    from ..spec import HostSpec


def resolve(host: HostSpec) -> Resources:
    written = host.resources
    if written is None:
        return NO_RESOURCES
    return Resources(cpus=written.cpus, memory=written.memory, pids=written.pids)


def service_config(resources: Resources) -> dict[str, Any]:
    """The supervisor's ``resources`` key of a service (none without limits, so configs of labs without
    ``resources:`` stay as they were)."""
    if resources == NO_RESOURCES:
        return {}
    limits = {"cpus": resources.cpus, "memory": resources.memory, "pids": resources.pids}
    return {"resources": {k: v for k, v in limits.items() if v is not None}}


def docker_host_config(resources: Resources) -> dict[str, Any]:
    """A container host's limits as Docker's HostConfig (``--cpus``, ``--memory``, ``--pids-limit``)."""
    config: dict[str, Any] = {}
    if resources.cpus is not None:
        config["NanoCpus"] = int(resources.cpus * 1e9)
    if resources.memory is not None:
        config["Memory"] = resources.memory
    if resources.pids is not None:
        config["PidsLimit"] = resources.pids
    return config


def commands(limits: dict[str, Any], cgroup: str) -> list[str]:
    """The limits as the shell lines a person would type (``--dry-run``), for cgroup v2."""
    out = []
    if "cpus" in limits:
        out.append(f"echo '{int(limits['cpus'] * 100000)} 100000' > {cgroup}/cpu.max")
    if "memory" in limits:
        out.append(f"echo {limits['memory']} > {cgroup}/memory.max")
    if "pids" in limits:
        out.append(f"echo {limits['pids']} > {cgroup}/pids.max")
    return out

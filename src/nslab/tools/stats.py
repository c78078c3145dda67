"""``nslab stats``: per host, its interfaces' counters and its services' CPU, memory and pids, as ``docker
stats`` shows containers'.

Interfaces: ``/proc/net/dev`` read from a thread inside the host's network namespace (no process needed in
the host). Services: from the cgroup the supervisor put each in (drivers/process.py): its members' CPU time
(CPU % over the sampling interval, 100 % = one core), memory (the memory controller's usage, v2 or the v1
mirror, else its members' resident memory) and number of processes. Reads only, as root.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .. import linux, paths
from ..core import state
from ..drivers import files, process, procfs


def _interfaces(namespace: str) -> list[dict[str, Any]]:
    try:
        fd = os.open(paths.netns_path(namespace), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        counters = linux.in_namespace(fd, procfs.net_dev)
    finally:
        os.close(fd)
    return [{"name": name, **values} for name, values in counters.items() if name != "lo"]


def _memory(cgroup: str | None, members: list[int]) -> int:
    if cgroup:
        places = [os.path.join(cgroup, "memory.current")]
        memory = process.v1_mounts().get("memory")
        mount = process.cgroup2_mount()
        if memory and mount and cgroup.startswith(mount + "/"):
            places.append(os.path.join(memory, os.path.relpath(cgroup, mount), "memory.usage_in_bytes"))
        for path in places:
            try:
                with open(path) as fh:
                    return int(fh.read())
            except (OSError, ValueError):
                continue
    return sum(procfs.rss_bytes(pid) for pid in members)


def _services(lab: str) -> list[dict[str, Any]]:
    """Each service's tracked processes: id, host, cgroup, members."""
    status = files.read_json(paths.services_status(lab)) or {}
    out = []
    for s in status.get("services", []):
        tracker = process.Tracker(s.get("cgroup"), "")
        out.append({"id": s["id"], "host": s["host"], "cgroup": s.get("cgroup"),
                    "members": tracker.members() if s.get("cgroup") else ([s["pid"]] if s.get("pid") else [])})
    return out


def _cpu(members: list[int]) -> float:
    return sum(procfs.cpu_seconds(pid) for pid in members)


def sample(labs: list[str], interval: float = 0.5) -> list[dict[str, Any]]:
    """One ``stats`` document per lab: ``{"lab", "hosts": [{"host", "interfaces": [...], "services": [...]}]}``;
    CPU % over ``interval`` seconds."""
    recorded = {name: st for name in labs if (st := state.LabState.load_or_none(name)) is not None}
    services = {name: _services(name) for name in recorded}
    before = {(name, s["id"]): _cpu(s["members"]) for name, ss in services.items() for s in ss}
    start = time.monotonic()
    time.sleep(interval)
    elapsed = time.monotonic() - start
    docs = []
    for name, st in recorded.items():
        hosts = []
        for host in st.lab.hosts.values():
            rows = []
            for s in (s for s in services[name] if s["host"] == host.name):
                members = process.Tracker(s["cgroup"], "").members() if s["cgroup"] else s["members"]
                used = _cpu(members) - before[(name, s["id"])]
                rows.append({"name": s["id"], "cpu_percent": round(max(used, 0.0) / elapsed * 100, 1),
                             "memory_bytes": _memory(s["cgroup"], members), "pids": len(members)})
            hosts.append({"host": host.name, "interfaces": _interfaces(host.namespace), "services": rows})
        docs.append({"lab": name, "hosts": hosts})
    return docs

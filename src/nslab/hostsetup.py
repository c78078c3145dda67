"""Feature 'hostsetup' (see features.py): the inside of hosts — DNS files, hostnames, services.

- DNS: ``/etc/netns/<namespace>/{hosts,resolv.conf}`` per host (drivers/dnsfiles.py); every host knows
  every other host as ``NAME`` and ``NAME.<lab>``; upstream resolvers come from the machine (never a loopback
  address) or from ``dns:`` / ``dns_search:`` in the lab file.
- Hostnames: one UTS namespace per host, kept without any process by bind-mounting it on
  ``/run/nslab/<lab>/uts/<host>`` (what ``unshare --uts=FILE`` does); ``nslab exec`` enters it. The ``uts``
  directory is a small tmpfs of the lab's own, so ``down`` drops every pin with one lazy unmount.
- Services: ``run:`` commands, supervised by one ``python -m nslab.supervise LAB`` per lab that has any
  (drivers/process.py). A lab without services has no process at all.

``down`` runs before the namespaces go: it stops every service tree, unmounts the UTS namespaces and removes
the files it wrote.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import linux, paths
from .drivers import dnsfiles, process
from .errors import KernelError, Problem
from .model import Lab

if TYPE_CHECKING:  # the spec needs pydantic + yaml: `down` does without them
    from .spec import SourceMap

KEY = "hostsetup"
BEFORE_NAMESPACES = True
UTS_TMPFS = "mode=755,size=64k"  # holds only empty files that UTS namespaces are bind-mounted on


# --- validate --------------------------------------------------------------------------------------
def validate(lab: Lab, source: SourceMap, file: str, others: list[Any]) -> list[Problem]:
    spec = lab.spec
    if spec is None:
        return []
    problems: list[Problem] = []

    def check_search(domains: list[str] | None, where: tuple[Any, ...]) -> None:
        for i, domain in enumerate(domains or []):
            if not dnsfiles.SEARCH_DOMAIN.match(domain):
                path = (*where, "dns_search", i)
                problems.append(Problem(f"'{domain}' is not a domain name", _field(path), file, source.line(path)))

    check_search(spec.dns_search, ())
    for name, host in spec.hosts.items():
        check_search(host.dns_search, ("hosts", name))
        for i, command in enumerate(host.commands()):
            if not command.strip():
                path = ("hosts", name, "run") if isinstance(host.run, str) else ("hosts", name, "run", i)
                problems.append(Problem("an empty command", _field(path), file, source.line(path)))
    for name, host in lab.hosts.items():
        if len(host.hostname.encode()) > 64:
            path = ("hosts", name, "hostname")
            problems.append(Problem("a hostname has at most 64 characters", _field(path), file, source.line(path)))
    return problems


def _field(path: tuple[Any, ...]) -> str:
    from .spec import field_path

    return field_path(path)


# --- what up would do --------------------------------------------------------------------------------
def _desired(lab: Lab) -> dict[str, Any]:
    upstream = dnsfiles.discover_upstream()
    hosts: dict[str, Any] = {}
    forward_listen: list[str] = []
    hosts_files = dnsfiles.HostsFiles(lab)
    resolv_confs: dict[dnsfiles.HostDns, str] = {}
    for host in lab.hosts.values():
        dns = dnsfiles.host_dns(lab, host, upstream)
        if dns.forward and str(host.gateway) not in forward_listen:
            forward_listen.append(str(host.gateway))
        if dns not in resolv_confs:
            resolv_confs[dns] = dnsfiles.render_resolv_conf(lab.name, dns)
        hosts[host.name] = {
            "namespace": host.namespace,
            "hostname": host.hostname,
            "uts": paths.uts_path(lab.name, host.name),
            "dns": dns.to_json(),
            "files": {"hosts": hosts_files.render(host), "resolv.conf": resolv_confs[dns]},
        }
    services = []
    for name, host_spec in (lab.spec.hosts.items() if lab.spec is not None else ()):
        host = lab.hosts[name]
        for n, command in enumerate(host_spec.commands(), start=1):
            services.append({
                "id": f"{name}.{n}" if len(host_spec.commands()) > 1 else name,
                "host": name, "n": n, "lab": lab.name, "command": command, "restart": host_spec.restart,
                "namespace": host.namespace, "uts": paths.uts_path(lab.name, name),
                "log": process.log_path(lab.name, name, n),
            })
    forward = {"listen": forward_listen, "upstreams": list(upstream.stubs)} if forward_listen else None
    return {"upstream": upstream.to_json(), "hosts": hosts, "services": services, "forward": forward}


def commands(lab: Lab, previous: dict[str, Any] | None) -> list[str]:
    """What ``up`` would change, as commands; nothing for what is already in place."""
    want = _desired(lab)
    previous = previous or {}
    out: list[str] = []
    for name, old in previous.get("hosts", {}).items():
        if name not in want["hosts"]:
            out.append(f"rm -r {os.path.join(dnsfiles.ETC_NETNS_DIR, old['namespace'])}")
            out.append(f"umount {old['uts']} && rm {old['uts']}")
    uts_dir = paths.uts_dir(lab.name)
    if want["hosts"] and not _is_mounted(uts_dir) and not _listdir(uts_dir):
        out.append(f"mkdir -p {uts_dir} && mount -t tmpfs -o {UTS_TMPFS} tmpfs {uts_dir}")
    for name, h in want["hosts"].items():
        etc = os.path.join(dnsfiles.ETC_NETNS_DIR, h["namespace"])
        changed = {f: t for f, t in h["files"].items() if _read(os.path.join(etc, f)) != t}
        if changed and len(changed) == len(h["files"]):
            out.append(f"mkdir -p {etc}")
        for fname, text in changed.items():
            body = " ".join(_quote(line) for line in text.splitlines())
            out.append(f"printf '%s\\n' {body} > {etc}/{fname}")
        old = previous.get("hosts", {}).get(name)
        if not (old and old.get("hostname") == h["hostname"] and _is_mounted(h["uts"])):
            out.append(f"touch {h['uts']} && unshare --uts={h['uts']} hostname {h['hostname']}")
    supervisor = previous.get("supervisor")
    if supervisor and supervisor.get("hash") == _services_hash(want) and process.is_alive(
        supervisor.get("pid"), supervisor.get("start")
    ):
        return out
    if supervisor:
        out.append(f"kill {supervisor.get('pid')}  # the lab's supervisor: stops every service tree")
    if want["forward"]:
        out.append(f"# DNS forwarder on {', '.join(want['forward']['listen'])}:53 -> "
                   f"{', '.join(want['forward']['upstreams'])} (in the lab's supervisor)")
    for s in want["services"]:
        out.append(f"# service {s['id']} (restart: {s['restart']}, log {s['log']}):")
        out.append(f"nsenter --net=/run/netns/{s['namespace']} --uts={s['uts']} sh -c {_quote(s['command'])} "
                   f">>{s['log']} 2>&1 &")
    if want["services"] or want["forward"]:
        out.append(f"python -m nslab.supervise {lab.name}  # supervises the above")
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- UTS namespaces --------------------------------------------------------------------------------
def _is_mounted(path: str) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except FileNotFoundError:
        return False


def _in_thread(work: Any) -> None:
    """Run ``work`` in a fresh thread (namespace changes there do not touch the rest of the process)."""
    errors: list[BaseException] = []

    def body() -> None:
        own = os.open("/proc/thread-self/ns/uts", os.O_RDONLY)
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)
        finally:
            linux.setns(own, linux.CLONE_NEWUTS)
            os.close(own)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def keep_uts(pins: Iterable[tuple[str, str]]) -> None:
    """Make (or update) the UTS namespaces bind-mounted at each ``(path, hostname)``; no process stays.

    All in one worker thread (unshare, sethostname, bind-mount per host), so a big lab pays no thread per host.
    """
    pins = list(pins)
    for directory in sorted({os.path.dirname(path) for path, _ in pins}):
        prepare_uts_dir(directory)
    done: list[str] = []

    def work() -> None:
        for path, hostname in pins:
            done.append(path)
            if _is_mounted(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    linux.setns(fd, linux.CLONE_NEWUTS)
                finally:
                    os.close(fd)
                linux.sethostname(hostname)
                continue
            linux.unshare(linux.CLONE_NEWUTS)
            linux.sethostname(hostname)
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o444))
            linux.mount("/proc/thread-self/ns/uts", path, None, linux.MS_BIND)

    try:
        _in_thread(work)
    except OSError as exc:
        raise KernelError(f"cannot keep the hostname namespace at {done[-1]}: {exc.strerror}") from None


def prepare_uts_dir(directory: str) -> None:
    """Give the lab's ``uts`` directory its own small tmpfs (once), so that ``down`` unmounts every pin at
    once. A directory that already holds pins (made before the tmpfs existed) is left as it is."""
    os.makedirs(directory, exist_ok=True)
    if _is_mounted(directory) or os.listdir(directory):
        return
    try:
        linux.mount("tmpfs", directory, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, UTS_TMPFS)
    except OSError as exc:
        raise KernelError(f"cannot mount a tmpfs on {directory}: {exc.strerror}") from None


def drop_uts(path: str) -> list[str]:
    try:
        while _is_mounted(path):
            linux.umount(path, linux.MNT_DETACH)
        if os.path.exists(path):
            os.unlink(path)
    except OSError as exc:
        return [f"cannot remove the hostname namespace {path}: {exc.strerror}"]
    return []


def drop_uts_dir(directory: str) -> list[str]:
    """Drop every pin under ``directory`` (one lazy unmount of its tmpfs), then the directory."""
    try:
        for _ in range(8):  # a tmpfs (or a stack of them): MNT_DETACH takes every pin mounted inside along
            if not _is_mounted(directory):
                break
            linux.umount(directory, linux.MNT_DETACH)
    except OSError as exc:
        return [f"cannot unmount the hostname namespaces at {directory}: {exc.strerror}"]
    failures: list[str] = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    for entry in entries:  # pins of the layout without a tmpfs
        failures += drop_uts(os.path.join(directory, entry))
    try:
        os.rmdir(directory)
    except OSError:
        pass
    return failures


# --- up / down / status ----------------------------------------------------------------------------
def _services_hash(want: dict[str, Any]) -> str:
    from .model import blake2s

    return blake2s(json.dumps([want["services"], want["forward"]], sort_keys=True).encode()).hexdigest()[:16]


def up(lab: Lab, previous: dict[str, Any] | None, recreated: set[str]) -> dict[str, Any]:
    want = _desired(lab)
    previous = previous or {}
    # Hosts that left the lab: their files and hostname namespaces go.
    for name, old in previous.get("hosts", {}).items():
        if name not in want["hosts"]:
            dnsfiles.remove_files(old["namespace"])
            drop_uts(old["uts"])
    for h in want["hosts"].values():
        try:
            dnsfiles.write_files(h["namespace"], h["files"])
        except OSError as exc:
            raise KernelError(f"cannot write {dnsfiles.ETC_NETNS_DIR}/{h['namespace']}: {exc.strerror}") from None
    keep_uts((h["uts"], h["hostname"]) for h in want["hosts"].values())

    supervisor = previous.get("supervisor")
    digest = _services_hash(want)
    needs = bool(want["services"] or want["forward"])
    service_hosts = {s["host"] for s in want["services"]}
    keep = (
        supervisor is not None
        and supervisor.get("hash") == digest
        and process.is_alive(supervisor.get("pid"), supervisor.get("start"))
        and not (service_hosts & recreated)
    )
    if supervisor is not None and not keep:
        failures = process.stop_supervisor(lab.name, supervisor)
        if failures:
            raise KernelError("; ".join(failures))
        supervisor = None
    if needs and supervisor is None:
        cgroup_root = None
        mount = process.cgroup2_mount()
        tag = os.urandom(4).hex()
        if mount:
            cgroup_root = os.path.join(mount, "nslab", f"{lab.name}-{tag}")
        services = [
            {**s, "token": f"{lab.name}/{s['id']}/{tag}",
             "cgroup": os.path.join(cgroup_root, f"{s['host']}.{s['n']}") if cgroup_root else None}
            for s in want["services"]
        ]
        config = {"lab": lab.name, "hash": digest, "cgroup": cgroup_root, "services": services,
                  "forward": want["forward"], "tracking": "cgroup" if cgroup_root else "environment"}
        supervisor = process.start_supervisor(lab.name, config)
    return {
        "upstream": want["upstream"],
        "hosts": {name: {k: v for k, v in h.items() if k != "files"} for name, h in want["hosts"].items()},
        "supervisor": supervisor,
    }


def down(name: str, recorded: dict[str, Any] | None, lab: Lab | None) -> list[str]:
    failures: list[str] = []
    recorded = recorded or {}
    supervisor = recorded.get("supervisor")
    if supervisor is None and os.path.exists(process.config_path(name)):
        supervisor = process.read_json(process.config_path(name))  # a crash between start and state save
        status = process.read_json(process.status_path(name)) or {}
        if supervisor is not None:
            supervisor = {**supervisor, "pid": status.get("pid"), "start": status.get("start")}
    if supervisor is not None:
        failures += process.stop_supervisor(name, supervisor)
    namespaces = {h["namespace"] for h in recorded.get("hosts", {}).values()}
    uts_paths = {h["uts"] for h in recorded.get("hosts", {}).values()}
    if lab is not None:
        namespaces |= {h.namespace for h in lab.hosts.values()}
        uts_paths |= {paths.uts_path(name, h) for h in lab.hosts}
    uts_dir = paths.uts_dir(name)
    failures += drop_uts_dir(uts_dir)
    for path in sorted(p for p in uts_paths if os.path.dirname(p) != uts_dir):  # not where they are kept now
        failures += drop_uts(path)
    for namespace in sorted(namespaces):
        try:
            dnsfiles.remove_files(namespace)
        except OSError as exc:
            failures.append(f"cannot remove {dnsfiles.ETC_NETNS_DIR}/{namespace}: {exc.strerror}")
    if namespaces:
        try:
            os.rmdir(dnsfiles.ETC_NETNS_DIR)  # Debian has no /etc/netns: the first `up` made it
        except OSError:
            pass  # other namespaces' files are there (or it never existed)
    for path in (process.config_path(name), process.status_path(name)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return failures


def status(lab: Lab, recorded: dict[str, Any] | None) -> dict[str, Any]:
    recorded = recorded or {}
    supervisor = recorded.get("supervisor")
    live = process.read_json(process.status_path(lab.name)) or {}
    alive = bool(supervisor) and process.is_alive(supervisor.get("pid"), supervisor.get("start"))
    services = []
    for s in live.get("services", []) if supervisor else []:
        entry = {k: s.get(k) for k in ("id", "host", "command", "restart", "state", "pid", "exit_code", "restarts",
                                       "processes", "log")}
        if not alive and entry["state"] in ("running", "restarting", "starting"):
            entry["state"] = "unknown (supervisor gone)"
        services.append(entry)
    return {
        "dns": {name: h.get("dns") for name, h in recorded.get("hosts", {}).items()},
        "upstream": recorded.get("upstream"),
        "supervisor": {"pid": supervisor.get("pid"), "running": alive,
                       "tracking": supervisor.get("tracking"), "cgroup": supervisor.get("cgroup"),
                       "forwarder": supervisor.get("forward")} if supervisor else None,
        "services": services,
    }

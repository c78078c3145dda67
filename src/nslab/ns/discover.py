"""Every network namespace on the machine (``nslab ls``), and giving one a name (``attach``/``detach``).

Replaces ``lsns -t net`` + ``ip netns list`` + ``ip -n NAME addr`` for ``ls``, and ``ip netns attach NAME PID``
/ ``ip netns delete NAME`` (of a name only) for ``attach``/``detach``. A namespace is keyed by its nsfs inode
and found through everything that can keep it alive:

- processes (``/proc/*/ns/net``, read through drivers/procfs.py),
- bind mounts of nsfs files (``/proc/self/mountinfo``): ``ip netns`` names under /run/netns, Docker's
  SandboxKey files under /run/docker/netns, anything else,
- the labs nslab records, and the running Docker containers (by their init pid, from the Docker API).

Interfaces and addresses are dumped with drivers/rtnl.py through sockets one worker thread opens in each
*opened* namespace file (:class:`nslab.linux.Visit`: there and back): nothing is ever created (no O_CREAT).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .. import linux, paths
from ..core import state
from ..drivers import procfs, rtnl
from ..errors import ConflictError, KernelError, NslabError, TargetError, UserError

#: The JSON shape of one interface in ``ls --json`` (``{"name", "index", "up", "addresses"}``).
Interface = dict[str, Any]


def _net_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def nsfs_mounts() -> list[tuple[int, str]]:
    """(inode, mount point) of every network-namespace bind mount in our mount namespace."""
    return [
        (int(m.root[5:].rstrip("]")), m.point)
        for m in procfs.mounts()
        if m.fstype == "nsfs" and m.root.startswith("net:[")
    ]


def _processes() -> list[tuple[int, int, str]]:
    """(pid, net inode, command) of every user-space process (kernel threads have no command line)."""
    out = []
    for pid in procfs.pids():
        args = procfs.cmdline(pid)
        if not args:
            continue
        inode = procfs.ns_inode(pid, "net")
        if inode is not None:
            out.append((pid, inode, " ".join(args)))
    return out


# ----------------------------------------------------------------------------------------------
# Links + addresses of each namespace
# ----------------------------------------------------------------------------------------------


def _interfaces(link_list: list[rtnl.LinkInfo]) -> list[Interface]:
    return [
        {"name": lk.name, "index": lk.index, "up": lk.up, "addresses": [str(a) for a in lk.addresses]}
        for lk in sorted(link_list, key=lambda lk: lk.index)
    ]


def _interfaces_of(path: str, home: int) -> list[Interface] | None:
    """The interfaces of the namespace at ``path`` (None if it cannot be read); the thread returns ``home``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # never O_CREAT
    except OSError:
        return None
    try:
        if os.fstat(fd).st_ino == os.fstat(home).st_ino:  # a user who is not root cannot enter any namespace,
            sock = rtnl.open_socket()  # but sees the one the thread is in
        else:
            with linux.Visit(fd, home=home):
                sock = rtnl.open_socket()
        try:
            return _interfaces(rtnl.links(sock))
        finally:
            sock.close()
    except (OSError, NslabError):
        return None
    finally:
        os.close(fd)


def _read_interfaces(paths_by_inode: dict[int, str]) -> dict[int, list[Interface] | None]:
    """inode -> interfaces, each namespace entered through an opened file, all from one worker thread."""

    def work() -> dict[int, list[Interface] | None]:
        home = linux.own_namespace()
        try:
            return {inode: _interfaces_of(path, home) for inode, path in paths_by_inode.items()}
        finally:
            os.close(home)

    try:
        return linux.in_thread(work, name="nslab-ls")
    except OSError as exc:
        raise KernelError(f"cannot read namespaces: {exc}") from None


# ----------------------------------------------------------------------------------------------
# The census
# ----------------------------------------------------------------------------------------------


def _container_namespace(info: dict[str, Any]) -> tuple[int, str] | None:
    """(inode, path) of a running container's network namespace: its init process's, else its SandboxKey."""
    pid = (info.get("State") or {}).get("Pid")
    sandbox = (info.get("NetworkSettings") or {}).get("SandboxKey")
    for path in (procfs.ns_path(pid, "net") if pid else None, sandbox):
        inode = _net_inode(path) if path else None
        if path and inode is not None:
            return inode, path
    return None


class _Census:
    """Namespaces by inode, each with what keeps it alive, and one path through which it can be opened."""

    def __init__(self) -> None:
        self.machine = procfs.ns_inode("self", "net")
        self.spaces: dict[int, dict[str, Any]] = {}
        self.opener: dict[int, str] = {}
        if self.machine is not None:
            self.entry(self.machine)
            self.opener[self.machine] = procfs.ns_path("self", "net")

    def entry(self, inode: int) -> dict[str, Any]:
        if inode not in self.spaces:
            self.spaces[inode] = {
                "inode": inode,
                "machine": inode == self.machine,
                "names": [],
                "labs": [],
                "containers": [],
                "bind_mounts": [],
                "processes": [],
                "interfaces": [],
            }
        return self.spaces[inode]

    def _name(self, inode: int, name: str) -> None:
        names = self.entry(inode)["names"]
        if name not in names:
            names.append(name)

    def add_mounts(self) -> None:
        for inode, point in nsfs_mounts():
            parent, name = os.path.split(point)
            if parent == paths.NETNS_DIR:
                self._name(inode, name)
            elif point not in self.entry(inode)["bind_mounts"]:
                self.entry(inode)["bind_mounts"].append(point)
            self.opener.setdefault(inode, point)

    def add_named(self) -> None:
        """Names under /run/netns, also those mountinfo lists under another path (mount propagation)."""
        try:
            names = sorted(os.listdir(paths.NETNS_DIR))
        except OSError:
            return
        nsfs = os.stat(procfs.ns_path("self", "net")).st_dev
        for name in names:
            path = paths.netns_path(name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_dev != nsfs:
                continue  # a stale name: nothing mounted on it
            self._name(st.st_ino, name)
            self.opener[st.st_ino] = path

    def add_processes(self) -> None:
        for pid, inode, command in _processes():
            self.entry(inode)["processes"].append({"pid": pid, "command": command})
            self.opener.setdefault(inode, procfs.ns_path(pid, "net"))

    def add_labs(self) -> None:
        for st in state.all_states():
            for host in st.lab.hosts.values():
                inode = _net_inode(paths.netns_path(host.namespace))
                if inode is not None and inode in self.spaces:
                    self.spaces[inode]["labs"].append(f"{st.lab.name}/{host.name}")

    def add_containers(self) -> None:
        from .targets import running_containers

        for info in running_containers():
            found = _container_namespace(info)
            if found is not None:
                inode, path = found
                self.entry(inode)["containers"].append((info.get("Name") or "").lstrip("/") or info.get("Id", "")[:12])
                self.opener.setdefault(inode, path)

    def result(self) -> list[dict[str, Any]]:
        interfaces = _read_interfaces(self.opener)
        for inode, e in self.spaces.items():
            e["interfaces"] = interfaces.get(inode) or []
            e["names"].sort()
        return sorted(self.spaces.values(), key=lambda e: (not e["machine"], not e["labs"], e["names"], e["inode"]))


def list_namespaces(with_docker: bool = True) -> list[dict[str, Any]]:
    """Every network namespace on the machine, each once. The machine's own (the caller's) comes first.

    Each entry: ``inode``, ``machine`` (bool), ``names`` (ip netns names), ``labs`` ("lab/host"),
    ``containers`` (Docker names), ``bind_mounts`` (nsfs mount points other than /run/netns names),
    ``processes`` ([{pid, command}]), ``interfaces`` ([{name, index, up, addresses}]).
    """
    census = _Census()
    census.add_mounts()
    census.add_named()
    census.add_processes()
    census.add_labs()
    if with_docker:
        census.add_containers()
    return census.result()


# ----------------------------------------------------------------------------------------------
# attach / detach: a name under /run/netns for any target
# ----------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or len(name) > 255:
        raise UserError(f"'{name}' is not a namespace name")
    return paths.netns_path(name)


def attach(name: str, target: str) -> str:
    """Bind-mount the target's network namespace onto /run/netns/NAME (as `ip netns attach` does)."""
    from ..drivers.netlink import ensure_netns_dir
    from .targets import resolve

    path = _check_name(name)
    resolved = resolve(target)
    fd = resolved.open("net")  # checked: an nsfs file of a network namespace, alive while we hold it
    try:
        if os.path.lexists(path):
            raise ConflictError(f"a namespace named '{name}' exists already (see 'ip netns list'); pick another")
        ensure_netns_dir()
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        except FileExistsError:
            raise ConflictError(f"a namespace named '{name}' exists already; pick another") from None
        try:
            linux.mount(f"/proc/self/fd/{fd}", path, "none", linux.MS_BIND)
        except OSError as exc:
            os.unlink(path)
            raise KernelError(f"cannot name {target} '{name}': {exc.strerror}") from None
        record = paths.attached_record(name)
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, "w") as fh:
            fh.write(target + "\n")
    finally:
        os.close(fd)
    return path


def _interface_names(name: str) -> list[str]:
    """The interfaces inside netns ``name`` (for saying what a forced detach may take away)."""
    from ..drivers.netlink import open_namespace
    from ..drivers.rtnl import links

    try:
        ns = open_namespace(name)
    except NslabError:
        return []
    try:
        return [lk.name for lk in links(ns.sock, with_addresses=False) if lk.name != "lo"]
    finally:
        ns.close()


def detach(name: str, force: bool = False) -> list[str]:
    """Remove a name made by :func:`attach`; the namespace lives on as long as its owner does. A name nslab did
    not make (``ip netns add``) is refused unless ``force``; returns what a forced detach said it removes."""
    path = _check_name(name)
    said: list[str] = []
    for st in state.all_states():
        for host in st.lab.hosts.values():
            if host.namespace == name:
                raise ConflictError(
                    f"'{name}' is host {host.name} of lab {st.lab.name}: use 'nslab down {st.lab.name}'"
                )
    if not os.path.lexists(path):
        raise TargetError(f"no named network namespace '{name}'")
    record = paths.attached_record(name)
    if not os.path.exists(record):
        interfaces = _interface_names(name)
        what = (f"the name /run/netns/{name}, and the namespace with its interfaces "
                f"({', '.join(interfaces) or 'only lo'}) unless a process or another mount holds it")
        if not force:
            raise ConflictError(f"netns '{name}' was not made by nslab attach (ip netns add?): "
                                f"'nslab detach --force {name}' would remove {what}")
        said.append(f"nslab: removing {what}")
    try:
        linux.umount(path)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: nothing mounted (a stale name): just remove it
            raise KernelError(f"cannot unmount {path}: {exc.strerror}") from None
    for leftover in (path, record):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
    return said

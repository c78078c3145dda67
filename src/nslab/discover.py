"""Every network namespace on the machine (``nslab ls``), and giving one a name (``attach``/``detach``).

A namespace is keyed by its nsfs inode and found through everything that can keep it alive:
- processes (``/proc/*/ns/net``),
- bind mounts of nsfs files (``/proc/self/mountinfo``): ``ip netns`` names under /run/netns, Docker's
  SandboxKey files under /run/docker/netns, anything else,
- the labs nslab records, and the running Docker containers (by their init pid, from the Docker API).
Interfaces and addresses are read with raw netlink from a worker thread that setns()es into an *opened*
namespace file and back: nothing is ever created (no O_CREAT anywhere) and pyroute2 is not imported.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from typing import Any

from . import linux, state
from .errors import ConflictError, KernelError, TargetError, UserError

NETNS_DIR = "/run/netns"
RTM_GETLINK, RTM_GETADDR = 18, 22
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 1


def _net_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def nsfs_mounts() -> list[tuple[int, str]]:
    """(inode, mount point) of every network-namespace bind mount in our mount namespace."""
    out = []
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split(" ")
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if fields[sep + 1] != "nsfs" or not fields[3].startswith("net:["):
            continue
        inode = int(fields[3][5:].rstrip("]"))
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        out.append((inode, point))
    return out


def _processes() -> list[tuple[int, int, str]]:
    """(pid, net inode, command) of every user-space process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                raw = fh.read()
            if not raw:
                continue  # kernel thread
            inode = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        command = " ".join(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))
        out.append((int(entry), inode, command))
    return out


# ----------------------------------------------------------------------------------------------
# Raw netlink: links + addresses of one namespace
# ----------------------------------------------------------------------------------------------


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("HH", data, offset)
        if length < 4:
            break
        out.setdefault(kind & 0x3FFF, data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return out


def _dump(sock: socket.socket, mtype: int, body: bytes) -> list[tuple[bytes, int]]:
    header = struct.pack("IHHII", 16 + len(body), mtype, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    sock.send(header + body)
    out = []
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, rtype = struct.unpack_from("IH", data, offset)
            if rtype == NLMSG_DONE:
                return out
            if rtype == NLMSG_ERROR:
                code = -struct.unpack_from("i", data, offset + 16)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                return out
            out.append((data[offset : offset + length], length))
            offset += (length + 3) & ~3


def _interfaces(sock: socket.socket) -> list[dict[str, Any]]:
    links: dict[int, dict[str, Any]] = {}
    for msg, length in _dump(sock, RTM_GETLINK, struct.pack("BxHiII", 0, 0, 0, 0, 0)):
        _family, _type, index, flags = struct.unpack_from("BxHiI", msg, 16)
        attrs = _attrs(msg, 32, length)
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
        links[index] = {"name": name, "index": index, "up": bool(flags & IFF_UP), "addresses": []}
    for msg, length in _dump(sock, RTM_GETADDR, struct.pack("BBBBI", 0, 0, 0, 0, 0)):
        family, prefixlen, _flags, _scope, index = struct.unpack_from("BBBBI", msg, 16)
        attrs = _attrs(msg, 24, length)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if not raw or index not in links:
            continue
        address = ipaddress.ip_address(raw if family == socket.AF_INET else bytes(raw[:16]))
        links[index]["addresses"].append(f"{address}/{prefixlen}")
    return [links[i] for i in sorted(links)]


def _read_interfaces(paths: dict[int, str]) -> dict[int, list[dict[str, Any]] | None]:
    """inode -> interfaces, each namespace entered through an opened file in one worker thread."""
    result: dict[int, list[dict[str, Any]] | None] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            failure.append(exc)
            return
        try:
            for inode, path in paths.items():
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # never O_CREAT
                except OSError:
                    result[inode] = None
                    continue
                try:
                    linux.setns(fd, linux.CLONE_NEWNET)
                    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
                    try:
                        sock.bind((0, 0))
                        result[inode] = _interfaces(sock)
                    finally:
                        sock.close()
                except OSError:
                    result[inode] = None
                finally:
                    os.close(fd)
                    linux.setns(home, linux.CLONE_NEWNET)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
        finally:
            os.close(home)

    worker = threading.Thread(target=work, name="nslab-ls")
    worker.start()
    worker.join()
    if failure:
        raise KernelError(f"cannot read namespaces: {failure[0]}")
    return result


# ----------------------------------------------------------------------------------------------


def list_namespaces(with_docker: bool = True) -> list[dict[str, Any]]:
    """Every network namespace on the machine, each once. The machine's own (the caller's) comes first.

    Each entry: ``inode``, ``machine`` (bool), ``names`` (ip netns names), ``labs`` ("lab/host"),
    ``containers`` (Docker names), ``bind_mounts`` (nsfs mount points other than /run/netns names),
    ``processes`` ([{pid, command}]), ``interfaces`` ([{name, index, up, addresses}]).
    """
    machine = os.stat("/proc/self/ns/net").st_ino
    nsfs = _nsfs_dev()
    spaces: dict[int, dict[str, Any]] = {}
    opener: dict[int, str] = {}

    def entry(inode: int) -> dict[str, Any]:
        if inode not in spaces:
            spaces[inode] = {
                "inode": inode,
                "machine": inode == machine,
                "names": [],
                "labs": [],
                "containers": [],
                "bind_mounts": [],
                "processes": [],
                "interfaces": [],
            }
        return spaces[inode]

    entry(machine)
    opener[machine] = "/proc/self/ns/net"
    for inode, point in nsfs_mounts():
        e = entry(inode)
        parent, name = os.path.split(point)
        if parent == NETNS_DIR:
            if name not in e["names"]:
                e["names"].append(name)
        elif point not in e["bind_mounts"]:
            e["bind_mounts"].append(point)
        opener.setdefault(inode, point)
    # names under /run/netns seen even when mountinfo lists them under another path (mount propagation)
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(NETNS_DIR, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_dev != nsfs:
            continue  # a stale name: nothing mounted on it
        e = entry(st.st_ino)
        if name not in e["names"]:
            e["names"].append(name)
        opener[st.st_ino] = path
    for pid, inode, command in _processes():
        entry(inode)["processes"].append({"pid": pid, "command": command})
        opener.setdefault(inode, f"/proc/{pid}/ns/net")
    for st in state.all_states():
        for host in st.lab.hosts.values():
            inode = _net_inode(os.path.join(NETNS_DIR, host.namespace))
            if inode is not None and inode in spaces:
                spaces[inode]["labs"].append(f"{st.lab.name}/{host.name}")
    if with_docker:
        from .targets import running_containers

        for info in running_containers():
            name = (info.get("Name") or "").lstrip("/") or info.get("Id", "")[:12]
            pid = (info.get("State") or {}).get("Pid")
            inode = _net_inode(f"/proc/{pid}/ns/net") if pid else None
            if inode is None:
                sandbox = (info.get("NetworkSettings") or {}).get("SandboxKey")
                inode = _net_inode(sandbox) if sandbox else None
            if inode is not None:
                entry(inode)["containers"].append(name)
                opener.setdefault(inode, f"/proc/{pid}/ns/net")
    interfaces = _read_interfaces(opener)
    for inode, e in spaces.items():
        e["interfaces"] = interfaces.get(inode) or []
        e["names"].sort()
    return sorted(spaces.values(), key=lambda e: (not e["machine"], not e["labs"], e["names"], e["inode"]))


# ----------------------------------------------------------------------------------------------
# attach / detach: a name under /run/netns for any target
# ----------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or len(name) > 255:
        raise UserError(f"'{name}' is not a namespace name")
    return os.path.join(NETNS_DIR, name)


def attach(name: str, target: str) -> str:
    """Bind-mount the target's network namespace onto /run/netns/NAME (as `ip netns attach` does)."""
    from .drivers.netlink import ensure_netns_dir
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
    finally:
        os.close(fd)
    return path


def detach(name: str) -> None:
    """Remove a name made by :func:`attach`; the namespace lives on as long as its owner does."""
    path = _check_name(name)
    for st in state.all_states():
        for host in st.lab.hosts.values():
            if host.namespace == name:
                raise ConflictError(
                    f"'{name}' is host {host.name} of lab {st.lab.name}: use 'nslab down {st.lab.name}'"
                )
    if not os.path.lexists(path):
        raise TargetError(f"no named network namespace '{name}'")
    try:
        linux.umount(path)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: nothing mounted (a stale name): just remove it
            raise KernelError(f"cannot unmount {path}: {exc.strerror}") from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

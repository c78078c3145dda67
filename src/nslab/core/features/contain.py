"""Containment of what a host runs (``user:``, ``cap_drop:``/``cap_add:``, ``no_new_privileges:``,
``read_only:``, ``tmpfs:``, ``writable:``, ``private_tmp:``, ``pid:``): part of the services feature.

A light host isolates its network and nothing else unless these are written: its services run as root with
every capability, in the machine's filesystem and PIDs. This module resolves the fields into a
:class:`~nslab.model.Containment` (a user looked up in the machine's passwd/group), says what the supervisor
is to apply (:func:`service_config`, applied by ns/contain.py in the service's process) and prints it as the
``unshare``/``mount``/``setpriv`` commands a person would type (:func:`commands`, for ``--dry-run``). A
container host's containment goes to Docker instead (features/containers.py: :func:`docker_host_config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...model import CAPABILITIES, NO_CONTAINMENT, Containment
from ...paths import lab_dir
from ...records import encode
from ...values import replace
from ..plan import shell_quote

if TYPE_CHECKING:
    from ..spec import HostSpec
    from . import Report

#: The fields that confine a host's processes (a change restarts that host's services only).
FIELDS = ("user", "cap_drop", "cap_add", "no_new_privileges", "read_only", "tmpfs", "writable", "private_tmp",
          "pid")


def capability(text: str) -> str | None:
    """``NET_ADMIN``, ``cap_net_admin`` or ``ALL`` -> ``net_admin`` / ``all``; None: no such capability."""
    name = text.strip().lower()
    name = name[4:] if name.startswith("cap_") else name
    return name if name == "all" or name in CAPABILITIES else None


def _capabilities(written: Mapping[str, Any], key: str, report: Report) -> tuple[str, ...]:
    out = []
    for i, text in enumerate(written.get(key) or ()):
        found = capability(text)
        if found is None:
            report((key, i), f"unknown capability '{text}' (e.g. NET_ADMIN, NET_BIND_SERVICE, ALL)")
        elif found not in out:
            out.append(found)
    return tuple(out)


def lookup_user(user: str) -> tuple[int, int, tuple[int, ...], str | None] | str:
    """``NAME|UID[:GROUP|GID]`` in this machine's passwd/group -> (uid, gid, groups, home), or what is wrong.
    A numeric uid need not be in passwd (its group is then the same number, and it has no others)."""
    import grp
    import pwd

    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        if not name.isdigit():
            return f"no user '{name}' in this machine's /etc/passwd"
        entry = None
    uid = entry.pw_uid if entry else int(name)
    gid = entry.pw_gid if entry else uid
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            return f"no group '{group}' in this machine's /etc/group"
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid)))) if entry and not group else (gid,)
    return uid, gid, groups, entry.pw_dir if entry else None


def resolve(name: str, host: HostSpec, report: Report, light: bool = True) -> Containment:
    """Host ``name``'s containment. ``light``: its services' (the user looked up on this machine); else a
    container host's (the user is the image's to know, and Docker has no ``writable:``)."""
    written = {key: getattr(host, key) for key in FIELDS if key in host.model_fields_set}
    return build(written, lambda path, message: report(("hosts", name, *path), message), light)


def build(written: Mapping[str, Any], report: Report, light: bool = True) -> Containment:
    """A containment from the fields written (keys of :data:`FIELDS`; a lab file's host, or ``nslab run``'s
    options); ``report(path below the host, message)`` for each problem."""
    if not written:
        return NO_CONTAINMENT
    _check_paths(written, report, light)
    contain = Containment(
        user=written.get("user"), cap_drop=_capabilities(written, "cap_drop", report),
        cap_add=_capabilities(written, "cap_add", report), no_new_privileges=written.get("no_new_privileges"),
        read_only=bool(written.get("read_only")), tmpfs=tuple(dict.fromkeys(written.get("tmpfs") or ())),
        writable=tuple(dict.fromkeys(written.get("writable") or ())),
        private_tmp=bool(written.get("private_tmp")), pid=written.get("pid") or "host")
    if contain.writable and not contain.read_only:
        report(("writable",), "writable: paths kept read-write under read_only: true; set it")
    if not light:
        if contain.writable:
            report(("writable",), "a container host has no writable: give it volumes: instead")
        return contain
    return _with_user(contain, report)


def _check_paths(written: Mapping[str, Any], report: Report, light: bool) -> None:
    """Absolute paths; on a light host, directories of this machine (a mount needs one to mount on)."""
    for key in ("tmpfs", "writable"):
        for i, path in enumerate(written.get(key) or ()):
            if not path.startswith("/") or path.rstrip("/") == "" or "\0" in path:
                report((key, i), f"'{path}' is not an absolute path below /")
            elif light and not os.path.isdir(path):
                report((key, i), f"no directory {path} on this machine to mount on")


def _with_user(contain: Containment, report: Report) -> Containment:
    """``contain`` with its user's ids from this machine's passwd/group."""
    if contain.user is None:
        return contain
    found = lookup_user(contain.user)
    if isinstance(found, str):
        report(("user",), found)
        return contain
    uid, gid, groups, home = found
    return replace(contain, uid=uid, gid=gid, groups=groups, home=home)


def private_tmp(lab: str, host: str) -> str:
    """The directory that is ``/tmp`` for the services of a host with ``private_tmp`` (gone with the lab's
    state directory at ``down``)."""
    return os.path.join(lab_dir(lab), "tmp", host)


def service_config(lab: str, host: str, contain: Containment) -> dict[str, Any]:
    """The keys a contained service adds to its entry of the supervisor's config (none when not contained, so
    the entry of an uncontained service stays as it was)."""
    if not contain.active():
        return {}
    return {"contain": encode(contain), **({"private_tmp": private_tmp(lab, host)} if contain.private_tmp else {})}


# --- the dry-run ---------------------------------------------------------------------------------------------
def _mount_steps(contain: Containment, tmp_dir: str | None) -> list[str]:
    """The mounts in the order ns/contain.py makes them (a bind made after the read-only remount would be
    read-only too: binds first, made read-write again after)."""
    steps = ["mount -t proc proc /proc"] if contain.pid == "private" else []
    binds = [(tmp_dir, "/tmp")] if tmp_dir else []
    binds += [(path, path) for path in contain.writable]
    steps += [f"mount --rbind {shell_quote(source)} {shell_quote(target)}" for source, target in binds]
    if contain.read_only:
        steps.append('findmnt -rno TARGET | while read -r m; do mount -o remount,bind,ro "$m"; done')
        steps += [f"mount -o remount,bind,rw {shell_quote(target)}" for _, target in binds]
    steps += [f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {shell_quote(p)}" for p in contain.mounts()
              if not (tmp_dir and p == "/tmp")]
    return steps


def _caps_words(contain: Containment) -> list[str]:
    kept = contain.capabilities()
    if contain.all_capabilities():
        return []
    if contain.root() and "all" not in contain.cap_drop:
        dropped = ",".join(f"-{c}" for c in CAPABILITIES if c not in kept)
        return [f"--bounding-set={dropped}"]
    added = "".join(f",+{c}" for c in CAPABILITIES if c in kept)
    words = [f"--inh-caps=-all{added}", f"--bounding-set=-all{added}"]
    return words + ([f"--ambient-caps={added[1:]}"] if added and not contain.root() else [])


def setpriv_words(contain: Containment) -> list[str]:
    """``setpriv`` and its options for the user, capabilities and no_new_privs (empty: nothing to change)."""
    words = []
    if contain.user is not None and contain.uid is not None:
        groups = ",".join(str(g) for g in contain.groups)
        words += [f"--reuid={contain.uid}", f"--regid={contain.gid}",
                  f"--groups={groups}" if groups else "--clear-groups"]
    words += _caps_words(contain)
    words += [] if contain.new_privileges() else ["--no-new-privs"]
    return ["setpriv", *words] if words else []


def commands(contain: Containment, enter: str, command: str, tmp_dir: str | None = None,
             pid_ns: str | None = None) -> str:
    """A contained service as one shell command: ``enter`` (the ``nsenter ...`` of its host), a PID namespace
    (``pid_ns``: how its host's is named), a private mount namespace with its mounts, then ``setpriv``."""
    inner = ["sh", "-c", shell_quote(command)]
    setpriv = setpriv_words(contain)
    last = " ".join(["exec", *setpriv, "--", *inner] if setpriv else ["exec", *inner])
    steps = _mount_steps(contain, tmp_dir)
    pid = [f"--pid={pid_ns}"] if contain.pid == "private" and pid_ns else []
    if not steps:
        return " ".join([enter, *pid, "--", last[len("exec "):]])
    script = " && ".join([*steps, last])
    return " ".join([enter, *pid, "-- unshare --mount --propagation slave -- sh -c", shell_quote(script)])


# --- a container host: Docker's own options ------------------------------------------------------------------
def _tmpfs(contain: Containment) -> list[str]:
    return list(dict.fromkeys([*contain.mounts(), *(["/tmp"] if contain.private_tmp else [])]))


def docker_host_config(contain: Containment) -> dict[str, Any]:
    """The Engine API's ``HostConfig`` keys for a container host's containment (its ``user:`` is ``User``;
    its PIDs are always its own: Docker's default ``PidMode``)."""
    config: dict[str, Any] = {}
    if contain.cap_drop:
        config["CapDrop"] = [c.upper() for c in contain.cap_drop]
    if contain.cap_add:
        config["CapAdd"] = [c.upper() for c in contain.cap_add]
    if contain.read_only:
        config["ReadonlyRootfs"] = True
    if _tmpfs(contain):
        config["Tmpfs"] = {path: "" for path in _tmpfs(contain)}
    if not contain.new_privileges():
        config["SecurityOpt"] = ["no-new-privileges:true"]
    return config


def docker_flags(contain: Containment) -> list[str]:
    """The same as ``docker create`` flags (for ``--dry-run``)."""
    words = [f"--cap-drop {c.upper()}" for c in contain.cap_drop]
    words += [f"--cap-add {c.upper()}" for c in contain.cap_add]
    words += ["--read-only"] if contain.read_only else []
    words += [f"--tmpfs {shell_quote(p)}" for p in _tmpfs(contain)]
    words += ["--security-opt no-new-privileges:true"] if not contain.new_privileges() else []
    return words

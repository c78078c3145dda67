"""Every path of nslab's own files and of the files it shares with iproute2 and Docker, in one place, and which
labs are up (``os`` and naming.py only: ``nslab exec`` imports this). The kernel's own interfaces (``/proc``,
``/sys``) are spelled where they are read.

- ``/run/netns/<namespace>``       named network namespaces, as ``ip netns`` keeps them;
- ``/etc/netns/<namespace>/``      per-namespace files bound over ``/etc`` by ``ip netns exec`` / ``nslab exec``;
- ``$NSLAB_STATE_DIR`` (``/run/nslab``), the state root:
    ``.lock``                      the machine-wide lock of every mutating operation;
    ``.firewall.json``             machine-wide settings nslab changed and their prior values (ip_forward);
    ``.ula6``                      the machine's IPv6 unique local /48 (core/ula.py);
    ``.cache/<key>.json``          kept lab files with their resolved forms (core/kept.py; a rootless user's
                                   are in ``$XDG_CACHE_HOME/nslab``, else ``~/.cache/nslab``, and stay
                                   after the user's last ``down``: all that does);
    ``.attached/<name>``           marks a ``/run/netns`` name made by ``nslab attach``;
    ``<lab>/state.json``           what is up (state.py); ``<lab>/intent.json``: what an unfinished ``up`` made;
    ``<lab>/uts/<host>``           a host's kept UTS (hostname) namespace, on a small tmpfs of the lab's own;
    ``<lab>/services.json``        what the lab's supervisor runs; ``services.status.json``: what it is doing;
    ``<lab>/logs/<host>.<n>.log``  each service's output; ``logs/supervisor.log`` the supervisor's own;
    ``<lab>/logs/<host>.<n>.log.times``  when each line of that log arrived: ``OFFSET UNIX_TIME`` lines;
    ``<lab>/events.jsonl``         what happened to the lab, one JSON line per event (core/events.py);
- a rootless user's state root (:func:`user_state_root`: ``/run/user/UID/nslab`` when ``/run/user/UID`` is the
  user's, else ``/tmp/nslab-UID``; never from the environment, so a login shell, cron and ``sudo -u`` agree), laid
  out as the above plus ``.keeper.pid`` (the keeper's pid and user namespace), ``.keeper.hold``,
  ``.keeper.start`` (locks), ``.keeper.log``, ``.way-out``,
  ``.unrelayed.json``, ``.synced``, ``.resolv.conf``;
- ``<cgroup2>/nslab/<lab>-<tag>/``  the cgroup of a lab's supervisor and, below it, one per service;
- ``/var/run/docker.sock``         Docker's Engine API, unless ``DOCKER_HOST`` names another socket.

Every path of a lab is derived from its name, and ``down`` deletes under it: :func:`lab_dir` refuses
anything that is not a lab name, so ``nslab down /some/dir`` can never reach outside the state root.
"""

from __future__ import annotations

import os

from .naming import namespace_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `nslab exec` imports this module
if TYPE_CHECKING:
    from collections.abc import Callable

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def netns_path(namespace: str) -> str:
    """``/run/netns/NAME``: what ``ip netns add NAME`` makes and ``nsenter --net=`` takes."""
    return os.path.join(NETNS_DIR, namespace)


def etc_netns_dir(namespace: str) -> str:
    return os.path.join(ETC_NETNS_DIR, namespace)


def state_root() -> str:
    """``$NSLAB_STATE_DIR``, else ``/run/nslab`` for root and :func:`user_state_root` for anyone else (a command
    that joined the user's keeper sets ``NSLAB_STATE_DIR``: inside, it is root of the user's namespace)."""
    found = os.environ.get("NSLAB_STATE_DIR")
    if found:
        return found
    return "/run/nslab" if os.geteuid() == 0 else user_state_root(os.getuid())


# Rootless (daemons/keeper.py): a user's labs live in the user's own namespaces, their state under here.

#: Set (to the user's uid) in a command that joined its user's keeper, and in everything it starts.
ROOTLESS_ENV = "NSLAB_ROOTLESS"
RUN_USER = "/run/user"
TMP = "/tmp"


def user_state_root(uid: int, run_user: str = RUN_USER, tmp: str = TMP) -> str:
    """A user's state root, whatever the environment says (``XDG_RUNTIME_DIR`` is not read: a login shell has
    it, cron and ``sudo -u`` do not, and after ``su`` it may name another user's directory): ``/run/user/UID/nslab``
    when ``/run/user/UID`` is a directory owned by the user, else ``/tmp/nslab-UID`` (mode 0700, owned by the
    user: the keeper refuses one that is not)."""
    runtime = os.path.join(run_user, str(uid))
    try:
        st = os.lstat(runtime)
    except OSError:
        st = None
    if st is not None and st.st_mode & 0o170000 == 0o040000 and st.st_uid == uid:  # (a directory, no symlink)
        return os.path.join(runtime, "nslab")
    return os.path.join(tmp, f"nslab-{uid}")


def state_root_owner(root: str, run_user: str = RUN_USER, tmp: str = TMP) -> int | None:
    """The uid whose state root ``root`` is, when root may trust it as such: exactly ``/run/user/UID/nslab`` or
    ``/tmp/nslab-UID``, a directory owned by UID (``/run/user/UID`` too), with no symlink anywhere on the path
    (its realpath is itself). None for anything else (root's ``ls`` and ``gc`` skip it)."""
    parent, name = os.path.split(root)
    if name == "nslab" and os.path.dirname(parent) == run_user and os.path.basename(parent).isdigit():
        uid, owned = int(os.path.basename(parent)), [parent, root]
    elif parent == tmp and name.startswith("nslab-") and name[6:].isdigit():
        uid, owned = int(name[6:]), [root]
    else:
        return None
    if os.path.realpath(root) != root:
        return None
    for path in owned:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if st.st_mode & 0o170000 != 0o040000 or st.st_uid != uid:
            return None
    return uid


def keeper_pid_file(root: str) -> str:
    """The pid of the user's keeper, whose user, mount and network namespaces every rootless command joins."""
    return os.path.join(root, ".keeper.pid")


def keeper_hold_file(root: str) -> str:
    """flock'ed shared by each command inside the keeper's namespaces; the keeper leaves only when it can lock
    it exclusively and no lab is left."""
    return os.path.join(root, ".keeper.hold")


def keeper_start_file(root: str) -> str:
    """flock'ed exclusively by a command starting the keeper: two first ``up``s at once start one keeper."""
    return os.path.join(root, ".keeper.start")


def keeper_log(root: str) -> str:
    return os.path.join(root, ".keeper.log")


def keeper_synced(root: str) -> str:
    """Rewritten by the keeper after each sync of its port forwards and relays (a command waits for it)."""
    return os.path.join(root, ".synced")


def keeper_unrelayed(root: str) -> str:
    """The published ports the keeper cannot relay from the machine now (daemons/keeper.py), by lab."""
    return os.path.join(root, ".unrelayed.json")


def keeper_way_out(root: str) -> str:
    """The way out the keeper chose (daemons/wayout.py), as ``status`` says it."""
    return os.path.join(root, ".way-out")


def keeper_resolv_conf(root: str) -> str:
    """The resolv.conf bound over ``/etc/resolv.conf`` in the keeper's mount namespace (slirp4netns's DNS)."""
    return os.path.join(root, ".resolv.conf")


def user_state_roots(run_user: str = RUN_USER, tmp: str = TMP) -> list[str]:
    """Every user's state root with a keeper pid file in it (``/run/user/UID/nslab``, ``/tmp/nslab-UID``) that
    :func:`state_root_owner` accepts: what root's ``ls`` and ``gc`` look at."""
    found = []
    for parent, prefix in ((run_user, ""), (tmp, "nslab-")):
        try:
            entries = sorted(os.listdir(parent))
        except OSError:
            continue
        for entry in entries:
            if not entry.startswith(prefix) or not entry[len(prefix):].isdigit():
                continue
            root = os.path.join(parent, entry, "nslab") if not prefix else os.path.join(parent, entry)
            if state_root_owner(root, run_user, tmp) is not None and os.path.lexists(keeper_pid_file(root)):
                found.append(root)
    return found


def lock_file() -> str:
    return os.path.join(state_root(), ".lock")


def machine_record() -> str:
    return os.path.join(state_root(), ".firewall.json")


def ula_file() -> str:
    return os.path.join(state_root(), ".ula6")


def cache_dir() -> str:
    """Kept lab files (core/kept.py): under the state root; a rootless user's in ``$XDG_CACHE_HOME/nslab``
    (else ``~/.cache/nslab``), which outlives the user's keeper and state root as root's outlives its labs."""
    if os.environ.get(ROOTLESS_ENV):
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME") or state_root(), ".cache")
        return os.path.join(cache, "nslab")
    return os.path.join(state_root(), ".cache")


def cgroups_dir(cgroup2: str) -> str:
    """nslab's cgroups under the cgroup v2 mount ``cgroup2``: one directory per supervisor run of a lab."""
    return os.path.join(cgroup2, "nslab")


def attached_record(name: str) -> str:
    """``/run/nslab/.attached/NAME``: marks ``/run/netns/NAME`` as made by ``nslab attach`` (so detach may remove
    it); a dot directory, never a lab's."""
    return os.path.join(state_root(), ".attached", name)


def engine_mark(lab: str) -> str:
    """``/run/nslab/.engine/LAB``: this machine's part of ``lab`` is held by an engine's runner (``nslab machine
    run --held-by ENGINE``; the file names the engine): ``down``, ``status`` and ``exec`` go through the engine."""
    return os.path.join(state_root(), ".engine", lab)


def is_lab_name(name: str) -> bool:
    """``[a-z][a-z0-9-]{0,11}`` without importing ``re``; always a plain path component."""
    return 0 < len(name) <= 12 and "a" <= name[0] <= "z" and set(name) <= _NAME_CHARS


def lab_dir(lab: str) -> str:
    if not is_lab_name(lab):
        from .errors import UserError

        raise UserError(f"'{lab}' is not a lab name (a-z, 0-9 and '-', starting with a letter, at most 12)")
    return os.path.join(state_root(), lab)


def state_file(lab: str) -> str:
    return os.path.join(lab_dir(lab), "state.json")


def intent_file(lab: str) -> str:
    """What a running ``up`` is about to create (kept until its state is saved or it rolled back)."""
    return os.path.join(lab_dir(lab), "intent.json")


def uts_dir(lab: str) -> str:
    """The lab's hostname pins (a small tmpfs of its own, see features/hostnames.py)."""
    return os.path.join(lab_dir(lab), "uts")


def uts_path(lab: str, host: str) -> str:
    """Where a host's UTS (hostname) namespace is kept bind-mounted for the lab's lifetime."""
    return os.path.join(uts_dir(lab), host)


def supervisor_config(lab: str) -> str:
    return os.path.join(lab_dir(lab), "services.json")


def services_status(lab: str) -> str:
    return os.path.join(lab_dir(lab), "services.status.json")


def logs_dir(lab: str) -> str:
    return os.path.join(lab_dir(lab), "logs")


def log_path(lab: str, host: str, n: int) -> str:
    return os.path.join(logs_dir(lab), f"{host}.{n}.log")


def log_times(log: str) -> str:
    """The side index of a service log: one ``OFFSET UNIX_TIME`` line per line of the log (``logs -t``)."""
    return log + ".times"


def events_file(lab: str) -> str:
    """The lab's events, appended by whoever makes a change (core/events.py), read by ``nslab events``."""
    return os.path.join(lab_dir(lab), "events.jsonl")


def supervisor_log(lab: str) -> str:
    return os.path.join(logs_dir(lab), "supervisor.log")


#: Docker's Engine API socket when ``DOCKER_HOST`` names none.
DOCKER_SOCKET = "/var/run/docker.sock"


def delayer_config(lab: str) -> str:
    """What the lab's packet delayer holds back (features/impair.py, nslab/delayer.py)."""
    return os.path.join(lab_dir(lab), "delayer.json")


def delayer_status(lab: str) -> str:
    return os.path.join(lab_dir(lab), "delayer.status.json")


# Which labs are up, read from the layout above alone (no record parsed: ``nslab exec`` finds its host here).


def kept_hosts(host: str, lab: str | None = None) -> list[tuple[str, str]]:
    """``(lab, namespace)`` of every lab that is up with ``host`` (only ``lab`` if given), read from the
    hosts' kept UTS namespaces and ``/run/netns`` — no state file parsed, which keeps exec fast."""
    if lab is not None and not is_lab_name(lab):
        return []
    found = []
    for name in [lab] if lab else lab_names():
        namespace = namespace_name(name, host)
        if os.path.exists(uts_path(name, host)) and os.path.exists(netns_path(namespace)):
            found.append((name, namespace))
    return found


def lab_names() -> list[str]:
    """Labs that are up (that have a state file)."""
    return _labs_having(state_file)


def labs_with_intent() -> list[str]:
    """Labs with an unfinished ``up`` (an intent file), with or without a state."""
    return _labs_having(intent_file)


def _labs_having(file_of: Callable[[str], str]) -> list[str]:
    try:
        entries = os.listdir(state_root())
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if is_lab_name(e) and os.path.isfile(file_of(e)))

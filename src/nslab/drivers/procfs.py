"""The one reader of ``/proc``: processes, their namespaces, environments, open files and the mount table.

Everything nslab learns about processes it learns here — ``ls`` (who keeps which namespace alive),
``down`` (what still runs in a lab's hosts), the supervisor and ``gc`` (is the owner of a record still the
same process), the fallback service tracking (``NSLAB_SERVICE=`` in ``/proc/PID/environ``), the owner of
a socket for "port in use by process X" messages (:func:`socket_owner`) — so
``ps``, ``pgrep``, ``ip netns pids``, ``lsns``, ``ss -p`` and ``findmnt`` are never forked. Read-only;
stdlib ``os`` only.

Every function takes a pid (or ``"self"``/``"thread-self"`` where that makes sense) and answers ``None``
(or an empty answer) for a process that is gone or unreadable: processes exit while /proc is walked, and a
caller must never fail because one did. :data:`PROC` is the root read, so tests can point it at a fake tree.
"""

from __future__ import annotations

import os

PROC = "/proc"

# /proc/PID/stat after the ")" that ends the command name: field 3 (state) is index 0 (proc(5)).
_STATE, _PPID, _STARTTIME = 0, 1, 19


def pids() -> list[int]:
    """Every process id on the machine (of our PID namespace), ascending."""
    try:
        entries = os.listdir(PROC)
    except OSError:
        return []
    return sorted(int(entry) for entry in entries if entry.isdigit())


def exists(pid: int) -> bool:
    return os.path.exists(f"{PROC}/{pid}")


def _read_bytes(pid: int | str, name: str) -> bytes | None:
    try:
        with open(f"{PROC}/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` from the state on (the command name may hold spaces and ``)``)."""
    raw = _read_bytes(pid, "stat")
    if raw is None:
        return None
    _, sep, rest = raw.decode(errors="replace").rpartition(")")
    return rest.split() if sep else None


def _stat_field(pid: int | str, index: int) -> str | None:
    fields = _stat(pid)
    return fields[index] if fields is not None and len(fields) > index else None


def state(pid: int | str) -> str | None:
    """The one-letter state (``R``, ``S``, ``Z`` for a zombie, ...), None when the process is gone."""
    return _stat_field(pid, _STATE)


def ppid(pid: int | str) -> int | None:
    value = _stat_field(pid, _PPID)
    return int(value) if value is not None and value.isdigit() else None


def start_time(pid: int | str) -> int | None:
    """When the process started (clock ticks since boot): with the pid, an identity that survives pid reuse."""
    value = _stat_field(pid, _STARTTIME)
    return int(value) if value is not None and value.isdigit() else None


def age(pid: int | str) -> float | None:
    """Seconds since the process started (``/proc/uptime`` less its start time), None when it is gone."""
    started = start_time(pid)
    if started is None:
        return None
    try:
        with open(f"{PROC}/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - started / os.sysconf("SC_CLK_TCK")


def is_running(pid: int | None, started: int | str | None = None) -> bool:
    """Whether ``pid`` lives and is not a zombie; with ``started``, whether it is still *that* process."""
    if not pid:
        return False
    fields = _stat(pid)
    if fields is None or len(fields) <= _STARTTIME or fields[_STATE] == "Z":
        return False
    return started is None or str(started) == fields[_STARTTIME]


def comm(pid: int | str) -> str | None:
    """The short command name (``/proc/PID/comm``, at most 15 characters)."""
    raw = _read_bytes(pid, "comm")
    return None if raw is None else raw.decode(errors="replace").rstrip("\n")


def cmdline(pid: int | str) -> list[str] | None:
    """The arguments; ``[]`` for a kernel thread (or a zombie), None when the process is gone."""
    raw = _read_bytes(pid, "cmdline")
    if raw is None:
        return None
    if not raw:
        return []
    return [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]


def describe(pid: int) -> str:
    """``1234 (sleep 60)``: a pid and its command line, for messages."""
    args = cmdline(pid)
    command = " ".join(args).strip() if args is not None else "?"
    return f"{pid} ({command[:60]})"


def ns_path(pid: int | str, kind: str = "net") -> str:
    """``/proc/PID/ns/KIND``: the file ``nsenter --net=`` and ``setns`` take (``pid`` may be ``thread-self``)."""
    return f"{PROC}/{pid}/ns/{kind}"


def ns_inode(pid: int | str, kind: str = "net") -> int | None:
    """The inode of the process's namespace of ``kind`` (what ``lsns`` shows), None when it is gone."""
    try:
        return os.stat(ns_path(pid, kind)).st_ino
    except OSError:  # gone, or a zombie (its namespaces are released already)
        return None


def environ_has(pid: int, key: str, value: str) -> bool:
    """Whether the process's environment (as it was at exec) holds ``KEY=VALUE``."""
    raw = _read_bytes(pid, "environ")
    return raw is not None and f"{key}={value}".encode() in raw.split(b"\0")


def ancestors(pid: int | None = None) -> set[int]:
    """``pid`` (default: this process) and its parents up to, not including, init."""
    out: set[int] = set()
    current: int | None = os.getpid() if pid is None else pid
    while current is not None and current > 1 and current not in out:
        out.add(current)
        current = ppid(current)
    return out


def fd_links(pid: int | str) -> list[str]:
    """Where each open file descriptor of the process points (``socket:[INODE]``, a path, ...)."""
    directory = f"{PROC}/{pid}/fd"
    try:
        fds = os.listdir(directory)
    except OSError:
        return []
    out = []
    for fd in fds:
        try:
            out.append(os.readlink(f"{directory}/{fd}"))
        except OSError:
            continue
    return out


def socket_owner(inode: int) -> str:
    """``process 'NAME' (pid N)`` that holds socket ``inode`` open, or ``a process`` if none is found."""
    wanted = f"socket:[{inode}]"
    for pid in pids():
        if wanted in fd_links(pid):
            return f"process '{comm(pid) or '?'}' (pid {pid})"
    return "a process"


def udp_local_addresses(port: int, pid: int | str = "thread-self") -> set[str]:
    """IPv4 addresses with a UDP socket bound on ``port`` in the network namespace of ``pid``'s
    ``/proc/PID/net/udp`` (``thread-self``: the namespace the calling thread is in). ``ss -lun sport PORT``."""
    raw = _read_bytes(pid, "net/udp")
    out = set()
    for line in (raw or b"").decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 2 or ":" not in fields[1]:
            continue
        address, _, hex_port = fields[1].partition(":")
        if int(hex_port, 16) == port and len(address) == 8:
            out.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


# ----------------------------------------------------------------------------------------------
# The mount table
# ----------------------------------------------------------------------------------------------


class Mount:
    """One line of ``/proc/self/mountinfo``: ``root`` (for nsfs: ``net:[INODE]``), ``point``, ``fstype``."""

    __slots__ = ("root", "point", "fstype", "source")

    def __init__(self, root: str, point: str, fstype: str, source: str) -> None:
        self.root, self.point, self.fstype, self.source = root, point, fstype, source

    def __repr__(self) -> str:
        return f"Mount({self.root!r}, {self.point!r}, {self.fstype!r}, {self.source!r})"


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\040``)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all("0" <= c <= "7" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _parse_mount(line: str) -> Mount | None:
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)  # optional fields end with a lone "-"
    except ValueError:
        return None
    if len(fields) < sep + 3:
        return None
    return Mount(_unescape(fields[3]), _unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2]))


def mounts() -> list[Mount]:
    """The mount table of our mount namespace (``findmnt``), in mount order."""
    try:
        with open(f"{PROC}/self/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return [m for m in map(_parse_mount, lines) if m is not None]


# --- counters (``nslab stats``) ------------------------------------------------------------------------------
#: The columns of /proc/net/dev that ``stats`` shows, by their index after the interface name.
NET_DEV_COLUMNS = {"rx_bytes": 0, "rx_packets": 1, "rx_dropped": 3, "tx_bytes": 8, "tx_packets": 9, "tx_dropped": 11}


def net_dev(pid: int | str = "thread-self") -> dict[str, dict[str, int]]:
    """Interface -> its counters (:data:`NET_DEV_COLUMNS`), in the network namespace of ``pid`` (default: the
    calling thread's, which may have entered another)."""
    data = _read_bytes(pid, "net/dev")
    out: dict[str, dict[str, int]] = {}
    for line in (data or b"").decode().splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 16:
            out[name.strip()] = {k: int(fields[i]) for k, i in NET_DEV_COLUMNS.items()}
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0: gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0: gone)."""
    data = _read_bytes(pid, "statm")
    fields = data.split() if data else []
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") if len(fields) > 1 else 0

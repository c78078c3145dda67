"""What is up: ``/run/nslab/<lab>/state.json``, the lock, and the JSON form of a resolved lab.

This module owns the on-disk record that makes teardown independent of the lab file: ``down`` works from
here (and from ownership marks in the kernel), never from the YAML alone. ``/run`` is a tmpfs, so state
vanishes on reboot together with the namespaces it describes.

Writes are atomic (write + rename). Mutating operations hold one machine-wide lock
(``/run/nslab/.lock``, flock), which serializes operations on a lab and keeps two labs' automatic subnets
from racing each other.
"""

from __future__ import annotations

import _thread
import fcntl
import os

from ..paths import intent_file, lab_dir, lock_file, state_file, state_root
from ..paths import kept_hosts as kept_hosts  # (which labs are up: read from the layout, in paths.py)
from ..paths import lab_names as lab_names
from ..paths import labs_with_intent as labs_with_intent
from ..paths import visible_labs as visible_labs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (down and status import this)
if TYPE_CHECKING:
    from typing import Any

    from ..model import Container, Lab

STATE_VERSION = 1
MAX_STATE_BYTES = 256 << 20  # a record longer than this is damaged, not read into memory whole


class _MachineLock:
    """flock on ``/run/nslab/.lock``. Re-entrant within a thread: `up` rolls a failed fresh lab back with
    `down` while holding the lock (a second flock on a new file description would wait for ourselves)."""

    _depth = _thread._local()  # threading.local's C type, without importing threading (exec imports us)

    def __init__(self) -> None:
        self._fd = -1

    def __enter__(self) -> None:
        if getattr(self._depth, "n", 0):
            self._depth.n += 1
            return
        os.makedirs(state_root(), exist_ok=True)
        fd = os.open(lock_file(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._depth.n = 1

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        if self._depth.n == 0 and self._fd >= 0:
            os.close(self._fd)


def machine_lock() -> _MachineLock:
    """``with machine_lock():`` — the one lock every mutating operation holds (a class, not a
    contextlib generator: this module is imported by `nslab exec`, which cannot afford contextlib)."""
    return _MachineLock()


def lab_to_dict(lab: Lab) -> dict[str, Any]:
    return {
        "name": lab.name,
        "source": lab.source,
        "networks": {
            n.name: {
                "bridge": n.bridge,
                "subnet": str(n.subnet),
                "gateway": str(n.gateway),
                "internal": n.internal,
                **({"subnet6": str(n.subnet6), "gateway6": str(n.gateway6)} if n.subnet6 else {}),
                **({"nat6": False} if not n.nat6 else {}),
            }
            for n in lab.networks.values()
        },
        "hosts": {
            h.name: {
                "namespace": h.namespace,
                "hostname": h.hostname,
                "gateway": str(h.gateway) if h.gateway else None,
                "interfaces": [
                    {
                        "name": i.name,
                        "address": str(i.address),
                        "network": i.network,
                        "host_veth": i.host_veth,
                        "link": i.link,
                        **({"mtu": i.mtu} if i.mtu else {}),
                        **({"mac": i.mac} if i.mac else {}),
                        **({"address6": str(i.address6)} if i.address6 else {}),
                    }
                    for i in h.interfaces
                ],
                **({"routes": [[str(r.to), str(r.via)] for r in h.routes]} if h.routes else {}),
                **({"sysctls": [list(kv) for kv in h.sysctls]} if h.sysctls else {}),
                **({"container": _container_to_dict(h.container)} if h.container else {}),
                **({"gateway6": str(h.gateway6)} if h.gateway6 else {}),
            }
            for h in lab.hosts.values()
        },
        "links": [
            {
                "a": lk.a,
                "b": lk.b,
                "a_ifname": lk.a_ifname,
                "b_ifname": lk.b_ifname,
                "subnet": str(lk.subnet),
                "a_address": str(lk.a_address),
                "b_address": str(lk.b_address),
                **({"mtu": lk.mtu} if lk.mtu else {}),
                **({"subnet6": str(lk.subnet6), "a_address6": str(lk.a_address6), "b_address6": str(lk.b_address6)}
                   if lk.subnet6 else {}),
            }
            for lk in lab.links
        ],
    }


def _container_to_dict(c: Container) -> dict[str, Any]:
    return {"name": c.name, "image": c.image, "command": list(c.command) if c.command is not None else None,
            "env": [list(kv) for kv in c.env], "volumes": list(c.volumes), "user": c.user, "workdir": c.workdir,
            "pull": c.pull}


def _container_from_dict(d: dict[str, Any]) -> Container:
    from ..model import Container

    command = d.get("command")
    return Container(name=d["name"], image=d["image"], command=tuple(command) if command is not None else None,
                     env=tuple((k, v) for k, v in d.get("env", ())), volumes=tuple(d.get("volumes", ())),
                     user=d.get("user"), workdir=d.get("workdir"), pull=bool(d.get("pull")))


def lab_from_dict(data: dict[str, Any]) -> Lab:
    import ipaddress

    from ..model import Host, Interface, Lab, Link, Network, Route

    iface = ipaddress.IPv4Interface
    return Lab(
        name=data["name"],
        source=data.get("source", ""),
        networks={
            name: Network(
                name=name,
                bridge=n["bridge"],
                subnet=ipaddress.IPv4Network(n["subnet"]),
                gateway=iface(n["gateway"]),
                internal=n["internal"],
                subnet6=ipaddress.IPv6Network(n["subnet6"]) if n.get("subnet6") else None,
                gateway6=ipaddress.IPv6Interface(n["gateway6"]) if n.get("gateway6") else None,
                nat6=n.get("nat6", True),
            )
            for name, n in data["networks"].items()
        },
        hosts={
            name: Host(
                name=name,
                namespace=h["namespace"],
                hostname=h["hostname"],
                gateway=ipaddress.IPv4Address(h["gateway"]) if h["gateway"] else None,
                interfaces=tuple(
                    Interface(
                        name=i["name"],
                        address=iface(i["address"]),
                        network=i["network"],
                        host_veth=i["host_veth"],
                        link=i["link"],
                        mtu=i.get("mtu"),
                        mac=i.get("mac"),
                        address6=ipaddress.IPv6Interface(i["address6"]) if i.get("address6") else None,
                    )
                    for i in h["interfaces"]
                ),
                routes=tuple(Route(ipaddress.ip_network(to), ipaddress.ip_address(via))
                             for to, via in h.get("routes", ())),
                sysctls=tuple((k, v) for k, v in h.get("sysctls", ())),
                container=_container_from_dict(h["container"]) if h.get("container") else None,
                gateway6=ipaddress.IPv6Address(h["gateway6"]) if h.get("gateway6") else None,
            )
            for name, h in data["hosts"].items()
        },
        links=tuple(
            Link(
                a=lk["a"],
                b=lk["b"],
                a_ifname=lk["a_ifname"],
                b_ifname=lk["b_ifname"],
                subnet=ipaddress.IPv4Network(lk["subnet"]),
                a_address=iface(lk["a_address"]),
                b_address=iface(lk["b_address"]),
                mtu=lk.get("mtu"),
                subnet6=ipaddress.IPv6Network(lk["subnet6"]) if lk.get("subnet6") else None,
                a_address6=ipaddress.IPv6Interface(lk["a_address6"]) if lk.get("a_address6") else None,
                b_address6=ipaddress.IPv6Interface(lk["b_address6"]) if lk.get("b_address6") else None,
            )
            for lk in data["links"]
        ),
    )


class LabState:
    """The record of one lab that is up (or partly up)."""

    def __init__(self, lab: Lab, extra: dict[str, Any] | None = None):
        self.lab = lab
        self.extra = extra or {}  # each feature's record (JSON), under the feature's KEY

    def save(self) -> None:
        """Written atomically, root's alone (0600 in a 0700 directory). Fails as :class:`StateError`."""
        from ..drivers.files import private_dir, write_json

        path = state_file(self.lab.name)
        try:
            private_dir(lab_dir(self.lab.name))
            write_json(path, {"version": STATE_VERSION, "lab": lab_to_dict(self.lab), **self.extra})
        except OSError as exc:
            from ..errors import StateError

            raise StateError(f"cannot write {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, name: str) -> LabState | None:
        """The lab's record; None if it has none. A damaged one raises :class:`StateError` naming the file."""
        import json

        path = state_file(name)
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(MAX_STATE_BYTES))
            lab = lab_from_dict(data.pop("lab"))
            data.pop("version", None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            from ..errors import StateError

            why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise StateError(
                f"{path} is damaged ({why}); 'nslab down {name}' removes the lab from its ownership marks"
            ) from None
        return cls(lab, data)

    @classmethod
    def load_or_none(cls, name: str) -> LabState | None:
        """:meth:`load`, with a damaged record taken as none (for what must work anyway: down, gc, other labs)."""
        from ..errors import StateError

        try:
            return cls.load(name)
        except StateError:
            return None


def remove(name: str) -> None:
    """Forget a lab. Features must have unmounted what they keep under its directory first."""
    # (not shutil.rmtree: shutil imports fnmatch, zlib, bz2 and lzma, ~4 ms of every `down`)
    top = lab_dir(name)
    for root, dirs, names in os.walk(top, topdown=False):  # never follows a symlink
        for entry in names + dirs:
            path = os.path.join(root, entry)
            try:
                if entry in dirs and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass
    try:
        os.rmdir(top)
    except OSError:
        pass


def all_states() -> list[LabState]:
    """Every lab that is up and readable (damaged records are skipped: see :func:`damaged`)."""
    return [s for s in (LabState.load_or_none(n) for n in lab_names()) if s is not None]


def damaged() -> list[str]:
    """The error of every lab whose record cannot be read."""
    from ..errors import StateError

    out = []
    for name in lab_names():
        try:
            LabState.load(name)
        except StateError as exc:
            out.append(str(exc))
    return out


# --- intent: what a running `up` is about to create -------------------------------------------------------
def write_intent(lab: str, namespaces: list[str], bridges: list[str]) -> None:
    """Made durable before the first kernel change of an ``up``: if the run is killed, ``down``, ``gc`` and
    the next ``up`` know what it may have left (the namespaces by name, the bridges by name and link group)."""
    from ..drivers.files import private_dir, write_json

    path = intent_file(lab)
    try:
        private_dir(lab_dir(lab))
        from ..drivers.procfs import start_time

        me = os.getpid()
        write_json(path, {"pid": me, "start": start_time(me), "namespaces": namespaces, "bridges": bridges})
    except OSError as exc:
        from ..errors import StateError

        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def read_intent(lab: str) -> tuple[list[str], list[str]]:
    """(namespaces, bridges) a run of ``up`` that did not finish may have made; empty when none."""
    from ..drivers.files import read_json

    data = read_json(intent_file(lab))
    if not isinstance(data, dict):
        return [], []
    names = [n for n in data.get("namespaces") or [] if isinstance(n, str) and n.startswith(f"{lab}-")]
    bridges = [b for b in data.get("bridges") or [] if isinstance(b, str) and b.startswith("nsl")]
    return names, bridges


def clear_intent(lab: str) -> None:
    try:
        os.unlink(intent_file(lab))
    except FileNotFoundError:
        pass

"""Docker containers as lab hosts, through the Docker Engine API on its unix socket (no docker CLI needed).

Owns: creating, starting, inspecting, listing (by label) and removing containers, checking and pulling images,
reading a container's logs, and naming a container's network namespace ``/run/netns/<name>`` (a bind mount of
``/proc/PID/ns/net``, as ``ip netns attach`` makes) so the wiring reaches it like a light host's.

Replaces: ``docker image inspect``, ``docker pull``, ``docker create --network none --label ...``,
``docker start``, ``docker inspect -f '{{.State.Pid}}'``, ``docker ps -a --filter label=...``, ``docker rm -f``,
``docker logs``, ``ip netns attach NAME PID``.

The socket is ``DOCKER_HOST`` (``unix://PATH``) or ``/var/run/docker.sock`` (paths.DOCKER_SOCKET). Only the
paths that use a container import ``http.client`` (on first request).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from .. import linux, paths
from ..errors import DockerError, DockerUnavailable, KernelError, NslabError

#: Labels every container nslab creates carries: the lab and the host (``docker ps --filter label=nslab.lab=L``).
LAB_LABEL = "nslab.lab"
HOST_LABEL = "nslab.host"
#: How long ``docker stop`` waits before SIGKILL when a container goes (seconds): a lab host is disposable.
STOP_TIMEOUT = 1


def docker_socket() -> str:
    """The Engine API's socket: ``DOCKER_HOST`` when it is ``unix://PATH``, else paths.DOCKER_SOCKET."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return paths.DOCKER_SOCKET


class LiveDocker:
    """The Docker Engine API, one short HTTP/1.1 connection per request."""

    def __init__(self, socket_path: str | None = None, timeout: float = 60.0) -> None:
        self.socket = socket_path or docker_socket()
        self.timeout = timeout

    # -- the transport -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, stream: bool = False,
                upload: tuple[Any, int, str] | None = None) -> tuple[int, Any]:
        """One request; ``body`` goes as JSON, ``upload`` = (binary file, its length, content type) as is (an
        image's tar for ``/images/create?fromSrc=-`` or ``/build``)."""
        import http.client
        import socket

        sock_path, timeout = self.socket, self.timeout

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(sock_path)
                except OSError:
                    sock.close()
                    raise
                self.sock = sock

        conn = Connection("localhost", timeout=timeout)
        headers = {"Host": "docker"}
        data: Any = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if upload is not None:
            data, length, headers["Content-Type"] = upload
            headers["Content-Length"] = str(length)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            if stream:
                return response.status, (conn, response)
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise DockerUnavailable(
                f"Docker is not running (nothing answers on {sock_path}: {exc.strerror}); start dockerd, "
                f"or point DOCKER_HOST at its socket") from None
        except PermissionError:
            conn.close()
            raise DockerUnavailable(f"no permission to use the Docker socket {sock_path} (run as root)") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DockerUnavailable(f"cannot talk to Docker on {sock_path}: {exc}") from None
        conn.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return response.status, decoded

    @staticmethod
    def _message(data: Any) -> str:
        return str(data.get("message", "")) if isinstance(data, dict) else str(data or "")

    # -- images --------------------------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise DockerUnavailable (naming the socket) when Docker does not answer."""
        status, data = self.request("GET", "/_ping")
        if status != 200:
            raise DockerUnavailable(f"Docker on {self.socket} answered {status} {self._message(data)}".rstrip())

    def image_exists(self, image: str) -> bool:
        status, data = self.request("GET", f"/images/{quote(image, safe='')}/json")
        if status not in (200, 404):
            raise DockerError(f"docker: cannot inspect image {image}: {status} {self._message(data)}")
        return status == 200

    def image_command(self, image: str) -> list[str]:
        """The image's entrypoint and command ([] when it has neither: an image made by ``docker import``)."""
        status, data = self.request("GET", f"/images/{quote(image, safe='')}/json")
        if status != 200 or not isinstance(data, dict):
            raise DockerError(f"docker: cannot inspect image {image}: {status} {self._message(data)}")
        config = data.get("Config") or {}
        return list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])

    def pull(self, image: str) -> None:
        repository, tag = _split_image(image)
        query = urlencode({"fromImage": repository, "tag": tag})
        status, data = self.request("POST", f"/images/create?{query}")
        text = data if isinstance(data, str) else json.dumps(data)
        if status != 200 or '"error"' in text:
            raise DockerError(f"docker: cannot pull {image}: {self._message(data) or text[-300:]}")

    # -- containers ----------------------------------------------------------------------------------------
    def create(self, name: str, config: dict[str, Any]) -> str:
        """``docker create --name NAME`` from an Engine API config; returns the container's id."""
        status, data = self.request("POST", f"/containers/create?{urlencode({'name': name})}", config)
        if status != 201 or not isinstance(data, dict):
            raise DockerError(f"docker: cannot create container {name}: {self._message(data)}")
        return str(data["Id"])

    def start(self, ident: str) -> int:
        """``docker start``; returns the container's init pid."""
        status, data = self.request("POST", f"/containers/{quote(ident, safe='')}/start")
        if status not in (204, 304):
            raise DockerError(f"docker: cannot start container {ident}: {self._message(data)}")
        info = self.inspect(ident)
        pid = int(((info or {}).get("State") or {}).get("Pid") or 0)
        if not pid:
            state = ((info or {}).get("State") or {}).get("Status", "gone")
            try:
                said = b"".join(chunk for _, chunk in self.logs(ident, tail=5)).decode(errors="replace")
            except NslabError:
                said = ""
            last = " | ".join(line.strip() for line in said.splitlines() if line.strip())
            raise DockerError(f"docker: container {ident} exited right after it started (status: {state})"
                              + (f"; it said: {last}" if last else ""))
        return pid

    def stop(self, ident: str, timeout: int = 10) -> None:
        """``docker stop -t TIMEOUT``: SIGTERM (the image's stop signal), SIGKILL after ``timeout`` seconds; the
        container and its filesystem stay. A container stopped already is no failure."""
        status, data = self.request("POST", f"/containers/{quote(ident, safe='')}/stop?t={timeout}")
        if status not in (204, 304):
            raise DockerError(f"docker: cannot stop container {ident}: {self._message(data)}")

    def inspect(self, ident: str) -> dict[str, Any] | None:
        status, data = self.request("GET", f"/containers/{quote(ident, safe='')}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise DockerError(f"docker: cannot inspect container {ident}: {self._message(data)}")
        return data

    def remove(self, ident: str) -> list[str]:
        """``docker rm -f`` (and its anonymous volumes); a container that is not there is no failure."""
        try:
            status, data = self.request("DELETE", f"/containers/{quote(ident, safe='')}?force=1&v=1")
        except NslabError as exc:
            return [str(exc)]
        if status in (204, 404):
            return []
        if status == 409 and "already in progress" in self._message(data):
            return []
        return [f"docker: cannot remove container {ident}: {self._message(data)}"]

    def labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """``docker ps -a --filter label=K=V ...``: the listing entries (Id, Names, Labels, State, Status)."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        status, data = self.request("GET", f"/containers/json?{urlencode({'all': '1', 'filters': filters})}")
        if status != 200 or not isinstance(data, list):
            raise DockerError(f"docker: cannot list containers: {self._message(data)}")
        return data

    def logs(self, ident: str, follow: bool = False, tail: int | None = None, timestamps: bool = False,
             since: float | None = None) -> Iterator[tuple[int, bytes]]:
        """``docker logs [-f] [-n N] [-t] [--since T]``: (stream 1|2, chunk) as Docker sends them (frames; a TTY
        container: stream 1)."""
        info = self.inspect(ident)
        if info is None:
            raise DockerError(f"docker: no container {ident}")
        tty = bool((info.get("Config") or {}).get("Tty"))
        query = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0",
                 "tail": "all" if tail is None else str(tail), "timestamps": "1" if timestamps else "0"}
        if since is not None:
            query["since"] = f"{since:.6f}"
        if follow:
            self.timeout = 24 * 3600.0
        status, handle = self.request("GET", f"/containers/{quote(ident, safe='')}/logs?{urlencode(query)}",
                                       stream=True)
        conn, response = handle
        try:
            if status != 200:
                raise DockerError(f"docker: cannot read the logs of {ident}: {response.read()[:300]!r}")
            if tty:
                while chunk := response.read1(65536):
                    yield 1, chunk
                return
            while header := response.read(8):
                if len(header) < 8:
                    return
                size = int.from_bytes(header[4:8], "big")
                yield header[0], response.read(size)
        finally:
            conn.close()

    # -- files inside a container -------------------------------------------------------------------------
    def _root(self, ident: str) -> str | None:
        info = self.inspect(ident) or {}
        pid = int((info.get("State") or {}).get("Pid") or 0)
        return f"/proc/{pid}/root" if pid else None

    def read_file(self, ident: str, path: str) -> str | None:
        """The text of ``path`` inside the running container; None when it (or the container) is not there."""
        root = self._root(ident)
        if root is None:
            return None
        try:
            fd = _open_inside(root, path, os.O_RDONLY)
        except OSError:
            return None
        with open(fd, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def write_file(self, ident: str, path: str, text: str) -> None:
        """Write ``path`` inside the running container in place (Docker bind-mounts /etc/hosts and resolv.conf
        there: a rename would not show through)."""
        root = self._root(ident)
        if root is None:
            raise DockerError(f"docker: container {ident} is not running")
        try:
            fd = _open_inside(root, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except OSError as exc:
            fd = self._docker_side(ident, path, exc)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)

    def _docker_side(self, ident: str, path: str, failure: OSError) -> int:
        """A read-only container (``read_only:``) has its /etc/hosts and resolv.conf bound read-only: the
        files Docker keeps for it on the machine (``HostsPath``, ``ResolvConfPath``) show through the binds."""
        import errno

        key = {"/etc/hosts": "HostsPath", "/etc/resolv.conf": "ResolvConfPath"}.get(path)
        source = (self.inspect(ident) or {}).get(key or "") if failure.errno == errno.EROFS else None
        try:
            if not source:
                raise failure
            return os.open(source, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as exc:
            raise KernelError(f"cannot write {path} in container {ident}: {exc.strerror}") from None

    # -- namespaces ----------------------------------------------------------------------------------------
    def name_netns(self, name: str, pid: int) -> None:
        """``ip netns attach NAME PID``: bind the container's network namespace onto /run/netns/NAME, and set
        its ``addr_gen_mode`` as for a light host's (no automatic IPv6 link-local addresses)."""
        from ..paths import netns_path
        from .netlink import ensure_netns_dir

        ensure_netns_dir()
        path = netns_path(name)
        source = f"/proc/{pid}/ns/net"
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        except FileExistsError:
            raise KernelError(f"namespace {name} already exists (not made by this lab)") from None
        try:
            linux.mount(source, path, "none", linux.MS_BIND)
        except OSError as exc:
            os.unlink(path)
            raise KernelError(f"cannot name the network namespace of container {name}: {exc.strerror}") from None
        _no_autoconf_in(path)


def _no_autoconf_in(path: str) -> None:
    from .netlink import _no_ipv6_autoconf

    fd = os.open(path, os.O_RDONLY)
    try:
        linux.in_namespace(fd, _no_ipv6_autoconf, name="nslab-netns")
    finally:
        os.close(fd)


def _open_inside(root: str, path: str, flags: int) -> int:
    """Open ``path`` under a container's root without following a symbolic link anywhere on the way (an
    absolute link would resolve on the machine, not in the container)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parts = [p for p in path.split("/") if p]
        for part in parts[:-1]:
            if flags & os.O_CREAT:  # an image without /etc: made, as Docker would
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
    finally:
        os.close(fd)


def _split_image(image: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` -> (repository, tag); the default tag is ``latest``."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"

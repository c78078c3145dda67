"""Healthchecks of a lab's hosts, run by the lab's supervisor (supervise.py) from inside each host.

A probe runs in a thread of its own that enters the host's network (and hostname) namespace with ``setns``
(which moves that thread only) and then uses nslab's own sockets: ``tcp`` connects to 127.0.0.1:PORT, then to
the host's first address; ``http`` sends a GET and reads the status line (any 2xx or 3xx, or the ``status``
asked); ``exec`` runs the command as ``ip netns exec`` would (the host's ``/etc/netns`` files), exit 0
meaning healthy. No curl or nc is needed inside the host. A finished probe writes one byte to a pipe that
wakes the supervisor's loop; :class:`HostHealth` turns the results into ``starting``, ``healthy`` or
``unhealthy`` (after ``retries`` failures in a row; failures within ``start_period`` of a start do not count).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .. import linux, paths

OUTPUT_LIMIT = 200  # characters of a probe's output kept for status and `up --wait`


def _enter(namespace: str, uts: str | None) -> None:
    """Move the calling thread into the host's network (and hostname) namespace."""
    fd = os.open(paths.netns_path(namespace), os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)
    if uts:
        fd = os.open(uts, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWUTS)
        finally:
            os.close(fd)


def probe_tcp(port: int, addresses: list[str], timeout: float) -> tuple[bool, str]:
    failures = []
    for address in addresses:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True, f"connected to {address}:{port}"
        except OSError as exc:
            failures.append(f"{address}:{port}: {exc.strerror or exc}")
    return False, "; ".join(failures)


def probe_http(url: str, wanted: int | None, timeout: float) -> tuple[bool, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: nslab-health\r\n\r\n".encode())
            head = b""
            while b"\n" not in head and len(head) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        return False, f"{url}: {exc.strerror or exc}"
    line = head.split(b"\n", 1)[0].decode("latin-1").strip()
    fields = line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False, f"{url}: no HTTP answer ({line[:80]!r})"
    code = int(fields[1])
    ok = code == wanted if wanted is not None else 200 <= code < 400
    return ok, f"{url}: HTTP {code}"


def probe_exec(command: str, namespace: str, lab: str, host: str, timeout: float) -> tuple[bool, str]:
    """``command`` as a service runs (``sh -c``, the host's /etc/netns files); this thread is in its namespaces."""
    env = {**os.environ, "NSLAB_LAB": lab, "NSLAB_HOST": host}
    env.pop("NSLAB_STATE_DIR", None)
    try:
        done = subprocess.run(["ip", "netns", "exec", namespace, "sh", "-c", command], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g}s"
    except OSError as exc:
        return False, f"cannot run it: {exc.strerror}"
    output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    last = output.splitlines()[-1] if output else ""
    return done.returncode == 0, f"exit {done.returncode}" + (f": {last}" if last else "")


def run_probe(check: dict[str, Any], target: dict[str, Any]) -> tuple[bool, str]:
    """One probe of ``check`` (a Healthcheck's record) inside the host ``target`` (namespace, uts, address)."""
    try:
        _enter(target["namespace"], target.get("uts"))
    except OSError as exc:
        return False, f"cannot enter the host: {exc.strerror}"
    timeout = float(check.get("timeout", 1.0))
    if check["probe"] == "tcp":
        addresses = ["127.0.0.1", *([target["address"]] if target.get("address") else [])]
        return probe_tcp(int(check["target"]), addresses, timeout)
    if check["probe"] == "http":
        return probe_http(check["target"], check.get("status"), timeout)
    return probe_exec(check["target"], target["namespace"], target["lab"], target["host"], timeout)


class HostHealth:
    """The health of one host: its probes' schedule and results, and the state they add up to."""

    def __init__(self, host: str, check: dict[str, Any], target: dict[str, Any], wake: int) -> None:
        self.host, self.check, self.target, self.wake = host, check, target, wake
        self.status = "starting"
        self.output = ""
        self.failures = 0
        self.since: float | None = None  # when its services (last) started; None: not started, no probing
        self.due = 0.0
        self.running: threading.Thread | None = None
        self.result: tuple[bool, str] | None = None
        self.changed = False  # a new status since the supervisor last looked

    def reset(self, now: float) -> None:
        """Its services (re)started: starting again, the first probe at once."""
        self.status, self.failures, self.since, self.due = "starting", 0, now, now
        self.changed = True

    def halt(self) -> None:
        self.since = None

    def next_due(self) -> float | None:
        return self.due if self.since is not None and self.running is None else None

    def start_due(self, now: float) -> None:
        if self.since is None or self.running is not None or now < self.due:
            return
        self.due = now + float(self.check.get("interval", 1.0))
        self.running = threading.Thread(target=self._probe, name=f"nslab-health-{self.host}", daemon=True)
        self.running.start()

    def _probe(self) -> None:
        try:
            self.result = run_probe(self.check, self.target)
        except Exception as exc:  # a flaw in one probe is that probe's failure
            self.result = (False, f"{type(exc).__name__}: {exc}")
        try:
            os.write(self.wake, b"h")
        except OSError:
            pass

    def collect(self, now: float) -> bool:
        """Take a finished probe's result (set before its thread wakes the loop, which may find the thread not
        quite ended); True when the status or the count of failures changed (what status shows)."""
        if self.running is None or self.result is None:
            return False
        self.running = None
        ok, output = self.result
        self.result, self.output = None, output[:OUTPUT_LIMIT]
        if self.since is None:
            return False  # its services stopped meanwhile
        before = self.status, self.failures
        if ok:
            self.status, self.failures = "healthy", 0
        elif self.status == "healthy" or now - self.since >= float(self.check.get("start_period", 0.0)):
            self.failures += 1
            if self.failures >= int(self.check.get("retries", 3)):
                self.status = "unhealthy"
        return (self.status, self.failures) != before

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "output": self.output, "failures": self.failures}


def timeout_until(healths: list[HostHealth], now: float) -> float | None:
    """Seconds until the next probe is due (None: none is)."""
    due = [d for h in healths if (d := h.next_due()) is not None]
    return max(0.0, min(due) - now) if due else None


def collect_all(healths: list[HostHealth]) -> list[tuple[HostHealth, str]]:
    """Finished probes taken; the hosts whose status or failures changed, each with its former status."""
    now = time.monotonic()
    return [(h, before) for h in healths if (before := h.status) and h.collect(now)]

"""Real traffic for integration tests: a small TCP/UDP server that answers with a body and the peer's address
(so a test sees whether it was masqueraded), and the clients that ask it, from the machine or a namespace."""

from __future__ import annotations

import subprocess

from sandbox import ThrowawayHost, sh

#: ``python3 -c SERVER PORT BODY tcp|udp|tcp6`` on 0.0.0.0 (tcp6: on :: and the IPv4-mapped addresses): prints
#: "ready", then answers "BODY PEER_ADDRESS" to each datagram (udp) or each connection, as an HTTP/1.0 response.
SERVER = r"""
import socket, sys
port, body, proto = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port)); print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048); s.sendto(f"{body} {peer[0]}".encode(), peer)
if proto == "tcp6":
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); anywhere = "::"
else:
    s = socket.socket(); anywhere = "0.0.0.0"
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((anywhere, port)); s.listen(16); print("ready", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.settimeout(2); c.recv(4096)
        c.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body} {peer[0]}\n".encode())
    except OSError:
        pass
    finally:
        c.close()
"""

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2]))); print(s.recvfrom(2048)[0].decode())
"""


def in_namespace(namespace: str, argv: list[str]) -> list[str]:
    """``argv`` inside a named network namespace ("": on the machine itself)."""
    return ["ip", "netns", "exec", namespace, *argv] if namespace else argv


def serve(host: ThrowawayHost, namespace: str, port: int, body: str, proto: str = "tcp") -> None:
    """Starts :data:`SERVER` in ``namespace`` ("": the machine) and returns once it listens; ``host`` kills it."""
    proc = host.popen(in_namespace(namespace, ["python3", "-c", SERVER, str(port), body, proto]),
                      stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def fetch(address: str, port: int, namespace: str = "", timeout: int = 2, curl_options: str = "") -> str | None:
    """The body an HTTP GET of ``address:port`` gets from ``namespace`` ("": the machine), None if it fails."""
    prefix = f"ip netns exec {namespace} " if namespace else ""
    r = sh(f"{prefix}curl -sS -m {timeout} {curl_options}http://{address}:{port}/", check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def udp(address: str, port: int, namespace: str = "") -> str | None:
    """The answer to one datagram sent to ``address:port`` from ``namespace`` ("": the machine), None if none."""
    r = subprocess.run(in_namespace(namespace, ["python3", "-c", UDP_CLIENT, address, str(port)]),
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None

"""Active probes from the caller's network namespace, for ``nslab doctor``: one ARP request, one DNS query.

Replaces ``arping -c1 -I IF GATEWAY`` and ``dig @SERVER . NS +time=1 +tries=1``. Both work in the network
namespace of the calling thread (``linux.in_namespace`` runs them there), create nothing that outlives the
call (a socket each) and send exactly one packet; ``doctor`` only aims them at a namespace's own gateway
and the nameservers its resolv.conf names.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def arp(ifname: str, source: str, target: str, timeout: float = 1.0) -> bool:
    """Whether ``target`` answers an ARP request sent on ``ifname`` (from ``source``) within ``timeout``."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        mac = sock.getsockname()[4][:6]
        src, dst = socket.inet_aton(source), socket.inet_aton(target)
        request = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, src, b"\0" * 6, dst)
        sock.send(BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + request)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            frame = sock.recv(128)
            if len(frame) < 42:
                continue
            op, sender = struct.unpack_from("!H", frame, 20)[0], frame[28:32]
            if op == 2 and sender == dst:
                return True
    return False


def dns(server: str, timeout: float = 1.0) -> str:
    """Send one DNS query ('. NS') to ``server``:53; "ok" when anything answers, else why not."""
    query_id = int.from_bytes(os.urandom(2), "big")
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + b"\0" + struct.pack("!HH", 2, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((server, 53))
            sock.send(query)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                answer = sock.recv(4096)
                if len(answer) >= 2 and struct.unpack_from("!H", answer)[0] == query_id:
                    return "ok"
        except ConnectionRefusedError:
            return "refused (nothing listens on port 53 there)"
        except TimeoutError:
            pass
        except OSError as exc:
            return f"unreachable ({exc.strerror})"
    return f"no answer within {timeout:g} s"

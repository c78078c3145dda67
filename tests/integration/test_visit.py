"""linux.Visit and linux.in_namespace, the one way nslab does something inside another namespace (issue 20,
item 7): there and back, also when the work fails; the caller's thread never moves with in_namespace."""

from __future__ import annotations

import os
import socket

import pytest

from nslab import linux
from sandbox import sh


def here() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def interfaces() -> list[str]:
    """The interfaces of the calling thread's network namespace."""
    with open("/proc/thread-self/net/dev") as fh:
        return sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])


def test_visit_goes_there_and_back_even_when_the_block_fails(host):
    sh("ip netns add there")
    home = here()
    with open("/run/netns/there") as fh:
        there = os.fstat(fh.fileno()).st_ino
        with linux.Visit(fh.fileno()):
            assert here() == there
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # made there: stays there
        assert here() == home
        with pytest.raises(ZeroDivisionError), linux.Visit(fh.fileno()):
            assert here() == there
            _ = 1 / 0
        assert here() == home
        sock.close()
    with linux.Visit(None):  # a new namespace: its own loopback only, gone when left
        assert here() not in (home, there)
        assert interfaces() == ["lo"]
    assert here() == home


def test_a_visiting_thread_opens_home_once(host):
    sh("ip netns add a; ip netns add b")
    home = linux.own_namespace()
    try:
        seen = []
        for name in ("a", "b"):
            with open(f"/run/netns/{name}") as fh, linux.Visit(fh.fileno(), home=home):
                seen.append(here())
        assert len(set(seen)) == 2 and here() not in seen and here() == os.fstat(home).st_ino
    finally:
        os.close(home)


def test_in_namespace_runs_work_there_from_a_thread(host):
    sh("ip netns add there; ip -n there link add v7 type veth peer name v8")
    home = here()
    with open("/run/netns/there") as fh:
        names = linux.in_namespace(fh.fileno(), interfaces)
    assert names == ["lo", "v7", "v8"] and "v7" not in interfaces() and here() == home
    with pytest.raises(OSError), open("/run/netns/there") as fh:
        linux.in_namespace(fh.fileno(), lambda: os.open("/nonexistent/x", os.O_RDONLY))
    assert here() == home

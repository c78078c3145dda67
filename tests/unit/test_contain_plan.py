"""Containment of what a host runs (core/features/contain.py) over the fake drivers: the fields resolved (names
with or without CAP_, the user from this machine's passwd), bad values reported at their line with every other
problem, the capability arithmetic, the plan (a change restarts that host's services only), the dry-run's
unshare/mount/setpriv, a container host's Docker options, and ``nslab run``'s options."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from nslab.core.features import contain
from nslab.core.features.containers import _create_command, container_config
from nslab.core.wiring import AddHosts
from nslab.drivers.fake import FakeDocker, fake_drivers
from nslab.errors import ResolveError
from nslab.lab import Lab
from nslab.model import CAPABILITIES, Containment
from nslab.tools.throwaway import containment

NOBODY = pwd.getpwnam("nobody")
LAB = """\
name: ct
networks:
  net: {}
hosts:
  app:
    networks: [net]
    run: [exec sleep 600, exec sleep 601]
    user: nobody
    cap_drop: [ALL]
    cap_add: [cap_net_bind_service]
    read_only: true
    tmpfs: /run
    writable: [/var/tmp]
    private_tmp: true
    pid: private
  plain:
    networks: [net]
    run: exec sleep 602
"""


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")


def test_the_fields_resolve_into_the_hosts_containment():
    lab = Lab.from_text(LAB, drivers=fake_drivers()).resolve()
    app = lab.hosts["app"].contain
    assert (app.user, app.uid, app.gid, app.home) == ("nobody", NOBODY.pw_uid, NOBODY.pw_gid, NOBODY.pw_dir)
    assert app.cap_drop == ("all",) and app.cap_add == ("net_bind_service",)
    assert app.tmpfs == ("/run",) and app.writable == ("/var/tmp",) and app.private_tmp and app.pid == "private"
    assert app.capabilities() == {"net_bind_service"} and not app.new_privileges() and app.active()
    assert not lab.hosts["plain"].contain.active()


def test_capabilities_of_root_and_of_a_user():
    every = frozenset(CAPABILITIES)
    assert Containment(cap_drop=("net_admin",)).capabilities() == every - {"net_admin"}
    assert Containment(cap_drop=("all",), cap_add=("net_raw",)).capabilities() == {"net_raw"}
    assert Containment(user="nobody", uid=65534, gid=65534).capabilities() == frozenset()
    assert Containment(user="nobody", uid=65534, cap_add=("all",)).capabilities() == every
    assert Containment(user="root", uid=0).capabilities() == every
    assert Containment(read_only=True).mounts() == ("/tmp", "/run")
    assert Containment(user="x", uid=1, no_new_privileges=False).new_privileges()
    assert contain.capability("CAP_NET_ADMIN") == "net_admin" == contain.capability(" net_admin ")
    assert contain.capability("fly") is None


def test_bad_values_are_reported_at_their_line_with_every_other_problem():
    text = """\
name: bad
hosts:
  a:
    user: nslab-no-such-user
    cap_drop: [NET_ADMIN, FLYING]
    cap_add: [CAP_SYS_TIME, ALSO_BAD]
    writable: [relative]
    tmpfs: [/run, /nonexistent/nslab]
    networks: [nowhere]
  b:
    user: "nobody:nslab-no-such-group"
"""
    with pytest.raises(ResolveError) as caught:
        Lab.from_text(text, path="bad.yaml", drivers=fake_drivers(), check=True)
    lines = caught.value.lines()
    assert caught.value.exit_code == 2
    expected = [
        "bad.yaml:4: hosts.a.user: no user 'nslab-no-such-user'",
        "bad.yaml:5: hosts.a.cap_drop[1]: unknown capability 'FLYING'",
        "bad.yaml:6: hosts.a.cap_add[1]: unknown capability 'ALSO_BAD'",
        "bad.yaml:7: hosts.a.writable[0]: 'relative' is not an absolute path",
        "hosts.a.writable: writable: paths kept read-write under read_only",
        "bad.yaml:8: hosts.a.tmpfs[1]: no directory /nonexistent/nslab on this machine",
        "bad.yaml:11: hosts.b.user: no group 'nslab-no-such-group'",
        "nowhere",
    ]
    for wanted in expected:
        assert any(wanted in line for line in lines), (wanted, lines)
    assert not any("only a container host" in line for line in lines)  # user: on a light host is fine now


def test_a_changed_user_restarts_that_hosts_services_only_and_the_dry_run_says_how():
    drivers = fake_drivers()
    first = Lab.from_text(LAB, drivers=drivers).up()
    commands = "\n".join(first.commands())
    assert "app: a PID namespace of its own for its services: unshare --pid --fork" in commands
    assert "--pid=/proc/<app's nslab-init>/ns/pid -- unshare --mount --propagation slave -- sh -c" in commands
    assert "mount -t proc proc /proc" in commands and "mount -o remount,bind,ro" in commands
    assert "mount --rbind '\\''/var/tmp'\\'' '\\''/var/tmp'\\''" in commands
    assert "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs '\\''/run'\\''" in commands
    assert (f"exec setpriv --reuid={NOBODY.pw_uid} --regid={NOBODY.pw_gid}" in commands
            and "--bounding-set=-all,+net_bind_service --ambient-caps=+net_bind_service --no-new-privs" in commands)
    plain = next(line for line in first.commands() if "service plain" in line)
    assert "setpriv" not in plain and "unshare" not in plain
    assert not Lab.from_text(LAB, drivers=drivers).up().plan  # unchanged: nothing to do
    drivers.processes.restarted.clear()
    second = Lab.from_text(LAB.replace("user: nobody", "user: daemon"), drivers=drivers).up()
    assert sorted(drivers.processes.restarted) == ["app.1", "app.2"]
    assert "setpriv --reuid=1 --regid=1" in "\n".join(second.commands())
    assert not second.plan.of_type(AddHosts)  # (the wiring stays)


def test_a_container_hosts_containment_is_dockers():
    text = """\
name: cc
networks:
  net: {}
hosts:
  box:
    image: busybox
    networks: [net]
    user: "1000:1000"
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
    read_only: true
    private_tmp: true
"""
    drivers = fake_drivers(docker=FakeDocker(images=("busybox",)))
    lab = Lab.from_text(text, drivers=drivers).resolve()
    box = lab.hosts["box"]
    host_config = container_config("cc", box)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host_config["ReadonlyRootfs"] is True and host_config["Tmpfs"] == {"/tmp": "", "/run": ""}
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert container_config("cc", box)["User"] == "1000:1000"
    assert ("--cap-drop ALL --cap-add NET_BIND_SERVICE --read-only --tmpfs '/tmp' --tmpfs '/run' "
            "--security-opt no-new-privileges:true") in _create_command("cc", box)
    with pytest.raises(ResolveError) as caught:
        Lab.from_text(text + "    writable: [/data]\n", path="c.yaml", drivers=drivers, check=True)
    assert any("a container host has no writable" in line for line in caught.value.lines())


def test_nslab_runs_options_make_the_same_containment():
    made = containment({"user": "nobody", "cap_drop": ("ALL",), "cap_add": (), "read_only": True, "tmpfs": (),
                        "writable": (), "private_tmp": False, "pid": "host"})
    assert made.uid == NOBODY.pw_uid and made.cap_drop == ("all",) and made.read_only and made.pid == "host"
    assert not containment({"pid": "host", "read_only": False}).active()
    with pytest.raises(ResolveError) as caught:
        containment({"user": "nslab-no-such-user", "cap_add": ("FLY",), "tmpfs": ("x",)})
    fields = sorted(p.field for p in caught.value.problems)
    assert fields == ["--cap-add", "--tmpfs", "--user"]


def test_the_containment_calls_report_errno():
    import errno

    from nslab import linux

    with pytest.raises(OSError) as caught:
        linux.prctl(0x7FFF)
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError) as caught:
        linux.mount_setattr("/nonexistent/nslab-test", linux.MOUNT_ATTR_RDONLY)
    assert caught.value.errno in (errno.ENOENT, errno.EPERM)

"""Issue 24 health, order and environment without the kernel: the schema (durations, the list form of
depends_on), problems at their lines (cycles, unknown hosts), the supervisor's config, .env files, the health
state machine and the probes on loopback."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from nslab.core import dotenv, load, spec
from nslab.core.features import services
from nslab.daemons import health
from nslab.daemons.supervise import start_waves

LAB = """\
name: ho
networks: {n: {}}
hosts:
  db:
    networks: [n]
    run: sleep 100
    healthcheck: {http: "http://127.0.0.1:5432/ready", status: 204, interval: 500ms, timeout: 2, start_period: 1m}
    restart: unhealthy
  web:
    networks: [n]
    run: sleep 100
    env: {MODE: test}
    depends_on: {db: {condition: healthy}}
  job: {networks: [n], run: "true", restart: no}
  after: {networks: [n], run: sleep 1, depends_on: [job, web]}
"""


def checked(text: str, path: str = "lab.yaml") -> load.Checked:
    return load.validate(load.from_text(text, path, path), None)


def test_healthcheck_depends_on_and_env_resolve_to_the_services():
    lab = checked(LAB).lab
    db, web, after = (lab.hosts[h].services[0] for h in ("db", "web", "after"))
    assert db.health is not None and (db.health.probe, db.health.target, db.health.status) == \
        ("http", "http://127.0.0.1:5432/ready", 204)
    assert (db.health.interval, db.health.timeout, db.health.retries, db.health.start_period) == (0.5, 2.0, 3, 60.0)
    assert db.restart == "unhealthy"
    assert web.depends_on == (("db", "healthy"),) and web.env == (("MODE", "test"),)
    assert after.depends_on == (("job", "started"), ("web", "started"))  # the list form: started
    config = {s["id"]: s for s in services.desired_services(lab)}
    assert config["db"]["health"]["probe"] == "http" and config["db"]["health"]["address"]
    assert config["web"]["depends_on"] == [["db", "healthy"]] and config["web"]["env"] == {"MODE": "test"}
    assert "health" not in config["job"] and "env" not in config["job"]  # (the config of such a service as before)


@pytest.mark.parametrize(("change", "expected"), [
    (("depends_on: [job, web]", "depends_on: [job, web, nope]"), "hosts.after.depends_on.nope: unknown host 'nope'"),
    (("depends_on: {db: {condition: healthy}}", "depends_on: [after]"), "hosts.web.depends_on.after: a cycle: "
                                                                         "web -> after -> web"),
    (("depends_on: [job, web]", "depends_on: {job: {condition: healthy}}"),
     "hosts.after.depends_on.job: host 'job' has no healthcheck: to be healthy"),
    (("interval: 500ms", "interval: soon"), "'soon' is not a duration"),
    (("status: 204, ", "status: 204, tcp: 80, "), "give one probe"),
    (("restart: unhealthy", "restart: unhealthy\n    healthcheck: null"), "restart: unhealthy needs a healthcheck"),
])
def test_problems_are_found_with_their_lines(change, expected):
    problems = checked(LAB.replace(*change)).problems
    assert any(expected in p.message or expected in f"{p.field}: {p.message}" for p in problems), problems
    assert all(p.line for p in problems)


def test_a_cycle_is_reported_at_its_line_with_every_other_problem():
    text = LAB.replace("depends_on: {db: {condition: healthy}}", "depends_on: [after]").replace(
        "restart: no", "restart: sometimes")
    lines = [str(p) for p in checked(text).problems]
    assert any(line.startswith("lab.yaml:") and "a cycle" in line for line in lines), lines
    assert any("restart" in line for line in lines), lines


def test_env_file_is_relative_to_the_lab_file_and_must_exist(tmp_path: Path):
    (tmp_path / "app.env").write_text("SECRET=x\n")
    text = LAB.replace("env: {MODE: test}", "env_file: [app.env, missing.env]")
    problems = checked(text, str(tmp_path / "lab.yaml")).problems
    assert [p.field for p in problems] == ["hosts.web.env_file[1]"]
    lab = checked(LAB.replace("env: {MODE: test}", "env_file: app.env"), str(tmp_path / "lab.yaml")).lab
    assert lab.hosts["web"].services[0].env_files == (str(tmp_path / "app.env"),)
    entry = {s["id"]: s for s in services.desired_services(lab)}["web"]
    assert entry["env_file"][0][0] == str(tmp_path / "app.env") and "SECRET" not in str(entry)


def test_dotenv_reads_compose_forms_and_feeds_variables(tmp_path: Path):
    found, problems = dotenv.parse("# c\n\nA=1\nexport B = two words # note\nC='$x #y'\nD=\"a\\nb\"\nbad line\n")
    assert found == {"A": "1", "B": "two words", "C": "$x #y", "D": "a\nb"} and problems == [(7, "not KEY=VALUE")]
    (tmp_path / ".env").write_text("SUBNET=10.9.0.0/24\nNAME=fromdotenv\n")
    (tmp_path / "lab.yaml").write_text("name: ${NAME}\nnetworks: {n: {subnet: '${SUBNET}'}}\n")
    env = dotenv.environment(str(tmp_path / "lab.yaml"), {"NAME": "fromshell"})
    assert env["NAME"] == "fromshell" and env["SUBNET"] == "10.9.0.0/24"  # the environment wins, as in compose
    assert spec.name_of(tmp_path / "lab.yaml") in ("fromdotenv", "fromshell")


def test_down_stops_in_reverse_start_order():
    config = [{"host": "db"}, {"host": "web", "depends_on": [["db", "healthy"]]},
              {"host": "after", "depends_on": [["web", "started"], ["job", "started"]]}, {"host": "job"}]
    assert start_waves(config) == [{"db", "job"}, {"web"}, {"after"}]
    assert start_waves([{"host": "a"}, {"host": "b"}]) == [{"a", "b"}]


def test_health_turns_unhealthy_after_retries_and_healthy_at_once():
    h = health.HostHealth("db", {"probe": "tcp", "target": "1", "interval": 1, "retries": 2, "start_period": 5},
                          {}, -1)
    h.reset(100.0)
    for ok, now, status in [(False, 101, "starting"), (False, 104, "starting"), (True, 106, "healthy"),
                            (False, 107, "healthy"), (False, 108, "unhealthy"), (True, 109, "healthy")]:
        h.running, h.result = threading.current_thread(), (ok, "out")
        h.collect(now)
        assert h.status == status, (ok, now)  # failures within start_period (5 s) do not count


def test_probes_on_loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert health.probe_tcp(port, ["127.0.0.1"], 1.0)[0]
        server.accept()[0].close()  # (the tcp probe's connection, queued)

        def answer(code: int) -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(f"HTTP/1.0 {code} X\r\n\r\n".encode())

        for code, wanted, ok in [(204, None, True), (500, None, False), (204, 200, False)]:
            thread = threading.Thread(target=answer, args=(code,))
            thread.start()
            assert health.probe_http(f"http://127.0.0.1:{port}/", wanted, 1.0) == (ok, f"http://127.0.0.1:{port}/: "
                                                                                   f"HTTP {code}")
            thread.join()
    refused = health.probe_tcp(port, ["127.0.0.1"], 1.0)
    assert not refused[0] and "refused" in refused[1]

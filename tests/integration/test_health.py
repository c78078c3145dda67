"""Issue 24 health, order and environment: healthchecks probed from inside the hosts, `up --wait`,
`restart: unhealthy`, `depends_on` conditions and `env`/`env_file` for services. Real kernel, throwaway hosts."""

from __future__ import annotations

import os
import re
import signal
import time

from labs import SERVICES_ENV as ENV
from labs import lab_status, wait_for
from labs import nslab as run_nslab
from nslab import paths

# A server that opens its port 2 s after it starts (python's http.server, in the host).
LATE_SERVER = "sleep 2; exec python3 -m http.server --bind 0.0.0.0 8080"

LATE = f"""\
name: hw
networks:
  front: {{}}
hosts:
  web:
    networks: [front]
    run: "{LATE_SERVER}"
    healthcheck: {{tcp: 8080, interval: 200ms}}
"""


def test_up_wait_returns_once_the_port_opens(labs):
    labs.env = ENV
    started = time.monotonic()
    path = labs.write(LATE)
    result = run_nslab("up", "-f", str(path), "--wait", env=ENV)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took >= 2.0, f"up --wait returned after {took:.2f}s, before the port opened"
    doc = lab_status("hw", env=ENV)
    assert [h.get("health") for h in doc["hosts"]] == ["healthy"]
    assert "running (healthy)" in run_nslab("status", "hw", env=ENV).stdout


def test_up_wait_times_out_naming_the_host(labs):
    labs.env = ENV
    path = labs.write(LATE.replace(LATE_SERVER, "exec sleep 600"))
    started = time.monotonic()
    result = run_nslab("up", "-f", str(path), "--wait", "--timeout", "3", check=False, env=ENV)
    assert result.returncode == 1, result.stderr
    assert 3.0 <= time.monotonic() - started < 20
    assert re.search(r"^nslab: web unhealthy: 127\.0\.0\.1:8080: Connection refused", result.stderr, re.M), \
        result.stderr
    doc = lab_status("hw", env=ENV)  # the lab stays up
    assert [h.get("health") for h in doc["hosts"]] == ["unhealthy"]


ORDER = """\
name: ho
networks:
  front: {}
hosts:
  db:
    networks: [front]
    run: "sleep 1.5; echo db opens at $(date +%s.%N); exec python3 -m http.server --bind 127.0.0.1 5432"
    healthcheck: {tcp: 5432, interval: 100ms}
  web:
    networks: [front]
    run: "echo web starts at $(date +%s.%N); exec sleep 600"
    depends_on: {db: {condition: healthy}}
  job:
    networks: [front]
    run: "echo done"
    restart: no
  after:
    networks: [front]
    run: "exec sleep 600"
    depends_on: [job, web]
"""


def test_depends_on_healthy_starts_web_after_db(lab):
    name = lab(ORDER)
    web = wait_for(lambda: _said("web", "web starts at"), 15)
    db = _said("db", "db opens at")
    assert db < web < db + 2, (db, web)  # the port opened (and the probe said so) before web started
    assert wait_for(lambda: services(name)["after"]["state"] == "running")
    assert services(name)["job"]["state"] == "exited"


def _said(host: str, words: str) -> float | None:
    """The time a service printed after ``words`` in its log."""
    found = re.search(re.escape(words) + r" ([\d.]+)", run_nslab("logs", f"ho/{host}", env=ENV).stdout)
    return float(found.group(1)) if found else None


def services(name: str) -> dict[str, dict]:
    return {s["id"]: s for s in lab_status(name, env=ENV)["hostsetup"]["services"]}


def test_a_cycle_is_a_file_line_error(labs):
    text = ORDER.replace("run: \"exec sleep 600\"\n    depends_on: [job, web]",
                         "run: \"exec sleep 600\"\n    depends_on: [web]").replace(
        "depends_on: {db: {condition: healthy}}", "depends_on: [after]")
    path = labs.write(text)
    result = run_nslab("up", "-f", str(path), check=False, env=ENV)
    assert result.returncode == 2
    assert re.search(rf"{re.escape(str(path))}:\d+: hosts\.\w+\.depends_on\.\w+: a cycle: ", result.stderr), \
        result.stderr


UNHEALTHY = """\
name: hu
networks:
  front: {}
hosts:
  web:
    networks: [front]
    run: "exec python3 -m http.server --bind 127.0.0.1 8080"
    restart: unhealthy
    healthcheck: {http: "http://127.0.0.1:8080/", interval: 1s, timeout: 1s, retries: 3}
"""


def test_a_stopped_server_is_restarted_when_unhealthy(lab):
    name = lab(UNHEALTHY)

    def web() -> dict:
        doc = lab_status(name, env=ENV)
        return {**doc["hostsetup"]["services"][0], "health": doc["hosts"][0]["health"]}

    first = wait_for(lambda: (w := web())["health"] == "healthy" and w)
    os.kill(first["pid"], signal.SIGSTOP)
    stopped = time.monotonic()
    again = wait_for(lambda: (w := web())["pid"] not in (None, first["pid"]) and w["state"] == "running" and w, 15)
    took = time.monotonic() - stopped
    assert took <= 1 * 3 + 1 + 2, f"restarted after {took:.1f}s"
    assert again["restarts"] == 1
    assert wait_for(lambda: web()["health"] == "healthy")


ENVIRONMENT = """\
name: he
networks:
  front: {}
hosts:
  web:
    networks: [front]
    run: "echo A=$A B=$B; exec sleep 600"
    env: {A: from-env}
    env_file: secrets.env
    port: ${PORT}
"""


def test_env_and_env_file_reach_the_service_and_values_stay_unprinted(labs, tmp_path):
    labs.env = ENV
    (tmp_path / ".env").write_text("WHO=dotenv\n")
    (tmp_path / "secrets.env").write_text("A=overridden\nB=s3cret-value\n")
    text = ENVIRONMENT.replace("    port: ${PORT}\n", "").replace("from-env", "${WHO}")
    path = labs.up(text)
    logs = wait_for(lambda: (out := run_nslab("logs", "web", env=ENV).stdout) and "A=" in out and out)
    assert "A=dotenv B=s3cret-value" in logs  # env: over env_file; ${WHO} from the .env beside the file
    dry = run_nslab("up", "-f", str(path), "--dry-run", env=ENV).stdout
    status = run_nslab("status", "he", "--json", env=ENV).stdout
    state = open(paths.supervisor_config("he")).read()
    for shown in (dry, status, state):
        assert "s3cret-value" not in shown


REVERSE = """\
name: hr
networks:
  front: {{}}
hosts:
  db:
    networks: [front]
    run: "trap 'date +%s.%N > {out}/db; exit 0' TERM; while :; do sleep 0.1; done"
  web:
    networks: [front]
    run: "trap 'date +%s.%N > {out}/web; exit 0' TERM; while :; do sleep 0.1; done"
    depends_on: [db]
"""


def test_down_stops_dependents_first(labs, tmp_path):
    labs.env = ENV
    labs.up(REVERSE.format(out=tmp_path))
    wait_for(lambda: all(s["state"] == "running" for s in lab_status("hr", env=ENV)["hostsetup"]["services"]))
    time.sleep(0.3)  # (each shell is in its loop, its trap set)
    run_nslab("down", "hr", env=ENV)
    web, db = (float((tmp_path / name).read_text()) for name in ("web", "db"))
    assert web < db, (web, db)

"""Issue 13: `nslab logs -t` and `--since`, from the supervisor's record of when each line of a service log
arrived (real kernel, throwaway host). The services write their lines when the test says so (a file appears),
so the order of arrival is set by the test, not by sleeps."""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

from labs import SERVICES_ENV, wait_for
from labs import nslab as run_nslab
from nslab import paths

STAMPED = re.compile(r"^(?:([\w.-]+) \| )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (.*)$")


def lab_text(go: Path) -> str:
    return f"""\
name: lt
hosts:
  a:
    run: "echo one; until [ -e {go}1 ]; do sleep 0.05; done; echo two; until [ -e {go}2 ]; do sleep 0.05; done; \
printf 'three '; sleep 0.2; echo half; exec sleep 600"
  b:
    run: "until [ -e {go}0 ]; do sleep 0.05; done; echo from-b; exec sleep 600"
"""


def indexed(service: str, lines: int) -> bool:
    """The supervisor has recorded when ``lines`` lines of the service's log arrived."""
    try:
        return len(Path(paths.log_times(paths.log_path("lt", *service.split(".")))).read_text().splitlines()) >= lines
    except FileNotFoundError:
        return False


def stamped(output: str) -> list[tuple[str | None, float, str]]:
    out = []
    for line in output.splitlines():
        match = STAMPED.match(line)
        assert match, line
        when = datetime.datetime.strptime(match.group(2), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        out.append((match.group(1), when.timestamp(), match.group(3)))
    return out


def nslab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_nslab(*args, check=check, env=SERVICES_ENV)


def test_timestamps_per_line_in_arrival_order_and_since(lab, tmp_path):
    go = tmp_path / "go"
    lab(lab_text(go))
    wait_for(lambda: indexed("a.1", 2))  # [nslab] start, one
    (tmp_path / "go0").touch()
    wait_for(lambda: indexed("b.1", 2))  # [nslab] start, from-b
    (tmp_path / "go1").touch()
    wait_for(lambda: indexed("a.1", 3))
    (tmp_path / "go2").touch()
    wait_for(lambda: indexed("a.1", 4) and "three half\n" in Path(paths.log_path("lt", "a", 1)).read_text())

    plain = nslab("logs", "lt").stdout
    assert "a | three half" in plain and not STAMPED.match(plain.splitlines()[0])
    lines = [(svc, when, text) for svc, when, text in stamped(nslab("logs", "-t", "lt").stdout)
             if not text.startswith("[nslab")]
    assert [(svc, text) for svc, _, text in lines] == [("a", "one"), ("b", "from-b"), ("a", "two"),
                                                       ("a", "three half")]
    times = [when for _, when, _ in lines]
    assert times == sorted(times) and len(set(times)) == 4
    # one host: no prefix; a line written in two parts (printf, then echo) is one line, with one time
    only_a = [(when, text) for _, when, text in stamped(nslab("logs", "-t", "lt/a").stdout)]
    assert [text for _, text in only_a][-3:] == ["one", "two", "three half"]
    assert only_a[-1][0] == times[3]

    between = (times[1] + times[2]) / 2  # after from-b, before two
    rfc3339 = datetime.datetime.fromtimestamp(between, datetime.UTC).isoformat()
    for since in (f"{between:.6f}", rfc3339):
        assert nslab("logs", "--since", since, "lt").stdout == "a | two\na | three half\n", since
    assert "a | one" in nslab("logs", "--since", "1h", "lt").stdout
    assert nslab("logs", "--since", "2099-01-01T00:00:00Z", "lt").stdout == ""
    assert nslab("logs", "-t", "-n", "1", "--since", f"{between:.6f}", "lt/a").stdout.endswith(" three half\n")
    bad = nslab("logs", "--since", "yesterday", "lt", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr

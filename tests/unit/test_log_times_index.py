"""The side index of service logs (supervise.LogTimes: one ``OFFSET TIME`` line per log line) and the
``logs --since`` parser: pure file and text logic, no root."""

from __future__ import annotations

import datetime

import click
import pytest

from nslab import paths
from nslab.cli.services import _timed_lines, _Times, parse_since
from nslab.daemons.supervise import LogTimes


def offsets(log) -> list[int]:
    return [int(line.split()[0]) for line in open(paths.log_times(str(log))).read().splitlines()]


def test_each_line_start_is_indexed_once_also_across_partial_writes(tmp_path):
    log = tmp_path / "a.1.log"
    log.write_bytes(b"one\ntw")
    times = LogTimes(str(log))
    times.catch_up()
    assert offsets(log) == [0, 4]
    with open(log, "ab") as fh:
        fh.write(b"o\n")
    times.catch_up()
    assert offsets(log) == [0, 4]  # the rest of "two": no new line
    with open(log, "ab") as fh:
        fh.write(b"three\nfour\n")
    times.catch_up()
    times.catch_up()
    assert offsets(log) == [0, 4, 8, 14]


def test_a_supervisor_started_again_goes_on_after_the_last_indexed_line(tmp_path):
    log = tmp_path / "a.1.log"
    log.write_bytes(b"one\ntwo\n")
    LogTimes(str(log)).catch_up()
    with open(log, "ab") as fh:
        fh.write(b"written while no supervisor ran\n")
    LogTimes(str(log)).catch_up()  # a new supervisor
    assert offsets(log) == [0, 4, 8]


def test_a_truncated_log_starts_its_index_over(tmp_path):
    log = tmp_path / "a.1.log"
    log.write_bytes(b"one\ntwo\n")
    times = LogTimes(str(log))
    times.catch_up()
    log.write_bytes(b"x\n")
    times.catch_up()
    assert offsets(log) == [0]


def test_reader_gives_each_whole_line_its_time(tmp_path):
    log = tmp_path / "a.1.log"
    log.write_bytes(b"one\ntwo\nthree\npart")
    open(paths.log_times(str(log)), "w").write("0 100.5\n8 200.25\n")
    lines, end = _timed_lines(str(log), _Times(str(log)))
    assert lines == [(100.5, "one\n"), (100.5, "two\n"), (200.25, "three\n")]  # two: not indexed, the one before
    assert end == 14  # "part" is printed once it is whole


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", 1000.0 - 600), ("1h30m", 1000.0 - 5400), ("1.5h", 1000.0 - 5400), ("90s", 910.0), ("500ms", 999.5),
    ("1733070000", 1733070000.0), ("1733070000.25", 1733070000.25),
    ("2026-12-01T16:40:00Z", datetime.datetime(2026, 12, 1, 16, 40, tzinfo=datetime.UTC).timestamp()),
    ("2026-12-01T17:40:00+01:00", datetime.datetime(2026, 12, 1, 16, 40, tzinfo=datetime.UTC).timestamp()),
])
def test_since_durations_unix_times_and_rfc3339(text, expected):
    assert parse_since(text, 1000.0) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "m10", "10x", "-5m", "2026-13-01", "1h-5m"])
def test_since_rejects_what_it_cannot_read(text):
    with pytest.raises(click.BadParameter):
        parse_since(text, 1000.0)

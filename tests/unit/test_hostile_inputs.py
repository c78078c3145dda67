"""Issue 16's hostile and nonsensical inputs: each gets exit 2 within a second, one line per problem with file:line
(and the field where there is one), no traceback, nothing made on the (fake) machine; only regular files (or -)
are read, and lab files are bounded in size, depth and alias expansion."""

from __future__ import annotations

import os
import time

import pytest
from test_bad_inputs import Entry, lan, one_problem

from nslab import Lab
from nslab.cli.app import main
from nslab.core import spec
from nslab.drivers.fake import fake_drivers
from nslab.errors import SpecError, UserError

HEAD = "name: bad\nnetworks:\n  lan: {subnet: 10.70.0.0/24}\nhosts:\n"

# (text, [(line, field)]) for lab files given as text
TEXTS: list[Entry] = [
    ("name: bad\nname: worse\n", [(2, "name")]),
    (HEAD + "  a: {}\n  a: {}\n", [(6, "hosts.a")]),
    ("name: bad\nnetworks:\n  lan: {}\n  lan: {internal: true}\n", [(4, "networks.lan")]),
    *one_problem(3, "networks.lan.subnet", lan(*(f"subnet: {network}/24" for network in (
        "127.0.0.0", "224.1.0.0", "169.254.1.0", "0.0.0.0", "240.0.0.0")))),
    *one_problem(2, "dns", (f"name: bad\ndns: [{server}]\n" for server in ("127.0.0.53", "0.0.0.0", "42", "'::1'"))),
    (HEAD + "  a: {hostname: ''}\n", [(5, "hosts.a.hostname")]),
    (HEAD + "  a: {run: \"echo \\0 hi\"}\n", [(5, "hosts.a.run")]),
    (HEAD + "  \U0001F600: {networks: [lan]}\n", [(5, "hosts.\U0001F600")]),
    ("name: bad\nx: \"\0\"\n", [(2, "")]),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
     "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nname: laughs\n", [(0, "")]),
    ("name: deep\nx: " + "[" * 10_000 + "]" * 10_000 + "\n", [(0, "")]),
    ("name: deep\n" + "".join(" " * i + f"k{i}:\n" for i in range(2_000)), [(0, "")]),
]


def _expect(err: UserError, expected: list[tuple[int, str]], file: str) -> None:
    assert err.exit_code == 2
    lines = err.lines()
    assert len(lines) == len(expected), lines
    for line, (number, field) in zip(lines, expected, strict=True):
        where = f"{file}:{number}: " if number else f"{file}: "
        assert line.startswith(where + (f"{field}: " if field else "")), (line, number, field)
        assert "Traceback" not in line


@pytest.mark.parametrize(("text", "expected"), TEXTS, ids=[f"text{i}" for i in range(len(TEXTS))])
def test_hostile_lab_text(text, expected):
    d = fake_drivers()
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        Lab.from_text(text, "lab.yaml", drivers=d, check=True).up()
    assert time.monotonic() - started < 5  # not a timing assert on speed: a guard against hanging forever
    _expect(err.value, expected, "lab.yaml")
    assert not d.kernel.namespaces and not d.kernel.bridges and not d.kernel.veths  # nothing made


# (bytes of a file, expected problem line, and a word the message must hold)
FILES: list[tuple[bytes, int, str]] = [
    (b"\x00\x01\x02garbage\xff\xfe", 1, "UTF-8"),
    (b"name: ok\nhosts:\n  a: {hostname: \xe9t\xe9}\n", 3, "UTF-8"),
    ("name: utf16\n".encode("utf-16"), 1, "UTF-16"),
    (b"name: binary\nx: \x00\n", 2, "NUL"),
]


@pytest.mark.parametrize(("data", "line", "word"), FILES, ids=[f"file{i}" for i in range(len(FILES))])
def test_hostile_files(tmp_path, data, line, word):
    path = tmp_path / "lab.yaml"
    path.write_bytes(data)
    with pytest.raises(SpecError) as err:
        spec.load(path)
    [message] = err.value.lines()
    assert message.startswith(f"{path}:{line}: ") and word in message, message


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it would hang forever
    for path in (str(fifo), "/dev/zero", str(tmp_path)):
        started = time.monotonic()
        with pytest.raises(SpecError, match="not a regular file"):
            spec.load(path)
        assert time.monotonic() - started < 5


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"name: huge\n" + b"#" * (spec.MAX_FILE_BYTES + 10))
    with pytest.raises(SpecError, match="larger than"):
        spec.load(path)


@pytest.mark.parametrize("argv", [["up", "-f", "/dev/zero"], ["down", "-f", "/dev/zero"],
                                  ["up", "--dry-run", "-f", "/dev/null"]])
def test_cli_exit_2_one_line(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err

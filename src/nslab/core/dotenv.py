"""``KEY=VALUE`` files as compose reads them: a lab file's ``.env`` (its ``${VAR}`` values) and a host's
``env_file:`` (its services' environment).

One variable a line; blank lines and ``#`` comments are skipped; ``export KEY=VALUE`` is accepted; a value in
single quotes is taken as written, in double quotes with ``\\n``, ``\\t``, ``\\"`` and ``\\\\`` unescaped;
an unquoted value ends at `` #`` and loses its surrounding blanks. A line without ``=`` is a problem, with its
number. No ``re`` and no YAML: ``up`` of a kept file reads ``.env`` too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def parse(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The variables of ``text`` in order, and its problems as (line number, message)."""
    found: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "a").isalnum():
            problems.append((number, "not KEY=VALUE"))
            continue
        found[key] = _value(value.strip())
    return found, problems


def _value(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        out, chars = [], iter(text[1:-1])
        for c in chars:
            if c == "\\":
                escaped = next(chars, "")
                c = _ESCAPES.get(escaped, "\\" + escaped)
            out.append(c)
        return "".join(out)
    comment = text.find(" #")
    return (text[:comment] if comment >= 0 else text).strip()


def read(path: str) -> dict[str, str]:
    """The variables of the file ``path``; {} when it cannot be read (lines that are not KEY=VALUE skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return parse(fh.read())[0]
    except (OSError, UnicodeDecodeError):
        return {}


def beside(lab_file: str) -> str:
    """The ``.env`` beside a lab file ("" for standard input)."""
    if not lab_file or lab_file in ("-", "<stdin>") or lab_file.startswith("<"):
        return ""
    return os.path.join(os.path.dirname(os.path.abspath(lab_file)), ".env")


def environment(lab_file: str, environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """What ``${VAR}`` of ``lab_file`` reads: the environment, over the ``.env`` beside the file (compose)."""
    env = os.environ if environ is None else environ
    path = beside(lab_file)
    dotenv = read(path) if path and os.path.isfile(path) else {}
    return {**dotenv, **env} if dotenv else env

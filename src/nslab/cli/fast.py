"""The CLI's fast path: ``down``, ``up`` and ``status`` in their plain forms, without click (importing click
alone takes ~28 ms; ``exec`` has a module of its own, :mod:`nslab.cli.fast_exec`).

``down LAB`` (one plain argument): a teardown should not wait for click. ``up [-f FILE] [-q] [--wide]`` and
``status [LAB | LAB/HOST] [--json | --wide]``: with the lab file kept by :mod:`nslab.core.kept`, an ``up``
of an unchanged file imports neither click, rich, PyYAML nor pydantic (the click commands call the same
functions below, so both ways print the same). Anything else returns ``None`` untouched: the click application
handles it and owns the error messages.
"""

from __future__ import annotations

import os
import sys

from .plain import reporting

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..core.lifecycle import Subset


def run_fast(argv: list[str]) -> int | None:
    """Do ``argv`` if it is a form this module knows; None: not handled, nothing done."""
    if len(argv) == 2 and argv[0] == "down" and not argv[1].startswith("-"):
        return reporting(lambda: down(argv[1]))
    if argv and argv[0] == "up":
        return _up(argv[1:])
    if argv and argv[0] == "status":
        return _status(argv[1:])
    return None


def _options(args: list[str], flags: dict[str, str], valued: dict[str, str]) -> dict[str, str] | None:
    """``args`` as {option: value} (flags: "1"); positional arguments under "": None for anything else."""
    out: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        name, eq, value = arg.partition("=")
        if arg in flags and arg not in out:
            out[flags[arg]] = "1"
        elif name in valued and valued[name] not in out:
            value = value if eq else next(rest, "")
            if not value or value.startswith("-"):
                return None
            out[valued[name]] = value
        elif not arg.startswith("-") and "" not in out:
            out[""] = arg
        else:
            return None  # --help, other options, repeats: click decides
    return out


def _up(args: list[str]) -> int | None:
    found = _options(args, {"-q": "quiet", "--quiet": "quiet", "--wide": "wide", "--wait": "wait"},
                     {"-f": "file", "--file": "file", "--timeout": "timeout", "--machine": "machine"})
    if found is None or "" in found or found.get("file") == "-" or ("timeout" in found and "wait" not in found):
        return None
    try:
        timeout = float(found.get("timeout", WAIT_TIMEOUT)) if "wait" in found else None
    except ValueError:
        return None  # click says what is wrong with it
    return reporting(lambda: up(found.get("file"), quiet="quiet" in found, wide="wide" in found, wait=timeout,
                                machine=found.get("machine")), partial=True)


#: ``up --wait``: seconds it waits for the healthchecks unless ``--timeout`` says otherwise.
WAIT_TIMEOUT = 60.0


def up(file: str | None, quiet: bool = False, wide: bool = False, wait: float | None = None,
       subset: Subset | None = None, machine: str | None = None) -> int:
    """``nslab up [-f FILE] [-q] [--wide] [--wait [--timeout S]]`` (table output; the click command calls it
    too, with ``--only`` and ``--profile`` as ``subset``). With ``wait``: returns once every healthcheck passes,
    else after ``wait`` seconds with 1 and a line ``nslab: HOST unhealthy: OUTPUT`` per host (the lab stays
    up)."""
    from ..core.lifecycle import up_file
    from ..core.which import find_lab_file
    from ..linux import require_root
    from . import render

    require_root("up creates namespaces, links and firewall rules")
    path = find_lab_file(file)
    with render.progress(enabled=not quiet) as bar:
        result = up_file(path, progress=bar, subset=subset, machine=machine)
    _rootless_forwards(result.lab.name)
    render.warnings(result.warnings)
    if not quiet:
        render.changes(result.changes())
        for line in result.repairs:
            sys.stdout.write(f"{'repaired' if result.applied else 'not repaired'}: {line}\n")
        render.up_table(result.lab, changed=result.applied, wide=wide)
    if wait is None:
        return 0
    sys.stdout.flush()
    from ..core.lifecycle import wait_healthy

    unhealthy = wait_healthy(result.lab.name, wait)
    for host, output in unhealthy.items():
        sys.stderr.write(f"nslab: {host} unhealthy: {output}\n")
    return 1 if unhealthy else 0


def _status(args: list[str]) -> int | None:
    found = _options(args, {"--json": "json", "--wide": "wide"}, {})
    if found is None or ("json" in found and "wide" in found):
        return None
    output = "json" if "json" in found else "wide" if "wide" in found else "table"
    return reporting(lambda: status(found.get(""), output), partial=True)


def status(target: str | None, output: str, quiet: bool = False, machine: str | None = None) -> int:
    """``nslab status [LAB | LAB/HOST]`` in ``output`` (table, wide, json, yaml); exit status 1 when a lab's
    record is damaged (drift raises: exit 1 too, named). The click command calls it with its options
    (``--machine``: the labs up here must be that machine's part of a lab across machines)."""
    from ..core.lifecycle import status as lab_status
    from ..errors import NslabError

    lab_name, host = _lab_and_host(target)
    if lab_name is not None and host is None and not quiet and machine is None:
        from .engine import held, swarm_status

        if held(lab_name):
            return swarm_status(lab_name, output)
    doc = _read_status(lambda name: lab_status(name, machine=machine), lab_name)
    _rootless_status(doc)
    if host is not None:
        _only_host(doc, host)
    _print_status(doc, output, quiet, host)
    for problem in doc.get("damaged", []):  # labs whose state cannot be read: one line each, exit 1
        sys.stderr.write(f"nslab: {problem}\n")
    drifted = [f"{lab['name']} ({len(lab['drift'])})" for lab in doc["labs"] if lab.get("drift")]
    if drifted:  # exit 1, named (`nslab up` repairs it)
        raise NslabError(f"the machine differs from lab {', '.join(drifted)}: `nslab up` repairs it")
    return 1 if doc.get("damaged") else 0


def _lab_and_host(target: str | None) -> tuple[str | None, str | None]:
    """``LAB`` or ``LAB/HOST`` (or nothing) -> (lab, host)."""
    from ..errors import UserError

    if target is None or "/" not in target:
        return target, None
    lab_name, host = target.split("/", 1)
    if not lab_name or not host or "/" in host:
        raise UserError(f"'{lab_name}/{host}' is neither LAB nor LAB/HOST")
    return lab_name, host


def _print_status(doc: dict[str, Any], output: str, quiet: bool, host: str | None) -> None:
    """The status document as ``-q`` (lab names), JSON/YAML or the table."""
    if quiet:
        for lab in doc["labs"]:
            sys.stdout.write(lab["name"] + "\n")
    elif output in ("json", "yaml"):
        print_doc(doc, output)
    else:
        from . import render

        render.status(doc, wide=output == "wide", host=host)
    sys.stdout.flush()


def print_doc(doc: object, output: str) -> None:
    """``doc`` as JSON (indented) or YAML on standard output."""
    if output == "json":
        import json

        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False).rstrip("\n") + "\n")


def _read_status(read: Callable[[str | None], dict[str, Any]], lab_name: str | None) -> dict[str, Any]:
    """The status document; as a user without a lab (not inside a keeper), what cannot be read says why root
    is needed."""
    from ..errors import EnvironmentProblem, NslabError, UserError

    try:
        return read(lab_name)
    except (NslabError, OSError) as exc:
        if os.geteuid() == 0 or isinstance(exc, UserError):
            raise
        raise EnvironmentProblem("status needs root to look inside these hosts' namespaces (entering a network "
                                 "namespace needs CAP_SYS_ADMIN): run it with sudo") from None


def _only_host(doc: dict[str, Any], host: str) -> None:
    """Keep one host in the status document (its services and ports too)."""
    from ..core.which import no_host

    for lab in doc["labs"]:
        hosts = [h for h in lab["hosts"] if h["name"] == host]
        if not hosts:
            raise no_host(lab["name"], host, [h["name"] for h in lab["hosts"]])
        lab["hosts"] = hosts
        lab["links"] = [lk for lk in lab.get("links", []) if host in lk["endpoints"]]
        for section, entries in (("hostsetup", "services"), ("firewall", "ports")):
            part = lab.get(section) or {}
            if entries in part:
                part[entries] = [e for e in part[entries] if e.get("host") == host]


def _rootless_status(doc: dict[str, Any]) -> None:
    """Rootless: each lab says so, and how its services are supervised (no root cgroups: process groups)."""
    from ..core.rootless import joined
    from ..paths import ROOTLESS_ENV

    if joined():
        from ..daemons.keeper import unrelayed
        from ..daemons.wayout import recorded
        from ..paths import state_root

        way_out, failing = recorded(state_root()), unrelayed(state_root())
        for lab in doc["labs"]:
            lab["rootless"] = {"uid": int(os.environ[ROOTLESS_ENV]), "services": "process groups",
                               "way_out": way_out, **({"unrelayed": failing[lab["name"]]}
                                                      if lab["name"] in failing else {})}


def _rootless_forwards(lab: str | None = None) -> None:
    """Rootless: the keeper's relays made to match the labs' published ports (daemons/keeper.py); what cannot
    be published for ``lab`` said as a warning."""
    from ..core.rootless import joined

    if joined():
        from ..daemons.keeper import sync_now, unrelayed
        from ..paths import state_root

        sync_now(state_root())
        for line in unrelayed(state_root()).get(lab or "", []):
            sys.stderr.write(f"nslab: warning: not published: {line}\n")


def down(lab: str, machine: str | None = None) -> None:
    """``nslab down LAB`` (also called by the click command once it knows the lab's name; ``machine``: the part
    recorded here must be that machine's)."""
    from ..core.lifecycle import down as lab_down
    from .engine import held, swarm_down

    if machine is None and held(lab) and swarm_down(lab):  # run by Docker Swarm: each runner takes its part down
        return
    gone = lab_down(lab, machine=machine)
    _rootless_forwards()
    if gone:
        print(f"lab {lab} is down")
    else:
        print(f"lab {lab} was not up; nothing to do")

"""Labs run by an engine: ``nslab image build``, ``nslab machine run`` (the per-machine runner an engine's task
runs) and the way ``up --engine swarm``, ``down LAB``, ``status LAB`` and ``exec LAB/HOST`` reach a lab that
Docker Swarm runs (:mod:`nslab.tools.swarm`).

The runner knows nothing of any engine: it brings the machine's part up with ``nslab up -f FILE [--machine
NAME]``, prints :data:`UP_LINE`, and stays until SIGTERM (or SIGINT), then takes the part down. ``--held-by
ENGINE`` leaves a mark (``paths.engine_mark``) while it runs, so that ``nslab down LAB`` on that machine goes
through the engine instead of pulling the part from under its runner.

Loaded by the fast paths only to ask :func:`held` (``os`` and paths.py; the Engine API only when this machine
has no part of the lab and a Docker socket exists).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

    import click

    from ..tools.check import Matrix

#: What the runner prints once its part is up (an engine waits for this line in the task's output).
UP_LINE = "nslab machine run: up"


def held(lab: str) -> bool:
    """Whether ``lab`` is run by Swarm as seen from here: this machine's part of it is held by an engine's
    runner, or the lab is not up here and the swarm ``DOCKER_HOST`` names has services for it."""
    from .. import paths

    if not paths.is_lab_name(lab) or os.environ.get("NSLAB_ENGINE_JOB"):
        return False  # (inside an engine's job: the machine's part itself)
    if os.path.exists(paths.engine_mark(lab)):
        return True
    if os.path.isdir(paths.lab_dir(lab)):
        return False
    from ..drivers.docker import docker_socket

    if not os.path.exists(docker_socket()):
        return False
    from ..tools.swarm import is_swarm_lab

    return is_swarm_lab(lab)


def swarm_up(file: str | None, image: str | None, quiet: bool,
             others: tuple[bool, bool, bool, bool, str] = (False, False, False, False, "table")) -> None:
    """``up --engine swarm``: the lab file as a Swarm config and one service per machine, on the manager
    ``DOCKER_HOST`` names; returns once every machine's part is up. ``others``: whether up's --dry-run,
    --wait, --only, --profile were given, and its output (none of them goes with the engine)."""
    if any(others[:4]) or others[4] in ("json", "yaml"):
        from ..errors import UserError

        raise UserError("--engine swarm goes without --dry-run, --wait, --only, --profile and -o json|yaml")
    from ..core.which import find_lab_file
    from ..tools import swarm
    from ..tools.image import default_tag

    path = find_lab_file(file)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    report = swarm.up(text, image or default_tag(), label=path)
    if not quiet:
        print(f"lab {report.lab} is up on the swarm: machines {', '.join(report.machines)} in "
              f"{report.seconds:.1f} s (the parts' own up: {report.part_seconds:.1f} s at most)")


def swarm_down(lab: str) -> bool:
    """``down LAB`` of a swarm lab: its services removed (each machine's runner takes its part down), its
    config too. False: this machine's engine mark is stale (the manager here runs no such lab: the runner is
    gone), the mark is removed and the part is for the usual ``down`` to take."""
    from .. import paths
    from ..errors import NslabError, UserError
    from ..tools import swarm

    mark = paths.engine_mark(lab)
    if os.path.exists(mark) and not swarm.is_swarm_lab(lab):
        try:
            swarm.Swarm().manager_node()
        except NslabError:
            raise UserError(f"this machine's part of lab {lab} is run by Docker Swarm: `nslab down {lab}` on a "
                            f"swarm manager (DOCKER_HOST naming it) takes every machine's part down (or remove "
                            f"{mark} to take this part down here)") from None
        os.unlink(mark)
        return False
    machines = swarm.down(lab)
    print(f"lab {lab} is down (swarm services removed; machines: {', '.join(machines)})")
    return True


def swarm_status(lab: str, output: str) -> int:
    """``status LAB`` of a swarm lab: every machine's part, merged (exit 1 when a part failed or differs)."""
    from ..tools import swarm

    doc = swarm.status(lab)
    if output == "json":
        import json

        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    else:
        from . import render

        for machine, part in doc["machines"].items():
            sys.stdout.write(f"== machine {machine} ==\n")
            render.status(part, wide=output == "wide", host=None)
        sys.stdout.flush()
    for machine, problem in doc["failed"].items():
        sys.stderr.write(f"nslab: machine {machine}: {problem}\n")
    for machine in doc["differs"]:
        sys.stderr.write(f"nslab: machine {machine}: its part was made from another lab file (digest differs)\n")
    return 1 if doc["failed"] or doc["differs"] else 0


def on_swarm(lab: str, host: str | None, argv: list[str]) -> int:
    """``nslab ARGV`` run on the machine holding ``host`` (every machine when None or not said), its output
    passed through; the exit status of the first machine that failed, else 0."""
    from ..tools import swarm

    machines = swarm.machine_of(lab, host) if host is not None else None
    worst = 0
    for machine, code, out, err in swarm.on_machines(lab, argv, machines):
        if machines is None and host is not None and code == 2 and f"no host {host}" in err:
            continue  # not on this machine
        if len(machines or ()) != 1:
            sys.stdout.write(f"== machine {machine} ==\n")
        sys.stdout.write(out)
        sys.stderr.write(err)
        worst = worst or code
    sys.stdout.flush()
    return worst


def swarm_check(lab: str, output: str) -> int:
    """``check LAB`` of a swarm lab: each machine probes from its own hosts (one job each); their cells make
    one matrix (the outside column only where every machine probed it). Exit 1 when a cell differs or a
    machine could not answer."""
    import json

    from ..tools import swarm

    docs: list[dict[str, Any]] = []
    failed = []
    for machine, code, out, err in swarm.on_machines(lab, ["check", lab, "--json"]):
        try:
            docs.append(json.loads(out))
        except ValueError:
            failed.append(f"machine {machine}: {(err.strip() or f'exit {code}').splitlines()[-1]}")
    matrix = _one_matrix(lab, docs)
    if output in ("json", "yaml"):
        sys.stdout.write(json.dumps({**matrix.to_json(), "failed": failed}, indent=2) + "\n")
    else:
        from . import render

        sys.stdout.write(render.check_matrix(matrix))
    for line in failed:
        sys.stderr.write(f"nslab: {line}\n")
    return 1 if failed or not matrix.ok else 0


def _one_matrix(lab: str, docs: list[dict[str, Any]]) -> Matrix:
    """The machines' ``check --json`` documents as one matrix: every machine's rows, every host a column, the
    outside one only when each row has it."""
    from ..tools.check import OUTSIDE, Cell, Matrix

    cells = [Cell(**{k: v for k, v in c.items() if k != "ok"}) for doc in docs for c in doc["cells"]]
    sources = list(dict.fromkeys(c.source for c in cells))
    columns = list(dict.fromkeys(c.target for c in cells if c.target != OUTSIDE))
    columns += [OUTSIDE] if sources and _probed_outside(cells, OUTSIDE) == set(sources) else []
    outside = next((d["outside"] for d in docs if d.get("outside")), None)
    probe = docs[0]["probe"] if docs else "icmp"
    return Matrix(lab, probe, sources, columns, outside, [c for c in cells if c.target in columns])


def _probed_outside(cells: list[Any], outside: str) -> set[str]:
    return {c.source for c in cells if c.target == outside}


def exec_elsewhere(text: str, command: list[str]) -> int | None:
    """``nslab exec LAB/HOST -- CMD`` for a host this machine does not hold, of a swarm lab: run as a job on
    the host's machine; None when ``LAB`` is no swarm lab."""
    lab, _, host = text.rpartition("/")
    if not lab or not held(lab):
        return None
    from .plain import reporting

    return reporting(lambda: on_swarm(lab, host, ["exec", f"{lab}/{host}", "--", *command]), partial=True)


def register(group: click.Group) -> None:
    import click

    @group.group("image")
    def image() -> None:
        """Images holding nslab, for engines that run labs (Docker Swarm)."""

    @image.command("build")
    @click.option("--tag", "tag", default=None, metavar="T", help="The image's name (default nslab:VERSION).")
    @click.option("--from", "base", default=None, metavar="IMAGE",
                  help="Start from this image (nslab and this machine's Python added on top).")
    def build(tag: str | None, base: str | None) -> None:
        """Make an image holding this machine's nslab on the Docker engine DOCKER_HOST names, with no registry.

        Assembles a root filesystem from the Python running nslab, its standard library and shared
        libraries, nslab and its dependencies, and ip, nft, tc, nsenter and busybox, and imports it through
        the Engine API. Prints the tag, size and build time. Every node of a swarm needs the image: build it
        on each (DOCKER_HOST naming each node's engine) or push it to a registry.
        """
        from ..tools.image import build as build_image

        built = build_image(tag, base)
        click.echo(f"image {built.tag}: {built.size / 1e6:.0f} MB, {built.files} files, built in "
                   f"{built.seconds:.1f} s ({built.ident[:19]})")

    @group.group("machine")
    def machine() -> None:
        """One machine's part of a lab, as an engine's task runs it."""

    @machine.command("run")
    @click.option("-f", "--file", "file", required=True, metavar="FILE", help="The lab file.")
    @click.option("--machine", "name", default=None, metavar="NAME", help="This machine's name in machines:.")
    @click.option("--held-by", "engine", default=None, metavar="ENGINE",
                  help="Mark the part as held by ENGINE while this runs (down, status, exec go through it).")
    def run(file: str, name: str | None, engine: str | None) -> None:
        """Bring this machine's part of the lab up, stay until SIGTERM, then take the part down.

        Prints `nslab machine run: up in S s` once the part is up (S: how long its up took); exits with up's
        status if it fails.
        """
        raise SystemExit(_run(file, name, engine))

    @machine.command("job", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
    @click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
    def job(argv: tuple[str, ...]) -> None:
        """Run `nslab ARGV` as an engine's one-shot job on this machine (kernel settings made writable first)."""
        raise SystemExit(_job(list(argv)))


#: What a part writes outside its namespaces' own files: the network sysctls (of the machine's namespace and
#: of the hosts') and its cgroups (services' limits). Nothing else of /proc/sys or /sys is made writable.
WRITABLE = ("/proc/sys/net", "/sys/fs/cgroup")


def writable_kernel_settings() -> None:
    """In a container (not privileged, with CAP_SYS_ADMIN) /proc/sys and /sys are read-only mounts: the paths
    in :data:`WRITABLE` are made writable (a path that is not a mount of its own is first bound onto itself, so
    the rest stays read-only), as nslab sets sysctls of the machine's namespace and of the hosts'. Elsewhere
    nothing changes."""
    from .. import linux

    for path in WRITABLE:
        if not os.path.isdir(path) or not os.statvfs(path).f_flag & os.ST_RDONLY:
            continue
        try:
            if not os.path.ismount(path):
                linux.mount(path, path, None, linux.MS_BIND)
            linux.mount_setattr(path, 0, linux.MOUNT_ATTR_RDONLY)
        except OSError:
            pass  # not permitted: up says which setting it could not make


def _job(argv: list[str]) -> int:
    import subprocess

    writable_kernel_settings()
    return subprocess.run([sys.executable, "-m", "nslab", *argv], check=False).returncode


def _up(proc: subprocess.Popen[bytes]) -> int | None:
    """Up's exit status, or None when this runner was stopped (SIGTERM, SIGHUP, Ctrl-C) while up ran: up is
    then sent SIGTERM and waited for, so its own rollback finishes before the runner goes on."""
    import signal

    try:
        return proc.wait()
    except KeyboardInterrupt:  # Terminated too (cli.plain)
        pass
    while proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        except KeyboardInterrupt:
            continue  # a second signal: keep waiting, the rollback must finish
    return None


def _run(file: str, machine: str | None, engine: str | None) -> int:
    import subprocess
    import time

    from .. import paths
    from ..core.which import name_in_file

    lab = name_in_file(file)
    part = ["--machine", machine] if machine else []
    writable_kernel_settings()
    nslab = [sys.executable, "-m", "nslab"]
    started = time.monotonic()
    code = _up(subprocess.Popen([*nslab, "up", "-f", file, *part]))
    if code is None:  # stopped while up ran: up rolled back what it made, down clears anything left
        print(f"nslab machine run: stopped during up, taking {lab} down", flush=True)
        return subprocess.run([*nslab, "down", lab, *part], check=False).returncode
    if code != 0:
        return code
    took = time.monotonic() - started
    mark = paths.engine_mark(lab)
    if engine:
        os.makedirs(os.path.dirname(mark), exist_ok=True)
        with open(mark, "w", encoding="utf-8") as fh:
            fh.write(engine + "\n")
    print(f"{UP_LINE} in {took:.2f} s", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # SIGTERM and SIGHUP arrive as Terminated (cli.plain), Ctrl-C as itself
        pass
    if os.path.exists(mark):
        os.unlink(mark)
    print(f"nslab machine run: taking {lab} down", flush=True)
    return subprocess.run([*nslab, "down", lab, *part], check=False).returncode

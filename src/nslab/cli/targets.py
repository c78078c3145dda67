"""Verbs on any namespace of the machine: ``exec``, ``shell``, ``ls``, ``attach``, ``detach``, ``run``, ``gc``.

Targets are ``[LAB/]HOST``, ``netns:NAME``, ``pid:PID``, ``container:NAME_OR_ID`` and ``path:FILE`` (see
:mod:`nslab.ns.targets`). ``exec`` and ``shell`` replace nslab with the command, so signals reach it directly;
they import nothing heavy (no pydantic, yaml or rich).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..errors import UserError
from ..paths import ROOTLESS_ENV
from . import complete

#: Why exec and shell need root, said to a non-root user.
ENTERING = "entering a network namespace needs CAP_SYS_ADMIN"
_EXEC_FLAGS = {"--uts", "--detach", "-d", "-i", "-t", "-it", "-ti", "--interactive", "--tty"}
_NO_OPS = {"-i", "-t", "-it", "-ti", "--interactive", "--tty"}  # CMD has nslab's stdin and terminal already
_EXEC_VALUES = {
    "--file": "file",
    "-f": "file",
    "--mount-from": "mount_from",
    "--pid-from": "pid_from",
    "--user": "user",
    "-u": "user",
    "--env": "env",
    "-e": "env",
    "--workdir": "workdir",
    "-w": "workdir",
}


def _split_exec_args(tokens: tuple[str, ...], values: dict[str, Any]) -> list[str]:
    """Options may also follow TARGET (``nslab exec web1 --uts -- CMD``): take them up to ``--`` or the
    first word that is not one of ours; the rest is the command, untouched."""
    tokens_list = list(tokens)
    while tokens_list:
        token = tokens_list[0]
        if token == "--":
            return tokens_list[1:]
        name, eq, inline = token.partition("=")
        if token in _EXEC_FLAGS:
            if token not in _NO_OPS:
                values["detach" if token in ("--detach", "-d") else "uts"] = True
            tokens_list.pop(0)
        elif name in _EXEC_VALUES and name.startswith("--") and eq or token in _EXEC_VALUES:
            key = _EXEC_VALUES[name if eq else token]
            tokens_list.pop(0)
            if not eq:
                if not tokens_list:
                    raise click.UsageError(f"{token} needs a value")
                inline = tokens_list.pop(0)
            if key == "env":
                values["env"] = (*values["env"], inline)
            else:
                values[key] = inline
        else:
            break
    return tokens_list


def _env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not key or not eq:
            raise UserError(f"--env {pair}: write KEY=VALUE")
        env[key] = value
    return env


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--uts", is_flag=True, help="Also enter the target's UTS (hostname) namespace.")
@click.option("--mount-from", metavar="TARGET2", help="Use TARGET2's filesystem (mount namespace) and tools.")
@click.option("--pid-from", metavar="TARGET2", help="Fork CMD into TARGET2's PID namespace.")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="Run as USER (name or uid; --mount-from: TARGET2's users).")
@click.option("-e", "--env", multiple=True, metavar="K=V", help="Set an environment variable (repeatable).")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory of the command.")
@click.option("-d", "--detach", is_flag=True, help="Start CMD in the background (no stdio); print its pid.")
@click.option("-f", "--file", metavar="FILE", help="HOST is a host of the lab named in this lab file.",
              shell_complete=complete.lab_files)
@click.option("-i", "--interactive", "interactive", is_flag=True,
              help="Accepted for docker/kubectl habits: CMD always gets nslab's stdin.")
@click.option("-t", "--tty", "tty", is_flag=True,
              help="Accepted for docker/kubectl habits: CMD gets nslab's terminal when there is one.")
@click.option("--all", "every", is_flag=True, help="TARGET is a LAB: run CMD in each of its hosts.")
@click.argument("target", metavar="TARGET", shell_complete=complete.targets)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="[--] CMD [ARGS]...")
def exec_(target: str, argv: tuple[str, ...], **values: Any) -> None:
    """Run CMD in TARGET's network namespace, with this machine's tools.

    Like `nsenter -n -t PID` or `ip netns exec`; exits with CMD's status. Options may also follow TARGET;
    `--` ends them.

    \b
    TARGET: [LAB/]HOST, netns:NAME, pid:PID, container:NAME_OR_ID, path:FILE
    Lab hosts and netns: targets also get their /etc/netns/NAME files;
    lab hosts also their hostname (UTS) namespace. A glob in HOST
    ('LAB/web*') or --all runs CMD in every host it names at once, each
    output line prefixed 'HOST | '; the exit status is the highest.
    """
    from ..linux import require_root
    from ..ns.nsenter import ExecOptions, exec_in_target
    from ..ns.targets import resolve

    command = _split_exec_args(argv, values)
    if not command:
        raise click.UsageError("give a command after --")
    require_root(ENTERING)
    if values.get("file"):
        from .labs import which_lab

        if "/" in target or ":" in target:
            raise click.UsageError("with -f FILE, TARGET is a HOST of that lab")
        target = f"{which_lab(None, values['file'])}/{target}"
    if values["every"] or (":" not in target and _many(target)):
        sys.exit(_exec_many(target, command, values))
    resolved = resolve(target)
    options = ExecOptions(
        uts=values["uts"],
        mount_from=resolve(values["mount_from"]) if values["mount_from"] else None,
        pid_from=resolve(values["pid_from"]) if values["pid_from"] else None,
        user=values["user"],
        env=_env_pairs(values["env"]),
        workdir=values["workdir"],
        detach=values["detach"],
    )
    code = exec_in_target(resolved, command, options)
    sys.exit(code)


def _many(target: str) -> bool:
    from ..ns.fanout import is_pattern

    return is_pattern(target)


def _exec_many(target: str, command: list[str], values: dict[str, Any]) -> int:
    """``exec 'LAB/GLOB'`` or ``exec --all LAB``: CMD in each host at once (ns/fanout.py)."""
    from ..ns import fanout
    from ..ns.nsenter import ExecOptions

    refused = [flag for flag, key in (("-d", "detach"), ("--mount-from", "mount_from"), ("--pid-from", "pid_from"))
               if values[key]]
    if refused:
        raise click.UsageError(f"{', '.join(refused)}: one host at a time (not with a glob or --all)")
    hosts = fanout.matching(target, values["every"])
    options = ExecOptions(uts=values["uts"], user=values["user"], env=_env_pairs(values["env"]),
                          workdir=values["workdir"])
    return fanout.run(hosts, command, options)


@click.command()
@click.option("--uts", is_flag=True, help="Also enter the target's UTS (hostname) namespace.")
@click.option("--mount-from", metavar="TARGET2", help="Use TARGET2's filesystem (mount namespace).")
@click.argument("target", metavar="TARGET", shell_complete=complete.targets)
def shell(target: str, uts: bool, mount_from: str | None) -> None:
    """Open your shell ($SHELL) inside TARGET.

    \b
    TARGET: [LAB/]HOST, netns:NAME, pid:PID, container:NAME_OR_ID, path:FILE
    With --mount-from the shell is /bin/sh of TARGET2's filesystem.
    """
    from ..linux import require_root
    from ..ns.nsenter import ExecOptions, exec_in_target
    from ..ns.targets import resolve

    require_root(ENTERING)
    resolved = resolve(target)
    options = ExecOptions(uts=uts, mount_from=resolve(mount_from) if mount_from else None)
    user_shell = os.environ.get("SHELL") or "/bin/sh"
    if mount_from or resolved.inside:
        user_shell = "/bin/sh"  # their filesystem (a container host's, TARGET2's) may not have ours
    if sys.stdin.isatty():
        click.echo(f"nslab: entering {resolved.label}; exit to leave", err=True)
    sys.exit(exec_in_target(resolved, [user_shell], options))


def _short(command: str, width: int = 48) -> str:
    command = " ".join(command.split())
    return command if len(command) <= width else command[: width - 3] + "..."


@click.command(name="ls")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default=None,
              help="table (default), json or yaml.")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json.")
@click.option("-q", "--quiet", is_flag=True, help="Only each namespace's id (net:[INODE]) and names.")
def ls_(output: str | None, as_json: bool, quiet: bool) -> None:
    """List every network namespace on the machine, each once.

    With its names, Docker containers, processes and interfaces. Creates nothing. Without root: what the
    kernel shows anyone (names, your processes, this machine's interfaces).
    """
    from ..ns.discover import list_namespaces
    from .fast import print_doc
    from .labs import _output

    output = _output(output, as_json, False)
    if os.geteuid() != 0:  # what the kernel shows anyone: the names, one's own processes, this namespace
        click.echo("nslab: not root: only the names under /run/netns, your own processes and this machine's "
                   "interfaces can be seen (the other namespaces' interfaces, every process and the labs' "
                   "hosts need root: sudo nslab ls)", err=True)
    spaces = list_namespaces()
    users = _users_labs()
    if output in ("json", "yaml"):
        print_doc({"version": 1, "namespaces": spaces, "users": users}, output)
        return
    if quiet:
        for ns in spaces:
            click.echo(" ".join([f"net:[{ns['inode']}]", *ns["names"]]))
        return
    for ns in spaces:
        _show_namespace(ns)
    for user in users:
        keeper = f"keeper {user['keeper']}" if user["keeper"] else "keeper gone: sudo nslab gc --user"
        labs = ", ".join(str(lab) for lab in user["labs"] or []) if isinstance(user["labs"], list) else ""
        click.echo(f"user {user['user']} (uid {user['uid']}, {keeper}): rootless labs {labs or '(none)'}")


def _users_labs() -> list[dict[str, object]]:
    """Root: each user's rootless labs (daemons/keeper.py); their hosts live in the user's namespaces."""
    if os.geteuid() != 0 or os.environ.get(ROOTLESS_ENV):
        return []
    from ..daemons.keeper import users

    return [u.as_dict() for u in users()]


def _show_namespace(ns: dict[str, Any]) -> None:
    """One namespace of ``nslab ls``: its id and names, its interfaces, its first processes, what keeps it."""
    names = [*ns["names"], *(f"container:{c}" for c in ns["containers"])]
    if ns["machine"]:
        names.insert(0, "(this machine)")
    if not names:
        names = ns["bind_mounts"][:1] or ["(unnamed)"]
    procs = ns["processes"]
    shown = ", ".join(f"{p['pid']} {_short(p['command'])}" for p in procs[:3])
    if len(procs) > 3:
        shown += f", +{len(procs) - 3} more"
    click.echo(f"net:[{ns['inode']}]  {' '.join(names)}")
    for iface in ns["interfaces"]:
        state = "UP" if iface["up"] else "DOWN"
        click.echo(f"    {iface['name']:<16} {state:<5} {' '.join(iface['addresses'])}".rstrip())
    if shown:
        click.echo(f"    processes: {shown}")
    if ns["bind_mounts"] and not ns["names"]:
        click.echo(f"    kept by: {', '.join(ns['bind_mounts'])}")


@click.command()
@click.argument("name")
@click.argument("target", metavar="TARGET", shell_complete=complete.targets)
def attach(name: str, target: str) -> None:
    """Give TARGET's network namespace an `ip netns` name.

    `ip netns list` then shows NAME and `ip netns exec NAME` works. An existing name is refused.
    """
    from ..linux import require_root
    from ..ns.discover import attach as do_attach

    require_root("attach bind-mounts a namespace on /run/netns/NAME")
    do_attach(name, target)
    click.echo(f"netns {name} -> {target}")


@click.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Also remove a name nslab's attach did not make (says what goes).")
def detach(name: str, force: bool) -> None:
    """Remove a name made by `attach`.

    The namespace and its owner (a container, a process) are left alone. A name made otherwise (`ip netns
    add`) is refused unless --force: then its namespace goes too when nothing else holds it.
    """
    from ..linux import require_root
    from ..ns.discover import detach as do_detach

    require_root("detach unmounts a name under /run/netns")
    for line in do_detach(name, force):
        click.echo(line, err=True)
    click.echo(f"netns {name} detached")


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--network",
    type=click.Choice(["none", "nat", "internal"]),
    default="none",
    show_default=True,
    help="none: loopback only; nat/internal: a one-host throwaway lab network.",
)
@click.option("-p", "--publish", multiple=True, metavar="SPEC",
              help="Publish a port, as in a lab file (repeatable); PORT alone: a free host port is picked and printed.")
@click.option("--dns", multiple=True, metavar="ADDRESS", help="A DNS server for the namespace (repeatable).")
@click.option("--user", metavar="USER[:GROUP]", help="Run CMD as USER (name or uid; no capabilities unless --cap-add).")
@click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a capability (NET_ADMIN, or ALL; repeatable).")
@click.option("--cap-add", multiple=True, metavar="CAP", help="Keep or give a capability (repeatable).")
@click.option("--read-only", is_flag=True, help="The machine's filesystem read-only (tmpfs on /tmp and /run).")
@click.option("--tmpfs", multiple=True, metavar="PATH", help="A fresh tmpfs on PATH (repeatable).")
@click.option("--writable", multiple=True, metavar="PATH", help="Keep PATH read-write under --read-only (repeatable).")
@click.option("--private-tmp", is_flag=True, help="A fresh /tmp of CMD's own.")
@click.option("--pid", type=click.Choice(["host", "private"]), default="host", show_default=True,
              help="private: CMD in a PID namespace of its own (it sees only its own processes).")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
def run(network: str, publish: tuple[str, ...], dns: tuple[str, ...], argv: tuple[str, ...], **confine: Any) -> None:
    """Run CMD in a fresh network namespace, gone when CMD exits.

    Like `unshare -n`; exits with CMD's status. With --network nat or internal, the namespace is a one-host
    lab (egress, DNS and published ports as in lab files) that is taken down afterwards. --user, --cap-drop,
    --read-only, --private-tmp and --pid confine CMD as the same fields of a lab file confine a host's services.
    """
    from ..linux import require_root
    from ..tools.throwaway import containment, run_cli

    argv = argv[1:] if argv and argv[0] == "--" else argv
    if not argv:
        raise click.UsageError("give a command after --")
    if network == "none" and (publish or dns):
        raise click.UsageError("--publish and --dns need --network nat or internal")
    contain = containment(confine)
    require_root("run creates a network namespace")
    sys.exit(run_cli(list(argv), network, list(publish), list(dns), contain))


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--user", "users", multiple=True, metavar="USER",
              help="Root: stop USER's rootless labs (name or uid; repeatable): kill the user's keeper and every "
                   "process of its namespaces, remove the user's state.")
def gc(dry_run: bool, users: tuple[str, ...]) -> None:
    """Remove what killed runs and labs left behind.

    Only what is certainly orphaned: a `nslab run` or `nslab up` whose recorded process is gone, state without
    namespaces, links without state, a user's rootless state whose keeper is gone. Never touches a live run or
    a lab that is up, except a user's rootless labs named with --user.
    """
    from ..linux import require_root
    from ..tools.throwaway import gc as do_gc

    require_root("gc removes namespaces, links and state")
    done = _gc_users(users, dry_run) + do_gc(dry_run=dry_run)
    for line in done:
        click.echo(line)
    if not done:
        click.echo("nothing to clean up")


def _gc_users(named: tuple[str, ...], dry_run: bool) -> list[str]:
    """Root's gc of users' rootless labs: the named users' (killed), and any whose keeper is gone."""
    if os.environ.get(ROOTLESS_ENV):
        if named:
            raise UserError("gc --user is root's (a user's labs go with `nslab down`)")
        return []
    from ..daemons.keeper import stop_user, users

    found = users()
    unknown = [n for n in named if not any(n in (u.user, str(u.uid)) for u in found)]
    if unknown:
        raise UserError(f"no rootless labs of user {', '.join(unknown)} (see `nslab ls`)")
    chosen = [u for u in found if u.keeper is None or any(n in (u.user, str(u.uid)) for n in named)]
    if dry_run:
        return [f"would stop the rootless labs of {u.user} (uid {u.uid}): {', '.join(u.labs) or 'none'}"
                for u in chosen]
    return [stop_user(u) for u in chosen]


def register(group: click.Group) -> None:
    group.add_command(exec_, name="exec")
    group.add_command(shell)
    group.add_command(ls_, name="ls")
    group.add_command(attach)
    group.add_command(detach)
    group.add_command(run)
    group.add_command(gc)

"""Network verbs: ``check`` (the reachability matrix), ``link`` (an interface down or up) and ``port`` (where
a host's ports are published, as ``docker port``).

Logic lives in :mod:`nslab.tools.check`, :mod:`nslab.core.features.links` and the firewall's record; this module parses
options and renders.
"""

from __future__ import annotations

import click

from ..errors import NslabError, UserError
from . import complete


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]", shell_complete=complete.labs)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Take the lab name from this file.",
              shell_complete=complete.lab_files)
@click.option("--port", metavar="PORT[/udp]", default=None,
              help="Probe a TCP connect to PORT (PORT/udp: a UDP round trip) instead of ICMP echo.")
@click.option("--from", "source", metavar="HOST", default=None, help="Probe from this host only (one row).")
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
              help="Seconds a probe waits for its answer.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default=None,
              help="table (default), json or yaml (format: docs/commands.md).")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json.")
@click.option("-6", "--ipv6", "ipv6", is_flag=True,
              help="Probe over IPv6 (dual-stack networks; the outside is the machine's IPv6 gateway).")
@click.option("--explain", nargs=2, metavar="A B[:PORT]", default=None,
              help="Print the hops the model expects from host A to B (a host, outside or an address) and back; "
                   "probes nothing.")
@click.option("--machine", default=None, metavar="NAME",
              help="A lab across machines: the part recorded here must be this machine's.")
def check(lab_name: str | None, file: str | None, port: str | None, source: str | None, timeout: float,
          output: str | None, as_json: bool, ipv6: bool, explain: tuple[str, str] | None,
          machine: str | None) -> None:
    """Probe every pair of hosts and each host toward the outside; compare with the lab's policy.

    \b
    Rows are sources, columns targets ("outside" is the machine's uplink gateway).
    A cell reads "reach" or "block"; in capitals with "!" ("REACH!", "BLOCK!")
    when that is NOT what the lab implies: the reachability model (routes,
    default routes, hosts that forward, internal networks, isolation, NAT,
    partitions, interfaces put down with `nslab link`), or the lab file's
    expect: entries; an unexpected cell shows the hops the model expected.
    Exit 0 when every cell matches, 1 when any differs, 2 for bad input.
    Without LAB: the lab of -f FILE, else of the lab file here (nslab.yaml,
    nslab.yml, the one *.nslab.yaml), else the only lab that is up.
    A lab across machines: rows are this machine's hosts, columns every host.
    """
    from ..core.state import changing
    from ..linux import require_root
    from ..tools.check import check as run_check
    from . import render
    from .fast import print_doc as _print_doc
    from .labs import _output, which_lab

    output = _output(output, as_json, False)
    if explain is not None:
        _explain(which_lab(lab_name, file), explain, ipv6)
        return
    require_root("check sends probes from inside the hosts' namespaces")
    if lab_name is not None and explain is None and source is None and port is None and not ipv6:
        from .engine import held, swarm_check

        if held(lab_name):  # a swarm lab: each machine probes from its hosts, one job each, one matrix
            raise SystemExit(swarm_check(lab_name, output))
    name = which_lab(lab_name, file)
    if machine is not None:
        from ..core.which import machine_part

        machine_part(name, machine)
    busy = changing(name)
    if busy:  # half made: its probes would tell nothing about the lab (exit 0)
        click.echo(busy)
        return
    matrix = run_check(name, port, source, timeout=timeout, ipv6=ipv6)
    if output in ("json", "yaml"):
        _print_doc(matrix.to_json(), output)
    else:
        click.echo(render.check_matrix(matrix), nl=False)
    if not matrix.ok:
        bad = sum(not c.ok for c in matrix.cells)
        raise NslabError(f"{bad} of {len(matrix.cells)} cells differ from what lab {matrix.lab} implies")


def _explain(name: str, pair: tuple[str, str], ipv6: bool) -> None:
    from ..linux import require_root
    from ..tools.check import explain

    require_root("check --explain reads the lab's state in /run/nslab, readable by root only")
    for line in explain(name, pair[0], pair[1], ipv6).lines():
        click.echo(line)


@click.command()
@click.argument("target", metavar="LAB/HOST[:IF]", shell_complete=complete.lab_or_host)
@click.argument("state", type=click.Choice(["down", "up"]))
def link(target: str, state: str) -> None:
    """Put a host's interface down or up: both ends of it.

    \b
    A bridge port goes down inside the host and on the machine; a link between
    two hosts at both ends. Without :IF, every interface of the host. The state
    is kept: `status` shows it, `up` keeps it (it is not drift), and
    `nslab link LAB/HOST[:IF] up` brings both ends back (with the host's
    default route, when it went through that interface).
    """
    from ..core.features.links import set_link
    from ..lab import find_host
    from ..linux import require_root

    require_root("link sets interfaces inside the hosts' namespaces up or down")
    where, _, iface = target.partition(":")
    if not where or (":" in target and not iface):
        raise UserError(f"{target}: expected LAB/HOST[:IF]")
    lab, host = find_host(where)
    from ..drivers import Drivers

    drivers = Drivers.live()
    try:
        changed = set_link(lab, host, iface or None, state == "up", drivers)
    finally:
        drivers.close()
    interfaces = ",".join(name.partition(":")[2] for name in changed)
    click.echo(f"{lab}/{host}:{interfaces} {state}" if changed else f"{lab}/{host}: no interface")


def _port_and_proto(text: str) -> tuple[int, str]:
    number, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in ("tcp", "udp"):
        raise click.UsageError(f"'{text}' is not PORT or PORT/tcp or PORT/udp")
    return int(number), proto


@click.command()
@click.argument("target", metavar="[LAB/]HOST", shell_complete=complete.lab_or_host)
@click.argument("port_spec", required=False, metavar="[PORT[/tcp|/udp]]")
def port(target: str, port_spec: str | None) -> None:
    """Where a host's ports are published on the machine, as `docker port` prints them.

    
    nslab port web/web1         every published port: 80/tcp -> 0.0.0.0:32768
    nslab port web/web1 80      where 80/tcp is published: 0.0.0.0:32768
    nslab port web/web1 53/udp  the same for a UDP port
    A host port `up` picked (publish: ["80"]) is shown as a written one is.
    A host that publishes nothing is said so on stderr (exit 0). Exits 1
    when PORT is not published.
    """
    from ..core.features.firewall.record import docker_port_lines, published_ports
    from ..lab import find_host

    wanted = _port_and_proto(port_spec) if port_spec is not None else None
    lab, host = find_host(target)
    ports = published_ports(lab, host)
    if wanted is None:
        if not ports:
            click.echo(f"nslab: {lab}/{host} publishes no port (publish: in the lab file)", err=True)
        for p in ports:
            for line in docker_port_lines(p):
                click.echo(line)
        return
    matching = [p for p in ports if (p.port, p.proto) == wanted]
    if not matching:
        raise NslabError(f"no public port '{wanted[0]}/{wanted[1]}' published for {lab}/{host}")
    for p in matching:
        for line in docker_port_lines(p, with_port=False):
            click.echo(line)


@click.command(name="test")
@click.argument("lab_name", required=False, metavar="[LAB]", shell_complete=complete.labs)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Take the lab name from this file.",
              shell_complete=complete.lab_files)
@click.option("--junit", metavar="FILE", default=None, help="Also write the cases as JUnit XML to FILE.")
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
              help="Seconds a probe of the matrix waits for its answer.")
def test_lab(lab_name: str | None, file: str | None, junit: str | None, timeout: float) -> None:
    """Run the lab file as a test on the lab that is up.

    
    Cases: every cell of `nslab check` ("check A->B"), the cells of each
    expect: entry with a port ("check A->B:PORT"), then the lab file's tests:
    (exec: a command inside a host; http: a GET from inside a host). Prints
    "PASS NAME" or "FAIL NAME: why" per case and "N passed, M failed".
    Exit 0 when every case passes, 1 when any fails, 2 when the lab is not up.
    """
    from ..linux import require_root
    from ..tools import labtest
    from .labs import which_lab

    require_root("test probes and runs commands inside the hosts' namespaces")
    name = which_lab(lab_name, file)

    def report(case: labtest.Case) -> None:
        click.echo(f"PASS {case.name}" if case.ok else f"FAIL {case.name}: {case.why}")

    cases = labtest.run(name, timeout, report)
    failed = sum(not c.ok for c in cases)
    click.echo(f"{len(cases) - failed} passed, {failed} failed")
    if junit:
        labtest.junit(name, cases, junit)
    if failed:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(check)
    group.add_command(test_lab)
    group.add_command(link)
    group.add_command(port)

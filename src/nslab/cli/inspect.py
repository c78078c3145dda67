"""Verbs that look and explain: ``doctor``, ``graph``, ``browse``. Nothing here changes a lab."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..tools.doctor import Finding


@click.command()
@click.argument("what", metavar="[TARGET|LAB]", required=False)
@click.option("--to", "to", metavar="ADDR[:PORT]",
              help="Also check the route to ADDR and probe it (ICMP; :PORT TCP, :PORT/udp UDP; [ADDR6]:PORT).")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default=None,
              help="text (table, the default), json or yaml.")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json.")
def doctor(what: str | None, to: str | None, output: str | None, as_json: bool) -> None:
    """Find why a namespace or lab cannot reach what it should, and print the fixes as commands.

    \b
    TARGET: anything `nslab exec` takes ([LAB/]HOST, netns:NAME, pid:PID,
    container:NAME, path:FILE); LAB: every host of that lab. Default: every
    lab that is up, every named namespace, and the machine.
    Checks: lo down, interfaces down or without carrier, missing routes,
    a gateway that does not answer ARP, ip_forward, foreign forward-hook
    drop policies (Docker, ufw, firewalld), masquerade of NAT networks,
    loopback stub resolvers that do not exist in the namespace, silent
    nameservers, strict rp_filter, MTU mismatches, subnets overlapping the
    machine's routes, leftovers for `nslab gc`, and the cells of `nslab
    check` that disagree with the lab's reachability model (lab hosts are
    judged by that model: their default route, forwarding, MTUs).
    Read-only: the only packets sent are one ARP request per gateway, one
    DNS query per nameserver the namespace's resolv.conf names, check's
    probes and the --to probe.
    Exit status: 0 healthy, 1 problems found.
    """
    from ..core.state import changing_labs
    from ..linux import require_root
    from ..tools.doctor import diagnose, report
    from .fast import print_doc as _print_doc
    from .labs import _output

    output = _output(output, as_json, False)
    require_root("doctor looks inside the hosts' namespaces")
    busy = changing_labs(what)
    findings = [] if what in busy else [f for f in diagnose(what, to) if not _about(f, busy)]
    structured = output in ("json", "yaml")
    for text in [] if structured else busy.values():
        click.echo(text)
    if structured:
        _print_doc({**report(findings), **({"changing": list(busy.values())} if busy else {})}, output)
    elif not findings:
        click.echo("healthy: no problem found")
    for f in [] if structured else findings:
        click.echo(f"{f.where}: {f.problem}")
        click.echo(f"    why: {f.why}")
        for command in f.fix:
            click.echo(f"    fix: {command}")
    sys.exit(1 if findings else 0)


def _about(finding: Finding, labs: dict[str, str]) -> bool:
    """Whether a doctor finding is about one of ``labs`` (being changed: what it found there is half made)."""
    where = finding.where
    return any(where in (lab, f"lab {lab}") or where.startswith((f"{lab}/", f"netns {lab}-")) for lab in labs)


@click.command()
@click.argument("lab", required=False)
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg", "html"]), default="mermaid",
              show_default=True, help="Output format (svg and html need no other tool).")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--serve", is_flag=True, help="Serve the live html page (state refreshed every 2 s) until Ctrl-C.")
@click.option("--port", default=8642, show_default=True, help="Port for --serve.")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address for --serve.")
def graph(lab: str | None, fmt: str, output: str | None, serve: bool, port: int, bind: str) -> None:
    """Draw the topology of a lab (default: every lab that is up).

    \b
    Hosts, networks (subnet, nat/internal), point-to-point links, published
    ports, and state from `nslab status`: interfaces that are down or hosts
    that are missing are drawn in red, impairments label their interface's
    edge, partitions are dashed red lines between their two sides.
    """
    from ..linux import require_root
    from ..tools import graph as g

    require_root("graph reads the labs' state in /run/nslab, readable by root only, and looks inside their namespaces")
    from ..core.state import changing_labs

    for text in changing_labs(lab).values():  # (drawn as the kernel shows it now, half made)
        click.echo(text, err=True)
    if serve:
        g.serve(lab, bind, port, lambda url: click.echo(f"serving the live graph on {url} (Ctrl-C stops)", err=True))
        return
    text = g.render(g.load(lab), fmt)
    if output:
        with open(output, "w") as f:
            f.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@click.command()
@click.argument("target", metavar="TARGET")
@click.argument("url")
@click.option("--screenshot", metavar="FILE.png", help="Save a PNG of the page.")
@click.option("--wait", default=3.0, show_default=True, metavar="S",
              help="Seconds to let the page load (and its requests settle) after navigating.")
@click.option("--json", "as_json", is_flag=True, help="Print the page and its requests as JSON.")
@click.option("--mount-from", metavar="TARGET2", help="Run the browser from TARGET2's filesystem (it needs one).")
def browse(target: str, url: str, screenshot: str | None, wait: float, as_json: bool, mount_from: str | None) -> None:
    """Open URL in a headless Chromium inside TARGET's network namespace.

    \b
    Lists every request the page made and its outcome: loaded (HTTP status)
    or failed, and why (DNS, refused, timeout...), so you see which external
    CSS, scripts, fonts or trackers an app tries to reach. Uses the
    distribution's chromium package (./dev/setup.sh installs it); the browser
    runs with /etc/netns/NAME files as `nslab exec` does, a throwaway profile,
    and nothing of it is left running.
    Exit status: 0 when the page itself loaded, 1 when it did not.
    """
    from ..linux import require_root
    from ..tools.browse import browse as run_browser

    require_root("browse runs a browser inside a namespace")
    result = run_browser(target, url, screenshot=screenshot, wait=wait, mount_from=mount_from)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        if screenshot:
            click.echo(f"wrote {screenshot}", err=True)
    else:
        click.echo(f"page {result['url']}: {result['outcome']}")
        for r in result["requests"]:
            click.echo(f"  {r['outcome']:<8} {r['type'] or '-':<11} {r['url']}"
                       + (f"  ({r['reason']})" if r.get("reason") else ""))
        if screenshot:
            click.echo(f"wrote {screenshot}")
    sys.exit(0 if result["outcome"] == "loaded" else 1)


def register(group: click.Group) -> None:
    group.add_command(doctor)
    group.add_command(graph)
    group.add_command(browse)

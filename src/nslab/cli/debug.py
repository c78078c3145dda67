"""Verbs that show and explain traffic: ``capture`` (packets of any namespace) and ``trace`` (why A cannot
reach B). The work is in :mod:`nslab.tools.capture` and :mod:`nslab.tools.trace`, imported inside the commands."""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

import click

from ..errors import TargetError, UserError


def split_words(words: tuple[str, ...]) -> tuple[list[str], str, str]:
    """``TARGET[:IF]... [--] [FILTER...]`` -> (targets, filter, why the first filter word is no target).

    The first word is always a target; later words are targets while they resolve as one (or carry a
    target kind such as ``netns:``); the first word that is no target starts the filter (tcpdump syntax).
    """
    from ..ns.targets import KINDS, resolve
    from ..tools.capture import split_spec

    targets: list[str] = []
    rest = list(words)
    while rest:
        word = rest[0]
        if word == "--":
            rest.pop(0)
            break
        if targets and word.partition(":")[0] not in KINDS:
            try:
                resolve(split_spec(word)[0])
            except (TargetError, UserError) as exc:
                return targets, " ".join(rest), str(exc)
        targets.append(rest.pop(0))
    return targets, " ".join(rest), ""


def _capture_sink(write: str | None) -> tuple[Any, BinaryIO | None]:
    from ..tools import capture
    from ..tools.capture import pcapng

    if write is None:
        return capture.line_sink(lambda text: click.echo(text)), None
    stream: BinaryIO = sys.stdout.buffer if write == "-" else open(write, "wb")  # closed by the caller
    return capture.pcapng_sink(pcapng.Writer(stream, flush=write == "-")), stream


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("-w", "--write", "write", metavar="FILE|-", help="Write pcapng to FILE ('-': stream to stdout, "
              "e.g. | wireshark -k -i -) instead of one line per packet.")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after COUNT packets.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Stop after S seconds.")
@click.argument("words", nargs=-1, required=True, metavar="TARGET[:IF] [TARGET[:IF]...] [FILTER]")
def capture(words: tuple[str, ...], write: str | None, count: int | None, duration: float | None) -> None:
    """Capture packets inside one or more namespaces, with no tool in them.

    \b
    TARGET is anything `exec` accepts (HOST, LAB/HOST, netns:NAME, pid:PID,
    container:NAME, path:FILE); :IF picks one interface (default: every
    interface but lo; `any`: all of them, lo too). FILTER is a tcpdump
    expression (`icmp`, `tcp port 80 and host 10.0.0.2`), compiled by libpcap
    and run by the kernel. Several targets go into one pcapng, one interface
    per TARGET:IF (named like lab/web1:eth0). Stops at Ctrl-C, COUNT or S;
    reports packets the kernel dropped on stderr.

    \b
      nslab capture web1 icmp
      nslab capture lab/web1:eth0 container:app -c 100 -w out.pcapng
      nslab capture web1 -w - | wireshark -k -i -
    """
    from ..linux import require_root
    from ..tools import capture as cap

    require_root("capture opens packet sockets inside namespaces")
    texts, expression, not_target = split_words(words)
    specs = cap.resolve_specs(texts)
    try:
        sources = cap.open_sources(specs, expression)
    except UserError as exc:
        if not_target and str(exc).startswith("filter "):
            raise UserError(f"{exc} ('{expression.split()[0]}' is not a target either: {not_target})") from None
        raise
    sink, stream = _capture_sink(write)
    names = sorted({cap.where(s.target, s.sock.ifname or cap.ANY) for s in sources})
    click.echo(f"nslab: capturing on {', '.join(names)}" + (f" ({expression})" if expression else ""), err=True)
    try:
        result = cap.run(sources, sink, count or 0, duration or 0.0)
    finally:
        if stream is not None and stream is not sys.stdout.buffer:
            stream.close()
    dropped = f"{result.drops} dropped by the kernel"
    click.echo(f"nslab: {result.packets} packets captured, {dropped}", err=True)
    if write not in (None, "-"):
        click.echo(f"wrote {write}")


@click.command()
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST[:PORT][/udp]")
@click.option("--raw", is_flag=True, help="Also print the nft trace events as nft printed them.")
@click.option("-6", "--ipv6", "ipv6", is_flag=True, help="A DST given by name: trace to its IPv6 address.")
def trace(source: str, destination: str, raw: bool, ipv6: bool) -> None:
    """Explain why SRC can (not) reach DST: the route, each netfilter step, the rule that drops or rewrites.

    \b
    SRC: a lab host or any target (netns:, pid:, container:...), or an address
    of a lab host or of the machine. DST: the same or an address; with :PORT
    the probe is a TCP SYN (/udp: a UDP datagram), without it an ICMP echo.
    An IPv6 DST is traced over IPv6 ([ADDR]:PORT with a port; -6 for a name).
    nft tracing is switched on for exactly that flow in a throwaway table
    (inet nslab-trace-PID), removed afterwards. Exit 0 when DST answered
    (a refused connection counts), 1 when it did not.

    \b
      nslab trace client web1:8080
      nslab trace netns:wan 198.51.100.2:6000
    """
    from ..linux import require_root
    from ..tools import trace as tr

    require_root("trace sends a probe from inside a namespace and reads nft traces")
    result = tr.trace(source, destination, ipv6)
    path = result.route
    if "error" in path:
        click.echo(f"route: {path['error']}")
    else:
        via = f" via {path['gateway']}" if path.get("gateway") else ""
        click.echo(f"route: {result.destination}{via} dev {path.get('dev')} src {path.get('prefsrc', '?')}")
    if result.flow is not None:
        click.echo(f"probe: {result.flow.describe()}: {result.outcome}")
    for line in tr.render(result.explanations, result.hooks):
        click.echo(line)
    if raw:
        for line in result.raw:
            click.echo(f"  | {line}")
    click.echo(f"verdict: {result.verdict}")
    sys.exit(0 if result.reached else 1)


def register(group: click.Group) -> None:
    group.add_command(capture)
    group.add_command(trace)

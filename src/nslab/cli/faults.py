"""Fault verbs: ``impair`` (loss, rate, delay, jitter on a host's interface), ``partition`` and ``heal``.

They change a lab that is up, through :mod:`nslab.core.faults`; what they set is kept in the lab's state (``status``
lists it, ``down`` removes it). See features/impair.py and features/partitions.py for how.
"""

from __future__ import annotations

import click


def _lab_and(text: str) -> tuple[str, str]:
    """``LAB/NAME`` or ``NAME`` -> (lab, name); without LAB/, the lab is found as every command finds it
    (the lab file here, else the only lab that is up: core/which.py)."""
    from ..core.which import which_lab

    lab, _, name = text.rpartition("/")
    return which_lab(lab or None), name


def _one_lab(name: str | None) -> str:
    """``name``, else the lab found as every command finds it (the lab file here, the only lab that is up)."""
    from ..core.which import which_lab

    return which_lab(name)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("target", metavar="[LAB/]HOST[:IF]")
    @click.option("--loss", metavar="PCT", help="Drop this share of packets (30 or 30%).")
    @click.option("--rate", metavar="RATE", help="Cap the rate (10mbit, 500kbit, 1gbit).")
    @click.option("--delay", metavar="MS", help="Hold each packet this long (50 or 50ms; per direction).")
    @click.option("--jitter", metavar="MS", help="Vary the delay by up to this much, either way.")
    @click.option("--reorder", metavar="PCT", help="Send this share at once, ahead of the delayed (needs --delay).")
    @click.option("--duplicate", metavar="PCT", help="Send this share twice (needs netem in the kernel).")
    @click.option("--corrupt", metavar="PCT", help="Flip a bit in this share (needs netem in the kernel).")
    @click.option("--out", "direction", flag_value="out",
                  help="What the host sends through IF (the default for amounts; as netem impairs egress).")
    @click.option("--in", "direction", flag_value="in",
                  help="Every packet that arrives at IF, replies to the host's own traffic included.")
    @click.option("--both", "direction", flag_value="both",
                  help="Both directions, each by the full amount (a round trip meets the delay twice).")
    @click.option("--for", "duration", metavar="DURATION", help="Clear what this sets after 500ms, 30s, 2m...")
    @click.option("--clear", is_flag=False, flag_value="all", default=None, metavar="[KINDS]",
                  help="Remove every impairment of IF (every interface without :IF), or only KINDS (delay,loss).")
    def impair(target: str, direction: str | None, duration: str | None, clear: str | None, **amounts: str) -> None:
        """Impair a host's interface (IF defaults to its first, eth0) while the lab is up.

        \b
        Impairments add up: each run changes only the kinds it names (and
        the directions it names), what the interface already suffers stays.
        Works without netem: loss with nft, rate with tbf on each veth end,
        delay/jitter/reorder with netem where the kernel has it, else nslab's
        NFQUEUE delayer. `status` lists impairments; `down` removes them.
        Examples:
          nslab impair demo/web1 --loss 30%
          nslab impair demo/web1 --delay 40ms --in      # its own pings: +40 ms
          nslab impair demo/web1 --delay 50ms --jitter 5ms --both --for 2m
          nslab impair demo/web1 --clear delay,loss
          nslab impair demo/web1 --clear
        """
        from ..core import faults

        spot, _, iface = target.partition(":")
        lab, host = _lab_and(spot)
        given = {k: v for k, v in amounts.items() if v is not None}
        if clear is not None and given:
            raise click.UsageError("--clear takes no amounts (--loss, --delay, ...)")
        click.echo(faults.impair(lab, host, iface or None, None, clear=clear or False, direction=direction,
                                 duration=duration, **given))

    @cli.command()
    @click.argument("a", metavar="[LAB/]A")
    @click.argument("b", metavar="B")
    @click.option("--oneway", is_flag=True, help="Drop only what A sends to B; B's packets still reach A.")
    def partition(a: str, b: str, oneway: bool) -> None:
        """Cut A from B (hosts or networks of one lab), both ways, established connections included.

        \b
        nslab partition demo/web1 db        # two hosts
        nslab partition demo/front back     # two networks (every host on them)
        nslab partition demo/web1 db --oneway   # web1 -> db dropped, db -> web1 not
        `nslab heal` undoes it; `status` lists partitions.
        """
        from ..core import faults

        lab, name_a = _lab_and(a)
        click.echo(faults.partition(lab, name_a, b.rpartition("/")[2], oneway=oneway))

    @cli.command()
    @click.argument("a", metavar="[LAB | [LAB/]A B]", required=False)
    @click.argument("b", metavar="", required=False)
    def heal(a: str | None, b: str | None) -> None:
        """Remove the partition between A and B, or every partition of LAB.

        \b
        nslab heal demo/web1 db
        nslab heal demo
        nslab heal              # every partition of the only lab that is up
        """
        from ..core import faults

        if b is None:
            click.echo(faults.heal(_one_lab(a.rstrip("/") if a else None)))
        else:
            assert a is not None
            lab, name_a = _lab_and(a)
            click.echo(faults.heal(lab, name_a, b.rpartition("/")[2]))

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


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("target", metavar="LAB/HOST[:IF]")
    @click.option("--loss", metavar="PCT", help="Drop this share of packets (30 or 30%).")
    @click.option("--rate", metavar="RATE", help="Cap the rate (10mbit, 500kbit, 1gbit).")
    @click.option("--delay", metavar="MS", help="Hold each packet this long (50 or 50ms; per direction).")
    @click.option("--jitter", metavar="MS", help="Vary the delay by up to this much, either way.")
    @click.option("--out", "direction", flag_value="out", default=True,
                  help="What the host sends through IF (default; as netem impairs an interface's egress).")
    @click.option("--in", "direction", flag_value="in", help="What the host receives on IF.")
    @click.option("--both", "direction", flag_value="both",
                  help="Both directions, each by the full amount (a round trip meets the delay twice).")
    @click.option("--clear", is_flag=True, help="Remove the impairment of IF (of every interface without :IF).")
    def impair(target: str, loss: str | None, rate: str | None, delay: str | None, jitter: str | None,
               direction: str, clear: bool) -> None:
        """Impair a host's interface (IF defaults to its first, eth0) while the lab is up.

        \b
        Works without netem: loss with nft, rate with tbf on each veth end,
        delay/jitter with netem where the kernel has it, else nslab's NFQUEUE
        delayer. `status` lists impairments; `down` removes them.
        Examples:
          nslab impair demo/web1 --loss 30%
          nslab impair demo/web1:eth0 --rate 10mbit --out
          nslab impair demo/web1 --delay 50ms --jitter 5ms
          nslab impair demo/web1 --clear
        """
        from ..core import faults

        spot, _, iface = target.partition(":")
        lab, host = _lab_and(spot)
        if clear and any(v is not None for v in (loss, rate, delay, jitter)):
            raise click.UsageError("--clear takes no --loss/--rate/--delay/--jitter")
        faults.impair(lab, host, iface or None, clear=clear, loss=loss, rate=rate, delay=delay, jitter=jitter,
                      direction=direction)

    @cli.command()
    @click.argument("a", metavar="LAB/A")
    @click.argument("b", metavar="B")
    def partition(a: str, b: str) -> None:
        """Cut A from B (hosts or networks of one lab), both ways, established connections included.

        \b
        nslab partition demo/web1 db        # two hosts
        nslab partition demo/front back     # two networks (every host on them)
        `nslab heal` undoes it; `status` lists partitions.
        """
        from ..core import faults

        lab, name_a = _lab_and(a)
        faults.partition(lab, name_a, b.rpartition("/")[2])

    @cli.command()
    @click.argument("a", metavar="LAB[/A]")
    @click.argument("b", metavar="[B]", required=False)
    def heal(a: str, b: str | None) -> None:
        """Remove the partition between A and B, or every partition of LAB.

        \b
        nslab heal demo/web1 db
        nslab heal demo
        """
        from ..core import faults

        if b is None:
            faults.heal(a.rstrip("/"))
        else:
            lab, name_a = _lab_and(a)
            faults.heal(lab, name_a, b.rpartition("/")[2])

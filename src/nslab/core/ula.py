"""The machine's IPv6 unique local range (RFC 4193): one random /48, picked the first time a lab asks for
IPv6 without a ``subnet6`` and kept in ``/run/nslab/.ula6``, so every lab on the machine carves its automatic
/64s from the same range and the next ``up`` finds the same addresses.

Owns that file only (read, or picked and written atomically under the machine lock). Replaces choosing an
``fdXX:XXXX:XXXX::/48`` by hand.
"""

from __future__ import annotations

import ipaddress
import os

from ..paths import state_root, ula_file


def _pick() -> ipaddress.IPv6Network:
    """``fd`` + a 40-bit random global ID, as RFC 4193 3.2 asks (collisions with other sites unlikely)."""
    global_id = int.from_bytes(os.urandom(5), "big")
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48))


def machine_ula(create: bool = True) -> ipaddress.IPv6Network | None:
    """The machine's ULA /48; picked and kept on first use when ``create`` (else None if none was kept)."""
    from ..drivers import files

    text = files.read_text(ula_file())
    if text:
        try:
            kept = ipaddress.IPv6Network(text.strip())
            if kept.prefixlen == 48 and kept.subnet_of(ipaddress.IPv6Network("fd00::/8")):
                return kept
        except ValueError:
            pass  # damaged: pick again (no lab can be up on a range nobody can read back)
    if not create:
        return None
    chosen = _pick()
    files.private_dir(state_root())
    files.write_atomic(ula_file(), f"{chosen}\n")
    return chosen

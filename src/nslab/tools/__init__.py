"""Seeing and testing a lab that is up: check, trace, capture, doctor, graph, browse, and ``run``/``gc``.

Layer 6: tools read labs through the core below them (``core.lifecycle``, ``core.load``, ``core.status``),
never through nslab.lab (the public API, above them) and never a feature's record directly.
"""


def is_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address (a destination given by address, not by host name)."""
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

"""Seeing and testing a lab that is up: check, trace, capture, doctor, graph, browse, and ``run``/``gc``.

Layer 6: tools read labs through the core below them (``core.lifecycle``, ``core.load``, ``core.status``),
never through nslab.lab (the public API, above them) and never a feature's record directly.
"""

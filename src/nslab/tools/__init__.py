"""Seeing and testing a lab that is up: check, trace, capture, doctor, graph, browse, and ``run``/``gc``.

Layer 5: tools read labs through the API below them (``nslab.lab`` and ``core.status``), never a feature's
record directly.
"""

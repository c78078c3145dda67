"""Processes nslab leaves running while a lab is up, each started as ``python -m nslab.daemons.NAME``:
the per-lab supervisor (services, the DNS forwarder, the ``[::1]`` relay) and the packet delayer.

Layer 4: above ``ns/`` (the supervisor starts services inside hosts); nothing below imports them.
"""

"""The pipeline every change takes: lab file -> spec -> resolve -> plan -> apply -> state.

Layer 2 (above the foundation modules and ``drivers/``, below ``ns/``, ``daemons/``, the API, ``tools/`` and
``cli/``): nothing here enters a namespace by hand or prints; the kernel is reached through the drivers only.
"""

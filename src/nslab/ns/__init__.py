"""Any network namespace on the machine: naming one (targets), entering it (nsenter), listing them all (discover).

Layer 3: above ``core/`` (a ``LAB/HOST`` target is found through the lab's recorded state).
"""

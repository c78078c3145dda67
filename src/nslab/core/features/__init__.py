"""What a lab does beyond wiring, each feature a planner (see plan.py):

==============  ==============================================================  =================
feature         owns                                                            status --json key
==============  ==============================================================  =================
dns             /etc/netns/<ns>/{hosts,resolv.conf}; upstream discovery         hostsetup
containers      Docker containers as hosts (image:), ``nslab connect``           containers
hostnames       one kept UTS namespace per host (its hostname)                  hostsetup
links           interfaces put down on purpose (`nslab link`)                   link_state
hoststate       hosts stopped (`nslab stop`) or not started (`up --only`)       host_state
external        a machine's interface on a network's bridge (``external:``),    external
                what it had kept in the lab's directory and given back
macvlan         hosts' macvlan interfaces on the machine's interfaces           macvlan
firewall        the ``inet nslab`` table, ip_forward, route_localnet, hairpin   firewall
services        the lab's supervisor: ``run:`` commands and the DNS forwarder   hostsetup
partitions      ``table inet nslab-partition`` inside the hosts of each side    faults
impair          loss/rate/delay per host interface: nft + tbf in the hosts,     faults
                NFQUEUE rules and the lab's packet delayer
==============  ==============================================================  =================

Each feature module provides:

- ``KEY``: where its record lives in the lab's state, and ``STATUS_KEY``: its part of ``status --json``;
- ``resolve(...)`` (most): its part of the lab file (schema in core/spec.py) as the typed values of the model
  (``Host.services``, ``Host.dns``, ``Host.publish``, ``Host.impair``, ``Host.container``, ``Lab.partitions``),
  called by core/resolve.py, with the problems of what is written (file:line, field path) reported on the way;
  after resolve nothing reads the lab file;
- ``validate(ctx)`` (optional): problems with the resolved lab against the rest of it and the machine
  (file:line, field path from the source lines), before any change; it runs on a kept lab too;
- ``plan_up(ctx) -> FeaturePlan``: actions before the wiring, actions after it, and the record it will keep;
- ``plan_down(ctx) -> FeaturePlan``: the same for teardown (``before`` runs while namespaces exist);
- ``status(lab, record, drivers)``: its part of the status document;
- optionally ``drift(lab, record, drivers) -> list[difference.Difference]``: what of its part differs on the machine
  from its record (dns: a host's ``/etc/netns`` file missing or changed; containers: a container host's container
  not running; hostnames: a hostname changed or its pin gone; firewall: its table, chains or the lab's rules in
  them changed, forwarding or route_localnet off; services: the supervisor not running, a service outside its
  host). drift.py collects them after the wiring's, in :data:`FEATURES` order; ``status`` prints them and the next
  ``up``'s ``plan_up`` repairs them (it observes what its drift observes).

``up`` runs every feature's ``before`` actions (in :data:`FEATURES` order), the wiring, then every ``after``
(same order); ``down`` runs ``before`` in reverse order, the wiring's removal, then ``after``. To add a
feature: write the module, give it a typed record, add it to :data:`FEATURES`, test its plan with the fakes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ...values import Value, field

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...errors import Problem, SourceLines
    from ...model import Lab
    from ..plan import Action
    from ..state import LabState

#: ``up`` order.
FEATURES = ("dns", "containers", "hostnames", "links", "hoststate", "external", "macvlan", "firewall", "services",
            "partitions", "impair")


#: How a feature's ``resolve`` reports a problem with what is written: ``report(field path, message)``.
Report = Callable[[tuple[Any, ...], str], None]


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in FEATURES]


def validate(ctx: ValidateContext) -> list[Problem]:
    """The problems every feature finds with the resolved lab (features without ``validate`` find none)."""
    return [p for module in modules() if hasattr(module, "validate") for p in module.validate(ctx)]


class ValidateContext(Value):
    lab: Lab  # resolved (read the full way, or kept)
    source: SourceLines  # where each field was written
    file: str
    others: list[LabState]
    drivers: Drivers | None  # None: validate without looking at the machine


class UpContext(Value):
    """What a feature plans ``up`` from: the desired lab, what was recorded, what the wiring does."""

    lab: Lab
    recorded: Lab | None
    record: Any  # this feature's record as kept in the state (JSON), None for a new lab
    others: list[LabState]  # the other labs that are up
    recreated: frozenset[str]  # hosts whose namespace the wiring (re)creates in this run
    new_bridges: frozenset[str]  # bridges the wiring (re)creates in this run
    drivers: Drivers
    stopped: frozenset[str] = frozenset()  # hosts stopped on purpose (`nslab stop`, features/hoststate.py)
    not_started: frozenset[str] = frozenset()  # hosts of the file left out of this run (`up --only/--profile`)


class DownContext(Value):
    name: str
    lab: Lab | None  # as recorded (None when only ownership marks are left)
    record: Any
    others: list[LabState]
    namespaces: list[str]  # the namespaces about to go
    drivers: Drivers


class FeaturePlan(Value):
    before: list[Action] = field(default_factory=list)
    after: list[Action] = field(default_factory=list)
    record: Any = None  # JSON-able; the state keeps it under the feature's KEY

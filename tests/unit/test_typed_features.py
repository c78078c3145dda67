"""Each feature resolves its part of the lab file into typed values of the model; after resolve nothing reads the
file, the state keeps those values (and reads records written without them), and a change of what a feature
asks of a host does not make the host again."""

from __future__ import annotations

import pytest

from nslab.core import spec, state
from nslab.core.resolve import resolve
from nslab.core.wiring import AddHosts
from nslab.drivers.fake import fake_drivers
from nslab.errors import ResolveError
from nslab.lab import Lab
from nslab.model import Dns, Impairment, Publish, Service

LAB = """\
name: typed
dns: [192.0.2.53]
dns_search: [lab.example]
networks:
  n: {}
hosts:
  web:
    networks: [n]
    run: [exec sleep 100, exec sleep 200]
    restart: always
    publish: ["8080:80"]
    impair: {eth0: {loss: 5%, delay: 20ms, direction: both}}
    dns_search: [web.example]
  db:
    networks: [n]
    dns: [192.0.2.54]
  box:
    networks: [n]
    image: busybox
    command: sleep 1000
partitions:
  - [web, db]
"""


def _resolved(text: str = LAB):
    lab_spec, source = spec.parse(text, "lab.yaml")
    return resolve(lab_spec, source, "lab.yaml")


def test_every_feature_resolves_into_the_model():
    lab = _resolved()
    web, db, box = lab.hosts["web"], lab.hosts["db"], lab.hosts["box"]
    assert web.services == (Service("exec sleep 100", "always"), Service("exec sleep 200", "always"))
    assert web.publish == (Publish("8080:80", ("hosts", "web", "publish", 0)),)
    assert web.impair == (Impairment("eth0", loss=5.0, delay=20.0, direction="both"),)
    # a host's own dns:/dns_search: over the lab's, each on its own
    assert web.dns == Dns(("192.0.2.53",), ("web.example",))
    assert db.dns == Dns(("192.0.2.54",), ("lab.example",))
    assert box.container is not None and box.container.command == ("sleep", "1000") and box.services == ()
    assert lab.partitions == (("web", "db"),)


def test_the_state_keeps_the_typed_values_and_reads_records_without_them():
    lab = _resolved()
    assert state.lab_from_dict(state.lab_to_dict(lab)) == lab
    old = state.lab_to_dict(lab)  # as the release before typed features wrote it
    for host in old["hosts"].values():
        for key in ("services", "dns", "publish", "impair"):
            host.pop(key, None)
    old.pop("partitions")
    before = state.lab_from_dict(old)
    assert before.hosts["web"].services == () and before.hosts["web"].dns == Dns() and before.partitions == ()
    assert not any(before.hosts[n].wiring_differs(h) for n, h in lab.hosts.items())


@pytest.mark.parametrize(("old", "new", "message", "field"), [
    ("run: [exec sleep 100, exec sleep 200]", "run: [exec sleep 100, '  ']", "an empty command", "hosts.web.run[1]"),
    ("dns_search: [web.example]", "dns_search: [-bad-]", "'-bad-' is not a domain name", "hosts.web.dns_search[0]"),
    ("    command: sleep 1000", "    command: sleep 1000\n    run: echo", "use command:, not run:", "hosts.box.run"),
])
def test_problems_of_what_is_written_keep_their_line_and_field(old, new, message, field):
    text = LAB.replace(old, new)
    with pytest.raises(ResolveError) as raised:
        _resolved(text)
    (problem,) = raised.value.problems
    assert message in problem.message and problem.field == field and problem.file == "lab.yaml"
    written = new.splitlines()[-1].strip()
    assert problem.line == [line.strip() for line in text.splitlines()].index(written) + 1


def test_a_changed_service_restarts_it_without_making_its_host_again():
    drivers = fake_drivers()
    text = LAB.replace("    image: busybox\n    command: sleep 1000\n", "")
    Lab.from_text(text, drivers=drivers).up()
    result = Lab.from_text(text.replace("exec sleep 200", "exec sleep 300"), drivers=drivers).up()
    assert result.applied and not result.plan.of_type(AddHosts)
    changes = result.changes()
    assert not any(line.startswith("changed host") for line in changes)
    assert any("web.2" in line for line in changes)

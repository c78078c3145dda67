"""Issue 13's corpus of bad inputs: every one exits 2 with one line per problem (file:line and field), all the
problems of a file in one run, no traceback, and nothing changed on the (fake) machine."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

from nslab import Lab
from nslab.cli.app import main
from nslab.drivers.fake import fake_drivers
from nslab.errors import UserError

HEAD = "name: bad\nnetworks:\n  lan: {subnet: 10.70.0.0/24}\n  dmz: {}\nhosts:\n"

Entry = tuple[str, list[tuple[int, str]]]


def one_problem(line: int, field: str, texts: Iterable[str]) -> list[Entry]:
    """A corpus entry per text, each with its one problem on ``line`` in ``field``."""
    return [(text, [(line, field)]) for text in texts]


def lan(*bodies: str) -> list[str]:
    """Lab files whose one network ``lan`` (line 3) has each flow-mapping body."""
    return [f"name: bad\nnetworks:\n  lan: {{{body}}}\n" for body in bodies]


def linked(link: str) -> str:
    """A lab file of hosts a and b whose one link (line 4) is ``link``."""
    return f"name: bad\nhosts: {{a: {{}}, b: {{}}}}\nlinks:\n  - {link}\n"


# (lab file, [(line, field) of each expected problem]) -- the field may be "" for whole-file problems
FILES: list[Entry] = [
    ("name: Bad\n", [(1, "name")]),
    ("name: waytoolonglabname\n", [(1, "name")]),
    ("name: 3abc\n", [(1, "name")]),
    ("name: ok\ncolour: red\n", [(2, "colour")]),
    ("networks: {}\n", [(1, "name")]),
    (HEAD + "  a: {networks: [nowhere]}\n", [(6, "hosts.a.networks.nowhere")]),
    *one_problem(6, "hosts.a.networks.lan", (HEAD + f"  a: {{networks: {{lan: {address}}}}}\n"
                                             for address in ("10.70.1.5", "10.70.0.1", "10.70.0.0", "10.70.0.255",
                                                             "300.1.1.1"))),
    (HEAD + "  a: {networks: {lan: 10.70.0.9}}\n  b: {networks: {lan: 10.70.0.9}}\n", [(7, "hosts.b.networks.lan")]),
    (HEAD + "  a: {networks: [lan, lan]}\n", [(6, "hosts.a.networks")]),
    (HEAD + "  a: {networks: [1, 2]}\n", [(6, "hosts.a.networks")]),
    (HEAD + "  a: {restart: sometimes}\n", [(6, "hosts.a.restart")]),
    (HEAD + "  a: {dns: [notanip]}\n", [(6, "hosts.a.dns")]),
    (HEAD + "  a: {hostname: 'bad host!'}\n", [(6, "hosts.a.hostname")]),
    (HEAD + "  A: {}\n", [(6, "hosts.A")]),
    (HEAD + "  a: {bogus: 1}\n", [(6, "hosts.a.bogus")]),
    (HEAD + "  a: {networks: [lan], publish: ['99999:80']}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {networks: [lan], publish: ['80:0']}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {networks: [lan], publish: [2222:22]}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {networks: [lan], publish: ['abc']}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {networks: [lan], publish: ['80:80/sctp']}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {publish: ['8080:80']}\n", [(6, "hosts.a.publish[0]")]),
    (HEAD + "  a: {networks: [lan], publish: ['8080:80']}\n  b: {networks: [lan], publish: ['8080:80']}\n",
     [(7, "hosts.b.publish[0]")]),
    (HEAD + "  a: {networks: [lan], mtu: 10}\n", [(6, "hosts.a.mtu")]),
    (HEAD + "  a: {networks: [lan], mtu: 70000}\n", [(6, "hosts.a.mtu")]),
    (HEAD + "  a: {networks: {lan: {mac: 'zz:00:00:00:00:01'}}}\n", [(6, "hosts.a.networks.lan.mac")]),
    (HEAD + "  a: {networks: {lan: {mac: '01:00:00:00:00:01'}}}\n", [(6, "hosts.a.networks.lan.mac")]),
    (HEAD + "  a: {networks: {lan: {address: 10.70.0.300}}}\n", [(6, "hosts.a.networks.lan.address")]),
    (HEAD + "  a: {networks: {lan: {colour: red}}}\n", [(6, "hosts.a.networks.lan.colour")]),
    (HEAD + "  a: {networks: [lan], routes: [{to: 10.9.0.0/16, via: 10.99.0.1}]}\n", [(6, "hosts.a.routes[0]")]),
    (HEAD + "  a: {networks: [lan], routes: [{to: 10.9.0.0/16}]}\n", [(6, "hosts.a.routes[0].via")]),
    (HEAD + "  a: {networks: [lan], routes: [{to: 10.9.0.1/16, via: 10.70.0.1}]}\n", [(6, "hosts.a.routes[0].to")]),
    (HEAD + "  a: {networks: [lan], routes: [{to: x, via: 10.70.0.1}]}\n", [(6, "hosts.a.routes[0].to")]),
    (HEAD + "  a: {networks: [lan], default: maybe}\n", [(6, "hosts.a.default")]),
    (HEAD + "  a: {networks: [lan], default: 10.71.0.1}\n", [(6, "hosts.a.default")]),
    (HEAD + "  a: {networks: {lan: 10.70.0.5}, default: 10.70.0.5}\n", [(6, "hosts.a.default")]),
    (HEAD + "  a: {sysctls: {kernel.panic: 1}}\n", [(6, "hosts.a.sysctls")]),
    (HEAD + "  a: {sysctls: {net.ipv4.ip_forward: [1]}}\n", [(6, "hosts.a.sysctls")]),
    (HEAD + "  a: {networks: [lan], sysctls: {net.ipv4.no_such_key: 1}}\n", [(6, "hosts.a.sysctls.net.ipv4.no_such")]),
    (HEAD + "  a:\n    networks: [lan]\n    sysctls:\n      net.ipv4.ip_forward: 1\n"
     "      net.ipv4.conf.eth3.rp_filter: 2\n",
     [(10, "hosts.a.sysctls.net.ipv4.conf.eth3.rp_filter")]),
    (HEAD + "  a: {networks: [lan], sysctls: {net.ipv4.conf.eth0.no_such_key: 1}}\n",  # eth0: looked up as default
     [(6, "hosts.a.sysctls.net.ipv4.conf.eth0.no_such_key")]),
    (HEAD + "  a: {sysctls: {net.core.rmem_max: 1000000}}\n", [(6, "hosts.a.sysctls.net.core.rmem_max")]),
    (HEAD + "  a: {sysctls: {net.ipv4.tcp_available_congestion_control: reno}}\n",
     [(6, "hosts.a.sysctls.net.ipv4.tcp_available_congestion_control")]),
    (HEAD + "  a: {networks: {lan: {mac: '02:00:00:00:00:09'}}}\n  b: {networks: {dmz: {mac: '02:00:00:00:00:09'}}}\n",
     [(7, "hosts.b.networks.dmz.mac")]),
    (HEAD + "  a: {count: 2, networks: {lan: {mac: '02:00:00:00:00:09'}}}\n", [(6, "hosts.a2.networks.lan.mac")]),
    (linked("{endpoints: [a, b], mtu: 10}"), [(4, "links[0].mtu")]),
    (HEAD + "  a: {count: 0}\n", [(6, "hosts.a.count")]),
    (HEAD + "  a: {count: many}\n", [(6, "hosts.a.count")]),
    (HEAD + "  a: {count: 2, networks: {lan: 10.70.0.5}}\n", [(6, "hosts.a2.networks.lan")]),
    (HEAD + "  a: {networks: [lan], run: 5}\n", [(6, "hosts.a.run")]),
    # the last: the machine's own network
    *one_problem(3, "networks.lan.subnet", lan("subnet: 10.70.0.0/33", "subnet: 10.70.0.1/24", "subnet: 10.70.0.0/31",
                                               "subnet: 198.51.100.0/24")),
    ("name: bad\nnetworks:\n  lan: {subnet: 10.70.0.0/24}\n  wan: {subnet: 10.70.0.0/25}\n",
     [(4, "networks.wan.subnet")]),
    (lan("mtu: 20")[0], [(3, "networks.lan.mtu")]),
    (lan("internal: perhaps")[0], [(3, "networks.lan.internal")]),
    ("name: bad\nnetworks:\n  Lan: {}\n", [(3, "networks.Lan")]),
    (linked("[a, ghost]"), [(4, "links[0].endpoints[1]")]),
    *one_problem(4, "links[0].endpoints", map(linked, ["[a, a]", "[a, b, a]"])),
    (linked("{endpoints: [a, b], subnet: 10.1.1.0/32}"), [(4, "links[0].subnet")]),
    (linked("{endpoints: [a, b], colour: red}"), [(4, "links[0].colour")]),
    (linked("{endpoints: [a, b], kind: vxlan}"), [(4, "links[0].kind")]),
    (linked("[a, b]\n  - 5"), [(5, "links[1]")]),
    (linked("{endpoints: [a, b, c]}\n  - [a, ghost]"), [(4, "links[0].endpoints"), (5, "links[1].endpoints[1]")]),
    ("name: bad\ndns: [notanip]\n", [(2, "dns")]),
    ("name: bad\ndns_search: nope\n", [(2, "dns_search")]),
    ("name: ${NSLAB_TEST_SURELY_UNSET}\n", [(1, "")]),
    ("name: bad\nhosts: [a, b]\n", [(2, "hosts")]),
    ("name: bad\nnetworks: [a]\n", [(2, "networks")]),
    ("name: bad\nlinks: {a: b}\n", [(2, "links")]),
    ("name: [bad\n", [(2, "")]),
    ("- just\n- a list\n", [(1, "")]),
    ("", [(1, "")]),
    # several problems in one file: all of them, in file order, in one run
    (HEAD + "  a: {networks: {lan: 10.70.9.9}, dns: [x], restart: never}\n  b: {networks: [ghost]}\n"
     "links:\n  - [a, nobody]\n",
     [(6, "hosts.a.dns"), (6, "hosts.a.restart"), (6, "hosts.a.networks.lan"), (7, "hosts.b.networks.ghost"),
      (9, "links[0].endpoints[1]")]),
]


def _check(text: str, expected: list[tuple[int, str]]) -> None:
    d = fake_drivers()
    d.kernel.machine_networks = lambda: [(__import__("ipaddress").IPv4Network("198.51.100.0/24"), "route on eth0")]
    with pytest.raises(UserError) as err:
        lab = Lab.from_text(text, "lab.yaml", drivers=d, check=True)
        lab.up()
    assert err.value.exit_code == 2
    lines = err.value.lines()
    assert len(lines) == len(expected), lines
    for line, (number, field) in zip(lines, expected, strict=True):
        assert line.startswith(f"lab.yaml:{number}: {field}" if field else f"lab.yaml:{number}: "), (line, field)
    assert not d.kernel.namespaces and not d.kernel.bridges and not d.kernel.veths  # nothing made


@pytest.mark.parametrize(("text", "expected"), FILES, ids=[f"file{i}" for i in range(len(FILES))])
def test_bad_lab_file(text, expected):
    _check(text, expected)


# (lab file, every line of the report): one line per mistake, saying it in words, with the value written
MESSAGES: list[tuple[str, list[str]]] = [
    # a misspelled key: once, with what was meant, and nothing that follows from it
    ("name: bad\nnetwroks:\n  front: {}\nhosts:\n  a: {networks: [front], publish: ['80']}\n",
     ["lab.yaml:2: netwroks: unknown key 'netwroks': did you mean 'networks'?"]),
    (HEAD + "  a: {netwroks: [lan], publish: ['8080:80']}\n",
     ["lab.yaml:6: hosts.a.netwroks: unknown key 'netwroks': did you mean 'networks'?"]),
    (HEAD + "  a: {networks: {lan: {adress: 10.70.0.9}}}\n",
     ["lab.yaml:6: hosts.a.networks.lan.adress: unknown key 'adress': did you mean 'address'?"]),
    (HEAD + "  a: {networks: [lan], netwroks: [dmz]}\n",  # both written: the typo is only reported
     ["lab.yaml:6: hosts.a.netwroks: unknown key 'netwroks': did you mean 'networks'?"]),
    (HEAD + "  a: {count: 3, bogus: 1}\n", ["lab.yaml:6: hosts.a1.bogus: unknown key 'bogus'"]),  # once, not 3 times
    ("name: ok\ncolour: red\n", ["lab.yaml:2: colour: unknown key 'colour'"]),
    ("name: bad\nhosts: {a: {}, b: {}}\nlinks:\n  - {endpoints: [a, b], subnt: 10.9.0.0/30}\n",
     ["lab.yaml:4: links[0].subnt: unknown key 'subnt': did you mean 'subnet'?"]),
    ("name: bad\nhosts: {a: {}, b: {}}\nlinks:\n  - {endpoints: [a, b], mtuu: 1400}\n",  # a key of the kind's own
     ["lab.yaml:4: links[0].mtuu: unknown key 'mtuu': did you mean 'mtu'?"]),
    # the value echoed, the rule in words
    ("name: Bad_Name\n",
     ["lab.yaml:1: name: lab name 'Bad_Name': at most 12 characters of a-z, 0-9 and -, starting with a letter "
      "(it prefixes namespace and interface names)"]),
    (HEAD + "  Web: {}\n",
     ["lab.yaml:6: hosts.Web: host name 'Web': at most 31 characters of a-z, 0-9 and -, starting with a letter"]),
    # a missing prefix called a missing prefix; a subnet written with a host's address
    ("name: bad\nnetworks:\n  lan: {subnet: 10.80.4.0}\n",
     ["lab.yaml:3: networks.lan.subnet: subnet 10.80.4.0 has no prefix length: write it as ADDRESS/PREFIX "
      "(e.g. 10.80.4.0/24)"]),
    ("name: bad\nnetworks:\n  lan: {subnet: 10.80.4.1/24}\n",
     ["lab.yaml:3: networks.lan.subnet: subnet 10.80.4.1/24 has host bits set: the subnet is 10.80.4.0/24"]),
    # no automatic subnet in an error about an address the user wrote
    ("name: bad\nnetworks:\n  lan: {subnet: 10.80.4.0}\nhosts:\n  a: {networks: {lan: 10.80.4.5}}\n",
     ["lab.yaml:3: networks.lan.subnet: subnet 10.80.4.0 has no prefix length: write it as ADDRESS/PREFIX "
      "(e.g. 10.80.4.0/24)"]),
    ("name: bad\nnetworks:\n  lan: {}\nhosts:\n  a: {networks: {lan: 10.80.4.5}}\n",
     ["lab.yaml:5: hosts.a.networks.lan: address 10.80.4.5: network 'lan' has no subnet written; give it one "
      "that holds 10.80.4.5 (networks.lan.subnet)"]),
    (HEAD + "  a: {networks: {lan: 10.70.1.5}}\n",
     ["lab.yaml:6: hosts.a.networks.lan: address 10.70.1.5 is not a host address of 10.70.0.0/24"]),
]


@pytest.mark.parametrize(("text", "expected"), MESSAGES, ids=[f"message{i}" for i in range(len(MESSAGES))])
def test_messages_say_the_mistake_once(text, expected):
    with pytest.raises(UserError) as err:
        Lab.from_text(text, "lab.yaml", drivers=fake_drivers(), check=True)
    assert err.value.lines() == expected


ARGS: list[list[str]] = [
    ["bogus-verb"],
    ["up", "--no-such-option"],
    ["up", "-f", "/nonexistent/lab.yaml"],
    ["down", "a", "-f", "x.yaml"],
    ["status", "a", "-f", "x.yaml"],
    ["exec"],
    ["exec", "--user"],
    ["exec", "-e", "NOEQUALS", "netns:x", "--", "true"],
    ["logs", "-n", "many", "x"],
    ["logs", "--since", "yesterday", "x"],
    ["run", "--network", "bogus", "--", "true"],
    ["run", "-p", "abc", "--", "true"],
    ["exec", "-f", "/nonexistent.yaml", "a", "--", "true"],
]


@pytest.mark.parametrize("argv", ARGS, ids=[" ".join(a) or "empty" for a in ARGS])
def test_bad_arguments_exit_2_one_line_no_traceback(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip(), "a message says what is wrong"


def test_duplicate_mac_names_both_places():
    text = HEAD + ("  a: {networks: {lan: {mac: '02:00:00:00:00:09'}}}\n"
                   "  b: {networks: {dmz: {mac: '02:00:00:00:00:09'}}}\n")
    with pytest.raises(UserError) as err:
        Lab.from_text(text, "lab.yaml", drivers=fake_drivers(), check=True)
    [line] = err.value.lines()
    assert line.startswith("lab.yaml:7: hosts.b.networks.dmz.mac") and "hosts.a.networks.lan.mac (line 6)" in line


def test_corpus_is_big_enough():
    assert len(FILES) + len(ARGS) >= 60


def test_no_state_left_behind():
    assert not os.path.exists("/run/nslab/bad")


def test_the_docs_example_of_messages_is_what_nslab_says():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "lab-file.md").read_text()
    section = doc[doc.index("### Every problem at once"):]
    lab, said = re.findall(r"```text\n(.*?)```", section, flags=re.S)[:2]
    with pytest.raises(UserError) as err:
        Lab.from_text(lab, "shop.yaml", drivers=fake_drivers(), check=True)
    assert [f"nslab: {line}" for line in err.value.lines()] == said.splitlines()

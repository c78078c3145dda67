"""graph rendering from a status document: every format names every host and network; down edges are red."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nslab.tools import graph

SVG = "{http://www.w3.org/2000/svg}"

DOC = {"labs": [{
    "name": "demo",
    "networks": [{"name": "front", "bridge": "nsbr1", "subnet": "10.0.0.0/24", "internal": False, "present": True},
                 {"name": "back", "bridge": "nsbr2", "subnet": "10.0.1.0/24", "internal": True, "present": True}],
    "hosts": [
        {"name": "web", "present": True, "interfaces": [
            {"name": "eth0", "up": True, "addresses": ["10.0.0.2/24"], "network": "front", "link_peer": None}]},
        {"name": "db", "present": True, "interfaces": [
            {"name": "eth0", "up": False, "addresses": ["10.0.1.2/24"], "network": "back", "link_peer": None},
            {"name": "p0", "up": True, "addresses": ["10.9.0.1/30"], "network": None, "link_peer": "web"}]},
    ],
    "firewall": {"ports": [{"host": "web", "host_port": 8080, "to": "10.0.0.2:80", "proto": "tcp"}]},
}]}


def test_model_edges_and_ports():
    [g] = graph.graphs(DOC)
    assert [(e.host, e.ifname, e.network, e.peer, e.up) for e in g.edges] == [
        ("web", "eth0", "front", None, True), ("db", "eth0", "back", None, False), ("db", "p0", None, "web", True)]
    assert g.ports == {"web": ["8080->80/tcp"]}


def test_svg_is_well_formed_with_every_host_network_and_red_down_edge():
    root = ET.fromstring(graph.render(graph.graphs(DOC), "svg"))
    assert {g.get("data-host") for g in root.iter(f"{SVG}g") if g.get("class") == "host"} == {"web", "db"}
    assert {g.get("data-network") for g in root.iter(f"{SVG}g") if g.get("class") == "network"} == {"front", "back"}
    down = [e for e in root.iter() if e.get("class") == "edge down"]
    assert [(e.get("data-host"), e.get("stroke")) for e in down] == [("db", graph.DOWN)]


def test_text_formats_and_empty():
    labs = graph.graphs(DOC)
    mermaid = graph.render(labs, "mermaid")
    assert 'demo_host_db ---|"eth0 DOWN"| demo_net_back' in mermaid and "linkStyle 1 stroke:#d22" in mermaid
    dot = graph.render(labs, "dot")
    assert 'label="front 10.0.0.0/24 (nat)"' in dot and 'color="#d22" penwidth=3' in dot
    page = graph.render(labs, "html")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "status.json" in page
    assert "no lab is up" in graph.render([], "svg")


FAULTS = {"impairments": [
    {"host": "web", "interface": "eth0", "direction": "out", "source": "cli", "loss": 30.0, "rate": 0, "delay": 0,
     "jitter": 0, "duplicate": 0, "reorder": 0, "corrupt": 0},
    {"host": "web", "interface": "eth0", "direction": "in", "source": "cli", "loss": 0, "rate": 0, "delay": 40.0,
     "jitter": 0, "duplicate": 0, "reorder": 0, "corrupt": 0}],
    "partitions": [{"a": "web", "b": "back", "source": "cli", "oneway": True}]}


def test_impairments_partitions_and_down_links_in_every_format():
    doc = {"labs": [{**DOC["labs"][0], "faults": FAULTS}]}
    labs = graph.graphs(doc)
    assert labs[0].edges[0].label == "loss 30% (out); delay 40ms (in)"
    mermaid = graph.render(labs, "mermaid")
    assert 'demo_host_web ---|"eth0 loss 30% (out); delay 40ms (in)"| demo_net_front' in mermaid
    assert 'demo_host_web -. "partition one way" .-> demo_net_back' in mermaid and "linkStyle 3 stroke" in mermaid
    dot = graph.render(labs, "dot")
    assert 'label="eth0 DOWN"' in dot and "loss 30% (out); delay 40ms (in)" in dot
    assert 'demo_host_web -- demo_net_back [style=dashed color="#d22" constraint=false label="partition one way" ' \
           'dir=forward arrowhead=tee]' in dot
    root = ET.fromstring(graph.render(labs, "svg"))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert {"eth0 10.0.0.2", "eth0 10.0.1.2 DOWN", "p0 10.9.0.1", "loss 30% (out); delay 40ms (in)",
            "partition one way"} <= set(texts)
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert "partition" in "".join(legend.itertext()) and "impairment" in "".join(legend.itertext())
    cut = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "partition")
    assert cut.get("marker-end") == "url(#cut-arrow)"


ACROSS = {"labs": [{
    "name": "multi", "machine": "a", "remote": [{"name": "b1", "machine": "b"}, {"name": "c1", "machine": "c"}],
    "networks": [{"name": "lan", "bridge": "nsbr1", "subnet": "10.0.0.0/24", "internal": False, "present": True}],
    "hosts": [{"name": "a1", "present": True, "interfaces": [
        {"name": "eth0", "up": True, "addresses": ["10.0.0.2/24"], "network": "lan", "link_peer": None},
        {"name": "eth1", "up": True, "addresses": ["10.9.0.1/30"], "network": None, "link_peer": "b1"}]}],
}]}


def test_a_lab_across_machines_draws_each_machine_as_a_cluster():
    text = graph.render(graph.graphs(ACROSS), "dot")
    clusters = {line.split()[1]: line for line in text.splitlines() if line.strip().startswith("subgraph cluster_")}
    assert set(clusters) == {"cluster_multi", "cluster_multi_machine_a", "cluster_multi_machine_b",
                             "cluster_multi_machine_c"}
    a_cluster = text.split("cluster_multi_machine_a {", 1)[1].split("}", 1)[0]
    assert "multi_host_a1" in a_cluster and "multi_host_b1" not in a_cluster
    b_cluster = text.split("cluster_multi_machine_b {", 1)[1].split("}", 1)[0]
    assert "multi_host_b1 [shape=box style=dashed" in b_cluster
    assert "multi_host_a1 -- multi_host_b1" in text  # the link between machines joins the two clusters
    assert "multi_net_lan" not in a_cluster  # a network spanning machines is in none of them
    chart = graph.render(graph.graphs(ACROSS), "mermaid")
    assert 'subgraph multi_machine_c["machine c"]' in chart and 'multi_host_c1["c1"]' in chart


def test_a_lab_on_one_machine_has_no_machine_clusters():
    assert "machine" not in graph.render(graph.graphs(DOC), "dot")

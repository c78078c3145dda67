"""``nslab graph``: a lab's topology as Mermaid, Graphviz dot, SVG or a live HTML page.

The picture is built from the ``status --json`` document (:func:`nslab.core.lifecycle.status`), so it shows what the
kernel has now: an interface that is down, or a host whose namespace is gone, is drawn in red.

SVG is laid out here, without Graphviz: a lab's shape is always the same two layers (networks on top,
hosts below, point-to-point links as arcs under the hosts), so a fixed layered layout reads better than a
general graph layout, and nothing beyond Python is needed on the machine. ``dot`` output is there for
people who want Graphviz's layout.

The HTML page is one self-contained file: the SVG inline, plus a small script that, when the page is served
by ``nslab graph --serve``, fetches ``status.json`` every 2 s and recolours each edge (``data-host`` /
``data-if`` attributes) from the interfaces' state. Opened as a file it is a snapshot.

Faults are drawn in every format: an interface's impairments label its edge (``loss 30% (out)``), a partition
is a dashed red line between its two sides (hosts or networks; an arrow for a one-way cut), an interface put
down is red with ``DOWN``. The SVG names each edge's interface and address and has a legend.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOST_W, HOST_H, NET_W, NET_H, GAP, MARGIN = 150, 56, 170, 46, 30, 20
UP, DOWN, FAULT = "#3a7", "#d22", "#c60"


@dataclass
class Edge:
    host: str
    ifname: str
    network: str | None  # None: a point-to-point link to ``peer``
    peer: str | None
    up: bool
    label: str = ""  # the interface's impairments
    address: str = ""  # the interface's first address


@dataclass
class Cut:
    """A partition between two sides (each a host or a network of the lab)."""

    a: str
    b: str
    oneway: bool = False


@dataclass
class LabGraph:
    name: str
    networks: list[dict[str, Any]] = field(default_factory=list)  # status entries
    hosts: list[dict[str, Any]] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    ports: dict[str, list[str]] = field(default_factory=dict)  # host -> "8080->80/tcp"
    cuts: list[Cut] = field(default_factory=list)
    machine: str | None = None  # a lab across machines: the machine whose part this is
    remote: dict[str, str] = field(default_factory=dict)  # its hosts on other machines -> their machine

    def node(self, name: str) -> str:
        """The node id of a side of a partition: a network's or a host's."""
        is_network = any(n["name"] == name for n in self.networks)
        return _id(self.name, "net" if is_network else "host", name)


def _annotations(doc: dict[str, Any], host: str, ifname: str) -> str:
    """The impairments of ``host:ifname``, one phrase per direction (``loss 30% (out); delay 40ms (in)``)."""
    from ..core.features.impair import describe

    rows = (doc.get("faults") or {}).get("impairments", [])
    return "; ".join(describe(r) for r in rows if r["host"] == host and r["interface"] == ifname)


def _lab_graph(doc: dict[str, Any]) -> LabGraph:
    g = LabGraph(name=doc["name"], networks=list(doc.get("networks", [])), hosts=list(doc.get("hosts", [])),
                 machine=doc.get("machine"), remote={h["name"]: h["machine"] for h in doc.get("remote", [])})
    g.cuts = [Cut(p["a"], p["b"], bool(p.get("oneway"))) for p in (doc.get("faults") or {}).get("partitions", [])]
    for p in (doc.get("firewall") or {}).get("ports", []):
        g.ports.setdefault(p["host"], []).append(f"{p['host_port']}->{p['to'].rsplit(':', 1)[1]}/{p['proto']}")
    present_nets = {n["name"]: n.get("present", True) for n in g.networks}
    seen_links: set[frozenset[str]] = set()
    for h in g.hosts:
        for i in h.get("interfaces", []):
            up = bool(i.get("up")) and h.get("present", False)
            label = _annotations(doc, h["name"], i["name"])
            address = (i.get("addresses") or [""])[0]
            if i.get("network"):
                g.edges.append(Edge(h["name"], i["name"], i["network"], None,
                                    up and present_nets.get(i["network"], False), label, address))
            elif i.get("link_peer"):
                key = frozenset((h["name"], i["link_peer"]))
                if key not in seen_links:
                    seen_links.add(key)
                    g.edges.append(Edge(h["name"], i["name"], None, i["link_peer"], up, label, address))
    return g


def load(lab: str | None = None) -> list[LabGraph]:
    from ..core.lifecycle import status

    return graphs(status(lab))


def graphs(doc: dict[str, Any]) -> list[LabGraph]:
    return [_lab_graph(lab) for lab in doc.get("labs", [])]


def _net_label(n: dict[str, Any]) -> str:
    return f"{n['name']} {n['subnet']} ({'internal' if n.get('internal') else 'nat'})"


def _host_label(g: LabGraph, h: dict[str, Any]) -> str:
    addresses = [a for i in h.get("interfaces", []) for a in i.get("addresses", [])]
    parts = [h["name"], *[a.split("/")[0] for a in addresses]]
    parts += [f"publish {p}" for p in g.ports.get(h["name"], [])]
    if not h.get("present", False):
        parts.append("MISSING")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------
# Text formats
# ------------------------------------------------------------------------------------------------


def _id(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() else "_" for c in p) for p in parts)


def _mermaid_machines(g: LabGraph, hosts: list[str]) -> list[str]:
    """The host lines; across machines nested in a subgraph per machine, this one's hosts in its own and the
    hosts of the other machines (known by name only) in theirs."""
    if g.machine is None:
        return hosts
    lines = [f"    subgraph {_id(g.name, 'machine', g.machine)}[\"machine {g.machine}\"]", *hosts, "    end"]
    for machine in sorted(set(g.remote.values())):
        lines.append(f"    subgraph {_id(g.name, 'machine', machine)}[\"machine {machine}\"]")
        lines += [f"      {_id(g.name, 'host', h)}[\"{h}\"]" for h, m in g.remote.items() if m == machine]
        lines.append("    end")
    return lines


def mermaid(labs: list[LabGraph]) -> str:
    lines = ["graph TD"]
    red: list[int] = []
    count = 0
    for g in labs:
        lines.append(f"  subgraph {_id('lab', g.name)}[\"lab {g.name}\"]")
        lines += [f"    {_id(g.name, 'net', n['name'])}[(\"{_net_label(n)}\")]" for n in g.networks]
        hosts = [f"    {_id(g.name, 'host', h['name'])}[\"{_host_label(g, h)}\"]" for h in g.hosts]
        lines += _mermaid_machines(g, hosts)
        lines.append("  end")
        for e in g.edges:
            other = _id(g.name, "net", e.network) if e.network else _id(g.name, "host", e.peer or "")
            text = e.ifname + (" DOWN" if not e.up else "") + (f" {e.label}" if e.label else "")
            lines.append(f"  {_id(g.name, 'host', e.host)} ---|\"{text}\"| {other}")
            if not e.up:
                red.append(count)
            count += 1
        for c in g.cuts:
            arrow = "-. \"partition one way\" .->" if c.oneway else "-. \"partition\" .-"
            lines.append(f"  {g.node(c.a)} {arrow} {g.node(c.b)}")
            red.append(count)
            count += 1
    lines += [f"  linkStyle {i} stroke:{DOWN},stroke-width:3px" for i in red]
    return "\n".join(lines) + "\n"


def _dot_machines(g: LabGraph, hosts: list[str]) -> list[str]:
    """The host lines; across machines in a cluster per machine (as :func:`_mermaid_machines`), the other
    machines' hosts dashed: this machine's status knows them by name only."""
    if g.machine is None:
        return hosts
    lines = [f"    subgraph cluster_{_id(g.name, 'machine', g.machine)} {{", f"      label=\"machine {g.machine}\";",
             *hosts, "    }"]
    for machine in sorted(set(g.remote.values())):
        lines += [f"    subgraph cluster_{_id(g.name, 'machine', machine)} {{", f"      label=\"machine {machine}\";"]
        lines += [f"      {_id(g.name, 'host', h)} [shape=box style=dashed label=\"{h}\"];"
                  for h, m in g.remote.items() if m == machine]
        lines.append("    }")
    return lines


def dot(labs: list[LabGraph]) -> str:
    lines = ["graph nslab {", "  node [fontname=sans];"]
    for g in labs:
        lines.append(f"  subgraph cluster_{_id(g.name)} {{")
        lines.append(f"    label=\"lab {g.name}\";")
        lines += [f"    {_id(g.name, 'net', n['name'])} [shape=box style=rounded label=\"{_net_label(n)}\"];"
                  for n in g.networks]
        hosts = [f"    {_id(g.name, 'host', h['name'])} [shape=box label=\"{_host_label(g, h)}\""
                 + ("" if h.get("present") else f" color=\"{DOWN}\"") + "];" for h in g.hosts]
        lines += _dot_machines(g, hosts)
        lines.append("  }")
        for e in g.edges:
            other = _id(g.name, "net", e.network) if e.network else _id(g.name, "host", e.peer or "")
            colour = UP if e.up else DOWN
            text = e.ifname + ("" if e.up else " DOWN") + (f"\\n{e.label}" if e.label else "")
            lines.append(f"  {_id(g.name, 'host', e.host)} -- {other} [label=\"{text}\" color=\"{colour}\""
                         + ("" if e.up else " penwidth=3") + (f" fontcolor=\"{FAULT}\"" if e.label else "") + "];")
        for c in g.cuts:
            lines.append(f"  {g.node(c.a)} -- {g.node(c.b)} [style=dashed color=\"{DOWN}\" constraint=false label=\""
                         + ("partition one way\" dir=forward arrowhead=tee" if c.oneway else "partition\"") + "];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# SVG (laid out here) and the HTML page
# ------------------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _text_lines(x: float, y: float, lines: list[str], cls: str) -> str:
    spans = "".join(f'<tspan x="{x:.0f}" dy="{0 if i == 0 else 14}">{_esc(t)}</tspan>' for i, t in enumerate(lines))
    return f'<text class="{cls}" x="{x:.0f}" y="{y:.0f}" text-anchor="middle">{spans}</text>'


def _edge_svg(e: Edge, start: tuple[float, float], end: tuple[float, float], arc: bool) -> list[str]:
    """One interface's edge (a line up to its network, or an arc under the hosts to its link's peer), labelled
    with the interface's name and address, its impairments and DOWN."""
    (x1, y1), (x2, y2) = start, end
    colour, cls = (UP, "edge up") if e.up else (DOWN, "edge down")
    attrs = f'class="{cls}" stroke="{colour}" data-host="{_esc(e.host)}" data-if="{_esc(e.ifname)}"'
    title = f"<title>{_esc(e.host)}:{_esc(e.ifname)} {_esc(e.address)} {'up' if e.up else 'DOWN'}</title>"
    if arc:
        out = [f'<path {attrs} fill="none" stroke-width="3" d="M{x1:.0f},{y1:.0f} '
               f'Q{(x1 + x2) / 2:.0f},{y1 + 70:.0f} {x2:.0f},{y2:.0f}">{title}</path>']
        mx, my = (x1 + x2) / 2, y1 + 38
    else:
        out = [f'<line {attrs} x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke-width="3">{title}</line>']
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 6
    name = f"{e.ifname} {e.address.split('/')[0]}" + ("" if e.up else " DOWN")
    out.append(f'<text class="ifname" x="{mx:.0f}" y="{my:.0f}" text-anchor="middle">{_esc(name)}</text>')
    if e.label:
        out.append(f'<text class="impair" x="{mx:.0f}" y="{my + 13:.0f}" text-anchor="middle" fill="{FAULT}">'
                   f"{_esc(e.label)}</text>")
    return out


def _cut_svg(c: Cut, centre: dict[str, tuple[float, float]]) -> list[str]:
    """A partition: a dashed red line between the centres of its two sides (an arrow for a one-way cut)."""
    if c.a not in centre or c.b not in centre:
        return []
    (x1, y1), (x2, y2) = centre[c.a], centre[c.b]
    length = max(1.0, ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5)
    short = min(30.0, length / 3) / length  # end at the side's box, not its centre: the arrow stays in sight
    x1, y1, x2, y2 = x1 + (x2 - x1) * short, y1 + (y2 - y1) * short, x2 - (x2 - x1) * short, y2 - (y2 - y1) * short
    arrow = ' marker-end="url(#cut-arrow)"' if c.oneway else ""
    label = "partition one way" if c.oneway else "partition"
    return [f'<line class="partition" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{DOWN}" '
            f'stroke-width="2" stroke-dasharray="2 4"{arrow}><title>{_esc(c.a)} - {_esc(c.b)}: {label}</title>'
            f'</line><text class="partition" x="{(x1 + x2) / 2:.0f}" y="{(y1 + y2) / 2 - 4:.0f}" '
            f'text-anchor="middle" fill="{DOWN}">{label}</text>']


def _lab_svg(g: LabGraph, top: float, width: float) -> tuple[list[str], float]:
    out = [f'<g class="lab" data-lab="{_esc(g.name)}">',
           f'<text class="title" x="{MARGIN}" y="{top + 16:.0f}">lab {_esc(g.name)}</text>']
    net_y, host_y = top + 30, top + 30 + NET_H + 90
    net_x = {n["name"]: MARGIN + i * (NET_W + GAP) for i, n in enumerate(g.networks)}
    host_x = {h["name"]: MARGIN + i * (HOST_W + GAP) for i, h in enumerate(g.hosts)}
    for e in g.edges:
        start = (host_x[e.host] + HOST_W / 2, host_y)
        if e.network is not None and e.network in net_x:
            out += _edge_svg(e, start, (net_x[e.network] + NET_W / 2, net_y + NET_H), False)
        elif e.peer in host_x:
            bottom = host_y + HOST_H
            out += _edge_svg(e, (start[0], bottom), (host_x[e.peer] + HOST_W / 2, bottom), True)
    centre = {**{n: (x + NET_W / 2, net_y + NET_H / 2) for n, x in net_x.items()},
              **{h: (x + HOST_W / 2, host_y + HOST_H / 2) for h, x in host_x.items()}}
    for c in g.cuts:
        out += _cut_svg(c, centre)
    for n in g.networks:
        x = net_x[n["name"]]
        out.append(f'<g class="network" data-network="{_esc(n["name"])}"><rect x="{x}" y="{net_y:.0f}" '
                   f'width="{NET_W}" height="{NET_H}" rx="14" fill="#eef3fb" stroke="#456"/>'
                   + _text_lines(x + NET_W / 2, net_y + 19, [n["name"], f"{n['subnet']} "
                                 f"{'internal' if n.get('internal') else 'nat'}"], "label") + "</g>")
    for h in g.hosts:
        x = host_x[h["name"]]
        stroke = "#456" if h.get("present") else DOWN
        lines = _host_label(g, h).split(" ")
        out.append(f'<g class="host" data-host="{_esc(h["name"])}"><rect x="{x}" y="{host_y:.0f}" '
                   f'width="{HOST_W}" height="{HOST_H}" rx="4" fill="#fff" stroke="{stroke}"/>'
                   + _text_lines(x + HOST_W / 2, host_y + 18, [lines[0], " ".join(lines[1:3]),
                                 " ".join(lines[3:])], "label") + "</g>")
    out.append("</g>")
    return out, host_y + HOST_H + 90 - top


LEGEND_H = 30


def _legend(top: float) -> str:
    """What the colours and strokes mean, in one row."""
    y = top + 15
    items = [
        f'<line x1="0" y1="{y - 4:.0f}" x2="24" y2="{y - 4:.0f}" stroke="{UP}" stroke-width="3"/>'
        f'<text x="30" y="{y:.0f}">interface up (name, address)</text>',
        f'<line x1="220" y1="{y - 4:.0f}" x2="244" y2="{y - 4:.0f}" stroke="{DOWN}" stroke-width="3" '
        f'stroke-dasharray="6 4"/><text x="250" y="{y:.0f}">DOWN (or host missing)</text>',
        f'<text x="420" y="{y:.0f}" fill="{FAULT}">loss 5% (out)</text><text x="505" y="{y:.0f}">impairment</text>',
        f'<line x1="590" y1="{y - 4:.0f}" x2="614" y2="{y - 4:.0f}" stroke="{DOWN}" stroke-width="2" '
        f'stroke-dasharray="2 4"/><text x="620" y="{y:.0f}">partition</text>',
    ]
    return f'<g class="legend" transform="translate({MARGIN},0)">' + "".join(items) + "</g>"


def svg(labs: list[LabGraph]) -> str:
    width = MARGIN * 2 + max([700, *(max(len(g.hosts) * (HOST_W + GAP), len(g.networks) * (NET_W + GAP))
                                     for g in labs)])
    body: list[str] = []
    top = 0.0
    for g in labs:
        parts, height = _lab_svg(g, top, width)
        body += parts
        top += height
    if not labs:
        body.append(f'<text x="{MARGIN}" y="30">no lab is up</text>')
        top = 50
    body.append(_legend(top))
    top += LEGEND_H
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top:.0f}" '
            f'viewBox="0 0 {width} {top:.0f}" font-family="sans-serif" font-size="12">\n'
            "<style>.title{font-weight:bold;font-size:14px}.edge.down{stroke-dasharray:6 4}"
            "text.ifname,text.impair,text.partition{font-size:10px;paint-order:stroke;stroke:#fff;stroke-width:3px}"
            "</style>\n"
            f'<defs><marker id="cut-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{DOWN}"/></marker></defs>\n'
            + "\n".join(body) + "\n</svg>\n")


_SCRIPT = """
const UP = "%(up)s", DOWN = "%(down)s";
function paint(doc) {
  const state = {};
  for (const lab of doc.labs || []) for (const h of lab.hosts || [])
    for (const i of h.interfaces || []) state[lab.name + "/" + h.name + "/" + i.name] = h.present && i.up;
  document.querySelectorAll("g.lab").forEach(g => g.querySelectorAll(".edge").forEach(e => {
    const up = state[g.dataset.lab + "/" + e.dataset.host + "/" + e.dataset.if] === true;
    e.classList.toggle("down", !up); e.classList.toggle("up", up);
    e.setAttribute("stroke", up ? UP : DOWN);
  }));
  document.getElementById("live").textContent = "live: " + new Date().toLocaleTimeString();
}
async function refresh() {
  try { const r = await fetch("status.json", {cache: "no-store"}); if (r.ok) paint(await r.json()); }
  catch (e) { document.getElementById("live").textContent = "snapshot (serve with nslab graph --serve)"; }
}
if (location.protocol.startsWith("http")) { refresh(); setInterval(refresh, 2000); }
"""


def page(labs: list[LabGraph]) -> str:
    names = ", ".join(g.name for g in labs) or "none"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nslab graph: " + _esc(names)
            + "</title>\n<style>body{font-family:sans-serif;margin:1em}#live{color:#666}</style></head>\n<body>"
            + f"<h1>nslab: {_esc(names)}</h1><p id=\"live\">snapshot</p>\n" + svg(labs)
            + "<script>" + _SCRIPT % {"up": UP, "down": DOWN} + "</script>\n</body></html>\n")


FORMATS: dict[str, Callable[[list[LabGraph]], str]] = {"mermaid": mermaid, "dot": dot, "svg": svg, "html": page}


def render(labs: list[LabGraph], fmt: str) -> str:
    return FORMATS[fmt](labs)


def serve(lab: str | None, bind: str, port: int, ready: Callable[[str], None] | None = None) -> None:
    """Serve the page at / and the ``status`` document at /status.json until interrupted."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ..core.lifecycle import status

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/status.json":
                body, kind = json.dumps(status(lab)).encode(), "application/json"
            elif path in ("/", "/index.html"):
                body, kind = page(load(lab)).encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet (the argument: http.server's name)
            return

    with ThreadingHTTPServer((bind, port), Handler) as server:
        if ready:
            ready(f"http://{bind}:{server.server_address[1]}/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass

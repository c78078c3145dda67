"""Feature 'dns': every host's ``/etc/netns/<namespace>/{hosts,resolv.conf}``.

Every host knows every other host of its lab as ``NAME`` and ``NAME.<lab>``; upstream resolvers come from the
lab file (``dns:``/``dns_search:``) or from the machine, never as a loopback address (render.py explains the
127.0.0.53 pitfall and the forwarder the services feature runs for it). Files are written only where their
content differs, atomically; ``down`` removes them (and ``/etc/netns`` itself when nslab made it).

Replaces: ``mkdir -p /etc/netns/NS && printf ... > /etc/netns/NS/resolv.conf`` and ``.../hosts``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ....model import Dns
from ....paths import ETC_NETNS_DIR, etc_netns_dir
from ....values import Value, field
from ...plan import Action, shell_quote
from .. import DownContext, FeaturePlan, Report, UpContext

if TYPE_CHECKING:
    from ....drivers import Drivers
    from ....model import Lab
    from ...difference import Difference
    from ...spec import LabSpec
    from . import render  # imported where rendering happens: `down` never needs it

KEY = "dns"
STATUS_KEY = "hostsetup"
Files = Mapping[str, str]  # file name -> text
Previous = Mapping[str, "str | None"]  # file name -> text before (None: there was none)


class DnsRecord(Value):
    """What ``up`` wrote: where upstream DNS came from, and per host its namespace and resolver choice."""

    upstream: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {namespace, dns}

    def to_json(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "hosts": self.hosts}

    @classmethod
    def from_json(cls, data: Any) -> DnsRecord:
        data = data if isinstance(data, dict) else {}
        return cls(dict(data.get("upstream") or {}), dict(data.get("hosts") or {}))


# --- resolve -------------------------------------------------------------------------------------------------
def resolve(lab: LabSpec, report: Report) -> dict[str, Dns]:
    """Each host's resolver settings as written: its own ``dns:``/``dns_search:`` over the lab's (None where
    neither says: the machine's); a search domain that is not a domain name is a problem."""
    from . import render

    searches = [((), lab.dns_search)] + [(("hosts", n), h.dns_search) for n, h in lab.hosts.items()]
    for where, domains in searches:
        for i, domain in enumerate(domains or []):
            if not render.SEARCH_DOMAIN.match(domain):
                report((*where, "dns_search", i), f"'{domain}' is not a domain name")
    nameservers = tuple(str(a) for a in lab.dns) if lab.dns is not None else None
    search = tuple(lab.dns_search) if lab.dns_search is not None else None
    return {
        name: Dns(tuple(str(a) for a in host.dns) if host.dns is not None else nameservers,
                  tuple(host.dns_search) if host.dns_search is not None else search)
        for name, host in lab.hosts.items()
    }


# --- what the files say --------------------------------------------------------------------------------------
class Choices(Value):
    """Where each host's queries go (cheap: no file rendered)."""

    upstream: render.Upstream
    dns: dict[str, render.HostDns]  # host -> its resolver choice


def choices(lab: Lab, drivers: Drivers) -> Choices:
    from . import render

    upstream = render.discover_upstream(read=drivers.files.read_text)
    return Choices(upstream, {h.name: render.host_dns(h, upstream) for h in lab.hosts.values()})


def files(lab: Lab, chosen: Choices) -> dict[str, dict[str, str]]:
    """namespace -> file name -> text, for every host of the lab (across machines: of this machine's part, each
    naming every host of the whole lab)."""
    from . import render

    hosts_files = render.HostsFiles(lab.whole())
    resolv_confs: dict[render.HostDns, str] = {}
    out: dict[str, dict[str, str]] = {}
    for host in lab.hosts.values():
        choice = chosen.dns[host.name]
        if choice not in resolv_confs:
            resolv_confs[choice] = render.render_resolv_conf(lab.name, choice)
        out[host.namespace] = {"hosts": hosts_files.render(host), "resolv.conf": resolv_confs[choice]}
    return out


def forwarder(lab: Lab, drivers: Drivers) -> dict[str, list[str]] | None:
    """Where the lab's DNS forwarder listens (gateways of hosts that use it) and where it relays; None: none."""
    chosen = choices(lab, drivers)
    listen: list[str] = []
    for name, choice in chosen.dns.items():
        gateway = str(lab.hosts[name].gateway)
        if choice.forward and gateway not in listen:
            listen.append(gateway)
    return {"listen": listen, "upstreams": list(chosen.upstream.stubs)} if listen else None


# --- actions -------------------------------------------------------------------------------------------------
class WriteNetnsFiles(Action):
    """Per namespace: the files to write, and what they said before (for the undo)."""

    files: tuple[tuple[str, Files], ...]
    previous: tuple[tuple[str, Previous], ...] = ()

    def commands(self) -> list[str]:
        out: list[str] = []
        before = dict(self.previous)
        for namespace, files in self.files:
            directory = etc_netns_dir(namespace)
            if all(v is None for v in before.get(namespace, {}).values()):
                out.append(f"mkdir -p {directory}")
            for name, text in files.items():
                body = " ".join(shell_quote(line) for line in text.splitlines())
                out.append(f"printf '%s\\n' {body} > {directory}/{name}")
        return out

    def summary(self) -> str:
        return f"write /etc/netns files of {len(self.files)} host(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        done: list[tuple[str, Previous]] = []
        before = dict(self.previous)
        try:
            for namespace, files in self.files:
                drivers.files.write_netns_files(namespace, files)
                done.append((namespace, before.get(namespace, {})))
        except BaseException:
            _restore(done, drivers)
            raise
        return RestoreNetnsFiles(tuple(done))


class RestoreNetnsFiles(Action):
    """The undo of a write: the files as they were, or gone if there were none."""

    previous: tuple[tuple[str, Previous], ...]

    def commands(self) -> list[str]:
        return [f"# restore {etc_netns_dir(ns)}" for ns, _ in self.previous]

    def summary(self) -> str:
        return f"restore /etc/netns files of {len(self.previous)} host(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        _restore(list(self.previous), drivers)
        return None


def _restore(done: list[tuple[str, Previous]], drivers: Drivers) -> None:
    for namespace, before in reversed(done):
        kept = {name: text for name, text in before.items() if text is not None}
        if kept:
            drivers.files.write_netns_files(namespace, kept)
        else:
            drivers.files.remove_netns_files(namespace)


class RemoveNetnsFiles(Action):
    namespaces: tuple[str, ...]
    previous: tuple[tuple[str, Previous], ...] = ()
    prune: bool = False  # also /etc/netns itself when empty (down of the last host files)

    def commands(self) -> list[str]:
        out = [f"rm -f {etc_netns_dir(ns)}/hosts {etc_netns_dir(ns)}/resolv.conf && rmdir {etc_netns_dir(ns)}"
               for ns in self.namespaces]
        if self.prune:
            out.append(f"rmdir {ETC_NETNS_DIR} 2>/dev/null || true")
        return out

    def summary(self) -> str:
        return f"remove /etc/netns files of {len(self.namespaces)} host(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        for namespace in self.namespaces:
            drivers.files.remove_netns_files(namespace)
        if self.prune:
            drivers.files.prune_etc_netns()
        kept = tuple((ns, {k: v for k, v in files.items() if v is not None}) for ns, files in self.previous)
        kept = tuple((ns, files) for ns, files in kept if files)
        return WriteNetnsFiles(kept) if kept else None

    def teardown(self, drivers: Drivers) -> list[str]:
        from ....errors import NslabError

        failures: list[str] = []
        for namespace in self.namespaces:
            try:
                drivers.files.remove_netns_files(namespace)
            except NslabError as exc:
                failures.append(str(exc))
        if self.prune:
            drivers.files.prune_etc_netns()
        return failures


# --- plans ---------------------------------------------------------------------------------------------------
def _on_disk(namespace: str, drivers: Drivers) -> dict[str, str | None]:
    directory = etc_netns_dir(namespace)
    return {name: drivers.files.read_text(os.path.join(directory, name)) for name in ("hosts", "resolv.conf")}


def plan_up(ctx: UpContext) -> FeaturePlan:
    lab, drivers = ctx.lab, ctx.drivers
    chosen = choices(lab, drivers)
    old = DnsRecord.from_json(ctx.record)
    gone = [h["namespace"] for name, h in old.hosts.items() if name not in lab.hosts]
    writes: list[tuple[str, Files]] = []
    previous: list[tuple[str, Previous]] = []
    for namespace, texts in files(lab, chosen).items():
        before = _on_disk(namespace, drivers)
        changed = {name: text for name, text in texts.items() if before.get(name) != text}
        if changed:
            writes.append((namespace, changed))
            previous.append((namespace, before))
    after: list[Action] = []
    if gone:
        after.append(RemoveNetnsFiles(tuple(gone), tuple((ns, _on_disk(ns, drivers)) for ns in gone)))
    if writes:
        after.append(WriteNetnsFiles(tuple(writes), tuple(previous)))
    record = DnsRecord(
        upstream=chosen.upstream.to_json(),
        hosts={name: {"namespace": lab.hosts[name].namespace, "dns": choice.to_json()}
               for name, choice in chosen.dns.items()},
    )
    return FeaturePlan(after=after, record=record)


def plan_down(ctx: DownContext) -> FeaturePlan:
    record = DnsRecord.from_json(ctx.record)
    namespaces = {h["namespace"] for h in record.hosts.values() if "namespace" in h} | set(ctx.namespaces)
    if ctx.lab is not None:
        namespaces |= {h.namespace for h in ctx.lab.hosts.values()}
    if not namespaces:
        return FeaturePlan()
    return FeaturePlan(before=[RemoveNetnsFiles(tuple(sorted(namespaces)), prune=True)])


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    rec = DnsRecord.from_json(record)
    return {"dns": {name: h.get("dns") for name, h in rec.hosts.items()}, "upstream": rec.upstream or None}


def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    """Each host's ``/etc/netns`` file that is not what ``up`` writes (edited or removed by hand): compared with
    what :func:`files` renders now, so that ``up`` repairs exactly what ``status`` names."""
    from ...difference import Difference

    hosts = {h.namespace: h.name for h in lab.hosts.values()}
    found = []
    for namespace, texts in files(lab, choices(lab, drivers)).items():
        on_disk = _on_disk(namespace, drivers)
        for name, text in texts.items():
            now = on_disk.get(name)
            if now != text:
                what = "is missing" if now is None else "differs from what nslab writes"
                found.append(Difference(f"host {hosts[namespace]}: {etc_netns_dir(namespace)}/{name} {what}", "files",
                                        host=hosts[namespace]))
    return found

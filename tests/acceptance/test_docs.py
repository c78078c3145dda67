"""The documentation holds together: every lab file in it passes nslab's own checks, every YAML and JSON block
parses, every relative link leads to a file and heading that exist, and the README stays an introduction.
No root needed: lab files are checked over the fake drivers, against an empty machine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from docblocks import ROOT, code_blocks, doc_files, without_fences

from nslab.drivers.fake import FakeDocker, FakeNics, fake_drivers
from nslab.drivers.nic import Nic
from nslab.lab import Lab

README_MAX_LINES = 400
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.M)


def is_lab_file(data: object) -> bool:
    return isinstance(data, dict) and "name" in data and ("hosts" in data or "networks" in data)


def images_named(data: dict) -> set[str]:
    hosts = data.get("hosts") or {}
    return {h["image"] for h in hosts.values() if isinstance(h, dict) and isinstance(h.get("image"), str)}


def interfaces_named(data: dict) -> set[str]:
    """The machine's interfaces a lab file borrows: networks' ``external:``, hosts' macvlan ``parent:``."""
    names = {n["external"] for n in (data.get("networks") or {}).values()
             if isinstance(n, dict) and isinstance(n.get("external"), str)}
    for host in (data.get("hosts") or {}).values():
        entries = host.get("macvlan") if isinstance(host, dict) else None
        for entry in entries if isinstance(entries, list) else [entries] if entries else []:
            if isinstance(entry, dict) and isinstance(entry.get("parent"), str):
                names.add(entry["parent"])
    return names


def test_every_lab_file_in_the_docs_passes_validation(tmp_path, monkeypatch):
    """Schema, references, addresses, published ports, sysctls, container images: what `nslab up` checks before
    it changes anything, on a machine with nothing on it (the images a block names exist in its Docker, the
    interfaces it borrows exist, up and bare; a lab across machines is checked as its first machine's part)."""
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))  # no other lab, no address kept from before
    checked, failures = [], []
    for block in code_blocks("yaml"):
        data = yaml.safe_load(block.text)
        if not is_lab_file(data):
            continue
        checked.append(block.text.splitlines()[0])
        nics = FakeNics([Nic(name, up=True, mtu=1500) for name in interfaces_named(data)])
        drivers = fake_drivers(docker=FakeDocker(images=images_named(data)), nics=nics)
        machine = next(iter(data["machines"])) if data.get("machines") else None
        lines_before = "\n" * block.line  # so that each problem names its line in the document
        try:
            Lab.from_text(lines_before + block.text, path=str(block.path.relative_to(ROOT)), drivers=drivers,
                          check=True, machine=machine)
        except Exception as exc:  # every problem of the block at once
            failures.append(f"the lab file at {block.where}:\n{exc}")
    assert not failures, "\n".join(failures)
    assert "# nslab.yaml" in checked, checked  # the test sees the README's lab (it cannot pass on nothing)


def test_every_yaml_and_json_block_parses():
    failures = []
    for language, load in (("yaml", yaml.safe_load), ("json", json.loads)):
        for block in code_blocks(language):
            try:
                load(block.text)
            except Exception as exc:
                failures.append(f"{block.where}: not {language}: {exc}")
    assert not failures, "\n".join(failures)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped (markup too), spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(without_fences(path.read_text())):
        base = anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_anchor_rules():
    assert anchor("`status --json`") == "status---json"
    assert anchor("Many hosts: `count`, variables") == "many-hosts-count-variables"
    assert anchor("Networks: egress, internal networks, isolation, published ports") == (
        "networks-egress-internal-networks-isolation-published-ports")


def test_relative_links_lead_to_files_and_headings_that_exist():
    failures, links = [], 0
    for path in doc_files():
        source = without_fences(path.read_text())
        for number, line in enumerate(source.splitlines(), 1):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):  # (inline code holds no links)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
                    continue
                links += 1
                file_part, _, fragment = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{number}: ({target})"
                if not dest.exists():
                    failures.append(f"{where}: no file {dest}")
                elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                    failures.append(f"{where}: no heading with anchor #{fragment} in {dest.relative_to(ROOT)}")
    assert not failures, "\n".join(failures)
    assert links > 10  # the README links to every page of docs/


def test_readme_is_an_introduction_that_links_to_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README.md does not link to docs/{page.name}"

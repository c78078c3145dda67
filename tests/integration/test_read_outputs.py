"""Issue 13: `-o json|yaml` on the read commands that probe (`check`, `doctor`), `--json` kept as the alias of
`-o json` (real kernel, throwaway host)."""

from __future__ import annotations

import json

import yaml

from labs import nslab

LAB = "name: ro\nnetworks: {n: {internal: true}}\nhosts:\n  a: {networks: [n]}\n  b: {networks: [n]}\n"


def test_check_and_doctor_print_the_same_document_as_json_or_yaml(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    try:
        as_json = json.loads(nslab("check", "ro", "--json", "--timeout", "3").stdout)
        as_yaml = yaml.safe_load(nslab("check", "ro", "-o", "yaml", "--timeout", "3").stdout)
        assert as_yaml["lab"] == as_json["lab"] == "ro"
        cells = {(c["source"], c["target"], c["reachable"]) for c in as_yaml["cells"]}
        assert ("a", "b", True) in cells and cells == {(c["source"], c["target"], c["reachable"])
                                                          for c in as_json["cells"]}
        assert json.loads(nslab("check", "ro", "-o", "json", "--timeout", "3").stdout)["cells"]
        doc = nslab("doctor", "ro", "-o", "yaml", check=False)
        assert doc.returncode in (0, 1) and "findings" in yaml.safe_load(doc.stdout), doc.stderr
        both = nslab("check", "ro", "--json", "-o", "yaml", check=False)
        assert both.returncode == 2 and "--json is -o json" in both.stderr
    finally:
        nslab("down", "ro")

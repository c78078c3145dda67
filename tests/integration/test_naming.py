"""Issue 21 item 7: one way to name a lab, the same for every command (real kernel, throwaway host): the LAB
argument, -f FILE's lab, the lab file in this folder, the only lab that is up, else one line listing the labs
that are up; a lab that is not up is said in the same words by every command; `port` says when nothing is
published."""

from __future__ import annotations

from labs import nslab

ONE = "name: na\nnetworks: {n: {internal: true}}\nhosts:\n  a: {networks: [n], publish: ['6000:80']}\n"
TWO = "name: nb\nnetworks: {n: {internal: true}}\nhosts:\n  b: {networks: [n]}\n"


def _refused(*args: str, cwd) -> str:
    result = nslab(*args, check=False, cwd=cwd)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_the_naming_order_through_the_cli(labs, tmp_path):
    folder_a, folder_b, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for folder in (folder_a, folder_b, empty):
        folder.mkdir()
    labs.up(ONE, "a/nslab.yaml")
    labs.up(TWO, "b/two.nslab.yaml")

    # nothing names a lab and two are up: one line listing them, for every command that takes [LAB]
    for verb in (("down",), ("check",), ("logs",)):
        assert _refused(*verb, cwd=empty) == ("nslab: which lab? give LAB or -f FILE "
                                              "(no lab file here; labs up: na, nb)"), verb
    # a lab that is not up: the same words everywhere
    for verb in ("status", "check", "doctor", "logs", "graph"):
        assert _refused(verb, "nosuchlab", cwd=empty) == "nslab: no lab 'nosuchlab' is up (labs up: na, nb)", verb
    # the lab file here (the one *.nslab.yaml), then -f FILE's lab over it, then LAB over both
    assert "lab nb" in nslab("status", "-f", "two.nslab.yaml", cwd=folder_b).stdout
    assert "lab na" in nslab("status", "-f", str(folder_a / "nslab.yaml"), cwd=folder_b).stdout
    assert nslab("logs", cwd=folder_b, check=False).stderr.strip() == (
        "nslab: lab 'nb' runs no services (add 'run:' to a host in the lab file)")
    assert nslab("down", cwd=folder_b).stdout == "lab nb is down\n"
    assert nslab("down", "nb", cwd=empty).stdout == "lab nb was not up; nothing to do\n"

    # port: what is published, and a host that publishes nothing said so
    assert nslab("port", "na/a", cwd=empty).stdout == "80/tcp -> 0.0.0.0:6000\n"
    labs.up(TWO, "b/two.nslab.yaml")
    quiet = nslab("port", "nb/b", cwd=empty)
    assert quiet.stdout == "" and quiet.stderr == "nslab: nb/b publishes no port (publish: in the lab file)\n"
    nslab("down", "nb", cwd=empty)

    # the only lab that is up, from a folder without a lab file
    assert nslab("down", cwd=empty).stdout == "lab na is down\n"
    assert _refused("down", cwd=empty) == "nslab: which lab? give LAB or -f FILE (no lab file here; labs up: none)"

"""Issue 13: shell completion through click's (bash here; zsh and fish use the same functions): subcommands,
lab names, hosts, netns: targets and lab files (real state in a throwaway host)."""

from __future__ import annotations

import os
import subprocess

from labs import NSLAB, nslab
from sandbox import sh


def complete(words: str, cwd: str | None = None) -> list[str]:
    env = dict(os.environ, _NSLAB_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
    out = subprocess.run([NSLAB], env=env, capture_output=True, text=True, cwd=cwd).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if "," in line]


def test_completion_of_verbs_labs_hosts_targets_and_files(host, tmp_path):
    (tmp_path / "lab.nslab.yaml").write_text("name: cpl\nnetworks: {n: {}}\nhosts: {web: {networks: [n]}}\n")
    sh("ip netns add other")
    nslab("up", "-f", str(tmp_path / "lab.nslab.yaml"))
    try:
        assert "status" in complete("nslab sta")
        assert complete("nslab down c") == ["cpl"]
        assert {"cpl/web", "web"} <= set(complete("nslab exec "))
        assert "netns:other" in complete("nslab exec netns:")
        assert "cpl/web" in complete("nslab status cpl/")
        assert complete("nslab up -f ", cwd=str(tmp_path)) == ["lab.nslab.yaml"]
    finally:
        nslab("down", "cpl")
        sh("ip netns del other")

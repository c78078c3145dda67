"""Issue 13: which lab file a command uses (-f FILE, -f -, nslab.yaml, nslab.yml, one *.nslab.yaml), and -f on
status, exec, logs (--file) and down; exec -it accepted (real kernel, throwaway host)."""

from __future__ import annotations

from labs import nslab

LAB = "name: lf\nnetworks: {n: {}}\nhosts:\n  a: {networks: [n], run: 'echo hello-from-a; exec sleep 1000'}\n"


def test_default_file_and_f_on_every_lab_command(host, tmp_path):
    (tmp_path / "only.nslab.yaml").write_text(LAB)
    nslab("up", cwd=tmp_path)  # found: the one *.nslab.yaml
    try:
        assert "lf" in nslab("status", "-f", "only.nslab.yaml", cwd=tmp_path).stdout
        assert nslab("exec", "-f", "only.nslab.yaml", "a", "--", "hostname", cwd=tmp_path).stdout.strip() == "a"
        assert nslab("exec", "-it", "lf/a", "--", "true").returncode == 0
        assert nslab("exec", "lf/a", "-t", "--", "true").returncode == 0
        import time

        for _ in range(50):
            out = nslab("logs", "--file", str(tmp_path / "only.nslab.yaml"), check=False).stdout
            if "hello-from-a" in out:
                break
            time.sleep(0.1)
        assert "a.1 | hello-from-a" in out or "| hello-from-a" in out, out
        assert "hello-from-a" in nslab("logs", "lf").stdout  # LAB alone: every service of the lab
    finally:
        nslab("down", cwd=tmp_path)
    assert "lf" not in nslab("status", "--json").stdout


def test_stdin_and_ambiguous_or_missing_files(host, tmp_path):
    result = nslab("up", "-f", "-", "--dry-run", input=LAB)
    assert "ip netns add lf-a" in result.stdout
    bad = nslab("up", "-f", "-", input="name: lf\nhosts: {a: {bogus: 1}}\n", check=False)
    assert bad.returncode == 2 and "<stdin>:2: hosts.a.bogus: unknown key 'bogus'" in bad.stderr
    missing = nslab("up", cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "no lab file here" in missing.stderr
    (tmp_path / "a.nslab.yaml").write_text(LAB)
    (tmp_path / "b.nslab.yaml").write_text(LAB)
    several = nslab("up", "--dry-run", cwd=tmp_path, check=False)
    assert several.returncode == 2 and "a.nslab.yaml, b.nslab.yaml" in several.stderr
    (tmp_path / "nslab.yml").write_text(LAB.replace("lf", "yml"))
    assert "ip netns add yml-a" in nslab("up", "--dry-run", cwd=tmp_path).stdout
    (tmp_path / "nslab.yaml").write_text(LAB.replace("lf", "yaml"))
    assert "ip netns add yaml-a" in nslab("up", "--dry-run", cwd=tmp_path).stdout

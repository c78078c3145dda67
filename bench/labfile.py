"""The lab files the benchmark brings up: N hosts on one NAT bridge network, the first 10 publishing a port."""

from __future__ import annotations

LAB = "bench"
NETWORK = "lan"
SUBNET = "10.77.0.0/20"  # room for 4000 hosts; exists only inside the throwaway host
PUBLISHED = 10  # hosts h1..h10 publish 70NN -> :80, as bench/tutorial.sh does


def lab_text(n: int, published: int = PUBLISHED, publish_to: int = 80) -> str:
    lines = [f"name: {LAB}", "networks:", f"  {NETWORK}:", f"    subnet: {SUBNET}", "hosts:"]
    for i in range(1, n + 1):
        lines.append(f"  h{i}:")
        lines.append(f"    networks: [{NETWORK}]")
        if i <= published:
            lines.append(f'    publish: ["{7000 + i}:{publish_to}"]')
    return "\n".join(lines) + "\n"


def networks_text(networks: int, per_network: int) -> str:
    """``networks`` bridge networks of ``per_network`` hosts each (h1, h2, ... in order), one /24 each inside
    SUBNET: the scale row's lab (a big lab is several networks, not one bridge with thousands of ports)."""
    lines = [f"name: {LAB}", "networks:"]
    for k in range(networks):
        lines += [f"  n{k}:", f"    subnet: 10.77.{k}.0/24"]
    lines.append("hosts:")
    for i in range(1, networks * per_network + 1):
        lines += [f"  h{i}:", f"    networks: [n{(i - 1) // per_network}]"]
    return "\n".join(lines) + "\n"


def namespace(i: int) -> str:
    return f"{LAB}-h{i}"

#!/bin/bash
# The fast baseline of issue 15: the same lab as bench/tutorial.sh (N hosts on one bridge, NAT egress, hosts 1..10
# published as 70NN -> :80), written the way someone who measured would write it. Run only inside a throwaway
# host (bench does that).
#
#   optimized.sh up N      one `ip -batch` on the machine: the bridge, every namespace, every veth with its peer
#                          created inside its namespace (no `ip link set ... netns` move) and attached; then
#                          per host one `ip -n NS -batch` (address, links up, default route: iproute2 has no way
#                          to name another namespace inside one batch); one `nft -f` transaction; ip_forward
#   optimized.sh down N    one `ip -batch`: `netns del` each, then `link del group G` removes the bridge and
#                          every machine-side veth in one request; one `nft delete table`
#
# Hosts get 10.78.0.2 ... in 10.78.0.0/20 (up to 4000 hosts); the bridge optbr0 is the gateway 10.78.0.1.
set -eu

mode=$1
n=$2
BR=optbr0
GROUP=7801 # the script's own link group (nslab uses another)
GW=10.78.0.1
SUBNET=10.78.0.0/20

addr() { # host index -> $a (no $(...): a subshell is a fork)
    local k=$(($1 + 1))
    a="10.78.$((k / 256)).$((k % 256))"
}

case $mode in
up)
    sysctl -qw net.ipv4.ip_forward=1
    {
        echo "link add $BR group $GROUP type bridge"
        echo "addr add $GW/20 dev $BR"
        echo "link set $BR up"
        for i in $(seq 1 "$n"); do
            echo "netns add opt-h$i"
            echo "link add ov$i group $GROUP type veth peer name eth0 netns opt-h$i"
            echo "link set ov$i master $BR up"
        done
    } | ip -batch -
    for i in $(seq 1 "$n"); do
        addr "$i"
        printf 'addr add %s/20 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via %s\n' \
            "$a" "$GW" | ip -n "opt-h$i" -batch -
    done
    {
        echo "table ip optimized {"
        echo "  chain postrouting { type nat hook postrouting priority srcnat; ip saddr $SUBNET oifname != $BR masquerade; }"
        echo "  chain prerouting { type nat hook prerouting priority dstnat;"
        for i in $(seq 1 $((n < 10 ? n : 10))); do
            addr "$i"
            echo "    fib daddr type local tcp dport $((7000 + i)) dnat to $a:80"
        done
        echo "  }"
        echo "}"
    } | nft -f -
    ;;
down)
    {
        for i in $(seq 1 "$n"); do
            echo "netns del opt-h$i"
        done
        echo "link del group $GROUP"
    } | ip -batch -
    nft delete table ip optimized
    ;;
*)
    echo "usage: $0 up N | down N" >&2
    exit 2
    ;;
esac

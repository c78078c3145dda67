#!/bin/bash
# The baseline of bench row 1: N hosts on one bridge with NAT egress and 10 published ports, built "the
# tutorials' way" with one iproute2/nft command per step. Run only inside a throwaway host (bench does that).
#
#   tutorial.sh up   N exec|ipn    exec: configure each host with `ip netns exec NS ip ...` (the tutorials)
#                                  ipn:  the same with `ip -n NS ...` (no mount namespace per command)
#   tutorial.sh down N
#
# Hosts get 10.78.0.2 ... in 10.78.0.0/20 (up to 4000 hosts); the bridge tutbr0 is the gateway 10.78.0.1.
# Host i (1..10) is published as machine port 70NN -> host:80, as `publish: ["70NN:80"]` does in nslab.
set -eu

mode=$1
n=$2
style=${3:-exec}
BR=tutbr0
GW=10.78.0.1
SUBNET=10.78.0.0/20

addr() { # host index -> address
    local k=$(($1 + 1))
    echo "10.78.$((k / 256)).$((k % 256))"
}

case $mode in
up)
    sysctl -qw net.ipv4.ip_forward=1
    ip link add $BR type bridge
    ip addr add $GW/20 dev $BR
    ip link set $BR up
    nft add table ip tutorial
    nft add chain ip tutorial postrouting '{ type nat hook postrouting priority srcnat; }'
    nft add rule ip tutorial postrouting ip saddr $SUBNET oifname != $BR masquerade
    nft add chain ip tutorial prerouting '{ type nat hook prerouting priority dstnat; }'
    for i in $(seq 1 "$n"); do
        ns=tut-h$i
        a=$(addr "$i")
        ip netns add "$ns"
        ip link add "tv$i" type veth peer name "tp$i"
        ip link set "tp$i" netns "$ns"
        if [ "$style" = exec ]; then
            ip netns exec "$ns" ip addr add "$a/20" dev "tp$i"
            ip netns exec "$ns" ip link set "tp$i" up
            ip netns exec "$ns" ip link set lo up
            ip netns exec "$ns" ip route add default via $GW
        else
            ip -n "$ns" addr add "$a/20" dev "tp$i"
            ip -n "$ns" link set "tp$i" up
            ip -n "$ns" link set lo up
            ip -n "$ns" route add default via $GW
        fi
        ip link set "tv$i" master $BR
        ip link set "tv$i" up
        if [ "$i" -le 10 ]; then
            nft add rule ip tutorial prerouting fib daddr type local tcp dport $((7000 + i)) dnat to "$a:80"
        fi
    done
    ;;
down)
    for i in $(seq 1 "$n"); do
        ip netns del "tut-h$i"
    done
    ip link del $BR
    nft delete table ip tutorial
    ;;
*)
    echo "usage: $0 up N exec|ipn | down N" >&2
    exit 2
    ;;
esac

#!/bin/bash
# Peer of bench row 1 (issue 15): N hosts on one NAT bridge with netavark (podman's network backend), called
# the way podman calls it: per host `ip netns add`, then `netavark setup NETNS` with the host's options as JSON
# on stdin (a bridge network with a NAT-ed subnet, the host's static address: podman allocates addresses
# itself); down is `netavark teardown` (which removes the bridge with its last port) and `ip netns del`.
# Run only inside a throwaway host.
#
#   peer_netavark.sh up|down N CONFIGDIR     CONFIGDIR: netavark's --config directory (a temporary directory)
#
# Hosts get 10.82.0.2 ... in 10.82.0.0/20; the bridge nvbr0 is the gateway 10.82.0.1.
set -eu

mode=$1
n=$2
config=$3
NETAVARK=${NETAVARK:-/usr/lib/podman/netavark}
NETWORK_ID=$(printf 'b%063d' 0)

options() { # host index -> netavark's JSON input for it
    local k=$(($1 + 1))
    cat <<J
{"container_id": "$(printf '%064d' "$1")", "container_name": "h$1",
 "networks": {"bench": {"interface_name": "eth0", "static_ips": ["10.82.$((k / 256)).$((k % 256))"]}},
 "network_info": {"bench": {"name": "bench", "id": "$NETWORK_ID", "driver": "bridge",
   "network_interface": "nvbr0", "subnets": [{"subnet": "10.82.0.0/20", "gateway": "10.82.0.1"}],
   "ipv6_enabled": false, "internal": false, "dns_enabled": false, "ipam_options": {"driver": "host-local"}}}}
J
}

case $mode in
up)
    for i in $(seq 1 "$n"); do
        ip netns add "nv-h$i"
        options "$i" | "$NETAVARK" --config "$config" setup "/run/netns/nv-h$i" >/dev/null
    done
    ;;
down)
    for i in $(seq 1 "$n"); do
        options "$i" | "$NETAVARK" --config "$config" teardown "/run/netns/nv-h$i" >/dev/null
        ip netns del "nv-h$i"
    done
    ;;
*)
    echo "usage: $0 up|down N CONFIGDIR" >&2
    exit 2
    ;;
esac

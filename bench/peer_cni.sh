#!/bin/bash
# Peer of bench row 1 (issue 15): N hosts on one NAT bridge with the CNI reference plugins, called the way
# containerd calls them: per host `ip netns add`, then the `loopback` plugin and the `bridge` plugin
# (isGateway, ipMasq, host-local IPAM) with CNI_COMMAND=ADD and the network config on stdin; down is DEL for
# each host, `ip netns del`, and removing the bridge (the plugin leaves it). Run only inside a throwaway host.
#
#   peer_cni.sh up|down N DATADIR      DATADIR: host-local's allocation files (a temporary directory)
#
# Hosts get 10.80.0.2 ... from host-local in 10.80.0.0/20; the bridge cnibr0 is the gateway 10.80.0.1.
set -eu

mode=$1
n=$2
data=$3
PLUGINS=${CNI_PLUGINS:-/usr/lib/cni}
CONF='{"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cnibr0", "isGateway": true,
 "ipMasq": true, "ipam": {"type": "host-local", "subnet": "10.80.0.0/20", "routes": [{"dst": "0.0.0.0/0"}],
 "dataDir": "'"$data"'"}}'
LO='{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}'

plugin() { # COMMAND HOST-INDEX PLUGIN IFNAME CONFIG
    echo "$5" | CNI_COMMAND=$1 CNI_CONTAINERID=cni-h$2 CNI_NETNS=/run/netns/cni-h$2 CNI_IFNAME=$4 \
        CNI_PATH=$PLUGINS "$PLUGINS/$3" >/dev/null
}

case $mode in
up)
    for i in $(seq 1 "$n"); do
        ip netns add "cni-h$i"
        plugin ADD "$i" loopback lo "$LO"
        plugin ADD "$i" bridge eth0 "$CONF"
    done
    ;;
down)
    for i in $(seq 1 "$n"); do
        plugin DEL "$i" bridge eth0 "$CONF"
        plugin DEL "$i" loopback lo "$LO"
        ip netns del "cni-h$i"
    done
    ip link del cnibr0
    ;;
*)
    echo "usage: $0 up|down N DATADIR" >&2
    exit 2
    ;;
esac

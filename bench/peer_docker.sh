#!/bin/bash
# Peer of bench row 1 (issue 15): N hosts on one NAT bridge with Docker, the way a user types it: one
# user-defined network (Docker's bridge driver masquerades it), then one `docker run -d` per container, in
# sequence; down is one `docker rm -f` naming every container, then `docker network rm`. Run only inside a
# throwaway host, against the dockerd that bench/peers.py started there (DOCKER_HOST).
#
#   peer_docker.sh up|down N IMAGE
#
# Containers get 10.79.0.2 ... in 10.79.0.0/20 from Docker's IPAM; the network's bridge is the gateway.
set -eu

mode=$1
n=$2
image=$3
DOCKER=${DOCKER:-docker}

case $mode in
up)
    "$DOCKER" network create --subnet 10.79.0.0/20 benchnet >/dev/null
    for i in $(seq 1 "$n"); do
        "$DOCKER" run -d --network benchnet --name "dk-h$i" "$image" sleep 1000000 >/dev/null
    done
    ;;
down)
    # shellcheck disable=SC2046
    "$DOCKER" rm -f $(seq -f 'dk-h%g' 1 "$n") >/dev/null
    "$DOCKER" network rm benchnet >/dev/null
    ;;
*)
    echo "usage: $0 up|down N IMAGE" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Set up (dev/setup.sh), then the tutorials' scenario: two servers on port 8080 in their own namespaces,
# published on the machine as 6000 and 6001; fetch both from the machine, show them, take them down.
set -euo pipefail
cd "$(dirname "$0")/.."
./dev/setup.sh
nslab=.venv/bin/nslab
lab=examples/two-servers.yaml
trap '$nslab down -f $lab >/dev/null 2>&1 || true; rm -rf /run/www' EXIT
set -x
$nslab up -f $lab
# The services start in the background: wait until both answer inside the lab (by name, from each other).
for _ in $(seq 50); do
  $nslab exec web1 -- curl -sf http://web2:8080/ >/dev/null && $nslab exec web2 -- curl -sf http://web1.two:8080/ >/dev/null && break
  sleep 0.1
done
curl -s http://127.0.0.1:6000/
curl -s http://127.0.0.1:6001/
$nslab exec web1 -- hostname
$nslab exec web1 -- getent hosts web2
$nslab status two
$nslab logs web1
$nslab down -f $lab

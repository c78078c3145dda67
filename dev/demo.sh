#!/usr/bin/env bash
# Set up (dev/setup.sh), then bring the example lab up, use it, show it, and take it down again.
set -euo pipefail
cd "$(dirname "$0")/.."
./dev/setup.sh
nslab=.venv/bin/nslab
lab=examples/basic.yaml
trap '$nslab down -f $lab >/dev/null 2>&1 || true' EXIT
set -x
$nslab up -f $lab
$nslab exec web1 -- ping -c 1 -W 1 10.80.1.20
$nslab exec web1 -- ip -br addr
$nslab exec lonely -- ip -br addr
$nslab status demo
$nslab down -f $lab

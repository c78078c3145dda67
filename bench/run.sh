#!/bin/sh
# The benchmark suite in one command (see bench/README.md); arguments pass through to `python -m bench`.
#   sudo bench/run.sh                         # full suite
#   sudo bench/run.sh --sizes 10 --repeat 3   # quick run
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" && exec "$here/.venv/bin/python" -m bench "$@"

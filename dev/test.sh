#!/usr/bin/env bash
# Set up (dev/setup.sh), then run the whole suite: lint (ruff), types (mypy --strict src), complexity (no
# function above 15, dev/complexity.py), dead code (vulture, settings in pyproject.toml), unit, integration and
# acceptance tests. Every integration/acceptance test runs in its own throwaway host; the run ends by
# proving the real machine got no new namespace, link, nft table, /etc/netns entry or nslab state.
set -euo pipefail
cd "$(dirname "$0")/.."
./dev/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python dev/complexity.py src/nslab bench dev  # (not tests: each assert counts, and a test is a list of them)
.venv/bin/vulture
exec .venv/bin/pytest -q -p no:cacheprovider tests "$@"

#!/usr/bin/env bash
# Set up everything nslab needs on a fresh Debian 12 machine (run as root): the kernel tools it drives or
# tests against (apt), and a virtualenv in .venv with nslab installed in editable mode plus test tools.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(iproute2 nftables iptables util-linux procps iputils-ping curl iperf3 busybox-static docker.io python3 python3-venv chromium libpcap0.8 tcpdump
          slirp4netns uidmap)  # (the last two: rootless labs, daemons/keeper.py)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import nslab, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ] || [ bin/nslab -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
# nslab starts without Python's site (-S: ~5 ms of every command; bin/nslab finds its packages itself). pip
# writes the #! line without flags, so it is added here, after every install.
head -1 .venv/bin/nslab | grep -q -- ' -S$' || sed -i '1s/$/ -S/' .venv/bin/nslab
# Byte-compile now (PYTHONDONTWRITEBYTECODE may be set): a command's first run should not pay for it.
.venv/bin/python -m compileall -q src >/dev/null

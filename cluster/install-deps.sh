#!/usr/bin/env bash
# Installs the Debian packages Barge builds against and benchmarks with.
# Idempotent: it runs `apt-get update` and `apt-get install` only when something is missing.
set -euo pipefail

# -dev packages for the C libraries Barge links (zstd, lz4, xxhash, libcrypto, sqlite3 for the journal), pkg-config to find
# them, the reference tools the benchmarks compare against (zstd, lz4, xxhsum, openssl, an rsync daemon,
# iperf3), ping and ip for the WAN test bed (cluster/wan-testbed.sh), tcpdump for the test that
# captures loopback to prove the wire is encrypted, and gcc for the delay line of
# the long-RTT test bed (../shared/tools/delayline), and prometheus for promtool, which checks /metrics
# and the alert rules in the tests, chromium (headless) for the dashboard test, and curl.
packages=(pkg-config libzstd-dev liblz4-dev libxxhash-dev libssl-dev libsqlite3-dev zstd lz4 xxhash openssl rsync iperf3 iputils-ping iproute2 tcpdump
          gcc libc6-dev prometheus python3-venv chromium curl)
# --peers: also the transfer tools cluster/bench-peers.sh runs side by side (GridFTP, XRootD).
if [[ ${1:-} == --peers ]]; then
  packages+=(globus-gridftp-server-progs globus-gass-copy-progs xrootd-server xrootd-client)
fi

# PyPI packages, into .build-venv/ (ignored by git): schemathesis, which the test suite runs
# against a live coordinator and docs/openapi.yaml. (cluster/bench-filters.sh adds python-blosc2.)
python_packages() {
  local venv=.build-venv
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -c "import schemathesis" 2>/dev/null || "$venv/bin/pip" install -q schemathesis >&2
}
cd "$(dirname "$0")/.."

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  python_packages
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
python_packages

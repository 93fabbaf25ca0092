#!/usr/bin/env bash
# A WAN in a box: network namespaces A, router and B, joined by veth pairs, with the router's
# egress towards B shaped by tbf with a deep queue (netem is not available on this kernel).
#
#   A (10.77.1.1) ── veth ── router ── veth, tbf RATE, QUEUE ms deep ── B (10.77.2.1)
#
# Usage (as root):
#   cluster/wan-testbed.sh up [RATE] [QUEUE_MS] [DELAY_MS]   e.g. up 400mbit 60 25
#       (default 400mbit, 60 ms, no delay). DELAY_MS adds that much delay each way (the RTT grows
#       by twice it): the router then sends what it forwards through ../shared/tools/delayline
#       (a TUN delay line, its testbed.sh), with the same names and addresses.
#   cluster/wan-testbed.sh shape RATE [QUEUE_MS]   change the shaping of a running bed
#   cluster/wan-testbed.sh down
#   cluster/wan-testbed.sh run a|b|r COMMAND...    run a command in a namespace
#
# BARGE_NETNS_PREFIX (default "bwan") names the namespaces and links, so that two beds can coexist.
# With a delay: BARGE_DELAYLINE (default ../shared/tools/delayline/testbed.sh beside the checkout)
# and DL_BIN (where the delay line is built, default .build/delayline/delayline, since ../shared
# may be read-only).
set -euo pipefail
P=${BARGE_NETNS_PREFIX:-bwan}
A=${P}-a R=${P}-r B=${P}-b
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
delaybed=${BARGE_DELAYLINE:-$repo/../shared/tools/delayline/testbed.sh}
# The delay line's bed with this bed's names (P-a, P-r, P-b, P-rb…) and addresses (10.77.x).
dl_rundir=${DL_RUNDIR:-${TMPDIR:-/tmp}/delayline-$P-r}
delayline() { DL_PREFIX=$P DL_NET=10.77 DL_BIN=${DL_BIN:-$repo/.build/delayline/delayline} "$delaybed" "$@"; }

need_root() {
  if [[ $(id -u) -ne 0 ]]; then echo "wan-testbed: needs root (network namespaces)" >&2; exit 77; fi
  command -v ip >/dev/null && command -v tc >/dev/null || { echo "wan-testbed: needs ip and tc (iproute2)" >&2; exit 77; }
}

# tbf: a burst of 5 ms at the rate (at least 64 KiB, for the timer's granularity), and a queue
# QUEUE_MS deep at the rate: a cubic flow fills it, which is the delay a scavenger must avoid.
shape() {
  local rate=$1 queue_ms=${2:-60}
  local bits
  bits=$(python3 -c "
import re,sys
m=re.fullmatch(r'([0-9.]+)([kmg]?)bit', sys.argv[1].lower())
if not m: sys.exit('wan-testbed: rate must look like 400mbit, 1gbit or 100mbit, not ' + sys.argv[1])
print(int(float(m.group(1)) * {'':1,'k':1e3,'m':1e6,'g':1e9}[m.group(2)]))" "$rate")
  local burst=$(( bits / 8 / 200 )); (( burst < 65536 )) && burst=65536
  ip netns exec "$R" tc qdisc replace dev "${P}-rb" root tbf rate "$rate" burst "$burst" latency "${queue_ms}ms"
}

case ${1:-} in
  up)
    need_root
    "$0" down 2>/dev/null || true
    delay=${4:-0}
    [[ $delay =~ ^[0-9]+$ ]] || { echo "wan-testbed: DELAY_MS must be a whole number of milliseconds, not '$delay'" >&2; exit 2; }
    if ((delay > 0)); then
      [[ -x $delaybed ]] || { echo "wan-testbed: a delay needs $delaybed (set BARGE_DELAYLINE)" >&2; exit 77; }
      mkdir -p "$(dirname "${DL_BIN:-$repo/.build/delayline/delayline}")"
      delayline up "${2:-400mbit}" "$delay" "${3:-60}" >&2
      # The delay line at real-time priority, and a deeper router backlog: the bed's delay and losses
      # are then the path's, not this machine's CPU contention (delayline-steady.sh says why).
      "$repo/cluster/delayline-steady.sh" up "$dl_rundir"
      # This bed's own shaping toward B (its burst and queue), over the delay bed's.
      shape "${2:-400mbit}" "${3:-60}"
      echo "wan-testbed: A 10.77.1.1 → router → B 10.77.2.1, ${delay} ms each way, shaped at ${2:-400mbit} with a ${3:-60} ms queue" >&2
      exit 0
    fi
    for ns in "$A" "$R" "$B"; do ip netns add "$ns"; ip netns exec "$ns" ip link set lo up; done
    ip link add "${P}-a0" type veth peer name "${P}-ra"
    ip link add "${P}-rb" type veth peer name "${P}-b0"
    ip link set "${P}-a0" netns "$A"; ip link set "${P}-ra" netns "$R"
    ip link set "${P}-rb" netns "$R"; ip link set "${P}-b0" netns "$B"
    ip -n "$A" addr add 10.77.1.1/24 dev "${P}-a0"; ip -n "$A" link set "${P}-a0" up
    ip -n "$R" addr add 10.77.1.254/24 dev "${P}-ra"; ip -n "$R" link set "${P}-ra" up
    ip -n "$R" addr add 10.77.2.254/24 dev "${P}-rb"; ip -n "$R" link set "${P}-rb" up
    ip -n "$B" addr add 10.77.2.1/24 dev "${P}-b0"; ip -n "$B" link set "${P}-b0" up
    ip -n "$A" route add default via 10.77.1.254
    ip -n "$B" route add default via 10.77.2.254
    ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
    shape "${2:-400mbit}" "${3:-60}"
    echo "wan-testbed: A 10.77.1.1 → router → B 10.77.2.1, shaped at ${2:-400mbit} with a ${3:-60} ms queue" >&2
    ;;
  shape)
    need_root
    shape "${2:?rate}" "${3:-60}"
    ;;
  down)
    # Stops the delay line too, when the bed has one.
    "$repo/cluster/delayline-steady.sh" restore "$dl_rundir" 2>/dev/null || true
    [[ -x $delaybed ]] && delayline down > /dev/null 2>&1 || true
    for ns in "$A" "$R" "$B"; do ip netns del "$ns" 2>/dev/null || true; done
    ;;
  run)
    need_root
    ns=${2:?a, b or r}; shift 2
    case $ns in a) ns=$A ;; b) ns=$B ;; r) ns=$R ;; *) echo "wan-testbed: namespace must be a, b or r" >&2; exit 2 ;; esac
    exec ip netns exec "$ns" "$@"
    ;;
  *)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

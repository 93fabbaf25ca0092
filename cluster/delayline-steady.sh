#!/usr/bin/env bash
# Keeps the delay test bed (../shared/tools/delayline/testbed.sh) a faithful path on a small machine,
# where the tools under test share the CPUs with the delay line and the router's packet processing.
#
#   cluster/delayline-steady.sh up RUNDIR     after `testbed.sh up`; RUNDIR is the bed's DL_RUNDIR
#                                             (default ${TMPDIR:-/tmp}/delayline-NSR), which holds its pid
#   cluster/delayline-steady.sh restore RUNDIR   puts net.core.netdev_max_backlog back as `up` found it
#   cluster/delayline-steady.sh mark RUNDIR      only notes the kernel's backlog drops so far (`up` does too)
#   cluster/delayline-steady.sh report RUNDIR    one line: how late the delay line released packets, and
#                                                the packets the kernel's backlogs dropped since the mark
#
# Why. On the 2-core VM, 1 Gbit/s and RTT 100 ms, while an agent pair hashed, sealed and wrote:
# - delayline at normal priority released packets up to 80 ms late (0.8 ms on average): it waited for
#   a CPU behind the agents, its ring became a queue, and every such wait looked like congestion to
#   any sender. At SCHED_FIFO priority 50 (it sleeps in ppoll between releases, so it takes a CPU only
#   to forward): 0.06-0.11 ms late on average, 8-26 ms at most;
# - the router's backlog (net.core.netdev_max_backlog, 1000 packets) overflowed when the CPU that RPS
#   steers the TUN's packets to was busy: 1,600-56,000 packets dropped per 1 GiB job or 10 s of
#   iperf3, none of them at the tbf that models the path's queue. At 10000, 0-1,700.
# A real path's router does not share its CPUs with the hosts at either end, so neither delay nor
# loss from that sharing belongs in the path. Both changes apply to every tool that crosses the bed.
# The backlog is a host-wide setting: `restore` puts it back (the benchmarks do on exit).
set -euo pipefail
backlog_wanted=10000

softnet_drops() {
  python3 -c "print(sum(int(l.split()[1], 16) for l in open('/proc/net/softnet_stat')))"
}

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-}; rundir=${2:-}
[[ -n $rundir ]] || usage
case $cmd in
  up)
    pid=$(cat "$rundir/pid" 2>/dev/null) || { echo "delayline-steady: no delay line in $rundir" >&2; exit 1; }
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == delayline ]] || { echo "delayline-steady: pid $pid is not a delay line" >&2; exit 1; }
    chrt -f -p 50 "$pid"
    now=$(sysctl -n net.core.netdev_max_backlog)
    [[ -f $rundir/backlog-before ]] || echo "$now" > "$rundir/backlog-before"
    ((now >= backlog_wanted)) || sysctl -qw net.core.netdev_max_backlog=$backlog_wanted
    softnet_drops > "$rundir/softnet-drops-at-up"
    echo "delayline-steady: delay line $pid at SCHED_FIFO 50; net.core.netdev_max_backlog $now -> $(sysctl -n net.core.netdev_max_backlog)" >&2
    ;;
  mark)
    softnet_drops > "$rundir/softnet-drops-at-up"
    ;;
  restore)
    if [[ -f $rundir/backlog-before ]]; then
      sysctl -qw net.core.netdev_max_backlog="$(cat "$rundir/backlog-before")"
      rm -f "$rundir/backlog-before"
    fi
    ;;
  report)
    pid=$(cat "$rundir/pid" 2>/dev/null) || { echo "delay line not running"; exit 0; }
    log=$rundir/log
    kill -USR1 "$pid"; sleep 0.2
    late=$(tail -n 1 "$log" | grep -o 'late_avg_us=[0-9.]* late_max_us=[0-9.]*' || true)
    drops=$(( $(softnet_drops) - $(cat "$rundir/softnet-drops-at-up" 2>/dev/null || echo 0) ))
    echo "delay line: ${late:-no counters}; packets dropped by the kernel's backlogs since the bed came up: $drops (net.core.netdev_max_backlog $(sysctl -n net.core.netdev_max_backlog))"
    ;;
  *) usage ;;
esac

# Shared by the bench scripts (sourced): a work directory removed on exit with every process
# started, the barge binary (BARGE_BIN, or a release build), small helpers, and a local cluster.

# bench_init NAME: sets out, work, pids, barge.
bench_init() {
  out=bench-out
  mkdir -p "$out"
  bench_name=$1
  work=$(mktemp -d "${TMPDIR:-/tmp}/barge-bench-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
  ./cluster/install-deps.sh
  if [[ -n ${BARGE_BIN:-} ]]; then barge=$BARGE_BIN; else swift build -c release --product barge >&2; barge=$PWD/.build/release/barge; fi
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  # KEEP_LOGS=1: the agents' and coordinator's logs are kept in bench-out/logs-NAME.
  if [[ ${KEEP_LOGS:-0} == 1 ]]; then mkdir -p "$out/logs-$bench_name" && cp "$work"/*.log "$out/logs-$bench_name/" 2>/dev/null || true; fi
  rm -rf "$work"
}

# bench_fresh_fs DIR SIZE [BYTES_PER_INODE]: a new ext4 file system (with its journal, as on most servers) in a
# sparse file, mounted at DIR, when this runs as root; else DIR is an ordinary directory (and the
# reason is printed). A fresh file system keeps one tool's deletions from charging the next: ext4
# without a journal skips inodes freed in the last minutes when it allocates, which costs more CPU
# the more there are.
mounts=() loops=()
bench_fresh_fs() {
  mkdir -p "$1"
  if [[ $(id -u) != 0 ]]; then echo "not root: $1 stays on the work directory's file system" >&2; return; fi
  truncate -s "$2" "$work/fs-$(basename "$1").img"
  mkfs.ext4 -q -F ${3:+-i "$3"} "$work/fs-$(basename "$1").img"
  # The loop device reads and writes its image with direct I/O, as a disk's controller does by
  # DMA. Without it every block written to this file system is copied once more, into the image's
  # own page cache, by a kernel worker: on 2 cores that took 0.6 of a core from a tool that
  # syncs while it runs (Barge, rsync --fsync), and nothing from one that leaves its writes for
  # later (the rsync daemon, GridFTP).
  local dev=""
  if dev=$(losetup --direct-io="${LOOP_DIRECT_IO:-on}" --find --show "$work/fs-$(basename "$1").img") && mount "$dev" "$1"; then
    mounts+=("$1"); loops+=("$dev")
  else
    if [[ -n $dev ]]; then losetup -d "$dev" 2>/dev/null || true; fi
    echo "no loop mount: $1 stays on the work directory's file system" >&2
  fi
}

# A port that is free now; the listeners bind it a moment later.
free_port() { while :; do p=$((20000 + RANDOM % 40000)); (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print ($1) }"; }
# CPU seconds (user + system) a process has used so far.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
# CPU seconds of a process's reaped children (the rsync daemon forks one per connection).
children_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($16 + $17) / hz }' "/proc/$1/stat"; }
# CPU seconds of processes so far, each with the children it has reaped (a daemon that forks a
# process per connection: the rsync daemon, GridFTP); 0 for one that has gone.
cpu_with_children() {
  local p total=0
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    total=$(calc "$total + $(cpu_secs "$p") + $(children_cpu "$p")")
  done
  echo "$total"
}
# A number field of a JSON object in a file.
field() { grep -o "\"$1\":[0-9.]*" "$2" | head -1 | cut -d: -f2; }

# bench_cluster: a coordinator, a1 (site a, root $work/a) and b1 (site b, root $work/b), once both
# agents are up. Sets coordinator, a1, b1 (pids), url; exports BARGE_TOKEN_FILE,
# BARGE_COORDINATOR and BARGE_API_TOKEN_FILE (the admin token the coordinator writes).
# COORDINATOR_ARGS and AGENT_ARGS are passed on.
bench_cluster() {
  mkdir -p "$work/a" "$work/b"
  (umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
  export BARGE_TOKEN_FILE=$work/token
  local agent_port http_port
  agent_port=$(free_port); http_port=$(free_port)
  url=http://127.0.0.1:$http_port
  export BARGE_COORDINATOR=$url BARGE_API_TOKEN_FILE=$work/state/admin.token
  "$barge" coordinator --state "$work/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" ${COORDINATOR_ARGS:-} > "$work/coordinator.log" 2>&1 &
  pids+=($!); coordinator=$!
  sleep 0.5
  "$barge" agent --coordinator "127.0.0.1:$agent_port" --name a1 --site a --root "$work/a" ${AGENT_ARGS:-} > "$work/a1.log" 2>&1 &
  pids+=($!); a1=$!
  "$barge" agent --coordinator "127.0.0.1:$agent_port" --name b1 --site b --root "$work/b" ${AGENT_ARGS:-} > "$work/b1.log" 2>&1 &
  pids+=($!); b1=$!
  for _ in $(seq 1 100); do
    [[ $("$barge" agents --json 2>/dev/null | grep -o '"up"' | wc -l) -ge 2 ]] && return
    sleep 0.2
  done
  echo "the agents did not register; see $work/*.log" >&2
  exit 1
}

# bench_rsyncd: an rsync daemon on loopback whose module `dst` is $work/r. Sets rsync_port and
# rsyncd (its pid).
bench_rsyncd() {
  rsync_port=$(free_port)
  mkdir -p "$work/r"
  cat > "$work/rsyncd.conf" <<CONF
pid file = $work/rsyncd.pid
use chroot = false
[dst]
  path = $work/r
  read only = false
  uid = $(id -u)
  gid = $(id -g)
CONF
  rsync --daemon --no-detach --config "$work/rsyncd.conf" --port "$rsync_port" --address 127.0.0.1 &
  pids+=($!); rsyncd=$!
  sleep 0.5
}

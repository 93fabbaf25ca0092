#!/usr/bin/env bash
# Starts a coordinator and N agents on this machine, for trying Barge by hand:
#
#   cluster/local-cluster.sh            # 2 sites × 1 agent, in ./local-cluster
#   AGENTS_PER_SITE=2 cluster/local-cluster.sh
#   BARGE_BIN=.build-rel/release/barge cluster/local-cluster.sh   # a binary built elsewhere
#
# The agents of a site share one root (DIR/roots/site-a, …), as on a parallel file system, and one
# cold store (DIR/cold/site-a, …). Logs go to DIR/logs/. The script builds only when a source is
# newer than the binary, prints the environment to use the CLI against it and the dashboard's
# address, and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${CLUSTER_DIR:-$PWD/local-cluster}
per_site=${AGENTS_PER_SITE:-1}
agent_port=${AGENT_PORT:-7470}
http_port=${HTTP_PORT:-7480}

./cluster/install-deps.sh
barge=${BARGE_BIN:-$PWD/.build/release/barge}   # BARGE_BIN: a barge built elsewhere, used as is
if [[ -n ${BARGE_BIN:-} ]]; then
  :
elif [[ ! -x $barge ]] || [[ -n $(find Sources Package.swift -newer "$barge" -print -quit) ]]; then
  swift build -c release --product barge >&2
else
  echo "local-cluster: $barge is newer than every source; not rebuilding" >&2
fi

mkdir -p "$dir/logs"
token="$dir/token"
if [[ ! -s $token ]]; then
  (umask 077; head -c 32 /dev/urandom | base64 > "$token")
  chmod 600 "$token"
fi
export BARGE_TOKEN_FILE=$token

pids=()
stop() {
  echo "stopping…" >&2
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap "exit 130" INT TERM

"$barge" coordinator --state "$dir/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" \
  > "$dir/logs/coordinator.log" 2>&1 &
pids+=($!)

for site in a b; do
  # One root and one cold store per site, shared by its agents.
  mkdir -p "$dir/roots/site-$site" "$dir/cold/site-$site"
  for i in $(seq 1 "$per_site"); do
    name="$site$i"
    "$barge" agent --coordinator "127.0.0.1:$agent_port" --name "$name" --site "site-$site" \
      --root "$dir/roots/site-$site" --cold "$dir/cold/site-$site" --listen 127.0.0.1:0 > "$dir/logs/$name.log" 2>&1 &
    pids+=($!)
  done
done

export BARGE_COORDINATOR=http://127.0.0.1:$http_port
# The admin API token the coordinator writes on its first start.
export BARGE_API_TOKEN_FILE=$dir/state/admin.token
for _ in $(seq 1 50); do
  count=$("$barge" agents --json 2>/dev/null | grep -o '"state":"up"' | wc -l || true)
  [[ $count -ge $((2 * per_site)) ]] && break
  sleep 0.2
done
"$barge" agents
cat <<MSG

Cluster running in $dir (logs in $dir/logs). Put data under $dir/roots/site-a, then in another shell:
  export BARGE_TOKEN_FILE=$token BARGE_COORDINATOR=$BARGE_COORDINATOR BARGE_API_TOKEN_FILE=$BARGE_API_TOKEN_FILE
  $barge agents
  $barge submit site-a:/ds site-b:/ds --wait
Dashboard: $BARGE_COORDINATOR/?token=$(cat "$BARGE_API_TOKEN_FILE" 2>/dev/null)
Ctrl-C stops it.
MSG
wait

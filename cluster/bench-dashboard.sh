#!/usr/bin/env bash
# The web dashboard's cost and the event stream's delay at scale (issue 18's targets):
#   - a cluster of AGENTS agents (half per site, each site's agents sharing one root) running JOBS
#     capped transfers at once;
#   - phase 1, BASELINE seconds with no dashboard: the coordinator's CPU seconds per second;
#   - phase 2, DURATION seconds with the dashboard open in headless Chromium (Debian's chromium):
#     the same, and the difference is the dashboard's cost, as a share of one core;
#   - phase 3, GET /v1/events read by a plain client while CANCELS jobs are cancelled one by one:
#     for each, the time from `barge cancel` returning (the state is journalled) to the first
#     event that shows it, and the gaps between events.
#
#   cluster/bench-dashboard.sh                              # 50 agents, 100 jobs, 300 s + 600 s
#   BARGE_BIN=.build-rel/release/barge BASELINE=60 DURATION=120 cluster/bench-dashboard.sh
#
# Output goes to bench-out/dashboard.txt (a table) and bench-out/dashboard.json.
set -euo pipefail
cd "$(dirname "$0")/.."

agents=${AGENTS:-50}
jobs=${JOBS:-100}
baseline=${BASELINE:-300}
duration=${DURATION:-600}
cancels=${CANCELS:-20}
# Each job moves the same 64 MiB at this cap, so that every job still runs at the end.
cap=${CAP:-48KiB/s}
source cluster/bench-lib.sh
bench_init dashboard
chromium=$(command -v chromium || command -v chromium-browser || true)
[[ -n $chromium ]] || { echo "chromium is missing: cluster/install-deps.sh installs it" >&2; exit 1; }

echo "generating the source dataset (64 MiB in 16 random files) …" >&2
mkdir -p "$work/a/ds" "$work/b"
for i in $(seq 1 16); do openssl rand -out "$work/a/ds/part-$i.bin" $((4 << 20)); done
(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token
agent_port=$(free_port); http_port=$(free_port)
url=http://127.0.0.1:$http_port
export BARGE_COORDINATOR=$url BARGE_API_TOKEN_FILE=$work/state/admin.token
"$barge" coordinator --state "$work/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" > "$work/coordinator.log" 2>&1 &
pids+=($!); coordinator=$!
sleep 0.5
for i in $(seq 1 "$agents"); do
  site=$([[ $i -le $((agents / 2)) ]] && echo a || echo b)
  "$barge" agent --coordinator "127.0.0.1:$agent_port" --name "$site$i" --site "$site" --root "$work/$site" --max-units 2 > "$work/agent-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 300); do
  [[ $("$barge" agents --json 2>/dev/null | grep -o '"up"' | wc -l) -ge $agents ]] && break
  sleep 0.2
done
up=$("$barge" agents --json | grep -o '"up"' | wc -l)
[[ $up -ge $agents ]] || { echo "only $up of $agents agents registered; see $work/*.log" >&2; exit 1; }

echo "submitting $jobs jobs capped at $cap …" >&2
: > "$work/jobs"
for j in $(seq 1 "$jobs"); do "$barge" submit a:ds "b:out-$j" --bwlimit "$cap" >> "$work/jobs"; done
sleep 20
running=$("$barge" jobs --json | grep -o '"state":"running"' | wc -l)
echo "$running jobs running" >&2

# phase CPU SECONDS: the coordinator's CPU seconds over SECONDS.
phase() { local c0 c1; c0=$(cpu_secs "$coordinator"); sleep "$1"; c1=$(cpu_secs "$coordinator"); calc "$c1 - $c0"; }

echo "phase 1: $baseline s without a dashboard …" >&2
cpu_base=$(phase "$baseline")
echo "phase 2: $duration s with the dashboard open in headless Chromium …" >&2
token=$(cat "$work/state/admin.token")
"$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$work/chromium" \
  --remote-debugging-port="$(free_port)" "$url/?token=$token" > "$work/chromium.log" 2>&1 &
pids+=($!); browser=$!
sleep 5
streams_open=$(ss -tn state established "( sport = :$http_port )" | tail -n +2 | wc -l)
cpu_dash=$(phase "$duration")
kill "$browser" 2>/dev/null || true

echo "phase 3: the event stream while $cancels jobs are cancelled …" >&2
cat > "$work/events.py" <<'EOF'
import json, sys, time, urllib.request
url, token, log = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url + "/v1/events", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(req) as r, open(log, "w") as out:
    data = []
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            s = json.loads("".join(data)); data = []
            out.write(json.dumps({"t": time.time(), "jobs": len(s["jobs"]), "agents": len(s["agents"]),
                                  "cancelled": [j["id"] for j in s["jobs"] if j["state"] == "cancelled"]}) + "\n")
            out.flush()
EOF
python3 "$work/events.py" "$url" "$token" "$work/events.jsonl" &
pids+=($!); reader=$!
sleep 3
: > "$work/cancels"
head -n "$cancels" "$work/jobs" | while read -r job; do
  sleep "0.$((RANDOM % 900 + 100))"
  "$barge" cancel "$job" > /dev/null
  echo "$job $(now)" >> "$work/cancels"
done
sleep 3
kill "$reader" 2>/dev/null || true

python3 - "$work/cancels" "$work/events.jsonl" "$cpu_base" "$baseline" "$cpu_dash" "$duration" "$agents" "$jobs" "$running" "$streams_open" > "$out/dashboard.json" <<'EOF'
import json, sys
cancels = [l.split() for l in open(sys.argv[1]) if l.strip()]
events = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
delays = []
for job, t in cancels:
    seen = next((e["t"] for e in events if e["t"] >= float(t) - 5 and job in e["cancelled"]), None)
    delays.append(None if seen is None else max(0.0, seen - float(t)))
gaps = sorted(b["t"] - a["t"] for a, b in zip(events, events[1:]))
cpu_base, base, cpu_dash, dur = map(float, sys.argv[3:7])
known = sorted(d for d in delays if d is not None)
pct = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else None
print(json.dumps({
    "agents": int(sys.argv[7]), "jobs": int(sys.argv[8]), "jobs_running": int(sys.argv[9]), "dashboard_connections": int(sys.argv[10]),
    "coordinator_cpu_share_without": cpu_base / base, "coordinator_cpu_share_with_dashboard": cpu_dash / dur,
    "dashboard_cpu_share": cpu_dash / dur - cpu_base / base, "baseline_s": base, "dashboard_s": dur,
    "events": len(events), "event_gap_p50_s": pct(gaps, 0.5), "event_gap_max_s": gaps[-1] if gaps else None,
    "cancel_to_event_p50_s": pct(known, 0.5), "cancel_to_event_max_s": known[-1] if known else None,
    "cancels": len(cancels), "cancels_never_seen": sum(d is None for d in delays),
    "jobs_in_last_event": events[-1]["jobs"] if events else 0, "agents_in_last_event": events[-1]["agents"] if events else 0}))
EOF
python3 - "$out/dashboard.json" <<'EOF' | tee "$out/dashboard.txt"
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
print(f"{r['agents']} agents, {r['jobs']} jobs ({r['jobs_running']} running at the start); dashboard connections seen: {r['dashboard_connections']}")
print("| measure | value |\n|---|---|")
print(f"| coordinator CPU, no dashboard ({r['baseline_s']:.0f} s) | {100 * r['coordinator_cpu_share_without']:.2f}% of a core |")
print(f"| coordinator CPU, dashboard open ({r['dashboard_s']:.0f} s) | {100 * r['coordinator_cpu_share_with_dashboard']:.2f}% of a core |")
print(f"| the dashboard's cost (difference) | {100 * r['dashboard_cpu_share']:.2f}% of a core (target <= 2%) |")
print(f"| events received, gap p50 / max | {r['events']}, {f(r['event_gap_p50_s'])} s / {f(r['event_gap_max_s'])} s |")
print(f"| cancel to event, p50 / max ({r['cancels']} cancels, {r['cancels_never_seen']} never seen) | {f(r['cancel_to_event_p50_s'])} s / {f(r['cancel_to_event_max_s'])} s (target <= 1 s) |")
print(f"| jobs / agents in the last event | {r['jobs_in_last_event']} / {r['agents_in_last_event']} |")
EOF

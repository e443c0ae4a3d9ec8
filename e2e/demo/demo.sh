#!/usr/bin/env bash
# make demo: a source Prometheus, a receiver Prometheus (remote-write receiver) and collector
# between them, on free loopback ports with temporary directories. Ctrl-C stops every process it
# started, by PID, and removes its files.
#
#   DEMO_OUTAGE=1     stop the receiver for DEMO_OUTAGE_SECONDS (60), show the backlog, restart it,
#                     show the drain (make demo-outage)
#   DEMO_DURATION=N   stop by itself after N seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin/collector
OUTAGE=${DEMO_OUTAGE:-0}
OUTAGE_SECONDS=${DEMO_OUTAGE_SECONDS:-60}
DURATION=${DEMO_DURATION:-0}
ID=demo-cluster

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v prometheus >/dev/null 2>&1; then
	say "installing Debian's prometheus package"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The Debian package may start its own service; it is not ours to keep.
systemctl stop prometheus >/dev/null 2>&1 || true

say "building collector"
make -s build

TMP=$(mktemp -d /tmp/collector-demo.XXXXXX)
PIDS=()
cleanup() {
	trap - EXIT INT TERM
	say "stopping ${PIDS[*]:-nothing} and removing $TMP"
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
SRC=$(free_port); RCV=$(free_port); COL=$(free_port)
while [ "$RCV" = "$SRC" ]; do RCV=$(free_port); done
while [ "$COL" = "$SRC" ] || [ "$COL" = "$RCV" ]; do COL=$(free_port); done

wait_http() { # url seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "timed out waiting for $1" >&2
	return 1
}

cat >"$TMP/source.yml" <<YML
global:
  scrape_interval: 5s
  external_labels:
    prometheus: demo/source
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$SRC"]}]
  - job_name: collector
    static_configs: [{targets: ["127.0.0.1:$COL"]}]
YML
echo "global: {}" >"$TMP/receiver.yml"

start_receiver() {
	prometheus --config.file="$TMP/receiver.yml" --storage.tsdb.path="$TMP/receiver" \
		--web.listen-address="127.0.0.1:$RCV" --web.enable-remote-write-receiver \
		--log.level=warn >>"$TMP/receiver.log" 2>&1 &
	RCV_PID=$!
	PIDS+=("$RCV_PID")
	wait_http "http://127.0.0.1:$RCV/-/ready" 60
}

say "source Prometheus on 127.0.0.1:$SRC"
prometheus --config.file="$TMP/source.yml" --storage.tsdb.path="$TMP/source" \
	--web.listen-address="127.0.0.1:$SRC" --log.level=warn >"$TMP/source.log" 2>&1 &
PIDS+=("$!")
say "receiver Prometheus on 127.0.0.1:$RCV (--web.enable-remote-write-receiver)"
start_receiver
wait_http "http://127.0.0.1:$SRC/-/ready" 60

say "collector on 127.0.0.1:$COL, WAL in $TMP/wal"
"$BIN" run --id "$ID" --from "http://127.0.0.1:$SRC" \
	--match '{job="prometheus"}' --match '{job="collector"}' \
	--label environment=demo --interval 10s \
	--to-upload "http://127.0.0.1:$RCV/api/v1/write" --wal-dir "$TMP/wal" \
	--listen "127.0.0.1:$COL" --wal-truncate-interval 10s --max-backoff 5s \
	>"$TMP/collector.log" 2>&1 &
COL_PID=$!
PIDS+=("$COL_PID")
wait_http "http://127.0.0.1:$COL/healthz" 30

count() { # series of the demo cluster at the receiver
	curl -fsS "http://127.0.0.1:$RCV/api/v1/query" --data-urlencode "query=count({clusterID=\"$ID\"})" 2>/dev/null |
		sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)"\].*/\1/p'
}
say "waiting for the first samples at the receiver"
for ((i = 0; i < 600; i++)); do
	n=$(count || true)
	[ -n "$n" ] && [ "$n" -gt 0 ] && break
	sleep 0.1
done
[ -n "${n:-}" ] && [ "$n" -gt 0 ] || { echo "no data arrived; collector log:" >&2; tail -20 "$TMP/collector.log" >&2; exit 1; }
# The acknowledged position is made durable every second: wait for it, so that the status below
# shows the delivery the receiver already has.
for ((i = 0; i < 50; i++)); do
	"$BIN" wal status --wal-dir "$TMP/wal" 2>/dev/null | grep -q 'none yet' || break
	sleep 0.1
done

cat <<TXT

  Data flows. $n series of cluster $ID are at the receiver.
    receiver query:  http://127.0.0.1:$RCV/graph?g0.expr=%7BclusterID%3D%22$ID%22%7D
    collector:       http://127.0.0.1:$COL/metrics   /readyz
    backlog:         $BIN wal status --wal-dir $TMP/wal
    logs:            $TMP/*.log

TXT
"$BIN" wal status --wal-dir "$TMP/wal"

if [ "$OUTAGE" = 1 ]; then
	say "hub outage: stopping the receiver for ${OUTAGE_SECONDS}s"
	kill "$RCV_PID"; wait "$RCV_PID" 2>/dev/null || true
	for ((t = 0; t < OUTAGE_SECONDS; t += 15)); do
		sleep 15
		say "backlog after $((t + 15))s of outage"
		"$BIN" wal status --wal-dir "$TMP/wal"
	done
	say "receiver back: the backlog drains"
	start_receiver
	for ((i = 0; i < 12; i++)); do
		sleep 5
		echo "$(date +%T)  $("$BIN" wal status --wal-dir "$TMP/wal" | tail -n1)"
	done
	"$BIN" wal status --wal-dir "$TMP/wal"
fi

if [ "$DURATION" -gt 0 ]; then
	sleep "$DURATION"
	exit 0
fi
say "running; Ctrl-C stops everything"
while kill -0 "$COL_PID" 2>/dev/null; do sleep 1; done
echo "collector exited; its log:" >&2
tail -20 "$TMP/collector.log" >&2
exit 1

#!/usr/bin/env bash
# A whole cluster on loopback, for a newcomer: one etcd member, one ubervisor and three
# supervisor nodes (each its own folder under run/cluster and its own port range), with the
# time service submitted as jobs. Ctrl-C stops all of it, by pid, and leaves nothing behind.
#
#   make cluster            (builds ./bin first)
#   ./bin/ubervisor ctl jobs / nodes      in another terminal; dashboard-less for now
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=run/cluster
ETCD_CLIENT=127.0.0.1:23790   # not the packaged service's 2379
ETCD_PEER=127.0.0.1:23800
UV=127.0.0.1:7272
mkdir -p "$ROOT" log
pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping: supervisors (they stop their tasks), then the ubervisor and etcd"
    # Supervisors first, so that no node is seen lost while the others still run.
    for p in "${sup_pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
    for p in "${sup_pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    echo "all stopped"
}
# Ctrl-C (or SIGTERM) is the way out: a clean stop exits 0.
trap 'stop; exit 0' INT TERM
trap stop EXIT
sup_pids=()

command -v etcd >/dev/null || { echo "etcd is missing: sudo apt-get install etcd-server" >&2; exit 1; }
etcd --name=cluster-demo --data-dir="$ROOT/etcd" \
    --listen-client-urls="http://$ETCD_CLIENT" --advertise-client-urls="http://$ETCD_CLIENT" \
    --listen-peer-urls="http://$ETCD_PEER" --initial-advertise-peer-urls="http://$ETCD_PEER" \
    --initial-cluster="cluster-demo=http://$ETCD_PEER" >"$ROOT/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${ETCD_CLIENT%:*}/${ETCD_CLIENT#*:}") 2>/dev/null && break
    sleep 0.1
done

./bin/ubervisor --etcd="http://$ETCD_CLIENT" --listen="$UV" --id=uv-1 >"$ROOT/ubervisor.log" 2>&1 &
pids+=($!)

for i in 1 2 3; do
    first=$((8200 + (i - 1) * 20))
    mkdir -p "$ROOT/n$i"
    ./bin/supervisor --etcd="http://$ETCD_CLIENT" --node="n$i" --node-cpu=1 --node-mem=1G \
        --listen="127.0.0.1:$((7180 + i))" --port-range="$first-$((first + 19))" \
        --log="$ROOT/n$i/supervisor.log" --dumpfile="$ROOT/n$i/supervisor.dump" </dev/null &
    sup_pids+=($!)
done

for _ in $(seq 100); do
    n=$(./bin/ubervisor ctl --addr="$UV" --json nodes 2>/dev/null | grep -c '"name"' || true)
    [ "$n" -ge 3 ] && break
    sleep 0.1
done
./bin/ubervisor ctl --addr="$UV" submit <<'JSON' >/dev/null
{"name": "authserver", "count": 1, "cpu": 200, "mem": 64,
 "task": {"command": ["./bin/authserver", "--log=etc/auth.xml"]}}
JSON
./bin/ubervisor ctl --addr="$UV" submit <<'JSON' >/dev/null
{"name": "timeserver", "count": 2, "cpu": 300, "mem": 64,
 "task": {"command": ["./bin/timeserver", "--log=etc/log-01.xml", "--port={{port}}"]}}
JSON
sleep 2
./bin/ubervisor ctl --addr="$UV" nodes
echo
./bin/ubervisor ctl --addr="$UV" jobs
echo
echo "etcd http://$ETCD_CLIENT, ubervisor http://$UV, nodes' APIs 127.0.0.1:7181-7183; logs in $ROOT"
echo "Ctrl-C stops everything."
wait "${pids[1]}"

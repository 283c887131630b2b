#!/usr/bin/env bash
# The reference workload's long run (`make bench`): `shardproxy orders dev`
# (3 throw-away shards, a metadata database, the proxy with
# testdata/orders, schema and seed data; no workers of its own), then
# `orders load` through the proxy with random participant failures and
# duplicated messages while its worker process is SIGKILLed and restarted.
# Prints throughput and latency percentiles; exits nonzero if an invariant
# is violated. Everything started here is stopped by PID on exit.
#
#   ORDERS_BENCH_ORDERS=2000 ORDERS_BENCH_CONCURRENCY=8
#   ORDERS_BENCH_KILL_EVERY=2s ORDERS_BENCH_STYLES="orchestration choreography"
set -euo pipefail

orders="${ORDERS_BENCH_ORDERS:-2000}"
concurrency="${ORDERS_BENCH_CONCURRENCY:-8}"
kill_every="${ORDERS_BENCH_KILL_EVERY:-2s}"
styles="${ORDERS_BENCH_STYLES:-orchestration choreography}"

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/bin/shardproxy"
[[ -x "$bin" ]] || { echo "orders bench: $bin missing; run 'make build'" >&2; exit 1; }

work="$(mktemp -d /tmp/shardproxy-orders-bench.XXXXXX)"
dev_pid=""
cleanup() {
	if [[ -n "$dev_pid" ]] && kill -0 "$dev_pid" 2>/dev/null; then
		kill -TERM "$dev_pid" # dev stops its servers on SIGTERM
		wait "$dev_pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# Port 0 everywhere: dev prints the addresses it got.
"$bin" --log-level error orders dev --listen 127.0.0.1:0 --http 127.0.0.1:0 --workers=false \
	--config "$root/testdata/orders/shardproxy.yaml.tmpl" --state "$work" >"$work/dev.log" 2>&1 &
dev_pid=$!
addr=""
for _ in $(seq 1 240); do
	addr="$(sed -n 's/^shardproxy is serving on \([^ ]*\) .*/\1/p' "$work/dev.log")"
	[[ -n "$addr" ]] && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
	sleep 0.5
done
[[ -n "$addr" ]] || { echo "orders bench: dev did not start" >&2; cat "$work/dev.log" >&2; exit 1; }
dsn="postgres://app:secret@$addr/app?sslmode=disable"

for style in $styles; do
	echo "orders bench: $style, $orders orders, $concurrency clients, workers SIGKILLed every ~$kill_every"
	"$bin" --log-level error orders load --dsn "$dsn" --style "$style" --orders "$orders" \
		--concurrency "$concurrency" --kill-every "$kill_every" --lease 3s --fail-rate 0.05 --duplicate-rate 0.1
done

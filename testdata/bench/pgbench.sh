#!/usr/bin/env bash
# pgbench -S through shardproxy vs direct Postgres, side by side (`make bench`).
#
# Two throw-away Postgres servers (testdata/cluster/pg.sh) on this machine:
#   direct: database "full" on s0 holds every pgbench row (scale BENCH_SCALE);
#   proxy:  database "bench" on s0 and on s1 each hold the accounts the
#           proxy's hash strategy gives them (pgbench_accounts sharded by aid
#           over s0+s1; branches/tellers/history unsharded on s0), served by
#           bin/shardproxy.
# For each -M mode it runs pgbench -n -S -c BENCH_CLIENTS -j BENCH_THREADS
# -T BENCH_TIME direct and through the proxy, then prints a table of TPS,
# the ratio proxy/direct, and the proxy's CPU time (user+system, from
# /proc) per transaction: on a shared machine TPS swings with other load,
# CPU per transaction much less, so compare changes by that column. Everything started here is stopped by PID on
# exit, also on failure or Ctrl-C.
#
#   BENCH_SCALE=10 BENCH_CLIENTS=8 BENCH_THREADS=2 BENCH_TIME=15 BENCH_POOL=10
#   BENCH_MODES="simple extended prepared"
#   BENCH_BACKEND=tcp|unix  how the proxy reaches the shards (default tcp: the
#                           same path pgbench takes to direct Postgres; unix:
#                           the shards' unix sockets, as a proxy on the
#                           shards' host would be deployed)
#   BENCH_CPUPROFILE=/tmp/proxy.prof   (CPU profile of the proxy, for go tool pprof)
set -euo pipefail

scale="${BENCH_SCALE:-10}"
clients="${BENCH_CLIENTS:-8}"
threads="${BENCH_THREADS:-2}"
duration="${BENCH_TIME:-15}"
poolsize="${BENCH_POOL:-10}"
modes="${BENCH_MODES:-simple extended prepared}"
cpuprofile="${BENCH_CPUPROFILE:-}"
backend="${BENCH_BACKEND:-tcp}"

root="$(cd "$(dirname "$0")/../.." && pwd)"
pg="$root/testdata/cluster/pg.sh"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1)"
[[ -n "$bin" ]] || { echo "pgbench.sh: no /usr/lib/postgresql/*/bin; run 'make deps'" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

work="$(mktemp -d /tmp/shardproxy-bench.XXXXXX)"
chmod 755 "$work"
proxy_pid=""
started=()
cleanup() {
	local rc=$?
	if [[ -n "$proxy_pid" ]]; then
		kill "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
	fi
	for d in "${started[@]}"; do
		bash "$pg" stop "$d" || true # pg_ctl stops the PID in postmaster.pid
	done
	if [[ $rc -ne 0 && -f "$work/proxy.log" ]]; then
		log "proxy log tail:"; tail -20 "$work/proxy.log" >&2
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

log "building bin/shardproxy"
(cd "$root" && go build -o bin/shardproxy ./cmd/shardproxy)

p0="$(free_port)" p1="$(free_port)" pp="$(free_port)"
for s in s0:$p0 s1:$p1; do
	bash "$pg" start "$work/${s%%:*}" "${s##*:}"
	started+=("$work/${s%%:*}")
done

# sql PORT DB STATEMENT... runs each statement with its own -c.
sql() {
	local dsn args=()
	dsn="$(bash "$pg" dsn "$1" "$2")"
	shift 2
	for q in "$@"; do args+=(-c "$q"); done
	"$bin/psql" -X -q -v ON_ERROR_STOP=1 "$dsn" "${args[@]}"
}

log "loading pgbench scale $scale (direct copy on s0, and each shard's part)"
sql "$p0" postgres "CREATE DATABASE full_set"
sql "$p0" postgres "CREATE DATABASE bench"
sql "$p1" postgres "CREATE DATABASE bench"
init() { "$bin/pgbench" -i -q -s "$scale" "$(bash "$pg" dsn "$1" "$2")" 2>&1 | tail -1 >&2; }
init "$p0" full_set & i1=$!
init "$p0" bench & i2=$!
init "$p1" bench & i3=$!
wait $i1 && wait $i2 && wait $i3

# Keep on shard i only the accounts the proxy places there. The proxy's
# hash strategy is Postgres' own hash partitioning (modulus = number of
# shards, remainder = shard index), so satisfies_hash_partition against a
# hash-partitioned table keyed like aid decides exactly as the proxy does.
for s in 0:$p0 1:$p1; do
	sql "${s##*:}" bench "
		CREATE TABLE shardproxy_bench_hash (aid int) PARTITION BY HASH (aid);
		DELETE FROM pgbench_accounts
		 WHERE NOT satisfies_hash_partition('shardproxy_bench_hash'::regclass, 2, ${s%%:*}, aid);
		DROP TABLE shardproxy_bench_hash;" \
		"VACUUM ANALYZE pgbench_accounts"
done
for t in pgbench_branches pgbench_tellers pgbench_history; do
	sql "$p1" bench "DROP TABLE $t" # unsharded tables live on s0 only
done

shard_dsn() { # PORT NAME
	if [[ "$backend" == unix ]]; then
		echo "postgres://postgres@/bench?host=$work/$2/data&port=$1&sslmode=disable"
	else
		bash "$pg" dsn "$1" bench
	fi
}
cat >"$work/shardproxy.yaml" <<YAML
listen: 127.0.0.1:$pp
users:
  - {name: app, password: secret}
metadata: {dsn: "$(bash "$pg" dsn "$p0" postgres)"}
pool: {size: $poolsize}
shards:
  - {name: s0, dsn: "$(shard_dsn "$p0" s0)"}
  - {name: s1, dsn: "$(shard_dsn "$p1" s1)"}
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  pgbench_accounts: {key: aid, strategy: by_aid}
default_shard: s0
YAML
"$root/bin/shardproxy" serve --config "$work/shardproxy.yaml" ${cpuprofile:+--cpuprofile "$cpuprofile"} >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do
	"$bin/pg_isready" -q -h 127.0.0.1 -p "$pp" && break
	kill -0 "$proxy_pid" 2>/dev/null || { log "shardproxy exited"; exit 1; }
	sleep 0.1
done

proxy_dsn="postgres://app:secret@127.0.0.1:$pp/bench?sslmode=disable"
direct_dsn="$(bash "$pg" dsn "$p0" full_set)"

# Sanity: through the proxy, every account of a sample is found exactly once
# (pgbench -S would not notice a missing row).
n_rows=$(for aid in $(seq 1 97 $((scale * 100000))); do
	echo "SELECT 1 FROM pgbench_accounts WHERE aid = $aid;"
done | "$bin/psql" -X -At -v ON_ERROR_STOP=1 "$proxy_dsn" | grep -c '^1$')
n_want=$(seq 1 97 $((scale * 100000)) | wc -l)
if [[ "$n_rows" != "$n_want" ]]; then
	log "proxy found $n_rows of $n_want sampled accounts"; exit 1
fi

# PgBouncer, when installed (not a dependency of the project: Debian's
# `pgbouncer` package), in transaction mode in front of the direct database:
# the bar the issue measures against, measured in the same run.
bouncer_dsn=""
bouncer_pid=""
if command -v pgbouncer >/dev/null 2>&1; then
	pb="$(free_port)"
	mkdir -p "$work/bouncer" && chown postgres: "$work/bouncer" 2>/dev/null || true
	echo '"postgres" ""' >"$work/bouncer/userlist.txt"
	cat >"$work/bouncer/pgbouncer.ini" <<INI
[databases]
full_set = host=127.0.0.1 port=$p0 dbname=full_set user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pb
unix_socket_dir =
auth_type = trust
auth_file = $work/bouncer/userlist.txt
pool_mode = transaction
default_pool_size = $poolsize
max_client_conn = 200
logfile = $work/bouncer/pgbouncer.log
pidfile = $work/bouncer/pgbouncer.pid
INI
	chown -R postgres: "$work/bouncer" 2>/dev/null || true
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- pgbouncer "$work/bouncer/pgbouncer.ini" >/dev/null 2>&1 &
	else
		pgbouncer "$work/bouncer/pgbouncer.ini" >/dev/null 2>&1 &
	fi
	bouncer_pid=$!
	for _ in $(seq 50); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pb" && break; sleep 0.1; done
	bouncer_dsn="postgres://postgres@127.0.0.1:$pb/full_set?sslmode=disable"
	# Its own PID (under runuser, $bouncer_pid is runuser's), for its CPU.
	bouncer_cpu_pid="$(cat "$work/bouncer/pgbouncer.pid" 2>/dev/null || echo "$bouncer_pid")"
fi

# cpu_ticks PID prints the process' user+system CPU time so far, in clock
# ticks (/proc/PID/stat fields 14 and 15, summed over all its threads).
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
hz="$(getconf CLK_TCK)"

# tps MODE DSN [PID] runs pgbench and prints its TPS; any failed transaction
# is fatal. With PID, it prints "TPS CPU": CPU is that process' user+system
# CPU per transaction in µs over the run — the proxy's cost per transaction,
# which the other load on a shared machine disturbs far less than TPS.
tps() {
	local out before after n
	[[ -n "${3:-}" ]] && before="$(cpu_ticks "$3")"
	out="$("$bin/pgbench" -n -S -c "$clients" -j "$threads" -T "$duration" -M "$1" "$2" 2>&1)" || {
		echo "$out" >&2; return 1
	}
	if ! grep -q '^number of failed transactions: 0 ' <<<"$out"; then
		echo "$out" >&2; return 1
	fi
	if [[ -n "${3:-}" ]]; then
		after="$(cpu_ticks "$3")"
		n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
		awk -v t="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")" -v d=$((after - before)) -v n="$n" -v hz="$hz" \
			'BEGIN { printf "%s %.1f\n", t, d / hz * 1e6 / n }'
		return
	fi
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

declare -A direct proxied bounced pcpu bcpu
for mode in $modes; do
	log "-M $mode: direct"
	direct[$mode]="$(tps "$mode" "$direct_dsn")"
	log "-M $mode: through shardproxy"
	read -r proxied[$mode] pcpu[$mode] <<<"$(tps "$mode" "$proxy_dsn" "$proxy_pid")"
	if [[ -n "$bouncer_dsn" ]]; then
		log "-M $mode: through pgbouncer"
		read -r bounced[$mode] bcpu[$mode] <<<"$(tps "$mode" "$bouncer_dsn" "$bouncer_cpu_pid" 2>/dev/null || echo fail -)"
	fi
done
if [[ -n "$bouncer_pid" ]]; then kill "$bouncer_pid" 2>/dev/null || true; wait "$bouncer_pid" 2>/dev/null || true; fi

echo
echo "pgbench -S -c $clients -j $threads -T $duration, scale $scale; direct = one Postgres with all rows,"
echo "proxy = shardproxy over 2 shards (pool $poolsize per shard, $backend to the shards), same machine ($(nproc) cores)"
ratio() { awk -v p="$1" -v d="$2" 'BEGIN { if (p == "fail") print "fail"; else printf "%.2fx", p / d }'; }
echo "CPU = user+system CPU of the proxy (pgbouncer) process per transaction"
printf '%-10s %12s %12s %8s %8s %14s %8s %8s\n' mode "direct TPS" "proxy TPS" ratio "CPU µs" "pgbouncer TPS" ratio "CPU µs"
for mode in $modes; do
	b="${bounced[$mode]:-}"
	[[ -n "$b" && "$b" != fail ]] && b="$(printf '%.0f' "$b")"
	printf '%-10s %12.0f %12.0f %8s %8s %14s %8s %8s\n' "$mode" "${direct[$mode]}" "${proxied[$mode]}" \
		"$(ratio "${proxied[$mode]}" "${direct[$mode]}")" "${pcpu[$mode]}" "${b:--}" \
		"$([[ -n "$b" ]] && ratio "$b" "${direct[$mode]}" || echo -)" "${bcpu[$mode]:--}"
done

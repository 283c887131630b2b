#!/usr/bin/env bash
# pgbench -S through shardproxy vs direct Postgres, side by side (`make bench`).
#
# Two throw-away Postgres servers (testdata/cluster/pg.sh) on this machine:
#   direct: database "full_set" on s0 holds every pgbench row (scale BENCH_SCALE);
#   proxy:  database "bench" on s0 and on s1 each hold the accounts the
#           proxy's hash strategy gives them (pgbench_accounts sharded by aid
#           over s0+s1; branches/tellers/history unsharded on s0), served by
#           bin/shardproxy.
# Each round runs, for each -M mode, pgbench -n -S -c BENCH_CLIENTS
# -j BENCH_THREADS -T BENCH_TIME direct and then through every target:
# the proxy, the proxy with one shard (the direct database itself: the
# proxy's own cost, apart from that of spreading the rows over two
# Postgres servers that share the machine), PgBouncer in transaction mode
# when it is installed (the bar the issue sets), and four relays that do no protocol work at all
# (testdata/bench/relay: Go goroutines on the netpoller, the proxy's own
# I/O design; a one-thread epoll loop, PgBouncer's; that loop with raw
# syscalls that bypass Go's scheduler; and the loop driving blocking-style
# code as coroutines). Ratios are taken
# within a round, since this machine's speed drifts between minutes, and
# the table prints the median of the rounds, with each target's CPU time
# per transaction (user+system from /proc; other load disturbs it far less
# than TPS, so compare changes by that column). Everything started here is
# stopped by PID on exit, also on failure or Ctrl-C.
#
#   BENCH_SCALE=10 BENCH_CLIENTS=8 BENCH_THREADS=2 BENCH_TIME=6 BENCH_POOL=10
#   BENCH_ROUNDS=3 BENCH_MODES="simple extended prepared" BENCH_RELAYS=1
#   BENCH_ONESHARD=1        also run the one-shard proxy (0: not)
#   BENCH_ALLCPUS=1         also run the proxy with GOMAXPROCS=$(nproc) (its
#                           default is half the CPUs: cmd/shardproxy/procs.go)
#   BENCH_BASELINE=FILE     also run FILE, another shardproxy binary (say, the
#                           last commit's: git worktree add, go build), as
#                           baseline-1 with shardproxy-1's one-shard map, the
#                           two adjacent in every round and in alternate order;
#                           the footer then pairs their rounds. A change of a
#                           few µs per transaction is far inside this host's
#                           drift between rounds, but not inside one pair.
#   BENCH_BACKEND=tcp|unix  how the proxy reaches the shards (default tcp: the
#                           same path pgbench takes to direct Postgres; unix:
#                           the shards' unix sockets, as a proxy on the
#                           shards' host would be deployed)
#   BENCH_CPUPROFILE=/tmp/proxy.prof   (CPU profile of the proxy, for go tool pprof)
#   BENCH_HOLD=1            set everything up, print the targets' DSNs and PIDs,
#                           and wait (for strace, perf, pprof by hand) until
#                           Ctrl-C, which stops it all
set -euo pipefail

scale="${BENCH_SCALE:-10}"
clients="${BENCH_CLIENTS:-8}"
threads="${BENCH_THREADS:-2}"
duration="${BENCH_TIME:-6}"
rounds="${BENCH_ROUNDS:-3}"
relays="${BENCH_RELAYS:-1}"
oneshard="${BENCH_ONESHARD:-1}"
allcpus="${BENCH_ALLCPUS:-1}"
poolsize="${BENCH_POOL:-10}"
modes="${BENCH_MODES:-simple extended prepared}"
cpuprofile="${BENCH_CPUPROFILE:-}"
baseline="${BENCH_BASELINE:-}"
backend="${BENCH_BACKEND:-tcp}"

root="$(cd "$(dirname "$0")/../.." && pwd)"
pg="$root/testdata/cluster/pg.sh"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1)"
[[ -n "$bin" ]] || { echo "pgbench.sh: no /usr/lib/postgresql/*/bin; run 'make deps'" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

work="$(mktemp -d /tmp/shardproxy-bench.XXXXXX)"
chmod 755 "$work"
proxy_pid="" proxy1_pid="" proxyall_pid="" base_pid=""
bouncer_pid="" bouncer_cpu_pid=""
proxy_pids=() relay_pids=()
started=()
# stop_helpers stops every proxy start_proxy started, PgBouncer (its own
# PID from its pidfile, and runuser's) and the relays.
stop_helpers() {
	local pid
	for pid in "${proxy_pids[@]}" "$bouncer_cpu_pid" "$bouncer_pid" "${relay_pids[@]}"; do
		[[ -n "$pid" ]] || continue
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	proxy_pids=() bouncer_pid="" bouncer_cpu_pid="" relay_pids=()
}
cleanup() {
	local rc=$?
	stop_helpers
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

p0="$(free_port)" p1="$(free_port)"
# Every table and index of every target fits in shared_buffers, and is
# loaded there before the first round (pg_prewarm below): the ratio then
# measures the proxy, not cache misses. With the default 128MB, s0 could
# not hold both the direct copy and its shard's part, so each direct round
# evicted the proxy's pages and the next proxied round paid for reading
# them back (60% of its lookups went to the OS page cache, against 34%
# for PgBouncer's, which shares the direct copy's pages).
# s0 needs about 23MB per scale unit (the direct copy, its half, their indexes).
export PG_SHARED_BUFFERS="$((128 + scale * 24))MB"
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
		"VACUUM FULL ANALYZE pgbench_accounts" # a shard holds its half only, not half-empty pages
done
for t in pgbench_branches pgbench_tellers pgbench_history; do
	sql "$p1" bench "DROP TABLE $t" # unsharded tables live on s0 only
done
# Load every table and index into shared_buffers (see PG_SHARED_BUFFERS).
# pg_prewarm is in Postgres' contrib, part of Debian's postgresql package.
prewarm="CREATE EXTENSION IF NOT EXISTS pg_prewarm;
	SELECT pg_prewarm(c.oid) FROM pg_class c
	 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i');"
for db in $p0:full_set $p0:bench $p1:bench; do
	sql "${db%%:*}" "${db##*:}" "$prewarm" >/dev/null || log "pg_prewarm unavailable; the first round starts cold"
done

shard_dsn() { # PORT NAME
	if [[ "$backend" == unix ]]; then
		echo "postgres://postgres@/bench?host=$work/$2/data&port=$1&sslmode=disable"
	else
		bash "$pg" dsn "$1" bench
	fi
}
# proxy_yaml PORT prints the start of a shard map listening on PORT, up
# to the shards: list.
proxy_yaml() {
	cat <<YAML
listen: 127.0.0.1:$1
users:
  - {name: app, password: secret}
metadata: {dsn: "$(bash "$pg" dsn "$p0" postgres)"}
pool: {size: $poolsize}
shards:
YAML
}
# wait_ready PORT PID NAME waits until the proxy PID accepts on PORT.
wait_ready() {
	for _ in $(seq 100); do
		"$bin/pg_isready" -q -h 127.0.0.1 -p "$1" && return
		kill -0 "$2" 2>/dev/null || { log "$3 exited"; exit 1; }
		sleep 0.1
	done
}
# start_proxy NAME STEM DB COMMAND... starts COMMAND --config
# $work/STEM.yaml, logging to $work/STEM.log, with a map of proxy_yaml
# on a free port followed by stdin (its shards: and the rest). Sets
# new_pid and new_dsn (database DB through it).
start_proxy() {
	local name=$1 stem=$2 db=$3 port
	shift 3
	port="$(free_port)"
	{ proxy_yaml "$port"; cat; } >"$work/$stem.yaml"
	"$@" --config "$work/$stem.yaml" >"$work/$stem.log" 2>&1 &
	new_pid=$!
	proxy_pids+=("$new_pid") # stopped on exit, also if it never gets ready
	wait_ready "$port" "$new_pid" "$name"
	new_dsn="postgres://app:secret@127.0.0.1:$port/$db?sslmode=disable"
}
# shards_of STEM prints the shards: part on of $work/STEM.yaml.
shards_of() { sed -n '/^  - {name: s0,/,$p' "$work/$1.yaml"; }

start_proxy shardproxy proxy bench "$root/bin/shardproxy" serve ${cpuprofile:+--cpuprofile "$cpuprofile"} <<YAML
  - {name: s0, dsn: "$(shard_dsn "$p0" s0)"}
  - {name: s1, dsn: "$(shard_dsn "$p1" s1)"}
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  pgbench_accounts: {key: aid, strategy: by_aid}
default_shard: s0
YAML
proxy_pid=$new_pid proxy_dsn=$new_dsn
direct_dsn="$(bash "$pg" dsn "$p0" full_set)"

# The one-shard proxy: every table on one shard, the direct database.
proxy1_dsn=""
if [[ "$oneshard" != 0 ]]; then
	start_proxy "one-shard shardproxy" proxy1 full_set "$root/bin/shardproxy" serve <<YAML
  - {name: s0, dsn: "$direct_dsn"}
default_shard: s0
YAML
	proxy1_pid=$new_pid proxy1_dsn=$new_dsn
fi

# Another build of the proxy with the same one-shard map: what a change
# gains or costs, paired round by round with shardproxy-1.
base_dsn=""
if [[ -n "$baseline" ]]; then
	[[ -n "$proxy1_dsn" ]] || { log "BENCH_BASELINE needs the one-shard proxy (BENCH_ONESHARD=1)"; exit 1; }
	[[ -x "$baseline" ]] || { log "BENCH_BASELINE=$baseline is not an executable"; exit 1; }
	start_proxy "baseline shardproxy" baseline full_set "$baseline" serve < <(shards_of proxy1)
	base_pid=$new_pid base_dsn=$new_dsn
fi

# The same proxy on every CPU (GOMAXPROCS set) rather than its default of
# half of them: what that default gains or costs on this machine.
proxyall_dsn=""
if [[ "$allcpus" != 0 ]]; then
	start_proxy "all-CPUs shardproxy" proxyall bench env GOMAXPROCS="$(nproc)" "$root/bin/shardproxy" serve < <(shards_of proxy)
	proxyall_pid=$new_pid proxyall_dsn=$new_dsn
fi

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

# The relays (testdata/bench/relay): pgbench -> relay -> the direct
# database, one backend connection per client and no protocol work. They
# show what each I/O design costs before any proxying is done.
relay_go_dsn="" relay_ep_dsn="" relay_raw_dsn="" relay_co_dsn=""
if [[ "$relays" != 0 ]]; then
	(cd "$root" && go build -o "$work/relay" ./testdata/bench/relay)
	rg="$(free_port)" re="$(free_port)" rr="$(free_port)" rc="$(free_port)"
	"$work/relay" -mode goroutine -listen "127.0.0.1:$rg" -backend "127.0.0.1:$p0" &
	relay_go_pid=$!
	"$work/relay" -mode epoll -listen "127.0.0.1:$re" -backend "127.0.0.1:$p0" &
	relay_ep_pid=$!
	"$work/relay" -mode epoll-raw -listen "127.0.0.1:$rr" -backend "127.0.0.1:$p0" &
	relay_raw_pid=$!
	"$work/relay" -mode coroutine -listen "127.0.0.1:$rc" -backend "127.0.0.1:$p0" &
	relay_co_pid=$!
	relay_pids+=("$relay_go_pid" "$relay_ep_pid" "$relay_raw_pid" "$relay_co_pid")
	for port in $rg $re $rr $rc; do
		for _ in $(seq 50); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
	done
	relay_go_dsn="${direct_dsn/:$p0\//:$rg/}"
	relay_ep_dsn="${direct_dsn/:$p0\//:$re/}"
	relay_raw_dsn="${direct_dsn/:$p0\//:$rr/}"
	relay_co_dsn="${direct_dsn/:$p0\//:$rc/}"
fi

# cpu_ticks PID prints the process' user+system CPU time so far, in clock
# ticks (/proc/PID/stat fields 14 and 15, summed over all its threads).
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
hz="$(getconf CLK_TCK)"

# tps MODE DSN [PID] runs pgbench and prints "TPS CPU": CPU is that
# process' user+system CPU per transaction in µs over the run (- without
# PID) — the proxy's cost per transaction, which other load on a shared
# machine disturbs far less than TPS. A failed transaction prints "fail -".
tps() {
	local out before after n t
	[[ -n "${3:-}" ]] && before="$(cpu_ticks "$3")"
	# Any error fails the run, also one pgbench only logs: PgBouncer in
	# transaction mode answers a -M prepared PREPARE with "already exists"
	# once earlier runs left the statement on every server connection, and
	# then serves the run by accident.
	if ! out="$("$bin/pgbench" -n -S -c "$clients" -j "$threads" -T "$duration" -M "$1" "$2" 2>&1)" ||
		! grep -q '^number of failed transactions: 0 ' <<<"$out" || grep -q 'error:' <<<"$out"; then
		echo "fail -"
		return
	fi
	t="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")"
	if [[ -z "${3:-}" ]]; then
		echo "$t -"
		return
	fi
	after="$(cpu_ticks "$3")"
	n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
	awk -v t="$t" -v d=$((after - before)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%s %.1f\n", t, d / hz * 1e6 / n }'
}

# median FORMAT V... prints the middle value (the mean of the middle two
# for an even count) in the printf FORMAT; "fail" if any value is "fail",
# "-" if any is "-".
median() {
	local v fmt="$1"
	shift
	for v; do [[ "$v" == fail || "$v" == - ]] && { echo "$v"; return; }; done
	printf '%s\n' "$@" | sort -g | awk -v f="$fmt\n" '{ v[NR] = $1 }
		END { if (NR % 2) printf f, v[(NR + 1) / 2]; else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Targets: name, DSN, PID whose CPU is measured. Each round runs every
# target back to back, right after direct, and a ratio is taken within the
# round: the machine's speed drifts by tens of percent between minutes
# (other tenants of the host), much less within one round.
targets=("shardproxy|$proxy_dsn|$proxy_pid")
[[ -n "$proxyall_dsn" ]] && targets+=("shardproxy-allcpus|$proxyall_dsn|$proxyall_pid")
[[ -n "$proxy1_dsn" ]] && targets+=("shardproxy-1|$proxy1_dsn|$proxy1_pid")
[[ -n "$base_dsn" ]] && targets+=("baseline-1|$base_dsn|$base_pid")
[[ -n "$bouncer_dsn" ]] && targets+=("pgbouncer|$bouncer_dsn|$bouncer_cpu_pid")
[[ -n "$relay_go_dsn" ]] && targets+=("relay-goroutine|$relay_go_dsn|$relay_go_pid" "relay-epoll|$relay_ep_dsn|$relay_ep_pid" \
	"relay-epoll-raw|$relay_raw_dsn|$relay_raw_pid" "relay-coroutine|$relay_co_dsn|$relay_co_pid")

if [[ "${BENCH_HOLD:-0}" != 0 ]]; then
	log "holding; Ctrl-C stops everything"
	echo "direct|$direct_dsn|"
	printf '%s\n' "${targets[@]}"
	while :; do sleep 3600; done
fi

declare -A direct ratio cpu
for round in $(seq "$rounds"); do
	for mode in $modes; do
		read -r d _ <<<"$(tps "$mode" "$direct_dsn")"
		[[ "$d" == fail ]] && { log "direct pgbench -M $mode failed"; exit 1; }
		direct[$mode]+=" $d"
		line="round $round -M $mode: direct $(printf '%.0f' "$d") TPS"
		order=("${targets[@]}")
		if [[ -n "$base_dsn" ]] && ((round % 2 == 0)); then
			# baseline-1 first in even rounds: neither build always runs
			# on the warmer caches.
			for i in "${!order[@]}"; do
				[[ "${order[$i]}" == shardproxy-1\|* ]] && { order[i]="${targets[i+1]}" order[i+1]="${targets[i]}"; break; }
			done
		fi
		for t in "${order[@]}"; do
			IFS='|' read -r name dsn pid <<<"$t"
			read -r tp c <<<"$(tps "$mode" "$dsn" "$pid")"
			if [[ "$tp" == fail ]]; then
				[[ "$name" == shardproxy* ]] && { log "pgbench -M $mode through $name failed"; exit 1; }
				r=fail # PgBouncer 1.18 in transaction mode cannot run -M prepared
			else
				r="$(awk -v p="$tp" -v d="$d" 'BEGIN { printf "%.3f", p / d }')"
			fi
			ratio[$name,$mode]+=" $r"
			cpu[$name,$mode]+=" $c"
			[[ "$r" == fail ]] && line+=", $name fail" || line+=", $name ${r}x ${c} µs"
		done
		log "$line"
	done
done
stop_helpers

echo
echo "pgbench -S -c $clients -j $threads -T $duration, scale $scale, $(nproc) cores; median of $rounds rounds."
echo "direct = one Postgres with all rows; shardproxy = over 2 shards (pool $poolsize per shard, $backend to the shards),"
echo "  its Go code on $(grep -o 'procs=[0-9]*' "$work/proxy.log" | head -1 | cut -d= -f2) of $(nproc) CPUs (half of them unless GOMAXPROCS is set);"
[[ -n "$proxyall_dsn" ]] && echo "shardproxy-allcpus = the same with GOMAXPROCS=$(nproc);"
[[ -n "$proxy1_dsn" ]] && echo "shardproxy-1 = the proxy with one shard, the direct database (its own cost without the second server);"
[[ -n "$base_dsn" ]] && echo "baseline-1 = $baseline with shardproxy-1's map, run next to it (paired below);"
echo "pgbouncer = transaction mode in front of direct; relay-* = no protocol work, see testdata/bench/relay."
echo "ratio = TPS / direct TPS of the same round; CPU = the process' user+system CPU per transaction, µs."
echo "issue 2's bar (PgBouncer 1.18 measured here then): 0.58x simple, 0.68x extended, 0.55x prepared."
printf '%-9s %11s' mode "direct TPS"
for t in "${targets[@]}"; do printf ' %18s' "${t%%|*}"; done
echo
printf '%-9s %11s' "" ""
for t in "${targets[@]}"; do printf ' %18s' "ratio   CPU"; done
echo
for mode in $modes; do
	# shellcheck disable=SC2086 # word-split the accumulated lists
	printf '%-9s %11.0f' "$mode" "$(median %.0f ${direct[$mode]})"
	for t in "${targets[@]}"; do
		name="${t%%|*}"
		# shellcheck disable=SC2086
		r="$(median %.2f ${ratio[$name,$mode]})" c="$(median %.1f ${cpu[$name,$mode]})"
		[[ "$r" != fail ]] && r="${r}x"
		printf ' %11s %6s' "$r" "$c"
	done
	echo
done

# The pairs: in how many rounds shardproxy-1 took less CPU per transaction
# than baseline-1, and the median of the differences.
if [[ -n "$base_dsn" ]]; then
	echo
	echo "shardproxy-1 against baseline-1, round by round (CPU µs per transaction):"
	for mode in $modes; do
		# shellcheck disable=SC2086
		diffs="$(paste -d' ' <(printf '%s\n' ${cpu[shardproxy-1,$mode]}) <(printf '%s\n' ${cpu[baseline-1,$mode]}) |
			awk '$1 != "-" && $2 != "-" { printf "%.1f\n", $1 - $2 }')"
		n="$(grep -c . <<<"$diffs" || true)"
		if [[ "$n" == 0 ]]; then
			printf '%-9s no pairs\n' "$mode"
			continue
		fi
		less="$(awk '$1 < 0' <<<"$diffs" | wc -l)"
		# shellcheck disable=SC2086
		printf '%-9s lower in %d of %d rounds, median difference %+.1f µs\n' "$mode" "$less" "$n" "$(median %.1f $diffs)"
	done
fi

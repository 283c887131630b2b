#!/usr/bin/env bash
# Start or stop a throw-away local PostgreSQL server from shell scripts
# (benchmarks, manual poking). Go tests use pool/pgtest instead.
#
#   pg.sh start DIR PORT   initdb DIR/data if needed, start on 127.0.0.1:PORT, wait ready
#   pg.sh stop DIR         fast shutdown (pg_ctl stops the PID in postmaster.pid)
#   pg.sh dsn PORT [DB]    print the connection URL
#
# As root the server runs as the postgres OS user (runuser). Settings match
# pool/pgtest: trust auth on loopback, C locale, wal_level=logical, socket in
# the data dir, no fsync.
#
#   PG_SHARED_BUFFERS=512MB  shared_buffers of a new data dir (default 128MB)
set -euo pipefail

bindir() {
	if [[ -n "${PGTEST_BINDIR:-}" ]]; then echo "$PGTEST_BINDIR"; return; fi
	local d
	d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1)"
	if [[ -z "$d" ]]; then echo "pg.sh: no /usr/lib/postgresql/*/bin; run 'make deps'" >&2; exit 1; fi
	echo "$d"
}

as_pg() {
	if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:-}"
case "$cmd" in
start)
	dir="$2" port="$3" bin="$(bindir)"
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	[[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
	data="$dir/data"
	if [[ ! -f "$data/PG_VERSION" ]]; then
		(cd "$dir" && as_pg "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C -A trust --no-sync >"$dir/initdb.log")
		cat >>"$data/postgresql.conf" <<-CONF
			listen_addresses = '127.0.0.1'
			unix_socket_directories = '$data'
			wal_level = 'logical'
			max_prepared_transactions = 64
			max_connections = 200
			max_replication_slots = 16
			max_wal_senders = 16
			fsync = off
			full_page_writes = off
			timezone = 'UTC'
			shared_buffers = '${PG_SHARED_BUFFERS:-128MB}'
		CONF
	fi
	(cd "$dir" && as_pg "$bin/pg_ctl" -D "$data" -o "-p $port" -l "$data/server.log" -w -t 60 start >/dev/null)
	echo "pg.sh: server on 127.0.0.1:$port, data $data" >&2
	;;
stop)
	dir="$(cd "$2" && pwd)" bin="$(bindir)"
	if [[ -f "$dir/data/postmaster.pid" ]]; then
		(cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null)
	fi
	;;
dsn)
	echo "postgres://postgres@127.0.0.1:$2/${3:-postgres}?sslmode=disable"
	;;
*)
	sed -n '2,12p' "$0" >&2
	exit 2
	;;
esac

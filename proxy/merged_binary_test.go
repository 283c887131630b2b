package proxy_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// mergedBinaryValues are expressions whose values reach a client through
// the proxy's merge (and so through its text-to-binary conversion) when
// the client asks for binary results: each must arrive as the bytes
// Postgres itself sends, or be refused (0A000), never altered.
var mergedBinaryValues = []string{
	"42::int2", "-7::int4", "9223372036854775807::int8", "4294967295::oid", "1.50::numeric", "'NaN'::numeric",
	"'-Infinity'::numeric", "'Infinity'::numeric", "123.4500::numeric", "1e-20::float8", "'-0'::float4", "'NaN'::float8", "'a b'::text", "''::text", "'é'::varchar(3)",
	"'ab'::char(4)", "true", "'2024-02-29'::date", "'2024-01-01 12:34:56.789'::timestamp",
	"'2024-01-01 12:34:56.789+02'::timestamptz", "'23:59:59.999999'::time", "'1 year 2 mons 3 days 04:05:06.5'::interval",
	"'\\x00ff'::bytea", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", `'{"b": 1, "a": [1.50]}'::jsonb`, `'{"b": 1, "a": 1.50}'::json`,
	"'{}'::int4[]", "'{1,NULL,3}'::int4[]", "'{{1,2},{3,NULL}}'::int8[]", "'[0:1]={5,6}'::int4[]", "'[2:2][3:4]={{a,b}}'::text[]",
	`ARRAY['a b', NULL, 'NULL', '"', '\']`, "ARRAY[1.50, 2]::numeric[]", "ARRAY['2024-01-01'::date, NULL]",
	"ARRAY['1 day'::interval]", "ARRAY[true, false]", "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]",
	"'12:00:00+05:30'::timetz", "12.34::money", "'192.168.0.1/24'::inet", "'10.0.0.0/8'::cidr", "'08:00:2b:01:02:03'::macaddr",
	"B'101'::bit(3)", "B'1011'::varbit", "'(1,2)'::point", "'fat cat'::tsvector", "'1 2'::int2vector", "'a'::\"char\"",
	"'pg_class'::name", "'5 days'::interval * 1.5", "'[1,5)'::int4range", "ARRAY['{\"a\": 1.50}'::jsonb]", "ARRAY['1.5'::float8, 'NaN']",
	"'infinity'::timestamptz", "'-infinity'::date", "ARRAY['infinity'::timestamptz, '2024-01-01 00:00:00+00']",
	"80.0800000000000000::numeric", "10000::numeric", "0.00000001::numeric", "0::numeric", "0.000::numeric",
	"-12345678.90000000::numeric", "1e20::numeric", "ARRAY[0, 10000.0000, NULL, 'NaN']::numeric[]",
}

// refusedInBinary are the values of mergedBinaryValues whose types the
// proxy does not convert to binary (0A000: request text results).
var refusedInBinary = map[string]bool{
	"'12:00:00+05:30'::timetz": true, "12.34::money": true, "'1 2'::int2vector": true, "'[1,5)'::int4range": true,
}

func TestMergedBinaryResults(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  spread: {key: id, strategy: by_id}
default_shard: s0
`})
	ctx := context.Background()
	admin := f.Connect(t)
	mustExec(t, admin, "CREATE TABLE spread (id int PRIMARY KEY)")
	// An enum: its binary form is its label. A merge needs the type to
	// have one OID on every shard; where the OIDs differ (servers that
	// saw other DDL before), the shards' columns disagree (XX000).
	mustExec(t, admin, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
	var oid0, oid1 uint32
	for sh, oid := range map[string]*uint32{"s0": &oid0, "s1": &oid1} {
		if err := f.Direct(t, sh).QueryRow(ctx, "SELECT 'mood'::regtype::oid").Scan(oid); err != nil {
			t.Fatal(err)
		}
	}
	enumValues := []string{"'ok'::mood", "ARRAY['happy', NULL, 'sad']::mood[]"}
	mustExec(t, admin, "INSERT INTO spread VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12)")
	if directCount(t, f, "s0", "spread", "true") == 0 || directCount(t, f, "s1", "spread", "true") == 0 {
		t.Fatal("want rows on both shards, so that the result is merged")
	}
	proxy := f.Connect(t).PgConn()
	direct := f.Direct(t, "s0").PgConn()
	binary := []int16{1}
	for _, expr := range append(mergedBinaryValues, enumValues...) {
		enum := slices.Contains(enumValues, expr)
		// ORDER BY across shards: the proxy merges the shards' rows.
		sql := "SELECT id, " + expr + " FROM spread ORDER BY id LIMIT 3"
		want := direct.ExecParams(ctx, sql, nil, nil, nil, binary).Read()
		if want.Err != nil {
			t.Fatalf("%s: on Postgres: %v", expr, want.Err)
		}
		got := proxy.ExecParams(ctx, sql, nil, nil, nil, binary).Read()
		if enum && oid0 != oid1 {
			if pgErr, ok := got.Err.(*pgconn.PgError); !ok || pgErr.Code != "XX000" {
				t.Errorf("%s with OIDs %d and %d on the shards: %v, want XX000 (shards disagree)", expr, oid0, oid1, got.Err)
			}
			continue
		}
		if got.Err != nil {
			if pgErr, ok := got.Err.(*pgconn.PgError); !ok || pgErr.Code != "0A000" || pgErr.Hint == "" || !refusedInBinary[expr] {
				t.Errorf("%s: %v", expr, got.Err)
			}
			continue
		}
		if refusedInBinary[expr] {
			t.Errorf("%s: converted, want it refused (or verified here and taken off refusedInBinary)", expr)
		}
		if len(got.Rows) != 3 {
			t.Errorf("%s: %d rows, want 3", expr, len(got.Rows))
			continue
		}
		// Every shard row has the same value: compare with the direct one,
		// byte for byte (numerics too: numeric_send writes no zero digits).
		w, g := want.Rows[0][1], got.Rows[0][1]
		if !bytes.Equal(w, g) {
			t.Errorf("%s in binary: proxy sent %q, Postgres sends %q", expr, g, w)
		}
	}
}

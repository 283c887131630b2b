package proxy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestStandardConformingStringsOff: the proxy reads string literals as
// Postgres does with standard_conforming_strings on (the default since
// 9.1): a backslash is an ordinary character. Turned off, Postgres reads
// 'a\\b' as a\b while the proxy would hash a\\b, placing the row on the
// shard of another key, where a lookup by parameter never finds it. So
// turning it off is refused with 0A000 and a hint (SET, SET LOCAL,
// set_config, startup parameter), and E” strings keep working.
func TestStandardConformingStringsOff(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_name: {type: hash, key_type: text, shards: [s0, s1]}
tables:
  named: {key: name, strategy: by_name}
default_shard: s0
`})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE named (name text PRIMARY KEY)")
	for _, sql := range []string{
		"SET standard_conforming_strings = off",
		"SET standard_conforming_strings TO false",
		"SET SESSION standard_conforming_strings = 'no'",
		"BEGIN; SET LOCAL standard_conforming_strings = off",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
	} {
		_, err := c.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
			t.Errorf("%s: %v, want 0A000 with a hint", sql, err)
		}
		c.Exec(ctx, "ROLLBACK")
	}
	// Still on: literals and parameters name the same key and shard.
	mustExec(t, c, "SET standard_conforming_strings = on")
	mustExec(t, c, `INSERT INTO named VALUES ('a\b'), (E'c\\d')`)
	for _, key := range []string{`a\b`, `c\d`} {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM named WHERE name = $1", key).Scan(&n); err != nil || n != 1 {
			t.Errorf("lookup of %q by parameter: %d rows, %v", key, n, err)
		}
		if s0, s1 := directCount(t, f, "s0", "named", "name = $1", key), directCount(t, f, "s1", "named", "name = $1", key); s0+s1 != 1 {
			t.Errorf("%q on the shards: %d + %d rows", key, s0, s1)
		}
	}

	// A startup parameter, or -c in options (PGOPTIONS), cannot turn it
	// off either.
	for _, params := range []map[string]string{{"standard_conforming_strings": "off"}, {"options": "-c standard_conforming_strings=off"}} {
		conn, err := f.ConnectWith(t, params)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			conn.Close(ctx)
			t.Errorf("startup with %v: connected, want 0A000", params)
		case !errors.As(err, &pgErr) || pgErr.Code != "0A000":
			t.Errorf("startup with %v: %v, want 0A000", params, err)
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM named").Scan(&n); err != nil || n != 2 {
		t.Errorf("the connection after the refusals: %d rows, %v", n, err)
	}
}

package proxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestStartupParameters: settings a client sends in its startup message —
// as parameters (pgx RuntimeParams, JDBC) or in "options" (PGOPTIONS,
// ?options=-c...) — take effect as they do on Postgres, list values
// included; what the proxy cannot honour gets a clear FATAL rather than
// being dropped.
func TestStartupParameters(t *testing.T) {
	f, _ := accountsFixture(t)
	ctx := context.Background()
	connect := func(params map[string]string) (*pgx.Conn, error) { return f.ConnectWith(t, params) }
	show := func(c *pgx.Conn, name string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SHOW "+name, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatalf("SHOW %s: %v", name, err)
		}
		return v
	}

	c, err := connect(map[string]string{
		"search_path": `"My Schema",Other, public`,
		"options":     `-c statement_timeout=1234 --lock_timeout=2s -c application_name=two\ words`,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for name, want := range map[string]string{
		// Postgres shows a list as its elements, unquoted ones folded to
		// lower case: not one schema named after the whole string.
		"search_path":       `"My Schema", other, public`,
		"statement_timeout": "1234ms",
		"lock_timeout":      "2s",
		"application_name":  "two words",
		"client_encoding":   "UTF8",
	} {
		if v := show(c, name); v != want {
			t.Errorf("SHOW %s = %q, want %q", name, v, want)
		}
	}
	// RESET returns to the value from options, as on Postgres.
	if _, err := c.Exec(ctx, "SET statement_timeout = 5000; RESET statement_timeout", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if v := show(c, "statement_timeout"); v != "1234ms" {
		t.Errorf("after RESET statement_timeout = %q, want the startup value 1234ms", v)
	}

	// UTF-8 spelled as Postgres accepts it, and SQL_ASCII (psql in the C
	// locale), pass; other client encodings are refused: the proxy reads
	// shard keys and table names as UTF-8, so a LATIN1 'é' would be hashed
	// to another shard than the same name sent by a UTF-8 client.
	for _, enc := range []string{"utf-8", "UNICODE", "SQL_ASCII"} {
		c2, err := connect(map[string]string{"client_encoding": enc})
		if err != nil {
			t.Errorf("client_encoding %s: %v", enc, err)
			continue
		}
		c2.Close(ctx)
	}
	for _, params := range []map[string]string{
		{"client_encoding": "LATIN1"},
		{"options": "-c client_encoding=WIN1252"},
		{"options": "-e"}, // a postgres switch other than -c/--name=value
		{"options": "-c"},
		{"options": "-c statement_timeout"},
		// What Postgres itself refuses at connect, it refuses through the
		// proxy too, rather than dropping it at every transaction.
		{"statement_timeout": "soon"},
		{"options": "-c no_such_setting=1"},
		{"search_path": `"unterminated`},
	} {
		c2, err := connect(params)
		if err == nil {
			c2.Close(ctx)
			t.Errorf("connect with %v: succeeded, want a FATAL", params)
			continue
		}
		if !strings.Contains(err.Error(), "FATAL") {
			t.Errorf("connect with %v: %v, want a FATAL", params, err)
		}
	}
	for _, set := range []string{"SET client_encoding = 'LATIN1'", "SET NAMES 'win1252'", "SET client_encoding TO latin1", "SET LOCAL client_encoding = 'latin1'"} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			for _, inTx := range []bool{false, true} {
				if inTx {
					mustExec(t, c, "BEGIN")
				}
				_, err := c.Exec(ctx, set, mode)
				if sqlState(err) != "0A000" {
					t.Errorf("%s (%v, in a transaction: %v): %v, want 0A000", set, mode, inTx, err)
				}
				if inTx {
					mustExec(t, c, "ROLLBACK")
				}
			}
		}
	}
	// set_config(..., true) sets it for the transaction: refused as SET
	// LOCAL is, whether the name and value are literals or parameters.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, call := range []struct {
			sql   string
			args  []any
			state string
		}{
			{"SELECT set_config('client_encoding', 'LATIN1', true)", nil, "0A000"},
			{"SELECT set_config($1, $2, true)", []any{"Client_Encoding", "win1252"}, "0A000"},
			{"SELECT set_config('client_encoding', lower($1), true)", []any{"LATIN1"}, "0A000"}, // computed: not seen
			{"SELECT set_config('client_encoding', 'utf-8', true)", nil, ""},
			{"SELECT set_config($1, $2, true)", []any{"application_name", "latin1"}, ""},
		} {
			mustExec(t, c, "BEGIN")
			_, err := c.Exec(ctx, call.sql, append([]any{mode}, call.args...)...)
			if sqlState(err) != call.state {
				t.Errorf("%s %v (%v): %v, want SQLSTATE %q", call.sql, call.args, mode, err, call.state)
			}
			mustExec(t, c, "ROLLBACK")
		}
	}
	for _, set := range []string{"SET client_encoding = 'UTF8'", "SET NAMES 'utf-8'", "SET client_encoding TO DEFAULT", "RESET client_encoding"} {
		if _, err := c.Exec(ctx, set, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%s: %v", set, err)
		}
	}
	if v := show(c, "client_encoding"); v != "UTF8" {
		t.Errorf("client_encoding = %q after the refused SETs", v)
	}
}

// TestStartupCheckReadsEveryReply: the check of a client's startup
// settings sends them as one Query each and must read every reply before
// the backend goes back to the pool. It read one: with one backend per
// shard, the client's first statement then got a SET's reply for its own
// ("no rows in result set"), and the next client the rest.
func TestStartupCheckReadsEveryReply(t *testing.T) {
	f := startFixture(t, fixtureOptions{Pool: "{size: 1, acquire_timeout: 2s}"})
	ctx := context.Background()
	for i, timeout := range []string{"1234ms", "2345ms", "3456ms"} {
		c, err := f.ConnectWith(t, map[string]string{
			"statement_timeout": timeout,
			"lock_timeout":      strings.TrimSuffix(timeout, "ms") + "1ms",
			"application_name":  "check " + timeout,
			"search_path":       "public, pg_temp",
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"SHOW statement_timeout", "SHOW lock_timeout"} {
			var v string
			if err := c.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
				t.Fatalf("client %d, %s: %v", i, q, err)
			}
			want := timeout
			if q == "SHOW lock_timeout" {
				want = strings.TrimSuffix(timeout, "ms") + "1ms"
			}
			if v != want {
				t.Errorf("client %d, %s = %q; want %q", i, q, v, want)
			}
		}
		c.Close(ctx)
	}
}

package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestSessionStateRefused: statements that would leave state on a pooled
// backend get 0A000 naming the construct, hinted or not; their
// transaction-scoped forms route as usual.
func TestSessionStateRefused(t *testing.T) {
	r, _ := newTestRouter(t)
	refused := map[string]string{
		"SELECT pg_advisory_lock(42)":                                                "pg_advisory_lock",
		"SELECT pg_catalog.pg_try_advisory_lock_shared(1, 2)":                        "pg_try_advisory_lock_shared",
		"SELECT pg_advisory_unlock_all()":                                            "pg_advisory_unlock_all",
		"SELECT * FROM orders WHERE customer_id = 7 AND pg_advisory_lock(1) IS NULL": "pg_advisory_lock",
		"SELECT (SELECT pg_advisory_lock(1))":                                        "pg_advisory_lock",
		"SELECT set_config('search_path', 'x', false)":                               "set_config",
		"SELECT set_config('search_path', 'x', 'off')":                               "set_config",
		"SELECT set_config('search_path', 'x', 1 > 0)":                               "set_config",
		"SELECT set_config('search_path', 'x')":                                      "set_config",
		"/* shard: s1 */ SELECT pg_advisory_lock(1)":                                 "pg_advisory_lock",
		"CREATE TEMP TABLE t (x int)":                                                "temporary tables",
		"CREATE TEMPORARY TABLE t (x int) ON COMMIT DELETE ROWS":                     "temporary tables",
		"CREATE TEMP TABLE t AS SELECT 1":                                            "temporary tables",
		"SELECT 1 AS x INTO TEMP t":                                                  "temporary tables",
		"CREATE TEMP VIEW v AS SELECT 1":                                             "temporary views",
		"CREATE TEMP SEQUENCE s":                                                     "temporary sequences",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1":                                    "WITH HOLD",
		"EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1":                            "temporary tables",
		"SELECT setseed(0.42)":                                                       "setseed",
		"SELECT pg_catalog.setseed(0.42), random()":                                  "setseed",
		"SELECT setseed(0.5) FROM orders WHERE customer_id = 7":                      "setseed",
		"SELECT name, statement FROM pg_prepared_statements":                         "pg_prepared_statements",
		"SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql":      "pg_prepared_statements",
		"SELECT * FROM pg_catalog.pg_prepared_statement()":                           "pg_prepared_statements",
	}
	for sql, want := range refused {
		_, _, err := route(r, sql, nil, "")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, want) || pe.Hint == "" {
			t.Errorf("%s: want 0A000 naming %q with a hint, got %v", sql, want, err)
		}
		// A session shard hint does not make it safe either.
		if _, _, err := route(r, sql, nil, "s2"); !errors.As(err, &pe) || pe.Code != "0A000" {
			t.Errorf("%s with SET shardproxy.shard: want 0A000, got %v", sql, err)
		}
	}
	allowed := []string{
		"SELECT pg_advisory_xact_lock(42)",
		"SELECT pg_try_advisory_xact_lock(1, 2)",
		"SELECT set_config('search_path', 'x', true)",
		"SELECT set_config('search_path', 'x', true::boolean)",
		"SELECT current_setting('search_path')",
		"CREATE TEMP TABLE t (x int) ON COMMIT DROP",
		"CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1",
		"CREATE TABLE t (x int)",
		"DECLARE c CURSOR FOR SELECT * FROM orders WHERE customer_id = 7",
		"SELECT * FROM orders WHERE customer_id = 7",
	}
	for _, sql := range allowed {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// TestTransactionScopedMarks: what the session needs to know of a
// statement that acts on its transaction, and where advisory locks go.
func TestTransactionScopedMarks(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql           string
		scoped, local bool
		kind          RouteKind
	}{
		{"SELECT pg_advisory_xact_lock(1)", true, false, RouteDefault},
		{"SELECT pg_try_advisory_xact_lock_shared(1, 2)", true, false, RouteDefault},
		{"SELECT set_config('a.b', 'c', true)", true, true, RouteAny},
		{"SELECT txid_current()", true, false, RouteAny},
		{"SELECT 1", false, false, RouteAny},
		{"SELECT now()", false, false, RouteAny},
		// With a table, the table decides, and the session treats it as any keyed statement.
		{"SELECT set_config('a.b', 'c', true) FROM orders WHERE customer_id = 7", false, true, RouteSingle},
	}
	for _, c := range cases {
		st, rt, err := route(r, c.sql, nil, "")
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if st.TxnScoped != c.scoped || st.LocalConfig != c.local || rt.Kind != c.kind {
			t.Errorf("%s: TxnScoped %v LocalConfig %v route %v, want %v %v %v",
				c.sql, st.TxnScoped, st.LocalConfig, rt.Kind, c.scoped, c.local, c.kind)
		}
	}
}

// TestHidesSettings: a DO block, CALL, or a call of a user function whose
// body may change a session setting (SET, RESET, set_config, dynamic
// SQL), directly or through another function, is marked, so that the
// proxy resets its backend before the next use; plain reads, SET itself
// (which the proxy follows) and pure functions are not.
func TestHidesSettings(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Functions: []FunctionDef{
			{Name: "tenant_is", Body: "SELECT set_config('app.tenant', $1, false)"},
			{Name: "zone", Body: "BEGIN SET TimeZone = 'UTC'; END"},
			{Name: "dyn", Body: "BEGIN EXECUTE $1; END"},
			{Name: "through", Body: "BEGIN PERFORM zone(); END"},
			{Name: "double_it", Body: "SELECT $1 * 2"},
		}})
	}
	for sql, want := range map[string]bool{
		"SELECT name FROM customers WHERE customer_id = 7":              false,
		"SELECT double_it(credit) FROM customers WHERE customer_id = 7": false,
		"SET TimeZone = 'UTC'":                        false,
		"SELECT set_config('search_path', 'x', true)": false,
		"DO $$ BEGIN RAISE NOTICE 'x'; END $$":        true,
		"CALL anything(1)":                            true,
		"SELECT tenant_is('a')":                       true,
		"SELECT zone()":                               true,
		"SELECT dyn('SET work_mem = 1')":              true,
		"SELECT through()":                            true,
		"SELECT name FROM customers WHERE customer_id = 7 AND zone() = ''": true,
	} {
		st, _, err := route(r, sql, nil, "")
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if st.HidesSettings != want {
			t.Errorf("%s: HidesSettings %v, want %v", sql, st.HidesSettings, want)
		}
	}
}

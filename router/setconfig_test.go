package router

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestSessionConfig: the two shapes of set_config(..., false) the proxy
// carries like SET, with their values as the simple protocol binds them,
// and everything else refused as before.
func TestSessionConfig(t *testing.T) {
	r, _ := newTestRouter(t)
	carried := []struct {
		sql, name, value, replay string
	}{
		{"SELECT pg_catalog.set_config('search_path', '', false);", "search_path", "",
			"SELECT pg_catalog.set_config('search_path', '', false)"},
		{"select set_config('Search_Path', 'a, \"B\"', false)", "search_path", `a, "B"`,
			`SELECT pg_catalog.set_config('search_path', 'a, "B"', false)`},
		{"SELECT set_config('myapp.user', 'O''Brien', false)", "myapp.user", "O'Brien",
			"SELECT pg_catalog.set_config('myapp.user', 'O''Brien', false)"},
		{"SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
			"restrict_nonsystem_relation_kind", "view, foreign-table",
			"SELECT pg_catalog.set_config(name, 'view, foreign-table', false) FROM pg_catalog.pg_settings WHERE name = 'restrict_nonsystem_relation_kind'"},
		{"SELECT pg_catalog.set_config(pg_settings.name, '1min', false) FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'",
			"statement_timeout", "1min",
			"SELECT pg_catalog.set_config(name, '1min', false) FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'"},
	}
	for _, tc := range carried {
		parts, err := r.ParseQuery(tc.sql)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		st := parts[0].Stmt
		if !st.IsSessionConfig() {
			t.Errorf("%s: not carried as a session setting", tc.sql)
			continue
		}
		if st.Aside {
			t.Errorf("%s: may run aside, on a backend that is not the session's", tc.sql)
		}
		set, err := st.SessionConfig(parts[0].Args)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if set.Kind != KindSet || set.SetName != tc.name || SettingSQL(set.SetValue) != quoteString(tc.value) {
			t.Errorf("%s: got %v %q %q, want SET %s = %q", tc.sql, set.Kind, set.SetName, set.SetValue, tc.name, tc.value)
		}
		if replay, ok := ConfigStatement(set.SetName, set.SetValue); !ok || replay != tc.replay {
			t.Errorf("%s: replayed as %q, want %q", tc.sql, replay, tc.replay)
		}
	}
	if _, ok := ConfigStatement("search_path", "public"); ok {
		t.Error("a SET value is replayed through set_config")
	}

	// Shapes that stay refused: the setting would stay on the pooled
	// backend without the proxy knowing it.
	refused := []string{
		"SELECT set_config('search_path', 'x', false), 1",
		"SELECT set_config('search_path', 'x', false) FROM orders",
		"SELECT set_config('search_path', lower('X'), false)",
		"SELECT set_config('search' || '_path', 'x', false)",
		"SELECT set_config(name, 'x', false) FROM pg_settings WHERE name LIKE 'search%'",
		"SELECT set_config(name, 'x', false) FROM pg_settings s WHERE name = 'search_path'",
		"SELECT set_config('search_path', 'x', 'off')",
		"WITH s AS (SELECT set_config('search_path', 'x', false)) SELECT * FROM s",
		"EXPLAIN ANALYZE SELECT set_config('search_path', 'x', false)",
		"SELECT set_config('search_path', 'x', false) UNION ALL SELECT 'y'",
	}
	for _, sql := range refused {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if parts[0].Stmt.IsSessionConfig() {
			t.Errorf("%s: carried as a session setting", sql)
		}
		_, err = r.Route(t.Context(), parts[0].Stmt, Args{Params: parts[0].Args, Literals: true})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != codeFeatureNotSupport {
			t.Errorf("%s: routed with %v, want 0A000", sql, err)
		}
	}

	// Settings the proxy does not let set_config make.
	for _, sql := range []string{
		"SELECT set_config('shardproxy.shard', 's1', false)",
		"SELECT set_config('transaction_isolation', 'serializable', false)",
		"SELECT set_config('client_encoding', 'LATIN1', false)",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
	} {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			t.Fatal(err)
		}
		if !parts[0].Stmt.IsSessionConfig() {
			t.Fatalf("%s: not recognised", sql)
		}
		if _, err := parts[0].Stmt.SessionConfig(parts[0].Args); err == nil {
			t.Errorf("%s: accepted", sql)
		}
	}
}

// TestSnapshotIdentifiersRefused: a snapshot identifier names one
// server's snapshot, so exporting or importing one across shards is
// refused (parallel pg_dump); with a shard hint it is that shard's.
func TestSnapshotIdentifiersRefused(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, sql := range []string{"SELECT pg_export_snapshot()", "SELECT pg_catalog.pg_export_snapshot()", "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'"} {
		_, _, err := route(r, sql, nil, "")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != codeFeatureNotSupport || pe.Hint == "" {
			t.Errorf("%s: %v, want 0A000 with a hint", sql, err)
		}
		if _, _, err := route(r, sql, nil, "s1"); err != nil {
			t.Errorf("%s with a shard hint: %v", sql, err)
		}
	}
	if _, _, err := route(r, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", nil, ""); err != nil {
		t.Errorf("SET TRANSACTION: %v", err)
	}
}

package router

import "testing"

// TestServerWideStatements: role and database-setting DDL, and
// maintenance that names no table, act on a whole server; sent to one
// shard, they left the others without the role (the next GRANT failed
// there) or configured otherwise. They go to every shard; statements
// that name no table and change nothing stay on one.
func TestServerWideStatements(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, sql := range []string{
		"CREATE ROLE bob LOGIN PASSWORD 'x'", "ALTER ROLE app SET search_path = app, public", "ALTER ROLE bob RENAME TO rob",
		"DROP ROLE IF EXISTS bob", "GRANT bob TO app", "REVOKE bob FROM app", "ALTER DATABASE app SET work_mem = '8MB'",
		"REASSIGN OWNED BY bob TO app", "DROP OWNED BY bob",
		"VACUUM", "VACUUM (ANALYZE, VERBOSE)", "ANALYZE", "CHECKPOINT", "ALTER SYSTEM SET work_mem = '1MB'",
		"REINDEX DATABASE app", "CLUSTER",
		"VACUUM orders", "ANALYZE products",
	} {
		_, rt, err := route(r, sql, nil, "")
		if err != nil || rt.Kind != RouteBroadcast || len(rt.Shards) != 3 {
			t.Errorf("%s: %s; want every shard", sql, formatRoute(rt, err))
		}
	}
	for _, sql := range []string{"SELECT 1", "VACUUM notes", "SHOW work_mem", "LOAD 'auto_explain'"} {
		_, rt, err := route(r, sql, nil, "")
		if err != nil || len(rt.Shards) > 1 {
			t.Errorf("%s: %s; want one shard", sql, formatRoute(rt, err))
		}
	}
}

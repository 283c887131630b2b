package router

import (
	"strings"
	"testing"
)

// TestServed: the statements the proxy answers itself are described as
// served (with the setting a set_config carries), and those it routes,
// including a SHOW of a shard's setting and a set_config it refuses, are
// not.
func TestServed(t *testing.T) {
	r, _ := newTestRouter(t)
	served := []struct{ sql, want string }{
		{"SELECT pg_catalog.set_config('search_path', '', false)", "like SET (search_path = '')"},
		{"SET search_path = a", "carried to every backend"},
		{"RESET ALL", "carried to every backend"},
		{"SET LOCAL work_mem = '4MB'", "also those it reaches later"},
		{"BEGIN ISOLATION LEVEL REPEATABLE READ", "transaction begins"},
		{"COMMIT", "two-phase commit"},
		{"ROLLBACK", "every shard the transaction reached"},
		{"PREPARE p (int) AS SELECT 1", "checked on the default shard"},
		{"EXECUTE p (1)", "arguments bound"},
		{"DEALLOCATE ALL", "live in the proxy"},
		{"DISCARD ALL", "no backend is reached"},
		{"SET shardproxy.shard = 's1'", "shard hint"},
		{"SHOW shardproxy.shard", "shard hint"},
		{"", "empty query"},
	}
	for _, tc := range served {
		parts, err := r.ParseQuery(tc.sql)
		if err != nil {
			t.Fatalf("%q: %v", tc.sql, err)
		}
		how, ok := parts[0].Stmt.Served(parts[0].Args)
		if !ok || !strings.Contains(how, tc.want) {
			t.Errorf("%q: served %v %q, want one with %q", tc.sql, ok, how, tc.want)
		}
	}
	for _, sql := range []string{
		"SELECT * FROM customers WHERE customer_id = 1",
		"SHOW work_mem",
		"SELECT set_config('search_path', lower('X'), false)",
		"SELECT set_config('search_path', 'a', true)",
		"DISCARD PLANS",
		"SAVEPOINT a",
	} {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		if how, ok := parts[0].Stmt.Served(parts[0].Args); ok {
			t.Errorf("%q: served %q, want it routed", sql, how)
		}
	}
}

package router

import pg "github.com/pganalyze/pg_query_go/v6"

// A SELECT can act beyond its result: SELECT ... FOR UPDATE locks rows
// until its transaction ends, SELECT process_order(7) may write, SELECT
// nextval('s') moves a sequence. Its effects then belong to its
// transaction as a write's do: a pipeline (or a multi-statement Query)
// that ends the transaction on its shard to move on to another would
// commit them even if a later statement fails, and release its locks
// early, where Postgres keeps both to the end. Statement.MayWrite marks
// such a SELECT, so that the proxy treats it as a write.
//
// A function's body is read by words (functions.go); any word of a
// writing command, DDL, or a call of a function with side effects counts,
// as does a call of another such function. The reading is conservative:
// the word in a comment counts too, and the cost of a false alarm is only
// that the SELECT is handled as a write.

// sideEffectCalls are built-in functions that change something beyond
// their result: a sequence, a notification, a lock held to the end of the
// transaction, large objects, the server's state, another database.
var sideEffectCalls = map[string]bool{
	"nextval": true, "setval": true, "pg_notify": true,
	"pg_advisory_xact_lock": true, "pg_advisory_xact_lock_shared": true,
	"pg_try_advisory_xact_lock": true, "pg_try_advisory_xact_lock_shared": true,
	"lo_create": true, "lo_creat": true, "lo_import": true, "lo_export": true, "lo_unlink": true,
	"lo_put": true, "lo_from_bytea": true, "lo_truncate": true, "lowrite": true,
	"pg_logical_emit_message": true, "pg_terminate_backend": true, "pg_cancel_backend": true,
	"pg_reload_conf": true, "pg_rotate_logfile": true, "pg_switch_wal": true,
	"pg_create_restore_point": true, "pg_create_physical_replication_slot": true,
	"pg_create_logical_replication_slot": true, "pg_drop_replication_slot": true,
	"pg_replication_origin_create": true, "pg_replication_origin_drop": true,
	"pg_stat_reset": true, "pg_stat_reset_shared": true, "pg_stat_reset_single_table_counters": true,
	"pg_stat_reset_single_function_counters": true, "pg_stat_reset_slru": true,
	"pg_stat_reset_replication_slot": true, "dblink": true, "dblink_exec": true,
	"pg_import_system_collations": true,
}

// writingWords are the words of a body that may write.
var writingWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range []string{"insert", "update", "delete", "merge", "truncate", "copy",
		"create", "alter", "drop", "grant", "revoke", "comment", "security", "notify", "listen",
		"refresh", "cluster", "reindex", "vacuum", "analyze", "lock", "call", "execute", "import"} {
		m[w] = true
	}
	for f := range sideEffectCalls {
		m[f] = true
	}
	return m
}()

// writingFunctions finds, among functions (name -> the words of its
// bodies), those that may write, each with why.
func writingFunctions(functions map[string]body) map[string]string {
	return findThroughCalls(functions, func(name string, b body, found map[string]string) string {
		if b.volatile {
			return "is a volatile C function"
		}
		return saysOrCalls(name, b, found, writingWords)
	})
}

// saysOrCalls is why function name, whose body is b, is found by
// findThroughCalls: it says one of words, or calls a function found
// already; "" if neither.
func saysOrCalls(name string, b body, found map[string]string, words map[string]bool) string {
	if w := firstIn(b.words, words); w != "" {
		return "says " + w
	}
	if f := firstIn(b.words, found); f != "" && f != name {
		return "calls " + f + "()"
	}
	return ""
}

// mayWrite reports whether n, a SELECT, acts beyond its result
// (Statement.MayWrite); writing are the user functions that may write.
func mayWrite(n *pg.Node, writing map[string]string) bool {
	found := false
	walk(n, func(c *pg.Node) bool {
		switch {
		case c.GetSelectStmt() != nil:
			sel := c.GetSelectStmt()
			found = found || len(sel.LockingClause) > 0 || sel.IntoClause != nil
		case c.GetFuncCall() != nil:
			name := funcName(c.GetFuncCall())
			found = found || sideEffectCalls[name] || writing[name] != ""
		}
		return !found
	})
	return found
}

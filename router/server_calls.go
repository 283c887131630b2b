package router

// Some built-in functions act on the server that runs them as a whole:
// pg_reload_conf() rereads its configuration, pg_stat_reset() clears the
// database's statistics. ALTER SYSTEM goes to every shard (routeUtility),
// so the SELECT pg_reload_conf() that must follow it has to reach every
// shard as well: on one, the setting would take effect there alone, with
// nothing to say so. A statement that reads no table and calls such a
// function goes to every shard; each answers the same (true, or void),
// and the client gets one answer. A shard hint still picks one shard.

// everyServerCalls are the functions above: what they do applies to the
// whole server or database, takes no shard-local argument (an oid, a
// pid), and returns the same on every shard.
var everyServerCalls = map[string]bool{
	"pg_reload_conf": true, "pg_rotate_logfile": true,
	"pg_stat_reset": true, "pg_stat_reset_shared": true, "pg_stat_reset_slru": true,
}

// serverCallRoute places a SELECT of no table that calls a function of
// everyServerCalls on every shard; ok is false for any other statement.
func (r *Router) serverCallRoute(st *Statement) (rt Route, ok bool) {
	if st.Kind != KindSelect || st.serverCall == "" || len(st.uses) > 0 {
		return Route{}, false
	}
	return r.broadcast(st.serverCall + "(): acts on the whole server"), true
}

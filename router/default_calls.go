package router

import "fmt"

// Some statements mean the default shard, whatever shard a transaction
// happens to be on, because what they act on is found there:
//
//   - NOTIFY and pg_notify(): a notification reaches the sessions that
//     LISTEN on the same server, and LISTEN cannot go through a
//     transaction pooler (the proxy refuses it, naming the default
//     shard): listeners connect there. Sent on the shard of a
//     transaction keyed elsewhere, it reached no one, silently.
//   - pg_cancel_backend(pid) and pg_terminate_backend(pid): the pid comes
//     from pg_stat_activity, which the proxy answers from the default
//     shard (README). Run on another shard, the same number is some
//     other session, which would be cancelled or ended instead.
//
// So they go to the default shard unless a hint names one. In a
// transaction already on another shard that makes the transaction span
// two shards: without two_phase_commit the proxy refuses the statement;
// with it, the transaction joins the default shard (and Postgres refuses
// to PREPARE one that notified, so its COMMIT fails): loud either way.
// Called in a statement that reads sharded tables, they would run on
// those tables' shards: refused.

// defaultShardCalls are the functions above, with what they act on.
var defaultShardCalls = map[string]string{
	"pg_notify":            "notifies the default shard's listeners",
	"pg_cancel_backend":    "names a session of the default shard's pg_stat_activity",
	"pg_terminate_backend": "names a session of the default shard's pg_stat_activity",
}

// defaultCallRoute is where a statement calling defaultCall goes.
func (r *Router) defaultCallRoute(defaultCall string) Route {
	return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
		Reason: defaultCall + "(): " + defaultShardCalls[defaultCall] + " -> default shard " + r.cfg.Shards[r.defaultIdx].Name}
}

// defaultCallRefusal refuses defaultCall in a statement that reads
// sharded tables.
func defaultCallRefusal(defaultCall string) error {
	what := defaultShardCalls[defaultCall]
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("%s() in a statement that reads sharded tables: it %s, and would run on the tables' shards", defaultCall, what),
		fmt.Sprintf("select the values first, then call %s() on its own: shardproxy runs it on the default shard", defaultCall))
}

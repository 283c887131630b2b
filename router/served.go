package router

import "fmt"

// Served describes how the proxy answers a statement it serves itself
// rather than by its route (the session's bookkeeping of transactions,
// settings and prepared statements), for the route command and the admin
// console's SHOW ROUTE; ok is false for a statement that is routed. params
// are the statement's literals (QueryPart.Args).
//
// It describes what happens outside a transaction that already spans
// shards; the session refuses what it cannot follow (see proxy/session.go).
func (st *Statement) Served(params [][]byte) (how string, ok bool) {
	switch {
	case st.IsSessionConfig():
		set, err := st.SessionConfig(params)
		if err != nil {
			return "", false // Route reports the refusal
		}
		return fmt.Sprintf("as a session setting like SET (%s = %s), when it is a query of its own (or a statement of the extended protocol)",
			set.SetName, SettingSQL(set.SetValue)), true
	case st.Kind == KindEmpty:
		return "by the proxy: an empty query", true
	case st.Kind == KindShardHintSet, st.Kind == KindShardHintReset,
		st.Kind == KindShow && st.SetName == HintParameter:
		return "by the proxy: the session's shard hint (" + HintParameter + ")", true
	case st.Kind == KindBegin:
		return "by the proxy: the transaction begins on a shard when its first statement there is routed", true
	case st.Kind == KindCommit, st.Kind == KindRollback:
		return "on every shard the transaction reached (two-phase commit where it wrote on more than one)", true
	case st.Kind == KindSet && st.SetLocal:
		return "on every shard the transaction reaches, also those it reaches later", true
	case st.Kind == KindSet:
		return "as a session setting: run on one shard (on each, in a transaction that spans shards) and carried to every backend the session uses next", true
	case st.Kind == KindPrepare && st.SQLExecute:
		return "by the proxy: the prepared statement runs with the arguments bound, routed as that statement is", true
	case st.Kind == KindPrepare && (st.Deallocate != "" || st.DeallocateAll):
		return "by the proxy: the session's prepared statements live in the proxy", true
	case st.Kind == KindPrepare:
		return "by the proxy: checked on the default shard and kept in the session; EXECUTE routes it", true
	case st.DiscardAll:
		return "by the proxy: resets the session it keeps (settings, prepared statements); no backend is reached", true
	}
	return "", false
}

package router

import "fmt"

// setval() sets a sequence on the server that runs it, and every shard
// has its own copy of a sequence (sequences.go). pg_dump ends a table's
// data with SELECT pg_catalog.setval('public.orders_id_seq', 600, true):
// run on one shard, the others' copies stayed where they were, and their
// next DEFAULT nextval() gave ids the restored rows already had. So a
// setval() is placed as ALTER SEQUENCE ... RESTART is, where the
// sequence's table is: every shard for a mapped table's sequence (and
// for one no table is known to own: CREATE SEQUENCE made it on every
// shard), the default shard for an unmapped table's. Every shard then
// answers the same value, and the client gets one answer.
//
// That works for a statement whose value is the same on every shard: one
// that reads no table, or reference tables alone (whole on every shard).
// One that reads other tables, as in SELECT setval('s', max(id)) FROM
// orders, would compute it (and set it) per shard or on one shard: it is
// refused when the sequence is a mapped table's, with a hint to compute
// the value first.

// setvalRoute places a statement that calls setval() on a sequence named
// by a constant or a parameter (Statement.setvals): ok is false when it
// leaves the statement to the tables it reads.
func (r *Router) setvalRoute(st *Statement, args *Args) (rt Route, ok bool, err error) {
	if st.Kind != KindSelect || len(st.setvals) == 0 {
		return Route{}, false, nil
	}
	// everyShard: the first sequence on every shard; mapped: whether a
	// mapped table is known to own it; onDefault: an unmapped table's.
	everyShard, mapped, onDefault := "", false, ""
	for _, a := range st.setvals {
		name, known := a.value(args.Params)
		if !known {
			continue
		}
		schema, rel, valid := regclassName(name)
		if !valid {
			continue // Postgres reports the malformed name
		}
		info, owned := r.sequenceOwner(st.facts, schema, rel)
		if owned && info == nil {
			onDefault = name // an unmapped table's: the default shard's
			continue
		}
		if everyShard == "" || owned && !mapped {
			everyShard, mapped = name, owned
		}
	}
	copiesOnly := true // reads no table but reference tables
	for i := range st.uses {
		if u := &st.uses[i]; u.info == nil || !u.info.ref {
			copiesOnly = false
		}
	}
	switch {
	case everyShard != "" && copiesOnly:
		return r.broadcast("setval(" + quoteLiteral(everyShard) + "): a sequence every shard has a copy of"), true, nil
	case mapped:
		return Route{}, true, pgError(codeFeatureNotSupport,
			fmt.Sprintf("setval(%s) in a statement that reads tables not on every shard: every shard has its own copy of the sequence, and the value would be computed per shard or on one", quoteLiteral(everyShard)),
			fmt.Sprintf("compute the value first, then SELECT setval(%s, value) alone: shardproxy sets every shard's copy to it", quoteLiteral(everyShard)))
	case onDefault != "" && len(st.uses) == 0:
		return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
			Reason: "setval(" + quoteLiteral(onDefault) + "): an unmapped table's sequence -> default shard " + r.cfg.Shards[r.defaultIdx].Name}, true, nil
	}
	return Route{}, false, nil
}

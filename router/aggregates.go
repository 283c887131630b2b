package router

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// builtinAggregates are Postgres' own aggregate functions. A call with
// aggregate syntax (count(*), DISTINCT, ORDER BY, FILTER, WITHIN GROUP) is
// an aggregate whatever its name; without it, the name alone tells.
var builtinAggregates = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true, "array_agg": true,
	"string_agg": true, "bool_and": true, "bool_or": true, "every": true, "json_agg": true,
	"jsonb_agg": true, "json_object_agg": true, "jsonb_object_agg": true, "xmlagg": true,
	"stddev": true, "stddev_pop": true, "stddev_samp": true, "variance": true, "var_pop": true,
	"var_samp": true, "bit_and": true, "bit_or": true, "bit_xor": true, "corr": true,
	"covar_pop": true, "covar_samp": true, "regr_avgx": true, "regr_avgy": true,
	"regr_count": true, "regr_intercept": true, "regr_r2": true, "regr_slope": true,
	"regr_sxx": true, "regr_sxy": true, "regr_syy": true, "mode": true,
	"percentile_cont": true, "percentile_disc": true, "range_agg": true,
	"range_intersect_agg": true, "any_value": true, "json_agg_strict": true,
	"jsonb_agg_strict": true, "json_objectagg": true, "json_arrayagg": true,
}

// userAggregates is an immutable set of the names of aggregates created
// on the shards (CREATE AGGREGATE, extensions). A statement is analysed
// with the set current then (Statement.aggs): mysum(x) over two shards is
// one aggregate to gather, not a per-shard value to concatenate.
//
// The set only grows. A name that stops being an aggregate (DROP
// AGGREGATE) is still read as one: a scalar function of that name is then
// gathered or refused, which is an error at worst, never a wrong result.
type userAggregates struct {
	names map[string]bool
}

func (u *userAggregates) has(name string) bool {
	return u != nil && u.names[name]
}

// LearnAggregates tells the router that names (pg_proc.proname, exact
// case) are aggregate functions on some shard. It is called with what
// the shards' catalogs list (the proxy's health checks) and for CREATE
// AGGREGATE analysed here. When a name is new, cached plans are dropped:
// they may have read a call of it as a scalar function.
func (r *Router) LearnAggregates(names []string) bool {
	r.aggMu.Lock()
	defer r.aggMu.Unlock()
	cur := r.aggs.Load()
	var add []string
	for _, n := range names {
		if n != "" && !builtinAggregates[n] && !cur.has(n) && !slices.Contains(add, n) {
			add = append(add, n)
		}
	}
	if len(add) == 0 {
		return false
	}
	next := &userAggregates{names: make(map[string]bool, len(add)+len(cur.list()))}
	for _, n := range cur.list() {
		next.names[n] = true
	}
	for _, n := range add {
		next.names[n] = true
	}
	// Stored before the cache is cleared: a statement analysed with the
	// old set is then either cleared or refused by put (see planCache.aggs).
	r.aggs.Store(next)
	r.cache.clear()
	return true
}

// LearnedAggregates lists the names LearnAggregates added, sorted (a
// reloaded configuration's router starts from them).
func (r *Router) LearnedAggregates() []string { return r.aggs.Load().list() }

func (u *userAggregates) list() []string {
	if u == nil {
		return nil
	}
	out := make([]string, 0, len(u.names))
	for n := range u.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// aggregateOrWindow names f's kind for messages ("aggregate sum()",
// "window function rank()"), or is "" for any other function call.
func (st *Statement) aggregateOrWindow(f *pg.FuncCall) string {
	names := stringItems(f.Funcname)
	name := ""
	if len(names) > 0 {
		name = names[len(names)-1]
	}
	switch {
	case f.Over != nil:
		return "window function " + name + "()"
	case f.AggStar || f.AggDistinct || len(f.AggOrder) > 0 || f.AggFilter != nil || f.AggWithinGroup ||
		builtinAggregates[name] || st.aggs.has(name):
		return "aggregate " + name + "()"
	}
	return ""
}

// isAggregate tells whether f is an aggregate call (not a window).
func (st *Statement) isAggregate(f *pg.FuncCall) bool {
	return f.Over == nil && st.aggregateOrWindow(f) != ""
}

// aggregateCreated is the name CREATE AGGREGATE defines, or "".
func aggregateCreated(n *pg.Node) string {
	d := n.GetDefineStmt()
	if d == nil || d.Kind != pg.ObjectType_OBJECT_AGGREGATE {
		return ""
	}
	names := stringItems(d.Defnames)
	if len(names) == 0 {
		return ""
	}
	return names[len(names)-1]
}

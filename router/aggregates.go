package router

import (
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
		builtinAggregates[name] || st.facts.aggregate(name):
		return "aggregate " + name + "()"
	}
	return ""
}

// isAggregate tells whether f is an aggregate call (not a window).
func (st *Statement) isAggregate(f *pg.FuncCall) bool {
	return f.Over == nil && st.aggregateOrWindow(f) != ""
}

package router

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Expressions over aggregates (an Evaluate node): the shards compute the
// aggregates' partials and the group values the expression reads, the
// proxy finishes the aggregates, and a Postgres server evaluates the
// expression over the finished values. The proxy never reimplements
// Postgres' operators and functions: round(avg(x), 2), sum(a)::numeric /
// count(*), coalesce(max(x), 0) and HAVING sum(x) > 2 * min(y) give
// exactly what one Postgres gives.

// evalPlan is what the planner collects for the Evaluate node.
type evalPlan struct {
	exprs  []*pg.Node // rewritten to read _sp_m._sp_aK
	out    []ColRef
	args   []ColRef
	having *pg.Node // the rewritten HAVING condition, evaluated last
	// gathers are the shards' array_agg columns of gathered aggregates.
	gathers []exprCol
	// loose: a group value the expression reads is not a function of
	// GROUP BY expressions (a column the primary key determines, say);
	// it is refused with DISTINCT aggregates, whose extra shard grouping
	// would accept what Postgres refuses.
	loose bool
}

// evalColumn makes column c of the result the value of n, an expression
// over aggregates: the shards return a placeholder of n's type there, and
// Evaluate writes the value.
func (p *planner) evalColumn(n *pg.Node, c ColRef) *pgconn.PgError {
	e, err := p.evalExpr(n)
	if err != nil {
		return err
	}
	p.eval.exprs = append(p.eval.exprs, e)
	p.eval.out = append(p.eval.out, c)
	return nil
}

// placeholder is what the shards compute in place of expression n: a NULL
// of n's type (Postgres folds the CASE away without evaluating n, so a
// partial value can raise no error of its own). A cast on top stays on
// top: a CASE's type modifier is -1, while x::numeric(10,2) has one, and
// the client's RowDescription comes from the shards.
func placeholder(n *pg.Node) *pg.Node {
	if tc := n.GetTypeCast(); tc != nil {
		return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: placeholder(tc.Arg), TypeName: tc.TypeName, Location: -1}}}
	}
	return &pg.Node{Node: &pg.Node_CaseExpr{CaseExpr: &pg.CaseExpr{Location: -1, Args: []*pg.Node{
		{Node: &pg.Node_CaseWhen{CaseWhen: &pg.CaseWhen{Location: -1,
			Expr:   boolConst(false),
			Result: proto.Clone(n).(*pg.Node)}}},
	}}}}
}

// evalExpr returns a copy of n reading the evaluation's arguments: every
// aggregate call becomes its finished value, every largest sub-expression
// without aggregates that reads columns becomes the group's value of it
// (computed by the shards), and constants and parameters stay.
func (p *planner) evalExpr(n *pg.Node) (*pg.Node, *pgconn.PgError) {
	what := ""
	walk(n, func(c *pg.Node) bool {
		switch x := c.Node.(type) {
		case *pg.Node_SubLink, *pg.Node_SelectStmt:
			what = "subquery"
		case *pg.Node_GroupingFunc:
			what = "GROUPING()"
		case *pg.Node_FuncCall:
			if setReturning[funcName(x.FuncCall)] {
				// The shards' placeholder (a CASE) cannot hold one.
				what = "set-returning function " + funcName(x.FuncCall) + "()"
			}
		}
		return what == ""
	})
	if what != "" {
		return nil, refuse(what+" in an expression over aggregates",
			"select the aggregates and compute the expression in the application, or "+keyHint(p.st))
	}
	return p.evalRewrite(proto.Clone(n).(*pg.Node))
}

func (p *planner) evalRewrite(n *pg.Node) (*pg.Node, *pgconn.PgError) {
	if fc := n.GetFuncCall(); fc != nil && p.st.isAggregate(fc) {
		if p.gathered(fc) {
			return p.gather(fc)
		}
		c, err := p.hiddenAgg(n)
		if err != nil {
			return nil, err
		}
		return p.evalArg(c), nil
	}
	if findFunc(n, func(f *pg.FuncCall) bool { return p.st.isAggregate(f) || isWindow(f) }) == nil {
		if !readsColumns(n) {
			return n, nil
		}
		if standalone(n) {
			for _, g := range p.groups {
				if exprEqual(g.n, n) {
					return p.evalArg(g.col), nil
				}
			}
			p.eval.loose = p.eval.loose || !p.ofGroups(n)
			return p.evalArg(p.hiddenExpr(n)), nil
		}
	}
	var err *pgconn.PgError
	rewriteNodes(n.ProtoReflect(), func(c *pg.Node) *pg.Node {
		if err != nil {
			return c
		}
		r, e := p.evalRewrite(c)
		if e != nil {
			err = e
			return c
		}
		return r
	})
	return n, err
}

// setReturning are the built-in set-returning functions. Another one
// over aggregates fails on the shards ("set-returning functions are not
// allowed in CASE"), never silently.
var setReturning = map[string]bool{
	"generate_series": true, "generate_subscripts": true, "unnest": true, "regexp_matches": true,
	"regexp_split_to_table": true, "string_to_table": true, "json_array_elements": true,
	"json_array_elements_text": true, "jsonb_array_elements": true, "jsonb_array_elements_text": true,
	"json_each": true, "json_each_text": true, "jsonb_each": true, "jsonb_each_text": true,
	"json_object_keys": true, "jsonb_object_keys": true, "json_populate_recordset": true,
	"jsonb_populate_recordset": true, "json_to_recordset": true, "jsonb_to_recordset": true,
	"jsonb_path_query": true, "ts_stat": true, "ts_debug": true,
}

// evalArg returns the reference to the evaluation argument reading c.
func (p *planner) evalArg(c ColRef) *pg.Node {
	k := -1
	for i, a := range p.eval.args {
		if a == c {
			k = i
		}
	}
	if k < 0 {
		k = len(p.eval.args)
		p.eval.args = append(p.eval.args, c)
	}
	return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(evalRel), pg.MakeStrNode(evalArg(k))}, -1)
}

// ofGroups tells whether every column n reads is a GROUP BY expression.
func (p *planner) ofGroups(n *pg.Node) bool {
	ok := true
	walk(n, func(c *pg.Node) bool {
		if c.GetColumnRef() == nil {
			return ok
		}
		grouped := false
		for _, g := range p.groups {
			grouped = grouped || exprEqual(g.n, c)
		}
		ok = ok && grouped
		return false
	})
	return ok
}

// readsColumns tells whether n reads a column of the query's rows.
func readsColumns(n *pg.Node) bool {
	found := false
	walk(n, func(c *pg.Node) bool {
		found = found || c.GetColumnRef() != nil
		return !found
	})
	return found
}

// standalone tells whether n is an expression that can be replaced by a
// value (a CASE's WHEN arm or a named argument cannot: its parent needs
// it as it is).
func standalone(n *pg.Node) bool {
	switch n.Node.(type) {
	case *pg.Node_ColumnRef, *pg.Node_AExpr, *pg.Node_FuncCall, *pg.Node_TypeCast, *pg.Node_BoolExpr,
		*pg.Node_NullTest, *pg.Node_BooleanTest, *pg.Node_CaseExpr, *pg.Node_CoalesceExpr,
		*pg.Node_MinMaxExpr, *pg.Node_AIndirection, *pg.Node_AArrayExpr, *pg.Node_RowExpr:
		// Not a CollateClause: its value would reach the evaluation
		// without the collation, which must stay with the evaluation.
		return true
	}
	return false
}

// rewriteNodes replaces every Node directly below m (through the messages
// that are not Nodes) with fn's result.
func rewriteNodes(m protoreflect.Message, fn func(*pg.Node) *pg.Node) {
	type set struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var sets []set
	// In declared order, not Range's (which is unspecified): the hidden
	// columns are added in this order, and plans must not vary.
	fields := m.Descriptor().Fields()
	for k := 0; k < fields.Len(); k++ {
		fd := fields.Get(k)
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if x, ok := l.Get(i).Message().Interface().(*pg.Node); ok {
					l.Set(i, protoreflect.ValueOfMessage(fn(x).ProtoReflect()))
				} else {
					rewriteNodes(l.Get(i).Message(), fn)
				}
			}
			continue
		}
		if x, ok := v.Message().Interface().(*pg.Node); ok {
			sets = append(sets, set{fd, protoreflect.ValueOfMessage(fn(x).ProtoReflect())})
		} else {
			rewriteNodes(v.Message(), fn)
		}
	}
	for _, s := range sets {
		m.Set(s.fd, s.v)
	}
}

// evaluate puts the Evaluate node over root, when the statement has
// expressions over aggregates.
func (p *planner) evaluate(root Node) (Node, *pgconn.PgError) {
	ev := &p.eval
	if len(ev.exprs) == 0 && ev.having == nil {
		return root, nil
	}
	if ev.loose && p.distinct != nil {
		return nil, refuse("expression over aggregates that reads a column other than a GROUP BY expression, with a DISTINCT aggregate",
			"group by the expression itself, or "+keyHint(p.st))
	}
	targets := []*pg.Node{pg.MakeResTargetNodeWithVal(
		pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(evalRel), pg.MakeStrNode(evalOrdinal)}, -1), -1)}
	for _, e := range ev.exprs {
		targets = append(targets, pg.MakeResTargetNodeWithVal(e, -1))
	}
	if ev.having != nil {
		targets = append(targets, pg.MakeResTargetNodeWithVal(ev.having, -1))
	}
	sel := &pg.SelectStmt{TargetList: targets, LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg.SetOperation_SETOP_NONE}
	tree := &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}}
	text, err := pg.Deparse(&pg.ParseResult{Version: p.version, Stmts: []*pg.RawStmt{{Stmt: tree}}})
	if err != nil {
		return nil, pgError(codeInternal, "deparsing the evaluation query: "+err.Error(), "")
	}
	// As for the shard query: the text must parse back into the same tree.
	back, perr := pg.Parse(text)
	if perr != nil || len(back.Stmts) != 1 || !exprEqual(back.Stmts[0].Stmt, tree) {
		return nil, refuse("expression over aggregates that shardproxy cannot rewrite exactly",
			fmt.Sprintf("select the aggregates and compute the expression in the application, or %s", keyHint(p.st)))
	}
	return &Evaluate{Input: root, SQL: splitTemplate(text), Args: ev.args, Out: ev.out, Having: ev.having != nil}, nil
}

// gathered tells whether aggregate fc is computed by gathering its
// inputs rather than merged from per-shard partials (placeAgg): any
// aggregate but the merged ones, one with ORDER BY or WITHIN GROUP, and a
// DISTINCT aggregate whose argument the shards do not group by.
func (p *planner) gathered(fc *pg.FuncCall) bool {
	name := funcName(fc)
	if len(fc.AggOrder) > 0 || fc.AggWithinGroup {
		return true
	}
	if q := stringItems(fc.Funcname); len(q) > 1 && q[0] != "pg_catalog" {
		// app.sum(x) is the user's aggregate that happens to be named
		// sum: its partials do not add up like Postgres' sum's.
		return true
	}
	switch name {
	case "count", "sum", "min", "max", "bool_and", "every", "bool_or", "avg":
	default:
		return true
	}
	if fc.AggStar || len(fc.Args) != 1 || !fc.AggDistinct {
		return false
	}
	arg := fc.Args[0]
	switch {
	case name != "count" && name != "sum" && name != "avg":
		return true
	case name == "count" && p.isShardKey(arg):
		// Summed from the shards' counts, which the shards' grouping by
		// another DISTINCT argument would split.
		return p.distinct != nil
	case name == "count" && fc.AggFilter != nil:
		return true
	}
	return p.keyDistinct || p.distinct != nil && !exprEqual(p.distinct, arg)
}

// gather computes aggregate fc by gathering its inputs: every argument
// and ORDER BY key that reads columns becomes array_agg(...) on the
// shards (under fc's FILTER), the proxy concatenates the shards' arrays
// (AggGather), and Postgres runs fc itself over them:
//
//	(SELECT f(_sp_u._sp_g0, ... ORDER BY _sp_u._sp_g1) FROM unnest(a0, a1) AS _sp_u(_sp_g0, _sp_g1))
//
// The whole input of each group is held (merge_memory bounds it).
func (p *planner) gather(orig *pg.FuncCall) (*pg.Node, *pgconn.PgError) {
	if orig.FuncVariadic {
		return nil, refuse(fmt.Sprintf("aggregate %s() with VARIADIC", funcName(orig)), keyHint(p.st))
	}
	fc := proto.Clone(orig).(*pg.FuncCall)
	filter := fc.AggFilter
	fc.AggFilter = nil
	var distinctCols []*pg.Node
	count := func(e *pg.Node) {
		if !readsColumns(e) {
			return
		}
		for _, d := range distinctCols {
			if exprEqual(d, e) {
				return
			}
		}
		distinctCols = append(distinctCols, e)
	}
	for _, a := range fc.Args {
		count(a)
	}
	for _, o := range fc.AggOrder {
		count(o.GetSortBy().GetNode())
	}
	gatheredCols := len(distinctCols)
	var arrays, names []string
	var seen []exprCol // gathered expressions: DISTINCT's ORDER BY must name its argument's column
	var one func(e *pg.Node, force bool) *pg.Node
	one = func(e *pg.Node, force bool) *pg.Node {
		if !force && !readsColumns(e) {
			return e // a constant (string_agg's delimiter) stays as written
		}
		if cc := e.GetCollateClause(); cc != nil {
			// The collation applies where the aggregate compares.
			inner := one(cc.Arg, force)
			if inner == nil {
				return nil
			}
			out := proto.Clone(e).(*pg.Node)
			out.GetCollateClause().Arg = inner
			return out
		}
		if p.wholeRow(e) {
			return nil
		}
		for _, s := range seen {
			if exprEqual(s.n, e) {
				return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode("_sp_u"), pg.MakeStrNode(names[s.col.Index])}, -1)
			}
		}
		seen = append(seen, exprCol{n: e, col: ColRef{Index: len(names)}})
		agg := pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("array_agg")}, []*pg.Node{proto.Clone(e).(*pg.Node)}, -1)
		// A DISTINCT aggregate's ORDER BY keys are among its arguments:
		// with one gathered column the shards may dedupe it already.
		agg.GetFuncCall().AggDistinct = fc.AggDistinct && gatheredCols == 1
		if filter != nil {
			agg.GetFuncCall().AggFilter = proto.Clone(filter).(*pg.Node)
		}
		c, found := ColRef{}, false
		for _, g := range p.eval.gathers {
			if exprEqual(g.n, agg) {
				c, found = g.col, true // another aggregate gathers the same input
			}
		}
		if !found {
			c = p.addHidden(proto.Clone(agg).(*pg.Node))
			p.specs = append(p.specs, AggSpec{Func: AggGather, Col: c})
			p.eval.gathers = append(p.eval.gathers, exprCol{n: agg, col: c})
		}
		name := "_sp_g" + strconv.Itoa(len(names))
		arg := p.evalArg(c).GetColumnRef()
		arrays = append(arrays, stringItems(arg.Fields)[0]+"."+stringItems(arg.Fields)[1])
		names = append(names, name)
		return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode("_sp_u"), pg.MakeStrNode(name)}, -1)
	}
	for i, a := range fc.Args {
		if fc.Args[i] = one(a, false); fc.Args[i] == nil {
			return nil, errWholeRow(orig)
		}
	}
	for _, o := range fc.AggOrder {
		sb := o.GetSortBy()
		if sb.Node = one(sb.Node, false); sb.Node == nil {
			return nil, errWholeRow(orig)
		}
	}
	if len(arrays) == 0 {
		// Only constants (count(*) FILTER aside, which is merged): the
		// gathered array carries the number of rows.
		one(boolConst(true), true)
	}
	q := fmt.Sprintf("SELECT (SELECT NULL FROM unnest(%s) AS _sp_u(%s))", strings.Join(arrays, ", "), strings.Join(names, ", "))
	tree, err := pg.Parse(q)
	if err != nil {
		return nil, pgError(codeInternal, "building the gathered aggregate: "+err.Error(), "")
	}
	sub := tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
	sub.GetSubLink().Subselect.GetSelectStmt().TargetList[0].GetResTarget().Val = &pg.Node{Node: &pg.Node_FuncCall{FuncCall: fc}}
	return sub, nil
}

// wholeRow tells whether e is a whole row (t or t.*) of a FROM item:
// unnest would give back its columns, not the row, and its type's OID
// differs between the shards.
func (p *planner) wholeRow(e *pg.Node) bool {
	cr := e.GetColumnRef()
	if cr == nil || len(cr.Fields) == 0 {
		return false
	}
	if cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
		return true
	}
	if len(cr.Fields) != 1 {
		return false
	}
	name := cr.Fields[0].GetString_().GetSval()
	if _, ok := p.from[name]; ok {
		return true
	}
	for _, f := range p.sel.FromClause {
		if a := f.GetRangeSubselect().GetAlias(); a != nil && a.Aliasname == name {
			return true
		}
	}
	return false
}

func errWholeRow(fc *pg.FuncCall) *pgconn.PgError {
	return refuse(fmt.Sprintf("aggregate %s() over whole rows", funcName(fc)),
		"aggregate the columns you need (json_agg(json_build_object('a', a, ...))), or add a condition on the shard key so the statement targets one shard")
}

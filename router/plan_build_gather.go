package router

import (
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Gathered SELECTs: what the merge cannot answer from the shards' own
// results (a join of tables not joined on their shard keys, an aggregate
// or LIMIT in a subquery, GROUPING SETS, a named WINDOW, an aggregate of
// the outer query inside a subquery ...) is answered by one Postgres
// running the client's statement itself over the rows of the sharded
// tables it reads, gathered from the shards. Postgres then decides what
// every construct means, as it would on one server.
//
// The shards run one statement: every occurrence of a sharded table
// (each FROM item naming one, in subqueries, CTEs and inlined views too)
// is an arm of a UNION ALL returning its rows as text, tagged with the
// occurrence's number:
//
//	SELECT _sp_q.*, _sp_g._sp_h0, _sp_g._sp_h1
//	  FROM (SELECT 1 AS _sp_h0, ROW(o.*)::text AS _sp_h1 FROM orders o
//	        UNION ALL SELECT 2, ROW(orders.*)::text FROM orders) _sp_g
//	  LEFT JOIN (SELECT * FROM (<the client's statement>) _sp_q0 WHERE false) _sp_q ON true
//
// _sp_q is never run (WHERE false is a one-time filter); it gives each
// row NULL columns of the client's result types, so the shards' row
// description is the client's, followed by the two hidden columns. One
// statement per shard is one snapshot per shard, taken inside the commit
// gate's read window like any SELECT across shards: the gathered rows are
// one consistent state of the data.
//
// One Postgres (a shard the statement ran on; every shard has every
// table's definition, and the reference tables' rows) then runs the
// client's statement with each occurrence replaced by its gathered rows,
// read back through the table's row type:
//
//	WITH _sp_m AS (SELECT * FROM unnest($1, $2) AS _sp_m(_sp_a0, _sp_a1))
//	SELECT ... FROM unnest(ARRAY(SELECT _sp_m._sp_a1::orders FROM _sp_m WHERE _sp_m._sp_a0 = 1)) AS o ...
//
// The WHERE terms that read one occurrence's columns alone go into its
// arm too (pushableFilters), and each occurrence has a second arm, tagged
// with its negated number, that describes the table's columns on each
// shard (gatherSignature): the executor refuses the statement when the
// shards' tables differ, rather than read one shard's row text as other
// columns.
//
// The rows are held in memory, within merge_memory (53200 beyond it):
// this is for the statements nothing cheaper answers, and tables or
// filtered parts of tables of a size the proxy can hold. A session that
// prefers the merge's refusals sets shardproxy.gather = off
// (Args.MergeOnly).

const (
	gatherTag = hiddenPrefix + "0" // the occurrence's number
	gatherRow = hiddenPrefix + "1" // its row, as the text of a row value
)

// gatherState is what a Statement keeps to plan its gathering, once, on
// the first execution the merge refuses.
type gatherState struct {
	once    sync.Once
	orig    *pg.Node // the statement's tree as analysed, before buildPlan rewrote it
	version int32
	plan    *ScatterPlan
}

// gathered returns the statement's gathering plan, or nil when it has
// none (gatherable said no, or planning it failed: the caller's refusal
// stands).
func (r *Router) gathered(st *Statement) *ScatterPlan {
	g := st.gather
	if g == nil {
		return nil
	}
	g.once.Do(func() {
		// A statement that cannot be gathered keeps the merge's refusal,
		// whose reason is the one to tell the client.
		g.plan, _ = r.buildGather(st, g.orig, g.version)
		g.orig = nil
	})
	return g.plan
}

// Gathers reports whether the plan is a gathering (its root evaluates
// the client's statement over gathered rows).
func (p *ScatterPlan) Gathers() bool {
	gathers := false
	walkPlan(p.Root, func(n Node) {
		if e, ok := n.(*Evaluate); ok && e.Gather {
			gathers = true
		}
	})
	return gathers
}

// gatherable tells whether the SELECT st can be gathered: it reads
// sharded and reference tables only, all of the sharded ones on the same
// shards (each occurrence's arm then finds its table on every shard the
// statement goes to), and writes and locks nothing.
func (r *Router) gatherable(st *Statement, stmt *pg.Node) bool {
	sel := stmt.GetSelectStmt()
	if sel == nil || sel.IntoClause != nil || st.MayWrite || st.cursor || modifyingWith(sel) {
		return false
	}
	var mask uint64
	for i := range st.uses {
		u := &st.uses[i]
		if u.write || u.info == nil {
			return false // a table on the default shard alone (or a write)
		}
		if !u.sharded() {
			continue
		}
		m := r.stratMask[u.info.strat.Name()]
		if mask != 0 && m != mask {
			return false
		}
		mask = m
	}
	ok := mask != 0
	walk(stmt, func(n *pg.Node) bool {
		switch x := n.Node.(type) {
		case *pg.Node_SelectStmt:
			ok = ok && len(x.SelectStmt.LockingClause) == 0 && x.SelectStmt.IntoClause == nil
		case *pg.Node_RangeTableSample:
			ok = false // TABLESAMPLE needs the table itself
		case *pg.Node_ColumnRef:
			// schema.table.column would not name the gathered rows.
			fields := x.ColumnRef.Fields
			ok = ok && len(fields) <= 2
		}
		return ok
	})
	return ok
}

// buildGather plans the gathering of st, whose tree as analysed is orig.
func (r *Router) buildGather(st *Statement, orig *pg.Node, version int32) (*ScatterPlan, *pgconn.PgError) {
	hint := keyHint(st)
	cant := func(what string) *pgconn.PgError {
		return refuse("statement that shardproxy cannot gather exactly: "+what, hint)
	}
	// CTE names: an unqualified FROM name equal to one is the CTE where
	// it is in scope; where it is not, it is the table. Rather than
	// follow Postgres' scoping rules here, a statement whose CTEs are
	// named like mapped tables is not gathered.
	ctes := map[string]bool{}
	walk(orig, func(n *pg.Node) bool {
		if c := n.GetCommonTableExpr(); c != nil {
			ctes[c.Ctename] = true
		}
		return true
	})
	var arms []*pg.SelectStmt
	var tables []*pg.RangeVar // the occurrences, tagged 1...
	var failed *pgconn.PgError
	eval := proto.Clone(orig).(*pg.Node)
	filters := pushableFilters(eval)
	rewriteTree(eval, func(n *pg.Node) *pg.Node {
		rv := n.GetRangeVar()
		if rv == nil || failed != nil {
			return nil
		}
		_, info, err := r.table(st.facts, rv.Schemaname, rv.Relname)
		switch {
		case err != nil:
			failed = err
			return nil
		case rv.Schemaname == "" && ctes[rv.Relname]:
			if info != nil {
				failed = cant("a WITH query is named like table " + rv.Relname)
			}
			return nil
		case info == nil || info.ref:
			return nil // a reference table (every shard has its rows), or the analyser refused it already
		}
		tables = append(tables, rv)
		tag := len(tables)
		arm := gatherArm(rv, tag)
		arm.WhereClause = filters[rv]
		arms = append(arms, arm, gatherSignature(rv, tag))
		return gatherRead(rv, tag)
	})
	if failed != nil {
		return nil, failed
	}
	// The analyser read the same sharded tables (it may count a CTE's
	// once per reference).
	for i := range st.uses {
		if u := &st.uses[i]; u.sharded() && !slices.ContainsFunc(tables, func(rv *pg.RangeVar) bool {
			return rv.Schemaname == u.schema && rv.Relname == u.rel
		}) {
			return nil, cant("its tables")
		}
	}
	if len(tables) == 0 {
		return nil, cant("its tables")
	}

	// The shards' statement.
	shard := mustSelect("SELECT _sp_q.*, _sp_g." + gatherTag + ", _sp_g." + gatherRow +
		" FROM (SELECT 1) _sp_g LEFT JOIN (SELECT * FROM (SELECT 1) _sp_q0 WHERE false) _sp_q ON true")
	all := arms[0]
	for _, a := range arms[1:] {
		all = &pg.SelectStmt{Op: pg.SetOperation_SETOP_UNION, All: true, Larg: all, Rarg: a,
			LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT}
	}
	join := shard.FromClause[0].GetJoinExpr()
	join.Larg.GetRangeSubselect().Subquery = &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: all}}
	inner := join.Rarg.GetRangeSubselect().Subquery.GetSelectStmt()
	inner.FromClause[0].GetRangeSubselect().Subquery = proto.Clone(orig).(*pg.Node)
	p := &planner{st: st, sel: shard, version: version, hidden: 2}
	scatter, err := p.scatter()
	if err != nil {
		return nil, err
	}

	// The evaluation: the client's statement over the gathered rows,
	// their relation a CTE put first in its WITH.
	sel := eval.GetSelectStmt()
	if sel.WithClause == nil {
		sel.WithClause = &pg.WithClause{Location: -1}
	}
	cte := mustSelect("WITH " + evalRel + " AS (SELECT * FROM " + fromMarker + ") SELECT 1").WithClause.Ctes[0]
	sel.WithClause.Ctes = append([]*pg.Node{cte}, sel.WithClause.Ctes...)
	text, derr := pg.Deparse(&pg.ParseResult{Version: version, Stmts: []*pg.RawStmt{{Stmt: eval}}})
	if derr != nil {
		return nil, pgError(codeInternal, "deparsing the evaluation query: "+derr.Error(), "")
	}
	back, perr := pg.Parse(text)
	from := " FROM " + fromMarker
	cut := strings.Index(text, from)
	if perr != nil || len(back.Stmts) != 1 || !exprEqual(back.Stmts[0].Stmt, eval) || cut < 0 || strings.Count(text, fromMarker) != 1 {
		return nil, cant("its text")
	}
	ev := &Evaluate{Input: &Concatenate{Input: scatter}, Whole: true, Gather: true,
		SQL: splitTemplate(text[:cut]), Tail: splitTemplate(text[cut+len(from):])}
	return &ScatterPlan{Root: &Project{Input: ev}, Hidden: 2}, nil
}

// gatherArm is the shards' arm returning the rows of occurrence rv,
// tagged n: SELECT n, ROW(ref.*)::text FROM rv.
func gatherArm(rv *pg.RangeVar, n int) *pg.SelectStmt {
	arm := mustSelect("SELECT 1 AS " + gatherTag + ", ROW(_sp_r.*)::text AS " + gatherRow + " FROM _sp_t")
	table := proto.Clone(rv).(*pg.RangeVar)
	ref := table.Relname
	if table.Alias != nil {
		// (FROM t AS a(x, y) keeps its column names, which pushed
		// filters may use; a.* is every column all the same.)
		ref = table.Alias.Aliasname
	}
	arm.FromClause[0] = &pg.Node{Node: &pg.Node_RangeVar{RangeVar: table}}
	t := arm.TargetList
	t[0].GetResTarget().Val = pg.MakeAConstIntNode(int64(n), -1)
	row := t[1].GetResTarget().Val.GetTypeCast().Arg.GetRowExpr()
	row.Args[0].GetColumnRef().Fields[0] = pg.MakeStrNode(ref)
	return arm
}

// pushableFilters finds, for the occurrences of tables in the FROM
// clauses of tree, the conditions of their query level's WHERE that the
// shards can apply to the occurrence's rows before gathering them (the
// evaluation applies the whole WHERE again): a top-level AND term that
// reads only columns qualified by the occurrence's name, with constants,
// parameters, comparison and pattern operators, IN lists, BETWEEN, IS
// [NOT] NULL and casts (no function, which could be volatile, no
// subquery), for an occurrence not on the nullable side of an outer join
// (where a row that fails the condition still makes a NULL-extended row
// that the WHERE may keep). The filters are copies, keyed by the
// occurrence's RangeVar in tree.
func pushableFilters(tree *pg.Node) map[*pg.RangeVar]*pg.Node {
	out := map[*pg.RangeVar]*pg.Node{}
	// The levels without an outer query: the statement, or the arms of
	// its set operations. There an unqualified column of a level reading
	// one table is that table's (at other levels it may be the outer
	// query's, which the shards' arm could not read).
	outermost := map[*pg.SelectStmt]bool{}
	var top func(s *pg.SelectStmt)
	top = func(s *pg.SelectStmt) {
		if s == nil {
			return
		}
		outermost[s] = true
		top(s.Larg)
		top(s.Rarg)
	}
	top(tree.GetSelectStmt())
	walk(tree, func(n *pg.Node) bool {
		s := n.GetSelectStmt()
		if s == nil || s.WhereClause == nil {
			return true
		}
		var terms []*pg.Node
		var and func(e *pg.Node)
		and = func(e *pg.Node) {
			if b := e.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
				for _, a := range b.Args {
					and(a)
				}
				return
			}
			terms = append(terms, e)
		}
		and(s.WhereClause)
		var preserved []*pg.RangeVar
		var from func(f *pg.Node, nullable bool)
		from = func(f *pg.Node, nullable bool) {
			switch x := f.Node.(type) {
			case *pg.Node_RangeVar:
				if !nullable {
					preserved = append(preserved, x.RangeVar)
				}
			case *pg.Node_JoinExpr:
				j := x.JoinExpr
				from(j.Larg, nullable || j.Jointype == pg.JoinType_JOIN_RIGHT || j.Jointype == pg.JoinType_JOIN_FULL)
				from(j.Rarg, nullable || j.Jointype == pg.JoinType_JOIN_LEFT || j.Jointype == pg.JoinType_JOIN_FULL)
			}
		}
		for _, f := range s.FromClause {
			from(f, false)
		}
		alone := outermost[s] && len(s.FromClause) == 1 && s.FromClause[0].GetRangeVar() != nil
		for _, rv := range preserved {
			name := rv.Relname
			if rv.Alias != nil {
				name = rv.Alias.Aliasname
			}
			var keep []*pg.Node
			for _, t := range terms {
				if filterOn(t, name, alone) {
					keep = append(keep, proto.Clone(t).(*pg.Node))
				}
			}
			switch len(keep) {
			case 0:
			case 1:
				out[rv] = keep[0]
			default:
				out[rv] = pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, keep, -1)
			}
		}
		return true
	})
	return out
}

// filterOn reports whether condition e reads only columns of the FROM
// item named name (qualified by it, or unqualified when the item is
// alone), through the constructs pushableFilters allows.
func filterOn(e *pg.Node, name string, alone bool) bool {
	ok, reads := true, false
	walk(e, func(n *pg.Node) bool {
		switch x := n.Node.(type) {
		case *pg.Node_ColumnRef:
			f := x.ColumnRef.Fields
			qualified := len(f) == 2 && f[0].GetString_() != nil && f[0].GetString_().Sval == name && f[1].GetString_() != nil
			ok = ok && (qualified || alone && len(f) == 1 && f[0].GetString_() != nil)
			reads = true
			return false
		case *pg.Node_AExpr:
			switch x.AExpr.Kind {
			case pg.A_Expr_Kind_AEXPR_OP:
				ok = ok && len(x.AExpr.Name) == 1 && filterOps[x.AExpr.Name[0].GetString_().GetSval()]
			case pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
				pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
				ok = ok && len(x.AExpr.Name) == 1 && filterOps[x.AExpr.Name[0].GetString_().GetSval()]
			default:
				ok = false
			}
		case *pg.Node_BoolExpr, *pg.Node_NullTest, *pg.Node_TypeCast, *pg.Node_AConst, *pg.Node_ParamRef,
			*pg.Node_List, *pg.Node_String_, *pg.Node_TypeName, *pg.Node_Integer:
		default:
			ok = false
		}
		return ok
	})
	return ok && reads
}

// filterOps are the operators a pushed filter may use: the built-in
// comparisons and patterns (immutable for the built-in types).
var filterOps = map[string]bool{
	"=": true, "<>": true, "<": true, ">": true, "<=": true, ">=": true,
	"~~": true, "!~~": true, "~~*": true, "!~~*": true, "BETWEEN": true, "NOT BETWEEN": true,
}

// gatherSignature is the shards' arm describing occurrence rv's table,
// tagged -n: its columns' names and types in order, as text. Every shard must give
// the same, or the row text of one would be read as another's columns
// (router.wholeIter compares them before evaluating).
func gatherSignature(rv *pg.RangeVar, n int) *pg.SelectStmt {
	arm := mustSelect("SELECT -1 AS " + gatherTag + ", (SELECT string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)" +
		" FROM pg_catalog.pg_attribute a WHERE a.attrelid = '_sp_t'::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped) AS " + gatherRow)
	arm.TargetList[0].GetResTarget().Val = pg.MakeAConstIntNode(int64(-n), -1)
	sub := arm.TargetList[1].GetResTarget().Val.GetSubLink().Subselect.GetSelectStmt()
	name := quoteIdent(rv.Relname)
	if rv.Schemaname != "" {
		name = quoteIdent(rv.Schemaname) + "." + name
	}
	sub.WhereClause.GetBoolExpr().Args[0].GetAExpr().Rexpr.GetTypeCast().Arg = pg.MakeAConstStrNode(name, -1)
	return arm
}

// quoteIdent writes name as a quoted identifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// gatherRead is what replaces occurrence rv, tagged n, in the
// evaluation: its gathered rows, read back as the table's row type,
// under the occurrence's alias (or name). A function in FROM returning
// the table's row type (not a subquery) keeps that type for the whole
// row (json_agg(o), o::text, row comparisons).
func gatherRead(rv *pg.RangeVar, n int) *pg.Node {
	q := mustSelect("SELECT * FROM unnest(ARRAY(SELECT " + evalRel + "." + evalArg(1) + "::_sp_type FROM " + evalRel +
		" WHERE " + evalRel + "." + evalArg(0) + " = 1)) AS _sp_x")
	fn := q.FromClause[0].GetRangeFunction()
	sub := fn.Functions[0].GetList().Items[0].GetFuncCall().Args[0].GetSubLink().Subselect.GetSelectStmt()
	cast := sub.TargetList[0].GetResTarget().Val.GetTypeCast()
	var names []*pg.Node
	if rv.Schemaname != "" {
		names = append(names, pg.MakeStrNode(rv.Schemaname))
	}
	cast.TypeName.Names = append(names, pg.MakeStrNode(rv.Relname))
	sub.WhereClause.GetAExpr().Rexpr = pg.MakeAConstIntNode(int64(n), -1)
	alias := rv.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: rv.Relname}
	}
	fn.Alias = proto.Clone(alias).(*pg.Alias)
	return q.FromClause[0]
}

// mustSelect parses one of this file's fixed texts.
func mustSelect(sql string) *pg.SelectStmt {
	tree, err := pg.Parse(sql)
	if err != nil {
		panic("router: " + sql + ": " + err.Error())
	}
	return tree.Stmts[0].Stmt.GetSelectStmt()
}

// rewriteTree replaces n, or any node below it, for which fn returns a
// replacement (not looking below a replaced node).
func rewriteTree(n *pg.Node, fn func(*pg.Node) *pg.Node) *pg.Node {
	if r := fn(n); r != nil {
		return r
	}
	rewriteNodes(n.ProtoReflect(), func(c *pg.Node) *pg.Node { return rewriteTree(c, fn) })
	return n
}

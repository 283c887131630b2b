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

// The planner turns the analysed (literal-normalised) AST of a SELECT
// into a ScatterPlan: it rewrites the statement into the query every
// shard runs (partial aggregates, hidden sort and group columns, LIMIT
// count+offset) and puts the merge steps above it. Whatever it cannot
// merge exactly becomes a 0A000 error naming the construct. It runs once
// per statement text (plan-cache miss); the result is immutable.

// hiddenPrefix names the columns the planner appends to the shard query.
const hiddenPrefix = "_sp_h"

// planner holds the state of one plan build. sel is rewritten in place:
// it belongs to a parse tree nobody else holds.
type planner struct {
	st      *Statement
	sel     *pg.SelectStmt
	version int32      // of the parse tree, for Deparse
	orig    []*pg.Node // the client's target expressions, before any rewrite
	names   []string   // their output names as written (AS x), "" if none
	star    bool       // the select list has a *: its width is unknown
	hidden  int
	// hiddenExprs are the plain expressions placed in hidden columns.
	hiddenExprs []exprCol
	from        map[string]*tableInfo // FROM-clause tables of this level by reference name
	only        *tableInfo            // the single FROM item when there is exactly one table

	// aggregate path
	groups   []exprCol // GROUP BY expressions and where they are
	aggs     []exprCol // aggregate calls already placed, by their original expression
	specs    []AggSpec
	distinct *pg.Node // the count(DISTINCT x) argument the shards group by
	// keyDistinct: a count(DISTINCT key) is summed from the shards'
	// counts, which is only right while the shards group as the client did.
	keyDistinct bool
	retype      bool // avg or count(DISTINCT): Project must fix the visible types
	eval        evalPlan
}

type exprCol struct {
	n   *pg.Node
	col ColRef
}

// lockingName is a locking clause as written: FOR UPDATE, FOR SHARE ...
func lockingName(lc *pg.LockingClause) string {
	switch lc.GetStrength() {
	case pg.LockClauseStrength_LCS_FORKEYSHARE:
		return "FOR KEY SHARE"
	case pg.LockClauseStrength_LCS_FORSHARE:
		return "FOR SHARE"
	case pg.LockClauseStrength_LCS_FORNOKEYUPDATE:
		return "FOR NO KEY UPDATE"
	}
	return "FOR UPDATE"
}

func refuse(construct, hint string) *pgconn.PgError {
	return pgError(codeFeatureNotSupport, construct+" across shards", hint)
}

// outerAggError refuses aggregate agg of the outer query written inside a
// subquery (outerAggregate).
func outerAggError(agg, hintKey string) *pgconn.PgError {
	return refuse(fmt.Sprintf("aggregate %s() of the outer query written inside a subquery", agg),
		fmt.Sprintf("its arguments refer only to the outer query, so Postgres aggregates the outer query's rows; write %s() in the outer query's select list, or %s", agg, hintKey))
}

// keyHint is the hint every refusal ends with: one shard answers exactly.
func keyHint(st *Statement) string {
	return fmt.Sprintf("add a condition on the shard key (%s) so the statement targets one shard", st.noKey)
}

// buildPlan returns the plan of a top-level SELECT reading sharded tables,
// nil when concatenating the shards' rows is already exact, or the 0A000
// error Route gives when the statement spans shards.
func buildPlan(st *Statement, s *pg.SelectStmt, version int32) (*ScatterPlan, *pgconn.PgError) {
	hintKey := keyHint(st)
	if st.outerAgg != "" {
		return nil, outerAggError(st.outerAgg, hintKey)
	}
	if isSetOp(s) && (st.nestedInexact != "" || !mergeableSetOp(st.inexact)) && gatherableSetOp(st, s, true) {
		p := &planner{st: st, sel: s, version: version}
		return p.gatherSetOp()
	}
	if st.nestedInexact != "" {
		hint := "move the " + st.nestedInexact + " to the outer query, or " + hintKey
		if strings.HasPrefix(st.nestedIn, "view ") {
			hint = "query the view's tables with the " + st.nestedInexact + " in the outer query, or " + hintKey
		}
		return nil, refuse(st.nestedInexact+" in "+st.nestedIn+" over a sharded table", hint)
	}
	mergeSetOp := false // a UNION, or ORDER BY / LIMIT over a set operation: planned by setOp
	if isSetOp(s) {
		mergeSetOp = st.inexact != "" && mergeableSetOp(st.inexact)
		if !mergeSetOp && st.inexact != "" {
			hint := "use UNION ALL or UNION of SELECTs that each read sharded tables, or " + hintKey
			if s.Op != pg.SetOperation_SETOP_UNION {
				hint = "select the shard key in both arms at the same position (each row is then on its key's shard), or " + hintKey
			}
			return nil, refuse(st.inexact, hint)
		}
	}
	if recursive(s) {
		return nil, refuse("WITH RECURSIVE over a sharded table", "each shard would recurse over its own rows only; "+hintKey)
	}
	if modifyingWith(s) {
		// The shards' writes would not be one transaction (only INSERT,
		// UPDATE and DELETE statements are), and its rows read as a CTE's.
		return nil, refuse("data-modifying statement in WITH",
			"run the INSERT, UPDATE or DELETE ... RETURNING as a statement of its own (a multi-shard write then commits on every shard or none), or "+hintKey)
	}
	if !partitionedSelect(st, s, nil) {
		if s.Op == pg.SetOperation_SETOP_UNION && !s.All {
			return nil, refuse("UNION with an arm whose rows do not come from a sharded table",
				"put a sharded table in every arm's FROM, or "+hintKey)
		}
		return nil, refuse("query whose rows come from reference tables (or functions) while it reads a sharded table only in a subquery or the nullable side of an outer join",
			"every shard would return the reference rows: put the sharded table in FROM (inner join), or "+hintKey)
	}
	p := &planner{st: st, sel: s, version: version}
	if mergeSetOp {
		return p.setOp()
	}
	if isSetOp(s) {
		return nil, nil // UNION ALL: the arms' rows concatenate
	}
	return p.build()
}

// mergeableSetOp tells whether setOp merges a top-level set operation
// whose inexact construct is c ("" needs no merge).
func mergeableSetOp(c string) bool {
	switch c {
	case "", "UNION", "ORDER BY", "LIMIT", "OFFSET":
		// ORDER BY or LIMIT is noted only over a UNION ALL, or over an
		// INTERSECT or EXCEPT of colocated arms (analyzer.colocatedArms).
		return true
	}
	return false
}

// modifyingWith tells whether s's WITH clause has an INSERT, UPDATE or
// DELETE.
func modifyingWith(s *pg.SelectStmt) bool {
	if s.WithClause == nil {
		return false
	}
	for _, c := range s.WithClause.Ctes {
		switch c.GetCommonTableExpr().GetCtequery().GetNode().(type) {
		case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt:
			return true
		}
	}
	return false
}

// recursive tells whether s or a query inside it has WITH RECURSIVE.
func recursive(s *pg.SelectStmt) bool {
	found := false
	walk(&pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: s}}, func(n *pg.Node) bool {
		if x := n.GetSelectStmt(); x != nil && x.WithClause != nil && x.WithClause.Recursive {
			found = true
		}
		return !found
	})
	return found
}

// partitionedSelect tells whether every result row of s comes from
// exactly one shard: some FROM item's rows are split across the shards
// (a sharded table, or a subquery or CTE over one). Rows built only from
// reference tables exist on every shard and would repeat once per shard.
func partitionedSelect(st *Statement, s *pg.SelectStmt, ctes map[string]*pg.Node) bool {
	if s == nil {
		return false
	}
	if w := s.WithClause; w != nil {
		inner := make(map[string]*pg.Node, len(ctes)+len(w.Ctes))
		for k, v := range ctes {
			inner[k] = v
		}
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				inner[cte.Ctename] = cte.Ctequery
			}
		}
		ctes = inner
	}
	if isSetOp(s) {
		// A set operation's rows come from its arms. Duplicates across
		// shards are not this function's concern: the top level's UNION
		// is deduplicated by setOp, a nested one is refused as
		// nestedInexact, and INTERSECT and EXCEPT pass the analyser only
		// with arms colocated by a selected key (analyzer.colocatedArms).
		return partitionedSelect(st, s.Larg, ctes) && partitionedSelect(st, s.Rarg, ctes)
	}
	for _, f := range s.FromClause {
		if partitionedFrom(st, f, ctes) {
			return true
		}
	}
	return false
}

func partitionedFrom(st *Statement, n *pg.Node, ctes map[string]*pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		if q, ok := ctes[rv.Relname]; ok && rv.Schemaname == "" {
			// The body does not see its own name (WITH RECURSIVE is
			// refused before): without it, the walk always ends.
			outer := make(map[string]*pg.Node, len(ctes))
			for k, v := range ctes {
				if k != rv.Relname {
					outer[k] = v
				}
			}
			return partitionedSelect(st, q.GetSelectStmt(), outer)
		}
		info, _ := st.tableOf(rv)
		return info != nil && !info.ref
	case *pg.Node_RangeSubselect:
		return partitionedSelect(st, x.RangeSubselect.Subquery.GetSelectStmt(), ctes)
	case *pg.Node_RangeTableSample:
		return partitionedFrom(st, x.RangeTableSample.Relation, ctes)
	case *pg.Node_JoinExpr:
		l, r := partitionedFrom(st, x.JoinExpr.Larg, ctes), partitionedFrom(st, x.JoinExpr.Rarg, ctes)
		switch x.JoinExpr.Jointype {
		case pg.JoinType_JOIN_LEFT:
			return l // unmatched left rows appear on every shard otherwise
		case pg.JoinType_JOIN_RIGHT:
			return r
		case pg.JoinType_JOIN_FULL:
			return l && r
		}
		return l || r
	}
	return false
}

// tableOf finds the analysed occurrence of a FROM-clause table; ok is
// false for names the analyser did not record (CTEs).
func (st *Statement) tableOf(rv *pg.RangeVar) (*tableInfo, bool) {
	alias := ""
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	for i := range st.uses {
		if u := &st.uses[i]; u.rel == rv.Relname && u.schema == rv.Schemaname && u.alias == alias {
			return u.info, true
		}
	}
	return nil, false
}

func (p *planner) build() (*ScatterPlan, *pgconn.PgError) {
	s := p.sel
	hintKey := keyHint(p.st)
	if len(s.LockingClause) > 0 {
		return nil, refuse(lockingName(s.LockingClause[0].GetLockingClause()), "lock rows with a statement that targets one shard: "+hintKey)
	}
	if len(s.WindowClause) > 0 {
		return nil, refuse("WINDOW clause", "compute window functions in the application, or "+hintKey)
	}
	if s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, refuse("FETCH FIRST ... WITH TIES", "use LIMIT, or "+hintKey)
	}
	for _, g := range s.GroupClause {
		if g.GetGroupingSet() != nil {
			return nil, refuse("GROUPING SETS, ROLLUP or CUBE", "run one GROUP BY per grouping set, or "+hintKey)
		}
	}
	if s.GroupDistinct {
		return nil, refuse("GROUP BY DISTINCT", hintKey)
	}
	hasAgg := len(s.GroupClause) > 0 || s.HavingClause != nil
	hasWindow := false
	for _, n := range levelExprs(s) {
		if findFunc(n, isWindow) != nil {
			hasWindow = true
		}
		if findFunc(n, p.st.isAggregate) != nil {
			hasAgg = true
		}
	}
	p.from = map[string]*tableInfo{}
	for _, f := range s.FromClause {
		p.fromTables(f)
	}
	if len(s.FromClause) == 1 {
		if rv := s.FromClause[0].GetRangeVar(); rv != nil {
			p.only = p.from[refNameOf(rv)]
		}
	}
	p.outputColumns(s.TargetList)
	if hasWindow {
		return p.windowed(hasAgg)
	}
	if !hasAgg {
		return p.rows()
	}
	if !p.groupedByKey() {
		return p.aggregate()
	}
	plan, err := p.rows()
	if plan == nil && err == nil {
		// Concatenating finished groups is exact; the plan says so (the
		// analyser marked the aggregate as needing one).
		scatter, err := p.scatter()
		if err != nil {
			return nil, err
		}
		return p.finish(&Concatenate{Input: scatter}, nil), nil
	}
	return plan, err
}

// setOp plans a UNION, or ORDER BY / LIMIT over UNION [ALL] or over a
// colocated INTERSECT or EXCEPT: each shard runs the whole statement (its
// own UNION removes its duplicates, its LIMIT keeps LIMIT+OFFSET rows),
// the proxy merges the sorted streams, removes the duplicates across
// shards (UNION) and applies the LIMIT.
// Pushing the LIMIT down stays exact with UNION: each of the first N
// distinct rows overall is among the first N distinct rows of its shard.
func (p *planner) setOp() (*ScatterPlan, *pgconn.PgError) {
	s := p.sel
	keys, err := p.setOpOutput()
	if err != nil {
		return nil, err
	}
	// Colocated INTERSECT and EXCEPT rows differ between shards already.
	return p.mergeRows(keys, s.Op == pg.SetOperation_SETOP_UNION && !s.All, nil)
}

// setOpOutput records the output columns of a set operation (its
// leftmost arm names them) and places its ORDER BY.
func (p *planner) setOpOutput() ([]SortKey, *pgconn.PgError) {
	first := p.sel
	for isSetOp(first) {
		first = first.Larg
	}
	p.outputColumns(first.TargetList)
	return p.sortKeys(p.setOpCol)
}

// outputColumns records the client's select list (copies: the planner
// rewrites the tree) and whether it has a star.
func (p *planner) outputColumns(targets []*pg.Node) {
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
			p.star = true
		}
		p.orig = append(p.orig, proto.Clone(rt.Val).(*pg.Node))
		p.names = append(p.names, rt.Name)
	}
}

// setOpCol places an ORDER BY item of a set operation: Postgres allows
// only a result column's position or name there.
func (p *planner) setOpCol(n *pg.Node) (ColRef, *pgconn.PgError) {
	if k, ok := position(n); ok {
		return p.positionCol(k, "ORDER BY")
	}
	if i := p.outputName(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	return ColRef{}, refuse("ORDER BY over a UNION by something other than a result column",
		"order by the column's position (ORDER BY 1), or "+keyHint(p.st))
}

// groupedByKey tells whether the SELECT reads one sharded table and groups
// by its shard key. A key value has exactly one owner, so every group's
// rows are on one shard: each shard aggregates its groups completely
// (any aggregate, HAVING, expressions over aggregates), and the proxy only
// merges finished groups, as for plain rows — sorted streams and LIMIT
// pushed down instead of re-aggregating in memory. (A row whose key is
// NULL has no owner; the proxy never places one.)
func (p *planner) groupedByKey() bool {
	t := p.only
	if t == nil || t.ref || t.strat == nil || len(p.sel.FromClause) != 1 {
		return false
	}
	rv := p.sel.FromClause[0].GetRangeVar()
	if rv == nil {
		return false
	}
	for _, g := range p.sel.GroupClause {
		n := g
		if k, ok := position(g); ok {
			if k < 1 || k > len(p.orig) {
				continue
			}
			n = p.orig[k-1]
		}
		cr := n.GetColumnRef()
		if cr == nil || len(cr.Fields) == 0 || len(cr.Fields) > 2 {
			continue
		}
		last := cr.Fields[len(cr.Fields)-1].GetString_()
		if last == nil || last.Sval != t.key {
			continue
		}
		if len(cr.Fields) == 1 {
			return true
		}
		if q := cr.Fields[0].GetString_(); q != nil && q.Sval == refNameOf(rv) {
			return true
		}
	}
	return false
}

// rows plans a SELECT without aggregation: the shards sort, the proxy
// merges their sorted streams; DISTINCT and LIMIT apply again on top.
func (p *planner) rows() (*ScatterPlan, *pgconn.PgError) {
	s := p.sel
	plainDistinct, on := distinctKind(s)
	if len(s.SortClause) == 0 && !plainDistinct && on == nil && s.LimitCount == nil && s.LimitOffset == nil {
		return nil, nil
	}
	if on != nil && len(s.SortClause) == 0 {
		// Without ORDER BY Postgres keeps any one row per DISTINCT ON
		// group, in any order: sorting the shards by the ON expressions
		// lets the proxy keep one row per group too.
		for _, e := range on {
			s.SortClause = append(s.SortClause, pg.MakeSortByNode(proto.Clone(e).(*pg.Node),
				pg.SortByDir_SORTBY_DEFAULT, pg.SortByNulls_SORTBY_NULLS_DEFAULT, -1))
		}
	}
	keys, err := p.sortKeys(p.rowCol)
	if err != nil {
		return nil, err
	}
	if err := distinctSort(plainDistinct, keys); err != nil {
		return nil, err
	}
	var onCols []ColRef
	if on != nil {
		if len(keys) < len(on) {
			return nil, pgError("42P10", "SELECT DISTINCT ON expressions must match initial ORDER BY expressions", "")
		}
		for _, e := range on {
			c, err := p.rowCol(e)
			if err != nil {
				return nil, err
			}
			onCols = append(onCols, c)
		}
		for _, c := range onCols {
			found := false
			for _, k := range keys[:len(on)] {
				found = found || k.Col == c
			}
			if !found {
				return nil, pgError("42P10", "SELECT DISTINCT ON expressions must match initial ORDER BY expressions", "")
			}
		}
	}
	return p.mergeRows(keys, plainDistinct || on != nil, onCols)
}

// mergeRows plans rows the shards return finished: merged in keys' order
// (or concatenated), deduplicated on on (every column when nil) if
// distinct, then limited, with the LIMIT pushed down.
func (p *planner) mergeRows(keys []SortKey, distinct bool, on []ColRef) (*ScatterPlan, *pgconn.PgError) {
	limit, err := p.limit(true)
	if err != nil {
		return nil, err
	}
	scatter, err := p.scatter()
	if err != nil {
		return nil, err
	}
	var root Node = &Concatenate{Input: scatter}
	if len(keys) > 0 {
		root = &MergeSort{Input: scatter, Keys: keys}
	}
	if distinct {
		root = &Distinct{Input: root, On: on}
	}
	return p.finish(root, limit), nil
}

// aggregate plans GROUP BY and aggregates: the shards compute partial
// aggregates per group, the proxy re-aggregates them, then filters
// (HAVING), sorts, dedupes and limits the finished groups.
func (p *planner) aggregate() (*ScatterPlan, *pgconn.PgError) {
	hintKey := keyHint(p.st)
	s := p.sel
	if p.star {
		return nil, refuse("SELECT * with GROUP BY or aggregates", "name the columns in the select list")
	}
	plainDistinct, on := distinctKind(s)
	if on != nil {
		return nil, refuse("DISTINCT ON with GROUP BY or aggregates", hintKey)
	}
	groupBy, err := p.placeGroups()
	if err != nil {
		return nil, err
	}
	grouped := len(s.GroupClause) > 0
	var evalCols []int // select-list expressions over aggregates
	for i, t := range s.TargetList[:len(p.orig)] {
		rt := t.GetResTarget()
		if fc := rt.Val.GetFuncCall(); fc != nil && p.st.isAggregate(fc) && !p.gathered(fc) {
			if err := p.placeAgg(rt, ColRef{Index: i}); err != nil {
				return nil, err
			}
			continue
		}
		if findFunc(rt.Val, p.st.isAggregate) != nil {
			evalCols = append(evalCols, i)
		}
	}
	// After the plain aggregates, so that the expressions reuse their
	// columns.
	for _, i := range evalCols {
		rt := s.TargetList[i].GetResTarget()
		if err := p.evalColumn(p.orig[i], ColRef{Index: i}); err != nil {
			return nil, err
		}
		p.setName(rt, outName(p.orig[i], ""))
		rt.Val = placeholder(p.orig[i])
	}
	var having *Expr
	if h0 := s.HavingClause; h0 != nil {
		h, err := p.having(h0)
		switch {
		case err == errHavingShape:
			// Not a comparison the proxy evaluates itself: Postgres does.
			if p.eval.having, err = p.evalExpr(h0); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, err
		}
		having = h
		s.HavingClause = p.keepParams(h0) // partial groups cannot be filtered
	}
	keys, err := p.sortKeys(p.aggCol)
	if err != nil {
		return nil, err
	}
	s.SortClause = nil // the proxy sorts the finished groups
	if err := distinctSort(plainDistinct, keys); err != nil {
		return nil, err
	}
	if p.distinct != nil && p.keyDistinct {
		return nil, errDistinctArgs()
	}
	if p.distinct != nil && !grouped {
		for i, n := range p.orig {
			if findFunc(n, p.st.isAggregate) == nil {
				return nil, refuse("non-aggregate column with count(DISTINCT) and no GROUP BY",
					fmt.Sprintf("select only aggregates, or drop column %d", i+1))
			}
		}
	}
	limit, err := p.limit(false)
	if err != nil {
		return nil, err
	}
	s.DistinctClause = nil // partial rows are unique per group anyway
	scatter, err := p.scatter()
	if err != nil {
		return nil, err
	}
	var root Node = &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: groupBy, Aggs: p.specs, Having: having}
	if root, err = p.evaluate(root); err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		root = &Sort{Input: root, Keys: keys}
	}
	if plainDistinct {
		root = &Distinct{Input: root}
	}
	return p.finish(root, limit), nil
}

// finish puts Limit and Project (when needed) on top of root.
func (p *planner) finish(root Node, limit *Limit) *ScatterPlan {
	if limit != nil {
		limit.Input = root
		root = limit
	}
	if p.hidden > 0 || p.retype {
		root = &Project{Input: root}
	}
	plan := &ScatterPlan{Root: root, Hidden: p.hidden}
	plan.Collations, plan.CollatedFrom = collations(p.sel, p.hidden)
	return plan
}

// scatter deparses the rewritten statement into the shards' SQL.
func (p *planner) scatter() (*Scatter, *pgconn.PgError) {
	text, err := pg.Deparse(&pg.ParseResult{Version: p.version, Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: p.sel}}}}})
	if err != nil {
		return nil, pgError(codeInternal, "deparsing the shard query: "+err.Error(), "")
	}
	// The shards run the deparsed text, not the tree: it must parse back
	// into the same tree, or a deparser slip (operator precedence, say)
	// would silently change the query.
	back, err := pg.Parse(text)
	if err != nil || len(back.Stmts) != 1 || !exprEqual(back.Stmts[0].Stmt, &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: p.sel}}) {
		return nil, refuse("statement that shardproxy cannot rewrite for the shards exactly",
			"simplify the statement, or "+keyHint(p.st))
	}
	return &Scatter{SQL: splitTemplate(text)}, nil
}

// distinctSort keeps Postgres' rule that SELECT DISTINCT sorts only by
// selected columns: a hidden sort column would make the shards accept
// (and the proxy answer) what Postgres refuses.
func distinctSort(plainDistinct bool, keys []SortKey) *pgconn.PgError {
	for _, k := range keys {
		if plainDistinct && k.Col.Hidden {
			e := pgError("42P10", "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
				"across shards an ORDER BY expression with constants must be written as the column's position")
			return e
		}
	}
	return nil
}

func distinctKind(s *pg.SelectStmt) (plain bool, on []*pg.Node) {
	if len(s.DistinctClause) == 0 {
		return false, nil
	}
	if len(s.DistinctClause) == 1 && s.DistinctClause[0].GetNode() == nil {
		return true, nil
	}
	return false, s.DistinctClause
}

// hiddenExpr returns the hidden column computing n, adding it if needed.
func (p *planner) hiddenExpr(n *pg.Node) ColRef {
	for _, h := range p.hiddenExprs {
		if exprEqual(h.n, n) {
			return h.col
		}
	}
	c := p.addHidden(proto.Clone(n).(*pg.Node))
	p.hiddenExprs = append(p.hiddenExprs, exprCol{n: n, col: c})
	return c
}

// addHidden appends val to the shard's select list after the client's
// columns and returns its reference.
func (p *planner) addHidden(val *pg.Node) ColRef {
	name := hiddenPrefix + strconv.Itoa(p.hidden)
	p.sel.TargetList = append(p.sel.TargetList, pg.MakeResTargetNodeWithNameAndVal(name, val, -1))
	p.hidden++
	return ColRef{Hidden: true, Index: p.hidden - 1}
}

// position reads `ORDER BY 2` / `GROUP BY 2` (a plain integer constant;
// the scanner keeps those in the text).
func position(n *pg.Node) (int, bool) {
	c := n.GetAConst()
	if c == nil {
		return 0, false
	}
	iv, ok := c.Val.(*pg.A_Const_Ival)
	if !ok {
		return 0, false
	}
	return int(iv.Ival.Ival), true
}

func (p *planner) positionCol(k int, clause string) (ColRef, *pgconn.PgError) {
	if k < 1 || (!p.star && k > len(p.orig)) {
		return ColRef{}, pgError("42P10", fmt.Sprintf("%s position %d is not in select list", clause, k), "")
	}
	// With *, positions count the expanded columns: the shard row has the
	// same expansion, so position k is visible column k-1 either way.
	return ColRef{Index: k - 1}, nil
}

// outputName returns the visible column a bare name refers to as an
// output column name (AS x, or a plain column x), or -1.
func (p *planner) outputName(n *pg.Node) int {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) != 1 || cr.Fields[0].GetString_() == nil || p.star {
		return -1
	}
	name := cr.Fields[0].GetString_().Sval
	for i, o := range p.orig {
		if p.names[i] == name {
			return i
		}
		if p.names[i] == "" {
			if c := o.GetColumnRef(); c != nil && len(c.Fields) > 0 {
				if last := c.Fields[len(c.Fields)-1].GetString_(); last != nil && last.Sval == name {
					return i
				}
			}
		}
	}
	return -1
}

// targetIndex returns the visible column whose expression equals n, or -1.
func (p *planner) targetIndex(n *pg.Node) int {
	if p.star {
		return -1 // positions after a * are unknown
	}
	for i, o := range p.orig {
		if exprEqual(o, n) {
			return i
		}
	}
	return -1
}

// rowCol places an ORDER BY / DISTINCT ON expression of a plain SELECT:
// a position, an output name, a select-list expression, or else a hidden
// column the shards compute.
func (p *planner) rowCol(n *pg.Node) (ColRef, *pgconn.PgError) {
	if k, ok := position(n); ok {
		return p.positionCol(k, "ORDER BY")
	}
	if i := p.outputName(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	if i := p.targetIndex(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	return p.hiddenExpr(n), nil
}

// sortKeys places the ORDER BY items with place.
func (p *planner) sortKeys(place func(*pg.Node) (ColRef, *pgconn.PgError)) ([]SortKey, *pgconn.PgError) {
	hintKey := keyHint(p.st)
	var keys []SortKey
	for _, o := range p.sel.SortClause {
		sb := o.GetSortBy()
		if sb == nil {
			continue
		}
		if sb.SortbyDir == pg.SortByDir_SORTBY_USING {
			return nil, refuse("ORDER BY ... USING", "use ASC or DESC, or "+hintKey)
		}
		c, err := place(sb.Node)
		if err != nil {
			return nil, err
		}
		k := SortKey{Col: c, Desc: sb.SortbyDir == pg.SortByDir_SORTBY_DESC, Bytewise: bytewiseCollate(sb.Node)}
		switch sb.SortbyNulls {
		case pg.SortByNulls_SORTBY_NULLS_FIRST:
			k.NullsFirst = true
		case pg.SortByNulls_SORTBY_NULLS_LAST:
			k.NullsFirst = false
		default:
			k.NullsFirst = k.Desc // Postgres: NULLs sort as larger than any value
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// groupCol places a GROUP BY item. A bare name that is an output column's
// alias for a different expression is refused: Postgres prefers an input
// column of that name, which the planner cannot see.
func (p *planner) groupCol(n *pg.Node) (ColRef, *pgconn.PgError) {
	if k, ok := position(n); ok {
		return p.positionCol(k, "GROUP BY")
	}
	if i := p.targetIndex(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		if s := cr.Fields[0].GetString_(); s != nil {
			for i := range p.orig {
				if p.names[i] == s.Sval {
					return ColRef{}, refuse(fmt.Sprintf("GROUP BY output column name %q", s.Sval),
						fmt.Sprintf("group by the expression itself or by its position (GROUP BY %d)", i+1))
				}
			}
		}
	}
	return p.hiddenExpr(n), nil
}

// placeGroups places the GROUP BY items (p.groups) and returns their
// columns.
func (p *planner) placeGroups() ([]ColRef, *pgconn.PgError) {
	var groupBy []ColRef
	for _, g := range p.sel.GroupClause {
		c, err := p.groupCol(g)
		if err != nil {
			return nil, err
		}
		groupBy = append(groupBy, c)
		p.groups = append(p.groups, exprCol{n: p.exprAt(g, c), col: c})
	}
	return groupBy, nil
}

// exprAt returns the expression a placed GROUP BY item stands for.
func (p *planner) exprAt(g *pg.Node, c ColRef) *pg.Node {
	if _, ok := position(g); ok && !c.Hidden && c.Index < len(p.orig) {
		return p.orig[c.Index]
	}
	return g
}

// aggCol places an ORDER BY item of an aggregating SELECT: a visible
// column, an aggregate (a hidden partial when not selected), a GROUP BY
// key, or a hidden function of the group keys.
func (p *planner) aggCol(n *pg.Node) (ColRef, *pgconn.PgError) {
	if k, ok := position(n); ok {
		return p.positionCol(k, "ORDER BY")
	}
	if i := p.outputName(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	if i := p.targetIndex(n); i >= 0 {
		return ColRef{Index: i}, nil
	}
	if fc := n.GetFuncCall(); fc != nil && p.st.isAggregate(fc) && !p.gathered(fc) {
		return p.hiddenAgg(n)
	}
	if findFunc(n, p.st.isAggregate) != nil {
		c := p.addHidden(placeholder(n))
		return c, p.evalColumn(n, c)
	}
	for _, g := range p.groups {
		if exprEqual(g.n, n) {
			return g.col, nil
		}
	}
	return p.hiddenExpr(n), nil
}

// hiddenAgg returns the column of aggregate n, adding a hidden partial
// when the select list does not have it.
func (p *planner) hiddenAgg(n *pg.Node) (ColRef, *pgconn.PgError) {
	for _, a := range p.aggs {
		if exprEqual(a.n, n) {
			return a.col, nil
		}
	}
	c := p.addHidden(proto.Clone(n).(*pg.Node))
	// addHidden appended a ResTarget holding the copy; rewrite that one.
	last := p.sel.TargetList[len(p.sel.TargetList)-1].GetResTarget()
	if err := p.placeAgg(last, c); err != nil {
		return ColRef{}, err
	}
	return c, nil
}

// placeAgg turns the aggregate in rt (at column c) into its per-shard
// partial and records how the proxy finishes it.
func (p *planner) placeAgg(rt *pg.ResTarget, c ColRef) *pgconn.PgError {
	hintKey := keyHint(p.st)
	fc := rt.Val.GetFuncCall()
	orig := proto.Clone(rt.Val).(*pg.Node)
	name := funcName(fc)
	// FILTER (WHERE ...) stays on the shards' partial aggregates: each
	// shard aggregates only its rows that pass it, and the partials merge
	// as they would without it.
	switch {
	case len(fc.AggOrder) > 0 || fc.AggWithinGroup:
		return refuse(fmt.Sprintf("aggregate %s() with ORDER BY", name), hintKey)
	case fc.FuncVariadic:
		return refuse(fmt.Sprintf("aggregate %s() with VARIADIC", name), hintKey)
	}
	switch name {
	case "count", "sum", "min", "max", "bool_and", "every", "bool_or", "avg":
	default:
		return refuse(fmt.Sprintf("aggregate %s()", name),
			"across shards only count, sum, min, max, avg, bool_and, bool_or and every are merged; "+hintKey)
	}
	if !fc.AggStar && len(fc.Args) != 1 {
		return refuse(fmt.Sprintf("aggregate %s() with %d arguments", name, len(fc.Args)), hintKey)
	}
	if fc.AggDistinct && name != "count" && name != "sum" && name != "avg" {
		return refuse(fmt.Sprintf("aggregate %s(DISTINCT ...)", name), "only count, sum and avg (DISTINCT x) are merged across shards; "+hintKey)
	}
	spec := AggSpec{Col: c}
	if fc.AggDistinct && name != "count" {
		// The shards group by x as well: within a group of one x value,
		// sum(DISTINCT x) is x (NULL when x is NULL or filtered out), in
		// sum's type, and the proxy adds each value once.
		if err := p.groupByDistinct(fc.Args[0]); err != nil {
			return err
		}
		spec.Distinct = true
	}
	switch name {
	case "count":
		spec.Func = AggCount
		p.keyDistinct = p.keyDistinct || fc.AggDistinct && p.isShardKey(fc.Args[0])
		if fc.AggDistinct && !p.isShardKey(fc.Args[0]) {
			if fc.AggFilter != nil {
				// The shards return the distinct values as group keys,
				// where a FILTER has no place.
				return refuse("count(DISTINCT ...) with FILTER", "count(DISTINCT CASE WHEN condition THEN x END) counts the same values, or "+hintKey)
			}
			arg := fc.Args[0]
			if err := p.groupByDistinct(arg); err != nil {
				return err
			}
			// The shards return the distinct values themselves; the
			// proxy counts them per group.
			spec.Func = AggCountDistinct
			p.retype = true
			p.setName(rt, "count")
			rt.Val = proto.Clone(arg).(*pg.Node)
		}
	case "sum":
		spec.Func = AggSum
	case "min":
		spec.Func = AggMin
	case "max":
		spec.Func = AggMax
	case "bool_and", "every":
		spec.Func = AggBoolAnd
	case "bool_or":
		spec.Func = AggBoolOr
	case "avg":
		// avg = sum / count; the shards return both partials.
		spec.Func = AggAvg
		p.retype = true
		p.setName(rt, "avg")
		fc.Funcname = []*pg.Node{pg.MakeStrNode("sum")}
		count := pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("count")},
			[]*pg.Node{proto.Clone(fc.Args[0]).(*pg.Node)}, -1)
		count.GetFuncCall().AggDistinct = fc.AggDistinct
		if fc.AggFilter != nil {
			count.GetFuncCall().AggFilter = proto.Clone(fc.AggFilter).(*pg.Node)
		}
		spec.Count = p.addHidden(count)
	}
	p.specs = append(p.specs, spec)
	p.aggs = append(p.aggs, exprCol{n: orig, col: c})
	return nil
}

// groupByDistinct makes the shards also group by arg, the argument of the
// statement's DISTINCT aggregates (one expression for all of them).
func (p *planner) groupByDistinct(arg *pg.Node) *pgconn.PgError {
	if p.distinct != nil && !exprEqual(p.distinct, arg) {
		return errDistinctArgs()
	}
	if p.distinct == nil {
		p.distinct = proto.Clone(arg).(*pg.Node)
		p.sel.GroupClause = append(p.sel.GroupClause, proto.Clone(arg).(*pg.Node))
	}
	return nil
}

// errDistinctArgs refuses DISTINCT aggregates of two different
// expressions: the shards group by the one expression whose values they
// return.
func errDistinctArgs() *pgconn.PgError {
	return refuse("DISTINCT aggregates of two different expressions",
		"compute the distinct aggregates of each expression in separate statements")
}

// setName keeps the client's column name when the shard computes
// something else in its place.
func (p *planner) setName(rt *pg.ResTarget, def string) {
	if rt.Name == "" {
		rt.Name = def
	}
}

// isShardKey tells whether n is the shard-key column of a sharded table
// of this level's FROM clause: per-shard distinct counts of a key add up,
// since each key value lives on one shard.
func (p *planner) isShardKey(n *pg.Node) bool {
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	names := stringItems(cr.Fields)
	if len(names) != len(cr.Fields) {
		return false
	}
	var info *tableInfo
	switch len(names) {
	case 1:
		info = p.only
	case 2:
		info = p.from[names[0]]
	}
	return info != nil && !info.ref && info.key == names[len(names)-1]
}

// fromTables records the tables of a FROM item (through joins, not into
// subqueries) by the name columns qualify them with.
func (p *planner) fromTables(n *pg.Node) {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		// The analyser recorded every table occurrence; a name it did not
		// record is a CTE.
		if info, ok := p.st.tableOf(rv); ok {
			p.from[refNameOf(rv)] = info
		}
	case *pg.Node_JoinExpr:
		if x.JoinExpr.Alias == nil {
			p.fromTables(x.JoinExpr.Larg)
			p.fromTables(x.JoinExpr.Rarg)
		}
	}
}

func refNameOf(rv *pg.RangeVar) string {
	if rv.Alias != nil {
		return rv.Alias.Aliasname
	}
	return rv.Relname
}

// errHavingShape is having's answer for a condition it does not
// translate; Postgres evaluates that one (an Evaluate node).
var errHavingShape = &pgconn.PgError{Code: codeFeatureNotSupport, Message: "HAVING condition the proxy does not evaluate"}

// having translates a HAVING clause into an Expr over the finished row:
// comparisons of an aggregate or GROUP BY key with a constant or
// parameter, IS [NOT] NULL, AND, OR and NOT, which the proxy evaluates
// without a round trip.
func (p *planner) having(n *pg.Node) (*Expr, *pgconn.PgError) {
	bad := errHavingShape
	switch x := n.Node.(type) {
	case *pg.Node_BoolExpr:
		e := &Expr{}
		switch x.BoolExpr.Boolop {
		case pg.BoolExprType_AND_EXPR:
			e.Op = ExprAnd
		case pg.BoolExprType_OR_EXPR:
			e.Op = ExprOr
		case pg.BoolExprType_NOT_EXPR:
			e.Op = ExprNot
		default:
			return nil, bad
		}
		for _, a := range x.BoolExpr.Args {
			sub, err := p.having(a)
			if err != nil {
				return nil, err
			}
			e.Args = append(e.Args, sub)
		}
		return e, nil
	case *pg.Node_NullTest:
		c, ok, err := p.havingOperand(x.NullTest.Arg)
		if err != nil || !ok {
			return nil, orErr(err, bad)
		}
		if x.NullTest.Nulltesttype == pg.NullTestType_IS_NULL {
			return &Expr{Op: ExprIsNull, Col: c}, nil
		}
		return &Expr{Op: ExprIsNotNull, Col: c}, nil
	case *pg.Node_AExpr:
		ex := x.AExpr
		op := opName(ex.Name)
		if op == "!=" {
			op = "<>"
		}
		flip := map[string]string{"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
		if ex.Kind != pg.A_Expr_Kind_AEXPR_OP || flip[op] == "" || len(ex.Name) != 1 {
			return nil, bad
		}
		if c, ok, err := p.havingOperand(ex.Lexpr); err != nil {
			return nil, err
		} else if ok {
			if v, ok := constValue(ex.Rexpr); ok {
				return &Expr{Op: ExprCmp, Cmp: op, Col: c, Value: v}, nil
			}
			return nil, bad
		}
		if c, ok, err := p.havingOperand(ex.Rexpr); err != nil {
			return nil, err
		} else if ok {
			if v, ok := constValue(ex.Lexpr); ok {
				return &Expr{Op: ExprCmp, Cmp: flip[op], Col: c, Value: v}, nil
			}
		}
	}
	return nil, bad
}

// keepParams returns what stays of a HAVING condition the shards no
// longer evaluate (their groups are partial, or the proxy evaluates it):
// nothing, or when it has parameters, an always-true condition that still
// references them (typed as in the client's statement), which Postgres
// folds away.
func (p *planner) keepParams(h *pg.Node) *pg.Node {
	if !hasParam(h) {
		return nil
	}
	args := []*pg.Node{h}
	if b := h.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_OR_EXPR {
		args = b.Args // the parser flattens a OR b OR c; so must we
	}
	return pg.MakeBoolExprNode(pg.BoolExprType_OR_EXPR, append(args[:len(args):len(args)],
		boolConst(true)), -1)
}

func orErr(err, def *pgconn.PgError) *pgconn.PgError {
	if err != nil {
		return err
	}
	return def
}

// havingOperand finds the column of an aggregate or GROUP BY key in HAVING.
func (p *planner) havingOperand(n *pg.Node) (ColRef, bool, *pgconn.PgError) {
	if n == nil {
		return ColRef{}, false, nil
	}
	if fc := n.GetFuncCall(); fc != nil && p.st.isAggregate(fc) {
		if p.gathered(fc) {
			return ColRef{}, false, nil // Postgres evaluates it
		}
		c, err := p.hiddenAgg(n)
		return c, err == nil, err
	}
	for _, g := range p.groups {
		if exprEqual(g.n, n) {
			return g.col, true, nil
		}
	}
	return ColRef{}, false, nil
}

// constValue reads a constant or a parameter (the normaliser made most
// constants parameters). Casts and unary minus are refused by the
// caller: the proxy compares the raw value by the column's type.
func constValue(n *pg.Node) (ValueRef, bool) {
	switch x := n.GetNode().(type) {
	case *pg.Node_ParamRef:
		return ValueRef{Param: int(x.ParamRef.Number)}, x.ParamRef.Number > 0
	case *pg.Node_AConst:
		if x.AConst.Isnull {
			return ValueRef{Null: true}, true
		}
		t, ok := constText(x.AConst)
		return ValueRef{Text: t}, ok
	}
	return ValueRef{}, false
}

// limit reads LIMIT/OFFSET into a Limit node and rewrites the shard
// query: with pushdown each shard returns at most count+offset rows (the
// first count+offset rows overall are among them); without, none.
func (p *planner) limit(pushdown bool) (*Limit, *pgconn.PgError) {
	hintKey := keyHint(p.st)
	s := p.sel
	if s.LimitCount == nil && s.LimitOffset == nil {
		return nil, nil
	}
	l := &Limit{}
	for _, x := range []struct {
		n   *pg.Node
		dst **ValueRef
		kw  string
	}{{s.LimitCount, &l.Count, "LIMIT"}, {s.LimitOffset, &l.Offset, "OFFSET"}} {
		if x.n == nil {
			continue
		}
		v, ok := constValue(x.n)
		if !ok {
			return nil, refuse(x.kw+" with an expression", "use a constant or a parameter, or "+hintKey)
		}
		*x.dst = &v
	}
	// The dropped values' parameters stay referenced, so the shard
	// statement takes the client's parameters: NULLIF(x, x) is NULL, and
	// LIMIT NULL reads everything.
	var dropped []*pg.Node
	switch {
	case !pushdown || s.LimitCount == nil:
		dropped = append(dropped, s.LimitCount, s.LimitOffset)
		s.LimitCount = nil
	case s.LimitOffset != nil && !l.Count.Null:
		// NULL + offset is NULL: LIMIT NULL reads everything, as it should.
		s.LimitCount = pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode("+")},
			castInt8(s.LimitCount), castInt8(s.LimitOffset), -1)
	case s.LimitOffset != nil:
		dropped = append(dropped, s.LimitOffset)
	}
	for _, d := range dropped {
		if d == nil || d.GetParamRef() == nil {
			continue
		}
		null := pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_NULLIF, []*pg.Node{pg.MakeStrNode("=")}, castInt8(d), castInt8(proto.Clone(d).(*pg.Node)), -1)
		if s.LimitCount == nil {
			s.LimitCount = null
		} else {
			s.LimitCount = pg.MakeAExprNode(pg.A_Expr_Kind_AEXPR_OP, []*pg.Node{pg.MakeStrNode("+")}, s.LimitCount, null, -1)
		}
	}
	s.LimitOffset = nil
	s.LimitOption = pg.LimitOption_LIMIT_OPTION_COUNT
	if s.LimitCount == nil {
		s.LimitOption = pg.LimitOption_LIMIT_OPTION_DEFAULT
	}
	return l, nil
}

// castInt8 types a LIMIT operand: `$1 + $2` alone would leave the
// parameters' types undetermined.
func castInt8(n *pg.Node) *pg.Node {
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: n, Location: -1,
		TypeName: &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("int8")}, Typemod: -1, Location: -1}}}}
}

// boolConst is the constant true or false.
func boolConst(v bool) *pg.Node {
	return &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Boolval{Boolval: &pg.Boolean{Boolval: v}}, Location: -1}}}
}

func hasParam(n *pg.Node) bool {
	found := false
	walk(n, func(c *pg.Node) bool {
		found = found || c.GetParamRef() != nil
		return !found
	})
	return found
}

// levelExprs are the expressions of one SELECT level that may hold its
// aggregates and window functions.
func levelExprs(s *pg.SelectStmt) []*pg.Node {
	out := append([]*pg.Node(nil), s.TargetList...)
	out = append(out, s.SortClause...)
	if s.HavingClause != nil {
		out = append(out, s.HavingClause)
	}
	return out
}

// findFunc returns the first function call below n (not inside nested
// SELECTs) that match accepts.
func findFunc(n *pg.Node, match func(*pg.FuncCall) bool) *pg.FuncCall {
	var found *pg.FuncCall
	walk(n, func(c *pg.Node) bool {
		if found != nil {
			return false
		}
		switch x := c.Node.(type) {
		case *pg.Node_SelectStmt:
			return false
		case *pg.Node_FuncCall:
			if match(x.FuncCall) {
				found = x.FuncCall
				return false
			}
		}
		return true
	})
	return found
}

func funcName(f *pg.FuncCall) string {
	names := stringItems(f.Funcname)
	if len(names) == 0 {
		return "?"
	}
	return strings.ToLower(names[len(names)-1])
}

// exprEqual compares two expressions ignoring their text positions.
func exprEqual(a, b *pg.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	return msgEqual(a.ProtoReflect(), b.ProtoReflect())
}

func msgEqual(a, b protoreflect.Message) bool {
	if a.Descriptor() != b.Descriptor() {
		return false
	}
	fields := a.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Name() == "location" {
			continue
		}
		if a.Has(fd) != b.Has(fd) {
			return false
		}
		if !a.Has(fd) {
			continue
		}
		va, vb := a.Get(fd), b.Get(fd)
		switch {
		case fd.IsList():
			la, lb := va.List(), vb.List()
			if la.Len() != lb.Len() {
				return false
			}
			for j := 0; j < la.Len(); j++ {
				if fd.Kind() == protoreflect.MessageKind {
					if !msgEqual(la.Get(j).Message(), lb.Get(j).Message()) {
						return false
					}
				} else if !la.Get(j).Equal(lb.Get(j)) {
					return false
				}
			}
		case fd.IsMap():
			if !va.Equal(vb) {
				return false
			}
		case fd.Kind() == protoreflect.MessageKind:
			if !msgEqual(va.Message(), vb.Message()) {
				return false
			}
		default:
			if !va.Equal(vb) {
				return false
			}
		}
	}
	return true
}

// splitTemplate cuts deparsed SQL at its $n parameters. $n inside string
// literals, quoted names, dollar quotes and comments is text, not a hole.
func splitTemplate(sql string) Template {
	var t Template
	last := 0
	i, n := 0, len(sql)
	for i < n {
		c := sql[i]
		switch {
		case c == '\'':
			backslash := i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') && (i < 2 || !isIdentCont(sql[i-2]))
			i = skipQuoted(sql, i+1, '\'', backslash)
		case c == '"':
			i = skipQuoted(sql, i+1, '"', false)
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			j, d := i+2, 1
			for j < n && d > 0 {
				switch {
				case strings.HasPrefix(sql[j:], "/*"):
					d++
					j += 2
				case strings.HasPrefix(sql[j:], "*/"):
					d--
					j += 2
				default:
					j++
				}
			}
			i = j
		case c == '$' && i+1 < n && isDigit(sql[i+1]):
			j := i + 1
			for j < n && isDigit(sql[j]) {
				j++
			}
			k, _ := strconv.Atoi(sql[i+1 : j])
			t.Pieces = append(t.Pieces, sql[last:i])
			t.Params = append(t.Params, k)
			last = j
			i = j
		case c == '$':
			if end, ok := dollarQuote(sql, i); ok {
				i = end
			} else {
				i++
			}
		case isIdentStart(c):
			// Identifiers may hold '$' (a$1 is one name).
			for i < n && isIdentCont(sql[i]) {
				i++
			}
		default:
			i++
		}
	}
	t.Pieces = append(t.Pieces, sql[last:])
	return t
}

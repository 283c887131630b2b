package router

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Set operations the shards cannot finish (INTERSECT and EXCEPT of arms
// not colocated by their shard keys, set operations nested in set
// operations): every arm is a plain SELECT whose rows each come from one
// shard, so the shards return every arm's rows, tagged with the arm's
// number, in one UNION ALL, and one Postgres runs the client's set
// operations over all of them (an Evaluate node in whole mode). ORDER BY
// and LIMIT apply to its result in the proxy. The rows are held in
// memory, within merge_memory.

// Markers in an Evaluate's SetOp text, filled in at run time when the
// number of columns is known (an arm may select *).
const (
	setOpCols = "{cols}"
	setOpTag  = "{tag}"
)

// gatherableSetOp tells whether the set operation s can be planned by
// gatherSetOp: its arms are plain SELECTs over sharded tables (no
// aggregates, DISTINCT, LIMIT, ORDER BY or windows, and subqueries only
// where the analyser found every one exact on each shard — colocated or
// over reference tables: each of their rows comes from exactly one
// shard, once), and the set operations inside it have no ORDER BY, LIMIT
// or WITH of their own.
func gatherableSetOp(st *Statement, s *pg.SelectStmt, top bool) bool {
	if !isSetOp(s) {
		return plainArm(st, s)
	}
	if s.WithClause != nil || len(s.LockingClause) > 0 {
		return false
	}
	if !top && (len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil) {
		return false
	}
	return gatherableSetOp(st, s.Larg, false) && gatherableSetOp(st, s.Rarg, false)
}

func plainArm(st *Statement, s *pg.SelectStmt) bool {
	if s == nil || s.WithClause != nil || len(s.ValuesLists) > 0 || len(s.GroupClause) > 0 || s.HavingClause != nil ||
		len(s.DistinctClause) > 0 || len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil ||
		len(s.LockingClause) > 0 || len(s.WindowClause) > 0 || s.IntoClause != nil {
		return false
	}
	plain := true
	for _, n := range append(append([]*pg.Node{s.WhereClause}, s.TargetList...), s.FromClause...) {
		walk(n, func(c *pg.Node) bool {
			switch x := c.Node.(type) {
			case *pg.Node_SubLink, *pg.Node_SelectStmt, *pg.Node_RangeSubselect:
				// Its aggregates or LIMIT are the subquery's own, exact on
				// each shard unless the analyser found otherwise.
				plain = plain && st.nestedInexact == ""
				return false
			case *pg.Node_RangeFunction:
				plain = false
			case *pg.Node_FuncCall:
				plain = plain && st.aggregateOrWindow(x.FuncCall) == ""
			}
			return plain
		})
	}
	return plain && partitionedSelect(st, s, nil)
}

// gatherSetOp plans a set operation gatherableSetOp accepts.
func (p *planner) gatherSetOp() (*ScatterPlan, *pgconn.PgError) {
	s := p.sel
	keys, err := p.setOpOutput()
	if err != nil {
		return nil, err
	}
	limit, err := p.limit(false)
	if err != nil {
		return nil, err
	}
	// The shards' query: every arm, tagged, in one UNION ALL.
	var arms []*pg.SelectStmt
	var tree func(n *pg.SelectStmt) string
	tree = func(n *pg.SelectStmt) string {
		if !isSetOp(n) {
			arm := proto.Clone(n).(*pg.SelectStmt)
			arm.TargetList = append(arm.TargetList, pg.MakeResTargetNodeWithNameAndVal(hiddenPrefix+"0",
				pg.MakeAConstIntNode(int64(len(arms)+1), -1), -1))
			arms = append(arms, arm)
			return "SELECT " + setOpCols + " FROM " + evalRel + " WHERE " + setOpTag + " = " + strconv.Itoa(len(arms))
		}
		op := strings.TrimPrefix(n.Op.String(), "SETOP_")
		if n.All {
			op += " ALL"
		}
		return "(" + tree(n.Larg) + ") " + op + " (" + tree(n.Rarg) + ")"
	}
	text := tree(s)
	all := arms[0]
	for _, a := range arms[1:] {
		all = &pg.SelectStmt{Op: pg.SetOperation_SETOP_UNION, All: true, Larg: all, Rarg: a,
			LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT}
	}
	// LIMIT applies in the proxy; what limit left of it keeps the
	// client's parameters referenced.
	if all.LimitCount, all.LimitOffset = s.LimitCount, s.LimitOffset; all.LimitCount != nil || all.LimitOffset != nil {
		all.LimitOption = s.LimitOption
	}
	p.sel = all
	p.hidden = 1
	scatter, err := p.scatter()
	if err != nil {
		return nil, err
	}
	ev := &Evaluate{Input: &Concatenate{Input: scatter}, Whole: true, SetOp: text}
	var root Node = ev
	if len(keys) > 0 {
		root = &Sort{Input: root, Keys: keys}
	}
	return p.finish(root, limit), nil
}

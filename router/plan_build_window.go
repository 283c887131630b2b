package router

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Window functions across shards: a window's frame may hold rows of every
// shard, so no shard can compute it. The shards return the values the
// statement reads (per row, or per group with GROUP BY: the aggregates
// finished by the proxy as usual), and one Postgres runs the rest of the
// statement over all of them at once: the select list with its window
// functions, HAVING, DISTINCT and ORDER BY (an Evaluate node in whole
// mode; the rows travel as one array per column). LIMIT and OFFSET apply
// to its result in the proxy. Everything is held in memory, within
// merge_memory.

// fromMarker stands for the FROM clause while the evaluation query is
// deparsed; the executor puts the arrays in its place.
const fromMarker = "_sp_from_marker"

func isWindow(f *pg.FuncCall) bool { return f.Over != nil }

// windowed plans a SELECT with window functions; grouped when it also
// aggregates.
func (p *planner) windowed(grouped bool) (*ScatterPlan, *pgconn.PgError) {
	s := p.sel
	hintKey := keyHint(p.st)
	if p.star {
		return nil, refuse("SELECT * with window functions", "name the columns in the select list, or "+hintKey)
	}
	plainDistinct, on := distinctKind(s)
	if on != nil {
		return nil, refuse("DISTINCT ON with window functions", hintKey)
	}
	for _, n := range levelExprs(s) {
		whole := false
		walk(n, func(c *pg.Node) bool {
			if c.GetSelectStmt() != nil {
				return false
			}
			whole = whole || p.wholeRow(c)
			return !whole
		})
		if whole {
			// Its type is the table's row type, whose OID differs
			// between the shards, and no array of it can be bound.
			return nil, refuse("whole row with window functions", "select the columns themselves, or "+hintKey)
		}
	}
	groupBy, err := p.placeGroups()
	if err != nil {
		return nil, err
	}
	// The whole select list is evaluated; the shards return placeholders
	// of its columns' types.
	out := &pg.SelectStmt{LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg.SetOperation_SETOP_NONE,
		FromClause: []*pg.Node{pg.MakeSimpleRangeVarNode(fromMarker, -1)}}
	for i, t := range s.TargetList[:len(p.orig)] {
		rt := t.GetResTarget()
		name := p.names[i]
		if findFunc(p.orig[i], func(f *pg.FuncCall) bool { return p.st.isAggregate(f) || isWindow(f) }) == nil {
			// The shards compute it (a GROUP BY key may be this column).
			out.TargetList = append(out.TargetList, pg.MakeResTargetNodeWithNameAndVal(outName(p.orig[i], name), p.evalArg(ColRef{Index: i}), -1))
			p.eval.out = append(p.eval.out, ColRef{Index: i})
			continue
		}
		e, err := p.evalExpr(p.orig[i])
		if err != nil {
			return nil, err
		}
		name = outName(p.orig[i], name)
		p.setName(rt, name)
		rt.Val = placeholder(p.orig[i])
		out.TargetList = append(out.TargetList, pg.MakeResTargetNodeWithNameAndVal(name, e, -1))
		p.eval.out = append(p.eval.out, ColRef{Index: i})
	}
	if h0 := s.HavingClause; h0 != nil {
		h, err := p.evalExpr(h0)
		if err != nil {
			return nil, err
		}
		out.WhereClause = h
		s.HavingClause = p.keepParams(h0)
	}
	for _, o := range s.SortClause {
		sb := proto.Clone(o).(*pg.Node).GetSortBy()
		if sb == nil {
			continue
		}
		if sb.SortbyDir == pg.SortByDir_SORTBY_USING {
			return nil, refuse("ORDER BY ... USING", "use ASC or DESC, or "+hintKey)
		}
		// A position or an output column's name means the same in the
		// evaluation query, whose columns have the client's names.
		if _, ok := position(sb.Node); !ok && p.outputName(sb.Node) < 0 {
			e, err := p.evalExpr(sb.Node)
			if err != nil {
				return nil, err
			}
			sb.Node = e
		}
		out.SortClause = append(out.SortClause, &pg.Node{Node: &pg.Node_SortBy{SortBy: sb}})
	}
	if plainDistinct {
		out.DistinctClause = s.DistinctClause
	}
	limit, err := p.limit(false)
	if err != nil {
		return nil, err
	}
	if p.eval.loose && p.distinct != nil {
		return nil, refuse("expression that reads a column other than a GROUP BY expression, with a DISTINCT aggregate",
			"group by the expression itself, or "+hintKey)
	}
	if len(p.eval.args) == 0 {
		// Nothing read (row_number() OVER ()): the rows still count.
		p.evalArg(p.addHidden(boolConst(true)))
	}
	s.SortClause, s.DistinctClause = nil, nil
	scatter, err := p.scatter()
	if err != nil {
		return nil, err
	}
	var root Node = &Concatenate{Input: scatter}
	if grouped {
		root = &Aggregate{Input: root, GroupBy: groupBy, Aggs: p.specs}
	}
	ev, err := p.wholeQuery(out)
	if err != nil {
		return nil, err
	}
	ev.Input = root
	return p.finish(ev, limit), nil
}

// wholeQuery deparses the evaluation query of a whole-mode Evaluate and
// cuts it around its FROM clause.
func (p *planner) wholeQuery(q *pg.SelectStmt) (*Evaluate, *pgconn.PgError) {
	tree := &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: q}}
	text, err := pg.Deparse(&pg.ParseResult{Version: p.version, Stmts: []*pg.RawStmt{{Stmt: tree}}})
	if err != nil {
		return nil, pgError(codeInternal, "deparsing the evaluation query: "+err.Error(), "")
	}
	back, perr := pg.Parse(text)
	from := " FROM " + fromMarker
	cut := strings.Index(text, from)
	if perr != nil || len(back.Stmts) != 1 || !exprEqual(back.Stmts[0].Stmt, tree) || cut < 0 || strings.Count(text, fromMarker) != 1 {
		return nil, refuse("statement with window functions that shardproxy cannot rewrite exactly",
			"compute window functions in the application, or "+keyHint(p.st))
	}
	return &Evaluate{SQL: splitTemplate(text[:cut]), Tail: splitTemplate(text[cut+len(from):]),
		Args: p.eval.args, Out: p.eval.out, Whole: true}, nil
}

// outName is the output column name of select-list expression n: its AS
// name, or the one Postgres gives it.
func outName(n *pg.Node, as string) string {
	if as != "" {
		return as
	}
	if name := figureColname(n); name != "" {
		return name
	}
	return "?column?"
}

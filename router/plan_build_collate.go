package router

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// What a statement's COLLATE clauses say of its result columns
// (ScatterPlan.Collations). The executor decides with the result's types
// and the shards' collation facts whether the proxy may compare a
// column's values itself; the planner only reads the statement.

// collations classifies the columns of the shards' rows of s, the
// rewritten statement, whose last hidden select-list items are the hidden
// columns: in a set operation a column's class is its strongest in any
// arm (an explicit collation in one arm decides the result's). fromColl
// reports a COLLATE clause in a FROM item or WITH query, which the outer
// select list may read through a subquery's column under any name.
func collations(s *pg.SelectStmt, hidden int) (cols map[ColRef]Collation, fromColl bool) {
	var leaves []*pg.SelectStmt
	var collect func(x *pg.SelectStmt)
	collect = func(x *pg.SelectStmt) {
		if x == nil {
			return
		}
		if x.WithClause != nil && explicitIn(x.WithClause) {
			fromColl = true
		}
		if isSetOp(x) {
			collect(x.Larg)
			collect(x.Rarg)
			return
		}
		leaves = append(leaves, x)
	}
	collect(s)
	for _, leaf := range leaves {
		for _, f := range leaf.FromClause {
			fromColl = fromColl || fromCollate(f)
		}
		star := false
		for _, t := range leaf.TargetList {
			if cr := t.GetResTarget().GetVal().GetColumnRef(); cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
				star = true
			}
		}
		n := len(leaf.TargetList)
		for j, t := range leaf.TargetList {
			c := classifyCollation(t.GetResTarget().GetVal())
			if c == CollationImplied {
				continue
			}
			var ref ColRef
			switch {
			case j >= n-hidden:
				ref = ColRef{Hidden: true, Index: j - (n - hidden)}
			case star:
				// After a *, positions are unknown: every column may
				// be this one.
				fromColl = fromColl || c == CollationExplicit
				continue
			default:
				ref = ColRef{Index: j}
			}
			if cols == nil {
				cols = map[ColRef]Collation{}
			}
			cols[ref] = max(cols[ref], c)
		}
	}
	return cols, fromColl
}

// classifyCollation reads expression n: CollationBytes when it is under
// COLLATE "C" or "POSIX" (bytewiseCollate), CollationExplicit when any
// other COLLATE clause is somewhere in it (where it decides the value's
// collation or not: the planner does not know the types), else
// CollationImplied.
func classifyCollation(n *pg.Node) Collation {
	if n == nil {
		return CollationImplied
	}
	if bytewiseCollate(n) {
		return CollationBytes
	}
	if explicitIn(n) {
		return CollationExplicit
	}
	return CollationImplied
}

// bytewiseCollate tells whether n is an expression under COLLATE "C" or
// "POSIX" (unqualified or pg_catalog's), which order text by its bytes:
// directly, or through a cast or min/max, whose results keep their
// argument's collation.
func bytewiseCollate(n *pg.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg.Node_CollateClause:
		return bytewiseName(x.CollateClause.Collname)
	case *pg.Node_TypeCast:
		return x.TypeCast.Arg != nil && bytewiseCollate(x.TypeCast.Arg)
	case *pg.Node_FuncCall:
		f := x.FuncCall
		switch funcName(f) {
		case "min", "max":
			q := stringItems(f.Funcname)
			return (len(q) == 1 || q[0] == "pg_catalog") && len(f.Args) == 1 && !f.AggStar && bytewiseCollate(f.Args[0])
		}
	}
	return false
}

// bytewiseName tells whether a COLLATE clause's name is "C" or "POSIX".
func bytewiseName(names []*pg.Node) bool {
	q := stringItems(names)
	if len(q) != len(names) || len(q) == 0 || len(q) > 2 || len(q) == 2 && q[0] != "pg_catalog" {
		return false
	}
	return q[len(q)-1] == "C" || q[len(q)-1] == "POSIX"
}

// neutralName tells whether a COLLATE clause names "default": the
// database's collation, which ExecOptions already describes.
func neutralName(names []*pg.Node) bool {
	q := stringItems(names)
	return len(q) == len(names) && (len(q) == 1 || len(q) == 2 && q[0] == "pg_catalog") && q[len(q)-1] == "default"
}

// explicitIn tells whether msg (a Node or another parse-tree message)
// holds a COLLATE clause other than "C", "POSIX" or "default".
func explicitIn(msg proto.Message) bool {
	found := false
	fn := func(c *pg.Node) bool {
		if cc := c.GetCollateClause(); cc != nil && !bytewiseName(cc.Collname) && !neutralName(cc.Collname) {
			found = true
		}
		return !found
	}
	if n, ok := msg.(*pg.Node); ok {
		walk(n, fn)
	} else {
		walkMessage(msg.ProtoReflect(), fn)
	}
	return found
}

// fromCollate tells whether FROM item n holds a COLLATE clause that may
// reach its columns: anywhere but in a join's ON condition.
func fromCollate(n *pg.Node) bool {
	found := false
	var fn func(c *pg.Node) bool
	fn = func(c *pg.Node) bool {
		if j := c.GetJoinExpr(); j != nil {
			walk(j.Larg, fn)
			walk(j.Rarg, fn)
			return false
		}
		if cc := c.GetCollateClause(); cc != nil && !bytewiseName(cc.Collname) && !neutralName(cc.Collname) {
			found = true
		}
		return !found
	}
	walk(n, fn)
	return found
}

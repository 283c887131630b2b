package router

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// maxViewDepth bounds views defined over views (Postgres has no limit,
// but a definition cycle cannot exist; this only guards the recursion).
const maxViewDepth = 16

// inlineViews replaces, in SELECT statement n, each FROM item that names
// a plain view over a sharded table (catalog.defs) by the view's query
// as a subquery under the view's name: FROM big_orders b becomes
// FROM (SELECT ... FROM orders WHERE ...) b. Postgres reads a view just
// so (the rewriter expands it), and a subquery is what the router can
// route and merge, where the view's name alone would send the statement
// to the default shard. It returns the view names it inlined without a
// schema, which a session search_path other than the default could
// resolve elsewhere (Route refuses those then). viewOf receives each
// inlined query's view name, for messages about what is in it.
//
// A name that a CTE of the statement also has is left alone (scoping
// would decide which one it is), as are views whose schema does not
// match the name: addUse then refuses them.
func inlineViews(n *pg.Node, facts *catalog, viewOf map[*pg.SelectStmt]string, depth int) (unqualified []string, ok bool) {
	if depth > maxViewDepth {
		return nil, false
	}
	ctes := map[string]bool{}
	walk(n, func(c *pg.Node) bool {
		if cte := c.GetCommonTableExpr(); cte != nil {
			ctes[cte.Ctename] = true
		}
		return true
	})
	ok = true
	walk(n, func(c *pg.Node) bool {
		if c.GetLockingClause() != nil {
			return false // FOR UPDATE OF names a FROM item, it is not one
		}
		rv, isRV := c.Node.(*pg.Node_RangeVar)
		if !ok || !isRV {
			return ok
		}
		def, found := facts.defs[rv.RangeVar.Relname]
		if !found || rv.RangeVar.Schemaname == "" && ctes[rv.RangeVar.Relname] || !def.names(rv.RangeVar.Schemaname) {
			return false
		}
		tree, err := pg.Parse(def.sql)
		if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
			return false // left to addUse's refusal
		}
		sub := tree.Stmts[0].Stmt
		nested, subOK := inlineViews(sub, facts, viewOf, depth+1)
		if !subOK {
			ok = false
			return false
		}
		alias := &pg.Alias{Aliasname: rv.RangeVar.Relname}
		if rv.RangeVar.Alias != nil {
			alias = proto.Clone(rv.RangeVar.Alias).(*pg.Alias)
		}
		if len(alias.Colnames) == 0 {
			for _, col := range def.cols {
				alias.Colnames = append(alias.Colnames, pg.MakeStrNode(col))
			}
		}
		c.Node = &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{Subquery: sub, Alias: alias}}
		viewOf[sub.GetSelectStmt()] = rv.RangeVar.Relname
		unqualified = append(unqualified, nested...)
		if rv.RangeVar.Schemaname == "" {
			unqualified = append(unqualified, rv.RangeVar.Relname)
		}
		return false
	})
	return unqualified, ok
}

// names tells whether a FROM item of that schema ("" unqualified) names
// the view d under the default search_path: qualified by its schema, or
// unqualified when its schema is public or unknown (created unqualified).
// A view in the login user's schema is not inlined for an unqualified
// name (refused instead): Router.table's resolution covers mapped tables
// only.
func (d viewDef) names(schema string) bool {
	switch schema {
	case "":
		return d.schema == "" || d.schema == "public"
	case d.schema:
		return true
	}
	return d.schema == "" && schema == "public"
}

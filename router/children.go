package router

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// noteChildren tells the router of partitions and inheritance children
// that statement n makes or removes, before the shards run it (as views
// and functions are): CREATE TABLE ... PARTITION OF or INHERITS and
// ALTER TABLE ... ATTACH PARTITION make one of a mapped table (or of a
// child of one); DETACH PARTITION and DROP TABLE remove one; RENAME
// moves one to its new name. The shards'
// catalogs confirm or correct it at the next health checks.
func (r *Router) noteChildren(n *pg.Node, facts *catalog) {
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		c := x.CreateStmt
		for _, p := range c.InhRelations {
			if rv := p.GetRangeVar(); rv != nil {
				r.attach(facts, c.Relation, rv)
			}
		}
	case *pg.Node_AlterTableStmt:
		for _, cmd := range x.AlterTableStmt.Cmds {
			at := cmd.GetAlterTableCmd()
			pc := at.GetDef().GetPartitionCmd()
			switch {
			case pc == nil:
			case at.Subtype == pg.AlterTableType_AT_AttachPartition:
				r.attach(facts, pc.Name, x.AlterTableStmt.Relation)
			case at.Subtype == pg.AlterTableType_AT_DetachPartition:
				r.childDropped(r.childKey(facts, pc.Name))
			}
		}
	case *pg.Node_RenameStmt:
		// ALTER TABLE child RENAME TO other: the child under its new
		// name; ALTER VIEW v RENAME likewise for views (catalog.go).
		rn := x.RenameStmt
		if rn.RenameType == pg.ObjectType_OBJECT_VIEW && rn.Relation != nil {
			r.viewRenamed(rn.Relation.Relname, rn.Newname)
		}
		if rn.RenameType != pg.ObjectType_OBJECT_TABLE || rn.Relation == nil || facts == nil {
			return
		}
		old := r.childKey(facts, rn.Relation)
		if parent := facts.childOf[old]; parent != "" {
			r.childDropped(old)
			schema, _, _ := strings.Cut(old, ".")
			r.childCreated(schema+"."+rn.Newname, parent)
		}
	case *pg.Node_DropStmt:
		if x.DropStmt.RemoveType != pg.ObjectType_OBJECT_TABLE {
			return
		}
		for _, o := range x.DropStmt.Objects {
			switch names := stringItems(o.GetList().GetItems()); len(names) {
			case 1:
				r.childDropped(r.childKey(facts, &pg.RangeVar{Relname: names[0]}))
			case 2:
				r.childDropped(names[0] + "." + names[1])
			}
		}
	}
}

// attach records child as a child of parent when parent is mapped or a
// child of a mapped table.
func (r *Router) attach(facts *catalog, child, parent *pg.RangeVar) {
	if child == nil || parent == nil {
		return
	}
	home, info, err := r.table(facts, parent.Schemaname, parent.Relname)
	if err != nil || info == nil {
		return
	}
	r.childCreated(r.childKey(facts, child), home+"."+parent.Relname)
}

// childKey is the "schema.rel" of a child table named rv. An unqualified
// name is taken to be where CREATE TABLE puts it under the default
// search_path: the login user's schema when the map has tables there
// (so it exists), else public; the shards' catalogs correct a guess.
func (r *Router) childKey(facts *catalog, rv *pg.RangeVar) string {
	if rv.Schemaname != "" {
		return rv.Schemaname + "." + rv.Relname
	}
	if home, info, err := r.table(facts, "", rv.Relname); err == nil && info != nil {
		return home + "." + rv.Relname // a known child
	}
	if r.loginSchema && len(r.logins) == 1 {
		return r.logins[0] + "." + rv.Relname
	}
	return "public." + rv.Relname
}

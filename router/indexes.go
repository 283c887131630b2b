package router

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Statements that name an index (ALTER INDEX, REINDEX INDEX, DROP INDEX,
// COMMENT ON INDEX) go where the index's table is: an index of a mapped
// table is on every shard, one of an unmapped table on the default shard
// alone. The index's table comes from the shards' catalogs (the health
// check reads pg_index) and, at once, from CREATE INDEX, ALTER INDEX ...
// RENAME and DROP INDEX sent through the proxy. An index neither has
// shown (an unnamed CREATE INDEX, or one made on the shards directly, in
// the last check interval) goes to every shard: where it is missing the
// statement fails, loudly, rather than change the default shard's copy
// and leave the others' as they were.
//
// A composite type (CREATE TYPE t AS (...), ALTER TYPE t ADD ATTRIBUTE)
// names its type with a RangeVar, as a table is named; it is a type like
// an enum or a domain, which tables on every shard may use, and goes to
// every shard too.

// indexTarget analyses a statement whose relation is an index or a
// composite type rather than a table; it reports false for any other,
// whose RangeVars are tables (collectTables).
func (a *analyzer) indexTarget(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_CompositeTypeStmt:
		return true
	case *pg.Node_AlterTableStmt:
		switch x.AlterTableStmt.Objtype {
		case pg.ObjectType_OBJECT_TYPE:
			return true
		case pg.ObjectType_OBJECT_INDEX:
			a.ownedUse(false, x.AlterTableStmt.Relation)
			for _, c := range x.AlterTableStmt.Cmds {
				if pc := c.GetAlterTableCmd().GetDef().GetPartitionCmd(); pc != nil {
					a.ownedUse(false, pc.Name) // ATTACH PARTITION names a partition's index
				}
			}
			return true
		}
	case *pg.Node_RenameStmt:
		rn := x.RenameStmt
		switch {
		case rn.RenameType == pg.ObjectType_OBJECT_INDEX,
			rn.RenameType == pg.ObjectType_OBJECT_TABLE && rn.Relation != nil && a.isIndex(rn.Relation):
			a.ownedUse(false, rn.Relation)
			return true
		case rn.RenameType == pg.ObjectType_OBJECT_ATTRIBUTE && rn.RelationType == pg.ObjectType_OBJECT_TYPE:
			return true // ALTER TYPE t RENAME ATTRIBUTE
		}
	case *pg.Node_ReindexStmt:
		if x.ReindexStmt.Kind == pg.ReindexObjectType_REINDEX_OBJECT_INDEX {
			a.ownedUse(false, x.ReindexStmt.Relation)
			return true
		}
	}
	return false
}

// ownedNames records the indexes or (seq) sequences a DROP or COMMENT ON
// names (lists of strings).
func (a *analyzer) ownedNames(seq bool, objects ...*pg.Node) {
	for _, o := range objects {
		if rv := rangeVarOf(stringItems(o.GetList().GetItems())); rv != nil {
			a.ownedUse(seq, rv)
		}
	}
}

// ownedUse records the table of index or (seq) sequence rv as a table
// the statement acts on, or that no catalog has shown it as a table's
// (unknownOwned: every shard).
func (a *analyzer) ownedUse(seq bool, rv *pg.RangeVar) {
	if rv == nil {
		return
	}
	table := a.st.facts.ownerOf(seq, a.r.ownedKey(a.st.facts, seq, rv.Schemaname, rv.Relname))
	if table == "" {
		a.st.unknownOwned = true
		return
	}
	schema, rel, _ := strings.Cut(table, ".")
	a.addUse(&pg.RangeVar{Schemaname: schema, Relname: rel}, true)
}

// isIndex tells whether rv names a known index and no mapped table.
func (a *analyzer) isIndex(rv *pg.RangeVar) bool {
	if _, info, err := a.r.table(a.st.facts, rv.Schemaname, rv.Relname); err != nil || info != nil {
		return false
	}
	return a.r.indexTableKey(a.st.facts, rv.Schemaname, rv.Relname) != ""
}

// indexTableKey is the table ("schema.rel") of index schema.rel, as the
// catalogs know it, or "". An unqualified name is looked up where the
// shards would find it under the default search_path: the login user's
// schema, then public.
func (r *Router) indexTableKey(facts *catalog, schema, rel string) string {
	return facts.ownerOf(false, r.ownedKey(facts, false, schema, rel))
}

// learnIndex keeps the catalog's index names in step with CREATE INDEX,
// ALTER INDEX ... RENAME and DROP INDEX analysed here.
func (r *Router) learnIndex(n *pg.Node, facts *catalog) {
	switch x := n.Node.(type) {
	case *pg.Node_IndexStmt:
		is := x.IndexStmt
		if is.Idxname == "" || is.Relation == nil {
			return // a generated name: the next check shows it
		}
		home, _, err := r.table(facts, is.Relation.Schemaname, is.Relation.Relname)
		if err != nil {
			return
		}
		r.ownedCreated(false, home+"."+is.Idxname, home+"."+is.Relation.Relname)
	case *pg.Node_RenameStmt:
		rn := x.RenameStmt
		if rn.Relation == nil || rn.RenameType != pg.ObjectType_OBJECT_INDEX && rn.RenameType != pg.ObjectType_OBJECT_TABLE {
			return
		}
		r.learnRename(facts, false, rn.Relation, rn.Newname)
	case *pg.Node_DropStmt:
		if x.DropStmt.RemoveType != pg.ObjectType_OBJECT_INDEX {
			return
		}
		r.learnDrop(facts, false, x.DropStmt.Objects)
	}
}

// ownedKey is the "schema.name" of known index or (seq) sequence
// schema.rel, or "".
func (r *Router) ownedKey(facts *catalog, seq bool, schema, rel string) string {
	schemas := []string{schema}
	if schema == "" {
		schemas = append(slices.Clone(r.logins), "public")
	}
	for _, s := range schemas {
		if facts.ownerOf(seq, s+"."+rel) != "" {
			return s + "." + rel
		}
	}
	return ""
}

// learnRename follows ALTER ... RENAME of a known index or (seq)
// sequence rv to name (it stays in its schema).
func (r *Router) learnRename(facts *catalog, seq bool, rv *pg.RangeVar, name string) {
	if key := r.ownedKey(facts, seq, rv.Schemaname, rv.Relname); key != "" {
		schema, _, _ := strings.Cut(key, ".")
		r.ownedRenamed(seq, key, schema+"."+name)
	}
}

// learnDrop forgets the known indexes or (seq) sequences a DROP names.
func (r *Router) learnDrop(facts *catalog, seq bool, objects []*pg.Node) {
	for _, o := range objects {
		if rv := rangeVarOf(stringItems(o.GetList().GetItems())); rv != nil {
			if key := r.ownedKey(facts, seq, rv.Schemaname, rv.Relname); key != "" {
				r.ownedDropped(seq, key)
			}
		}
	}
}

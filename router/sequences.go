package router

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Sequences are schema objects, made on every shard like types and
// functions: a sharded table's default nextval('s') must find s on each
// shard (pg_dump writes CREATE SEQUENCE, then ALTER SEQUENCE ... OWNED
// BY, then the column's DEFAULT). Each shard's copy counts on its own
// (README: a sequence is a per-shard object). A sequence a table owns
// (serial, identity, OWNED BY) goes where the table is: every shard for
// a mapped table's, the default shard for an unmapped one's, so that
// ALTER SEQUENCE misc_id_seq RESTART finds it. Owners come from the
// shards' catalogs (pg_depend) and, at once, from CREATE TABLE with a
// serial or identity column, OWNED BY, ALTER SEQUENCE ... RENAME and
// DROP SEQUENCE sent through the proxy.

// sequenceTarget analyses a statement whose relation is a sequence (it
// reports false for any other): CREATE/ALTER SEQUENCE (with OWNED BY:
// where the new owner is), ALTER SEQUENCE ... RENAME/SET SCHEMA/OWNER TO,
// GRANT ... ON SEQUENCE.
func (a *analyzer) sequenceTarget(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_CreateSeqStmt:
		if owner := ownedBy(x.CreateSeqStmt.Options); owner != nil {
			a.addName(owner)
		}
		return true
	case *pg.Node_AlterSeqStmt:
		if owner := ownedBy(x.AlterSeqStmt.Options); owner != nil {
			a.addName(owner)
		} else {
			a.ownedUse(true, x.AlterSeqStmt.Sequence)
		}
		return true
	case *pg.Node_AlterTableStmt:
		if x.AlterTableStmt.Objtype == pg.ObjectType_OBJECT_SEQUENCE {
			a.ownedUse(true, x.AlterTableStmt.Relation)
			return true
		}
	case *pg.Node_RenameStmt:
		if x.RenameStmt.RenameType == pg.ObjectType_OBJECT_SEQUENCE {
			a.ownedUse(true, x.RenameStmt.Relation)
			return true
		}
	case *pg.Node_AlterObjectSchemaStmt:
		if x.AlterObjectSchemaStmt.ObjectType == pg.ObjectType_OBJECT_SEQUENCE {
			a.ownedUse(true, x.AlterObjectSchemaStmt.Relation)
			return true
		}
	case *pg.Node_GrantStmt:
		if x.GrantStmt.Objtype == pg.ObjectType_OBJECT_SEQUENCE && x.GrantStmt.Targtype == pg.GrantTargetType_ACL_TARGET_OBJECT {
			for _, o := range x.GrantStmt.Objects {
				a.ownedUse(true, o.GetRangeVar())
			}
			return true
		}
	}
	return false
}

// rangeVarOf reads [[db.]schema.]name.
func rangeVarOf(names []string) *pg.RangeVar {
	switch len(names) {
	case 1:
		return &pg.RangeVar{Relname: names[0]}
	case 2:
		return &pg.RangeVar{Schemaname: names[0], Relname: names[1]}
	case 3:
		return &pg.RangeVar{Schemaname: names[1], Relname: names[2]}
	}
	return nil
}

// ownedBy is the table an OWNED BY [schema.]table.column option names,
// or nil (no option, or OWNED BY NONE).
func ownedBy(options []*pg.Node) []string {
	for _, o := range options {
		if d := o.GetDefElem(); d != nil && d.Defname == "owned_by" {
			if names := stringItems(d.Arg.GetList().GetItems()); len(names) >= 2 {
				return names[:len(names)-1]
			}
		}
	}
	return nil
}

// learnSequence keeps the catalog's sequence owners in step with the
// statements analysed here that give, rename or drop them.
func (r *Router) learnSequence(n *pg.Node, facts *catalog) {
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		for _, e := range x.CreateStmt.TableElts {
			r.columnSequence(facts, x.CreateStmt.Relation, e.GetColumnDef())
		}
	case *pg.Node_AlterTableStmt:
		for _, c := range x.AlterTableStmt.Cmds {
			if at := c.GetAlterTableCmd(); at.GetSubtype() == pg.AlterTableType_AT_AddColumn {
				r.columnSequence(facts, x.AlterTableStmt.Relation, at.Def.GetColumnDef())
			}
		}
	case *pg.Node_CreateSeqStmt:
		r.sequenceOwned(facts, x.CreateSeqStmt.Sequence, x.CreateSeqStmt.Options)
	case *pg.Node_AlterSeqStmt:
		r.sequenceOwned(facts, x.AlterSeqStmt.Sequence, x.AlterSeqStmt.Options)
	case *pg.Node_RenameStmt:
		if rn := x.RenameStmt; rn.RenameType == pg.ObjectType_OBJECT_SEQUENCE && rn.Relation != nil {
			r.learnRename(facts, true, rn.Relation, rn.Newname)
		}
	case *pg.Node_DropStmt:
		if x.DropStmt.RemoveType != pg.ObjectType_OBJECT_SEQUENCE {
			return
		}
		r.learnDrop(facts, true, x.DropStmt.Objects)

	}
}

// columnSequence learns the sequence a serial or identity column of
// table rv gets: table_column_seq in the table's schema (Postgres picks
// another name when that one is taken or too long; the shards' catalogs
// then correct it).
func (r *Router) columnSequence(facts *catalog, rv *pg.RangeVar, cd *pg.ColumnDef) {
	if rv == nil || cd == nil {
		return
	}
	serial := false
	if names := stringItems(cd.GetTypeName().GetNames()); len(names) == 1 && serialTypes[names[0]] {
		serial = true
	}
	for _, c := range cd.Constraints {
		if c.GetConstraint().GetContype() == pg.ConstrType_CONSTR_IDENTITY {
			serial = true
		}
	}
	if !serial {
		return
	}
	home, _, err := r.table(facts, rv.Schemaname, rv.Relname)
	if err != nil {
		return
	}
	r.ownedCreated(true, home+"."+rv.Relname+"_"+cd.Colname+"_seq", home+"."+rv.Relname)
}

// sequenceOwned learns OWNED BY table.column of sequence rv.
func (r *Router) sequenceOwned(facts *catalog, rv *pg.RangeVar, options []*pg.Node) {
	owner := ownedBy(options)
	if rv == nil || owner == nil {
		return
	}
	t := rangeVarOf(owner)
	if t == nil {
		return
	}
	home, _, err := r.table(facts, t.Schemaname, t.Relname)
	if err != nil {
		return
	}
	schema := rv.Schemaname
	if schema == "" {
		schema = home // (where CREATE SEQUENCE put it, as a guess the catalogs correct)
	}
	r.ownedCreated(true, schema+"."+rv.Relname, home+"."+t.Relname)
}

// sequenceOwner is the table that owns sequence schema.rel, as the
// catalogs (or the statements analysed here) know it: owned is false
// when no table is known to; info is nil when the owner is not in the
// shard map.
func (r *Router) sequenceOwner(facts *catalog, schema, rel string) (info *tableInfo, owned bool) {
	table := facts.ownerOf(true, r.ownedKey(facts, true, schema, rel))
	if table == "" {
		return nil, false
	}
	ts, tr, _ := strings.Cut(table, ".") // qualified: table never refuses it
	_, info, _ = r.table(facts, ts, tr)
	return info, true
}

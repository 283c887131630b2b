package router

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A PRIMARY KEY, UNIQUE or EXCLUDE constraint (or a unique index) on a
// sharded table is created on every shard, and each shard enforces it on
// its own rows only. Unless the shard key is one of its columns, two
// rows that break it can live on two shards: UNIQUE (email) on customers
// would take the same email twice, with no error. When the key is one
// of the columns, rows that could clash share a key, so they share a
// shard, and each shard's check is the whole check. Such a constraint is
// therefore refused (0A000) without the key, as Citus refuses it.
// Reference tables (whole copies) and unmapped tables (one shard) keep
// every constraint.

// A unique index without the key can still exist, made on the shards
// directly; INSERT ... ON CONFLICT (email) would then look for the
// conflicting row on the new row's shard alone. Such a conflict target is
// refused the same way (conflictRefusal); ON CONSTRAINT name, whose
// columns the router does not know, is left to the constraint's maker.

// uniqueRefusal is the error for DDL statement n when it declares such
// a constraint on a sharded table (or a child of one); nil otherwise.
func (r *Router) uniqueRefusal(n *pg.Node, facts *catalog) *pgconn.PgError {
	var err *pgconn.PgError
	check := func(rv *pg.RangeVar, what string, cols []string) {
		if err != nil || rv == nil {
			return
		}
		_, info, _ := r.table(facts, rv.Schemaname, rv.Relname)
		if info == nil || info.ref {
			return
		}
		for _, c := range cols {
			if c == info.key {
				return
			}
		}
		err = pgError(codeFeatureNotSupport,
			fmt.Sprintf("%s on sharded table %s without its shard key %s would be enforced on each shard's rows alone", what, info.name, info.key),
			fmt.Sprintf("add %s to the constraint's columns: rows that could clash then share a shard, which checks them", info.key))
	}
	constraint := func(rv *pg.RangeVar, c *pg.Constraint, column string) {
		switch c.GetContype() {
		case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE:
			if c.Indexname != "" {
				return // USING INDEX: the index was checked when made
			}
			what := "PRIMARY KEY"
			if c.Contype == pg.ConstrType_CONSTR_UNIQUE {
				what = "UNIQUE constraint"
			}
			cols := stringItems(c.Keys)
			if column != "" {
				cols = []string{column}
			}
			check(rv, what, cols)
		case pg.ConstrType_CONSTR_EXCLUSION:
			var cols []string // columns compared with =: only they bound a clash to one key
			for _, e := range c.Exclusions {
				items := e.GetList().GetItems()
				if len(items) == 2 {
					if ops := stringItems(items[1].GetList().GetItems()); len(ops) > 0 && ops[len(ops)-1] == "=" {
						cols = append(cols, items[0].GetIndexElem().GetName())
					}
				}
			}
			check(rv, "EXCLUDE constraint", cols)
		}
	}
	columnDef := func(rv *pg.RangeVar, cd *pg.ColumnDef) {
		for _, c := range cd.GetConstraints() {
			constraint(rv, c.GetConstraint(), cd.Colname)
		}
	}
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		for _, e := range x.CreateStmt.TableElts {
			if cd := e.GetColumnDef(); cd != nil {
				columnDef(x.CreateStmt.Relation, cd)
			} else if c := e.GetConstraint(); c != nil {
				constraint(x.CreateStmt.Relation, c, "")
			}
		}
	case *pg.Node_AlterTableStmt:
		for _, cmd := range x.AlterTableStmt.Cmds {
			at := cmd.GetAlterTableCmd()
			switch at.GetSubtype() {
			case pg.AlterTableType_AT_AddConstraint:
				constraint(x.AlterTableStmt.Relation, at.Def.GetConstraint(), "")
			case pg.AlterTableType_AT_AddColumn:
				columnDef(x.AlterTableStmt.Relation, at.Def.GetColumnDef())
			}
		}
	case *pg.Node_IndexStmt:
		if ix := x.IndexStmt; ix.Unique {
			var cols []string // plain columns; an expression's value is not the key's
			for _, p := range ix.IndexParams {
				if e := p.GetIndexElem(); e != nil && e.Name != "" {
					cols = append(cols, e.Name)
				}
			}
			check(ix.Relation, "unique index", cols)
		}
	}
	return err
}

// conflictRefusal is the error for statement n when an INSERT in it
// into a sharded table names ON CONFLICT columns without the shard key;
// nil otherwise.
func (r *Router) conflictRefusal(n *pg.Node, facts *catalog) *pgconn.PgError {
	var err *pgconn.PgError
	if !executes(n) {
		return nil
	}
	walk(n, func(c *pg.Node) bool {
		ins := c.GetInsertStmt()
		infer := ins.GetOnConflictClause().GetInfer()
		if len(infer.GetIndexElems()) == 0 || ins.Relation == nil {
			return err == nil
		}
		_, info, _ := r.table(facts, ins.Relation.Schemaname, ins.Relation.Relname)
		if info == nil || info.ref {
			return err == nil
		}
		var cols []string
		for _, e := range infer.IndexElems {
			if ie := e.GetIndexElem(); ie != nil && ie.Name != "" {
				cols = append(cols, ie.Name)
				if ie.Name == info.key {
					return err == nil
				}
			}
		}
		err = pgError(codeFeatureNotSupport,
			fmt.Sprintf("ON CONFLICT (%s) on sharded table %s without its shard key %s would look for conflicts on the new row's shard alone",
				strings.Join(cols, ", "), info.name, info.key),
			fmt.Sprintf("add %s to the conflict target, and to the unique index it names", info.key))
		return false
	})
	return err
}

package router

import (
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A serial or identity column makes its table a sequence of its own,
// which Postgres keeps once for the whole table: its values never
// repeat. On a sharded table the DDL runs on every shard, so every shard
// gets its own copy of the sequence (sequences.go), and each numbers its
// rows 1, 2, 3 ... on its own: the same ids on every shard, with no
// error. ALTER TABLE ... ADD COLUMN gid bigserial was worse: it numbers
// the existing rows at once, shard by shard, so the new column repeated
// values before any insert.
//
// Handing out one sequence's values across shards would need the proxy
// to draw every default from one place before routing the row (INSERT
// ... VALUES, INSERT ... SELECT computed on the shards, COPY, MERGE, and
// the rows ADD COLUMN fills on the shards themselves), and the
// per-shard copies are already the documented design (README: a
// sequence is a per-shard object) that setval() placement, sequence
// reads and pg_dump round trips are built on. So such a column is
// refused (0A000) where it is made, CREATE TABLE or ALTER TABLE ... ADD
// COLUMN, unless the same statement declares it unique together with
// the shard key (PRIMARY KEY (customer_id, id), as the constraint rule
// of constraints.go requires anyway): the table then says that a row is
// known by (key, id), which per-shard numbering keeps unique, as the
// reference workload's outbox and saga steps do. A column that is the
// shard key itself is left alone: an INSERT must give the key.
//
// Left as written: a DEFAULT nextval('s') that names a sequence made
// with CREATE SEQUENCE (a per-shard object by the design above, said
// so where the sequence is named), and SET DEFAULT or ADD GENERATED ...
// AS IDENTITY on an existing column, which number new rows only and are
// how pg_dump writes serial and identity columns (their constraints come
// later in the dump, so the statement cannot show them).

// serialRefusal is the error for DDL statement n when it makes a serial
// or identity column on a sharded table (or a child of one) that no
// uniqueness constraint of the statement qualifies with the shard key;
// nil otherwise.
func (r *Router) serialRefusal(n *pg.Node, facts *catalog) *pgconn.PgError {
	var (
		rv      *pg.RangeVar
		cols    []*pg.ColumnDef // the columns made
		uniques [][]string      // the columns of each PRIMARY KEY or UNIQUE declared
		adding  bool
	)
	unique := func(c *pg.Constraint, column string) {
		switch c.GetContype() {
		case pg.ConstrType_CONSTR_PRIMARY, pg.ConstrType_CONSTR_UNIQUE:
			if column != "" {
				uniques = append(uniques, []string{column})
			} else {
				uniques = append(uniques, stringItems(c.Keys))
			}
		}
	}
	column := func(cd *pg.ColumnDef) {
		if cd == nil {
			return
		}
		cols = append(cols, cd)
		for _, c := range cd.Constraints {
			unique(c.GetConstraint(), cd.Colname)
		}
	}
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		rv = x.CreateStmt.Relation
		for _, e := range x.CreateStmt.TableElts {
			if c := e.GetConstraint(); c != nil {
				unique(c, "")
			}
			column(e.GetColumnDef())
		}
	case *pg.Node_AlterTableStmt:
		if x.AlterTableStmt.Objtype != pg.ObjectType_OBJECT_TABLE {
			return nil
		}
		rv, adding = x.AlterTableStmt.Relation, true
		for _, cmd := range x.AlterTableStmt.Cmds {
			switch at := cmd.GetAlterTableCmd(); at.GetSubtype() {
			case pg.AlterTableType_AT_AddColumn:
				column(at.Def.GetColumnDef())
			case pg.AlterTableType_AT_AddConstraint:
				unique(at.Def.GetConstraint(), "")
			}
		}
	}
	if rv == nil || len(cols) == 0 {
		return nil
	}
	_, info, _ := r.table(facts, rv.Schemaname, rv.Relname)
	if info == nil || info.ref {
		return nil
	}
	for _, cd := range cols {
		what := numberedColumn(cd)
		if what == "" || cd.Colname == info.key || slices.ContainsFunc(uniques, func(u []string) bool {
			return slices.Contains(u, info.key) && slices.Contains(u, cd.Colname)
		}) {
			continue
		}
		msg := fmt.Sprintf("%s column %s of sharded table %s would be numbered by each shard's own copy of its sequence: its values would repeat across shards",
			what, cd.Colname, info.name)
		if adding {
			msg = fmt.Sprintf("adding %s column %s to sharded table %s would number its rows with each shard's own copy of its sequence: its values would repeat across shards",
				what, cd.Colname, info.name)
		}
		return pgError(codeFeatureNotSupport, msg,
			fmt.Sprintf("for ids unique in the whole table use uuid DEFAULT gen_random_uuid(); for ids unique per shard key, declare them so in the same statement: PRIMARY KEY (%s, %s)",
				info.key, cd.Colname))
	}
	return nil
}

// numberedColumn says what column definition cd is when a sequence of
// its own numbers it ("serial", "identity"); "" otherwise.
func numberedColumn(cd *pg.ColumnDef) string {
	if names := stringItems(cd.GetTypeName().GetNames()); len(names) == 1 && serialTypes[names[0]] {
		return "serial"
	}
	for _, c := range cd.Constraints {
		if c.GetConstraint().GetContype() == pg.ConstrType_CONSTR_IDENTITY {
			return "identity"
		}
	}
	return ""
}

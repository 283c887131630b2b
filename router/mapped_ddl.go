package router

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The shard map names its tables and their key columns, and the proxy
// cannot rewrite the YAML. DDL that would take a mapped name away — the
// table renamed or moved to another schema, its key column renamed,
// dropped or given another type — would leave the map naming a table or
// column that no longer is: the new name would then be read as an
// unmapped table, on the default shard alone (a SELECT seeing one
// shard's rows), and the key as absent. Such DDL is refused; the hint
// says how to do it (on each shard with a shard hint, and in the map,
// then a reload). A child table (partition) is not in the map and is
// renamed freely: the router learns its new name.

// mappedTableDDL refuses n when it renames or moves a mapped table, or
// renames or drops its key column. (A key column's type may change, int
// to bigint above all: the map's key_type, not the column's, says how a
// key is read and placed.)
func (a *analyzer) mappedTableDDL(n *pg.Node) {
	switch x := n.Node.(type) {
	case *pg.Node_RenameStmt:
		rn := x.RenameStmt
		info := a.mappedTable(rn.Relation)
		switch {
		case info == nil:
		case rn.RenameType == pg.ObjectType_OBJECT_TABLE:
			a.refuseMapped(info, "renaming it")
		case rn.RenameType == pg.ObjectType_OBJECT_COLUMN && isKey(info, rn.Subname):
			a.refuseMapped(info, "renaming its shard key column "+info.key)
		}
	case *pg.Node_AlterObjectSchemaStmt:
		if x.AlterObjectSchemaStmt.ObjectType == pg.ObjectType_OBJECT_TABLE {
			if info := a.mappedTable(x.AlterObjectSchemaStmt.Relation); info != nil {
				a.refuseMapped(info, "moving it to schema "+x.AlterObjectSchemaStmt.Newschema)
			}
		}
	case *pg.Node_AlterTableStmt:
		info := a.mappedTable(x.AlterTableStmt.Relation)
		if info == nil || x.AlterTableStmt.Objtype != pg.ObjectType_OBJECT_TABLE {
			return
		}
		for _, c := range x.AlterTableStmt.Cmds {
			switch at := c.GetAlterTableCmd(); {
			case at == nil || !isKey(info, at.Name):
			case at.Subtype == pg.AlterTableType_AT_DropColumn:
				a.refuseMapped(info, "dropping its shard key column "+info.key)
			}
		}
	}
}

// mappedTable is the map's entry for rv, or nil (unmapped, or a child).
func (a *analyzer) mappedTable(rv *pg.RangeVar) *tableInfo {
	if rv == nil {
		return nil
	}
	home, info, err := a.r.table(a.st.facts, rv.Schemaname, rv.Relname)
	if err != nil || info == nil || a.r.tables[home+"."+rv.Relname] != info {
		return nil
	}
	return info
}

// isKey tells whether column names the table's shard key.
func isKey(info *tableInfo, column string) bool {
	return !info.ref && column != "" && strings.EqualFold(column, info.key)
}

func (a *analyzer) refuseMapped(info *tableInfo, what string) {
	kind := "sharded"
	if info.ref {
		kind = "reference"
	}
	a.fail(fmt.Sprintf("%s table %s is in the shard map: %s would leave the map naming what no longer exists", kind, info.name, what),
		"change the table on each shard (with /* shard: NAME */) and the map's tables: entry together, then reload the map (SIGHUP)")
}

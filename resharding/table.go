package resharding

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// tableInfo is what the catalog of one shard says about a moving table.
type tableInfo struct {
	Name   string   // as in the shard map, maybe schema-qualified
	Ident  string   // quoted for SQL
	Cols   []string // non-generated, non-dropped columns in attnum order
	PK     []string // primary key columns, in index order
	KeyCol int      // index of the shard key in Cols
	// ReplIdent is pg_class.relreplident: d (default = primary key), f
	// (full), i (index), n (nothing).
	ReplIdent string
}

// quoteTable quotes a possibly schema-qualified table name.
func quoteTable(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// inspectTable reads the columns, primary key and replica identity of
// table on one shard. ok is false when the table does not exist there.
func inspectTable(ctx context.Context, conn *pgx.Conn, name, key string) (ti *tableInfo, ok bool, err error) {
	ti = &tableInfo{Name: name, Ident: quoteTable(name), KeyCol: -1}
	var oid *uint32
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::oid", ti.Ident).Scan(&oid); err != nil {
		return nil, false, err
	}
	if oid == nil {
		return nil, false, nil
	}
	rows, err := conn.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
		ORDER BY attnum`, *oid)
	if err != nil {
		return nil, false, err
	}
	ti.Cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, err
	}
	rows, err = conn.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, *oid)
	if err != nil {
		return nil, false, err
	}
	ti.PK, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, err
	}
	if err := conn.QueryRow(ctx, "SELECT relreplident::text FROM pg_class WHERE oid = $1", *oid).Scan(&ti.ReplIdent); err != nil {
		return nil, false, err
	}
	ti.KeyCol = slices.Index(ti.Cols, key)
	return ti, true, nil
}

// refusal says why the table cannot be moved online, or "".
func (ti *tableInfo) refusal(key string) string {
	switch {
	case ti.KeyCol < 0:
		return fmt.Sprintf("table %s has no column %q (its shard key)", ti.Name, key)
	case len(ti.PK) == 0:
		return fmt.Sprintf("table %s has no primary key: changes cannot be applied idempotently (add a primary key)", ti.Name)
	case ti.ReplIdent != "d":
		// With FULL or an index identity, deletes would carry other
		// columns; we apply by primary key, so insist on the default.
		return fmt.Sprintf("table %s has REPLICA IDENTITY %s; the default (primary key) is required", ti.Name, map[string]string{"f": "FULL", "i": "USING INDEX", "n": "NOTHING"}[ti.ReplIdent])
	case !slices.Contains(ti.PK, key):
		// A delete is decoded with the primary key only; without the shard
		// key in it, the owner of a deleted row is unknown.
		return fmt.Sprintf("table %s: shard key %q is not part of the primary key (%s), so deletes cannot be routed to the new owner", ti.Name, key, strings.Join(ti.PK, ", "))
	}
	return ""
}

// refRefusal says why a reference table cannot be streamed to a new
// shard, or "": its changes are applied by primary key like moved rows.
func (ti *tableInfo) refRefusal() string {
	switch {
	case len(ti.PK) == 0:
		return fmt.Sprintf("reference table %s has no primary key: its changes cannot be applied idempotently on the new shards (add a primary key)", ti.Name)
	case ti.ReplIdent != "d":
		return fmt.Sprintf("reference table %s has REPLICA IDENTITY %s; the default (primary key) is required", ti.Name, map[string]string{"f": "FULL", "i": "USING INDEX", "n": "NOTHING"}[ti.ReplIdent])
	}
	return ""
}

// colList is the quoted, comma-separated column list.
func (ti *tableInfo) colList() string {
	q := make([]string, len(ti.Cols))
	for i, c := range ti.Cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

// upsertSQL inserts all columns ($1..$n) or, on a primary-key conflict,
// overwrites the non-key columns.
func (ti *tableInfo) upsertSQL() string {
	ph := make([]string, len(ti.Cols))
	for i := range ti.Cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) %s", ti.Ident, ti.colList(), strings.Join(ph, ", "), ti.onConflict())
}

// deleteSQL deletes by primary key, $1..$k in PK order.
func (ti *tableInfo) deleteSQL() string {
	conds := make([]string, len(ti.PK))
	for i, c := range ti.PK {
		conds[i] = fmt.Sprintf("%s = $%d", quoteIdent(c), i+1)
	}
	return fmt.Sprintf("DELETE FROM %s WHERE %s", ti.Ident, strings.Join(conds, " AND "))
}

// onConflict is the ON CONFLICT clause of an upsert by primary key.
func (ti *tableInfo) onConflict() string {
	pk := make([]string, len(ti.PK))
	for i, c := range ti.PK {
		pk[i] = quoteIdent(c)
	}
	var set []string
	for _, c := range ti.Cols {
		if !slices.Contains(ti.PK, c) {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", quoteIdent(c), quoteIdent(c)))
		}
	}
	if len(set) == 0 {
		return fmt.Sprintf("ON CONFLICT (%s) DO NOTHING", strings.Join(pk, ", "))
	}
	return fmt.Sprintf("ON CONFLICT (%s) DO UPDATE SET %s", strings.Join(pk, ", "), strings.Join(set, ", "))
}

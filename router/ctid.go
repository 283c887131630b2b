package router

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A ctid is a row's place in its table's file, so it names a row within
// one server: every shard has its own row at (0,1). A statement that
// runs on several shards and reads ctid, as DELETE FROM orders WHERE
// ctid = '(0,1)' (or a client's table editor that updates rows without a
// primary key by their ctid), would reach one row on each shard where
// one Postgres reaches one row in all. It is refused; with the shard key
// (or a shard hint) the statement runs on one shard and ctid means what
// it says. Reference tables' copies count too: they need not lay their
// rows out alike.

// refersCtid reports whether n reads a ctid column.
func refersCtid(n *pg.Node) bool {
	found := false
	walk(n, func(c *pg.Node) bool {
		if ref := c.GetColumnRef(); ref != nil && len(ref.Fields) > 0 {
			if strings.EqualFold(ref.Fields[len(ref.Fields)-1].GetString_().GetSval(), "ctid") {
				found = true
			}
		}
		return !found
	})
	return found
}

// ctidRefusal refuses a statement reading ctid on shards.
func ctidRefusal(shards []string) *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		"ctid names a row within one shard, and this statement runs on shards "+strings.Join(shards, ", ")+", each with rows of its own at every ctid",
		"add the shard key to the WHERE clause, or name the shard: /* shard: name */")
}

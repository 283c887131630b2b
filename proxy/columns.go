package proxy

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// An INSERT into a sharded table without a column list names its shard key
// only by position, so the router asks for the table's columns
// (router.Args.Columns). They are read from the default shard (every shard
// holds every table's schema) and cached per Runtime: a reload starts with
// an empty cache, and DDL through the proxy clears it.

// columnsSQL lists a table's live columns in the order VALUES fills them.
// $1 is a quoted name; regclass resolves an unqualified one by the
// search_path of the backend, which acquire has set to the client's.
const columnsSQL = `SELECT a.attname FROM pg_catalog.pg_attribute a ` +
	`WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`

// maxCachedTables bounds the cache: unqualified names are cached per
// search_path value, which clients choose.
const maxCachedTables = 1024

// columnCache maps a quoted table name (plus the search_path, for an
// unqualified name) to its columns. A nil *columnCache caches nothing.
type columnCache struct {
	mu sync.Mutex
	// gen counts invalidations: a lookup that started before one may have
	// read the old columns, so its result is not stored.
	gen  uint64
	cols map[string][]string
}

func (c *columnCache) get(key string) (cols []string, gen uint64, ok bool) {
	if c == nil {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cols, ok = c.cols[key]
	return cols, c.gen, ok
}

func (c *columnCache) put(key string, gen uint64, cols []string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.cols == nil || len(c.cols) >= maxCachedTables {
		c.cols = make(map[string][]string)
	}
	c.cols[key] = cols
}

func (c *columnCache) invalidate() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.cols = nil
}

// tableColumns is the session's router.Args.Columns resolver. schema is ""
// for a name the statement did not qualify.
func (s *session) tableColumns(ctx context.Context, schema, rel string) ([]string, error) {
	rt := s.runtime()
	name := quoteIdentAlways(rel)
	key := name
	if schema != "" {
		name = quoteIdentAlways(schema) + "." + name
		key = name
	} else {
		// Identifiers cannot hold NUL, so keys cannot collide.
		key = name + "\x00" + s.params["search_path"]
	}
	cols, gen, ok := rt.columns.get(key)
	if ok {
		return cols, nil // shared: the router only reads it
	}
	cols, err := s.queryColumns(ctx, name)
	if err != nil {
		return nil, err
	}
	rt.columns.put(key, gen, cols)
	return cols, nil
}

// queryColumns reads a table's columns on a default-shard backend borrowed
// just for that (like describeEphemeral), so the lookup neither pins nor
// disturbs the client's transaction or extended-protocol batch.
func (s *session) queryColumns(ctx context.Context, name string) ([]string, error) {
	return s.queryCatalog(ctx, columnsSQL, name)
}

// queryCatalog runs sql with text parameters params that way, and returns
// the first column of its rows (keyColumnType shares it).
func (s *session) queryCatalog(ctx context.Context, sql string, params ...string) ([]string, error) {
	rt := s.runtime()
	shard := rt.Config.DefaultShard
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return nil, err
	}
	p := rt.Pools.Get(shard)
	done := func(discard bool) {
		s.setActive(c, false)
		if discard {
			p.Discard(c)
		} else {
			p.Release(c)
		}
	}
	// The extended protocol keeps the name a parameter whatever the
	// session's standard_conforming_strings.
	c.Send(&pgproto3.Parse{Query: sql})
	bind := &pgproto3.Bind{Parameters: make([][]byte, len(params))}
	for i, v := range params {
		bind.Parameters[i] = []byte(v)
	}
	c.Send(bind)
	c.Send(&pgproto3.Execute{})
	c.Send(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		done(true)
		return nil, backendLost(shard, err)
	}
	var cols []string
	var failure *pgconn.PgError
	for {
		msg, err := c.Receive()
		if err != nil {
			done(true)
			return nil, backendLost(shard, err)
		}
		if n > 0 { // replies to the session settings acquire sent
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				n--
			}
			continue
		}
		switch msg := msg.(type) {
		case *pgproto3.DataRow:
			if len(msg.Values) == 1 {
				cols = append(cols, string(msg.Values[0])) // copies: msg is reused
			}
		case *pgproto3.ErrorResponse:
			if failure == nil {
				e := *msg
				demoteFatal(&e)
				failure = pgconn.ErrorResponseToPgError(&e)
				failure.Position = 0 // a position in our query, not the client's
			}
		case *pgproto3.ReadyForQuery:
			done(msg.TxStatus != 'I')
			if failure != nil {
				return nil, failure
			}
			return cols, nil
		}
	}
}

// quoteIdentAlways quotes an identifier as quote_ident would, and always:
// the names come unquoted (and case-folded) from the parser.
func quoteIdentAlways(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// schemaChanged forgets cached columns after DDL ran through the proxy.
// Inside a transaction the change becomes visible to other backends only at
// commit, and a lookup in between would cache the old columns again: the
// cache is cleared once more when the transaction ends (see settle).
func (s *session) schemaChanged() {
	s.forgetColumns()
	s.srv.ddlGen.Add(1) // prepared statements' result types may have changed (resultshape.go)
	// A new column may have a collation of its own (pool.Conn.CollatedColumns).
	s.runtime().Pools.SchemaChanged()
	if s.attached != nil || s.txStatus != 'I' {
		s.ddlInTx = true
	}
}

// forgetColumns clears the column cache of the session's snapshot and of
// the server's current runtime (after a reload they differ).
func (s *session) forgetColumns() { s.srv.forgetColumns(s.runtime()) }

// afterDDLCommitted is schemaChanged again, for the end of a transaction
// that ran DDL: what was read of the schema in between by other backends
// (columns, statements' result types) was read without it.
func (s *session) afterDDLCommitted() {
	s.forgetColumns()
	s.srv.ddlGen.Add(1)
}

// forgetColumns clears the column cache of rt and of the current runtime.
func (s *Server) forgetColumns(rt *Runtime) {
	rt.columns.invalidate()
	if cur := s.Runtime(); cur != nil && cur != rt {
		cur.columns.invalidate()
	}
}

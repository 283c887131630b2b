package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// A multi-row INSERT whose rows belong to several shards (router.
// MergeSplitInsert) runs like any multi-shard write — fanout: atomically
// on every shard (BEGIN .. COMMIT, or two-phase commit), or on the open
// transaction's backends — except that every shard runs its own statement
// with only its rows. The command tags are summed. RETURNING rows are
// buffered (bounded by merge_memory) and sent in the order of the VALUES
// rows, as one Postgres returns them: ORMs match returned ids to their
// objects by position.

// runSplit runs a split INSERT; send writes one part's statement to its
// shard's backend.
func (s *session) runSplit(ctx context.Context, st *router.Statement, route router.Route,
	send func(c *pool.Conn, p *router.SplitPart)) (bool, error) {
	if err := s.checkMulti(st, route); err != nil {
		return true, s.sendError(err)
	}
	parts := route.Split.Parts
	return s.fanout(ctx, st, route, func(c *pool.Conn) {
		for i := range parts {
			if parts[i].Shard == c.Shard {
				send(c, &parts[i])
				return
			}
		}
	})
}

// splitBind is the Bind of one part of a split INSERT in the extended
// protocol: only the part's own parameters (p.Params), in the order of its
// renumbered $1..$k, with their format codes.
func splitBind(mb *multiBind, p *router.SplitPart) *pgproto3.Bind {
	b := &pgproto3.Bind{ResultFormatCodes: mb.resultFormats, Parameters: make([][]byte, len(p.Params))}
	if len(mb.formats) == 1 {
		b.ParameterFormatCodes = mb.formats
	} else if len(mb.formats) > 1 {
		b.ParameterFormatCodes = make([]int16, len(p.Params))
	}
	for i, n := range p.Params {
		if n <= len(mb.params) { // the router saw every $n bound (handleBind checks the count)
			b.Parameters[i] = mb.params[n-1]
		}
		if len(mb.formats) > 1 && n <= len(mb.formats) {
			b.ParameterFormatCodes[i] = mb.formats[n-1]
		}
	}
	return b
}

// splitOIDs are the parameter types of one part, from the client's Parse.
func splitOIDs(oids []uint32, p *router.SplitPart) []uint32 {
	if len(oids) == 0 {
		return nil
	}
	out := make([]uint32, len(p.Params))
	for i, n := range p.Params {
		if n <= len(oids) {
			out[i] = oids[n-1]
		}
	}
	return out
}

// wholeParamTypes returns the parameter types Postgres infers for the
// whole statement, asked of shard on a borrowed backend (Parse, Describe,
// Sync): a part sent with them types its parameters as the whole
// statement would, even where a parameter's first use is in another
// shard's rows.
func (s *session) wholeParamTypes(ctx context.Context, shard string, ps *prepared) ([]uint32, error) {
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return nil, err
	}
	p := s.runtime().Pools.Get(shard)
	c.Send(&pgproto3.Parse{Query: ps.query, ParameterOIDs: ps.paramOIDs})
	c.Send(&pgproto3.Describe{ObjectType: 'S'})
	c.Send(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		s.setActive(c, false)
		p.Discard(c)
		return nil, backendLost(shard, err)
	}
	var oids []uint32
	var failure error
	for {
		msg, err := c.Receive()
		if err != nil {
			s.setActive(c, false)
			p.Discard(c)
			return nil, backendLost(shard, err)
		}
		if n > 0 { // replies to the session settings acquire sent ahead
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				n--
			}
			continue
		}
		switch m := msg.(type) {
		case *pgproto3.ParameterDescription:
			oids = append([]uint32(nil), m.ParameterOIDs...)
		case *pgproto3.ErrorResponse:
			e := *m
			demoteFatal(&e)
			failure = pgconn.ErrorResponseToPgError(&e)
		case *pgproto3.ReadyForQuery:
			s.setActive(c, false)
			if m.TxStatus == 'I' {
				p.Release(c)
			} else {
				p.Discard(c)
			}
			return oids, failure
		}
	}
}

// allTyped reports whether the client typed every one of n parameters.
func allTyped(oids []uint32, n int) bool {
	if len(oids) < n {
		return false
	}
	for _, o := range oids[:n] {
		if o == 0 {
			return false
		}
	}
	return true
}

// untypedUnused returns a parameter (1-based) of the statement that no
// part references and the client gave no type, or 0.
func untypedUnused(split *router.InsertSplit, nparams int, oids []uint32) int {
	used := make([]bool, nparams+1)
	for _, p := range split.Parts {
		for _, n := range p.Params {
			if n <= nparams {
				used[n] = true
			}
		}
	}
	for n := 1; n <= nparams; n++ {
		if !used[n] && (n > len(oids) || oids[n-1] == 0) {
			return n
		}
	}
	return 0
}

// splitOrder buffers the RETURNING rows of a split INSERT per part, to
// send them in VALUES order once every shard has answered.
type splitOrder struct {
	split  *router.InsertSplit
	rows   [][]*pgproto3.DataRow // per part (= merger.idx)
	budget int64
	used   int64
}

// newMerger is the merger for route (see merger.handle).
func (s *session) newMerger(route router.Route) *merger {
	m := &merger{kind: route.Merge, explain: route.Explain, shards: route.Shards}
	if route.Split != nil && route.Split.Returning {
		m.order = &splitOrder{split: route.Split, rows: make([][]*pgproto3.DataRow, len(route.Split.Parts)),
			budget: s.runtime().Config.MergeMemory}
	}
	return m
}

// add keeps a copy of a shard's RETURNING row (the message is only valid
// until the next Receive).
func (o *splitOrder) add(s *session, m *merger, msg *pgproto3.DataRow) {
	if m.idx >= len(o.rows) {
		m.err = errorResponse(s.log, pgError("XX000", "RETURNING row from an unexpected shard of a split INSERT"))
		return
	}
	size := 0
	for _, v := range msg.Values {
		size += len(v)
	}
	o.used += int64(size + 24*len(msg.Values) + 64)
	if o.budget > 0 && o.used > o.budget {
		e := pgError("53200", "RETURNING rows of an INSERT split across shards exceed merge_memory (%d bytes)", o.budget)
		e.Hint = "insert fewer rows per statement, or raise merge_memory"
		m.err = errorResponse(s.log, e)
		o.rows = nil
		return
	}
	buf := make([]byte, 0, size)
	vals := make([][]byte, len(msg.Values))
	for i, v := range msg.Values {
		if v != nil {
			start := len(buf)
			buf = append(buf, v...)
			vals[i] = buf[start:len(buf):len(buf)]
		}
	}
	o.rows[m.idx] = append(o.rows[m.idx], &pgproto3.DataRow{Values: vals})
}

// check runs before the shards commit: every VALUES row must have come
// back as exactly one RETURNING row, or its place in the order is
// unknown (ON CONFLICT DO NOTHING skipped a row, or a trigger did); the
// statement then fails, and rolls back, rather than guess.
func (m *merger) checkSplit(s *session) {
	o := m.order
	if o == nil || m.err != nil {
		return
	}
	for i, p := range o.split.Parts {
		if len(o.rows[i]) != len(p.Rows) {
			m.err = errorResponse(s.log, errNotSupported(
				"drop RETURNING, or insert the rows of each shard in a statement of its own",
				"INSERT ... RETURNING split across shards returned %d rows for %d VALUES rows on shard %s (rows skipped by ON CONFLICT DO NOTHING or a trigger); their VALUES order is unknown",
				len(o.rows[i]), len(p.Rows), p.Shard))
			return
		}
	}
}

// sendRows sends the buffered RETURNING rows in VALUES order.
func (o *splitOrder) sendRows(s *session) error {
	next := make([]int, len(o.split.Parts))
	part := make([]int32, o.split.Rows)
	for i, p := range o.split.Parts {
		for _, j := range p.Rows {
			part[j] = int32(i)
		}
	}
	for _, i := range part {
		row := o.rows[i][next[i]]
		o.rows[i][next[i]] = nil
		next[i]++
		if err := s.sendOrGone(row); err != nil {
			return err
		}
	}
	return nil
}

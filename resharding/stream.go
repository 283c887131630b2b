package resharding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// streamer applies one source shard's slot to the destinations. It is
// owned by Job.Run's errgroup: it runs until its context ends or an error,
// and closes its replication and destination connections on return. Other
// goroutines read only its atomics.
type streamer struct {
	job  *Job
	src  *source
	rels map[uint32]*relation

	// pos is the WAL position up to which every change of the slot is
	// applied on the destinations (commit end LSNs, and keepalive WAL ends
	// seen outside a transaction).
	pos     atomic.Uint64
	applied atomic.Int64 // row changes applied

	inTx bool
	// pending holds, per destination, the changes of committed source
	// transactions not applied yet: consecutive transactions are applied
	// together (one round trip per destination) when the stream pauses or
	// maxPending changes accumulate; pendingEnd is the end LSN of the last
	// of them.
	pending    map[string]*pgconn.Batch
	npending   int
	pendingEnd uint64
	dests      map[string]*pgconn.PgConn

	// barrier, when set by the verification, makes the streamer stop
	// once every transaction committing before its LSN is applied.
	barrier atomic.Pointer[barrier]
}

// barrier holds a streamer at a WAL position: the source's state as of
// lsn (a snapshot exported there) is then what the destinations hold of
// it, so the two can be compared while writes go on. The barrier is set
// before the snapshot is taken (a stream must not run past a position not
// known yet), so lsn arrives later: until known is closed, the streamer
// waits at each transaction's start.
type barrier struct {
	known   chan struct{} // closed once lsn is set
	lsn     uint64        // written before known is closed
	reached chan struct{} // closed by the streamer when it holds
	release chan struct{} // closed by the verification
}

func newBarrier() *barrier {
	return &barrier{known: make(chan struct{}), reached: make(chan struct{}), release: make(chan struct{})}
}

// set gives the barrier its position; ^uint64(0) lets the stream go on.
func (b *barrier) set(lsn uint64) {
	b.lsn = lsn
	close(b.known)
}

// isKnown reports whether set was called.
func (b *barrier) isKnown() bool {
	select {
	case <-b.known:
		return true
	default:
		return false
	}
}

// holdAt blocks at b (already applied: every transaction before it) until
// the verification releases it or ctx ends.
func (s *streamer) holdAt(ctx context.Context, b *barrier) error {
	if err := s.flush(ctx); err != nil {
		return err
	}
	if !s.barrier.CompareAndSwap(b, nil) {
		return nil
	}
	close(b.reached)
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxPending bounds the changes held before they are applied (memory, and
// how much a destination transaction holds).
const maxPending = 2000

// flushWait is how long the stream may be quiet before pending changes
// are applied.
const flushWait = 2 * time.Millisecond

// relation is a pgoutput Relation message resolved against the job.
type relation struct {
	jt   *jobTable // nil: a table that does not move (cannot happen with our publication)
	info *tableInfo
	key  int   // shard key position in the tuple
	pk   []int // primary key positions
}

// statusInterval is how often the streamer reports its position to the
// source and asks for a keepalive (whose WAL end lets pos advance while
// nothing is written).
const statusInterval = 50 * time.Millisecond

func replicationConn(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["replication"] = "database"
	cc.RuntimeParams["application_name"] = "shardproxy-reshard"
	return pgconn.ConnectConfig(ctx, cc)
}

func (s *streamer) run(ctx context.Context) error {
	conn, err := replicationConn(ctx, shardDSN(s.job.cur, s.src.shard))
	if err != nil {
		return fmt.Errorf("shard %s: replication connection: %w", s.src.shard, err)
	}
	defer conn.Close(context.Background())
	defer func() {
		for _, d := range s.dests {
			d.Close(context.Background())
		}
	}()
	// LSN 0: continue from the slot's confirmed position.
	err = pglogrepl.StartReplication(ctx, conn, s.src.slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", s.src.pub)},
	})
	if err != nil {
		return fmt.Errorf("shard %s: start replication: %w", s.src.shard, err)
	}
	next := time.Now()
	for {
		if !time.Now().Before(next) {
			err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
				WALWritePosition: pglogrepl.LSN(s.pos.Load()), ReplyRequested: true})
			if err != nil {
				return fmt.Errorf("shard %s: status update: %w", s.src.shard, err)
			}
			next = time.Now().Add(statusInterval)
		}
		deadline := next
		if s.npending > 0 {
			deadline = time.Now().Add(flushWait)
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				if err := s.flush(ctx); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("shard %s: replication: %w", s.src.shard, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("shard %s: replication: %w", s.src.shard, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyData:
			if err := s.copyData(ctx, m.Data); err != nil {
				return err
			}
		}
	}
}

func (s *streamer) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return err
		}
		// The walsender has sent every transaction that committed before
		// its WAL end, and we applied them all (messages arrive in order).
		if !s.inTx {
			if err := s.flush(ctx); err != nil {
				return err
			}
			s.advance(uint64(ka.ServerWALEnd))
			if b := s.barrier.Load(); b != nil && b.isKnown() && s.pos.Load() >= b.lsn {
				return s.holdAt(ctx, b)
			}
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		m, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return fmt.Errorf("shard %s: decoding: %w", s.src.shard, err)
		}
		return s.message(ctx, m)
	}
	return nil
}

func (s *streamer) advance(lsn uint64) {
	if lsn > s.pos.Load() {
		s.pos.Store(lsn)
	}
}

func (s *streamer) message(ctx context.Context, m pglogrepl.Message) error {
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		return s.relation(m)
	case *pglogrepl.BeginMessage:
		// A transaction committing at or past a barrier is not in the
		// snapshot exported there: hold before applying it.
		if b := s.barrier.Load(); b != nil {
			select {
			case <-b.known:
			case <-ctx.Done():
				return ctx.Err()
			}
			if uint64(m.FinalLSN) >= b.lsn {
				if err := s.holdAt(ctx, b); err != nil {
					return err
				}
			}
		}
		s.inTx = true
	case *pglogrepl.CommitMessage:
		s.inTx = false
		s.pendingEnd = uint64(m.TransactionEndLSN)
		if s.npending == 0 {
			s.advance(s.pendingEnd)
		} else if s.npending >= maxPending {
			return s.flush(ctx)
		}
	case *pglogrepl.InsertMessage:
		return s.upsert(s.rels[m.RelationID], m.Tuple)
	case *pglogrepl.UpdateMessage:
		rel := s.rels[m.RelationID]
		if m.OldTuple != nil {
			// The primary key changed: the old row goes first.
			if err := s.delete(rel, m.OldTuple); err != nil {
				return err
			}
		}
		return s.upsert(rel, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return s.delete(s.rels[m.RelationID], m.OldTuple)
	case *pglogrepl.TruncateMessage:
		return fmt.Errorf("shard %s: a moving table was truncated during the job; abort the job and start it again", s.src.shard)
	}
	return nil
}

func (s *streamer) relation(m *pglogrepl.RelationMessage) error {
	name := m.RelationName
	if m.Namespace != "public" {
		name = m.Namespace + "." + name
	}
	jt := s.job.table(name)
	if jt == nil {
		return fmt.Errorf("shard %s: change of table %s, which the job does not move", s.src.shard, name)
	}
	info := *jt.info
	info.Cols = nil
	for _, c := range m.Columns {
		info.Cols = append(info.Cols, c.Name)
	}
	rel := &relation{jt: jt, info: &info, key: -1}
	for i, c := range info.Cols {
		if c == jt.key {
			rel.key = i
		}
	}
	for _, p := range info.PK {
		for i, c := range info.Cols {
			if c == p {
				rel.pk = append(rel.pk, i)
			}
		}
	}
	if (rel.key < 0 && !jt.ref) || len(rel.pk) != len(info.PK) {
		return fmt.Errorf("shard %s: table %s lost its shard key or primary key columns during the job", s.src.shard, name)
	}
	s.rels[m.RelationID] = rel
	return nil
}

// owners are the destinations of a tuple's change: none when its key
// stays, every new shard for a reference table.
func (s *streamer) owners(rel *relation, t *pglogrepl.TupleData) ([]string, error) {
	if rel == nil {
		return nil, errors.New("change before its relation message")
	}
	if rel.jt.ref {
		return rel.jt.refTo, nil
	}
	o, err := s.owner(rel, t)
	if err != nil || o == "" {
		return nil, err
	}
	return []string{o}, nil
}

// owner is the destination of a tuple, or "" when its key stays.
func (s *streamer) owner(rel *relation, t *pglogrepl.TupleData) (string, error) {
	c := t.Columns[rel.key]
	if c.DataType != pglogrepl.TupleDataTypeText {
		return "", fmt.Errorf("table %s: shard key not in the change (type %c)", rel.jt.name, c.DataType)
	}
	to, err := rel.jt.place.newOwner(context.Background(), string(c.Data), s.src.shard)
	if err != nil {
		return "", fmt.Errorf("table %s: key %q: %w", rel.jt.name, c.Data, err)
	}
	if to == s.src.shard {
		return "", nil
	}
	return to, nil
}

func (s *streamer) batch(dst string) *pgconn.Batch {
	s.npending++
	b := s.pending[dst]
	if b == nil {
		b = &pgconn.Batch{}
		s.pending[dst] = b
	}
	return b
}

func (s *streamer) upsert(rel *relation, t *pglogrepl.TupleData) error {
	dsts, err := s.owners(rel, t)
	if err != nil {
		return err
	}
	for _, dst := range dsts {
		s.upsertOn(dst, rel, t)
	}
	return nil
}

func (s *streamer) upsertOn(dst string, rel *relation, t *pglogrepl.TupleData) {
	vals := make([][]byte, len(t.Columns))
	toasted := false
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeText:
			vals[i] = c.Data
		case pglogrepl.TupleDataTypeToast:
			toasted = true
		}
	}
	if !toasted {
		s.batch(dst).ExecParams(rel.info.upsertSQL(), vals, nil, nil, nil)
		return
	}
	// An unchanged TOASTed value is not sent: update only what was, by
	// primary key. The row exists on dst: it was copied or inserted before.
	var set []string
	var args [][]byte
	for i, c := range t.Columns {
		if c.DataType != pglogrepl.TupleDataTypeToast {
			args = append(args, vals[i])
			set = append(set, fmt.Sprintf("%s = $%d", quoteIdent(rel.info.Cols[i]), len(args)))
		}
	}
	var where []string
	for _, i := range rel.pk {
		args = append(args, vals[i])
		where = append(where, fmt.Sprintf("%s = $%d", quoteIdent(rel.info.Cols[i]), len(args)))
	}
	q := fmt.Sprintf("UPDATE %s SET %s WHERE %s", rel.info.Ident, strings.Join(set, ", "), strings.Join(where, " AND "))
	s.batch(dst).ExecParams(q, args, nil, nil, nil)
}

func (s *streamer) delete(rel *relation, t *pglogrepl.TupleData) error {
	dsts, err := s.owners(rel, t)
	if err != nil {
		return err
	}
	args := make([][]byte, len(rel.pk))
	for i, p := range rel.pk {
		args[i] = t.Columns[p].Data
	}
	for _, dst := range dsts {
		s.batch(dst).ExecParams(rel.info.deleteSQL(), args, nil, nil, nil)
	}
	return nil
}

// flush applies the pending changes of committed source transactions:
// one batch per destination, which runs as one implicit transaction (a
// single Sync). Only complete source transactions are pending (inTx is
// false whenever flush runs with changes), so pos can move past them.
func (s *streamer) flush(ctx context.Context) error {
	if s.npending == 0 || s.inTx {
		return nil
	}
	for dst, b := range s.pending {
		conn := s.dests[dst]
		if conn == nil {
			c, err := pgconn.Connect(ctx, shardDSN(s.job.next, dst))
			if err != nil {
				return fmt.Errorf("shard %s: %w", dst, err)
			}
			conn, s.dests[dst] = c, c
		}
		if _, err := conn.ExecBatch(ctx, b).ReadAll(); err != nil {
			return fmt.Errorf("shard %s: applying changes from %s: %w", dst, s.src.shard, err)
		}
		delete(s.pending, dst)
	}
	s.applied.Add(int64(s.npending))
	s.npending = 0
	s.advance(s.pendingEnd)
	return nil
}

// currentLSN is the source's WAL flush position: every committed
// transaction ends at or before it.
func currentLSN(ctx context.Context, c *pgx.Conn) (uint64, error) {
	var l pglogrepl.LSN
	err := c.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()").Scan(&l)
	return uint64(l), err
}

package proxy

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// A transaction that spans shards often writes on one of them only: it
// gathered a count over every shard, or read a row elsewhere, before or
// after its write. Its other legs wrote nothing, so there is nothing of
// theirs to commit atomically, and preparing them would cost a prepared
// transaction's WAL flush and state file on each, twice. Only the legs
// that changed something take part in the commit: several with two-phase
// commit, one with a plain COMMIT (as Citus does); the others commit once
// the writers did, so that a NOTIFY sent from one of them is delivered
// only if the transaction committed.
//
// Which legs changed something: those a statement that may change
// something ran on (session.stmtWrites, noted by txn.touch) did, without
// asking; the others are asked whether their transaction was given an xid,
// which Postgres does on the first change (a row written or locked, DDL,
// a sequence logging ahead), so that a write the proxy did not see coming
// (a function's) is never committed alone. The question costs one round
// trip, to those legs at once, and only when there are such legs.
// SERIALIZABLE transactions prepare every leg (endTx): a reader's PREPARE
// is where its serialization failure surfaces before anything commits.

// xidQuery tells whether the transaction on a backend has no xid yet, that
// is, changed nothing. Schema-qualified: a user's function of that name
// earlier on the search_path must not answer instead.
const xidQuery = "SELECT pg_catalog.txid_current_if_assigned() IS NULL"

// mayChange reports whether st may change something on the shards it runs
// on: commitSpanning then counts them as writers without asking.
func mayChange(st *router.Statement) bool {
	switch st.Kind {
	case router.KindSelect:
		return st.MayWrite
	case router.KindBegin, router.KindCommit, router.KindRollback, router.KindSavepoint, router.KindSet,
		router.KindShardHintSet, router.KindShardHintReset, router.KindShow, router.KindListen, router.KindEmpty:
		return false
	}
	return true
}

// commitSpanning commits the transaction open on every backend of conns
// (its legs), and gives the backends back to their pools.
func (s *session) commitSpanning(ctx context.Context, conns []*pool.Conn) error {
	var unsure []*pool.Conn
	for _, c := range conns {
		if !slices.Contains(s.tx.wrote, c.Shard) {
			unsure = append(unsure, c)
		}
	}
	readOnly, err := askReadOnly(unsure)
	if err != nil {
		s.rollbackLegs(conns)
		twoPCStats.aborted.Add(1)
		return err
	}
	var writers, readers []*pool.Conn
	for _, c := range conns {
		if i := slices.Index(unsure, c); i >= 0 && readOnly[i] {
			readers = append(readers, c)
		} else {
			writers = append(writers, c)
		}
	}
	switch len(writers) {
	case 0:
	case 1:
		err = s.commitOne(writers[0])
	default:
		err = s.commitLegs(ctx, writers)
	}
	if err != nil {
		s.rollbackLegs(readers)
		return err
	}
	if len(writers) < 2 {
		twoPCStats.onePhase.Add(1)
	}
	// What the writers did is committed: a reader that cannot be told to
	// commit (its connection broke) loses nothing, and the client's
	// COMMIT succeeded.
	if err := s.commitReadOnly(ctx, readers); err != nil {
		s.log.Warn("committing a leg that wrote nothing failed; the transaction's writes are committed", "err", err)
	}
	return nil
}

// askReadOnly sends xidQuery to every backend of conns at once and reads
// the answers: readOnly[i] is whether conns[i]'s transaction changed
// nothing. An error is the first a leg reported (or lost); every backend
// has then still been read up to its ReadyForQuery, unless lost.
func askReadOnly(conns []*pool.Conn) (readOnly []bool, failure error) {
	readOnly = make([]bool, len(conns))
	sent := make([]bool, len(conns))
	for i, c := range conns {
		c.Send(&pgproto3.Query{String: xidQuery})
		if err := c.Flush(); err != nil {
			failure = cmp(failure, backendLost(c.Shard, err))
			continue
		}
		sent[i] = true
	}
	for i, c := range conns {
		if !sent[i] {
			continue
		}
		v, err := readShow(c)
		switch {
		case err == nil:
			readOnly[i] = v == "t"
		case isPgErr(err):
			failure = cmp(failure, err)
		default:
			failure = cmp(failure, backendLost(c.Shard, err))
		}
	}
	return readOnly, failure
}

// commitOne commits the transaction's only writing leg with a plain
// COMMIT, and gives the backend back to its pool. If the connection breaks
// before the reply, the outcome is unknown, as it is for a client of
// Postgres itself: 08007 says so.
func (s *session) commitOne(c *pool.Conn) error {
	c.Send(&pgproto3.Query{String: "COMMIT"})
	err := c.Flush()
	var status byte
	if err == nil {
		status, err = readResult(c)
	}
	s.putBack(c, status == 'I' && (err == nil || isPgErr(err)))
	switch {
	case err == nil:
		return nil
	case isPgErr(err):
		return err // a deferred constraint, say: the shard rolled back
	default:
		e := pgError("08007", "shardproxy: lost connection to shard %s during COMMIT; the transaction may or may not have committed there", c.Shard)
		e.Detail = err.Error()
		return e
	}
}

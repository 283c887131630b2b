package proxy

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"

	"github.com/shardproxy/shardproxy/router"
)

// A REPEATABLE READ transaction on one Postgres server reads one snapshot
// of the whole database, taken at its first query. Across shards each
// shard takes its own snapshot when the transaction first runs a query
// there; taken at different moments, they could see a cross-shard commit
// on one shard and not on another, which is why txn.touch keeps such a
// transaction to one shard.
//
// A REPEATABLE READ READ ONLY transaction (pg_dump's, a report's) is the
// exception: at its first query it takes its snapshot on every shard of
// the map at once, inside one read window of the commit gate
// (visibility.go), so that no cross-shard commit of this proxy is half
// seen, and it may then read every shard for its whole length, as one
// server's transaction reads every table. Being read-only, it commits
// with a plain COMMIT on each shard, without two-phase commit (but, as
// any transaction that spans shards, only with two_phase_commit on).
//
// Read-write REPEATABLE READ transactions keep the one-shard rule: they
// are typically keyed OLTP work on one shard, and taking a snapshot on
// every shard for each would hold a connection of every pool for each.
// SERIALIZABLE keeps it too: one snapshot does not make the shards'
// serial orders one.

// noteStatement records what the statement about to be routed does, for
// the transaction's bookkeeping when it attaches a shard (txn.touch,
// session.snapshotEverywhere).
func (s *session) noteStatement(st *router.Statement) {
	s.stmtTouches = st.TouchesTables()
	s.stmtSnapshot = takesSnapshot(st.Kind)
	s.stmtWrites = mayChange(st)
	s.stmtHides = st.HidesSettings
	if st.HidesSettings {
		s.forgetSettings()
	}
}

// beforeSnapshot runs before a statement is sent to shard in a
// transaction block; takes: it takes a snapshot (session.stmtSnapshot).
// For the transaction's first such statement it takes the snapshots
// everywhere when the transaction is REPEATABLE READ READ ONLY. canSync:
// the attached backend (if any) has no replies pending, so the proxy may
// run statements of its own on it first; if not, the transaction keeps
// the one-shard rule.
func (s *session) beforeSnapshot(ctx context.Context, shard string, takes, canSync bool) error {
	if s.txStatus == 'I' || !takes || s.tx.snapshotTaken || s.tx.failed {
		// (A failed transaction runs nothing more; the proxy must not
		// run statements of its own on its aborted backend.)
		return nil
	}
	s.tx.snapshotTaken = true
	if !canSync || !s.mayRepeatableRead() {
		return nil
	}
	return s.snapshotEverywhere(ctx, shard)
}

// mayRepeatableRead reports whether the transaction may be REPEATABLE
// READ, from what the client said: BEGIN's options, SET TRANSACTION, the
// session's default. The shard decides (snapshotEverywhere asks it); this
// only spares the question for the other transactions. A level set only
// on the shards (ALTER ROLE ... SET default_transaction_isolation) is not
// seen here: such a transaction keeps the one-shard rule.
func (s *session) mayRepeatableRead() bool {
	says := func(text string) bool { return strings.Contains(strings.ToLower(text), "repeatable") }
	if says(s.pendingBegin) || says(s.tx.begin) || says(s.params["default_transaction_isolation"]) {
		return true
	}
	for _, q := range s.tx.replay {
		if says(q) {
			return true
		}
	}
	return false
}

// snapshotEverywhere opens the transaction on every shard of the map and,
// if it is REPEATABLE READ READ ONLY, takes its snapshot on each inside one
// read window. shard is where the statement at hand goes; its backend is
// the attached one on return.
func (s *session) snapshotEverywhere(ctx context.Context, shard string) error {
	rt := s.runtime()
	shards := rt.Config.ShardNames()
	if len(shards) < 2 || !rt.Config.TwoPhaseCommit {
		return nil // no transaction spans shards (errCrossShard)
	}
	// The first leg: the transaction's shard so far, or the statement's.
	first := s.attached
	if first == nil {
		c, err := s.attach(ctx, shard)
		if err != nil {
			return err
		}
		first = c
	}
	if err := s.finishPrelude(); err != nil {
		return err
	}
	first.Send(&pgproto3.Query{String: "SHOW transaction_isolation"})
	first.Send(&pgproto3.Query{String: "SHOW transaction_read_only"})
	if err := first.Flush(); err != nil {
		s.dropAttached()
		return backendLost(first.Shard, err)
	}
	var setting [2]string
	for i := range setting {
		v, err := readShow(first)
		if err != nil {
			if !isPgErr(err) {
				s.dropAttached()
				return backendLost(first.Shard, err)
			}
			return err
		}
		setting[i] = v
	}
	if setting[0] != "repeatable read" || setting[1] != "on" {
		return nil
	}

	// Every other shard joins now, before any of them takes a snapshot.
	s.tx.consistent = true
	touches := s.stmtTouches
	s.stmtTouches = false // joining is not reading there (txn.touch)
	for _, sh := range shards {
		if sh == first.Shard {
			continue
		}
		if _, err := s.join(ctx, sh); err != nil {
			s.stmtTouches = touches
			return err
		}
	}
	s.stmtTouches = touches
	s.attached = first

	gate := &s.srv.commits
	w, err := gate.open(ctx, shards)
	if err != nil {
		return err
	}
	for _, c := range s.tx.legs {
		c.Send(&pgproto3.Query{String: "SELECT 1"}) // takes the transaction's snapshot
		if err == nil {
			if ferr := c.Flush(); ferr != nil {
				err = backendLost(c.Shard, ferr)
			}
		}
	}
	for _, c := range s.tx.legs {
		if err != nil {
			break
		}
		if _, rerr := readResult(c); rerr != nil {
			err = rerr
			if !isPgErr(rerr) {
				err = backendLost(c.Shard, rerr)
			}
		}
	}
	tainted := gate.close(w)
	switch {
	case err != nil:
		s.tx.failed = true // a leg may be unreadable: only ROLLBACK is left
		return err
	case tainted:
		return pgError("40001", "could not serialize access: a cross-shard commit overlapped the transaction's snapshots on shards %s",
			strings.Join(shards, ", "))
	}
	return nil
}

// commitReadOnly commits a REPEATABLE READ READ ONLY transaction that took
// its snapshots everywhere (snapshotEverywhere) on each of its backends,
// conns, and gives them back to their pools. It wrote nothing, so there
// is nothing to commit atomically: no two-phase commit.
func (s *session) commitReadOnly(_ context.Context, conns []*pool.Conn) error {
	for _, c := range conns {
		c.Send(&pgproto3.Query{String: "COMMIT"})
	}
	var failure error
	for _, c := range conns {
		var status byte
		err := c.Flush()
		if err == nil {
			status, err = readResult(c)
		}
		if err != nil && !isPgErr(err) {
			err = backendLost(c.Shard, err)
		}
		if failure == nil {
			failure = err
		}
		s.putBack(c, status == 'I' && (err == nil || isPgErr(err)))
	}
	return failure
}

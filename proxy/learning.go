package proxy

import (
	"context"

	"github.com/shardproxy/shardproxy/router"
)

// learnState is the session's side of router.learning: the router learns
// what DDL creates and drops when it analyses it, before the shards run
// it, and holds what was created until its shards' catalogs show it. Only
// the session knows when the DDL's transaction ends, and whether it
// committed.
type learnState struct {
	// router is the one told LearningOpened for the open transaction, or
	// nil: a statement that learned ran in it (router.Statement.Learns).
	router *router.Router
	// check: read the shards' catalogs when the transaction ends. What the
	// router learned may be wrong (the transaction failed or rolled back
	// to a savepoint or wholly: a DROP VIEW that did not happen left the
	// view unknown, to be read as an unmapped table on the default shard)
	// or incomplete (a view made with *, whose columns only the catalog
	// spells out).
	check bool
}

// noteLearning is called for every statement the session is about to run
// (its analysis already done).
func (s *session) noteLearning(st *router.Statement) {
	switch {
	case st.Learns:
		if s.learn.router == nil {
			s.learn.router = s.runtime().Router
			s.learn.router.LearningOpened()
		}
		s.learn.check = s.learn.check || st.CatalogAfter
	case s.learn.router != nil && (st.Kind == router.KindRollback || st.Kind == router.KindSavepoint && st.Savepoint == 'B'):
		s.learn.check = true
	}
}

// learningFailed notes an error sent to the client while a transaction
// that learned is open.
func (s *session) learningFailed() {
	if s.learn.router != nil {
		s.learn.check = true
	}
}

// endLearning runs when no transaction is open any more (a ReadyForQuery
// 'I' with nothing held, or the client's end): it closes what
// noteLearning opened and, when the session's next statement must see the
// shards as they are now, reads their catalogs before it reads that
// statement. Every shard is checked at once, as the health check does,
// for at most maxCheckTimeout.
func (s *session) endLearning(ctx context.Context) {
	if s.learn.router == nil {
		return
	}
	r, check := s.learn.router, s.learn.check
	s.learn = learnState{}
	r.LearningClosed()
	if check && ctx.Err() == nil {
		rt := s.srv.Runtime()
		s.srv.checkShards(ctx, rt, min(rt.Config.HealthCheckInterval(), maxCheckTimeout))
	}
}

// endLearningGone is endLearning for a session that ends (its client
// gone, or a protocol error) in a transaction: that rolls back, so the
// catalogs are read whatever it did, unless the server is shutting down
// (ctx done).
func (s *session) endLearningGone(ctx context.Context) {
	if s.learn.router == nil {
		return
	}
	s.learn.check = true
	s.endLearning(ctx)
}

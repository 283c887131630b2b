package proxy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// A client's own two-phase commit: PREPARE TRANSACTION, then COMMIT
// PREPARED or ROLLBACK PREPARED, typically from another session, through
// another proxy, or after this one restarted (what transaction managers
// do when they recover).
//
// PREPARE TRANSACTION ends a transaction on the one shard that holds it
// (one that spans shards is refused, txStatement) and leaves it there
// under its gid. The proxy keeps no record of where: a record in memory
// would die with the process and be unknown to sibling proxies. COMMIT
// and ROLLBACK PREPARED outside a transaction therefore ask every shard's
// pg_prepared_xacts (the database filter matters: a prepared transaction
// is finished from the database it was prepared in) and run where the
// gid is:
//   - on no shard: on the default shard, whose 42704 is Postgres' answer;
//   - on one: there, even if another shard could not be asked;
//   - on several (a gid is unique per Postgres server, and each shard is
//     one: clients reused a gid on different shards): refused with 0A000
//     and a hint to name the shard. Running it on each would finish, under
//     one command tag, transactions the client prepared apart and may
//     mean to treat apart;
//   - on none of those that answered, while a shard could not be asked:
//     that shard's error. The gid may be there, and 42704 would tell a
//     transaction manager to forget a transaction that still holds locks.
//
// A shard hint (/* shard: s1 */ or SET shardproxy.shard) skips the
// look-up (router.Route). Inside a transaction block Postgres refuses
// them (25001): the transaction's shard says so itself, and where no
// single shard holds the block the proxy does (txStatement,
// implicitStatement). In a pipeline after other statements the attached
// shard answers, as Postgres does ("cannot be executed within a
// pipeline").
//
// gids that start with gidPrefix belong to the proxy's own two-phase
// commit (txnlog.go): its recovery would roll back a client's transaction
// prepared under one after the grace period, and a client's COMMIT or
// ROLLBACK PREPARED of one would bypass the decision log. Both are
// refused (reservedGID).

// reservedGID refuses a client's PREPARE TRANSACTION, COMMIT PREPARED or
// ROLLBACK PREPARED whose gid is in the proxy's own namespace.
func reservedGID(st *router.Statement) error {
	if st.TwoPhase == 0 || !strings.HasPrefix(st.GID, gidPrefix) {
		return nil
	}
	e := pgError("42939", "transaction identifier %q is reserved for shardproxy's two-phase commit", st.GID)
	if st.TwoPhase == 'P' {
		e.Hint = "choose a transaction identifier that does not start with " + quoteLiteral(gidPrefix)
	} else {
		e.Hint = "shardproxy's recovery finishes its own prepared transactions from its decision log (SHOW TRANSACTIONS in the admin console lists those in doubt); to finish one by hand, connect to the shard itself"
	}
	return e
}

// errInBlock is Postgres' error for COMMIT or ROLLBACK PREPARED inside a
// transaction block (xact.c, PreventInTransactionBlock).
func errInBlock(st *router.Statement) error {
	return pgError("25001", "%s cannot run inside a transaction block", preparedVerb(st))
}

// errInPipeline is the same, in a pipeline after other statements.
func errInPipeline(st *router.Statement) error {
	return pgError("25001", "%s cannot be executed within a pipeline", preparedVerb(st))
}

func preparedVerb(st *router.Statement) string {
	if st.TwoPhase == 'R' {
		return "ROLLBACK PREPARED"
	}
	return "COMMIT PREPARED"
}

// lookupPrepared reports whether st is a COMMIT or ROLLBACK PREPARED whose
// shard the proxy must find (preparedRoute): route is the router's and
// names no shard (no hint), and the session is outside any transaction
// and pipeline, where Postgres runs it.
func (s *session) lookupPrepared(st *router.Statement, route router.Route) bool {
	return st.FinishesPrepared() && route.Kind == router.RouteAny &&
		s.txStatus == 'I' && !s.implicit && s.attached == nil
}

// preparedRoute is where COMMIT or ROLLBACK PREPARED gid runs (see the
// top of this file).
func (s *session) preparedRoute(ctx context.Context, gid string) (router.Route, error) {
	rt := s.runtime()
	shards := make([]string, len(rt.Config.Shards))
	for i, sh := range rt.Config.Shards {
		shards[i] = sh.Name
	}
	has := make([]bool, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, name := range shards {
		wg.Go(func() { has[i], errs[i] = holdsPrepared(ctx, rt.Pools.Get(name), gid) })
	}
	wg.Wait()
	var found []string
	var lost error
	for i, name := range shards {
		switch {
		case errs[i] != nil:
			s.log.Warn("looking up a prepared transaction failed", "shard", name, "err", errs[i])
			lost = cmp(lost, errs[i])
		case has[i]:
			found = append(found, name)
		}
	}
	switch {
	case len(found) == 1:
		return router.Route{Kind: router.RouteSingle, Shards: found, Reason: "prepared transaction " + quoteLiteral(gid) + " -> " + found[0]}, nil
	case len(found) > 1:
		return router.Route{}, errNotSupported("name the shard of the one to finish: /* shard: "+found[0]+" */ COMMIT PREPARED "+quoteLiteral(gid),
			"prepared transaction %s exists on several shards (%s)", quoteLiteral(gid), strings.Join(found, ", "))
	case lost != nil:
		return router.Route{}, lost
	}
	// Nowhere: the default shard gives Postgres' own error.
	return router.Route{Kind: router.RouteSingle, Shards: []string{rt.Config.DefaultShard},
		Reason: "prepared transaction " + quoteLiteral(gid) + " on no shard -> default shard"}, nil
}

// holdsPrepared asks one shard whether a transaction is prepared there
// under gid, in the shard's database. The gid is a parameter, immune to
// whatever standard_conforming_strings a pooled backend carries.
func holdsPrepared(ctx context.Context, p *pool.Pool, gid string) (bool, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	c.Send(&pgproto3.Parse{Query: "SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = $1 AND database = pg_catalog.current_database()"})
	c.Send(&pgproto3.Bind{Parameters: [][]byte{[]byte(gid)}})
	c.Send(&pgproto3.Execute{})
	c.Send(&pgproto3.Sync{})
	has, err := false, c.Flush()
	var failure error
	for err == nil {
		var msg pgproto3.BackendMessage
		if msg, err = c.Receive(); err != nil {
			break
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			has = true
		case *pgproto3.ErrorResponse:
			failure = cmp(failure, error(pgErrorOf(m)))
		case *pgproto3.ReadyForQuery:
			if stop() {
				p.Release(c)
			} else {
				p.Discard(c) // its deadline is set
			}
			return has, failure
		}
	}
	stop()
	p.Discard(c)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return false, err
	}
	return false, backendLost(p.Name(), err)
}

// clientPrepared lists the transactions prepared in the shard's database
// under gids other than the proxy's own, for SHOW TRANSACTIONS: gid,
// owner, and when it was prepared.
func clientPrepared(ctx context.Context, p *pool.Pool) ([][]string, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	rows, err := queryRows(c, `SELECT gid, owner, prepared::text FROM pg_catalog.pg_prepared_xacts
		WHERE database = pg_catalog.current_database() AND NOT starts_with(gid, `+quoteLiteral(gidPrefix)+`) ORDER BY prepared`)
	var pgErr *pgconn.PgError
	if stop() && (err == nil || errors.As(err, &pgErr)) {
		p.Release(c)
	} else {
		p.Discard(c)
	}
	return rows, err
}

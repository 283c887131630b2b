package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// Aside portals: the extended protocol's twin of the simple protocol's
// table-less reads inside BEGIN (session.execRoute, runEphemeral).
//
// BEGIN is deferred until a statement names a shard. A statement that
// reads no table and changes nothing (router.Statement.Aside: SELECT 1,
// SHOW, SELECT current_setting(...)) must not pin the transaction to the
// default shard before then: without two-phase commit the transaction's
// first keyed statement would be refused for another shard, and with it
// the transaction would span two shards for nothing. Such a statement runs
// beside the transaction on a backend borrowed for it, inside a copy of
// the transaction's SET LOCAL and savepoints that is rolled back, so that
// SHOW sees what SET LOCAL set. Everything else (a user function, DO,
// nextval(), txid_current()) runs in the transaction, as does
// set_config(..., true), whose parameters could not be replayed on the
// shard the transaction lands on: it is bound on the default shard.
//
// An aside portal is bound in the proxy (copyBind) and runs at Execute;
// its Describe is answered with the execution when Execute follows, else
// by the default shard (deferDescribe). An Execute with a row limit, or
// one after a shard joined the transaction, binds it on the transaction's
// shard instead (pinAside): a borrowed backend cannot keep a suspended
// portal, and a shard that holds the transaction can answer.

// runsAside reports whether a table-less statement st runs beside the
// transaction now.
func (s *session) runsAside(st *router.Statement) bool {
	return s.attached == nil && !s.multiLeg() && s.pendingBegin != "" && st.Aside && !st.LocalConfig
}

// executeAside runs aside portal p on a backend of the default shard
// borrowed for it, and relays its reply.
func (s *session) executeAside(ctx context.Context, p *portal) error {
	describe := s.ext.describeInExecute
	s.ext.describeInExecute = false
	if err := s.drain(); err != nil {
		return err
	}
	if s.ext.clientFailed {
		s.ext.skip = true
		return nil
	}
	shard := s.runtime().Config.DefaultShard
	mark := s.statStart()
	failed, err := s.runEphemeral(ctx, shard, func(c *pool.Conn) {
		c.Send(&pgproto3.Parse{Query: p.stmt.query, ParameterOIDs: p.stmt.paramOIDs})
		c.Send(p.aside.bindMessage())
		if describe {
			c.Send(&pgproto3.Describe{ObjectType: 'P'})
		}
		c.Send(&pgproto3.Execute{})
		c.Send(&pgproto3.Sync{})
	})
	s.statEnd(mark, shard, p.kind, failed)
	if err == nil && failed {
		// The client has the error; it fails the transaction, as any
		// error in a transaction block does on Postgres.
		s.ext.skip, s.ext.clientFailed = true, true
		s.failTransaction()
	}
	return err
}

// pinAside binds aside portal p, named name, on the transaction's shard
// (the default one if none holds it yet), as a portal for a table-less
// statement was bound before aside portals; Execute then runs it there.
func (s *session) pinAside(ctx context.Context, p *portal, name string) error {
	shard := s.runtime().Config.DefaultShard
	if s.attached != nil {
		shard = s.attached.Shard
	}
	readOnly := p.stmt.st.Kind == router.KindSelect && !p.stmt.st.MayWrite || p.stmt.st.Kind == router.KindShow
	s.noteStatement(p.stmt.st)
	c, err := s.extAttach(ctx, shard, readOnly)
	if err != nil {
		return s.extFail(err)
	}
	b := p.aside.bindMessage()
	b.DestinationPortal, b.PreparedStatement = name, s.ensurePrepared(c, p.stmt)
	c.Send(b)
	s.pushRemote('B', c).swallow = true
	if s.ext.describeInExecute {
		s.ext.describeInExecute = false
		s.sendDescribe(c, 'P', name)
		s.pushRemote('D', c)
	}
	p.conn, p.aside = c, nil
	return nil
}

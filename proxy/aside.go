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
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return s.extFail(err)
	}
	wrapped := len(s.tx.replay) > 0
	if wrapped {
		c.Send(&pgproto3.Query{String: s.pendingBegin})
		for _, q := range s.tx.replay {
			c.Send(&pgproto3.Query{String: q})
		}
		n += 1 + len(s.tx.replay)
	}
	c.Send(&pgproto3.Parse{Query: p.stmt.query, ParameterOIDs: p.stmt.paramOIDs})
	c.Send(p.aside.bindMessage())
	if describe {
		c.Send(&pgproto3.Describe{ObjectType: 'P'})
	}
	c.Send(&pgproto3.Execute{})
	c.Send(&pgproto3.Sync{})
	if wrapped {
		c.Send(&pgproto3.Query{String: "ROLLBACK"})
	}
	mark := s.statStart()
	status, failed, err := s.relayAside(c, n)
	if wrapped && err == nil {
		status, err = readResult(c)
		if isPgErr(err) {
			err = nil
		}
	}
	s.statEnd(mark, shard, p.kind, failed)
	s.setActive(c, false)
	if err != nil || status != 'I' {
		s.runtime().Pools.Get(shard).Discard(c)
	} else {
		s.runtime().Pools.Get(shard).Release(c)
	}
	switch {
	case err == errClientGone:
		return err
	case err != nil:
		return s.extFail(backendLost(shard, err))
	case failed:
		// The client has the shard's error; it fails the transaction,
		// as any error in a transaction block does on Postgres.
		s.ext.skip, s.ext.clientFailed = true, true
		s.failTransaction()
	}
	return nil
}

// relayAside flushes c and relays its reply to an aside portal, after
// the n replies the proxy's own statements get: everything but
// ParseComplete and BindComplete (the client had its BindComplete at
// Bind) and ReadyForQuery, whose status it returns.
func (s *session) relayAside(c *pool.Conn, n int) (status byte, failed bool, err error) {
	if err := c.Flush(); err != nil {
		return 0, false, err
	}
	s.watch.start()
	defer s.watch.stop()
	if err := s.skipPrelude(c, n); err != nil {
		return 0, false, err
	}
	for {
		typ, raw, err := c.ReceiveRaw()
		if err != nil {
			return 0, failed, err
		}
		switch typ {
		case '1', '2':
			continue
		case 'Z':
			return raw[5], failed, nil
		case 'E':
			msg, err := c.Decode(raw)
			if err != nil {
				return 0, failed, err
			}
			failed = true
			e := msg.(*pgproto3.ErrorResponse)
			demoteFatal(e)
			if err := s.send(e); err != nil {
				return 0, failed, errClientGone
			}
			continue
		}
		if err := s.sendRaw(raw); err != nil {
			return 0, failed, errClientGone
		}
	}
}

// pinAside binds aside portal p, named name, on the transaction's shard
// (the default one if none holds it yet), as a portal for a table-less
// statement was bound before aside portals; Execute then runs it there.
func (s *session) pinAside(ctx context.Context, p *portal, name string) error {
	shard := s.runtime().Config.DefaultShard
	if s.attached != nil {
		shard = s.attached.Shard
	}
	readOnly := p.stmt.st.Kind == router.KindSelect || p.stmt.st.Kind == router.KindShow
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

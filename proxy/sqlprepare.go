package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/router"
)

// execSQLPrepared serves SQL PREPARE and EXECUTE (router/sqlprepare.go):
// the statement lives in the session, and EXECUTE runs its text with the
// arguments in place of its parameters, routed as any statement.
func (s *session) execSQLPrepared(ctx context.Context, st *router.Statement, p router.QueryPart) (bool, error) {
	if st.SQLExecute {
		ex, err := router.ParseExecute(p.Text)
		if err != nil {
			return true, s.sendError(err)
		}
		name := ex.Name
		ps := s.ext.sql[name]
		if ps == nil {
			return true, s.sendError(pgError("26000", "prepared statement %q does not exist", name))
		}
		// Postgres resolves the statement's names again under a new
		// search_path (plancache.c, RevalidateCachedQuery), as its text run
		// now does, but holds it to the result type it fixed at PREPARE.
		// The proxy learns that type at the first EXECUTE (checkSQLShape),
		// under the search_path it had then (sqlPath).
		path := s.params["search_path"]
		pathChanged := s.ext.sqlPath[name] != path
		if pathChanged && s.ext.sqlShape[name] == nil {
			return true, s.sendError(errNotSupported("EXECUTE it once before changing search_path, or PREPARE it again (DEALLOCATE, then PREPARE)",
				"search_path changed before the first EXECUTE of prepared statement %q: shardproxy cannot tell whether its result type changed", name))
		}
		text, pos, err := ps.Bind(ex)
		if err != nil {
			return true, s.sendError(err)
		}
		if err := s.checkSQLShape(ctx, name, text, pathChanged); err != nil {
			return true, s.sendError(err)
		}
		if !s.ddlInTx { // (checkSQLShape checked under path)
			s.ext.sqlPath[name] = path
		}
		s.errPosition = pos // errors point into the client's EXECUTE (session.send)
		defer func() { s.errPosition = nil }()
		parts, err := s.runtime().Router.ParseQuery(text)
		if err != nil {
			return true, s.sendError(err)
		}
		if len(parts) != 1 {
			return true, s.sendError(pgError("XX000", "shardproxy: prepared statement %q is not one statement", name))
		}
		if !ex.NoData || s.holdTag {
			return s.execPart(ctx, parts[0])
		}
		// The bound CREATE TABLE AS ... WITH NO DATA answers CREATE TABLE
		// AS; Postgres answers its EXECUTE form with SELECT 0.
		s.holdTag = true
		failed, err := s.execPart(ctx, parts[0])
		s.holdTag = false
		tag := string(s.heldTag)
		s.heldTag = s.heldTag[:0]
		if err != nil || tag == "" {
			return failed, err
		}
		if tag == "CREATE TABLE AS" {
			tag = "SELECT 0"
		}
		return failed, s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	}
	ps, err := router.ParsePrepare(p.Text)
	if err != nil {
		return true, s.sendError(err)
	}
	if _, dup := s.ext.stmts[ps.Name]; dup || s.ext.sql[ps.Name] != nil {
		return true, s.sendError(pgError("42P05", "prepared statement %q already exists", ps.Name))
	}
	types, err := s.checkPrepare(ctx, ps)
	if err != nil {
		return true, s.sendError(err)
	}
	ps.SetTypes(types)
	s.ext.sql[ps.Name] = ps
	delete(s.ext.sqlShape, ps.Name)
	s.ext.sqlPath[ps.Name] = s.params["search_path"]
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("PREPARE")})
}

// checkPrepare prepares ps on a connection of the default shard borrowed
// for that alone, outside the client's transaction (as a Describe is, see
// describeEphemeral; every shard has every table), and returns its
// parameters' types (router.SQLPrepared.CheckQuery), or the shard's error.
func (s *session) checkPrepare(ctx context.Context, ps *router.SQLPrepared) (string, error) {
	shard := s.runtime().Config.DefaultShard
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return "", err
	}
	c.Send(&pgproto3.Query{String: ps.CheckQuery()})
	lost := func(err error) (string, error) {
		s.putBack(c, false)
		return "", backendLost(shard, err)
	}
	if err := c.Flush(); err != nil {
		return lost(err)
	}
	for ; n > 0; n-- { // the session's settings (acquire)
		if _, err := readResult(c); err != nil {
			if isConnErr(err) {
				return lost(err)
			}
			s.log.Warn("shard rejected a session setting", "shard", shard, "err", err)
		}
	}
	types, failure, err := readValue(c)
	if err != nil {
		return lost(err)
	}
	s.putBack(c, true)
	if failure != nil {
		return types, ps.CheckError(failure) // in CheckQuery: CheckError moves its position
	}
	return types, nil
}

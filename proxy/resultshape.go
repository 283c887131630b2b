package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Postgres fixes a prepared statement's result type (the names, types and
// type modifiers of its columns) when the statement is prepared. DDL that
// later changes what the statement would return (SELECT * of a table that
// gained a column, a column whose type changed) makes each execution fail
// with 0A000 "cached plan must not change result type" until the result
// type is back as it was (plancache.c, RevalidateCachedQuery): a client
// decodes the rows by the description it was given.
//
// The proxy's statements are not Postgres': a multi-shard statement is
// parsed afresh on its shards at every execution, and a single-shard one
// runs on whichever backend the transaction gets, where a copy shared by
// text with other clients was prepared at some time of its own (see
// backendStmtName). Without care, an old statement returned rows of the
// new type, described to the client as the old one, while a client that
// prepared the statement after the DDL got "cached plan must not change
// result type" from a copy prepared before it. So:
//
//   - a client statement's result type is the one first described to the
//     client (Describe of the statement or of a portal), with the DDL
//     generation it was seen at (Server.ddlGen);
//   - DDL through the proxy (and a backend that reports the error above,
//     which reveals DDL made elsewhere) advances the generation;
//   - a Bind of a statement whose type was seen at an older generation
//     describes the statement afresh on a borrowed backend first: another
//     type fails the Bind with Postgres' error, as Postgres fails it;
//   - a backend copy prepared at an older generation is prepared again
//     before use (ensurePrepared, describeEphemeral).
//
// Not covered: DDL between a client's Parse and the first description
// (the proxy does not describe at Parse), DDL inside the client's own
// open transaction (the borrowed backend does not see it), and DDL made
// on the shards or through another proxy, until a backend reports the
// error once.

// resultShape is what Postgres compares of two result types; nil for a
// statement that returns no rows (a zero-column SELECT has an empty one).
type resultShape []shapeColumn

type shapeColumn struct {
	name   string
	oid    uint32
	typmod int32
}

// shapeOf is never nil: fields come from a RowDescription.
func shapeOf(fields []pgproto3.FieldDescription) resultShape {
	out := make(resultShape, len(fields))
	for i, f := range fields {
		out[i] = shapeColumn{name: string(f.Name), oid: f.DataTypeOID, typmod: f.TypeModifier}
	}
	return out
}

func (a resultShape) equal(b resultShape) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errResultTypeChanged is Postgres' own error (plancache.c).
func errResultTypeChanged() error {
	return pgError("0A000", "cached plan must not change result type")
}

// isResultTypeChanged reports whether a backend's error is that one: a
// copy of a statement prepared there is older than DDL made somewhere.
func isResultTypeChanged(m *pgproto3.ErrorResponse) bool {
	return m.Code == "0A000" && m.Message == "cached plan must not change result type"
}

// noteBackendError advances the DDL generation when a backend's error
// shows that the schema changed under a prepared copy.
func (s *session) noteBackendError(m *pgproto3.ErrorResponse) {
	if isResultTypeChanged(m) {
		s.srv.ddlGen.Add(1)
	}
}

// noteShape records the result type described for ps, the first time
// one is: rows says whether the statement returns rows (RowDescription,
// not NoData), fields describes them.
func (s *session) noteShape(ps *prepared, rows bool, fields []pgproto3.FieldDescription, gen uint64) {
	if ps == nil || ps.shapeKnown {
		return
	}
	ps.shapeKnown, ps.shapeGen = true, gen
	if rows {
		ps.shape = shapeOf(fields)
	}
}

// checkShape fails a Bind of ps (with Postgres' error) when DDL since its
// result type was last seen changed it: ps is described afresh on a
// backend of the default shard borrowed for that (every shard has every
// table).
func (s *session) checkShape(ctx context.Context, ps *prepared) error {
	gen := s.srv.ddlGen.Load()
	if ps.shape == nil || ps.shapeGen == gen || s.ddlInTx {
		// (No rows: DDL cannot make a statement that returns none
		// return some.)
		// (After DDL in the client's open transaction, a borrowed backend
		// would wait for its locks, held by the client: the check waits
		// for the transaction's end, which advances the generation again.)
		return nil
	}
	rd, failure, err := s.describeText(ctx, s.runtime().Config.DefaultShard, ps.query, ps.paramOIDs)
	switch {
	case err != nil:
		return err
	case failure != nil:
		// The statement no longer analyses (a column it names was
		// dropped): Postgres fails the Bind with that error.
		return pgErrorOf(failure)
	case rd == nil || !shapeOf(rd.Fields).equal(ps.shape):
		return errResultTypeChanged()
	}
	ps.shapeGen = gen
	return nil
}

// checkSQLShape holds SQL-prepared statement name to its result type as
// checkShape holds a protocol-level one: the type is the one its first
// EXECUTE described (text is that EXECUTE's statement, its arguments
// cast to the parameters' types, which describes as the statement does),
// and an EXECUTE after DDL that changed it fails with Postgres' error.
// EXECUTE answers with a RowDescription of its own, so the type is
// learnt by describing text on a borrowed backend: once, and again after
// DDL, or under another search_path (pathChanged).
func (s *session) checkSQLShape(ctx context.Context, name, text string, pathChanged bool) error {
	gen := s.srv.ddlGen.Load()
	ps := s.ext.sqlShape[name]
	if ps != nil && (ps.shape == nil || ps.shapeGen == gen && !pathChanged) || s.ddlInTx {
		return nil
	}
	rd, failure, err := s.describeText(ctx, s.runtime().Config.DefaultShard, text, nil)
	switch {
	case err != nil:
		return err
	case failure != nil:
		return nil // the EXECUTE itself reports it
	}
	if ps == nil {
		ps = &prepared{query: text}
		s.ext.sqlShape[name] = ps
		if rd != nil {
			s.noteShape(ps, true, rd.Fields, gen)
		} else {
			s.noteShape(ps, false, nil, gen)
		}
		return nil
	}
	if rd == nil || !shapeOf(rd.Fields).equal(ps.shape) {
		return errResultTypeChanged()
	}
	ps.shapeGen = gen
	return nil
}

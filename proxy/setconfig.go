package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/router"
)

// execSessionConfig runs a statement that makes a session setting with
// set_config(name, value, false) (router/setconfig.go) on the
// transaction's backend, or the default shard's, and carries the setting
// to every backend the session uses next, as for SET: the client gets
// set_config's own row.
func (s *session) execSessionConfig(ctx context.Context, st *router.Statement, p router.QueryPart) (bool, error) {
	set, err := st.SessionConfig(p.Args)
	if err != nil {
		return true, s.sendError(err)
	}
	if s.multiLeg() {
		// SET goes to every leg (txStatement); this SELECT would reach one.
		return true, s.sendError(errNotSupported("use SET, which shardproxy sends to every shard of the transaction",
			"set_config(..., false) in a transaction that spans shards is not supported by shardproxy"))
	}
	shard := s.runtime().Config.DefaultShard
	if s.attached != nil {
		shard = s.attached.Shard
	}
	mark := s.statStart()
	failed, err := s.runOn(ctx, shard, p.Text, set, nil) // records the setting (recordSet)
	s.statEnd(mark, shard, router.RouteAny, failed)
	return failed, err
}

// errSessionConfigAlone refuses set_config(..., false) among other
// statements in one Query, where the proxy could not follow the setting
// (its statements' replies are relayed together).
func errSessionConfigAlone() error {
	return errNotSupported("send it as a query of its own, or use SET, which shardproxy carries to every connection the session uses",
		"set_config(..., false) among other statements in one simple-protocol query is not supported by shardproxy")
}

// bindSessionConfig returns the SET that set_config(name, value, false)
// amounts to with the parameters Bind m gives it (pgx's and most
// drivers' way: SELECT set_config('app.tenant', $1, false)). Execute runs
// it on the transaction's backend, or the default shard's, and records
// the setting when it succeeds (see handleExecute).
func (s *session) bindSessionConfig(ps *prepared, m *pgproto3.Bind) (*router.Statement, error) {
	if s.multiLeg() {
		return nil, errNotSupported("use SET, which shardproxy sends to every shard of the transaction",
			"set_config(..., false) in a transaction that spans shards is not supported by shardproxy")
	}
	for i := range m.Parameters {
		if formatCode(m.ParameterFormatCodes, i) == pgtype.BinaryFormatCode && !textLike(paramOID(ps.paramOIDs, i)) {
			return nil, errNotSupported("send set_config's arguments as text",
				"set_config(..., false) with a binary parameter is not supported by shardproxy")
		}
	}
	return ps.st.SessionConfig(m.Parameters)
}

// textLike reports a type whose binary form is its text (0: the server
// infers it, as text for set_config's arguments).
func textLike(oid uint32) bool {
	switch oid {
	case 0, pgtype.TextOID, pgtype.VarcharOID, pgtype.NameOID, pgtype.UnknownOID, pgtype.BPCharOID:
		return true
	}
	return false
}

// paramOID is parameter i's type as Parse declared it (0: not declared).
func paramOID(oids []uint32, i int) uint32 {
	if i < len(oids) {
		return oids[i]
	}
	return 0
}

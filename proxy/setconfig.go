package proxy

import (
	"context"

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

// errSessionConfigAlone refuses set_config(..., false) where the proxy
// could not follow the setting: among other statements in one Query, or
// in the extended protocol.
func errSessionConfigAlone() error {
	return errNotSupported("send it as a simple query of its own, or use SET, which shardproxy carries to every connection the session uses",
		"set_config(..., false) is supported by shardproxy only as a simple-protocol query of its own")
}

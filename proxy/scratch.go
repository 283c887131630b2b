package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
)

// scratch holds the frontend messages the single-shard hot path sends to
// backends. pool.Conn.Send encodes a message before it returns, so one
// value of each type serves every send; a fresh &pgproto3.Query{...} per
// statement would escape to the heap, since Send takes an interface.
// Fields that point into client messages are cleared after each send, so
// that nothing outlives the memory pgproto3 reuses on the next Receive.
type scratch struct {
	query    pgproto3.Query
	parse    pgproto3.Parse
	describe pgproto3.Describe
	bind     pgproto3.Bind
	execute  pgproto3.Execute
}

func (s *session) sendQuery(c *pool.Conn, text string) {
	s.out.query.String = text
	c.Send(&s.out.query)
	s.out.query.String = ""
}

func (s *session) sendParse(c *pool.Conn, name, query string, oids []uint32) {
	s.out.parse = pgproto3.Parse{Name: name, Query: query, ParameterOIDs: oids}
	c.Send(&s.out.parse)
	s.out.parse = pgproto3.Parse{}
}

func (s *session) sendDescribe(c *pool.Conn, kind byte, name string) {
	s.out.describe = pgproto3.Describe{ObjectType: kind, Name: name}
	c.Send(&s.out.describe)
}

// sendBind forwards the client's Bind m to c, for statement name.
func (s *session) sendBind(c *pool.Conn, m *pgproto3.Bind, name string) {
	s.out.bind = pgproto3.Bind{DestinationPortal: m.DestinationPortal, PreparedStatement: name,
		ParameterFormatCodes: m.ParameterFormatCodes, Parameters: m.Parameters, ResultFormatCodes: m.ResultFormatCodes}
	c.Send(&s.out.bind)
	s.out.bind = pgproto3.Bind{}
}

func (s *session) sendExecute(c *pool.Conn, portal string, maxRows uint32) {
	s.out.execute = pgproto3.Execute{Portal: portal, MaxRows: maxRows}
	c.Send(&s.out.execute)
}

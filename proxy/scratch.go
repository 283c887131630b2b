package proxy

import (
	"errors"

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
	raw      rawMessage // sendRaw's, to the client
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

// rawMessage is a backend message forwarded to the client as the bytes it
// arrived as (type, length, body): relaying a row costs one copy into the
// client's write buffer instead of a decode and an encode.
type rawMessage []byte

func (*rawMessage) Backend() {}
func (*rawMessage) Decode([]byte) error {
	return errors.New("proxy: a raw message is never decoded")
}
func (m *rawMessage) Encode(dst []byte) ([]byte, error) { return append(dst, *m...), nil }

// forwardAsIs reports whether a backend message of type typ goes to the
// client unchanged whenever it goes there at all. Not these: ReadyForQuery
// (the proxy writes its own), ErrorResponse (FATAL is demoted, SQLSTATEs
// counted), CopyInResponse (starts the copy pump), and types the proxy
// does not expect, which must fail decoding as before.
func forwardAsIs(typ byte) bool {
	switch typ {
	case 'T', 'D', 'C', 'I', 'n', 's', '1', '2', '3', 't', 'N', 'S', 'A', 'H', 'd', 'c':
		return true
	}
	return false
}

// sendRaw buffers raw, one whole backend message, for the client, with
// send's accounting and flushing.
func (s *session) sendRaw(raw []byte) error {
	if s.ext.bindOwed {
		s.payBind(raw[0] == 'E')
	}
	if s.holdTag && raw[0] == 'C' {
		s.heldTag = append(s.heldTag[:0], raw[5:len(raw)-1]...) // the tag, without its NUL
		return nil
	}
	s.out.raw = raw
	s.be.Send(&s.out.raw)
	s.out.raw = nil
	s.unflushed = true
	s.wbytes += len(raw)
	switch raw[0] {
	case 'D':
		// send counts a row's values with their 4-byte lengths: the body
		// without its 2-byte column count.
		s.sentRows++
		s.sentBytes += int64(len(raw) - 7)
	case 'd':
		s.sentBytes += int64(len(raw) - 5)
	}
	if s.wbytes >= flushThreshold {
		return s.flush()
	}
	return nil
}

// forward sends a backend message from c's ReceiveRaw to the client: as it
// is when forwardAsIs, decoded and re-encoded otherwise. A client write
// error is errClientGone; a decoding error is the backend's.
func (s *session) forward(c *pool.Conn, raw []byte) error {
	if forwardAsIs(raw[0]) {
		if s.sendRaw(raw) != nil {
			return errClientGone
		}
		return nil
	}
	msg, err := c.Decode(raw)
	if err != nil {
		return err
	}
	return s.sendOrGone(msg)
}

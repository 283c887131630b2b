package proxy

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// refLockQuery is the statement a write to reference tables runs on each
// copy first, in its transaction there (router.ReferenceLocks): the
// copies then take concurrent writes in one order. "" when it takes none.
func refLockQuery(st *router.Statement) string {
	locks := st.ReferenceLocks()
	if len(locks) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, l := range locks {
		if i > 0 {
			b.WriteString(", ")
		}
		if l.Exclusive {
			b.WriteString("pg_advisory_xact_lock(")
		} else {
			b.WriteString("pg_advisory_xact_lock_shared(")
		}
		b.WriteString(strconv.FormatInt(l.Key, 10))
		b.WriteString(")")
	}
	return b.String()
}

// relayLocked is relay for a leg that ran refLockQuery (when locked) after
// its prelude and before the statement: a failure to take the locks
// (lock_timeout, a deadlock, a cancel) is the error the client gets, not
// the "transaction is aborted" the statement then meets.
func (s *session) relayLocked(c *pool.Conn, prelude int, locked bool, m *merger) (status byte, failed bool, err error) {
	if !locked {
		return s.relay(c, prelude, m)
	}
	s.watch.start()
	err = s.skipPrelude(c, prelude)
	for err == nil {
		var msg pgproto3.BackendMessage
		if msg, err = c.Receive(); err != nil {
			break
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			err = m.handle(s, e)
		}
	}
	s.watch.stop()
	if err != nil {
		return 0, false, err
	}
	return s.relay(c, 0, m)
}

package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// The extended query protocol (protocol docs, "Extended Query") is served
// eagerly: each message is handled as it arrives, and what the client must
// see is queued in order as replies — either synthesized by the proxy or
// still to be read from the attached backend. Sync and Flush drain the queue.
//
// Statements live in the proxy, not on a backend: Parse is answered locally
// and the statement is prepared on a backend (under a name derived from its
// text) only when a Bind or Describe needs it there. Under transaction
// pooling a client's next transaction may run on another backend; the
// statement is then prepared there transparently.

type prepared struct {
	query       string
	paramOIDs   []uint32
	st          *router.Statement
	router      *router.Router // analysed st; a reload brings a new one (see handleBind)
	backendName string         // "" for the unnamed statement, which is re-parsed at every use
	lits        []string       // its literal tokens, for merged plans (router.Literals)
	litsDone    bool
	splitOIDs   []uint32 // the whole statement's parameter types, for a split INSERT (insert_split.go)
	// shape is the result type described to the client, seen at DDL
	// generation shapeGen (resultshape.go); shapeKnown once it was.
	shape      resultShape
	shapeKnown bool
	shapeGen   uint64
	// paramTypes are the parameters' types as Postgres inferred them
	// (ParameterDescription), nil until a Describe told (paramtypes.go).
	paramTypes []uint32
}

type portal struct {
	stmt  *prepared
	conn  *pool.Conn // backend holding the portal; nil for a portal the proxy answers
	local bool
	multi *multiBind       // the statement needs several shards: run at Execute
	kind  router.RouteKind // how the shard was chosen (stats)
	// noOwner: an UPDATE or DELETE whose key no shard owns (a directory
	// key never inserted): it changes nothing, and the proxy answers it
	// (Describe from the default shard, which never runs it).
	noOwner *multiBind
	// aside: a statement that reads no table, bound in a transaction
	// block no shard holds yet; it runs beside the transaction (aside.go).
	aside *multiBind
	// cursor: a cursor statement the proxy runs (cursor.go).
	cursor *cursorPortal
	// rowCursor: a multi-shard portal read Execute by Execute, with a
	// row limit, through a cursor on its shards (executeRowLimited).
	rowCursor *mergedCursor
	// config: the portal runs set_config(name, value, false); the SET it
	// amounts to is recorded when it succeeds, as a SET's is.
	config *router.Statement
	// ran: the multi-shard portal was executed to its end (see
	// executeRanMulti); another Execute must not run it again.
	ran bool
	// seq orders the portal among the session's portals and savepoints
	// (extended.portalSeq): ROLLBACK TO drops the portals bound after
	// its savepoint (noteSavepoint).
	seq uint64
}

// multiBind keeps what a Bind said for a statement that runs on several
// shards, to replay it on each of them at Execute. The values are copies:
// the Bind message's memory is reused by the next Receive.
type multiBind struct {
	route         router.Route
	rt            *Runtime // route's runtime, for a portal run later (routedWith); nil if not kept
	formats       []int16
	params        [][]byte
	resultFormats []int16
}

// reply is one queued answer to a client message.
type reply struct {
	kind     byte                      // client message answered: 'P','B','D','E','C','S'; 'Q' = prelude queries
	conn     *pool.Conn                // nil: local
	msgs     []pgproto3.BackendMessage // local messages
	swallow  bool                      // read from the backend but not shown to the client
	count    int                       // 'Q': number of ReadyForQuery to swallow
	prepName string                    // injected Parse: forget the name if it failed
	onOK     func()                    // run when the backend completes the message
	bindOf   *portal                   // local BindComplete of this multi-shard portal (holdBind)
	shapeOf  *prepared                 // 'D': the statement whose rows the backend describes (noteShape)
	shapeGen uint64                    // with shapeOf: the DDL generation when it was sent
	timed    bool                      // 'E' of a client statement: record it in stats when read
	stat     statMark                  // with timed
	route    router.RouteKind          // with timed
}

type extended struct {
	stmts   map[string]*prepared
	sql     map[string]*router.SQLPrepared // SQL PREPARE's statements (sqlprepare.go); same namespace as stmts
	sqlPath map[string]string              // the search_path each one's result type was last checked under (sqlprepare.go)
	// sqlShape: the result type each SQL-prepared statement's first
	// EXECUTE described (resultshape.go); reset by PREPARE.
	sqlShape map[string]*prepared
	portals  map[string]*portal
	queue    []reply
	skip     bool // an error happened: ignore messages until Sync
	sent     bool // messages were sent to the attached backend since the last Sync
	wrote    bool // this batch ran something other than a read on the attached backend
	// begun is the client's BEGIN, executed on the attached backend in
	// this batch outside a transaction block the proxy knew of: the
	// batch's work is then the client's own transaction block (implicit.go).
	begun string
	// ran: a statement that takes a snapshot executed in the pipeline's
	// own transaction, the one Postgres starts at the first message after
	// Sync or after a COMMIT or ROLLBACK of the pipeline (pipelineStatement).
	ran bool

	clientFailed  bool // the client was sent an error in this batch
	backendFailed bool // the backend reported an error and skips to Sync

	unnamed *portal // the unnamed portal's struct, reused across batches

	// describeLater: a Describe of this multi-shard portal, answered
	// when the next message arrives: by the merged execution itself when
	// that is the portal's Execute (describeInExecute), which saves a
	// round trip to a shard, else by describeMulti (deferDescribe).
	describeLater     *portal
	describeInExecute bool

	cursorSeq int // names the cursors of row-limited portals (executeRowLimited)

	// portalSeq counts the portals bound in the session, in the order of
	// the client's messages; a savepoint records it when its statement is
	// handled (handleExecute), though the reply is read later.
	portalSeq uint64
	// holdBind is the multi-shard portal being executed, whose queued
	// BindComplete waits for its shards' Binds: drain leaves it owed
	// (bindOwed), and the first message sent to the client after it pays
	// it, unless that message is the error a shard raised at Bind
	// (bindFailed), which Postgres sends in its place.
	holdBind   *portal
	bindOwed   bool
	bindFailed bool

	// savepointPending: a savepoint statement was sent to the attached
	// backend and its reply is not read yet; until it is, the session
	// does not know which portals a ROLLBACK TO dropped.
	savepointPending bool
}

// payBind sends the owed BindComplete (holdBind) before a message, or
// drops it when the message is the error of the shards' Bind.
func (s *session) payBind(isErr bool) {
	s.ext.bindOwed = false
	if isErr && s.ext.bindFailed {
		return
	}
	s.be.Send(msgBindComplete)
	s.unflushed = true
}

// noteBindFailed follows a shard's error, bound says whether the shard
// had answered the Bind before it: if not, the error is the Bind's.
func (s *session) noteBindFailed(bound bool) {
	if !bound && s.ext.bindOwed {
		s.ext.bindFailed = true
	}
}

// bound records portal p under name, bound now.
func (e *extended) bound(name string, p *portal) {
	e.portalSeq++
	p.seq = e.portalSeq
	e.portals[name] = p
}

// dropPortalsAfter drops the portals bound after seq from, up to seq to:
// Postgres drops the portals of the subtransactions that ROLLBACK TO
// rolls back (AtSubCleanup_Portals); those bound after the ROLLBACK TO
// belong to the new subtransaction.
func (e *extended) dropPortalsAfter(from, to uint64) {
	for name, p := range e.portals {
		if p.seq > from && p.seq <= to {
			delete(e.portals, name)
		}
	}
}

// deferDescribe answers a deferred Describe (describeLater) before next is
// handled, unless next executes that portal, whose merged execution then
// sends the RowDescription.
func (s *session) deferDescribe(ctx context.Context, next pgproto3.FrontendMessage) error {
	p := s.ext.describeLater
	s.ext.describeLater = nil
	switch m := next.(type) {
	case *pgproto3.Execute:
		if m.MaxRows == 0 && s.ext.portals[m.Portal] == p {
			s.ext.describeInExecute = true
			return nil
		}
	case *pgproto3.Terminate:
		return nil
	}
	return s.describeDeferred(ctx, p)
}

func (s *session) describeDeferred(ctx context.Context, p *portal) error {
	if p.cursor != nil {
		return s.describeCursor(ctx, p)
	}
	return s.describeMulti(ctx, p)
}

// failExecute fails the Execute of portal p with err. A Describe of p that
// waited for this Execute (describeInExecute) is answered first, as
// Postgres answers a Describe before the Execute that fails.
func (s *session) failExecute(ctx context.Context, p *portal, err error) error {
	if s.ext.describeInExecute {
		s.ext.describeInExecute = false
		if derr := s.describeDeferred(ctx, p); derr != nil || s.ext.skip {
			return derr // the client is gone, or has the Describe's error
		}
	}
	return s.extFail(err)
}

func (e *extended) init() {
	e.stmts = make(map[string]*prepared)
	e.portals = make(map[string]*portal)
	e.sql = make(map[string]*router.SQLPrepared)
	e.sqlPath = make(map[string]string)
	e.sqlShape = make(map[string]*prepared)
}

func (e *extended) pendingEmpty() bool { return len(e.queue) == 0 && !e.sent }

// discardUnnamed drops the unnamed statement and portal, as a simple Query does.
func (e *extended) discardUnnamed() {
	delete(e.stmts, "")
	delete(e.portals, "")
}

var (
	msgParseComplete = &pgproto3.ParseComplete{}
	msgBindComplete  = &pgproto3.BindComplete{}
	msgCloseComplete = &pgproto3.CloseComplete{}
	msgNoData        = &pgproto3.NoData{}

	// The same as one-message lists for pushLocal, which would otherwise
	// allocate the variadic slice (the queue keeps it) on every call.
	replyParseComplete = []pgproto3.BackendMessage{msgParseComplete}
	replyBindComplete  = []pgproto3.BackendMessage{msgBindComplete}
	replyCloseComplete = []pgproto3.BackendMessage{msgCloseComplete}
	replyNoData        = []pgproto3.BackendMessage{msgNoData}
)

func (s *session) pushLocal(msgs ...pgproto3.BackendMessage) {
	s.ext.queue = append(s.ext.queue, reply{msgs: msgs})
}

func (s *session) pushRemote(kind byte, c *pool.Conn) *reply {
	s.ext.sent = true
	s.ext.queue = append(s.ext.queue, reply{kind: kind, conn: c})
	return &s.ext.queue[len(s.ext.queue)-1]
}

// extFail queues a proxy-side error and skips the client's messages until
// Sync. Work already sent to the backend in this batch (or the open
// transaction) must not commit: an error raised on the backend makes it
// roll back, exactly as if Postgres had raised ours.
func (s *session) extFail(err error) error {
	s.pushLocal(errorResponse(s.log, err))
	s.ext.skip = true
	if s.multiLeg() {
		s.tx.failed, s.txStatus = true, 'E'
		return nil
	}
	if c := s.attached; c != nil {
		c.Send(&pgproto3.Parse{Query: abortSQL})
		c.Send(&pgproto3.Bind{})
		c.Send(&pgproto3.Execute{})
		for _, k := range []byte{'P', 'B', 'E'} {
			s.pushRemote(k, c).swallow = true
		}
	} else if s.txStatus != 'I' {
		s.localFailed, s.txStatus = true, 'E'
	}
	return nil
}

func (s *session) handleParse(m *pgproto3.Parse) error {
	if s.ext.skip {
		return nil
	}
	if old := s.ext.stmts[""]; m.Name == "" && old != nil && old.router == s.runtime().Router &&
		old.query == m.Query && slices.Equal(old.paramOIDs, m.ParameterOIDs) {
		// The unnamed statement parsed again as it was (pgbench -M
		// extended, pgx's exec mode): the same router would analyse the
		// same text to the same statement, so keep it. Only the parameter
		// types of a split INSERT come from the shards: look them up again.
		if s.txStatus == 'E' && !exitsTransaction(old.st, old.query) {
			return s.extFail(errTxAborted())
		}
		old.splitOIDs = nil
		old.shape, old.shapeKnown = nil, false // a new Parse fixes the result type anew
		old.paramTypes = nil                   // and infers its parameters' types anew
		s.snapshotToParse(old.st, false)
		s.pushLocal(replyParseComplete...)
		return nil
	}
	st, err := s.runtime().Router.Prepare(m.Query)
	if err != nil {
		return s.extFail(err)
	}
	if s.txStatus == 'E' && !exitsTransaction(st, m.Query) {
		// As Postgres (exec_parse_message): the statement would be
		// stored, and the client's Parse seen to succeed, where it fails.
		return s.extFail(errTxAborted())
	}
	s.snapshotToParse(st, false)
	s.noteLearning(st)
	if m.Name != "" {
		if _, dup := s.ext.stmts[m.Name]; dup || s.ext.sql[m.Name] != nil {
			return s.extFail(pgError("42P05", "prepared statement %q already exists", m.Name))
		}
	}
	ps := &prepared{query: m.Query, paramOIDs: append([]uint32(nil), m.ParameterOIDs...), st: st, router: s.runtime().Router}
	if m.Name != "" {
		ps.backendName = backendStmtName(m.Query, ps.paramOIDs)
	}
	s.ext.stmts[m.Name] = ps
	s.pushLocal(replyParseComplete...)
	return nil
}

// noStatement is the error for a Bind or Describe of statement name,
// which Parse did not prepare. One prepared by SQL PREPARE exists, and
// Postgres would run it; the proxy keeps such a statement as text for
// EXECUTE (sqlprepare.go), which the extended protocol cannot bind.
func (s *session) noStatement(name string) error {
	if s.ext.sql[name] != nil {
		return errNotSupported("run it with EXECUTE, or prepare it with the protocol's Parse message",
			"statement %q was prepared with SQL PREPARE, which shardproxy runs only through EXECUTE", name)
	}
	if name == "" {
		return pgError("26000", "unnamed prepared statement does not exist") // as Postgres words it
	}
	return pgError("26000", "prepared statement %q does not exist", name)
}

// backendStmtName names a statement on backends by its text and parameter
// types, so that clients preparing the same statement share it.
func backendStmtName(query string, oids []uint32) string {
	d := xxhash.New()
	d.WriteString(query)
	var b [4]byte
	for _, o := range oids {
		binary.BigEndian.PutUint32(b[:], o)
		d.Write(b[:])
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], d.Sum64())
	return "sp_" + hex.EncodeToString(sum[:])
}

// localStatement reports whether the proxy answers st itself in the current
// transaction state (see session.local for the simple-protocol twin).
func (s *session) localStatement(st *router.Statement) bool {
	if s.txWide(st.Kind) {
		return true // answered for every shard of the transaction (txn.go)
	}
	switch st.Kind {
	case router.KindEmpty, router.KindShardHintSet, router.KindShardHintReset:
		return true
	case router.KindBegin:
		return s.attached == nil
	case router.KindCommit, router.KindRollback:
		return s.attached == nil && s.txStatus != 'I'
	case router.KindSet:
		return s.attached == nil && s.pendingBegin != ""
	case router.KindShow:
		return st.SetName == router.HintParameter
	case router.KindPrepare:
		// DEALLOCATE: the session's statements live in the proxy.
		return st.Deallocate != "" || st.DeallocateAll
	case router.KindSavepoint:
		// ROLLBACK TO in a transaction that failed before any shard
		// held it (its savepoints are the proxy's, beforeAnyShard).
		return s.attached == nil && s.pendingBegin != "" && s.localFailed && st.Savepoint == 'B'
	}
	return false
}

// ensurePrepared makes statement ps exist on backend c and returns its name there.
func (s *session) ensurePrepared(c *pool.Conn, ps *prepared) string {
	if ps.backendName == "" {
		s.sendParse(c, "", ps.query, ps.paramOIDs)
		s.pushRemote('P', c).swallow = true
		return ""
	}
	gen := s.srv.ddlGen.Load()
	if prepGen, ok := c.Prepared[ps.backendName]; !ok || prepGen != gen {
		if ok {
			// Prepared there before DDL: its result type may be the old
			// one, which Postgres would now refuse to run (resultshape.go).
			c.Send(&pgproto3.Close{ObjectType: 'S', Name: ps.backendName})
			s.pushRemote('C', c).swallow = true
		}
		s.sendParse(c, ps.backendName, ps.query, ps.paramOIDs)
		c.Prepared[ps.backendName] = gen
		r := s.pushRemote('P', c)
		r.swallow, r.prepName = true, ps.backendName
	}
	return ps.backendName
}

// extAttach returns the backend for shard in this batch. Outside a
// transaction, a batch of reads may move from one shard to the next (the
// part on the previous shard is synced first); a batch that wrote may not,
// since Postgres would run the whole batch as one implicit transaction.
func (s *session) extAttach(ctx context.Context, shard string, readOnly bool) (*pool.Conn, error) {
	routed := s.rt // the statement was routed with it (see routedWith)
	if c := s.attached; c != nil {
		if c.Shard == shard {
			if err := s.beforeSnapshot(ctx, shard, s.stmtSnapshot, !s.ext.sent); err != nil {
				return nil, err
			}
			s.ext.wrote = s.ext.wrote || !readOnly
			return c, nil
		}
		if s.txStatus != 'I' {
			if !s.runtime().Config.TwoPhaseCommit {
				return nil, errCrossShard(c.Shard, shard)
			}
			// Another shard of the transaction: finish the batch on this one.
			if err := s.extSyncAttached(); err != nil {
				return nil, err
			}
			if s.ext.clientFailed {
				return nil, errTxAborted()
			}
			return s.attach(ctx, shard)
		}
		if s.ext.wrote || s.ext.begun != "" {
			if !s.runtime().Config.TwoPhaseCommit && s.ext.begun != "" {
				return nil, errCrossShard(c.Shard, shard)
			}
			if !s.runtime().Config.TwoPhaseCommit {
				return nil, errNotSupported("set two_phase_commit: true in the shardproxy config to run it as one transaction across shards; or send Sync between statements for different shards",
					"a pipeline that writes on shard %s cannot continue on shard %s: it would not be one transaction", c.Shard, shard)
			}
			if err := s.extImplicit(); err != nil { // implicit.go
				return nil, err
			}
			return s.attach(ctx, shard)
		}
		if s.ext.sent {
			c.Send(&pgproto3.Sync{})
			s.pushRemote('S', c).swallow = true
			if err := c.Flush(); err != nil {
				s.dropAttached()
				return nil, backendLost(c.Shard, err)
			}
		}
		if err := s.drain(); err != nil {
			return nil, err
		}
		if s.ext.clientFailed {
			// A statement on the previous shard failed: Postgres skips
			// the rest of the pipeline, and so must the next shard.
			return nil, errTxAborted()
		}
		if s.attached != nil {
			// The previous shard did not end its implicit transaction.
			return nil, errCrossShard(s.attached.Shard, shard)
		}
		// Its end let go of the session's runtime, not of the route.
		if err := s.routedWith(routed); err != nil {
			return nil, err
		}
	}
	c, err := s.attach(ctx, shard)
	if err != nil {
		return nil, err
	}
	s.queuePrelude()
	s.ext.wrote = !readOnly
	return c, nil
}

// queuePrelude queues the replies to the statements the proxy sent ahead
// on the attached backend (session.prelude: settings, a deferred BEGIN, or
// the abort of a transaction the simple protocol failed), to be read and
// not shown before the replies to the client's extended-protocol messages.
func (s *session) queuePrelude() {
	if c := s.attached; c != nil && s.prelude > 0 {
		r := s.pushRemote('Q', c)
		r.swallow, r.count = true, s.prelude
		s.prelude = 0
	}
}

func (s *session) handleBind(ctx context.Context, m *pgproto3.Bind) error {
	if s.ext.skip {
		return nil
	}
	ps := s.ext.stmts[m.PreparedStatement]
	if ps == nil {
		return s.extFail(s.noStatement(m.PreparedStatement))
	}
	// A statement prepared before a reload holds the old map's tables and
	// strategies, and one prepared before the router learnt more of the
	// shards' catalogs (a partition, a view, an index ...) reads its names
	// as they were then: analyse it again so that it routes by what is
	// known now. (A driver keeps its prepared statements for the life of
	// the connection.)
	if r := s.runtime().Router; ps.router != r || r.Stale(ps.st) {
		st, err := r.Prepare(ps.query)
		if err != nil {
			return s.extFail(err)
		}
		ps.st, ps.router = st, r
	}
	// Checked here, as Postgres does: a missing parameter must not reach
	// the router, which would take the unbound key for "any shard".
	if want := max(ps.st.NumParams, len(ps.paramOIDs)); len(m.Parameters) != want {
		return s.extFail(pgError("08P01", "bind message supplies %d parameters, but prepared statement %q requires %d",
			len(m.Parameters), m.PreparedStatement, want))
	}
	if (s.localFailed || s.multiLeg() && s.tx.failed && !s.txWide(ps.st.Kind)) &&
		ps.st.Kind != router.KindCommit && ps.st.Kind != router.KindRollback && !isRollbackTo(ps.st, ps.query) {
		return s.extFail(pgError("25P02", "current transaction is aborted, commands ignored until end of transaction block"))
	}
	if name := m.DestinationPortal; name != "" && s.portalTaken(name) {
		// Only the unnamed portal is replaced by a Bind (exec_bind_message,
		// CreatePortal). A named one may live in the proxy (multi-shard)
		// or on a shard other than the next Bind's, where no backend would
		// see the clash.
		return s.extFail(errCursorExists(name))
	}
	s.snapshotToParse(ps.st, len(m.Parameters) > 0)
	if err := s.checkShape(ctx, ps); err != nil {
		return s.extFail(err)
	}
	if s.localStatement(ps.st) {
		s.ext.bound(m.DestinationPortal, &portal{stmt: ps, local: true})
		s.pushLocal(replyBindComplete...)
		return nil
	}
	if ps.st.Kind == router.KindPrepare || ps.st.Kind == router.KindListen || ps.st.Kind == router.KindCopy || ps.st.DiscardAll {
		return s.extFail(errNotSupported("use the simple query protocol for this statement",
			"this statement is not supported in the extended protocol through shardproxy"))
	}
	cursorShard := ""
	if op := ps.st.Cursor(); op == 'D' || op != 0 && s.txStatus != 'I' {
		p, shard, err := s.bindCursor(ctx, m, ps)
		if err != nil {
			return s.extFail(err)
		}
		if p != nil {
			s.ext.bound(m.DestinationPortal, p)
			s.pushLocal(replyBindComplete...)
			return nil
		}
		cursorShard = shard
	}
	if shard, err := s.currentOfShard(ps.st); err != nil || shard != "" {
		if err != nil {
			return s.extFail(err)
		}
		cursorShard = shard
	}
	var config *router.Statement // set_config(name, value, false): the SET it amounts to
	var route router.Route
	var err error
	s.noteLearning(ps.st)
	if ps.st.IsSessionConfig() {
		config, err = s.bindSessionConfig(ps, m) // (setconfig.go)
		route.Kind = router.RouteAny
	} else {
		route, err = s.runtime().Router.Route(ctx, ps.st, s.bindArgs(ps, m))
		if err == nil {
			err = reservedGID(ps.st)
		}
		if err == nil && s.lookupPrepared(ps.st, route) {
			route, err = s.preparedRoute(ctx, ps.st.GID) // userprepared.go
		}
	}
	if err != nil && !(cursorShard != "" && router.CursorAcrossShards(err)) {
		// (A DECLARE through a view whose query needs one shard goes there.)
		return s.extFail(err)
	}
	if err := s.noteLocalConfig(ps.st, false); err != nil {
		return s.extFail(err)
	}
	if ps.st.SessionSequence && s.txStatus == 'I' {
		return s.extFail(errSessionSequence())
	}
	var shard string
	switch {
	case cursorShard != "":
		shard = cursorShard
	case route.Kind == router.RouteAny:
		if s.runsAside(ps.st) {
			s.ext.bound(m.DestinationPortal, &portal{stmt: ps, aside: copyBind(m, route), kind: route.Kind})
			s.pushLocal(replyBindComplete...)
			return nil
		}
		shard = s.runtime().Config.DefaultShard
		if s.attached != nil {
			shard = s.attached.Shard
		}
	case route.Kind == router.RouteNone || len(route.Shards) == 0:
		if ps.st.Kind == router.KindUpdate || ps.st.Kind == router.KindDelete {
			// As the simple protocol's runNone: it changes nothing.
			mb := copyBind(m, route)
			s.ext.bound(m.DestinationPortal, &portal{stmt: ps, local: true, noOwner: mb})
			s.pushLocal(replyBindComplete...)
			return nil
		}
		if ps.st.Kind != router.KindSelect {
			return s.extFail(pgError("0A000", "no shard owns the key of this statement"))
		}
		shard = s.runtime().Config.DefaultShard
		ps = &prepared{query: "SELECT * FROM (" + trimStatement(ps.query) + ") AS shardproxy_no_owner WHERE false",
			paramOIDs: ps.paramOIDs, st: ps.st}
	case len(route.Shards) > 1:
		return s.bindMulti(m, ps, route)
	case route.AnyCopy && s.attached != nil:
		shard = s.attached.Shard // the transaction's (or batch's) shard has a copy too
	default:
		shard = route.Shards[0]
	}
	readOnly := ps.st.Kind == router.KindSelect && !ps.st.MayWrite || ps.st.Kind == router.KindShow // see router.Statement.MayWrite
	s.noteStatement(ps.st)
	c, err := s.extAttach(ctx, shard, readOnly)
	if err != nil {
		return s.extFail(err)
	}
	name := s.ensurePrepared(c, ps)
	s.sendBind(c, m, name)
	s.pushRemote('B', c)
	if m.DestinationPortal == "" {
		// The unnamed portal is rebound in every batch: reuse its struct.
		// Nothing keeps a pointer to the previous one once it is unbound.
		p := s.ext.unnamed
		if p == nil {
			p = new(portal)
		}
		*p = portal{stmt: ps, conn: c, kind: route.Kind, config: config}
		s.ext.unnamed = p
		s.ext.bound("", p)
	} else {
		s.ext.bound(m.DestinationPortal, &portal{stmt: ps, conn: c, kind: route.Kind, config: config})
	}
	return nil
}

// bindMulti binds a statement that runs on several shards. Nothing is sent
// yet: Execute runs it on every shard (see executeMulti).
func (s *session) bindMulti(m *pgproto3.Bind, ps *prepared, route router.Route) error {
	routed := s.rt // the route's map, which the sync below may let go of
	if c := s.attached; c != nil && s.txStatus == 'I' {
		// The pipeline ran statements on one shard so far, outside a
		// transaction block: reads end there, writes make the pipeline
		// one transaction across shards (implicit.go).
		var err error
		switch {
		case !s.ext.wrote && s.ext.begun == "":
			if err = s.extSyncAttached(); err == nil && s.attached != nil {
				err = errCrossShard(s.attached.Shard, strings.Join(route.Shards, ", "))
			}
		case s.runtime().Config.TwoPhaseCommit:
			err = s.extImplicit()
		}
		if err != nil || s.ext.clientFailed {
			return s.extFail(cmp(err, errTxAborted())) // shown only if the client has no error yet
		}
	}
	if err := s.checkMulti(ps.st, route); err != nil {
		return s.extFail(err)
	}
	mb := copyBind(m, route)
	mb.rt = routed
	p := &portal{stmt: ps, multi: mb}
	s.ext.bound(m.DestinationPortal, p)
	s.pushLocal(replyBindComplete...)
	s.ext.queue[len(s.ext.queue)-1].bindOf = p // (executeMulti may hold it)
	return nil
}

// copyBind keeps what Bind m said, for a portal the proxy runs later.
func copyBind(m *pgproto3.Bind, route router.Route) *multiBind {
	mb := &multiBind{
		route:         route,
		formats:       append([]int16(nil), m.ParameterFormatCodes...),
		params:        make([][]byte, len(m.Parameters)),
		resultFormats: append([]int16(nil), m.ResultFormatCodes...),
	}
	for i, v := range m.Parameters {
		if v != nil {
			mb.params[i] = append([]byte{}, v...)
		}
	}
	return mb
}

// bindMessage is the Bind that replays a multi-shard portal on one shard,
// on its unnamed statement and portal.
func (mb *multiBind) bindMessage() *pgproto3.Bind {
	return &pgproto3.Bind{ParameterFormatCodes: mb.formats, Parameters: mb.params, ResultFormatCodes: mb.resultFormats}
}

// executeMulti runs a multi-shard portal on its shards and merges the
// replies straight to the client. Replies queued before it are delivered
// first, so the client sees everything in order.
func (s *session) executeMulti(ctx context.Context, p *portal, maxRows uint32) error {
	describe := s.ext.describeInExecute // the client's Describe of p, deferred (deferDescribe)
	s.ext.describeInExecute = false
	if maxRows == 0 && p.rowCursor == nil && p.multi.route.Merge != router.MergeSplitInsert {
		// Postgres answers a Bind that fails (a parameter that does not
		// convert to its type ...) with the error instead of BindComplete.
		// The shards bind at Execute: when the Execute follows the Bind,
		// its BindComplete waits for them (holdBind). (A row-limited
		// Execute and a split INSERT bind otherwise: they send it first.)
		s.ext.holdBind = p
		defer func() {
			s.ext.holdBind = nil
			if s.ext.bindOwed && !s.ext.bindFailed {
				s.payBind(false) // nothing failed at Bind: due before what is queued
			}
		}()
	}
	if s.txStatus == 'I' && s.attached == nil && s.runtime().Config.TwoPhaseCommit && pipelineWrite(p.stmt.st) {
		// Its commit waits for Sync, with the rest of the pipeline's
		// transaction (implicit.go).
		s.pendingBegin, s.txStatus, s.implicit = "BEGIN", 'T', true
	}
	if s.txStatus != 'I' && s.runtime().Config.TwoPhaseCommit {
		if err := s.extSyncAttached(); err != nil {
			return err
		}
		if s.ext.clientFailed {
			s.ext.skip = true
			return nil
		}
	} else if s.attached != nil {
		return s.extFail(errNotSupported("send Sync between statements for different shards",
			"a pipeline cannot mix a statement for shard %s with one for shards %s", s.attached.Shard,
			strings.Join(p.multi.route.Shards, ", ")))
	}
	if err := s.drain(); err != nil {
		return err
	}
	ps, mb := p.stmt, p.multi
	if err := s.routedWith(mb.rt); err != nil { // before its shards are taken
		return s.extFail(err)
	}
	s.noteStatement(ps.st)
	if maxRows != 0 || p.rowCursor != nil {
		return s.executeRowLimited(ctx, p, maxRows, describe) // cursor.go
	}
	// Run once: a later Execute of the portal fetches no more rows, or
	// fails, as Postgres' does (executeRanMulti); it must not run the
	// statement again on the shards (an UPDATE would be applied twice).
	p.ran = true
	if describe && mb.route.Merge != router.MergePlan {
		// Only a merged SELECT describes its rows as it runs.
		if err := s.describeMulti(ctx, p); err != nil {
			return err
		}
		if err := s.drain(); err != nil || s.ext.skip {
			return err
		}
	}
	if mb.route.Merge == router.MergeSplitInsert {
		if n := untypedUnused(mb.route.Split, len(mb.params), ps.paramOIDs); n > 0 {
			// Postgres refuses it for the whole statement; no shard would see it.
			return s.extFail(pgError("42P18", "could not determine data type of parameter $%d", n))
		}
		oids := ps.paramOIDs
		if mb.route.Split.RepeatedParams && !allTyped(oids, len(mb.params)) {
			if ps.splitOIDs == nil {
				whole, err := s.wholeParamTypes(ctx, mb.route.Shards[0], ps)
				if err != nil {
					return s.extFail(err)
				}
				ps.splitOIDs = whole
			}
			oids = ps.splitOIDs
		}
		failed, err := s.runSplit(ctx, ps.st, mb.route, func(c *pool.Conn, part *router.SplitPart) {
			c.Send(&pgproto3.Parse{Query: part.ParamSQL(), ParameterOIDs: splitOIDs(oids, part)})
			c.Send(splitBind(mb, part))
			c.Send(&pgproto3.Execute{})
			c.Send(&pgproto3.Sync{})
		})
		if failed {
			s.ext.skip, s.ext.clientFailed = true, true
		}
		return err
	}
	if mb.route.Merge == router.MergePlan {
		if !ps.litsDone {
			ps.lits, ps.litsDone = s.runtime().Router.Literals(ps.query), true
		}
		oids, err := s.mergedParamOIDs(ctx, ps, mb)
		if err != nil {
			return s.extFail(err)
		}
		sql := renderLiterals(mb.route.Plan.Scatter().SQL, ps.lits)
		failed, err := s.runPlan(ctx, ps.st, mb.route, planSend{bind: func(c *pool.Conn) {
			c.Send(&pgproto3.Parse{Query: sql, ParameterOIDs: ps.paramOIDs})
			c.Send(&pgproto3.Bind{ParameterFormatCodes: mb.formats, Parameters: mb.params})
			c.Send(&pgproto3.Describe{ObjectType: 'P'})
		}}, planInputs{param: bindParams(mb, oids, ps.lits), lits: ps.lits, bind: mb, oids: ps.paramOIDs, shapeOf: ps},
			mb.resultFormats, describe)
		if failed {
			s.ext.skip, s.ext.clientFailed = true, true
		}
		return err
	}
	failed, err := s.fanout(ctx, ps.st, mb.route, func(c *pool.Conn) {
		c.Send(&pgproto3.Parse{Query: ps.query, ParameterOIDs: ps.paramOIDs})
		c.Send(mb.bindMessage())
		c.Send(&pgproto3.Execute{})
		c.Send(&pgproto3.Sync{})
	})
	if failed {
		s.ext.skip, s.ext.clientFailed = true, true
	}
	return err
}

// executeRanMulti answers an Execute of multi-shard portal p (named name)
// that already ran to its end, as Postgres answers for a portal in that
// state (pquery.c): a SELECT's, or a write's with RETURNING, has no more
// rows to return; any other statement's portal cannot be run again.
func (s *session) executeRanMulti(ctx context.Context, p *portal, name string) error {
	if s.ext.describeInExecute {
		s.ext.describeInExecute = false
		if err := s.describeMulti(ctx, p); err != nil || s.ext.skip {
			return err
		}
	}
	st := p.stmt.st
	var tag string
	switch {
	case st.Explain:
		tag = "EXPLAIN" // its rows were all sent; the tag has no count
	case st.Kind == router.KindSelect:
		tag = "SELECT 0"
	case st.Returning && st.Kind == router.KindInsert:
		tag = "INSERT 0 0"
	case st.Returning && st.Kind == router.KindUpdate:
		tag = "UPDATE 0"
	case st.Returning && st.Kind == router.KindDelete:
		tag = "DELETE 0"
	default:
		return s.extFail(pgError("55000", "portal %q cannot be run", name))
	}
	s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	return nil
}

// describeMulti answers Describe for a multi-shard portal from its first
// shard, on a borrowed connection: every shard has the same tables. An
// aside portal is described likewise, by the default shard.
func (s *session) describeMulti(ctx context.Context, p *portal) error {
	mb, shard := p.multi, ""
	if mb != nil {
		shard = mb.route.Shards[0]
	} else {
		mb, shard = p.aside, s.runtime().Config.DefaultShard // aside.go
	}
	return s.describeOn(ctx, shard, "", p.stmt, false, func(*pool.Conn) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: p.stmt.query, ParameterOIDs: p.stmt.paramOIDs},
			mb.bindMessage(),
			&pgproto3.Describe{ObjectType: 'P'},
		}
	})
}

func trimStatement(q string) string {
	for len(q) > 0 {
		switch q[len(q)-1] {
		case ';', ' ', '\n', '\t', '\r':
			q = q[:len(q)-1]
			continue
		}
		break
	}
	return q
}

func (s *session) handleDescribe(ctx context.Context, m *pgproto3.Describe) error {
	if s.ext.skip {
		return nil
	}
	if m.ObjectType == 'P' {
		p := s.ext.portals[m.Name]
		switch {
		case p == nil:
			return s.extFail(pgError("34000", "portal %q does not exist", m.Name))
		case p.noOwner != nil:
			return s.describeOn(ctx, s.runtime().Config.DefaultShard, "", p.stmt, false, func(*pool.Conn) []pgproto3.FrontendMessage {
				return []pgproto3.FrontendMessage{
					&pgproto3.Parse{Query: p.stmt.query, ParameterOIDs: p.stmt.paramOIDs},
					p.noOwner.bindMessage(),
					&pgproto3.Describe{ObjectType: 'P'},
				}
			})
		case p.local && p.stmt.st.Kind == router.KindShow:
			s.pushLocal(hintRowDescription())
		case p.local:
			s.pushLocal(replyNoData...)
		case p.cursor != nil && !p.cursor.returnsRows():
			s.pushLocal(replyNoData...)
		case p.multi != nil, p.aside != nil, p.cursor != nil:
			s.ext.describeLater = p // see deferDescribe
			return nil
		case p.conn != s.attached:
			return s.extFail(pgError("34000", "portal %q does not exist", m.Name))
		default:
			s.sendDescribe(p.conn, 'P', m.Name)
			r := s.pushRemote('D', p.conn)
			r.shapeOf, r.shapeGen = p.stmt, s.srv.ddlGen.Load()
		}
		return nil
	}
	ps := s.ext.stmts[m.Name]
	if ps == nil {
		return s.extFail(s.noStatement(m.Name))
	}
	switch ps.st.Kind {
	case router.KindEmpty, router.KindShardHintSet, router.KindShardHintReset, router.KindBegin,
		router.KindCommit, router.KindRollback:
		s.pushLocal(&pgproto3.ParameterDescription{}, msgNoData)
		return nil
	case router.KindShow:
		if ps.st.SetName == router.HintParameter {
			s.pushLocal(&pgproto3.ParameterDescription{}, hintRowDescription())
			return nil
		}
	}
	if done, err := s.describeCursorStatement(ctx, ps); done {
		return err
	}
	if c := s.attached; c != nil && !(s.multiLeg() && s.tx.failed) {
		// Postgres takes a REPEATABLE READ transaction's snapshot when it
		// parses its first query.
		if err := s.beforeSnapshot(ctx, c.Shard, takesSnapshot(ps.st.Kind), !s.ext.sent); err != nil {
			return s.extFail(err)
		}
		c = s.attached
		if err := s.checkShape(ctx, ps); err != nil {
			return s.extFail(err)
		}
		gen := s.srv.ddlGen.Load()
		name := s.ensurePrepared(c, ps)
		s.sendDescribe(c, 'S', name)
		r := s.pushRemote('D', c)
		r.shapeOf, r.shapeGen = ps, gen
		return nil
	}
	return s.describeEphemeral(ctx, ps)
}

// describeEphemeral describes a statement on a backend borrowed just for
// that, so that describing does not pin the batch or transaction to a shard.
// Every shard has every table, so the default shard can describe any statement.
func (s *session) describeEphemeral(ctx context.Context, ps *prepared) error {
	return s.describeOn(ctx, s.runtime().Config.DefaultShard, ps.backendName, ps, true, func(c *pool.Conn) []pgproto3.FrontendMessage {
		var msgs []pgproto3.FrontendMessage
		prepGen, known := c.Prepared[ps.backendName]
		if known && prepGen != s.srv.ddlGen.Load() && ps.backendName != "" {
			// Prepared there before DDL (see ensurePrepared).
			msgs = append(msgs, &pgproto3.Close{ObjectType: 'S', Name: ps.backendName})
			known = false
		}
		if ps.backendName == "" || !known {
			msgs = append(msgs, &pgproto3.Parse{Name: ps.backendName, Query: ps.query, ParameterOIDs: ps.paramOIDs})
		}
		return append(msgs, &pgproto3.Describe{ObjectType: 'S', Name: ps.backendName})
	})
}

// describeOn sends the messages build returns, then Sync, to a connection
// of shard borrowed for that alone, and queues the descriptions (or the
// error) it answers for the client. prepName, if not empty, is a statement
// the messages prepare: the borrowed connection keeps it. The rows
// described are ps's (noteShape); stmt: they describe the statement,
// whose result type must be the one the client was given before
// (resultshape.go).
func (s *session) describeOn(ctx context.Context, shard, prepName string, ps *prepared, stmt bool, build func(c *pool.Conn) []pgproto3.FrontendMessage) error {
	gen := s.srv.ddlGen.Load()
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return s.extFail(err)
	}
	p := s.runtime().Pools.Get(shard)
	done := func(discard bool) {
		s.setActive(c, false)
		if discard {
			p.Discard(c)
		} else {
			p.Release(c)
		}
	}
	for _, m := range build(c) {
		c.Send(m)
	}
	c.Send(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		done(true)
		return s.extFail(backendLost(shard, err))
	}
	var out []pgproto3.BackendMessage
	var failure *pgproto3.ErrorResponse
	bound := false // (noteBindFailed)
	for {
		msg, err := c.Receive()
		if err != nil {
			done(true)
			return s.extFail(backendLost(shard, err))
		}
		if n > 0 {
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				n--
			}
			continue
		}
		switch msg := msg.(type) {
		case *pgproto3.ParameterDescription:
			out = append(out, &pgproto3.ParameterDescription{ParameterOIDs: append([]uint32(nil), msg.ParameterOIDs...)})
		case *pgproto3.RowDescription:
			out = append(out, copyRowDescription(msg))
		case *pgproto3.NoData:
			out = append(out, msgNoData)
		case *pgproto3.BindComplete:
			bound = true
		case *pgproto3.ErrorResponse:
			e := *msg
			demoteFatal(&e)
			failure = &e
			s.noteBackendError(&e)
			s.noteBindFailed(bound)
		case *pgproto3.ReadyForQuery:
			if msg.TxStatus != 'I' {
				done(true)
			} else {
				if failure == nil && prepName != "" {
					c.Prepared[prepName] = gen
				}
				done(false)
			}
			if failure != nil {
				s.pushLocal(failure)
				s.ext.skip = true
				if s.txStatus != 'I' && s.attached == nil {
					s.localFailed, s.txStatus = true, 'E'
				}
				return nil
			}
			if (s.localFailed || s.multiLeg() && s.tx.failed) && slices.ContainsFunc(out, isRowDescription) {
				// The borrowed backend is not in the client's failed
				// transaction. Postgres describes there only what
				// returns no rows (exec_describe_statement_message).
				return s.extFail(errTxAborted())
			}
			if stmt && ps.paramTypes == nil && len(out) > 0 {
				if pd, ok := out[0].(*pgproto3.ParameterDescription); ok {
					ps.paramTypes = pd.ParameterOIDs
				}
			}
			if i := slices.IndexFunc(out, isRowDescription); i >= 0 {
				fields := out[i].(*pgproto3.RowDescription).Fields
				if stmt && ps.shapeKnown && !shapeOf(fields).equal(ps.shape) {
					// Postgres describes the parameters, then fails.
					s.pushLocal(out[:i]...)
					return s.extFail(errResultTypeChanged())
				}
				if stmt && ps.shapeKnown {
					ps.shapeGen = gen // the same type, seen now
				}
				s.noteShape(ps, true, fields, gen)
			} else if slices.Contains(out, pgproto3.BackendMessage(msgNoData)) {
				s.noteShape(ps, false, nil, gen)
			}
			s.pushLocal(out...)
			return nil
		}
	}
}

func isRowDescription(m pgproto3.BackendMessage) bool {
	_, ok := m.(*pgproto3.RowDescription)
	return ok
}

func copyRowDescription(m *pgproto3.RowDescription) *pgproto3.RowDescription {
	fields := make([]pgproto3.FieldDescription, len(m.Fields))
	copy(fields, m.Fields)
	for i := range fields {
		fields[i].Name = append([]byte(nil), fields[i].Name...)
	}
	return &pgproto3.RowDescription{Fields: fields}
}

func (s *session) handleExecute(ctx context.Context, m *pgproto3.Execute) error {
	if s.ext.skip {
		s.ext.describeInExecute = false
		return nil
	}
	p := s.ext.portals[m.Portal]
	if p != nil && p.conn == nil && s.ext.savepointPending {
		// A ROLLBACK TO earlier in the batch may have dropped this portal,
		// which no backend holds to say so: read that reply first.
		if err := s.extSyncAttached(); err != nil {
			return err
		}
		if s.ext.clientFailed {
			s.ext.skip = true
			return nil
		}
		p = s.ext.portals[m.Portal]
	}
	if p == nil {
		return s.extFail(pgError("34000", "portal %q does not exist", m.Portal))
	}
	if err := p.stmt.st.SetError(); err != nil {
		return s.failExecute(ctx, p, err)
	}
	if err := s.pipelineStatement(p.stmt); err != nil {
		return s.failExecute(ctx, p, err)
	}
	if p.stmt.st.Cursor() == 'D' {
		// A portal the proxy keeps (or left on another shard) has the
		// name: the DECLARE's shard would not see the clash.
		if cs, err := router.ParseCursor(p.stmt.query); err == nil && s.ext.portals[cs.Name] != nil {
			return s.failExecute(ctx, p, errCursorExists(cs.Name))
		}
	}
	if p.noOwner != nil {
		s.pushLocal(noRowsTag(p.stmt.st))
		return nil
	}
	if p.local {
		if s.txWide(p.stmt.st.Kind) {
			return s.extTxStatement(ctx, p.stmt)
		}
		return s.executeLocal(p.stmt)
	}
	if p.multi != nil {
		if p.ran && p.rowCursor == nil {
			return s.executeRanMulti(ctx, p, m.Portal)
		}
		return s.executeMulti(ctx, p, m.MaxRows)
	}
	if p.cursor != nil {
		return s.executeCursor(ctx, p, m.MaxRows)
	}
	if p.aside != nil {
		if m.MaxRows == 0 && s.runsAside(p.stmt.st) {
			return s.executeAside(ctx, p)
		}
		if err := s.pinAside(ctx, p, m.Portal); err != nil || s.ext.skip {
			return err
		}
	}
	if p.conn != s.attached && p.conn != nil && s.multiLeg() && slices.Contains(s.tx.legs, p.conn) {
		// A portal of the transaction's shard, left for a statement on
		// other shards (its transaction spans shards now): its backend is
		// still the transaction's there, and holds the portal.
		readOnly := p.stmt.st.Kind == router.KindSelect && !p.stmt.st.MayWrite
		if _, err := s.extAttach(ctx, p.conn.Shard, readOnly); err != nil {
			return s.failExecute(ctx, p, err)
		}
	}
	if p.conn != s.attached {
		return s.extFail(pgError("34000", "portal %q does not exist", m.Portal))
	}
	if ps := p.stmt; !ps.shapeKnown && !s.shapeAsked(ps) {
		// The first run of a statement the client did not describe: the
		// proxy describes it for itself, to hold it to its result type
		// (resultshape.go). The unnamed one too: Postgres fixes its
		// result type at Parse as well, and fails a Bind in a later
		// batch after DDL that changed it.
		s.sendDescribe(p.conn, 'P', m.Portal)
		r := s.pushRemote('D', p.conn)
		r.swallow, r.shapeOf, r.shapeGen = true, ps, s.srv.ddlGen.Load()
	}
	s.sendExecute(p.conn, m.Portal, m.MaxRows)
	r := s.pushRemote('E', p.conn)
	// Timed from Execute to its reply: a pipelined statement's latency
	// includes waiting behind the earlier ones, as the client sees it.
	r.timed, r.stat.start, r.route = true, time.Now(), p.kind
	if op := p.stmt.st.Cursor(); op == 'D' || op == 'C' {
		shard, q := p.conn.Shard, p.stmt.query
		r.onOK = func() { s.noteCursorText(shard, q) } // cursor.go
	}
	st := p.stmt.st
	if p.config != nil {
		st = p.config
	}
	switch st.Kind {
	case router.KindSet:
		c, q := p.conn, p.stmt.query
		r.onOK = func() {
			// Outside BEGIN the batch up to Sync is an implicit
			// transaction: an error before Sync undoes the SET (readReply).
			if s.tx.params == nil && !st.SetLocal {
				s.tx.params = maps.Clone(s.params)
			}
			s.recordSet(st, c)
			s.noteReplay(st, q)
		}
	case router.KindSavepoint:
		q, seq := p.stmt.query, s.ext.portalSeq // the portals bound before it
		r.onOK = func() { s.noteReplayAt(st, q, seq) }
		s.ext.savepointPending = true
	case router.KindDDL:
		r.onOK = s.schemaChanged
	case router.KindBegin:
		if s.txStatus == 'I' {
			s.ext.begun = p.stmt.query // known before its reply is read (extImplicit)
		}
	case router.KindCommit, router.KindRollback:
		chain := chained(p.stmt.query)
		if !chain {
			s.ext.begun = "" // AND CHAIN: the block goes on, in a new transaction
		}
		// The transaction's SETs stay or go now: the Sync that follows
		// may end an implicit transaction of its own. COMMIT of a failed
		// transaction rolls back. (An error earlier in this batch would
		// have skipped the statement.)
		c, committed := p.conn, st.Kind == router.KindCommit && s.txStatus != 'E'
		r.onOK = func() { s.settleTxParams(committed, c) }
		switch {
		case s.txStatus == 'I':
		case chain:
			// What follows runs in the new transaction, before this
			// reply is read: it must not see the old one's failure,
			// savepoints or shards.
			s.chainTx()
		default:
			// The client's block ends here, not at Sync: what follows in
			// the pipeline is a transaction of its own, which may need
			// other shards (extAttach). Sync now; nothing after the
			// COMMIT has run, so the backend starts that transaction as
			// it would have. If something before it failed, the backend
			// skipped the COMMIT, and the rest of the pipeline is skipped.
			if err := s.extSyncAttached(); err != nil {
				return err
			}
			if s.ext.clientFailed {
				s.ext.skip = true
			}
		}
	}
	return nil
}

// shapeAsked reports whether a Describe whose reply tells ps's result
// type is queued (the client's, as libpq sends one before each Execute).
func (s *session) shapeAsked(ps *prepared) bool {
	return slices.ContainsFunc(s.ext.queue, func(r reply) bool { return r.kind == 'D' && r.shapeOf == ps })
}

// executeLocal runs a statement the proxy answers itself (see localStatement).
func (s *session) executeLocal(ps *prepared) error {
	tag := func(t string) { s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(t)}) }
	st := ps.st
	switch st.Kind {
	case router.KindEmpty:
		s.pushLocal(&pgproto3.EmptyQueryResponse{})
	case router.KindShardHintSet:
		if s.runtime().Config.ShardIndex(st.HintShard) < 0 {
			return s.extFail(pgError("42704", "shard %q does not exist", st.HintShard))
		}
		s.setHint(st.HintShard)
		tag("SET")
	case router.KindShardHintReset:
		s.setHint("")
		tag("RESET")
	case router.KindPrepare: // DEALLOCATE (localStatement)
		t, err := s.deallocate(st)
		if err != nil {
			return s.extFail(err)
		}
		tag(t)
	case router.KindShow: // SHOW shardproxy.shard (localStatement)
		s.pushLocal(&pgproto3.DataRow{Values: [][]byte{[]byte(s.hint)}})
		tag("SHOW")
	case router.KindBegin:
		if s.txStatus == 'I' {
			s.pendingBegin, s.txStatus = ps.query, 'T'
		} else {
			s.pushLocal(noticeInProgress)
			if err := s.beginInPendingBlock(ps.query); err != nil {
				return s.extFail(err)
			}
		}
		tag(st.Tag)
	case router.KindCommit, router.KindRollback:
		tag(s.endPendingTxn(st.Kind == router.KindRollback, ps.query))
	case router.KindSavepoint: // localStatement: ROLLBACK TO before any shard
		if err := s.beforeAnyShard(st, ps.query); err != nil {
			return s.extFail(err)
		}
		tag(savepointTag(st, ps.query))
	case router.KindSet:
		if st.SetLocal {
			// SET LOCAL, SET TRANSACTION before any shard: replayed on the
			// first one the transaction touches, as in the simple protocol.
			s.noteReplay(st, ps.query)
		} else {
			s.recordSet(st, nil)
			s.noteReplay(st, ps.query)
		}
		tag(st.SetTag())
	default:
		return s.extFail(pgError("XX000", "statement cannot be answered by the proxy"))
	}
	return nil
}

func (s *session) handleClose(m *pgproto3.Close) error {
	if s.ext.skip {
		return nil
	}
	if m.ObjectType == 'S' {
		// The backend copy stays: it is shared by name with other clients.
		// A statement of SQL PREPARE is closed too: Postgres has one
		// namespace for both.
		s.forgetStatement(m.Name)
		s.pushLocal(replyCloseComplete...)
		return nil
	}
	p := s.ext.portals[m.Name]
	delete(s.ext.portals, m.Name)
	if p != nil && p.conn != nil && p.conn == s.attached {
		p.conn.Send(&pgproto3.Close{ObjectType: 'P', Name: m.Name})
		s.pushRemote('C', p.conn)
		return nil
	}
	s.pushLocal(replyCloseComplete...)
	return nil
}

func (s *session) handleSync(ctx context.Context) error {
	s.ext.skip = false
	if c := s.attached; c != nil && s.ext.sent {
		c.Send(&pgproto3.Sync{})
		s.pushRemote('S', c)
		if err := c.Flush(); err != nil {
			s.ext.queue = s.ext.queue[:0]
			s.dropAttached()
			if err := s.sendLost(c.Shard, err); err != nil {
				return err
			}
			if s.implicit {
				if _, err := s.endImplicit(ctx, false); err != nil {
					return err
				}
			}
			s.resetBatch()
			return s.ready()
		}
	}
	err := s.drain()
	if err == nil && s.implicit {
		// Postgres commits the pipeline's transaction at Sync; a failed
		// commit is reported before ReadyForQuery (implicit.go).
		_, err = s.endImplicit(ctx, !s.ext.clientFailed)
	}
	s.resetBatch()
	if err != nil {
		return err
	}
	return s.ready()
}

func (s *session) resetBatch() {
	s.ext.sent, s.ext.wrote, s.ext.clientFailed, s.ext.backendFailed = false, false, false, false
	s.ext.begun, s.ext.ran = "", false
	if s.txStatus == 'I' {
		// Portals do not outlive their transaction.
		s.ext.dropPortals()
	}
}

// dropPortals forgets every portal, at the end of their transaction.
func (e *extended) dropPortals() {
	clear(e.portals)
	if p := e.unnamed; p != nil {
		*p = portal{} // let go of the statement and backend
	}
}

func (s *session) handleFlush() error {
	if c := s.attached; c != nil && s.ext.sent {
		c.Send(&pgproto3.Flush{})
		if err := c.Flush(); err != nil {
			s.dropAttached()
			s.ext.queue = s.ext.queue[:0]
			return s.sendLost(c.Shard, err)
		}
	}
	if err := s.drain(); err != nil {
		return err
	}
	return s.flush()
}

// drain delivers the queued replies in order: local ones as they are,
// backend ones read from the backend. After an error, Postgres skips to
// Sync, so later replies are not read (the backend will not send them) and
// not shown.
func (s *session) drain() error {
	e := &s.ext
	s.watch.start()
	defer s.watch.stop()
	if c := s.attached; c != nil && e.sent {
		// Make sure everything queued for the backend has been written.
		if err := c.Flush(); err != nil {
			e.queue = e.queue[:0]
			s.dropAttached()
			return s.sendLost(c.Shard, err)
		}
	}
	for i := 0; i < len(e.queue); i++ {
		r := &e.queue[i]
		if r.conn == nil {
			if r.bindOf != nil && r.bindOf == e.holdBind {
				e.bindOwed, e.bindFailed = !e.clientFailed, false
				continue
			}
			for _, m := range r.msgs {
				if _, isErr := m.(*pgproto3.ErrorResponse); isErr {
					if !e.clientFailed {
						e.clientFailed = true
						if err := s.send(m); err != nil {
							return err
						}
					}
					continue
				}
				if !e.clientFailed {
					if err := s.send(m); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := s.readReply(r); err != nil {
			e.queue = e.queue[:0]
			s.dropAttached()
			if errors.Is(err, errClientGone) {
				return err
			}
			return s.sendLost(r.conn.Shard, err)
		}
	}
	e.queue = e.queue[:0]
	e.savepointPending = false
	return nil
}

// readReply reads the backend's answer to one queued message.
func (s *session) readReply(r *reply) error {
	e := &s.ext
	if r.kind == 'S' {
		for {
			typ, raw, err := r.conn.ReceiveRaw()
			if err != nil {
				return err
			}
			if typ == 'Z' {
				msg, err := r.conn.Decode(raw)
				if err != nil {
					return err
				}
				status := msg.(*pgproto3.ReadyForQuery).TxStatus
				if status == 'I' && (s.tx.params != nil || s.tx.hintSaved) {
					s.tx.committed = !e.backendFailed // the batch's implicit transaction
				}
				e.backendFailed = false
				s.settle(status)
				return nil
			}
			if !r.swallow {
				if err := s.forward(r.conn, raw); err != nil {
					return err
				}
			}
		}
	}
	if r.kind == 'Q' {
		for r.count > 0 {
			msg, err := r.conn.Receive()
			if err != nil {
				return err
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				r.count--
			}
		}
		return nil
	}
	if e.backendFailed {
		if r.prepName != "" {
			delete(r.conn.Prepared, r.prepName)
		}
		return nil
	}
	if r.timed {
		r.stat.rows, r.stat.bytes = s.sentRows, s.sentBytes
	}
	for {
		typ, raw, err := r.conn.ReceiveRaw()
		if err != nil {
			return err
		}
		switch typ {
		case 'E':
			msg, err := r.conn.Decode(raw)
			if err != nil {
				return err
			}
			if r.timed {
				s.statEnd(r.stat, r.conn.Shard, r.route, true)
			}
			e.backendFailed = true
			demoteFatal(msg.(*pgproto3.ErrorResponse))
			s.noteBackendError(msg.(*pgproto3.ErrorResponse))
			if r.prepName != "" {
				delete(r.conn.Prepared, r.prepName)
			}
			if r.swallow && r.kind != 'P' && r.shapeOf == nil || e.clientFailed {
				// Our own abort, or an error after the one the client saw.
				// (The proxy's own Describe of a portal before its Execute
				// fails as the Execute would, e.g. 34000: shown.)
				return nil
			}
			e.clientFailed = true
			return s.sendOrGone(msg)
		case 'G': // CopyInResponse
			msg, err := r.conn.Decode(raw)
			if err != nil {
				return err
			}
			if err := s.sendOrGone(msg); err != nil {
				return err
			}
			if err := s.flush(); err != nil {
				return errClientGone
			}
			if err := s.pumpCopyIn(r.conn); err != nil {
				return err
			}
			continue
		}
		if typ == 't' && r.shapeOf != nil && r.shapeOf.paramTypes == nil {
			msg, err := r.conn.Decode(raw)
			if err != nil {
				return err
			}
			r.shapeOf.paramTypes = append([]uint32(nil), msg.(*pgproto3.ParameterDescription).ParameterOIDs...)
		}
		if r.shapeOf != nil && !r.shapeOf.shapeKnown {
			switch typ {
			case 'T':
				msg, err := r.conn.Decode(raw)
				if err != nil {
					return err
				}
				s.noteShape(r.shapeOf, true, msg.(*pgproto3.RowDescription).Fields, r.shapeGen)
			case 'n':
				s.noteShape(r.shapeOf, false, nil, r.shapeGen)
			}
		}
		if !r.swallow && !e.clientFailed {
			if err := s.forward(r.conn, raw); err != nil {
				return err
			}
		}
		if terminates(r.kind, typ) {
			if r.timed {
				s.statEnd(r.stat, r.conn.Shard, r.route, false)
			}
			if r.onOK != nil {
				r.onOK()
			}
			return nil
		}
	}
}

// terminates reports whether a backend message of type typ is the last of
// the reply to a client message of kind (see reply.kind); ErrorResponse
// ends every reply and is handled apart.
func terminates(kind, typ byte) bool {
	switch typ {
	case '1': // ParseComplete
		return kind == 'P'
	case '2': // BindComplete
		return kind == 'B'
	case 'T', 'n': // RowDescription, NoData
		return kind == 'D'
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		return kind == 'E'
	case '3': // CloseComplete
		return kind == 'C'
	}
	return false
}

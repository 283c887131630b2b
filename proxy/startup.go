package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

const (
	// startupTimeout bounds how long a client may take to authenticate,
	// like Postgres' authentication_timeout.
	startupTimeout = 60 * time.Second
	// maxMessageLen caps one client message. Postgres accepts up to 1 GB;
	// a proxy that buffers a message must bound it lower.
	maxMessageLen = 64 << 20
)

// NewRuntime bundles a validated config with its router and pools.
func NewRuntime(cfg *config.Config, r *router.Router, pools *pool.Cluster) (*Runtime, error) {
	rt := &Runtime{Config: cfg, Router: r, Pools: pools, databases: make(map[string]bool), columns: &columnCache{}}
	for _, sh := range cfg.Shards {
		pc, err := pgconn.ParseConfig(sh.DSN)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", sh.Name, err)
		}
		rt.databases[pc.Database] = true
	}
	var err error
	if rt.tls, err = loadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	return rt, nil
}

// reportedParams are the GUC_REPORT settings a client expects at startup.
var reportedParams = []string{
	"application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
	"in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser",
	"server_encoding", "server_version", "session_authorization",
	"standard_conforming_strings", "TimeZone",
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	id := s.nextID.Add(1)
	log := s.log.With("conn_id", id, "remote", c.RemoteAddr().String())
	rw := pool.SocketIO(c)
	be := pgproto3.NewBackend(rw, rw)
	be.SetMaxBodyLen(maxMessageLen)
	c.SetDeadline(time.Now().Add(startupTimeout))

	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := receiveStartup(c)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Debug("bad startup packet", "err", err)
				sendFatal(be, log, errProtocol("invalid startup packet layout: %v", err))
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			tc, err := s.startTLS(ctx, c, be, log)
			if err != nil {
				return
			}
			if tc != nil {
				// The rest is encrypted: receiveStartup read nothing ahead, so
				// nothing plain is left behind in a reader.
				c, be = tc, pgproto3.NewBackend(tc, tc)
				be.SetMaxBodyLen(maxMessageLen)
			}
		case *pgproto3.GSSEncRequest:
			// No GSS encryption: 'N' lets the client go on in plain text or
			// try SSLRequest next.
			if _, err := c.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.CancelRequest:
			s.cancel(m.ProcessID, m.SecretKey)
			return
		case *pgproto3.StartupMessage:
			if m.ProtocolVersion>>16 != 3 {
				sendFatal(be, log, pgErrorFatal("0A000", "unsupported frontend protocol %d.%d: server supports 3.0 to 3.0",
					m.ProtocolVersion>>16, m.ProtocolVersion&0xffff))
				return
			}
			if err := negotiateProtocol(be, m); err != nil {
				return
			}
			startup = m
		default:
			sendFatal(be, log, errProtocol("unexpected startup message %T", msg))
			return
		}
	}

	user := startup.Parameters["user"]
	if user == "" {
		sendFatal(be, log, pgErrorFatal("28000", "no PostgreSQL user name specified in startup packet"))
		return
	}
	database := startup.Parameters["database"]
	if database == "" {
		database = user
	}
	log = log.With("user", user, "db", database)
	if startup.Parameters["replication"] != "" && startup.Parameters["replication"] != "false" {
		sendFatal(be, log, pgErrorFatal("0A000", "shardproxy does not serve replication connections"))
		return
	}

	rt := s.rt.Load()
	if err := checkClientTLS(rt.Config, c); err != nil {
		log.Info("connection refused", "err", err)
		sendFatal(be, log, err)
		return
	}
	u := rt.Config.UserByName(user)
	var password string
	if u != nil {
		password = u.Password
	}
	var err error
	if strings.HasPrefix(password, "md5") && len(password) == 35 {
		err = authMD5(be, user, password, u != nil)
	} else {
		err = authSCRAM(be, &s.secrets, user, password, u != nil)
	}
	if err != nil {
		if clientGone(err) {
			// pg_isready and port scanners hang up here; Postgres logs
			// nothing for them either.
			log.Debug("client left during authentication", "err", err)
			return
		}
		log.Info("authentication failed", "err", err)
		sendFatal(be, log, err)
		return
	}

	if database == rt.Config.AdminDatabase {
		if !u.Admin {
			sendFatal(be, log, pgErrorFatal("42501", "permission denied for admin console: user %q is not an admin", user))
			return
		}
		c.SetDeadline(time.Time{})
		// A drain ends console sessions (no transactions to wait for) by
		// failing their next read.
		defer context.AfterFunc(s.drain.begun, func() { c.SetReadDeadline(time.Now()) })()
		s.serveAdmin(ctx, be, log, user)
		return
	}
	if !rt.databases[database] {
		sendFatal(be, log, pgErrorFatal("3D000", "database %q does not exist", database))
		return
	}
	c.SetDeadline(time.Time{})

	// Settings are looked at once the client has authenticated, as
	// Postgres does.
	params, err := sessionParams(startup.Parameters)
	if err != nil {
		log.Info("connection refused", "err", err)
		sendFatal(be, log, err)
		return
	}
	sess := newSession(s, c, be, log, params)
	sess.info.init(id, user, database, c.RemoteAddr())
	if err := sess.checkStartupParams(ctx); err != nil {
		log.Info("connection refused", "err", err)
		sendFatal(be, log, err)
		return
	}
	s.register(sess)
	defer s.unregister(sess)

	be.Send(&pgproto3.AuthenticationOk{})
	for _, name := range reportedParams {
		if v, ok := sess.reportedValue(name); ok {
			be.Send(&pgproto3.ParameterStatus{Name: name, Value: v})
		}
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: sess.pid, SecretKey: sess.secret})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	log.Debug("client connected")
	sess.run(ctx)
	log.Debug("client disconnected")
}

// maxStartupPacketLen is Postgres' MAX_STARTUP_PACKET_LENGTH.
const maxStartupPacketLen = 10000

// receiveStartup reads one packet of the startup phase (protocol docs,
// "Start-up"). It does not use Backend.ReceiveStartupMessage because that
// rejects every protocol version but 3.0 and 3.2 with an anonymous error,
// where Postgres answers an old major version with a clear FATAL and any
// newer 3.x minor with NegotiateProtocolVersion. Nothing is read ahead, so
// the Backend can read the client from the first message after startup.
func receiveStartup(r io.Reader) (pgproto3.FrontendMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	if n < 4 || n > maxStartupPacketLen {
		return nil, fmt.Errorf("invalid length of startup packet: %d", n+4)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the length arrived: the packet is truncated
		}
		return nil, err
	}
	var msg interface {
		pgproto3.FrontendMessage
		Decode([]byte) error
	}
	switch code := binary.BigEndian.Uint32(buf); code {
	case sslRequestCode:
		msg = &pgproto3.SSLRequest{}
	case gssEncRequestCode:
		msg = &pgproto3.GSSEncRequest{}
	case cancelRequestCode:
		msg = &pgproto3.CancelRequest{}
	default:
		if code>>16 != 3 {
			// Another major version: its layout is not ours to parse.
			return &pgproto3.StartupMessage{ProtocolVersion: code}, nil
		}
		// Decode knows only 3.0 and 3.2; every 3.x minor shares the layout.
		binary.BigEndian.PutUint32(buf, pgproto3.ProtocolVersion30)
		m := &pgproto3.StartupMessage{}
		if err := m.Decode(buf); err != nil {
			return nil, err
		}
		m.ProtocolVersion = code
		return m, nil
	}
	if err := msg.Decode(buf); err != nil {
		return nil, err
	}
	return msg, nil
}

// Request codes of the startup phase (protocol docs, "Message Formats").
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
)

// negotiateProtocol answers a client that asked for a 3.x minor above 0 or
// for protocol options ("_pq_." parameters) as Postgres 15 does: with
// NegotiateProtocolVersion, after which the client goes on with 3.0 or
// hangs up. The options are removed from the startup parameters.
func negotiateProtocol(be *pgproto3.Backend, m *pgproto3.StartupMessage) error {
	var unknown []string
	for k := range m.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
			delete(m.Parameters, k)
		}
	}
	if m.ProtocolVersion == pgproto3.ProtocolVersion30 && len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	m.ProtocolVersion = pgproto3.ProtocolVersion30
	be.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
	return be.Flush()
}

func pgErrorFatal(code, format string, args ...any) *pgconn.PgError {
	e := pgError(code, format, args...)
	e.Severity = "FATAL"
	return e
}

// sendFatal writes a FATAL error; the caller then closes the connection.
func sendFatal(be *pgproto3.Backend, log *slog.Logger, err error) {
	resp := errorResponse(log, err)
	resp.Severity, resp.SeverityUnlocalized = "FATAL", "FATAL"
	be.Send(resp)
	be.Flush()
}

// cancel forwards a CancelRequest to every backend the session is using.
// Like Postgres, it answers nothing and ignores a wrong key.
func (s *Server) cancel(pid uint32, secret []byte) {
	sess := s.lookup(pid)
	if sess == nil || string(sess.secret) != string(secret) {
		return
	}
	sess.cancelBackends()
}

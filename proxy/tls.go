package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
)

// TLS for client connections. The certificate is loaded with the Runtime,
// so a reload that swaps the Runtime also swaps the certificate for new
// connections; connections already encrypted keep their session.

// loadTLS reads the configured certificate and key; nil means TLS is off.
func loadTLS(c *config.TLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// startTLS answers an SSLRequest: 'N' without TLS configured (it returns
// nil, nil and the startup goes on in plain text), else 'S' and the server
// side of the handshake, returning the encrypted connection the rest of the
// startup must use. On an error the connection is done: the client got a
// FATAL where one can still reach it.
func (s *Server) startTLS(ctx context.Context, c net.Conn, be *pgproto3.Backend, log *slog.Logger) (*tls.Conn, error) {
	if _, ok := c.(*tls.Conn); ok {
		err := errProtocol("SSLRequest on a connection that already uses TLS")
		sendFatal(be, log, err)
		return nil, err
	}
	cfg := s.rt.Load().tls
	if cfg == nil {
		_, err := c.Write([]byte{'N'})
		return nil, err
	}
	// A client must wait for 'S' before it starts the handshake. Bytes sent
	// before it would be read as if they had come through the encrypted
	// channel: Postgres refuses them as a possible man-in-the-middle.
	if pendingInput(c) {
		err := errProtocol("received unencrypted data after SSL request")
		sendFatal(be, log, err)
		return nil, err
	}
	if _, err := c.Write([]byte{'S'}); err != nil {
		return nil, err
	}
	tc := tls.Server(c, cfg)
	// The startup deadline on c also bounds the handshake.
	if err := tc.HandshakeContext(ctx); err != nil {
		log.Info("TLS handshake failed", "err", err)
		return nil, err
	}
	return tc, nil
}

// checkClientTLS refuses a plain-text client that tls.client_tls requires to
// use TLS, as a pg_hba "hostssl"-only setup would.
func checkClientTLS(cfg *config.Config, c net.Conn) error {
	if cfg.TLS == nil || cfg.TLS.ClientTLS == config.ClientTLSAllow {
		return nil
	}
	if _, ok := c.(*tls.Conn); ok {
		return nil
	}
	addr := c.RemoteAddr()
	if cfg.TLS.ClientTLS == config.ClientTLSRequireNonlocal && isLocal(addr) {
		return nil
	}
	host := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok {
		host = ta.IP.String()
	}
	return pgErrorFatal("28000", "no encryption: TLS is required for connections from %s", host)
}

// isLocal reports whether a client connects over loopback or a Unix socket,
// where nobody else can read the traffic.
func isLocal(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

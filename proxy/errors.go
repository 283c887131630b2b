package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pgError builds an ERROR-severity error with the given SQLSTATE.
func pgError(code, format string, args ...any) *pgconn.PgError {
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorResponse turns any error into the wire message the client sees.
// Errors become wire bytes exactly once, here: Postgres errors keep their
// SQLSTATE, cancellation becomes 57014, and anything unexpected is XX000
// with the detail kept in the log rather than shown to the client.
func errorResponse(log *slog.Logger, err error) *pgproto3.ErrorResponse {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		sev := pgErr.Severity
		if sev == "" {
			sev = "ERROR"
		}
		return &pgproto3.ErrorResponse{
			Severity:            sev,
			SeverityUnlocalized: sev,
			Code:                pgErr.Code,
			Message:             pgErr.Message,
			Detail:              pgErr.Detail,
			Hint:                pgErr.Hint,
			Position:            pgErr.Position,
			InternalPosition:    pgErr.InternalPosition,
			InternalQuery:       pgErr.InternalQuery,
			Where:               pgErr.Where,
			SchemaName:          pgErr.SchemaName,
			TableName:           pgErr.TableName,
			ColumnName:          pgErr.ColumnName,
			DataTypeName:        pgErr.DataTypeName,
			ConstraintName:      pgErr.ConstraintName,
			File:                pgErr.File,
			Line:                pgErr.Line,
			Routine:             pgErr.Routine,
		}
	case errors.Is(err, context.Canceled):
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57014",
			Message: "canceling statement due to user request"}
	case errors.Is(err, context.DeadlineExceeded):
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57014",
			Message: "canceling statement due to statement timeout"}
	default:
		log.Error("internal error", "err", err)
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "XX000",
			Message: "shardproxy: internal error (see proxy log)"}
	}
}

// clientGone reports whether err, from reading or writing the client's
// socket, means the client hung up or the socket failed (EOF, reset,
// deadline) rather than that it sent something malformed.
func clientGone(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// backendLost is the error a client sees when a shard connection breaks
// mid-statement.
func backendLost(shard string, err error) *pgconn.PgError {
	return &pgconn.PgError{Severity: "ERROR", Code: "08006",
		Message: fmt.Sprintf("shardproxy: lost connection to shard %s: %v", shard, err)}
}

func errNotSupported(hint, format string, args ...any) *pgconn.PgError {
	e := pgError("0A000", format, args...)
	e.Hint = hint
	return e
}

// demoteFatal turns a shard's FATAL (or PANIC) into an ERROR before it is
// relayed: the backend connection is ending, not the client's session with
// the proxy, and clients close their connection on a FATAL (pgx does).
func demoteFatal(m *pgproto3.ErrorResponse) {
	if m.Severity == "FATAL" || m.Severity == "PANIC" {
		m.Severity, m.SeverityUnlocalized = "ERROR", "ERROR"
	}
}

// errSessionSequence refuses currval() and lastval() outside a
// transaction block. They return what nextval() last gave in the
// backend's session; under transaction pooling the backend of an earlier
// transaction may not be this statement's, and may have served other
// clients since, so the value could be anyone's. Inside a transaction
// the backend is the transaction's, and a nextval() earlier in it is
// what they read.
func errSessionSequence() error {
	return errNotSupported("use INSERT ... RETURNING, or call it in the same transaction (BEGIN ... COMMIT) as the nextval() or INSERT it follows",
		"currval() and lastval() outside a transaction block are not supported under transaction pooling: the value would come from a pooled shard connection that other clients share")
}

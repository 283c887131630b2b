// Package eventstore is an append-only event store on sharded Postgres.
//
// A stream lives on the shard its id hashes to (table events, key
// stream_id); every statement here names the stream id, so the proxy
// routes it to that one shard, and an append with its snapshot and any
// outbox rows the caller adds is a one-shard transaction.
//
// Concurrency: appends carry the version the writer expects the stream to
// be at; the primary key (stream_id, version) lets exactly one of several
// concurrent writers at the same expected version commit, the others get a
// *ConflictError. Idempotency: events carry ids chosen by the writer; an
// append whose event ids are already in the stream returns the original
// result instead of appending again (a retry after a lost acknowledgement).
//
// Every event row records the id of the transaction that wrote it (xid8)
// and a per-shard sequence number, so that readers can consume a shard in
// commit-safe order (see Store.ReadShard).
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema creates the store's tables (through the proxy: DDL is broadcast to
// every shard of the tables' strategy).
var Schema = []string{
	// seq counts per shard: CREATE SEQUENCE through the proxy makes a
	// sequence on every shard, each numbering its own shard's events (a
	// bigserial column, whose values Postgres promises unique in the
	// whole table, is refused on a sharded table).
	`CREATE SEQUENCE IF NOT EXISTS events_seq`,
	`CREATE TABLE IF NOT EXISTS events (
		stream_id      text        NOT NULL,
		version        bigint      NOT NULL,
		event_id       uuid        NOT NULL,
		type           text        NOT NULL,
		schema_version int         NOT NULL DEFAULT 1,
		data           jsonb       NOT NULL,
		metadata       jsonb       NOT NULL DEFAULT '{}',
		recorded_at    timestamptz NOT NULL DEFAULT now(),
		tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
		seq            bigint      NOT NULL DEFAULT nextval('events_seq'),
		PRIMARY KEY (stream_id, version),
		UNIQUE (stream_id, event_id)
	)`,
	`CREATE INDEX IF NOT EXISTS events_tx_seq ON events (tx_id, seq)`,
	`CREATE TABLE IF NOT EXISTS snapshots (
		stream_id  text        NOT NULL PRIMARY KEY,
		version    bigint      NOT NULL,
		state      jsonb       NOT NULL,
		taken_at   timestamptz NOT NULL DEFAULT now()
	)`,
}

// NoStream is the expected version of a stream that has no events yet.
const NoStream int64 = 0

// NewEvent is an event to append. ID makes the append idempotent: use a
// fresh random id per logical event, or a deterministic one when the same
// decision may be taken twice (a redelivered message).
type NewEvent struct {
	ID            string // uuid
	Type          string
	SchemaVersion int // 0 means 1
	Data          any // marshalled to JSON
	Metadata      Metadata
}

// Metadata travels with every event.
type Metadata struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	// CustomerID lets projections partition order events by the read
	// model's shard key without loading the stream.
	CustomerID int64 `json:"customer_id,omitempty"`
}

// Event is a stored event.
type Event struct {
	StreamID      string
	Version       int64
	ID            string
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	RecordedAt    time.Time
	TxID          uint64 // writing transaction (xid8)
	Seq           int64  // per-shard insertion order
}

// ConflictError reports that the stream was not at the expected version.
type ConflictError struct {
	StreamID string
	Expected int64
	Actual   int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("stream %s: expected version %d, stream is at %d", e.StreamID, e.Expected, e.Actual)
}

// ErrIDReuse reports an append whose event ids were partly stored already:
// ids name logical events, so a retry must resend the same batch.
var ErrIDReuse = errors.New("eventstore: some but not all event ids of the append are already stored")

// Upcaster brings a stored event to the current schema of its type; it may
// change Type, Data and SchemaVersion. It runs on every loaded event.
type Upcaster func(*Event) error

// Store appends and loads streams through a pool connected to the proxy.
type Store struct {
	Pool *pgxpool.Pool
	// Upcast, if set, is applied to every event read.
	Upcast Upcaster
}

// AppendResult says where an append landed.
type AppendResult struct {
	FirstVersion, LastVersion int64
	Duplicate                 bool // the events were already stored (idempotent retry)
}

// Append appends events at expected in its own transaction. See AppendTx.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events []NewEvent) (AppendResult, error) {
	var res AppendResult
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var err error
		res, err = AppendTx(ctx, tx, stream, expected, events)
		return err
	})
	if err != nil {
		return s.Resolve(ctx, stream, expected, events, err)
	}
	return res, nil
}

// AppendTx appends events to stream inside tx, which the caller commits
// (together with its own rows on the same shard, e.g. outbox messages).
// The stream must be at version expected. If the call returns a
// *pgconn.PgError unique violation, tx is aborted: Append turns that into
// a *ConflictError or a duplicate result after the rollback.
func AppendTx(ctx context.Context, tx pgx.Tx, stream string, expected int64, events []NewEvent) (AppendResult, error) {
	if len(events) == 0 {
		return AppendResult{}, errors.New("eventstore: empty append")
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	if res, dup, err := existing(ctx, tx, stream, ids); err != nil || dup {
		return res, err
	}
	// The key allows version expected+1 even when the stream is shorter:
	// refuse such a gap. Checked before the first insert on purpose: the
	// transaction gets its id (xid8) at its first write, so the event at
	// version expected, already committed here, has a smaller transaction
	// id, and position order (tx_id, seq) agrees with version order within
	// every stream. Callers must not write in tx before AppendTx.
	if expected > 0 {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = $2)`,
			stream, expected).Scan(&ok); err != nil {
			return AppendResult{}, err
		}
		if !ok {
			var actual int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1 AND version < $2`,
				stream, expected).Scan(&actual); err != nil {
				return AppendResult{}, err
			}
			return AppendResult{}, &ConflictError{StreamID: stream, Expected: expected, Actual: actual}
		}
	}
	batch := &pgx.Batch{}
	for i, e := range events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			return AppendResult{}, fmt.Errorf("eventstore: %s data: %w", e.Type, err)
		}
		meta, err := json.Marshal(e.Metadata)
		if err != nil {
			return AppendResult{}, err
		}
		sv := e.SchemaVersion
		if sv == 0 {
			sv = 1
		}
		batch.Queue(`INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			stream, expected+int64(i)+1, e.ID, e.Type, sv, data, meta)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return AppendResult{}, err
	}
	return AppendResult{FirstVersion: expected + 1, LastVersion: expected + int64(len(events))}, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// existing finds the versions of ids in stream: all found is a duplicate
// append, none found a new one, some found ErrIDReuse.
func existing(ctx context.Context, q querier, stream string, ids []string) (AppendResult, bool, error) {
	var n, lo, hi int64
	err := q.QueryRow(ctx, `SELECT count(*), coalesce(min(version), 0), coalesce(max(version), 0)
		FROM events WHERE stream_id = $1 AND event_id = ANY($2::uuid[])`, stream, ids).Scan(&n, &lo, &hi)
	if err != nil {
		return AppendResult{}, false, err
	}
	switch {
	case n == 0:
		return AppendResult{}, false, nil
	case n == int64(len(ids)):
		return AppendResult{FirstVersion: lo, LastVersion: hi, Duplicate: true}, true, nil
	default:
		return AppendResult{}, false, ErrIDReuse
	}
}

func version(ctx context.Context, q querier, stream string) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1`, stream).Scan(&v)
	return v, err
}

// Resolve turns a unique violation of a rolled-back append into
// its meaning: the same events committed by a concurrent attempt
// (duplicate: the original result) or another writer's events (conflict).
// Other errors pass through. Callers of AppendTx use it after rolling back.
func (s *Store) Resolve(ctx context.Context, stream string, expected int64, events []NewEvent, err error) (AppendResult, error) {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "23505" {
		return AppendResult{}, err
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	if res, dup, derr := existing(ctx, s.Pool, stream, ids); derr != nil || dup {
		return res, derr
	}
	actual, verr := version(ctx, s.Pool, stream)
	if verr != nil {
		return AppendResult{}, errors.Join(err, verr)
	}
	return AppendResult{}, &ConflictError{StreamID: stream, Expected: expected, Actual: actual}
}

// Version returns the stream's current version (0 when empty).
func (s *Store) Version(ctx context.Context, stream string) (int64, error) {
	return version(ctx, s.Pool, stream)
}

// Load returns the stream's events after version after, upcast.
func (s *Store) Load(ctx context.Context, stream string, after int64) ([]Event, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream_id = $1 AND version > $2 ORDER BY version`, stream, after)
	if err != nil {
		return nil, err
	}
	return s.collect(rows)
}

const eventColumns = `stream_id, version, event_id::text, type, schema_version, data, metadata, recorded_at, tx_id::text::bigint, seq`

func (s *Store) collect(rows pgx.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var meta []byte
		var tx int64
		if err := rows.Scan(&e.StreamID, &e.Version, &e.ID, &e.Type, &e.SchemaVersion, &e.Data, &meta,
			&e.RecordedAt, &tx, &e.Seq); err != nil {
			return nil, err
		}
		e.TxID = uint64(tx)
		if err := json.Unmarshal(meta, &e.Metadata); err != nil {
			return nil, fmt.Errorf("eventstore: %s v%d metadata: %w", e.StreamID, e.Version, err)
		}
		if s.Upcast != nil {
			if err := s.Upcast(&e); err != nil {
				return nil, fmt.Errorf("eventstore: upcasting %s v%d: %w", e.StreamID, e.Version, err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Snapshot is a stream's folded state at Version.
type Snapshot struct {
	Version int64
	State   json.RawMessage
}

// LoadSnapshot returns the stream's snapshot; ok is false when there is none.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (snap Snapshot, ok bool, err error) {
	err = s.Pool.QueryRow(ctx, `SELECT version, state FROM snapshots WHERE stream_id = $1`, stream).
		Scan(&snap.Version, &snap.State)
	if errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, false, nil
	}
	return snap, err == nil, err
}

// SaveSnapshotTx stores state as the stream's snapshot at version inside tx
// (the append's transaction: same shard), keeping the newest one.
func SaveSnapshotTx(ctx context.Context, tx pgx.Tx, stream string, version int64, state any) error {
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO snapshots (stream_id, version, state) VALUES ($1, $2, $3)
		ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, taken_at = now()
		WHERE snapshots.version < EXCLUDED.version`, stream, version, b)
	return err
}

// Position orders events within one shard: by writing transaction, then by
// sequence. Events of a transaction become visible together at its commit.
type Position struct {
	TxID uint64
	Seq  int64
}

// ReadShard returns up to limit events of one shard after pos, in position
// order, but only events whose writing transaction is older than every
// transaction still running on that shard (tx_id < xmin of a current
// snapshot). Such a transaction has ended: its events are all visible, or
// rolled back and never will be. Any transaction that commits later has a
// larger id, so a reader that advances pos only through returned events
// never skips an event that commits late — the gap bug of Marten, Axon and
// Watermill, where a sequence number committed after a larger one was read.
//
// q must reach shard's backend directly: the statement carries a
// /* shard: name */ hint, so a pool connected to the proxy works.
func (s *Store) ReadShard(ctx context.Context, q querier, shard string, pos Position, limit int) ([]Event, error) {
	rows, err := q.Query(ctx, `/* shard: `+shard+` */ SELECT `+eventColumns+` FROM events
		WHERE (tx_id, seq) > ($1::text::xid8, $2)
		  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY tx_id, seq LIMIT $3`, fmt.Sprint(pos.TxID), pos.Seq, limit)
	if err != nil {
		return nil, err
	}
	return s.collect(rows)
}

// Behind counts the shard's events after pos, visible or not yet (lag).
func Behind(ctx context.Context, q querier, shard string, pos Position) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `/* shard: `+shard+` */ SELECT count(*) FROM events
		WHERE (tx_id, seq) > ($1::text::xid8, $2)`, fmt.Sprint(pos.TxID), pos.Seq).Scan(&n)
	return n, err
}

// Package outbox is the transactional outbox and inbox of the cqrs
// services. A service writes its messages into its own outbox table in the
// same transaction as the state change (so a message exists iff the change
// committed); a Relay per shard delivers them at least once; receivers
// dedup by message id in an inbox table written in the same transaction
// as their effect (so each message takes effect once).
//
// Tables are per service and carry the service's shard key column, so an
// outbox row lives on the shard of the change that produced it.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Table names an outbox or inbox table and its shard key column.
type Table struct {
	Name   string // e.g. payment_outbox
	KeyCol string // e.g. customer_id
	KeyDDL string // the key column's SQL type, e.g. bigint
}

// OutboxSchema creates an outbox table. Ids come from each shard's own
// sequence, and the relay reads each shard on its own, so they need only
// be unique per shard; the primary key says so by leading with the shard
// key (shardproxy refuses a uniqueness constraint without it, which each
// shard would enforce on its rows alone).
func (t Table) OutboxSchema() []string {
	return []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		%s %s NOT NULL,
		id bigserial NOT NULL,
		message_id uuid NOT NULL,
		type text NOT NULL,
		payload jsonb NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now(),
		attempts int NOT NULL DEFAULT 0,
		next_at timestamptz NOT NULL DEFAULT now(),
		last_error text,
		delivered_at timestamptz,
		PRIMARY KEY (%s, id),
		UNIQUE (%s, message_id)
	)`, t.Name, t.KeyCol, t.KeyDDL, t.KeyCol, t.KeyCol),
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_pending ON %s (id) WHERE delivered_at IS NULL`, t.Name, t.Name)}
}

// InboxSchema creates an inbox (dedup) table; reply keeps the outcome so
// that a duplicate gets the original answer.
func (t Table) InboxSchema() []string {
	return []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		%s %s NOT NULL,
		message_id text NOT NULL,
		reply jsonb,
		received_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (%s, message_id)
	)`, t.Name, t.KeyCol, t.KeyDDL, t.KeyCol)}
}

// Message is one outbox message.
type Message struct {
	ID      string // uuid; derived ids make re-emission idempotent
	Type    string
	Payload json.RawMessage
	Key     any // the shard key value of the row that produced it
}

// Put writes m into outbox t inside tx; a message id already there is kept
// (re-emitting the same decision is a no-op).
func (t Table) Put(ctx context.Context, tx pgx.Tx, key any, id, typ string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s, message_id, type, payload) VALUES ($1, $2, $3, $4)
		ON CONFLICT (%s, message_id) DO NOTHING`, t.Name, t.KeyCol, t.KeyCol), key, id, typ, b)
	return err
}

// Seen records message id in inbox t inside tx. It returns the stored
// reply and true when the message was processed before (the caller then
// does nothing but answer with it).
func (t Table) Seen(ctx context.Context, tx pgx.Tx, key any, id string) (json.RawMessage, bool, error) {
	var reply json.RawMessage
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT reply FROM %s WHERE %s = $1 AND message_id = $2`, t.Name, t.KeyCol), key, id).Scan(&reply)
	if err == nil {
		return reply, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, err
	}
	return nil, false, nil
}

// Record stores the reply to message id inside tx (after Seen said new).
// A concurrent duplicate makes one of the two transactions fail on the
// primary key; its caller retries and then finds the reply.
func (t Table) Record(ctx context.Context, tx pgx.Tx, key any, id string, reply any) error {
	b, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s, message_id, reply) VALUES ($1, $2, $3)`, t.Name, t.KeyCol), key, id, b)
	return err
}

// Pending counts the undelivered messages of t on shard (backlog metric).
func (t Table) Pending(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, shard string) (count int64, oldest time.Duration, err error) {
	var age float64
	err = q.QueryRow(ctx, fmt.Sprintf(`/* shard: %s */ SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM %s WHERE delivered_at IS NULL`, shard, t.Name)).Scan(&count, &age)
	return count, time.Duration(age * float64(time.Second)), err
}

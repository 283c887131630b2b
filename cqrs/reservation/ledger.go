// Package reservation is the state-based write model shared by the payment
// service (customer credit) and the inventory service (product stock): an
// account row with available and reserved amounts, one reservation row per
// (account, order), an inbox for dedup and an outbox for the service's
// events — all keyed by the account id, so every command is one
// transaction on the account's shard.
//
// Exactly-once effects: a message id seen before returns the stored reply
// (inbox, same transaction as the effect). The reservation row also makes
// each order's effect happen at most once whatever the message ids: a
// release before the reserve leaves a tombstone that refuses the late
// reserve, so a compensation that overtakes its action cannot leak.
package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/outbox"
)

// Reservation states.
const (
	Reserved = "reserved"
	Released = "released" // compensated, or a tombstone of a release that came first
	Rejected = "rejected" // not enough available
	Consumed = "consumed" // shipped (stock) / captured (credit)
)

// Ledger is one service's tables.
type Ledger struct {
	Service      string // "payment", "inventory": event names and errors
	Accounts     string // customers, products
	KeyCol       string // customer_id, product_id
	Reservations string // credit_reservations, stock_reservations
	Inbox        outbox.Table
	Outbox       outbox.Table
	// Event types written to the outbox.
	EvReserved, EvRejected, EvReleased, EvConsumed string

	Pool *pgxpool.Pool
	// Fail, if set, is called inside every command's transaction before
	// the commit; an error aborts it (fault injection for tests and load).
	Fail func(op string, account int64) error
}

// Schema creates the ledger's tables.
func (l *Ledger) Schema() []string {
	s := []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			%s bigint PRIMARY KEY,
			name text NOT NULL DEFAULT '',
			initial bigint NOT NULL,
			available bigint NOT NULL CHECK (available >= 0),
			reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
			consumed bigint NOT NULL DEFAULT 0 CHECK (consumed >= 0)
		)`, l.Accounts, l.KeyCol),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			%s bigint NOT NULL,
			order_id text NOT NULL,
			amount bigint NOT NULL,
			state text NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (%s, order_id)
		)`, l.Reservations, l.KeyCol, l.KeyCol),
	}
	s = append(s, l.Inbox.InboxSchema()...)
	return append(s, l.Outbox.OutboxSchema()...)
}

// Reply is a command's outcome; OK false is a business refusal (not an
// error: it is final and stored for duplicates).
type Reply struct {
	OK     bool   `json:"ok"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Event is the payload of the ledger's outbox messages.
type Event struct {
	OrderID string `json:"order_id"`
	Account int64  `json:"account"`
	Amount  int64  `json:"amount"`
	Reply   Reply  `json:"reply"`
	// CausationID is the message that caused it (the saga or event).
	CausationID string `json:"causation_id"`
}

// Open creates an account with amount available; an existing one is kept.
func (l *Ledger) Open(ctx context.Context, account int64, name string, amount int64) error {
	_, err := l.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s, name, initial, available) VALUES ($1, $2, $3, $3)
		ON CONFLICT (%s) DO NOTHING`, l.Accounts, l.KeyCol, l.KeyCol), account, name, amount)
	return err
}

// Balance is an account's amounts.
type Balance struct {
	Initial, Available, Reserved, Consumed int64
}

// Balance reads one account; ok is false if it does not exist.
func (l *Ledger) Balance(ctx context.Context, account int64) (b Balance, ok bool, err error) {
	err = l.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT initial, available, reserved, consumed FROM %s WHERE %s = $1`,
		l.Accounts, l.KeyCol), account).Scan(&b.Initial, &b.Available, &b.Reserved, &b.Consumed)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, false, nil
	}
	return b, err == nil, err
}

// Reserve reserves amount of account for order.
func (l *Ledger) Reserve(ctx context.Context, msgID string, account int64, order string, amount int64) (Reply, error) {
	return l.command(ctx, "reserve", msgID, account, order, func(tx pgx.Tx, state string, found bool) (Reply, change, error) {
		if found {
			// Decided before under another message id: same answer.
			return Reply{OK: state == Reserved || state == Consumed, State: state, Reason: reasonOf(state)}, noChange, nil
		}
		var avail int64
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT available FROM %s WHERE %s = $1 FOR UPDATE`, l.Accounts, l.KeyCol), account).Scan(&avail)
		if errors.Is(err, pgx.ErrNoRows) {
			return Reply{State: Rejected, Reason: "unknown " + l.KeyCol}, noChange, nil // nothing stored: no account to key it to
		}
		if err != nil {
			return Reply{}, noChange, err
		}
		if avail < amount {
			return Reply{State: Rejected, Reason: "insufficient " + l.Service}, l.insert(Rejected, 0), nil
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET available = available - $2, reserved = reserved + $2 WHERE %s = $1`,
			l.Accounts, l.KeyCol), account, amount); err != nil {
			return Reply{}, noChange, err
		}
		return Reply{OK: true, State: Reserved}, l.insert(Reserved, amount), nil
	}, amount)
}

func reasonOf(state string) string {
	switch state {
	case Rejected:
		return "rejected before"
	case Released:
		return "released before (order compensated)"
	}
	return ""
}

// Release gives a reservation of order back; releasing what was never
// reserved leaves a tombstone so that a late reserve is refused.
func (l *Ledger) Release(ctx context.Context, msgID string, account int64, order string) (Reply, error) {
	return l.command(ctx, "release", msgID, account, order, func(tx pgx.Tx, state string, found bool) (Reply, change, error) {
		switch {
		case !found:
			return Reply{OK: true, State: Released}, l.insert(Released, 0), nil
		case state == Reserved:
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET available = available + r.amount, reserved = reserved - r.amount
				FROM %s r WHERE %s.%s = $1 AND r.%s = $1 AND r.order_id = $2`,
				l.Accounts, l.Reservations, l.Accounts, l.KeyCol, l.KeyCol), account, order); err != nil {
				return Reply{}, noChange, err
			}
			return Reply{OK: true, State: Released}, updateIt, nil
		case state == Consumed:
			return Reply{State: Consumed, Reason: "already consumed"}, noChange, nil
		}
		return Reply{OK: true, State: state}, noChange, nil // released or rejected: nothing held
	}, 0)
}

// Consume turns a reservation into consumption (stock shipped, credit
// captured): reserved moves to consumed.
func (l *Ledger) Consume(ctx context.Context, msgID string, account int64, order string) (Reply, error) {
	return l.command(ctx, "consume", msgID, account, order, func(tx pgx.Tx, state string, found bool) (Reply, change, error) {
		switch {
		case found && state == Reserved:
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET consumed = consumed + r.amount, reserved = reserved - r.amount
				FROM %s r WHERE %s.%s = $1 AND r.%s = $1 AND r.order_id = $2`,
				l.Accounts, l.Reservations, l.Accounts, l.KeyCol, l.KeyCol), account, order); err != nil {
				return Reply{}, noChange, err
			}
			return Reply{OK: true, State: Consumed}, updateIt, nil
		case found && state == Consumed:
			return Reply{OK: true, State: Consumed}, noChange, nil
		}
		return Reply{State: state, Reason: "nothing reserved"}, noChange, nil
	}, 0)
}

// change is what a decision does to the reservation row: nothing, insert
// it in the reply's state with amount, or move it to the reply's state.
type change struct {
	insert, update bool
	amount         int64
}

var (
	noChange = change{}
	updateIt = change{update: true}
)

func (l *Ledger) insert(_ string, amount int64) change { return change{insert: true, amount: amount} }

type decideFunc func(tx pgx.Tx, state string, found bool) (Reply, change, error)

// command runs one idempotent command in one transaction on the
// account's shard: inbox check, decide, reservation row, inbox record,
// outbox event.
func (l *Ledger) command(ctx context.Context, op, msgID string, account int64, order string, decide decideFunc, amount int64) (Reply, error) {
	var reply Reply
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
			if prev, seen, err := l.Inbox.Seen(ctx, tx, account, msgID); err != nil {
				return err
			} else if seen {
				return jsonUnmarshal(prev, &reply)
			}
			var state string
			err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT state FROM %s WHERE %s = $1 AND order_id = $2 FOR UPDATE`,
				l.Reservations, l.KeyCol), account, order).Scan(&state)
			found := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			r, write, err := decide(tx, state, found)
			if err != nil {
				return err
			}
			reply = r
			switch {
			case write.insert:
				if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s, order_id, amount, state) VALUES ($1, $2, $3, $4)`,
					l.Reservations, l.KeyCol), account, order, write.amount, r.State); err != nil {
					return err
				}
			case write.update:
				if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET state = $3, updated_at = now() WHERE %s = $1 AND order_id = $2`,
					l.Reservations, l.KeyCol), account, order, r.State); err != nil {
					return err
				}
			}
			if r.Reason == "unknown "+l.KeyCol {
				return nil // no account row: nothing of ours to key inbox/outbox rows to
			}
			if err := l.Inbox.Record(ctx, tx, account, msgID, reply); err != nil {
				return err
			}
			if write != noChange {
				ev := map[string]string{"reserve": l.EvRejected, "release": l.EvReleased, "consume": l.EvConsumed}[op]
				if op == "reserve" && r.OK {
					ev = l.EvReserved
				}
				if err := l.Outbox.Put(ctx, tx, account, eventstore.DeriveID(l.Service, op, msgID), ev,
					Event{OrderID: order, Account: account, Amount: amount, Reply: r, CausationID: msgID}); err != nil {
					return err
				}
			}
			if l.Fail != nil {
				return l.Fail(op, account)
			}
			return nil
		})
		// Two deliveries of one message racing: the loser's insert hits
		// a primary key; run again and find the winner's reply.
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "23505" && attempt < 3 {
			continue
		}
		return reply, err
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Package payment is the payment service: customer credit, reserved for
// orders and released on compensation (state-based write model with a
// transactional outbox; see package reservation).
package payment

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/outbox"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
)

// Event types of payment_outbox.
const (
	CreditReserved = "CreditReserved"
	CreditRejected = "CreditRejected"
	CreditReleased = "CreditReleased"
	CreditCaptured = "CreditCaptured"
)

// Outbox is the payment service's outbox (key customer_id).
var Outbox = outbox.Table{Name: "payment_outbox", KeyCol: "customer_id", KeyDDL: "bigint"}

// New returns the payment service on pool (connected to the proxy).
func New(pool *pgxpool.Pool) *reservation.Ledger {
	return &reservation.Ledger{
		Service: "credit", Accounts: "customers", KeyCol: "customer_id", Reservations: "credit_reservations",
		Inbox:      outbox.Table{Name: "payment_inbox", KeyCol: "customer_id", KeyDDL: "bigint"},
		Outbox:     Outbox,
		EvReserved: CreditReserved, EvRejected: CreditRejected, EvReleased: CreditReleased, EvConsumed: CreditCaptured,
		Pool: pool,
	}
}

package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/outbox"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
)

// Choreography event types published by the inventory reaction (one per
// order, beside the per-product StockReserved/StockRejected events).
const (
	OrderStockReserved = "OrderStockReserved"
	OrderStockRejected = "OrderStockRejected"
)

// Choreography is the checkout without a coordinator: each service reacts
// to the previous one's outbox events (delivered at least once, so every
// reaction is idempotent):
//
//	OrderPlaced        -> payment reserves credit   -> CreditReserved | CreditRejected
//	CreditReserved     -> inventory reserves stock  -> OrderStockReserved | OrderStockRejected
//	OrderStockReserved -> order confirmed, saga COMPLETED (one transaction)
//	CreditRejected, OrderStockRejected, failed confirm -> order cancelled
//	OrderCancelled     -> credit and stock released, saga COMPENSATED
//
// Every compensation goes through OrderCancelled, the same policy that
// releases a customer's own cancellation, so there is one release path.
type Choreography struct {
	Pool      *pgxpool.Pool
	Orders    *orders.Service
	Payment   *reservation.Ledger
	Inventory *reservation.Ledger
	// InventoryOutbox receives the per-order stock outcome.
	InventoryOutbox outbox.Table
}

// OnPlaced reserves the order's credit (payment's reaction to OrderPlaced).
func (c *Choreography) OnPlaced(ctx context.Context, m outbox.Message, p Payload) error {
	r, err := c.Payment.Reserve(ctx, eventstore.DeriveID(m.ID, "reserve_credit"), p.CustomerID, p.OrderID, p.Total)
	if err != nil {
		return err
	}
	return Log(ctx, c.Pool, p.OrderID, "reserve_credit", Choreographed, outcomeOf(r), r.Reason)
}

func outcomeOf(r reservation.Reply) string {
	if r.OK {
		return "ok"
	}
	return "rejected"
}

// OnCreditReserved reserves every item (inventory's reaction) and then
// publishes the order's stock outcome. The outcome message is written
// after the reservations, in the outbox of the order's last product; a
// crash in between redelivers CreditReserved, the reservations answer
// from the inbox, and the message id dedups the outcome.
func (c *Choreography) OnCreditReserved(ctx context.Context, m outbox.Message, orderID string) error {
	o, err := c.Orders.Load(ctx, orderID)
	if err != nil {
		return err
	}
	if o.Version == 0 {
		return fmt.Errorf("choreography: credit reserved for unknown order %s", orderID)
	}
	p := PayloadOf(o)
	outcome, reason := OrderStockReserved, ""
	for _, it := range p.Items {
		r, err := c.Inventory.Reserve(ctx, eventstore.DeriveID(m.ID, fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID, it.Quantity)
		if err != nil {
			return err
		}
		if !r.OK {
			outcome, reason = OrderStockRejected, fmt.Sprintf("product %d: %s", it.ProductID, r.Reason)
			break
		}
	}
	if outcome == OrderStockRejected {
		for _, it := range p.Items {
			if _, err := c.Inventory.Release(ctx, eventstore.DeriveID(m.ID, "release", fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID); err != nil {
				return err
			}
		}
	}
	last := p.Items[len(p.Items)-1].ProductID
	err = pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		return c.InventoryOutbox.Put(ctx, tx, last, eventstore.DeriveID(m.ID, outcome), outcome,
			map[string]any{"order_id": p.OrderID, "reason": reason})
	})
	if err != nil {
		return err
	}
	return Log(ctx, c.Pool, p.OrderID, "reserve_stock", Choreographed, map[bool]string{true: "ok", false: "rejected"}[reason == ""], reason)
}

// OnStockReserved confirms the order and completes the saga in one
// transaction (order's reaction); a refused confirmation cancels.
func (c *Choreography) OnStockReserved(ctx context.Context, orderID string) error {
	st, ok, err := Get(ctx, c.Pool, orderID)
	if err != nil || !ok {
		return err
	}
	_, err = c.Orders.Execute(ctx, orders.Command{
		OrderID: orderID, Expected: st.Payload.OrderVersion, EventID: eventstore.DeriveID(orderID, orders.EvConfirmed),
		Decide: func(o *orders.Order) ([]orders.Decision, error) { return o.Confirm() },
		InTx: func(ctx context.Context, tx pgx.Tx, _ *orders.Order) error {
			return Finish(ctx, tx, orderID, Completed, "confirm_order", "ok", "")
		},
	})
	var conflict *eventstore.ConflictError
	if errors.As(err, &conflict) || errors.Is(err, orders.ErrConfirmPending) {
		o, lerr := c.Orders.Load(ctx, orderID)
		if lerr != nil {
			return lerr
		}
		if o.Status == orders.Confirmed || o.Status == orders.Shipped {
			return nil // confirmed by an earlier delivery
		}
		return c.Cancel(ctx, orderID, "confirm refused: "+err.Error())
	}
	return err
}

// Cancel cancels the order as the compensation of a failed step
// (idempotent: a deterministic event id, an already cancelled order is
// fine).
func (c *Choreography) Cancel(ctx context.Context, orderID, reason string) error {
	_, err := c.Orders.Cancel(ctx, orderID, orders.Any, "saga compensated: "+reason, eventstore.DeriveID(orderID, orders.EvCancelled))
	if errors.Is(err, orders.ErrAlreadyCancel) {
		return nil
	}
	return err
}

// OnCancelled ends a choreography saga COMPENSATED once the cancellation
// policy released the order's credit and stock.
func (c *Choreography) OnCancelled(ctx context.Context, orderID, reason string) error {
	return pgx.BeginFunc(ctx, c.Pool, func(tx pgx.Tx) error {
		return Finish(ctx, tx, orderID, Compensated, "cancel_order", "ok", reason)
	})
}

// Finish ends a saga in state (COMPLETED or COMPENSATED) unless it has
// ended already; it logs the step either way.
func Finish(ctx context.Context, tx pgx.Tx, id, state, step, outcome, detail string) error {
	_, err := tx.Exec(ctx, `UPDATE sagas SET state = $2, finished_at = now(), finishes = finishes + 1, version = version + 1,
			failure = CASE WHEN $2 = 'COMPENSATED' AND failure = '' THEN $3 ELSE failure END
		WHERE saga_id = $1 AND finished_at IS NULL AND style = 'choreography'`, id, state, detail)
	if err != nil {
		return err
	}
	return logStep(ctx, tx, id, step, "finish", outcome, detail)
}

// Log appends a line to a saga's step log.
func Log(ctx context.Context, pool *pgxpool.Pool, id, step, action, outcome, detail string) error {
	_, err := pool.Exec(ctx, `INSERT INTO saga_steps (saga_id, step, action, outcome, detail) VALUES ($1, $2, $3, $4, $5)`,
		id, step, action, outcome, detail)
	return err
}

// StockOutcome decodes an OrderStockReserved/Rejected payload.
func StockOutcome(payload json.RawMessage) (orderID, reason string, err error) {
	var v struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
	err = json.Unmarshal(payload, &v)
	return v.OrderID, v.Reason, err
}

// Expire cancels the choreography sagas of shard that have been running
// longer than timeout (a participant that keeps failing, a lost
// service): choreography has no coordinator to time a step out, so a
// watchdog does it for the whole saga. The cancellation takes the usual
// path (OrderCancelled releases credit and stock, the saga ends
// COMPENSATED); a confirmation racing with it wins its own transaction
// and the order is then cancelled and released like any confirmed order.
func (c *Choreography) Expire(ctx context.Context, shard string, timeout time.Duration) (int, error) {
	rows, err := c.Pool.Query(ctx, `/* shard: `+shard+` */ SELECT saga_id FROM sagas
		WHERE style = 'choreography' AND finished_at IS NULL AND created_at < now() - $1::interval
		ORDER BY created_at LIMIT 100`, fmt.Sprintf("%d milliseconds", timeout.Milliseconds()))
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := c.Cancel(ctx, id, fmt.Sprintf("timed out after %v", timeout)); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

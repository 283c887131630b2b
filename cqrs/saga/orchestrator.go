package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
)

// Saga states. A saga is in flight in Running or Compensating and ends in
// Completed or Compensated exactly once (the column finishes counts the
// terminal transitions; it is 1 for every ended saga).
const (
	Running      = "RUNNING"
	Compensating = "COMPENSATING"
	Completed    = "COMPLETED"
	Compensated  = "COMPENSATED"
)

// Styles.
const (
	Orchestration = "orchestration"
	Choreographed = "choreography"
)

// Forward steps, in order; compensation runs compensateSteps in order.
var (
	forwardSteps    = []string{"reserve_credit", "reserve_stock", "confirm_order"}
	compensateSteps = []string{"release_stock", "release_credit", "cancel_order"}
)

// Payload is what the saga knows about its order.
type Payload struct {
	OrderID      string        `json:"order_id"`
	CustomerID   int64         `json:"customer_id"`
	Total        int64         `json:"total"`
	Items        []orders.Item `json:"items"` // one per product (quantities merged)
	OrderVersion int64         `json:"order_version"`
}

// PayloadOf builds the saga payload of a freshly placed order.
func PayloadOf(o *orders.Order) Payload {
	qty := map[int64]int64{}
	for _, it := range o.Items {
		qty[it.ProductID] += it.Quantity
	}
	p := Payload{OrderID: o.ID, CustomerID: o.CustomerID, Total: o.Total(), OrderVersion: o.Version}
	for id, q := range qty {
		p.Items = append(p.Items, orders.Item{ProductID: id, Quantity: q})
	}
	sort.Slice(p.Items, func(i, j int) bool { return p.Items[i].ProductID < p.Items[j].ProductID })
	return p
}

// StartTx inserts the saga of a just placed order in the placement's
// transaction (same shard: sagas are keyed like streams, by order id).
// Use it as orders.Service.InTx.
func StartTx(style string) func(ctx context.Context, tx pgx.Tx, o *orders.Order, evs []eventstore.NewEvent) error {
	return func(ctx context.Context, tx pgx.Tx, o *orders.Order, evs []eventstore.NewEvent) error {
		if len(evs) == 0 || evs[0].Type != orders.EvPlaced {
			return nil
		}
		b, err := json.Marshal(PayloadOf(o))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sagas (saga_id, style, state, payload) VALUES ($1, $2, $3, $4)`,
			o.ID, style, Running, b); err != nil {
			return err
		}
		return logStep(ctx, tx, o.ID, "start", style, "ok", "")
	}
}

func logStep(ctx context.Context, tx pgx.Tx, saga, step, action, outcome, detail string) error {
	_, err := tx.Exec(ctx, `INSERT INTO saga_steps (saga_id, step, action, outcome, detail) VALUES ($1, $2, $3, $4, $5)`,
		saga, step, action, outcome, detail)
	return err
}

// Orchestrator drives orchestration sagas: a persisted state machine per
// saga (sagas row + saga_steps log), advanced one step at a time by
// whichever orchestrator process holds the saga's lease.
//
// Crash safety: a step's participant call and the saga's transition are
// separate transactions on different shards. An orchestrator that dies in
// between leaves the lease to expire; the next one repeats the step with
// the same message id, and the participant answers from its inbox. The
// transition is guarded by the saga's version, so an orchestrator whose
// lease expired while it was slow cannot overwrite a newer transition.
type Orchestrator struct {
	Pool      *pgxpool.Pool
	Orders    *orders.Service
	Payment   *reservation.Ledger
	Inventory *reservation.Ledger
	Shards    []string
	Log       *slog.Logger

	Lease       time.Duration // default 10s
	StepTimeout time.Duration // a forward step retried longer than this compensates; default 5s
	BackoffMin  time.Duration // first retry delay, doubled per attempt; default 50ms
	BackoffMax  time.Duration // default 2s
	Batch       int           // sagas claimed per shard per pass; default 32
	// Fault, if set, is called before every step; an error is a transient
	// failure of that step (fault injection for tests and load).
	Fault func(sagaID, step string) error
	// Crash, if set, is asked after a step's participant call and before
	// its transition is recorded; true makes RunOnce stop on the spot and
	// return ErrCrashed, leaving the lease held — what a SIGKILL of the
	// orchestrator process leaves behind (chaos tests).
	Crash func(sagaID, step string) bool
}

// ErrCrashed is returned by RunOnce when Crash simulated a process death.
var ErrCrashed = errors.New("saga: orchestrator crashed (simulated)")

func (o *Orchestrator) defaults() {
	if o.Lease == 0 {
		o.Lease = 10 * time.Second
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = 5 * time.Second
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 50 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 2 * time.Second
	}
	if o.Batch == 0 {
		o.Batch = 32
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// claimed is a saga this orchestrator holds the lease of.
type claimed struct {
	ID          string
	State       string
	Step        int
	Attempts    int
	Payload     Payload
	StepStarted time.Time
	Version     int64
}

// RunOnce claims the due orchestration sagas of shard and advances each
// by one step. It returns how many it advanced.
func (o *Orchestrator) RunOnce(ctx context.Context, shard string) (int, error) {
	o.defaults()
	rows, err := o.Pool.Query(ctx, `/* shard: `+shard+` */ UPDATE sagas SET lease_until = now() + $1::interval, version = version + 1
		WHERE saga_id IN (SELECT saga_id FROM sagas WHERE style = 'orchestration' AND finished_at IS NULL AND next_at <= now()
			AND (lease_until IS NULL OR lease_until < now()) ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING saga_id, state, step, attempts, payload, step_started, version`,
		fmt.Sprintf("%d milliseconds", o.Lease.Milliseconds()), o.Batch)
	if err != nil {
		return 0, err
	}
	var batch []claimed
	for rows.Next() {
		var c claimed
		var payload []byte
		if err := rows.Scan(&c.ID, &c.State, &c.Step, &c.Attempts, &payload, &c.StepStarted, &c.Version); err != nil {
			rows.Close()
			return 0, err
		}
		if err := json.Unmarshal(payload, &c.Payload); err != nil {
			rows.Close()
			return 0, err
		}
		batch = append(batch, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, c := range batch {
		if err := o.advance(ctx, c); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if errors.Is(err, ErrCrashed) {
				return 0, err
			}
			o.Log.Warn("saga step", "saga", c.ID, "err", err)
		}
	}
	return len(batch), nil
}

// Run advances sagas on every shard every interval until ctx ends.
func (o *Orchestrator) Run(ctx context.Context, interval time.Duration) error {
	o.defaults()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, s := range o.Shards {
			if _, err := o.RunOnce(ctx, s); err != nil && ctx.Err() == nil {
				o.Log.Warn("saga pass", "shard", s, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// errLeaseLost: another orchestrator moved the saga on.
var errLeaseLost = errors.New("saga: lease lost (transition by another orchestrator)")

// outcome of one step.
type outcome struct {
	ok     bool   // step done
	reject string // business refusal: compensate
	err    error  // transient: retry with backoff until the step times out
}

func (o *Orchestrator) advance(ctx context.Context, c claimed) error {
	if c.State == Running {
		return o.forward(ctx, c)
	}
	return o.compensate(ctx, c)
}

func (o *Orchestrator) forward(ctx context.Context, c claimed) error {
	step := forwardSteps[c.Step]
	p := c.Payload
	msg := eventstore.DeriveID(c.ID, step)
	var out outcome
	if o.Fault != nil {
		out.err = o.Fault(c.ID, step)
	}
	if out.err == nil {
		switch step {
		case "reserve_credit":
			r, err := o.Payment.Reserve(ctx, msg, p.CustomerID, p.OrderID, p.Total)
			out = replyOutcome(r, err)
		case "reserve_stock":
			out = outcome{ok: true}
			for _, it := range p.Items {
				r, err := o.Inventory.Reserve(ctx, eventstore.DeriveID(msg, fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID, it.Quantity)
				if out = replyOutcome(r, err); !out.ok {
					break
				}
			}
		case "confirm_order":
			// The confirmation and the saga's completion commit together
			// (order stream and saga share a shard).
			return o.confirm(ctx, c)
		}
	}
	if o.Crash != nil && o.Crash(c.ID, step) {
		return ErrCrashed
	}
	return o.record(ctx, c, step, out)
}

func replyOutcome(r reservation.Reply, err error) outcome {
	switch {
	case err != nil:
		return outcome{err: err}
	case !r.OK:
		return outcome{reject: r.Reason}
	}
	return outcome{ok: true}
}

// confirm appends OrderConfirmed at the version the saga reserved for and
// completes the saga in the same transaction. A cancelled or changed
// order is a refusal (compensate).
func (o *Orchestrator) confirm(ctx context.Context, c claimed) error {
	_, err := o.Orders.Execute(ctx, orders.Command{
		OrderID: c.ID, Expected: c.Payload.OrderVersion, EventID: eventstore.DeriveID(c.ID, orders.EvConfirmed),
		Decide: func(ord *orders.Order) ([]orders.Decision, error) { return ord.Confirm() },
		InTx: func(ctx context.Context, tx pgx.Tx, _ *orders.Order) error {
			return o.transition(ctx, tx, c, Completed, len(forwardSteps), "confirm_order", "ok", "")
		},
	})
	var conflict *eventstore.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &conflict), errors.Is(err, orders.ErrConfirmPending), errors.Is(err, orders.ErrNotFound):
		// Completed by a previous attempt whose transition committed?
		// Then the saga is no longer ours: the guarded transition below
		// fails with errLeaseLost and nothing changes.
		return o.record(ctx, c, "confirm_order", outcome{reject: err.Error()})
	}
	return o.record(ctx, c, "confirm_order", outcome{err: err})
}

// record stores a forward step's outcome and the saga's next state.
func (o *Orchestrator) record(ctx context.Context, c claimed, step string, out outcome) error {
	return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		switch {
		case out.ok:
			return o.transition(ctx, tx, c, Running, c.Step+1, step, "ok", "")
		case out.reject != "":
			return o.transition(ctx, tx, c, Compensating, 0, step, "rejected", out.reject)
		case time.Since(c.StepStarted) > o.StepTimeout:
			return o.transition(ctx, tx, c, Compensating, 0, step, "timeout", out.err.Error())
		default:
			return o.retry(ctx, tx, c, step, out.err)
		}
	})
}

// transition moves the saga to state/step if this orchestrator still holds
// it (version), logs the step and releases the lease.
func (o *Orchestrator) transition(ctx context.Context, tx pgx.Tx, c claimed, state string, step int, stepName, outcome, detail string) error {
	terminal := state == Completed || state == Compensated
	failure := ""
	if state == Compensating && c.State == Running {
		failure = stepName + ": " + detail
	}
	tag, err := tx.Exec(ctx, `UPDATE sagas SET state = $3, step = $4, attempts = 0, next_at = now(), step_started = now(),
			lease_until = NULL, version = version + 1,
			failure = CASE WHEN $5 = '' THEN failure ELSE $5 END,
			finished_at = CASE WHEN $6 THEN now() END, finishes = finishes + CASE WHEN $6 THEN 1 ELSE 0 END
		WHERE saga_id = $1 AND version = $2 AND finished_at IS NULL`, c.ID, c.Version, state, step, failure, terminal)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errLeaseLost
	}
	return logStep(ctx, tx, c.ID, stepName, c.State, outcome, detail)
}

func (o *Orchestrator) retry(ctx context.Context, tx pgx.Tx, c claimed, step string, cause error) error {
	delay := o.BackoffMin << min(c.Attempts, 16)
	if delay > o.BackoffMax || delay <= 0 {
		delay = o.BackoffMax
	}
	tag, err := tx.Exec(ctx, `UPDATE sagas SET attempts = attempts + 1, next_at = now() + $3::interval, lease_until = NULL,
			version = version + 1
		WHERE saga_id = $1 AND version = $2 AND finished_at IS NULL`,
		c.ID, c.Version, fmt.Sprintf("%d milliseconds", delay.Milliseconds()))
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errLeaseLost
	}
	return logStep(ctx, tx, c.ID, step, c.State, "retry", cause.Error())
}

// compensate runs compensation step c.Step. Every compensation is run
// whatever the forward step that failed: a step that timed out may still
// have taken effect, and releasing what was never reserved is a no-op that
// leaves a tombstone. Compensations never give up: they retry with
// backoff (capped) until they succeed, and each attempt is in the log.
func (o *Orchestrator) compensate(ctx context.Context, c claimed) error {
	step := compensateSteps[c.Step]
	p := c.Payload
	msg := eventstore.DeriveID(c.ID, step)
	var err error
	if o.Fault != nil {
		err = o.Fault(c.ID, step)
	}
	if err == nil {
		switch step {
		case "release_stock":
			for _, it := range p.Items {
				if _, err = o.Inventory.Release(ctx, eventstore.DeriveID(msg, fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID); err != nil {
					break
				}
			}
		case "release_credit":
			_, err = o.Payment.Release(ctx, msg, p.CustomerID, p.OrderID)
		case "cancel_order":
			err = o.cancel(ctx, c)
			if err == nil || errors.Is(err, errLeaseLost) {
				return err
			}
		}
	}
	if o.Crash != nil && o.Crash(c.ID, step) {
		return ErrCrashed
	}
	if err != nil {
		return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error { return o.retry(ctx, tx, c, step, err) })
	}
	return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error {
		return o.transition(ctx, tx, c, Compensating, c.Step+1, step, "ok", "")
	})
}

// cancel cancels the order and ends the saga COMPENSATED in one
// transaction; an order that is already cancelled just ends the saga.
func (o *Orchestrator) cancel(ctx context.Context, c claimed) error {
	var failure string
	if err := o.Pool.QueryRow(ctx, `SELECT failure FROM sagas WHERE saga_id = $1`, c.ID).Scan(&failure); err != nil {
		return err
	}
	finish := func(ctx context.Context, tx pgx.Tx, _ *orders.Order) error {
		return o.transition(ctx, tx, c, Compensated, len(compensateSteps), "cancel_order", "ok", "")
	}
	_, err := o.Orders.Execute(ctx, orders.Command{
		OrderID: c.ID, Expected: orders.Any, EventID: eventstore.DeriveID(c.ID, orders.EvCancelled),
		Decide: func(ord *orders.Order) ([]orders.Decision, error) { return ord.Cancel("saga compensated: " + failure) },
		InTx:   finish,
	})
	if errors.Is(err, orders.ErrAlreadyCancel) || errors.Is(err, orders.ErrNotFound) {
		return pgx.BeginFunc(ctx, o.Pool, func(tx pgx.Tx) error { return finish(ctx, tx, nil) })
	}
	return err
}

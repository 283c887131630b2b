package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/inventory"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/outbox"
	"github.com/shardproxy/shardproxy/cqrs/payment"
	"github.com/shardproxy/shardproxy/cqrs/projection"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// Options configure a Service.
type Options struct {
	Style         string        // saga.Orchestration (default) or saga.Choreographed
	Shards        []string      // shard names of the proxy's map (default s0 s1 s2)
	SnapshotEvery int64         // default 20
	StepTimeout   time.Duration // saga step timeout (default 5s)
	Interval      time.Duration // worker poll interval (default 50ms)
	// Lease is how long an orchestrator holds a saga it works on (default
	// 10s): a saga whose orchestrator died waits this long to resume.
	Lease time.Duration
	// Upcast, if set, brings old event schemas up to date on every read.
	Upcast eventstore.Upcaster
	Log    *slog.Logger
}

// Service is the whole order service on one pool to the proxy.
type Service struct {
	Pool         *pgxpool.Pool
	Store        *eventstore.Store
	Orders       *orders.Service
	Payment      *reservation.Ledger
	Inventory    *reservation.Ledger
	Projector    *projection.Projector
	Queries      projection.Queries
	Orchestrator *saga.Orchestrator
	Opts         Options
	Log          *slog.Logger
	Metrics      *Metrics
	// Duplicate, if set, is asked for every relayed message whether to
	// deliver it twice (chaos: duplicated messages).
	Duplicate func() bool
}

// New builds the service; workers run with RunWorkers.
func New(pool *pgxpool.Pool, opts Options) *Service {
	if opts.Style == "" {
		opts.Style = saga.Orchestration
	}
	if len(opts.Shards) == 0 {
		opts.Shards = []string{"s0", "s1", "s2"}
	}
	if opts.SnapshotEvery == 0 {
		opts.SnapshotEvery = 20
	}
	if opts.Interval == 0 {
		opts.Interval = 50 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	store := &eventstore.Store{Pool: pool, Upcast: opts.Upcast}
	s := &Service{
		Pool: pool, Store: store, Opts: opts, Log: opts.Log,
		Orders:    &orders.Service{Store: store, SnapshotEvery: opts.SnapshotEvery, InTx: saga.StartTx(opts.Style)},
		Payment:   payment.New(pool),
		Inventory: inventory.New(pool),
		Projector: &projection.Projector{Pool: pool, Store: store, Shards: opts.Shards},
		Queries:   projection.Queries{Pool: pool},
		Metrics:   NewMetrics(),
	}
	s.Orchestrator = &saga.Orchestrator{Pool: pool, Orders: s.Orders, Payment: s.Payment, Inventory: s.Inventory,
		Shards: opts.Shards, Log: opts.Log, StepTimeout: opts.StepTimeout, Lease: opts.Lease}
	return s
}

// Input errors of PlaceOrder (HTTP 400/404).
var (
	ErrUnknownCustomer = errors.New("unknown customer")
	ErrUnknownProduct  = errors.New("unknown product")
)

// ItemRequest is an order line as a client asks for it; the price comes
// from the catalog.
type ItemRequest struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

// PriceItems prices items from the product catalog (a reference table:
// read on any shard).
func (s *Service) PriceItems(ctx context.Context, req []ItemRequest) ([]orders.Item, error) {
	items := make([]orders.Item, 0, len(req))
	for _, r := range req {
		var price int64
		err := s.Pool.QueryRow(ctx, `SELECT price FROM product_catalog WHERE product_id = $1`, r.ProductID).Scan(&price)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w %d", ErrUnknownProduct, r.ProductID)
		}
		if err != nil {
			return nil, err
		}
		items = append(items, orders.Item{ProductID: r.ProductID, Quantity: r.Quantity, Price: price})
	}
	return items, nil
}

// PlaceOrder places an order and starts its checkout saga (in the same
// transaction). The id makes it idempotent: "" picks a random one.
func (s *Service) PlaceOrder(ctx context.Context, id string, customer int64, req []ItemRequest) (*orders.Order, error) {
	defer s.Metrics.observe("place", time.Now())
	if id == "" {
		id = eventstore.NewID()
	}
	if _, ok, err := s.Payment.Balance(ctx, customer); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w %d", ErrUnknownCustomer, customer)
	}
	items, err := s.PriceItems(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.Orders.Place(ctx, id, customer, items, eventstore.Metadata{CorrelationID: id})
}

// AddItem adds a priced item to a pending order.
func (s *Service) AddItem(ctx context.Context, id string, expected int64, req ItemRequest) (*orders.Order, error) {
	defer s.Metrics.observe("add_item", time.Now())
	items, err := s.PriceItems(ctx, []ItemRequest{req})
	if err != nil {
		return nil, err
	}
	return s.Orders.AddItem(ctx, id, expected, items[0], "")
}

// Cancel cancels an order; its reservations are released by the
// cancellation policy (OrderCancelled through the outbox).
func (s *Service) Cancel(ctx context.Context, id string, expected int64, reason string) (*orders.Order, error) {
	defer s.Metrics.observe("cancel", time.Now())
	return s.Orders.Cancel(ctx, id, expected, reason, "")
}

// Ship ships a confirmed order (stock reserved -> shipped, credit captured).
func (s *Service) Ship(ctx context.Context, id string, expected int64) (*orders.Order, error) {
	defer s.Metrics.observe("ship", time.Now())
	return s.Orders.Ship(ctx, id, expected)
}

// outboxes the relays serve, with their handlers.
func (s *Service) outboxes() []struct {
	t outbox.Table
	h outbox.Handler
} {
	return []struct {
		t outbox.Table
		h outbox.Handler
	}{
		{orders.Outbox, s.onOrderEvent},
		{payment.Outbox, s.onPaymentEvent},
		{inventory.Outbox, s.onInventoryEvent},
	}
}

// Pump runs one pass of every worker on every shard (tests and load use
// it to drive the system deterministically). It reports whether anything
// moved. A failing worker does not stop the others (a participant that
// is down must not keep the watchdog or the projection from running);
// their errors are joined.
func (s *Service) Pump(ctx context.Context) (bool, error) {
	moved := false
	var errs []error
	note := func(n int, err error) {
		moved = moved || n > 0
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, sh := range s.Opts.Shards {
		for _, ob := range s.outboxes() {
			n, err := ob.t.DeliverOnce(ctx, s.Pool, sh, 100, s.deliver(ob.h))
			if err != nil {
				err = fmt.Errorf("relay %s %s: %w", ob.t.Name, sh, err)
			}
			note(n, err)
		}
		if s.Opts.Style == saga.Orchestration {
			n, err := s.Orchestrator.RunOnce(ctx, sh)
			if errors.Is(err, saga.ErrCrashed) {
				return moved, err // a dead orchestrator does nothing more
			}
			note(n, err)
		} else {
			note(s.choreography().Expire(ctx, sh, s.sagaTimeout()))
		}
		note(s.Projector.Step(ctx, sh))
	}
	return moved, errors.Join(errs...)
}

// deliver wraps a handler with the chaos duplication.
func (s *Service) deliver(h outbox.Handler) outbox.Handler {
	return func(ctx context.Context, m outbox.Message) error {
		if err := h(ctx, m); err != nil {
			return err
		}
		if s.Duplicate != nil && s.Duplicate() {
			return h(ctx, m)
		}
		return nil
	}
}

// InFlight counts sagas not ended, undelivered outbox messages and
// projection lag over all shards.
func (s *Service) InFlight(ctx context.Context) (sagas, messages, lag int64, err error) {
	for _, sh := range s.Opts.Shards {
		st, err := saga.Stats(ctx, s.Pool, sh)
		if err != nil {
			return 0, 0, 0, err
		}
		sagas += st.ByState[saga.Running] + st.ByState[saga.Compensating]
		for _, ob := range s.outboxes() {
			n, _, err := ob.t.Pending(ctx, s.Pool, sh)
			if err != nil {
				return 0, 0, 0, err
			}
			messages += n
		}
	}
	l, err := s.Projector.Lag(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, v := range l {
		lag += v
	}
	return sagas, messages, lag, nil
}

// Quiesce pumps until no saga is in flight, no message is pending and the
// read model has caught up, or ctx ends.
func (s *Service) Quiesce(ctx context.Context) error {
	for {
		moved, err := s.Pump(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn("pump", "err", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if moved {
			continue
		}
		sg, msgs, lag, err := s.InFlight(ctx)
		if err != nil {
			return err
		}
		if sg == 0 && msgs == 0 && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not quiescent: %d sagas in flight, %d messages pending, lag %d: %w", sg, msgs, lag, ctx.Err())
		case <-time.After(s.Opts.Interval):
		}
	}
}

// RunWorkers runs the relays, the orchestrator (orchestration style) and
// the projection on every shard until ctx ends. Each worker is one
// goroutine owned by the errgroup; all stop when ctx ends.
func (s *Service) RunWorkers(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, sh := range s.Opts.Shards {
		for _, ob := range s.outboxes() {
			g.Go(func() error {
				return every(ctx, s.Opts.Interval, func() {
					for {
						n, err := ob.t.DeliverOnce(ctx, s.Pool, sh, 100, s.deliver(ob.h))
						if err != nil && ctx.Err() == nil {
							s.Log.Warn("relay", "outbox", ob.t.Name, "shard", sh, "err", err)
						}
						if n == 0 || err != nil {
							return
						}
					}
				})
			})
		}
	}
	if s.Opts.Style == saga.Orchestration {
		g.Go(func() error { return s.Orchestrator.Run(ctx, s.Opts.Interval) })
	} else {
		g.Go(func() error {
			return every(ctx, s.Opts.Interval, func() {
				for _, sh := range s.Opts.Shards {
					if _, err := s.choreography().Expire(ctx, sh, s.sagaTimeout()); err != nil && ctx.Err() == nil {
						s.Log.Warn("saga watchdog", "shard", sh, "err", err)
					}
				}
			})
		})
	}
	g.Go(func() error {
		return s.Projector.Run(ctx, s.Opts.Interval, func(err error) { s.Log.Warn("projection", "err", err) })
	})
	g.Go(func() error { return every(ctx, 2*time.Second, func() { s.Metrics.Refresh(ctx, s) }) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func every(ctx context.Context, d time.Duration, f func()) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// onOrderEvent is the cancellation and shipping policy (both styles) and
// the choreography's first reaction.
func (s *Service) onOrderEvent(ctx context.Context, m outbox.Message) error {
	var msg orders.OutboxMessage
	if err := json.Unmarshal(m.Payload, &msg); err != nil {
		return err
	}
	p := saga.PayloadOf(&msg.Order)
	switch m.Type {
	case orders.EvCancelled:
		// Release whatever the order holds; tombstones refuse reserves
		// still on their way. A choreography saga ends here.
		if err := s.releaseAll(ctx, m.ID, p); err != nil {
			return err
		}
		return s.choreography().OnCancelled(ctx, p.OrderID, msg.Order.Reason)
	case orders.EvShipped:
		for _, it := range p.Items {
			if _, err := s.Inventory.Consume(ctx, eventstore.DeriveID(m.ID, fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID); err != nil {
				return err
			}
		}
		_, err := s.Payment.Consume(ctx, m.ID, p.CustomerID, p.OrderID)
		return err
	case orders.EvPlaced:
		if s.Opts.Style == saga.Choreographed {
			return s.choreoPlaced(ctx, m, p)
		}
	}
	return nil
}

func (s *Service) releaseAll(ctx context.Context, cause string, p saga.Payload) error {
	for _, it := range p.Items {
		if _, err := s.Inventory.Release(ctx, eventstore.DeriveID(cause, "release", fmt.Sprint(it.ProductID)), it.ProductID, p.OrderID); err != nil {
			return err
		}
	}
	_, err := s.Payment.Release(ctx, eventstore.DeriveID(cause, "release"), p.CustomerID, p.OrderID)
	return err
}

// sagaTimeout bounds a whole choreography saga: one step timeout per step.
func (s *Service) sagaTimeout() time.Duration {
	if s.Opts.StepTimeout > 0 {
		return 3 * s.Opts.StepTimeout
	}
	return 15 * time.Second
}

func (s *Service) choreography() *saga.Choreography {
	return &saga.Choreography{Pool: s.Pool, Orders: s.Orders, Payment: s.Payment, Inventory: s.Inventory,
		InventoryOutbox: inventory.Outbox}
}

func (s *Service) choreoPlaced(ctx context.Context, m outbox.Message, p saga.Payload) error {
	return s.choreography().OnPlaced(ctx, m, p)
}

// onPaymentEvent: choreography reactions to credit outcomes.
func (s *Service) onPaymentEvent(ctx context.Context, m outbox.Message) error {
	if s.Opts.Style != saga.Choreographed {
		return nil
	}
	var ev reservation.Event
	if err := json.Unmarshal(m.Payload, &ev); err != nil {
		return err
	}
	switch m.Type {
	case payment.CreditReserved:
		return s.choreography().OnCreditReserved(ctx, m, ev.OrderID)
	case payment.CreditRejected:
		return s.choreography().Cancel(ctx, ev.OrderID, "credit: "+ev.Reply.Reason)
	}
	return nil
}

// onInventoryEvent: choreography reactions to the order's stock outcome.
func (s *Service) onInventoryEvent(ctx context.Context, m outbox.Message) error {
	if s.Opts.Style != saga.Choreographed {
		return nil
	}
	switch m.Type {
	case saga.OrderStockReserved:
		id, _, err := saga.StockOutcome(m.Payload)
		if err != nil {
			return err
		}
		return s.choreography().OnStockReserved(ctx, id)
	case saga.OrderStockRejected:
		id, reason, err := saga.StockOutcome(m.Payload)
		if err != nil {
			return err
		}
		return s.choreography().Cancel(ctx, id, "stock: "+reason)
	}
	return nil
}

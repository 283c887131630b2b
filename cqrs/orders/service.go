package orders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/outbox"
)

// Outbox is the order service's outbox: every order event is published
// through it (message id = event id), written in the append's transaction
// on the stream's shard.
var Outbox = outbox.Table{Name: "order_outbox", KeyCol: "stream_id", KeyDDL: "text"}

// Any skips the expected-version check of a command: the service loads
// the current version and retries a few times on conflict.
const Any int64 = -1

// Service runs the commands of the Order aggregate.
type Service struct {
	Store *eventstore.Store
	// SnapshotEvery takes a snapshot when an append crosses a multiple of
	// it (0: never).
	SnapshotEvery int64
	// InTx, if set, runs inside every append's transaction (same shard as
	// the stream) after the events: the orchestrator starts its saga here.
	InTx func(ctx context.Context, tx pgx.Tx, o *Order, appended []eventstore.NewEvent) error
}

// Load folds the order from its snapshot and the events after it.
func (s *Service) Load(ctx context.Context, id string) (*Order, error) {
	o := &Order{}
	snap, ok, err := s.Store.LoadSnapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := json.Unmarshal(snap.State, o); err != nil {
			return nil, fmt.Errorf("orders: snapshot of %s: %w", id, err)
		}
		o.Version = snap.Version
	}
	evs, err := s.Store.Load(ctx, id, o.Version)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		if e.Version != o.Version+1 {
			return nil, fmt.Errorf("orders: stream %s: version %d after %d", id, e.Version, o.Version)
		}
		if err := o.Apply(e.Type, e.Data); err != nil {
			return nil, fmt.Errorf("orders: stream %s v%d: %w", id, e.Version, err)
		}
	}
	return o, nil
}

// Command is one decision on one order.
type Command struct {
	OrderID  string
	Expected int64 // Any, or the version the caller saw (409 if moved)
	// EventID names the (first) event; "" = random. Deterministic ids make
	// a retried command idempotent.
	EventID string
	Meta    eventstore.Metadata
	Decide  func(*Order) ([]Decision, error)
	// InTx, if set, runs in the append's transaction after Service.InTx
	// (the stream's shard): the saga records its transition atomically
	// with the order's event.
	InTx func(ctx context.Context, tx pgx.Tx, o *Order) error
}

// Execute loads the order, decides and appends. With Expected == Any a
// conflict (another writer appended in between) is retried on the new
// state; otherwise it is returned as *eventstore.ConflictError.
func (s *Service) Execute(ctx context.Context, c Command) (*Order, error) {
	for attempt := 0; ; attempt++ {
		o, err := s.Load(ctx, c.OrderID)
		if err != nil {
			return nil, err
		}
		if c.Expected != Any && c.Expected != o.Version {
			return nil, &eventstore.ConflictError{StreamID: c.OrderID, Expected: c.Expected, Actual: o.Version}
		}
		ds, err := c.Decide(o)
		if err != nil {
			return o, err
		}
		err = s.append(ctx, o, ds, c)
		var conflict *eventstore.ConflictError
		if errors.As(err, &conflict) && c.Expected == Any && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return o, nil
	}
}

// append records ds at o's version in one transaction: events, snapshot,
// outbox messages, InTx hook. On success o holds the new state.
func (s *Service) append(ctx context.Context, o *Order, ds []Decision, c Command) error {
	base := o.Version
	next := *o
	next.Items = append([]Item(nil), o.Items...)
	evs := make([]eventstore.NewEvent, len(ds))
	for i, d := range ds {
		id := eventstore.NewID()
		if c.EventID != "" {
			id = c.EventID
			if i > 0 {
				id = eventstore.DeriveID(c.EventID, fmt.Sprint(i))
			}
		}
		data, err := json.Marshal(d.Data)
		if err != nil {
			return err
		}
		if err := next.Apply(d.Type, data); err != nil {
			return err
		}
		meta := c.Meta
		meta.CustomerID = next.CustomerID
		evs[i] = eventstore.NewEvent{ID: id, Type: d.Type, Data: json.RawMessage(data), Metadata: meta}
	}
	var dup bool
	err := pgx.BeginFunc(ctx, s.Store.Pool, func(tx pgx.Tx) error {
		res, err := eventstore.AppendTx(ctx, tx, c.OrderID, base, evs)
		if err != nil {
			return err
		}
		if res.Duplicate {
			dup = true
			return nil
		}
		for _, e := range evs {
			if err := Outbox.Put(ctx, tx, c.OrderID, e.ID, e.Type, outboxPayload(&next, e)); err != nil {
				return err
			}
		}
		if s.SnapshotEvery > 0 && next.Version/s.SnapshotEvery > base/s.SnapshotEvery {
			if err := eventstore.SaveSnapshotTx(ctx, tx, c.OrderID, next.Version, &next); err != nil {
				return err
			}
		}
		if s.InTx != nil {
			if err := s.InTx(ctx, tx, &next, evs); err != nil {
				return err
			}
		}
		if c.InTx != nil {
			return c.InTx(ctx, tx, &next)
		}
		return nil
	})
	if err != nil {
		// A unique violation means a concurrent writer (or our own
		// earlier attempt) got there first; let the store classify it.
		if _, rerr := s.Store.Resolve(ctx, c.OrderID, base, evs, err); rerr != nil {
			return rerr
		}
		dup = true
	}
	if dup {
		// The same events were stored before: answer with the state.
		cur, err := s.Load(ctx, c.OrderID)
		if err != nil {
			return err
		}
		*o = *cur
		return nil
	}
	*o = next
	return nil
}

// OutboxMessage is the payload of order_outbox messages: the event plus
// the order's state after it, so that consumers need not load the stream.
type OutboxMessage struct {
	EventID string          `json:"event_id"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Order   Order           `json:"order"`
}

func outboxPayload(o *Order, e eventstore.NewEvent) OutboxMessage {
	return OutboxMessage{EventID: e.ID, Type: e.Type, Data: e.Data.(json.RawMessage), Order: *o}
}

// Place places a new order. Placing the same order again (same id,
// customer and items: a retried request) returns it; a different order
// under an existing id is ErrExists.
func (s *Service) Place(ctx context.Context, id string, customer int64, items []Item, meta eventstore.Metadata) (*Order, error) {
	o, err := s.Execute(ctx, Command{OrderID: id, Expected: eventstore.NoStream, EventID: eventstore.DeriveID(id, EvPlaced), Meta: meta,
		Decide: func(o *Order) ([]Decision, error) { return o.Place(id, customer, items) }})
	var conflict *eventstore.ConflictError
	if errors.As(err, &conflict) || errors.Is(err, ErrExists) {
		cur, lerr := s.Load(ctx, id)
		if lerr != nil {
			return nil, lerr
		}
		if cur.CustomerID == customer && samePlaced(cur, items) {
			return cur, nil
		}
		return nil, ErrExists
	}
	return o, err
}

// samePlaced reports whether o was placed with items (items added later
// follow them).
func samePlaced(o *Order, items []Item) bool {
	if len(o.Items) < len(items) {
		return false
	}
	for i := range items {
		if o.Items[i] != items[i] {
			return false
		}
	}
	return true
}

// AddItem adds an item to a pending order.
func (s *Service) AddItem(ctx context.Context, id string, expected int64, it Item, eventID string) (*Order, error) {
	return s.Execute(ctx, Command{OrderID: id, Expected: expected, EventID: eventID,
		Decide: func(o *Order) ([]Decision, error) { return o.AddItem(it) }})
}

// Cancel cancels an order that is not shipped.
func (s *Service) Cancel(ctx context.Context, id string, expected int64, reason, eventID string) (*Order, error) {
	return s.Execute(ctx, Command{OrderID: id, Expected: expected, EventID: eventID,
		Decide: func(o *Order) ([]Decision, error) { return o.Cancel(reason) }})
}

// Ship ships a confirmed order.
func (s *Service) Ship(ctx context.Context, id string, expected int64) (*Order, error) {
	return s.Execute(ctx, Command{OrderID: id, Expected: expected, EventID: eventstore.DeriveID(id, EvShipped),
		Decide: func(o *Order) ([]Decision, error) { return o.Ship() }})
}

// Package orders is the event-sourced Order aggregate of the chapter
// (place, add item, confirm, ship, cancel) and its command service, which
// stores the aggregate as an event stream (one stream per order, sharded by
// order id) with snapshots.
package orders

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Status is an order's lifecycle state.
type Status string

const (
	Pending   Status = "pending"   // placed; the checkout saga is running
	Confirmed Status = "confirmed" // credit and stock reserved
	Shipped   Status = "shipped"
	Cancelled Status = "cancelled"
)

// Item is one order line; Price is in cents.
type Item struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
	Price     int64 `json:"price"`
}

// Event types.
const (
	EvPlaced    = "OrderPlaced"
	EvItemAdded = "OrderItemAdded"
	EvConfirmed = "OrderConfirmed"
	EvShipped   = "OrderShipped"
	EvCancelled = "OrderCancelled"
)

// Event payloads.
type (
	Placed struct {
		OrderID    string `json:"order_id"`
		CustomerID int64  `json:"customer_id"`
		Items      []Item `json:"items"`
	}
	ItemAdded struct {
		Item Item `json:"item"`
	}
	ConfirmedEv struct{}
	ShippedEv   struct{}
	CancelledEv struct {
		Reason string `json:"reason"`
	}
)

// Rule violations: the command is refused, nothing is appended.
var (
	ErrExists         = errors.New("order already exists")
	ErrNotFound       = errors.New("order not found")
	ErrCancelShipped  = errors.New("cannot cancel a shipped order")
	ErrAlreadyCancel  = errors.New("order is already cancelled")
	ErrAddNotPending  = errors.New("cannot add an item to an order that is not pending")
	ErrConfirmPending = errors.New("only a pending order can be confirmed")
	ErrShipConfirmed  = errors.New("only a confirmed order can be shipped")
	ErrInvalid        = errors.New("invalid order")
)

// Order is the aggregate's state, folded from its events. It is also the
// snapshot format (exported fields, JSON).
type Order struct {
	ID         string `json:"id"`
	CustomerID int64  `json:"customer_id"`
	Items      []Item `json:"items"`
	Status     Status `json:"status"`
	Reason     string `json:"reason,omitempty"` // cancellation reason
	Version    int64  `json:"version"`          // events applied
}

// Total is the order's value in cents.
func (o *Order) Total() int64 {
	var t int64
	for _, it := range o.Items {
		t += it.Price * it.Quantity
	}
	return t
}

// Apply folds one event into the state. Unknown event types are an error:
// an event the code does not understand must not be silently skipped
// (register an upcaster for old schemas instead).
func (o *Order) Apply(typ string, data json.RawMessage) error {
	switch typ {
	case EvPlaced:
		var p Placed
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		o.ID, o.CustomerID, o.Items, o.Status = p.OrderID, p.CustomerID, append([]Item(nil), p.Items...), Pending
	case EvItemAdded:
		var p ItemAdded
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		o.Items = append(o.Items, p.Item)
	case EvConfirmed:
		o.Status = Confirmed
	case EvShipped:
		o.Status = Shipped
	case EvCancelled:
		var p CancelledEv
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		o.Status, o.Reason = Cancelled, p.Reason
	default:
		return fmt.Errorf("orders: unknown event type %q", typ)
	}
	o.Version++
	return nil
}

// Decision is an event the aggregate decided to record.
type Decision struct {
	Type string
	Data any
}

func validItems(items []Item) error {
	if len(items) == 0 {
		return fmt.Errorf("%w: an order needs at least one item", ErrInvalid)
	}
	for _, it := range items {
		if it.ProductID <= 0 || it.Quantity <= 0 || it.Price < 0 {
			return fmt.Errorf("%w: item needs product_id > 0, quantity > 0, price >= 0", ErrInvalid)
		}
	}
	return nil
}

// Place decides the events of placing a new order.
func (o *Order) Place(id string, customer int64, items []Item) ([]Decision, error) {
	if o.Version > 0 {
		return nil, ErrExists
	}
	if customer <= 0 {
		return nil, fmt.Errorf("%w: customer_id must be > 0", ErrInvalid)
	}
	if err := validItems(items); err != nil {
		return nil, err
	}
	return []Decision{{EvPlaced, Placed{OrderID: id, CustomerID: customer, Items: items}}}, nil
}

// AddItem decides adding an item; only a pending order takes items.
func (o *Order) AddItem(it Item) ([]Decision, error) {
	if o.Version == 0 {
		return nil, ErrNotFound
	}
	if o.Status != Pending {
		return nil, ErrAddNotPending
	}
	if err := validItems([]Item{it}); err != nil {
		return nil, err
	}
	return []Decision{{EvItemAdded, ItemAdded{Item: it}}}, nil
}

// Cancel decides a cancellation; a shipped order cannot be cancelled.
func (o *Order) Cancel(reason string) ([]Decision, error) {
	switch {
	case o.Version == 0:
		return nil, ErrNotFound
	case o.Status == Shipped:
		return nil, ErrCancelShipped
	case o.Status == Cancelled:
		return nil, ErrAlreadyCancel
	}
	return []Decision{{EvCancelled, CancelledEv{Reason: reason}}}, nil
}

// Confirm decides the confirmation at the end of the checkout saga.
func (o *Order) Confirm() ([]Decision, error) {
	if o.Version == 0 {
		return nil, ErrNotFound
	}
	if o.Status != Pending {
		return nil, ErrConfirmPending
	}
	return []Decision{{EvConfirmed, ConfirmedEv{}}}, nil
}

// Ship decides shipping a confirmed order.
func (o *Order) Ship() ([]Decision, error) {
	if o.Version == 0 {
		return nil, ErrNotFound
	}
	if o.Status != Confirmed {
		return nil, ErrShipConfirmed
	}
	return []Decision{{EvShipped, ShippedEv{}}}, nil
}

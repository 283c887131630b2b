package orders

import (
	"encoding/json"
	"errors"
	"testing"
)

func fold(t *testing.T, o *Order, ds []Decision) {
	t.Helper()
	for _, d := range ds {
		b, _ := json.Marshal(d.Data)
		if err := o.Apply(d.Type, b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrderRules(t *testing.T) {
	item := Item{ProductID: 1, Quantity: 2, Price: 150}
	tests := []struct {
		name    string
		history func(o *Order) ([]Decision, error) // applied before cmd
		cmd     func(o *Order) ([]Decision, error)
		want    error
		status  Status
	}{
		{"place", func(*Order) ([]Decision, error) { return nil, nil }, func(o *Order) ([]Decision, error) { return o.Place("o", 1, []Item{item}) }, nil, Pending},
		{"place twice", nil, func(o *Order) ([]Decision, error) { return o.Place("o", 1, []Item{item}) }, ErrExists, Pending},
		{"place without items", func(*Order) ([]Decision, error) { return nil, nil }, func(o *Order) ([]Decision, error) { return o.Place("o", 1, nil) }, ErrInvalid, ""},
		{"add to pending", nil, func(o *Order) ([]Decision, error) { return o.AddItem(item) }, nil, Pending},
		{"add bad quantity", nil, func(o *Order) ([]Decision, error) { return o.AddItem(Item{ProductID: 1}) }, ErrInvalid, Pending},
		{"add to cancelled", func(o *Order) ([]Decision, error) { return o.Cancel("x") }, func(o *Order) ([]Decision, error) { return o.AddItem(item) }, ErrAddNotPending, Cancelled},
		{"cancel pending", nil, func(o *Order) ([]Decision, error) { return o.Cancel("x") }, nil, Cancelled},
		{"cancel twice", func(o *Order) ([]Decision, error) { return o.Cancel("x") }, func(o *Order) ([]Decision, error) { return o.Cancel("y") }, ErrAlreadyCancel, Cancelled},
		{"confirm", nil, func(o *Order) ([]Decision, error) { return o.Confirm() }, nil, Confirmed},
		{"ship unconfirmed", nil, func(o *Order) ([]Decision, error) { return o.Ship() }, ErrShipConfirmed, Pending},
		{"cancel confirmed", func(o *Order) ([]Decision, error) { return o.Confirm() }, func(o *Order) ([]Decision, error) { return o.Cancel("x") }, nil, Cancelled},
		{"cancel shipped", func(o *Order) ([]Decision, error) {
			d1, _ := o.Confirm()
			return append(d1, Decision{EvShipped, ShippedEv{}}), nil
		}, func(o *Order) ([]Decision, error) { return o.Cancel("x") }, ErrCancelShipped, Shipped},
		{"unknown order", func(*Order) ([]Decision, error) { return nil, nil }, func(o *Order) ([]Decision, error) { return o.Cancel("x") }, ErrNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &Order{}
			if tc.history == nil {
				ds, _ := o.Place("o", 1, []Item{item})
				fold(t, o, ds)
			} else {
				if tc.name != "unknown order" && tc.name != "place without items" && tc.name != "place" {
					ds, _ := o.Place("o", 1, []Item{item})
					fold(t, o, ds)
				}
				ds, err := tc.history(o)
				if err != nil {
					t.Fatal(err)
				}
				fold(t, o, ds)
			}
			ds, err := tc.cmd(o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			fold(t, o, ds)
			if o.Status != tc.status {
				t.Errorf("status %q, want %q", o.Status, tc.status)
			}
		})
	}
	t.Run("unknown event type is an error", func(t *testing.T) {
		if err := (&Order{}).Apply("Mystery", []byte(`{}`)); err == nil {
			t.Error("unknown event applied silently")
		}
	})
}

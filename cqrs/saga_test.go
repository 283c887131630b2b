package cqrs_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

func quiesce(t *testing.T, s *app.Service) {
	t.Helper()
	// A liveness bound, not a timing assertion: a stuck saga fails here.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkOrderEnd asserts the end state of one order's saga.
func checkOrderEnd(t *testing.T, s *app.Service, id string, wantSaga string) {
	t.Helper()
	ctx := context.Background()
	st, ok, err := saga.Get(ctx, s.Pool, id)
	if err != nil || !ok {
		t.Fatalf("saga %s: %v %v", id, ok, err)
	}
	if st.State != wantSaga || st.Finishes != 1 {
		t.Fatalf("saga %s: state %s finishes %d (failure %q), want %s exactly once; log %+v", id, st.State, st.Finishes, st.Failure, wantSaga, st.Steps)
	}
	o, err := s.Orders.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]orders.Status{saga.Completed: orders.Confirmed, saga.Compensated: orders.Cancelled}[wantSaga]
	if o.Status != want {
		t.Errorf("order %s is %s, want %s", id, o.Status, want)
	}
	// Reservations of this order: held iff completed.
	held := wantSaga == saga.Completed
	var credit int64
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM credit_reservations WHERE customer_id = $1 AND order_id = $2 AND state = 'reserved'`,
		o.CustomerID, id).Scan(&credit); err != nil {
		t.Fatal(err)
	}
	if (credit == o.Total()) != held || (!held && credit != 0) {
		t.Errorf("order %s: %d credit reserved, total %d, held=%v", id, credit, o.Total(), held)
	}
	for _, it := range saga.PayloadOf(o).Items {
		var q int64
		if err := s.Pool.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM stock_reservations WHERE product_id = $1 AND order_id = $2 AND state = 'reserved'`,
			it.ProductID, id).Scan(&q); err != nil {
			t.Fatal(err)
		}
		if (q == it.Quantity) != held || (!held && q != 0) {
			t.Errorf("order %s product %d: %d reserved, quantity %d, held=%v", id, it.ProductID, q, it.Quantity, held)
		}
	}
	// Credit released exactly once: at most one CreditReleased event.
	var releases int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM payment_outbox WHERE customer_id = $1 AND type = 'CreditReleased' AND payload->>'order_id' = $2`,
		o.CustomerID, id).Scan(&releases); err != nil {
		t.Fatal(err)
	}
	if releases > 1 {
		t.Errorf("order %s: credit released %d times", id, releases)
	}
}

// checkBalances asserts the conservation invariants over all accounts.
func checkBalances(t *testing.T, s *app.Service, customers, products []int64) {
	t.Helper()
	ctx := context.Background()
	for _, c := range customers {
		b, _, err := s.Payment.Balance(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if b.Available+b.Reserved+b.Consumed != b.Initial {
			t.Errorf("customer %d: available %d + reserved %d + captured %d != initial %d", c, b.Available, b.Reserved, b.Consumed, b.Initial)
		}
	}
	for _, p := range products {
		b, _, err := s.Inventory.Balance(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if b.Available+b.Reserved+b.Consumed != b.Initial {
			t.Errorf("product %d: on hand %d + reserved %d + shipped %d != initial %d", p, b.Available, b.Reserved, b.Consumed, b.Initial)
		}
	}
}

func TestSagaSteps(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	for _, style := range []string{saga.Orchestration, saga.Choreographed} {
		t.Run(style, func(t *testing.T) {
			var failConfirm atomic.Bool
			var failCredit atomic.Int32
			s := app.New(e.Pool, app.Options{Style: style, StepTimeout: 2 * time.Second, Interval: 10 * time.Millisecond})
			s.Orchestrator.BackoffMin = 5 * time.Millisecond
			s.Orchestrator.Fault = func(_, step string) error {
				if step == "confirm_order" && failConfirm.Load() {
					return errors.New("injected: confirm unavailable")
				}
				return nil
			}
			// The payment service fails transiently (its transaction
			// aborts) while failCredit > 0: the orchestrator retries the
			// step, the relay redelivers the choreography's message.
			s.Payment.Fail = func(op string, _ int64) error {
				if op == "reserve" && failCredit.Add(-1) >= 0 {
					return errors.New("injected: payment unavailable")
				}
				return nil
			}
			// Customers 1..4 with 1000 credit, customer 9 with 10;
			// products 1..4 with stock 5 (price 100), product 9 with 0.
			if err := s.Seed(ctx, 4, 1000, 4, 5, 100); err != nil {
				t.Fatal(err)
			}
			if err := s.Payment.Open(ctx, 9, "poor", 10); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Pool.Exec(ctx, `INSERT INTO product_catalog (product_id, name, price) VALUES (9, 'rare', 100) ON CONFLICT DO NOTHING`); err != nil {
				t.Fatal(err)
			}
			if err := s.Inventory.Open(ctx, 9, "rare", 0); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name     string
				customer int64
				items    []app.ItemRequest
				setup    func(id string) // after placing, before the saga runs
				styles   string          // "" = both, else only this style
				want     string
			}{
				{"happy path over several products", 1, []app.ItemRequest{{ProductID: 1, Quantity: 1}, {ProductID: 2, Quantity: 2}, {ProductID: 3, Quantity: 1}}, nil, "", saga.Completed},
				{"credit step fails (insufficient credit)", 9, []app.ItemRequest{{ProductID: 1, Quantity: 1}}, nil, "", saga.Compensated},
				{"stock step fails (out of stock)", 2, []app.ItemRequest{{ProductID: 1, Quantity: 1}, {ProductID: 9, Quantity: 1}}, nil, "", saga.Compensated},
				{"confirm step fails (order changed during checkout)", 3, []app.ItemRequest{{ProductID: 2, Quantity: 1}}, func(id string) {
					if _, err := s.AddItem(ctx, id, orders.Any, app.ItemRequest{ProductID: 3, Quantity: 1}); err != nil {
						t.Fatal(err)
					}
				}, "", saga.Compensated},
				{"confirm step fails (times out)", 3, []app.ItemRequest{{ProductID: 2, Quantity: 1}, {ProductID: 4, Quantity: 2}}, func(string) { failConfirm.Store(true) }, saga.Orchestration, saga.Compensated},
				{"credit step fails until the watchdog expires the saga", 4, []app.ItemRequest{{ProductID: 4, Quantity: 1}}, func(string) {
					failCredit.Store(1 << 30) // payment down
					deadline := time.Now().Add(time.Minute)
					for {
						if _, err := s.Pump(ctx); err != nil && !strings.Contains(err.Error(), "injected") {
							t.Fatal(err)
						}
						sg, _, _, err := s.InFlight(ctx)
						if err != nil {
							t.Fatal(err)
						}
						if sg == 0 || time.Now().After(deadline) {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
					failCredit.Store(0) // payment back: the pending message now meets the tombstone
				}, saga.Choreographed, saga.Compensated},
				{"transient credit failures are retried", 4, []app.ItemRequest{{ProductID: 4, Quantity: 1}}, func(string) { failConfirm.Store(false); failCredit.Store(3) }, "", saga.Completed},
			}
			for _, tc := range cases {
				if tc.styles != "" && tc.styles != style {
					continue // the orchestrator's per-step timeout has no choreography counterpart
				}
				t.Run(tc.name, func(t *testing.T) {
					o, err := s.PlaceOrder(ctx, "", tc.customer, tc.items)
					if err != nil {
						t.Fatal(err)
					}
					if tc.setup != nil {
						tc.setup(o.ID)
					}
					quiesce(t, s)
					checkOrderEnd(t, s, o.ID, tc.want)
				})
			}
			t.Run("customer cancels during the saga", func(t *testing.T) {
				failConfirm.Store(false)
				o, err := s.PlaceOrder(ctx, "", 1, []app.ItemRequest{{ProductID: 3, Quantity: 1}})
				if err != nil {
					t.Fatal(err)
				}
				failConfirm.Store(false)
				if _, err := s.Pump(ctx); err != nil { // one step forward
					t.Fatal(err)
				}
				if _, err := s.Cancel(ctx, o.ID, orders.Any, "changed my mind"); err != nil && !errors.Is(err, orders.ErrAlreadyCancel) {
					t.Fatal(err)
				}
				quiesce(t, s)
				st, _, _ := saga.Get(ctx, s.Pool, o.ID)
				if st.Finishes != 1 {
					t.Fatalf("saga finished %d times", st.Finishes)
				}
				// The saga may have completed before the cancel landed;
				// either way the cancelled order holds nothing.
				var held int64
				if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM credit_reservations WHERE customer_id = 1 AND order_id = $1 AND state = 'reserved'`, o.ID).Scan(&held); err != nil {
					t.Fatal(err)
				}
				if held != 0 {
					t.Errorf("cancelled order still holds credit")
				}
			})
			checkBalances(t, s, []int64{1, 2, 3, 4, 9}, []int64{1, 2, 3, 4, 9})
			if t.Failed() {
				return
			}
			// Everything projected: the read model shows every order.
			for c := int64(1); c <= 4; c++ {
				list, err := s.Queries.FindByCustomer(ctx, c, 100)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range list {
					o, err := s.Orders.Load(ctx, v.OrderID)
					if err != nil {
						t.Fatal(err)
					}
					if v.Status != string(o.Status) || v.Version != o.Version {
						t.Errorf("view %s: %s v%d, aggregate %s v%d", v.OrderID, v.Status, v.Version, o.Status, o.Version)
					}
				}
			}
		})
	}
}

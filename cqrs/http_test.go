package cqrs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/httpapi"
)

func TestHTTPAPI(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	svc := app.New(e.Pool, app.Options{Interval: 10 * time.Millisecond})
	if err := svc.Seed(ctx, 3, 1000, 3, 10, 100); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.Handler(svc, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if len(bytes.TrimSpace(b)) > 0 && b[0] == '{' {
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
		return resp.StatusCode, v
	}

	status, placed := do("POST", "/orders", `{"customer_id": 1, "items": [{"product_id": 1, "quantity": 2}]}`)
	if status != 201 {
		t.Fatalf("POST /orders = %d %v", status, placed)
	}
	id := placed["id"].(string)
	status, other := do("POST", "/orders", `{"customer_id": 2, "items": [{"product_id": 2, "quantity": 1}]}`)
	if status != 201 {
		t.Fatalf("POST /orders = %d %v", status, other)
	}
	otherID := other["id"].(string)
	if err := svc.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
		check                    func(t *testing.T, v map[string]any)
	}{
		{"place: bad JSON", "POST", "/orders", `{"customer_id": `, 400, nil},
		{"place: unknown field", "POST", "/orders", `{"customer": 1}`, 400, nil},
		{"place: no items", "POST", "/orders", `{"customer_id": 1, "items": []}`, 400, nil},
		{"place: zero quantity", "POST", "/orders", `{"customer_id": 1, "items": [{"product_id": 1, "quantity": 0}]}`, 400, nil},
		{"place: unknown customer", "POST", "/orders", `{"customer_id": 77, "items": [{"product_id": 1, "quantity": 1}]}`, 400, nil},
		{"place: unknown product", "POST", "/orders", `{"customer_id": 1, "items": [{"product_id": 77, "quantity": 1}]}`, 400, nil},
		{"place: same id again is idempotent", "POST", "/orders", `{"order_id": "` + id + `", "customer_id": 1, "items": [{"product_id": 1, "quantity": 2}]}`, 201, nil},
		{"place: other order under a used id", "POST", "/orders", `{"order_id": "` + id + `", "customer_id": 2, "items": [{"product_id": 1, "quantity": 2}]}`, 409, nil},
		{"get order (read model)", "GET", "/orders/" + id, "", 200, func(t *testing.T, v map[string]any) {
			if v["status"] != "confirmed" || v["total"].(float64) != 200 {
				t.Errorf("order = %v, want confirmed, total 200", v)
			}
		}},
		{"get order consistently", "GET", "/orders/" + id + "?consistent=1", "", 200, nil},
		{"get unknown order", "GET", "/orders/nope", "", 404, nil},
		{"customer orders", "GET", "/customers/1/orders", "", 200, func(t *testing.T, v map[string]any) {
			if list := v["orders"].([]any); len(list) != 1 {
				t.Errorf("customer 1 has %d orders, want 1", len(list))
			}
		}},
		{"customer orders: bad id", "GET", "/customers/x/orders", "", 400, nil},
		{"customer orders: unknown customer", "GET", "/customers/77/orders", "", 404, nil},
		{"saga", "GET", "/sagas/" + id, "", 200, func(t *testing.T, v map[string]any) {
			if v["state"] != "COMPLETED" || len(v["steps"].([]any)) < 4 {
				t.Errorf("saga = %v", v)
			}
		}},
		{"unknown saga", "GET", "/sagas/nope", "", 404, nil},
		{"add item to a confirmed order", "POST", "/orders/" + id + "/items", `{"product_id": 2, "quantity": 1}`, 409, nil},
		{"add item: bad input", "POST", "/orders/" + id + "/items", `{"product_id": -1, "quantity": 1}`, 400, nil},
		{"add item to unknown order", "POST", "/orders/nope/items", `{"product_id": 1, "quantity": 1}`, 404, nil},
		{"cancel at a stale version", "POST", "/orders/" + id + "/cancel", `{"expected_version": 1}`, 409, func(t *testing.T, v map[string]any) {
			if v["code"] != "version_conflict" || v["actual_version"].(float64) != 2 {
				t.Errorf("conflict body = %v", v)
			}
		}},
		{"ship", "POST", "/orders/" + otherID + "/ship", "", 200, nil},
		{"cancel a shipped order", "POST", "/orders/" + otherID + "/cancel", "", 409, nil},
		{"cancel", "POST", "/orders/" + id + "/cancel", `{"reason": "test", "expected_version": 2}`, 200, func(t *testing.T, v map[string]any) {
			if v["status"] != "cancelled" {
				t.Errorf("cancelled order = %v", v)
			}
		}},
		{"cancel twice", "POST", "/orders/" + id + "/cancel", "", 409, nil},
		{"unknown route", "GET", "/nope", "", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, v := do(tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("%s %s = %d %v, want %d", tc.method, tc.path, status, v, tc.status)
			}
			if status >= 400 && tc.path != "/nope" && (v["error"] == nil || v["code"] == nil) {
				t.Errorf("error body %v lacks error/code", v)
			}
			if tc.check != nil {
				tc.check(t, v)
			}
		})
	}

	t.Run("cancellation released, shipping consumed", func(t *testing.T) {
		if err := svc.Quiesce(ctx); err != nil {
			t.Fatal(err)
		}
		checkBalances(t, svc, []int64{1, 2, 3}, []int64{1, 2, 3})
		c1, _, _ := svc.Payment.Balance(ctx, 1)
		if c1.Available != c1.Initial {
			t.Errorf("customer 1 after cancel: %+v", c1)
		}
		p2, _, _ := svc.Inventory.Balance(ctx, 2)
		if p2.Consumed != 1 || p2.Reserved != 0 {
			t.Errorf("product 2 after shipping: %+v", p2)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		svc.Metrics.Refresh(ctx, svc)
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`orders_sagas{shard="s0",state="COMPLETED"}`,
			`orders_saga_oldest_in_flight_seconds{shard="s1"} 0`,
			`orders_projection_lag_events{shard="s2"} 0`,
			`orders_outbox_backlog{outbox="payment_outbox",shard="s0"} 0`,
			`orders_command_duration_seconds_count{command="place"}`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		var completed float64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "orders_sagas{") && strings.Contains(line, `state="COMPLETED"`) {
				var f float64
				json.Unmarshal([]byte(line[strings.LastIndex(line, " ")+1:]), &f)
				completed += f
			}
		}
		if completed != 2 {
			t.Errorf("%v sagas COMPLETED in the metrics, want 2", completed)
		}
	})
}

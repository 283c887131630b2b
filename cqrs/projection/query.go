package projection

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/orders"
)

// View is one order as the read model shows it.
type View struct {
	OrderID    string        `json:"order_id"`
	CustomerID int64         `json:"customer_id"`
	Status     string        `json:"status"`
	Items      []orders.Item `json:"items"`
	Total      int64         `json:"total"`
	Reason     string        `json:"reason,omitempty"`
	Version    int64         `json:"version"`
	PlacedAt   time.Time     `json:"placed_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
}

// Queries reads order_view (the query side; eventually consistent).
type Queries struct{ Pool *pgxpool.Pool }

const viewColumns = `order_id, customer_id, status, items, total, reason, version, placed_at, updated_at`

func scanView(row pgx.Row) (View, error) {
	var v View
	var items []byte
	err := row.Scan(&v.OrderID, &v.CustomerID, &v.Status, &items, &v.Total, &v.Reason, &v.Version, &v.PlacedAt, &v.UpdatedAt)
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(items, &v.Items)
}

// FindByID finds an order by id. order_view is sharded by customer, so
// this keyless read goes to every shard; the order id is unique, so at
// most one shard answers a row and concatenation is exact.
func (q Queries) FindByID(ctx context.Context, id string) (View, bool, error) {
	v, err := scanView(q.Pool.QueryRow(ctx, `SELECT `+viewColumns+` FROM order_view WHERE order_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return View{}, false, nil
	}
	return v, err == nil, err
}

// FindByCustomer lists a customer's orders, newest first (one shard).
func (q Queries) FindByCustomer(ctx context.Context, customer int64, limit int) ([]View, error) {
	rows, err := q.Pool.Query(ctx, `SELECT `+viewColumns+` FROM order_view WHERE customer_id = $1
		ORDER BY placed_at DESC, order_id LIMIT $2`, customer, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []View{}
	for rows.Next() {
		v, err := scanView(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

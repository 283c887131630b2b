// Package projection maintains the order_view read model (CQRS query side)
// from the order events, asynchronously.
//
// Events live on the shard of their order's stream; order_view rows live
// on the shard of their customer. One runner pass works for one *target*
// shard t: for every source shard s it reads the events of s after the
// checkpoint (t, s), keeps those whose customer lives on t, and applies
// them and the new checkpoint in ONE transaction on t. The read-model
// change and its checkpoint therefore commit together: every event is
// applied exactly once per target, after crashes too.
//
// Events are read in position order and only below the oldest running
// transaction of the source shard (eventstore.ReadShard), so an append
// that commits late, after later positions were read, is never skipped.
package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
)

// Schema creates the read model and the per-shard checkpoints.
var Schema = []string{
	`CREATE TABLE IF NOT EXISTS order_view (
		customer_id    bigint      NOT NULL,
		order_id       text        NOT NULL,
		status         text        NOT NULL,
		items          jsonb       NOT NULL,
		total          bigint      NOT NULL,
		reason         text        NOT NULL DEFAULT '',
		version        bigint      NOT NULL,
		events_applied bigint      NOT NULL DEFAULT 1,
		placed_at      timestamptz NOT NULL,
		updated_at     timestamptz NOT NULL,
		PRIMARY KEY (customer_id, order_id)
	)`,
	`CREATE INDEX IF NOT EXISTS order_view_order ON order_view (order_id)`,
	`CREATE TABLE IF NOT EXISTS projection_checkpoints (
		projection text   NOT NULL,
		source     text   NOT NULL,
		tx_id      xid8   NOT NULL DEFAULT '0',
		seq        bigint NOT NULL DEFAULT 0,
		updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (projection, source)
	)`,
}

const name = "order_view"

// Projector runs the order_view projection over the shards named in Shards.
type Projector struct {
	Pool   *pgxpool.Pool // through the proxy
	Store  *eventstore.Store
	Shards []string
	Batch  int // events per source per pass (default 500)
	// Budget bounds the applying time of one pass (default 200ms); the
	// events not reached wait for the next. The checkpoint commits with
	// the pass, so a runner that dies mid-pass leaves all of it to the
	// next one: a pass longer than a runner lives (a worker killed and
	// restarted every second, a slow shard) would be applied again and
	// again and never checkpointed.
	Budget time.Duration
}

// Step runs one pass for target shard t over every source shard and
// returns the number of events applied to t.
func (p *Projector) Step(ctx context.Context, target string) (int, error) {
	total := 0
	for _, src := range p.Shards {
		n, err := p.step(ctx, target, src)
		if err != nil {
			return total, fmt.Errorf("projection %s <- %s: %w", target, src, err)
		}
		total += n
	}
	return total, nil
}

func (p *Projector) step(ctx context.Context, target, src string) (applied int, err error) {
	batch := p.Batch
	if batch <= 0 {
		batch = 500
	}
	budget := p.Budget
	if budget <= 0 {
		budget = 200 * time.Millisecond
	}
	hint := "/* shard: " + target + " */ "
	err = pgx.BeginFunc(ctx, p.Pool, func(tx pgx.Tx) error {
		// The checkpoint row is locked for the pass: concurrent runners
		// of the same (target, source) take turns.
		if _, err := tx.Exec(ctx, hint+`INSERT INTO projection_checkpoints (projection, source) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, name, src); err != nil {
			return err
		}
		var pos eventstore.Position
		var txText string
		if err := tx.QueryRow(ctx, hint+`SELECT tx_id::text, seq FROM projection_checkpoints
			WHERE projection = $1 AND source = $2 FOR UPDATE`, name, src).Scan(&txText, &pos.Seq); err != nil {
			return err
		}
		fmt.Sscan(txText, &pos.TxID)
		evs, err := p.Store.ReadShard(ctx, p.Pool, src, pos, batch)
		if err != nil || len(evs) == 0 {
			return err
		}
		mine, err := customersOn(ctx, tx, hint, evs)
		if err != nil {
			return err
		}
		start, done := time.Now(), len(evs)
		for i := range evs {
			if i > 0 && time.Since(start) > budget {
				done = i // the checkpoint stops before evs[i]
				break
			}
			e := &evs[i]
			if !isOrderEvent(e.Type) || !mine[e.Metadata.CustomerID] {
				continue
			}
			if err := apply(ctx, tx, e); err != nil {
				return fmt.Errorf("%s v%d %s: %w", e.StreamID, e.Version, e.Type, err)
			}
			applied++
		}
		last := evs[done-1]
		_, err = tx.Exec(ctx, hint+`UPDATE projection_checkpoints SET tx_id = $3::text::xid8, seq = $4, updated_at = now()
			WHERE projection = $1 AND source = $2`, name, src, fmt.Sprint(last.TxID), last.Seq)
		return err
	})
	return applied, err
}

// customersOn returns which customers of evs live on the tx's shard: the
// customers table has the read model's strategy, so its rows on a shard
// are exactly the customers whose order_view rows belong there.
func customersOn(ctx context.Context, tx pgx.Tx, hint string, evs []eventstore.Event) (map[int64]bool, error) {
	var ids []int64
	for _, e := range evs {
		if e.Metadata.CustomerID != 0 && !slices.Contains(ids, e.Metadata.CustomerID) {
			ids = append(ids, e.Metadata.CustomerID)
		}
	}
	mine := map[int64]bool{}
	if len(ids) == 0 {
		return mine, nil
	}
	rows, err := tx.Query(ctx, hint+`SELECT customer_id FROM customers WHERE customer_id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		mine[id] = true
	}
	return mine, rows.Err()
}

func isOrderEvent(t string) bool {
	switch t {
	case orders.EvPlaced, orders.EvItemAdded, orders.EvConfirmed, orders.EvShipped, orders.EvCancelled:
		return true
	}
	return false
}

// apply changes one order_view row (routed by its customer id: the
// proxy refuses, rather than misroutes, a row of another shard inside
// this one-shard transaction). events_applied counts applications: it
// equals version exactly when every event was applied once.
func apply(ctx context.Context, tx pgx.Tx, e *eventstore.Event) error {
	cust := e.Metadata.CustomerID
	if e.Type == orders.EvPlaced {
		var p orders.Placed
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return err
		}
		o := orders.Order{Items: p.Items}
		items, _ := json.Marshal(p.Items)
		_, err := tx.Exec(ctx, `INSERT INTO order_view (customer_id, order_id, status, items, total, version, placed_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, cust, e.StreamID, string(orders.Pending), items, o.Total(), e.Version, e.RecordedAt)
		return err
	}
	var tag interface{ RowsAffected() int64 }
	var err error
	switch e.Type {
	case orders.EvItemAdded:
		var p orders.ItemAdded
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return err
		}
		item, _ := json.Marshal(p.Item)
		tag, err = tx.Exec(ctx, `UPDATE order_view SET items = items || $3::jsonb, total = total + $4,
			version = $5, events_applied = events_applied + 1, updated_at = $6
			WHERE customer_id = $1 AND order_id = $2`, cust, e.StreamID, "["+string(item)+"]", p.Item.Price*p.Item.Quantity, e.Version, e.RecordedAt)
	default:
		status := map[string]orders.Status{orders.EvConfirmed: orders.Confirmed, orders.EvShipped: orders.Shipped, orders.EvCancelled: orders.Cancelled}[e.Type]
		var reason string
		if e.Type == orders.EvCancelled {
			var p orders.CancelledEv
			if err := json.Unmarshal(e.Data, &p); err != nil {
				return err
			}
			reason = p.Reason
		}
		tag, err = tx.Exec(ctx, `UPDATE order_view SET status = $3, reason = CASE WHEN $4 = '' THEN reason ELSE $4 END,
			version = $5, events_applied = events_applied + 1, updated_at = $6
			WHERE customer_id = $1 AND order_id = $2`, cust, e.StreamID, string(status), reason, e.Version, e.RecordedAt)
	}
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		// Position order follows version order within a stream, so the
		// row exists; if not, stop rather than lose the event.
		return errors.New("order_view row missing")
	}
	return nil
}

// CatchUp runs passes on every target until a full round applies nothing
// and every checkpoint has reached the visible end of its source. Used by
// rebuild and tests; the service runs Run.
func (p *Projector) CatchUp(ctx context.Context) error {
	for {
		moved := false
		for _, t := range p.Shards {
			before, err := p.positions(ctx, t)
			if err != nil {
				return err
			}
			if _, err := p.Step(ctx, t); err != nil {
				return err
			}
			after, err := p.positions(ctx, t)
			if err != nil {
				return err
			}
			if !maps(before, after) {
				moved = true
			}
		}
		if !moved {
			return nil
		}
	}
}

func maps(a, b map[string]eventstore.Position) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (p *Projector) positions(ctx context.Context, target string) (map[string]eventstore.Position, error) {
	rows, err := p.Pool.Query(ctx, "/* shard: "+target+" */ SELECT source, tx_id::text, seq FROM projection_checkpoints WHERE projection = $1", name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]eventstore.Position{}
	for rows.Next() {
		var src, txt string
		var pos eventstore.Position
		if err := rows.Scan(&src, &txt, &pos.Seq); err != nil {
			return nil, err
		}
		fmt.Sscan(txt, &pos.TxID)
		out[src] = pos
	}
	return out, rows.Err()
}

// Run runs passes on every target shard every interval until ctx ends.
// It returns ctx's error; pass errors go to onErr and are retried.
func (p *Projector) Run(ctx context.Context, interval time.Duration, onErr func(error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		for _, t := range p.Shards {
			if _, err := p.Step(ctx, t); err != nil && ctx.Err() == nil && onErr != nil {
				onErr(err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Reset empties the read model and its checkpoints on every shard, so
// that the next passes rebuild it from the first event.
func (p *Projector) Reset(ctx context.Context) error {
	for _, t := range p.Shards {
		hint := "/* shard: " + t + " */ "
		err := pgx.BeginFunc(ctx, p.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, hint+`DELETE FROM projection_checkpoints WHERE projection = $1`, name); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, hint+`DELETE FROM order_view`)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Lag returns, per target shard, the number of events on all source
// shards after that target's checkpoints (visible or not yet).
func (p *Projector) Lag(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range p.Shards {
		pos, err := p.positions(ctx, t)
		if err != nil {
			return nil, err
		}
		for _, src := range p.Shards {
			n, err := eventstore.Behind(ctx, p.Pool, src, pos[src])
			if err != nil {
				return nil, err
			}
			out[t] += n
		}
	}
	return out, nil
}

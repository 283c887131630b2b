// Package app wires the order service together: schema migration, the
// background workers (outbox relays, projection runners, saga
// orchestrator), metrics and the load generator. cmd/shardproxy's
// `orders` commands call it.
package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/inventory"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/payment"
	"github.com/shardproxy/shardproxy/cqrs/projection"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// Schema is every table of the service, in creation order.
func Schema() []string {
	var s []string
	s = append(s, eventstore.Schema...)
	s = append(s, orders.Outbox.OutboxSchema()...)
	s = append(s, projection.Schema...)
	s = append(s, payment.New(nil).Schema()...)
	s = append(s, inventory.New(nil).Schema()...)
	s = append(s, inventory.CatalogSchema...)
	s = append(s, saga.Schema...)
	return s
}

// Migrate creates the schema through the proxy (DDL is broadcast to every
// shard of each table's strategy). It is idempotent.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	for _, stmt := range Schema() {
		if _, err := pool.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("migrate: %w\n%s", err, stmt)
		}
	}
	return nil
}

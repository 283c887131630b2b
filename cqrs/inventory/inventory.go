// Package inventory is the inventory service: product stock, reserved for
// orders, released on compensation, shipped with the order (state-based
// write model with a transactional outbox; see package reservation).
// Products are placed on shards by a directory strategy.
package inventory

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/cqrs/outbox"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
)

// Event types of inventory_outbox.
const (
	StockReserved = "StockReserved"
	StockRejected = "StockRejected"
	StockReleased = "StockReleased"
	StockShipped  = "StockShipped"
)

// Outbox is the inventory service's outbox (key product_id).
var Outbox = outbox.Table{Name: "inventory_outbox", KeyCol: "product_id", KeyDDL: "bigint"}

// CatalogSchema is the product catalog: names and prices, a reference
// table (a copy on every shard, written by broadcast).
var CatalogSchema = []string{`CREATE TABLE IF NOT EXISTS product_catalog (
	product_id bigint PRIMARY KEY,
	name text NOT NULL,
	price bigint NOT NULL CHECK (price >= 0)
)`}

// New returns the inventory service on pool (connected to the proxy).
func New(pool *pgxpool.Pool) *reservation.Ledger {
	return &reservation.Ledger{
		Service: "stock", Accounts: "products", KeyCol: "product_id", Reservations: "stock_reservations",
		Inbox:      outbox.Table{Name: "inventory_inbox", KeyCol: "product_id", KeyDDL: "bigint"},
		Outbox:     Outbox,
		EvReserved: StockReserved, EvRejected: StockRejected, EvReleased: StockReleased, EvConsumed: StockShipped,
		Pool: pool,
	}
}

// Package cqrs is the reference workload of shardproxy: an event-sourced
// order service with CQRS read models and sagas (issue 5, the chapter in
// seed/000_782a910e18a77a3e.txt), built as an ordinary client that speaks
// SQL through pgx to the proxy. No package under cqrs/ imports a shardproxy
// package; only the integration tests in this directory start a proxy
// (in-process, over three pgtest shards and a metadata server).
//
// Sharding (testdata/orders/shardproxy.yaml.tmpl): every transaction
// touches one shard. An order's event stream, snapshots, outbox and saga
// share the stream's key (hash of the order id); a customer's credit,
// reservations, inbox, outbox and read-model rows share the customer id
// (hash); a product's stock, reservations, inbox and outbox share the
// product id (directory). Work that spans shards travels as messages
// (outbox -> relay -> idempotent participant), never inside one
// transaction; per-shard workers use /* shard: sN */ hints.
//
// Packages:
//
//	eventstore   append with expected version, idempotent by event id,
//	             snapshots, upcasting hook, commit-safe per-shard reads
//	orders       the Order aggregate and its command service
//	projection   order_view read model: per-shard checkpoints in the
//	             read-model transaction, rebuild
//	outbox       transactional outbox, inbox (dedup) and relay
//	reservation  state-based ledger (available/reserved/consumed) shared by
//	payment      customer credit
//	inventory    product stock and the product catalog (reference table)
//	saga         checkout saga: orchestrator and choreography
//	app          wiring, schema, workers, metrics, seed data
//	httpapi      HTTP API
//	load         load generator and invariant checks
//
// Run it: `make run-orders`, then `bin/shardproxy orders load`.
package cqrs

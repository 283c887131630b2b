// Package cqrs is the reference workload of shardproxy: an event-sourced
// order service with CQRS read models and sagas (issue 5, the chapter in
// seed/000_782a910e18a77a3e.txt), built as an ordinary client that speaks
// SQL through pgx to the proxy. No package under cqrs/ imports a shardproxy
// package; only the integration tests in this directory start a proxy.
//
// Sharding (testdata/orders/shardproxy.yaml): every transaction touches one
// shard. An order's event stream, snapshots, outbox and saga share the
// stream's key (hash of the order id); a customer's credit, reservations,
// inbox and outbox share the customer id (hash); a product's stock,
// reservations, inbox and outbox share the product id (directory). Work
// that spans shards travels as messages (outbox -> relay -> idempotent
// participant), never inside one transaction.
package cqrs

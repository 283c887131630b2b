// Package router decides where each SQL statement goes.
//
// ParseQuery and Prepare turn statement text into a cached, immutable
// *Statement: its kind (SELECT, DDL, BEGIN, SET ...), the tables it reads
// and writes, and where the shard key of each sharded table is found (a
// constant, a $n parameter, an IN list). Literals are lifted out of simple
// Query texts by a small scanner first, so that the plan cache holds one
// entry per statement shape rather than one per value; pg_query (Postgres'
// own parser) only runs on cache misses.
//
// Route binds the parameters of one execution, asks the strategies which
// shards own the keys, and returns a Route: the target shards and how their
// results are merged. Statements that cannot be answered exactly across the
// shards they touch fail with SQLSTATE 0A000 and a hint, never with a partial
// answer.
package router

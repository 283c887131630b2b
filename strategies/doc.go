// Package strategies maps a typed shard key to the shard that owns it.
//
// Four strategies implement Strategy: hash (bit-for-bit Postgres hash
// partitioning, so a shard's rows satisfy satisfies_hash_partition), range
// (half-open intervals), consistent (bounded-load consistent hashing, so that
// adding a shard moves about 1/N of the keys) and directory (a lookup table in
// the metadata database, shared by every proxy and kept coherent with
// LISTEN/NOTIFY). Build turns a validated config into named strategies.
package strategies

// Package pool owns the backend connections of shardproxy: one bounded pool
// per shard, handing out raw wire-protocol connections to the proxy.
//
// A Conn is not a pgconn.PgConn: the pool uses pgconn only to dial and
// authenticate (TLS, SCRAM, md5, trust, exactly as libpq would with the
// shard's DSN), then hijacks the socket. From then on the proxy speaks the
// protocol itself through Send/Flush/Receive, so that it can forward client
// messages with no translation layer in between.
//
// Ownership: Acquire hands a Conn to exactly one goroutine. That goroutine
// gives it back with Release when the backend is idle (the last message read
// was ReadyForQuery 'I' and nothing is pending), or with Discard when it is
// not (client vanished mid-transaction, protocol desync, I/O error). The pool
// never reads from or writes to a Conn it has handed out.
//
// Health is checked lazily, without background goroutines: an idle Conn is
// probed with a non-blocking peek at its socket before it is handed out (a
// restarted shard leaves EOF or a FATAL message there), and Conns idle for
// longer than Options.IdleTimeout are closed instead of reused.
package pool

// Package proxy is the client side of shardproxy: the listener, startup and
// authentication, the simple and extended query protocol loops, transaction
// pinning, cancellation and the hand-off of every statement to the router and
// of every backend connection to the pool.
//
// Each client connection is served by one goroutine that owns the session
// and every backend connection attached to it; see session.go for how a
// statement flows and how the goroutines of a connection stop each other.
package proxy

// Package saga runs the checkout saga: place order -> reserve credit ->
// reserve stock -> confirm; a failure compensates in reverse (release
// stock, release credit, cancel the order). Two styles: an orchestrator
// (a persisted state machine) and choreography (services reacting to each
// other's outbox events).
package saga

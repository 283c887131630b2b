package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// Metrics are the service's Prometheus collectors, on a registry of their
// own (label sets are bounded: shard, saga state, command, outbox).
type Metrics struct {
	Registry       *prometheus.Registry
	sagas          *prometheus.GaugeVec
	oldestSaga     *prometheus.GaugeVec
	projectionLag  *prometheus.GaugeVec
	outboxBacklog  *prometheus.GaugeVec
	outboxOldest   *prometheus.GaugeVec
	commandLatency *prometheus.HistogramVec
}

// NewMetrics registers the collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		sagas: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_sagas",
			Help: "Sagas by state, per shard."}, []string{"shard", "state"}),
		oldestSaga: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_saga_oldest_in_flight_seconds",
			Help: "Age of the oldest saga not yet COMPLETED or COMPENSATED, per shard."}, []string{"shard"}),
		projectionLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_projection_lag_events",
			Help: "Events on all shards not yet examined by the order_view projection of a target shard."}, []string{"shard"}),
		outboxBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_outbox_backlog",
			Help: "Undelivered outbox messages, per outbox and shard."}, []string{"outbox", "shard"}),
		outboxOldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_outbox_oldest_seconds",
			Help: "Age of the oldest undelivered outbox message."}, []string{"outbox", "shard"}),
		commandLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "orders_command_duration_seconds",
			Help: "Command latency.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"command"}),
	}
	m.Registry.MustRegister(m.sagas, m.oldestSaga, m.projectionLag, m.outboxBacklog, m.outboxOldest, m.commandLatency)
	return m
}

func (m *Metrics) observe(command string, start time.Time) {
	m.commandLatency.WithLabelValues(command).Observe(time.Since(start).Seconds())
}

// Refresh reads the gauges from the shards (per-shard hinted queries).
func (m *Metrics) Refresh(ctx context.Context, s *Service) {
	for _, sh := range s.Opts.Shards {
		if st, err := saga.Stats(ctx, s.Pool, sh); err == nil {
			for _, state := range []string{saga.Running, saga.Compensating, saga.Completed, saga.Compensated} {
				m.sagas.WithLabelValues(sh, state).Set(float64(st.ByState[state]))
			}
			m.oldestSaga.WithLabelValues(sh).Set(st.OldestInFlight.Seconds())
		}
		for _, ob := range s.outboxes() {
			if n, age, err := ob.t.Pending(ctx, s.Pool, sh); err == nil {
				m.outboxBacklog.WithLabelValues(ob.t.Name, sh).Set(float64(n))
				m.outboxOldest.WithLabelValues(ob.t.Name, sh).Set(age.Seconds())
			}
		}
	}
	if lag, err := s.Projector.Lag(ctx); err == nil {
		for sh, n := range lag {
			m.projectionLag.WithLabelValues(sh).Set(float64(n))
		}
	}
}

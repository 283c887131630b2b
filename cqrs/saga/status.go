package saga

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is a saga with its step log (GET /sagas/{id}).
type Status struct {
	ID         string     `json:"saga_id"`
	Style      string     `json:"style"`
	State      string     `json:"state"`
	Step       int        `json:"step"`
	Attempts   int        `json:"attempts"`
	Failure    string     `json:"failure,omitempty"`
	Payload    Payload    `json:"payload"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Finishes   int        `json:"finishes"`
	Steps      []StepLog  `json:"steps"`
}

// StepLog is one line of the saga's log.
type StepLog struct {
	Step    string    `json:"step"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// Get reads a saga and its log (one shard: keyed by saga id).
func Get(ctx context.Context, pool *pgxpool.Pool, id string) (Status, bool, error) {
	var s Status
	var payload []byte
	err := pool.QueryRow(ctx, `SELECT saga_id, style, state, step, attempts, failure, payload, created_at, finished_at, finishes
		FROM sagas WHERE saga_id = $1`, id).Scan(&s.ID, &s.Style, &s.State, &s.Step, &s.Attempts, &s.Failure, &payload,
		&s.CreatedAt, &s.FinishedAt, &s.Finishes)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(payload, &s.Payload); err != nil {
		return s, false, err
	}
	rows, err := pool.Query(ctx, `SELECT step, action, outcome, detail, at FROM saga_steps WHERE saga_id = $1 ORDER BY seq`, id)
	if err != nil {
		return s, false, err
	}
	defer rows.Close()
	s.Steps = []StepLog{}
	for rows.Next() {
		var l StepLog
		if err := rows.Scan(&l.Step, &l.Action, &l.Outcome, &l.Detail, &l.At); err != nil {
			return s, false, err
		}
		s.Steps = append(s.Steps, l)
	}
	return s, true, rows.Err()
}

// ShardStats are one shard's saga gauges.
type ShardStats struct {
	ByState        map[string]int64
	OldestInFlight time.Duration
}

// Stats counts the sagas of shard by state and the age of its oldest
// in-flight saga (per-shard hint: the service merges shards itself).
func Stats(ctx context.Context, pool *pgxpool.Pool, shard string) (ShardStats, error) {
	st := ShardStats{ByState: map[string]int64{}}
	rows, err := pool.Query(ctx, `/* shard: `+shard+` */ SELECT state, count(*),
		coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE finished_at IS NULL)), 0)::float8
		FROM sagas GROUP BY state`)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int64
		var age float64
		if err := rows.Scan(&state, &n, &age); err != nil {
			return st, err
		}
		st.ByState[state] = n
		if d := time.Duration(age * float64(time.Second)); d > st.OldestInFlight {
			st.OldestInFlight = d
		}
	}
	return st, rows.Err()
}

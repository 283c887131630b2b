package saga

// Schema creates the saga tables. A saga's id is its order's id, and both
// tables are sharded like the event streams (by_stream), so a saga lives
// on its order's shard: starting it in the order's placement transaction
// and confirming the order with the saga's transition are one-shard work.
var Schema = []string{
	`CREATE TABLE IF NOT EXISTS sagas (
		saga_id      text        PRIMARY KEY,
		style        text        NOT NULL,
		state        text        NOT NULL,
		step         int         NOT NULL DEFAULT 0,
		attempts     int         NOT NULL DEFAULT 0,
		payload      jsonb       NOT NULL,
		failure      text        NOT NULL DEFAULT '',
		next_at      timestamptz NOT NULL DEFAULT now(),
		step_started timestamptz NOT NULL DEFAULT now(),
		lease_until  timestamptz,
		version      bigint      NOT NULL DEFAULT 1,
		created_at   timestamptz NOT NULL DEFAULT now(),
		finished_at  timestamptz,
		finishes     int         NOT NULL DEFAULT 0
	)`,
	`CREATE INDEX IF NOT EXISTS sagas_due ON sagas (next_at) WHERE finished_at IS NULL`,
	`CREATE TABLE IF NOT EXISTS saga_steps (
		saga_id text        NOT NULL,
		seq     bigserial   NOT NULL,
		step    text        NOT NULL,
		action  text        NOT NULL,
		outcome text        NOT NULL,
		detail  text        NOT NULL DEFAULT '',
		at      timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (saga_id, seq)
	)`,
}

package resharding

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Job phases, in order. A job only moves forward, except that a cutover
// whose bound was exceeded goes back to catchup.
const (
	PhaseCopy    = "copy"
	PhaseCatchup = "catchup"
	PhaseCutover = "cutover"
	PhaseCleanup = "cleanup"
	PhaseDone    = "done"
	PhaseAborted = "aborted"
)

// Metadata schema. Everything a job needs to resume lives here; the
// proxies read shardproxy_epoch and write acks.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS shardproxy_reshard_job (
	id          bigserial PRIMARY KEY,
	phase       text NOT NULL,
	cur_map     text NOT NULL,
	target_map  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	rows_total  bigint NOT NULL DEFAULT 0,
	-- cutover attempts over every process that ran the job: acks name
	-- the attempt, so a resumed job never counts a dead process's acks.
	attempts    int NOT NULL DEFAULT 0,
	message     text NOT NULL DEFAULT ''
);
-- directory keys the job reassigns (JSON, see DirectoryMove); added after
-- the table first shipped, hence the ALTER.
ALTER TABLE shardproxy_reshard_job ADD COLUMN IF NOT EXISTS directory_moves text NOT NULL DEFAULT '';
-- one row per source shard: its slot, where its stream starts and how far
-- it is applied, and which tables are copied.
CREATE TABLE IF NOT EXISTS shardproxy_reshard_source (
	job_id       bigint NOT NULL REFERENCES shardproxy_reshard_job(id),
	shard        text NOT NULL,
	slot         text NOT NULL,
	publication  text NOT NULL,
	start_lsn    pg_lsn,
	applied_lsn  pg_lsn,
	lag_bytes    bigint NOT NULL DEFAULT 0,
	copied       text[] NOT NULL DEFAULT '{}',
	rows_copied  bigint NOT NULL DEFAULT 0,
	rows_applied bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (job_id, shard)
);
-- every shard map a job switched the proxies to; the highest epoch wins.
CREATE TABLE IF NOT EXISTS shardproxy_epoch (
	epoch      bigserial PRIMARY KEY,
	map        text NOT NULL,
	job_id     bigint,
	created_at timestamptz NOT NULL DEFAULT now()
);
-- true from a job's switch until it deleted the moved rows from their
-- old shards: meanwhile those rows are on two shards, and the proxies
-- fence the job's source shards unless they hold them paused (added
-- after the table first shipped, hence the ALTER; older epochs are done).
ALTER TABLE shardproxy_epoch ADD COLUMN IF NOT EXISTS moved_rows_left boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS shardproxy_proxy (
	id        text PRIMARY KEY,
	epoch     bigint NOT NULL DEFAULT 0,
	last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shardproxy_reshard_ack (
	job_id  bigint NOT NULL,
	attempt int NOT NULL,
	step    text NOT NULL,
	proxy   text NOT NULL,
	at      timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (job_id, attempt, step, proxy)
);
`

// Channel is the LISTEN/NOTIFY channel of the cutover protocol.
const Channel = "shardproxy_reshard"

// EnsureSchema creates the metadata tables; concurrent callers are
// serialised by an advisory lock (CREATE IF NOT EXISTS races otherwise).
func EnsureSchema(ctx context.Context, meta *pgx.Conn) error {
	tx, err := meta.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7365827)"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Status is a job as the metadata database records it.
type Status struct {
	ID        int64
	Phase     string
	RowsTotal int64
	Message   string
	Sources   []SourceStatus
	CurMap    string
	TargetMap string
	// DirectoryMoves are the job's directory moves (JSON), "" for none.
	DirectoryMoves string
}

// SourceStatus is one source shard's progress.
type SourceStatus struct {
	Shard       string
	Slot        string
	Publication string
	StartLSN    string
	AppliedLSN  string
	LagBytes    int64
	Copied      []string
	RowsCopied  int64
	RowsApplied int64
}

// ErrNoJob is returned for a job id the metadata database does not know.
var ErrNoJob = errors.New("no such resharding job")

// LoadStatus reads job id (0: the latest job).
func LoadStatus(ctx context.Context, meta *pgx.Conn, id int64) (*Status, error) {
	st := &Status{}
	q := `SELECT id, phase, rows_total, message, cur_map, target_map, directory_moves FROM shardproxy_reshard_job `
	var row pgx.Row
	if id == 0 {
		row = meta.QueryRow(ctx, q+"ORDER BY id DESC LIMIT 1")
	} else {
		row = meta.QueryRow(ctx, q+"WHERE id = $1", id)
	}
	if err := row.Scan(&st.ID, &st.Phase, &st.RowsTotal, &st.Message, &st.CurMap, &st.TargetMap, &st.DirectoryMoves); err != nil {
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrNoRows) || (errors.As(err, &pgErr) && pgErr.Code == "42P01") {
			return nil, ErrNoJob
		}
		return nil, err
	}
	rows, err := meta.Query(ctx, `SELECT shard, slot, publication, coalesce(start_lsn::text, ''), coalesce(applied_lsn::text, ''),
		lag_bytes, copied, rows_copied, rows_applied FROM shardproxy_reshard_source WHERE job_id = $1 ORDER BY shard`, st.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s SourceStatus
		if err := rows.Scan(&s.Shard, &s.Slot, &s.Publication, &s.StartLSN, &s.AppliedLSN, &s.LagBytes, &s.Copied, &s.RowsCopied, &s.RowsApplied); err != nil {
			return nil, err
		}
		st.Sources = append(st.Sources, s)
	}
	return st, rows.Err()
}

// RowsCopied sums the sources' copy progress.
func (st *Status) RowsCopied() int64 {
	var n int64
	for _, s := range st.Sources {
		n += s.RowsCopied
	}
	return n
}

// LagBytes sums the sources' replication lag.
func (st *Status) LagBytes() int64 {
	var n int64
	for _, s := range st.Sources {
		n += s.LagBytes
	}
	return n
}

func setPhase(ctx context.Context, meta *pgx.Conn, id int64, phase, msg string) error {
	_, err := meta.Exec(ctx, "UPDATE shardproxy_reshard_job SET phase = $2, message = $3, updated_at = now() WHERE id = $1", id, phase, msg)
	return err
}

func slotName(job int64, shard string) string {
	return fmt.Sprintf("shardproxy_reshard_%d_%s", job, sanitize(shard))
}

// sanitize keeps a shard name usable inside a slot name ([a-z0-9_]).
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// RowsApplied sums the changes applied from the slots.
func (st *Status) RowsApplied() int64 {
	var n int64
	for _, s := range st.Sources {
		n += s.RowsApplied
	}
	return n
}

// ReadStatus connects to the metadata database and reads job id (0: the
// latest job).
func ReadStatus(ctx context.Context, metaDSN string, id int64) (*Status, error) {
	meta, err := connect(ctx, metaDSN)
	if err != nil {
		return nil, fmt.Errorf("metadata database: %w", err)
	}
	defer meta.Close(context.Background())
	return LoadStatus(ctx, meta, id)
}

package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/pool"
)

// Two-phase commit: the decision log and recovery.
//
// A transaction that wrote on several shards commits in two phases: PREPARE
// TRANSACTION '<gid>' on every shard, then a row in the metadata table
// shardproxy_2pc records the outcome, then COMMIT PREPARED on every shard,
// then the row is deleted. The row is the one place where the outcome is
// decided: its primary key makes the decision a race that exactly one party
// wins. The coordinator inserts (gid, committed=true); recovery, finding a
// prepared transaction without a row, inserts (gid, committed=false) first
// and rolls back only if its insert won. So a recovery sweep can never roll
// back a transaction whose coordinator is about to commit it (the
// coordinator's insert then fails and it rolls back too). Recovery only
// touches transactions prepared more than two_phase_commit_grace ago, and a
// coordinator decides only within half of that after it started to prepare
// (else it rolls back), so the race is not even run in practice: live
// siblings' commits are left alone. Decision rows are deleted when nothing
// is prepared for them on any shard and they are older than the grace
// period, so that a late coordinator still finds recovery's rollback row.

const (
	gidPrefix      = "shardproxy:"
	sweepInterval  = 10 * time.Second
	decisionsTable = "shardproxy_2pc"
)

// instanceID tells this process's gids from those of sibling proxies (and
// of its own earlier runs), so that gids stay unique without coordination.
var instanceID = sync.OnceValue(func() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
})

var gidSeq atomic.Uint64

func newGID() string {
	return gidPrefix + instanceID() + ":" + strconv.FormatUint(gidSeq.Add(1), 10)
}

// TwoPCCounts are the two-phase commit outcomes since the process started.
type TwoPCCounts struct {
	Committed, Aborted                 int64 // decided by a session
	OnePhase                           int64 // spanning transactions committed without it: at most one leg wrote (onephase.go)
	RecoveredCommit, RecoveredRollback int64 // prepared transactions resolved by recovery
}

var twoPCStats struct {
	committed, aborted, onePhase, recCommit, recRollback atomic.Int64
}

// TwoPCStats returns the two-phase commit counters (for metrics).
func TwoPCStats() TwoPCCounts {
	return TwoPCCounts{
		Committed: twoPCStats.committed.Load(), Aborted: twoPCStats.aborted.Load(), OnePhase: twoPCStats.onePhase.Load(),
		RecoveredCommit: twoPCStats.recCommit.Load(), RecoveredRollback: twoPCStats.recRollback.Load(),
	}
}

// twoPC is the decision log in the metadata database and its recovery
// sweeper. One per process config lineage: reloads keep it (see Assemble).
type twoPC struct {
	meta   *pgxpool.Pool
	log    *slog.Logger
	grace  time.Duration
	shards atomic.Pointer[shardSet] // the current shards, for recovery

	// crashAfter is a test hook (SHARDPROXY_2PC_CRASH_AFTER=prepare|decide):
	// the process kills itself at that point of a commit, to prove recovery.
	crashAfter string

	stop context.CancelFunc
	done chan struct{}
}

func openTwoPC(ctx context.Context, dsn string, grace time.Duration, log *slog.Logger) (*twoPC, error) {
	if dsn == "" {
		return nil, errors.New("two_phase_commit needs metadata.dsn: the commit decisions are logged there")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 8
	meta, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	const ddl = `CREATE TABLE IF NOT EXISTS ` + decisionsTable + ` (
		gid text PRIMARY KEY,
		shards text[] NOT NULL,
		committed boolean NOT NULL,
		decided_at timestamptz NOT NULL DEFAULT now())`
	for attempt := 0; ; attempt++ {
		_, err = meta.Exec(ctx, ddl)
		var pgErr *pgconn.PgError
		// Two proxies creating the table at once: one gets a unique violation.
		if err == nil || attempt > 0 || !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			break
		}
	}
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("creating the two-phase commit log: %w", err)
	}
	return &twoPC{meta: meta, log: log, grace: grace, crashAfter: os.Getenv("SHARDPROXY_2PC_CRASH_AFTER")}, nil
}

// shardSet is what recovery sweeps: the pools of the current shard map.
type shardSet struct {
	names []string
	pools *pool.Cluster
}

// use points recovery at the shards of the config being installed.
func (t *twoPC) use(names []string, pools *pool.Cluster) {
	t.shards.Store(&shardSet{names: names, pools: pools})
}

// start runs the recovery sweeper: at once, then every sweepInterval.
func (t *twoPC) start() {
	ctx, stop := context.WithCancel(context.Background())
	t.stop, t.done = stop, make(chan struct{})
	go func() {
		defer close(t.done)
		tick := time.NewTicker(min(sweepInterval, t.grace))
		defer tick.Stop()
		for {
			t.sweep(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func (t *twoPC) close() {
	if t.stop != nil {
		t.stop()
		<-t.done
	}
	t.meta.Close()
}

// decide logs the commit decision for gid. A *pgconn.PgError means it was
// definitely not logged (recovery may have decided rollback first); any
// other error leaves the outcome unknown until recovery runs.
func (t *twoPC) decide(ctx context.Context, gid string, shards []string) error {
	_, err := t.meta.Exec(ctx, `INSERT INTO `+decisionsTable+` (gid, shards, committed) VALUES ($1, $2, true)`, gid, shards)
	return err
}

// forget deletes a decision whose prepared transactions are all resolved.
func (t *twoPC) forget(ctx context.Context, gid string) {
	if _, err := t.meta.Exec(ctx, `DELETE FROM `+decisionsTable+` WHERE gid = $1`, gid); err != nil {
		t.log.Warn("two-phase commit: deleting a finished decision failed; recovery will", "gid", gid, "err", err)
	}
}

func (t *twoPC) crash(point string) {
	if t.crashAfter == point {
		t.log.Error("SHARDPROXY_2PC_CRASH_AFTER: killing the process", "after", point)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// sweep resolves shardproxy's prepared transactions older than the grace
// period on every shard from the decision log, then deletes the decisions
// nothing is prepared for any more.
func (t *twoPC) sweep(ctx context.Context) {
	set := t.shards.Load()
	if set == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	complete := true   // every shard answered: unreferenced decisions may go
	live := []string{} // not nil: NULL would make <> ALL match nothing
	for _, sh := range set.names {
		still, err := t.sweepShard(ctx, set.pools.Get(sh))
		if err != nil {
			complete = false
			if ctx.Err() == nil {
				t.log.Warn("two-phase commit recovery: shard not swept", "shard", sh, "err", err)
			}
			continue
		}
		live = append(live, still...)
	}
	if !complete {
		return
	}
	tag, err := t.meta.Exec(ctx, `DELETE FROM `+decisionsTable+`
		WHERE decided_at < now() - make_interval(secs => $1) AND gid <> ALL($2)`, t.grace.Seconds(), live)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn("two-phase commit recovery: deleting finished decisions failed", "err", err)
		}
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		t.log.Info("two-phase commit recovery: deleted finished decisions", "count", n)
	}
}

// sweepShard resolves the old prepared transactions of one shard and returns
// the gids of ours still prepared there (young ones, or failed to resolve).
func (t *twoPC) sweepShard(ctx context.Context, p *pool.Pool) ([]string, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if ok {
			p.Release(c)
		} else {
			p.Discard(c)
		}
	}()
	// The database filter matters: a prepared transaction can only be
	// finished from the database it was prepared in.
	rows, err := queryRows(c, fmt.Sprintf(`SELECT gid, prepared < now() - make_interval(secs => %f) FROM pg_prepared_xacts
		WHERE database = current_database() AND gid LIKE %s`,
		t.grace.Seconds(), quoteLiteral(gidPrefix+"%")))
	if err != nil {
		return nil, err
	}
	var still []string
	for _, r := range rows {
		gid, old := r[0], r[1] == "t"
		if !old {
			still = append(still, gid)
			continue
		}
		commit, err := t.outcome(ctx, gid)
		if err != nil {
			return nil, err
		}
		verb := "ROLLBACK PREPARED "
		if commit {
			verb = "COMMIT PREPARED "
		}
		if _, err := queryRows(c, verb+quoteLiteral(gid)); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				return nil, err
			}
			// 42704: finished meanwhile (by its coordinator or a sibling).
			if pgErr.Code != "42704" {
				t.log.Warn("two-phase commit recovery failed", "shard", p.Name(), "gid", gid, "err", err)
				still = append(still, gid)
			}
			continue
		}
		if commit {
			twoPCStats.recCommit.Add(1)
		} else {
			twoPCStats.recRollback.Add(1)
		}
		t.log.Info("two-phase commit recovery: resolved an in-doubt transaction",
			"shard", p.Name(), "gid", gid, "outcome", strings.TrimSuffix(verb, " PREPARED "))
	}
	ok = true
	return still, nil
}

// outcome decides an in-doubt gid: the logged decision if there is one,
// otherwise rollback, logged first so that a late coordinator cannot commit.
func (t *twoPC) outcome(ctx context.Context, gid string) (bool, error) {
	if _, err := t.meta.Exec(ctx, `INSERT INTO `+decisionsTable+` (gid, shards, committed) VALUES ($1, '{}', false)
		ON CONFLICT (gid) DO NOTHING`, gid); err != nil {
		return false, err
	}
	var commit bool
	err := t.meta.QueryRow(ctx, `SELECT committed FROM `+decisionsTable+` WHERE gid = $1`, gid).Scan(&commit)
	return commit, err
}

// inDoubt lists the logged decisions (for the admin console).
func (t *twoPC) inDoubt(ctx context.Context) ([][]string, error) {
	rows, err := t.meta.Query(ctx, `SELECT gid, array_to_string(shards, ','), committed::text, decided_at::text
		FROM `+decisionsTable+` ORDER BY decided_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		var gid, shards, committed, at string
		if err := rows.Scan(&gid, &shards, &committed, &at); err != nil {
			return nil, err
		}
		out = append(out, []string{gid, shards, committed, at})
	}
	return out, rows.Err()
}

// queryRows runs one simple-protocol statement on an idle backend outside
// any session and returns its rows as text. A shard's error comes back as
// a *pgconn.PgError; any other error means the connection is unusable.
func queryRows(c *pool.Conn, sql string) ([][]string, error) {
	c.Send(&pgproto3.Query{String: sql})
	if err := c.Flush(); err != nil {
		return nil, err
	}
	var rows [][]string
	var failure error
	for {
		msg, err := c.Receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			r := make([]string, len(m.Values))
			for i, v := range m.Values {
				r[i] = string(v)
			}
			rows = append(rows, r)
		case *pgproto3.ErrorResponse:
			if failure == nil {
				failure = pgErrorOf(m)
			}
		case *pgproto3.ReadyForQuery:
			return rows, failure
		}
	}
}

// pgErrorOf copies a shard's ErrorResponse (its memory is reused by the
// next Receive) into an error that errorResponse turns back into it.
func pgErrorOf(m *pgproto3.ErrorResponse) *pgconn.PgError {
	sev := m.Severity
	if sev == "FATAL" || sev == "PANIC" {
		sev = "ERROR"
	}
	return &pgconn.PgError{Severity: sev, Code: m.Code, Message: m.Message, Detail: m.Detail, Hint: m.Hint,
		Where: m.Where, SchemaName: m.SchemaName, TableName: m.TableName, ColumnName: m.ColumnName,
		DataTypeName: m.DataTypeName, ConstraintName: m.ConstraintName, File: m.File, Line: m.Line, Routine: m.Routine}
}

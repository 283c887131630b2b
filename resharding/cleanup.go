package resharding

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
)

// cleanup runs after the switch: the slots and publications go, and moved
// rows still on their old shards (the cutover deletes them while paused;
// a job that died in between did not) leave, which lifts the proxies'
// fence on those shards.
func (j *Job) cleanup(ctx context.Context) (string, error) {
	if err := j.hook("cleanup"); err != nil {
		return "", err
	}
	if err := j.dropReplication(ctx); err != nil {
		return "", err
	}
	if err := j.deleteMoved(ctx); err != nil {
		return "", err
	}
	if err := j.movedRowsDeleted(ctx); err != nil {
		return "", err
	}
	return PhaseDone, nil
}

// dropReplication drops every slot and publication of the job, ending a
// walsender that still uses a slot (a job process that was killed leaves
// it active for a moment).
func (j *Job) dropReplication(ctx context.Context) error {
	// Postgres 15 can fail a concurrent INSERT/UPDATE/DELETE with "cache
	// lookup failed for publication" when a publication of its table is
	// dropped between the two catalog lookups that build the table's
	// publication list. So the tables leave the publications first, and
	// the then empty publications are dropped a moment later: a write
	// that still saw a table in one looks the publication up well before.
	emptied := false
	for _, src := range j.sources {
		c, err := j.source(ctx, src.shard)
		if err != nil {
			return err
		}
		var tables []string
		rows, err := c.Query(ctx, "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = $1", src.pub)
		if err != nil {
			return fmt.Errorf("shard %s: %w", src.shard, err)
		}
		if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("shard %s: %w", src.shard, err)
		}
		if len(tables) > 0 {
			if _, err := c.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s", quoteIdent(src.pub), joinComma(tables))); err != nil {
				return fmt.Errorf("shard %s: %w", src.shard, err)
			}
			emptied = true
		}
	}
	if emptied {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(publicationDropDelay):
		}
	}
	for _, src := range j.sources {
		c, err := j.source(ctx, src.shard)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := c.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, src.slot)
			if err != nil {
				return err
			}
			_, err = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, src.slot)
			if err == nil {
				break
			}
			// 55006: still active (the terminated walsender has not exited yet).
			if pe, ok := err.(*pgconn.PgError); !ok || pe.Code != "55006" || time.Now().After(deadline) {
				return fmt.Errorf("shard %s: dropping slot %s: %w", src.shard, src.slot, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := c.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(src.pub)); err != nil {
			return fmt.Errorf("shard %s: %w", src.shard, err)
		}
	}
	return nil
}

// publicationDropDelay separates emptying a publication from dropping it
// (see dropReplication).
const publicationDropDelay = 500 * time.Millisecond

// deleteWhere deletes, in batches of BatchRows, the rows of jt on shard
// whose key satisfies drop.
func (j *Job) deleteWhere(ctx context.Context, c *pgx.Conn, jt *jobTable, shard string, drop func(key string) (bool, error)) (int64, error) {
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT %s::text, ctid::text FROM %s", quoteIdent(jt.key), jt.info.Ident))
	if err != nil {
		return 0, err
	}
	var ctids []string
	var key, ctid string
	_, err = pgx.ForEachRow(rows, []any{&key, &ctid}, func() error {
		d, err := drop(key)
		if d {
			ctids = append(ctids, ctid)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	var n int64
	for len(ctids) > 0 {
		b := ctids[:min(len(ctids), j.opts.BatchRows)]
		ctids = ctids[len(b):]
		tag, err := c.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY($1::text[]::tid[])", jt.info.Ident), b)
		if err != nil {
			return n, err
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

// Abort stops job id before its cutover: it marks the job aborted (a
// running job process sees that and stops), drops its slots and
// publications, and removes from the destinations the rows the job copied
// there, so that the old map serves as if nothing happened. A job past its
// cutover cannot be aborted: the new map is serving.
func Abort(ctx context.Context, metaDSN string, id int64, log ...any) error {
	j := &Job{id: id, dests: map[string]*pgx.Conn{}, srcConns: map[string]*pgx.Conn{}}
	j.opts.defaults()
	j.log = j.opts.Logger
	defer j.close()
	var err error
	if j.meta, err = connect(ctx, metaDSN); err != nil {
		return fmt.Errorf("metadata database: %w", err)
	}
	st, err := LoadStatus(ctx, j.meta, id)
	if err != nil {
		return err
	}
	if done, err := j.epochWritten(ctx); err != nil {
		return err
	} else if done || st.Phase == PhaseCleanup || st.Phase == PhaseDone {
		return &pgconn.PgError{Severity: "ERROR", Code: "55000", Message: fmt.Sprintf("resharding job %d is past its cutover; the new map is serving", id),
			Hint: "resume it to finish the cleanup"}
	}
	if err := setPhase(ctx, j.meta, id, PhaseAborted, "aborted"); err != nil {
		return err
	}
	if err := j.load(ctx, st); err != nil {
		return err
	}
	if err := j.dropReplication(ctx); err != nil {
		return err
	}
	// What a destination got from the job are the rows the old map does
	// not place there; the old map's proxies never write those.
	for _, jt := range j.tables {
		for _, d := range jt.place.destinations() {
			c, err := j.dest(ctx, d)
			if err != nil {
				return err
			}
			if _, ok, err := inspectTable(ctx, c, jt.name, jt.key); err != nil {
				return err
			} else if !ok {
				continue
			}
			if j.cur.ShardIndex(d) < 0 {
				// A shard the old map does not know: the job created the table.
				if _, err := c.Exec(ctx, "DROP TABLE "+jt.info.Ident); err != nil {
					return fmt.Errorf("shard %s: %w", d, err)
				}
				continue
			}
			_, err = j.deleteWhere(ctx, c, jt, d, func(key string) (bool, error) {
				from, err := jt.place.oldOwner(ctx, key, d)
				return from != d, err
			})
			if err != nil {
				return fmt.Errorf("shard %s: %w", d, err)
			}
		}
	}
	// Reference tables on the new shards: the job created and filled them.
	for _, jt := range j.refs {
		for _, d := range jt.refTo {
			c, err := j.dest(ctx, d)
			if err != nil {
				return err
			}
			if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+jt.info.Ident); err != nil {
				return fmt.Errorf("shard %s: %w", d, err)
			}
		}
	}
	return setPhase(ctx, j.meta, id, PhaseAborted, "aborted; destinations cleaned, slots and publications dropped")
}

// deleteMoved deletes from every source the rows the new map places
// elsewhere: one DELETE per table and shard when the map has an SQL form,
// else by ctid in batches. No proxy writes those rows on their old shard
// any more, so their ctids are stable. The shards are deleted from at the
// same time (one goroutine per shard, each on its own connection): the
// cutover runs this while writes are paused, and the pause is the longest
// shard's delete, not their sum.
func (j *Job) deleteMoved(ctx context.Context) error {
	conns := map[string]*pgx.Conn{}
	for _, jt := range j.tables {
		for _, s := range jt.place.sources() {
			c, err := j.source(ctx, s)
			if err != nil {
				return err
			}
			conns[s] = c
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for s, c := range conns {
		g.Go(func() error { return j.deleteMovedOn(gctx, c, s) })
	}
	return g.Wait()
}

// deleteMovedOn deletes the moved rows of every table from shard s.
func (j *Job) deleteMovedOn(ctx context.Context, c *pgx.Conn, s string) error {
	for _, jt := range j.tables {
		if !slices.Contains(jt.place.sources(), s) {
			continue
		}
		expr, inSQL := jt.place.newOwnerSQL(quoteIdent(jt.key), s)
		var n int64
		if inSQL {
			tag, err := c.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s <> %s", jt.info.Ident, expr, quoteLiteral(s)))
			if err != nil {
				return fmt.Errorf("shard %s: deleting moved rows of %s: %w", s, jt.name, err)
			}
			n = tag.RowsAffected()
		} else {
			var err error
			n, err = j.deleteWhere(ctx, c, jt, s, func(key string) (bool, error) {
				to, err := jt.place.newOwner(ctx, key, s)
				return to != s, err
			})
			if err != nil {
				return fmt.Errorf("shard %s: deleting moved rows of %s: %w", s, jt.name, err)
			}
		}
		if n > 0 {
			j.log.Info("moved rows deleted from their old shard", "table", jt.name, "shard", s, "rows", n)
		}
	}
	return nil
}

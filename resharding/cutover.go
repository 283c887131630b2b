package resharding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The cutover protocol between a job and the proxies, over LISTEN/NOTIFY
// on Channel in the metadata database. Payloads are space-separated:
//
//	pause  <job> <attempt> <bound ms> <shard,shard...>
//	switch <job> <attempt> <epoch>
//	resume <job> <attempt>
//
// A proxy acks each by inserting (job, attempt, step, proxy id) into
// shardproxy_reshard_ack. Proxies register themselves in shardproxy_proxy
// and refresh last_seen; the job waits for every proxy seen within
// proxyLiveness. A proxy that paused resumes on its own after the bound
// (plus a margin), first adopting the newest epoch: if the job died after
// writing the epoch, no proxy resumes on the old map.

// proxyLiveness is how recently a proxy must have refreshed its
// registration to be waited for.
const proxyLiveness = 15 * time.Second

// PauseMargin is how much longer than the bound a proxy holds writes
// before it resumes on its own.
const PauseMargin = 3 * time.Second

func (j *Job) notify(ctx context.Context, payload string) error {
	_, err := j.meta.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, payload)
	return err
}

func (j *Job) liveProxies(ctx context.Context) ([]string, error) {
	rows, err := j.meta.Query(ctx, "SELECT id FROM shardproxy_proxy WHERE last_seen > now() - $1::interval ORDER BY id",
		fmt.Sprintf("%d milliseconds", proxyLiveness.Milliseconds()))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// waitAcks waits until every proxy in want acked step, or deadline.
func (j *Job) waitAcks(ctx context.Context, attempt int, step string, want []string, deadline time.Time) (missing []string, err error) {
	for {
		rows, err := j.meta.Query(ctx, "SELECT proxy FROM shardproxy_reshard_ack WHERE job_id = $1 AND attempt = $2 AND step = $3", j.id, attempt, step)
		if err != nil {
			return nil, err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		missing = missing[:0]
		for _, p := range want {
			if !contains(got, p) {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// cutover runs one attempt. ok is false when the bound was exceeded and
// the proxies were resumed on the old map.
func (j *Job) cutover(ctx context.Context, attempt int, streamers []*streamer, halt func() error) (ok bool, err error) {
	proxies, err := j.liveProxies(ctx)
	if err != nil {
		return false, err
	}
	var shards []string
	for _, s := range j.sources {
		shards = append(shards, s.shard)
	}
	start := time.Now()
	deadline := start.Add(j.opts.PauseBound)
	resumeOld := func(why string) (bool, error) {
		j.log.Warn("cutover abandoned; proxies resume on the old map", "attempt", attempt, "reason", why)
		return false, j.notify(ctx, fmt.Sprintf("resume %d %d", j.id, attempt))
	}
	if err := j.notify(ctx, fmt.Sprintf("pause %d %d %d %s", j.id, attempt, j.opts.PauseBound.Milliseconds(), strings.Join(shards, ","))); err != nil {
		return false, err
	}
	missing, err := j.waitAcks(ctx, attempt, "pause", proxies, deadline)
	if err != nil {
		return false, err
	}
	if len(missing) > 0 {
		return resumeOld("no pause ack from " + strings.Join(missing, ", "))
	}
	paused := time.Now()
	if err := j.hook("cutover-paused"); err != nil {
		return false, err
	}
	// Writes are held: drain every slot to its source's current position.
	for _, s := range streamers {
		c, err := j.source(ctx, s.src.shard)
		if err != nil {
			return false, err
		}
		target, err := currentLSN(ctx, c)
		if err != nil {
			return false, err
		}
		for s.pos.Load() < target {
			if time.Now().After(deadline) {
				return resumeOld(fmt.Sprintf("shard %s still %d bytes behind", s.src.shard, target-s.pos.Load()))
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	drained := time.Now()
	var diffs []string
	if !j.opts.SkipVerify {
		if diffs, err = j.verify(ctx); err != nil {
			return false, err
		}
	}
	if len(diffs) > 0 {
		j.notify(ctx, fmt.Sprintf("resume %d %d", j.id, attempt))
		return false, fmt.Errorf("verification failed, the old map keeps serving:\n  %s", strings.Join(diffs, "\n  "))
	}
	verified := time.Now()
	if verified.After(deadline) {
		return resumeOld("verification took past the bound")
	}
	// The switch: the epoch, the directory entries and the phase change
	// commit together.
	var epoch int64
	err = pgx.BeginFunc(ctx, j.meta, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "INSERT INTO shardproxy_epoch (map, job_id) VALUES ($1, $2) RETURNING epoch", j.targetText, j.id).Scan(&epoch); err != nil {
			return err
		}
		if err := j.moveEntries(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE shardproxy_reshard_job SET phase = $2, updated_at = now() WHERE id = $1", j.id, PhaseCleanup)
		return err
	})
	if errors.Is(err, errEntryChanged) {
		j.notify(ctx, fmt.Sprintf("resume %d %d", j.id, attempt))
		return false, err
	}
	if err != nil {
		return false, err
	}
	if err := j.notify(ctx, fmt.Sprintf("switch %d %d %d", j.id, attempt, epoch)); err != nil {
		return true, err
	}
	// Past the epoch there is no going back: wait for the switch acks a
	// while longer than the bound; a proxy that misses it adopts the
	// epoch before it resumes on its own.
	missing, err = j.waitAcks(ctx, attempt, "switch", proxies, time.Now().Add(PauseMargin))
	if err != nil {
		return true, err
	}
	if len(missing) > 0 {
		j.log.Warn("no switch ack; those proxies adopt the epoch when they resume on their own", "proxies", missing)
	}
	switched := time.Now()
	// Reads are held too (every transaction on the sources waits at the
	// gate): delete the moved rows from their old shards now, so that no
	// keyless read ever sees a row on its old and its new owner. The
	// streams stop first: they would replay these deletes on the new owners.
	if err := halt(); err != nil {
		j.log.Warn("replication stream ended with an error after the switch (drained already)", "err", err)
	}
	if err := j.deleteMoved(ctx); err != nil {
		// The proxies resume on their own after the bound; a resumed job
		// deletes again in cleanup.
		return true, err
	}
	if err := j.notify(ctx, fmt.Sprintf("resume %d %d", j.id, attempt)); err != nil {
		return true, err
	}
	j.log.Info("cutover done", "epoch", epoch, "attempt", attempt, "pause_ack", paused.Sub(start), "drain", drained.Sub(paused),
		"verify", verified.Sub(drained), "delete_moved", time.Since(switched), "pause_total", time.Since(start))
	return true, nil
}

var errEntryChanged = errors.New("a directory entry the job moves was changed by someone else during the job; the old map keeps serving (abort the job and plan again)")

// moveEntries points the moved keys' directory entries at their new
// shards, inside the switch's transaction. An entry no longer naming the
// shard the job copied from was changed behind the job's back: its rows
// may be elsewhere, so the switch is refused. The directory's trigger
// notifies every proxy's cache; the proxies also drop their caches when
// they apply the new epoch (the two notifications arrive on different
// connections, in no particular order).
func (j *Job) moveEntries(ctx context.Context, tx pgx.Tx) error {
	for _, m := range j.moves {
		table := j.next.StrategyByName(m.Strategy).Table
		tag, err := tx.Exec(ctx, "UPDATE "+quoteTable(table)+" SET shard = $3, updated_at = now() WHERE key = $1 AND shard = $2", m.Key, m.From, m.To)
		if err != nil {
			return fmt.Errorf("directory %s: %w", table, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("directory %s key %s: %w", table, m.Key, errEntryChanged)
		}
	}
	return nil
}

// verify compares, per table and move, the count and an order-independent
// checksum (sum of hashtext of the row) of the moving rows on the source
// and of the rows the destination got from that source. Writes are
// paused and drained, so both sides are at the same point.
func (j *Job) verify(ctx context.Context) ([]string, error) {
	type agg struct {
		n   int64
		sum int64
	}
	var diffs []string
	// A reference table: the same rows on its source and every new shard.
	for _, jt := range j.refs {
		sum := func(c *pgx.Conn, shard string) (a agg, err error) {
			err = c.QueryRow(ctx, fmt.Sprintf("SELECT count(*), coalesce(sum(hashtext(ROW(%s)::text)), 0) FROM %s", jt.info.colList(), jt.info.Ident)).Scan(&a.n, &a.sum)
			if err != nil {
				err = fmt.Errorf("shard %s: verify %s: %w", shard, jt.name, err)
			}
			return a, err
		}
		c, err := j.source(ctx, j.refSource)
		if err != nil {
			return nil, err
		}
		want, err := sum(c, j.refSource)
		if err != nil {
			return nil, err
		}
		for _, d := range jt.refTo {
			c, err := j.dest(ctx, d)
			if err != nil {
				return nil, err
			}
			got, err := sum(c, d)
			if err != nil {
				return nil, err
			}
			if got != want {
				diffs = append(diffs, fmt.Sprintf("reference table %s %s -> %s: source %d rows (checksum %d), destination %d rows (checksum %d)",
					jt.name, j.refSource, d, want.n, want.sum, got.n, got.sum))
			}
		}
	}
	for _, jt := range j.tables {
		src := map[[2]string]*agg{} // from, to
		dst := map[[2]string]*agg{}
		// aggregate has the server group the rows by owner (no row leaves
		// it); used when both strategies have an SQL form.
		aggregate := func(c *pgx.Conn, shard, ownerExpr string, out map[[2]string]*agg, dir int) error {
			q := fmt.Sprintf("SELECT %s, count(*), coalesce(sum(hashtext(ROW(%s)::text)), 0) FROM %s GROUP BY 1",
				ownerExpr, jt.info.colList(), jt.info.Ident)
			rows, err := c.Query(ctx, q)
			if err != nil {
				return fmt.Errorf("shard %s: verify %s: %w", shard, jt.name, err)
			}
			var other *string
			var n, sum int64
			_, err = pgx.ForEachRow(rows, []any{&other, &n, &sum}, func() error {
				if other == nil {
					return fmt.Errorf("shard %s: table %s has rows no shard owns", shard, jt.name)
				}
				if *other == shard {
					return nil
				}
				k := [2]string{shard, *other}
				if dir < 0 {
					k = [2]string{*other, shard}
				}
				out[k] = &agg{n: n, sum: sum}
				return nil
			})
			return err
		}
		scan := func(c *pgx.Conn, shard string, s func(key string) (string, error), out map[[2]string]*agg, dir int) error {
			expr, ok := jt.place.newOwnerSQL(quoteIdent(jt.key), shard)
			if dir < 0 {
				expr, ok = jt.place.oldOwnerSQL(quoteIdent(jt.key), shard)
			}
			if ok {
				return aggregate(c, shard, expr, out, dir)
			}
			q := fmt.Sprintf("SELECT %s::text, hashtext(ROW(%s)::text) FROM %s", quoteIdent(jt.key), jt.info.colList(), jt.info.Ident)
			rows, err := c.Query(ctx, q)
			if err != nil {
				return fmt.Errorf("shard %s: verify %s: %w", shard, jt.name, err)
			}
			var key string
			var h int32
			_, err = pgx.ForEachRow(rows, []any{&key, &h}, func() error {
				other, err := s(key)
				if err != nil || other == shard {
					return err
				}
				k := [2]string{shard, other}
				if dir < 0 {
					k = [2]string{other, shard}
				}
				a := out[k]
				if a == nil {
					a = &agg{}
					out[k] = a
				}
				a.n++
				a.sum += int64(h)
				return nil
			})
			return err
		}
		for _, s := range jt.place.sources() {
			c, err := j.source(ctx, s)
			if err != nil {
				return nil, err
			}
			if err := scan(c, s, func(k string) (string, error) { return jt.place.newOwner(ctx, k, s) }, src, 1); err != nil {
				return nil, err
			}
		}
		for _, d := range jt.place.destinations() {
			c, err := j.dest(ctx, d)
			if err != nil {
				return nil, err
			}
			if err := scan(c, d, func(k string) (string, error) { return jt.place.oldOwner(ctx, k, d) }, dst, -1); err != nil {
				return nil, err
			}
		}
		keys := map[[2]string]bool{}
		for k := range src {
			keys[k] = true
		}
		for k := range dst {
			keys[k] = true
		}
		for k := range keys {
			a, b := src[k], dst[k]
			if a == nil {
				a = &agg{}
			}
			if b == nil {
				b = &agg{}
			}
			if *a != *b {
				diffs = append(diffs, fmt.Sprintf("table %s %s -> %s: source %d rows (checksum %d), destination %d rows (checksum %d)",
					jt.name, k[0], k[1], a.n, a.sum, b.n, b.sum))
			}
		}
	}
	return diffs, nil
}

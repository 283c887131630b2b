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
//	extend <job> <attempt>
//	resume <job> <attempt>
//
// A proxy acks each but extend by inserting (job, attempt, step, proxy
// id) into shardproxy_reshard_ack. Proxies register themselves in
// shardproxy_proxy and refresh last_seen; the job waits for every proxy
// seen within proxyLiveness. A proxy that paused resumes on its own after
// the bound (plus a margin), first adopting the newest epoch: if the job
// died after writing the epoch, no proxy resumes on the old map (one that
// cannot reach the metadata database keeps the pause until it can).
//
// After the switch the moved rows are on their old and their new shards
// until the job deleted them from the old: a keyless read would count
// them twice. So the job renews the pause while it deletes (switch and
// extend move the proxies' deadline a bound on; the delete of a big table
// may take far longer than the bound), and the epoch row says whether
// rows are left (moved_rows_left, cleared once they are deleted, before
// resume). A proxy whose pause ends by itself while rows are left (the
// job died or failed after its switch) fails every statement on the
// job's source shards with 55000 until a resumed job's cleanup deleted
// them: unavailable and saying why, rather than silently wrong.

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
	// The catch-up loop waited for prepared transactions to end; one
	// prepared since, before the pause, would commit after the switch.
	if held, err := j.preparedOnSources(ctx); err != nil {
		return false, err
	} else if held != "" {
		return resumeOld("prepared transactions on the sources: " + held)
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
	if drained.After(deadline) {
		return resumeOld("draining took past the bound")
	}
	// The switch: the epoch, the directory entries and the phase change
	// commit together.
	var epoch int64
	err = pgx.BeginFunc(ctx, j.meta, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "INSERT INTO shardproxy_epoch (map, job_id, moved_rows_left) VALUES ($1, $2, true) RETURNING epoch", j.targetText, j.id).Scan(&epoch); err != nil {
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
	// while longer than the bound (the switch renewed the proxies'
	// pause); a proxy that misses it adopts the epoch before it resumes on
	// its own.
	missing, err = j.waitAcks(ctx, attempt, "switch", proxies, time.Now().Add(PauseMargin))
	if err != nil {
		return true, err
	}
	if len(missing) > 0 {
		j.log.Warn("no switch ack; those proxies adopt the epoch when they resume on their own", "proxies", missing)
	}
	switched := time.Now()
	if err := j.hook("cutover-switched"); err != nil {
		return true, err
	}
	// Reads are held too (every transaction on the sources waits at the
	// gate): delete the moved rows from their old shards now, so that no
	// keyless read ever sees a row on its old and its new owner. The
	// streams stop first: they would replay these deletes on the new owners.
	if err := halt(); err != nil {
		j.log.Warn("replication stream ended with an error after the switch (drained already)", "err", err)
	}
	if err := j.deleteMovedRenewing(ctx, attempt); err != nil {
		// The proxies stop waiting a bound after the last renewal and
		// fence the sources (moved_rows_left); a resumed job deletes
		// again in cleanup.
		return true, err
	}
	if err := j.notify(ctx, fmt.Sprintf("resume %d %d", j.id, attempt)); err != nil {
		return true, err
	}
	j.log.Info("cutover done", "epoch", epoch, "attempt", attempt, "pause_ack", paused.Sub(start), "drain", drained.Sub(paused),
		"delete_moved", time.Since(switched), "pause_total", time.Since(start))
	return true, nil
}

// deleteMovedRenewing deletes the moved rows from the sources (inside
// the pause) and renews the proxies' pause every half bound meanwhile,
// so that none ends it by itself while the job still deletes. Once
// deleted, the epoch stops saying rows are left.
func (j *Job) deleteMovedRenewing(ctx context.Context, attempt int) error {
	extend := func() {
		if err := j.notify(ctx, fmt.Sprintf("extend %d %d", j.id, attempt)); err != nil {
			// The proxies fence the sources once the pause ends.
			j.log.Warn("renewing the pause", "err", err)
		}
	}
	// At once too: the switch renewed the pause, and the wait for its
	// acks and the streams' stop took some of that since.
	extend()
	done := make(chan error, 1)
	go func() { done <- j.deleteMoved(ctx) }() // its own connections: j.meta stays here
	tick := time.NewTicker(j.opts.PauseBound / 2)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			return j.movedRowsDeleted(ctx)
		case <-tick.C:
			extend()
		}
	}
}

// movedRowsDeleted records that no moved row is left on a source: the
// proxies lift their fence (or resume without one).
func (j *Job) movedRowsDeleted(ctx context.Context) error {
	_, err := j.meta.Exec(ctx, "UPDATE shardproxy_epoch SET moved_rows_left = false WHERE job_id = $1 AND moved_rows_left", j.id)
	return err
}

// preparedOnSources lists the prepared transactions in the sources'
// databases ("shard: gid, ..."), "" if none. A prepared transaction (a
// client's PREPARE TRANSACTION, a two-phase commit of the proxies in
// doubt) holds no backend, so the proxies' pause does not wait for it,
// and logical decoding sends its writes only at COMMIT PREPARED: after a
// cutover that would be on the old owner, after the streams stopped (and
// the deletion of the moved rows, inside the pause, waits for its row
// locks). A cutover must not start while one exists; none can be prepared
// on a paused source (that takes a backend there).
func (j *Job) preparedOnSources(ctx context.Context) (string, error) {
	var held []string
	for _, s := range j.sources {
		c, err := j.source(ctx, s.shard)
		if err != nil {
			return "", err
		}
		rows, err := c.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY gid")
		if err != nil {
			return "", err
		}
		gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", err
		}
		for _, g := range gids {
			held = append(held, s.shard+": "+g)
		}
	}
	return strings.Join(held, ", "), nil
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

package resharding

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// verifyOnline compares the sources with the destinations while writes go
// on (step 5 of the job): per source, a temporary slot exports a snapshot
// at a WAL position X; the source's streamer applies every transaction
// committed before X and holds; once every streamer holds, a snapshot is
// taken on every destination and the streamers go on. Each destination
// snapshot then holds exactly what the sources' snapshots say it should,
// and verify compares the two at leisure. The writers never wait for it.
func (j *Job) verifyOnline(ctx, streams context.Context, streamers []*streamer) (diffs []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	// The sources' snapshots, each imported into a read-only transaction
	// on the connection verify queries the source with.
	barriers := make([]*barrier, len(streamers))
	var txs []pgx.Tx
	defer func() {
		// Whatever happened, every stream goes on.
		for i, b := range barriers {
			if b == nil {
				continue
			}
			streamers[i].barrier.Store(nil)
			if !b.isKnown() {
				b.set(^uint64(0))
			}
			select {
			case <-b.release:
			default:
				close(b.release)
			}
		}
		for _, tx := range txs {
			tx.Rollback(context.Background())
		}
	}()
	for i, s := range streamers {
		// The barrier goes up before the snapshot is taken: any
		// transaction the stream applies from now on may commit after it.
		barriers[i] = newBarrier()
		s.barrier.Store(barriers[i])
		lsn, err := j.snapshotSource(ctx, s.src, &txs)
		if err != nil {
			return nil, err
		}
		barriers[i].set(lsn)
	}
	for i, b := range barriers {
		select {
		case <-b.reached:
		case <-streams.Done():
			return nil, errStreamsStopped
		case <-ctx.Done():
			return nil, fmt.Errorf("verification: the stream of shard %s did not reach the snapshot's position: %w", streamers[i].src.shard, ctx.Err())
		}
	}
	// Every stream holds: the destinations' snapshots.
	if err := j.hook("verify-holding"); err != nil {
		return nil, err
	}
	for _, d := range j.verifiedDests() {
		c, err := j.dest(ctx, d)
		if err != nil {
			return nil, err
		}
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", d, err)
		}
		txs = append(txs, tx)
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil { // the snapshot is taken by the first statement
			return nil, fmt.Errorf("shard %s: %w", d, err)
		}
	}
	for _, b := range barriers {
		close(b.release)
	}
	return j.verify(ctx)
}

// verifyTimeout bounds the online verification (a source's snapshot waits
// for the transactions running there, the streams for their backlog).
const verifyTimeout = 5 * time.Minute

// snapshotSource opens a repeatable-read transaction on src's connection
// that sees exactly the transactions committed before the returned LSN,
// from a temporary slot's exported snapshot.
func (j *Job) snapshotSource(ctx context.Context, src *source, txs *[]pgx.Tx) (uint64, error) {
	c, err := j.source(ctx, src.shard)
	if err != nil {
		return 0, err
	}
	rc, err := replicationConn(ctx, shardDSN(j.cur, src.shard))
	if err != nil {
		return 0, fmt.Errorf("shard %s: replication connection: %w", src.shard, err)
	}
	// The slot is temporary: it goes with this connection, once the
	// snapshot is imported.
	defer rc.Close(context.Background())
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, src.slot+"_verify", "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("shard %s: verification needs a temporary slot: %w", src.shard, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, err
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("shard %s: %w", src.shard, err)
	}
	*txs = append(*txs, tx)
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET TRANSACTION SNAPSHOT '%s'", res.SnapshotName)); err != nil {
		return 0, fmt.Errorf("shard %s: %w", src.shard, err)
	}
	return uint64(lsn), nil
}

// verifiedDests are the shards verify reads as destinations.
func (j *Job) verifiedDests() []string {
	set := map[string]bool{}
	for _, jt := range j.tables {
		for _, d := range jt.place.destinations() {
			set[d] = true
		}
	}
	for _, jt := range j.refs {
		for _, d := range jt.refTo {
			set[d] = true
		}
	}
	var out []string
	for _, s := range j.next.Shards {
		if set[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
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

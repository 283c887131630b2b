package resharding_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/resharding"
)

// BenchmarkReshard runs the example job (2 -> 3 shards) with benchRows
// extra orders on the sources while eight writers write about 1,000
// statements/s through two proxies (and one more about 50/s to the
// reference table), and reports:
//
//	copy-rows/s, copy-MB/s   the job's copy phase (moving rows only)
//	plain-rows/s, plain-MB/s COPY of a whole source table to the new shard
//	                         (pgconn CopyTo piped into CopyFrom), the baseline
//	max-lag-bytes            replication lag sampled during catchup
//	verify-s                 the verification, while writes go on
//	writes/s                 the rate the writers reached
//	pause-p50/p99/max-ms     latency of the writers' statements that were
//	                         in flight during the cutover (acked pause to
//	                         acked resume), as the writers saw them
//
// One iteration is one whole job: run it with -benchtime=1x.
func BenchmarkReshard(b *testing.B) {
	benchReshard(b, resharding.Options{})
}

func benchReshard(b *testing.B, base resharding.Options) {
	const benchRows = 200_000
	for range b.N {
		sc := startScenario(b, "current.yaml", "target.yaml", scenarioOptions{writers: 8})
		ctx := context.Background()
		// Bulk orders of customers the writers do not touch.
		var rows [][]any
		for i := int64(0); i < benchRows; i++ {
			cust := 1000 + i/4
			rows = append(rows, []any{cust, i, fmt.Sprintf("%d.00", i%1000), "bulk order padding text"})
		}
		resharding.SeedRows(b, sc.c, sc.cur, "orders", []string{"customer_id", "order_id", "amount", "note"}, 0, rows)
		for _, w := range sc.writers {
			w.interval = 8 * time.Millisecond // 125/s each
		}
		sc.ref.pace = 20 * time.Millisecond // and about 50/s to the reference table

		// Baseline: plain COPY of s0's orders into a scratch table on s2.
		plainRows, plainBytes, plainDur := plainCopy(b, sc)

		id, plan, err := resharding.Create(ctx, sc.curText, sc.nextText, nil)
		if err != nil {
			b.Fatal(err)
		}
		moving, movingBytes := plan.MovingRows()
		var copyStart, copyDone, verifyStart, verifyDone time.Time
		maxLag := int64(0)
		stopSampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stopSampling:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if st, err := resharding.ReadStatus(ctx, sc.cur.Metadata.DSN, id); err == nil && st.Phase == resharding.PhaseCatchup {
					maxLag = max(maxLag, st.LagBytes())
				}
			}
		}()
		base.Logger = slog.New(slog.NewTextHandler(testLog{b, "job"}, nil))
		opts := resharding.WithHook(base, func(p string) error {
			// Copy time: from the first row copied (destination tables
			// and slots exist) to the end of the copy phase; the slot of
			// the second source is created in between.
			if p == "copy-rows" && copyStart.IsZero() {
				copyStart = time.Now()
			}
			if p == "catchup" && copyDone.IsZero() {
				copyDone = time.Now()
			}
			if p == "verify" && verifyStart.IsZero() {
				verifyStart = time.Now()
			}
			if p == "verified" && verifyDone.IsZero() {
				verifyDone = time.Now()
			}
			return nil
		})
		if err := resharding.Run(ctx, sc.cur.Metadata.DSN, id, opts); err != nil {
			b.Fatal(err)
		}
		close(stopSampling)
		<-sampled
		time.Sleep(300 * time.Millisecond)
		sc.stop()

		copyDur := copyDone.Sub(copyStart)
		b.ReportMetric(float64(moving)/copyDur.Seconds(), "copy-rows/s")
		b.ReportMetric(float64(movingBytes)/copyDur.Seconds()/1e6, "copy-MB/s")
		b.ReportMetric(float64(plainRows)/plainDur.Seconds(), "plain-rows/s")
		b.ReportMetric(float64(plainBytes)/plainDur.Seconds()/1e6, "plain-MB/s")
		b.ReportMetric(float64(maxLag), "max-lag-bytes")
		b.ReportMetric(verifyDone.Sub(verifyStart).Seconds(), "verify-s")

		// The cutover window from the proxies' acks.
		var from, to time.Time
		err = sc.c.Conn(b, "meta").QueryRow(ctx, `SELECT min(at) FILTER (WHERE step = 'pause'), max(at) FILTER (WHERE step = 'resume')
			FROM shardproxy_reshard_ack WHERE job_id = $1 AND attempt = (SELECT max(attempt) FROM shardproxy_reshard_ack WHERE job_id = $1 AND step = 'resume')`, id).Scan(&from, &to)
		if err != nil {
			b.Fatal(err)
		}
		var lats []time.Duration
		total := 0
		var first, last time.Time
		for _, w := range sc.writers {
			total += len(w.samples)
			for _, s := range w.samples {
				if first.IsZero() || s.start.Before(first) {
					first = s.start
				}
				if end := s.start.Add(s.d); end.After(last) {
					last = end
				}
				if s.start.Before(to) && s.start.Add(s.d).After(from) {
					lats = append(lats, s.d)
				}
			}
		}
		// The rate the writers reached (the pacing is a ceiling: on a busy
		// machine statements take longer than the interval).
		b.ReportMetric(float64(total)/last.Sub(first).Seconds(), "writes/s")
		slices.Sort(lats)
		if len(lats) > 0 {
			pct := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "pause-p50-ms")
			b.ReportMetric(pct(0.99), "pause-p99-ms")
			b.ReportMetric(pct(1), "pause-max-ms")
		}
		b.Logf("moved %d rows (%d bytes) in %s; plain COPY %d rows (%d bytes) in %s; %d writer statements, %d in the cutover window (%s)",
			moving, movingBytes, copyDur, plainRows, plainBytes, plainDur, total, len(lats), to.Sub(from))
	}
}

// plainCopy copies s0's orders into a scratch table on s2 with COPY.
func plainCopy(b *testing.B, sc *scenario) (rows, bytes int64, d time.Duration) {
	ctx := context.Background()
	src, dst := sc.c.Conn(b, "s0"), sc.c.Conn(b, "s2")
	if _, err := dst.Exec(ctx, "CREATE TABLE plain_copy (customer_id bigint, order_id bigint, amount numeric(12,2), note text, PRIMARY KEY (customer_id, order_id))"); err != nil {
		b.Fatal(err)
	}
	defer dst.Exec(ctx, "DROP TABLE plain_copy")
	if err := src.QueryRow(ctx, "SELECT count(*), sum(pg_column_size(o.*)) FROM orders o").Scan(&rows, &bytes); err != nil {
		b.Fatal(err)
	}
	pr, pw := io.Pipe()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := src.PgConn().CopyTo(ctx, pw, "COPY orders TO STDOUT")
		pw.CloseWithError(err)
		errc <- err
	}()
	if _, err := dst.PgConn().CopyFrom(ctx, pr, "COPY plain_copy FROM STDIN"); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return rows, bytes, time.Since(start)
}

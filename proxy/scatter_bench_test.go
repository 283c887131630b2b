package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
)

const scatterBenchRows = 1_000_000

const scatterBenchBody = `
strategies:
  by_k: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  bench: {key: k, strategy: by_k}
default_shard: s0
two_phase_commit: true
`

// BenchmarkScatter compares scatter-gather through the proxy with the same
// statement on one unsharded Postgres holding all the rows (the oracle), and
// a single-shard point query through the proxy with the same query straight
// to its shard: the merge machinery must not slow the point query down.
//
//	go test -bench Scatter ./proxy/ -run '^$'
//
// 1M rows: the oracle gets them all; shard i of 3 gets the rows Postgres'
// own hash partitioning puts in remainder i (satisfies_hash_partition), which
// is what the hash strategy promises. Point queries through the proxy check
// that promise before anything is timed.
func BenchmarkScatter(b *testing.B) {
	f := startFixture(b, fixtureOptions{Shards: 3, Body: scatterBenchBody})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const ddl = "CREATE TABLE bench (k int8 PRIMARY KEY, v int4 NOT NULL, pad text NOT NULL)"
	const cols = "SELECT g, ((g::int8 * 7919) %% 100000)::int4, md5(g::text) FROM generate_series(1, %d) g"
	proxyConn, err := pgx.Connect(ctx, f.DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer proxyConn.Close(context.Background())
	if _, err := proxyConn.Exec(ctx, ddl); err != nil {
		b.Fatal(err)
	}
	oracleDB := shared.DatabaseName("oracle_bench_")
	if err := f.Meta.CreateDatabase(ctx, oracleDB); err != nil {
		b.Fatal(err)
	}
	oracle, err := f.Meta.Connect(ctx, oracleDB)
	if err != nil {
		b.Fatal(err)
	}
	defer oracle.Close(context.Background())

	// Load the four servers in parallel: each is its own Postgres.
	var g errgroup.Group
	g.Go(func() error {
		for _, s := range []string{ddl, "INSERT INTO bench " + fmt.Sprintf(cols, scatterBenchRows), "ANALYZE bench"} {
			if _, err := oracle.Exec(ctx, s); err != nil {
				return fmt.Errorf("oracle: %s: %w", s, err)
			}
		}
		return nil
	})
	shardConns := map[string]*pgx.Conn{}
	for i, sh := range []string{"s0", "s1", "s2"} {
		c := f.Direct(b, sh)
		shardConns[sh] = c
		g.Go(func() error {
			for _, s := range []string{
				"CREATE TABLE bench_hash (k int8) PARTITION BY HASH (k)",
				fmt.Sprintf("INSERT INTO bench "+cols+" WHERE satisfies_hash_partition('bench_hash'::regclass, 3, %d, g::int8)", scatterBenchRows, i),
				"DROP TABLE bench_hash",
				"ANALYZE bench",
			} {
				if _, err := c.Exec(ctx, s); err != nil {
					return fmt.Errorf("%s: %s: %w", sh, s, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	// The proxy must find every key where Postgres' hash partitioning put it.
	for k := int64(1); k <= 300; k += 7 {
		var got int64
		if err := proxyConn.QueryRow(ctx, "SELECT k FROM bench WHERE k = $1", k).Scan(&got); err != nil {
			b.Fatalf("point query for k=%d through the proxy: %v (routed to a shard that does not hold it?)", k, err)
		}
	}

	b.Run("count", func(b *testing.B) {
		benchSame(b, oracle, proxyConn, "SELECT count(*) FROM bench", 0)
	})
	b.Run("orderby_limit", func(b *testing.B) {
		benchSame(b, oracle, proxyConn, "SELECT k, v FROM bench ORDER BY v DESC, k LIMIT 10", 0)
	})
	// A cursor read FETCH 1000 at a time (psql FETCH_COUNT, JDBC fetch
	// size) against the same rows read by one SELECT: what the batches
	// and the merge's suspension cost.
	const cursorRows = 100_000
	const sorted = "SELECT k, v, pad FROM bench WHERE k <= 100000 ORDER BY k"
	b.Run("cursor_fetch1000", func(b *testing.B) {
		for _, tc := range []struct {
			name string
			conn *pgx.Conn
		}{{"oracle", oracle}, {"proxy", proxyConn}} {
			b.Run(tc.name, func(b *testing.B) {
				for b.Loop() {
					if n := readCursorBench(b, tc.conn.PgConn(), sorted, 1000); n != cursorRows {
						b.Fatalf("cursor read %d rows, want %d", n, cursorRows)
					}
				}
				b.ReportMetric(float64(cursorRows*b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	})
	b.Run("select_same_rows", func(b *testing.B) {
		for _, tc := range []struct {
			name string
			conn *pgx.Conn
		}{{"oracle", oracle}, {"proxy", proxyConn}} {
			b.Run(tc.name, func(b *testing.B) {
				for b.Loop() {
					rs, err := tc.conn.PgConn().Exec(ctx, sorted).ReadAll()
					if err != nil || len(rs[0].Rows) != cursorRows {
						b.Fatalf("%v", err)
					}
				}
				b.ReportMetric(float64(cursorRows*b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	})
	// A gathered statement (plan_build_gather.go): two occurrences of
	// bench, 100k rows each after the filter the shards apply, held as row
	// text and evaluated by one shard; rows/s counts the gathered rows.
	b.Run("gathered", func(b *testing.B) {
		const gathered = "SELECT count(*), sum(v) FROM bench WHERE k <= 100000 AND v > (SELECT avg(v) FROM bench b2 WHERE b2.k <= 100000)"
		benchSame(b, oracle, proxyConn, gathered, 2*cursorRows)
	})
	b.Run("point", func(b *testing.B) {
		const q = "SELECT k, v, pad FROM bench WHERE k = $1"
		owner := func(k int64) *pgx.Conn {
			for _, c := range shardConns {
				var n int
				if err := c.QueryRow(ctx, "SELECT count(*) FROM bench WHERE k = $1", k).Scan(&n); err == nil && n == 1 {
					return c
				}
			}
			b.Fatalf("no shard holds k=%d", k)
			return nil
		}
		const key = 424242
		for _, tc := range []struct {
			name string
			conn *pgx.Conn
		}{{"shard", owner(key)}, {"proxy", proxyConn}, {"oracle", oracle}} {
			b.Run(tc.name, func(b *testing.B) {
				var k, v int64
				var pad string
				for b.Loop() {
					if err := tc.conn.QueryRow(ctx, q, int64(key)).Scan(&k, &v, &pad); err != nil || k != key {
						b.Fatalf("k=%d: got %d, %v", key, k, err)
					}
				}
			})
		}
	})
}

// benchSame times sql on the oracle and through the proxy (simple
// protocol, text results), after checking once that both give the same
// rows; with rows > 0 it also reports rows/s, rows per execution.
func benchSame(b *testing.B, oracle, proxy *pgx.Conn, sql string, rows int) {
	ctx := context.Background()
	want, err := textRows(ctx, oracle.PgConn(), sql)
	if err != nil {
		b.Fatalf("oracle: %v", err)
	}
	for _, tc := range []struct {
		name string
		conn *pgx.Conn
	}{{"oracle", oracle}, {"proxy", proxy}} {
		b.Run(tc.name, func(b *testing.B) {
			got, err := textRows(ctx, tc.conn.PgConn(), sql)
			if err != nil {
				b.Fatalf("%s: %s", sql, describeErr(err))
			}
			if !slices.Equal(got, want) {
				b.Fatalf("%s: %v, oracle %v", sql, got, want)
			}
			for b.Loop() {
				if _, err := tc.conn.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
					b.Fatal(err)
				}
			}
			if rows > 0 {
				b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
			}
		})
	}
}

func textRows(ctx context.Context, c *pgconn.PgConn, sql string) ([]string, error) {
	rs, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		for _, row := range r.Rows {
			out = append(out, fmt.Sprintf("%q", row))
		}
	}
	return out, nil
}

// readCursorBench reads sql through a cursor, fetch rows at a time, in a
// transaction it rolls back, and returns the number of rows read.
func readCursorBench(b *testing.B, c *pgconn.PgConn, sql string, fetch int) int {
	ctx := context.Background()
	if _, err := c.Exec(ctx, "BEGIN; DECLARE c NO SCROLL CURSOR FOR "+sql).ReadAll(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		rs, err := c.Exec(ctx, fmt.Sprintf("FETCH %d FROM c", fetch)).ReadAll()
		if err != nil {
			b.Fatal(err)
		}
		n += len(rs[0].Rows)
		if len(rs[0].Rows) < fetch {
			break
		}
	}
	if _, err := c.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		b.Fatal(err)
	}
	return n
}

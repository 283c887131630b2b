package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestPipelineRoutedBeforeCutover: a statement of a pipeline routed on
// the map before a cutover fails with 40001, also when the pipeline's
// work on another shard ended (it was synced, its backend given back)
// between the routing and the moment the statement takes its shards.
// The session used to forget the map it routed with there (its runtime
// is let go with the backend), so the check after the PAUSE gate found
// nothing to compare and the statement ran on its old route: a write to
// a key's old owner, a reference-table write that leaves out a new
// shard, a read that misses one.
func TestPipelineRoutedBeforeCutover(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: defaultBody + "two_phase_commit: true\n"})
	ctx := context.Background()
	app := f.Connect(t)
	keys := keysPerShard(t, f, app)
	mustExec(t, app, "CREATE TABLE products (sku int PRIMARY KEY, price int)")
	mustExec(t, app, "INSERT INTO products VALUES (1, 0)")
	for _, tc := range []struct {
		name, sql string
		check     string // on s1, directly: 0 when the statement did not run
	}{
		{"a write on another shard", fmt.Sprintf("UPDATE customers SET name = 'stale' WHERE customer_id = %d", keys["s1"]),
			"SELECT count(*) FROM customers WHERE name = 'stale'"},
		{"a reference-table write", "UPDATE products SET price = 9 WHERE sku = 1",
			"SELECT count(*) FROM products WHERE price = 9"},
		{"a read over every shard", "SELECT count(*) FROM customers", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := app.PgConn().StartPipeline(ctx)
			defer p.Close()
			// A read on s0, delivered: the session holds s0 in this
			// batch and routes the next statement on the map it has.
			p.SendQueryParams("SELECT name FROM customers WHERE customer_id = $1", [][]byte{[]byte(fmt.Sprint(keys["s0"]))}, nil, nil, nil)
			p.SendFlushRequest()
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			r, err := p.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.(*pgconn.ResultReader).Close(); err != nil {
				t.Fatal(err)
			}
			rt := *f.Server.Runtime() // same pools: only the map object is new
			f.Server.CutOver(&rt)
			p.SendQueryParams(tc.sql, nil, nil, nil, nil)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			r, err = p.GetResults()
			if err == nil {
				_, err = r.(*pgconn.ResultReader).Close()
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
				t.Errorf("%s, routed before the cutover: %v, want 40001", tc.sql, err)
			}
			if _, err := p.GetResults(); err != nil { // the Sync
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.check != "" {
				var n int
				if err := f.Direct(t, "s1").QueryRow(ctx, tc.check).Scan(&n); err != nil || n != 0 {
					t.Errorf("s1: the statement ran (%d rows, %v)", n, err)
				}
			}
			// The retry routes on the new map.
			if _, err := app.Exec(ctx, tc.sql); err != nil {
				t.Fatalf("the retry: %v", err)
			}
		})
	}
}

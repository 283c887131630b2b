package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// userPrepared is a txnFixture for a client's own PREPARE TRANSACTION:
// keys on s1 that no row has yet, and gids unique to the test (a gid is
// unique per Postgres server, across its databases, and the test servers
// are shared).
type userPrepared struct {
	txnFixture
	free []int64 // keys on s1, not inserted yet
	n    int
}

func startUserPrepared(t *testing.T) *userPrepared {
	f := startTxnFixture(t, twoPCBody)
	var free []int64
	for _, k := range keysByShard(t, f.fixture, "by_customer", 60)["s1"] {
		if k > 10 { // 1..10 are the fixture's customers
			free = append(free, k)
		}
	}
	return &userPrepared{txnFixture: f, free: free}
}

// key returns a key on s1 that nothing used yet.
func (u *userPrepared) key(t *testing.T) int64 {
	t.Helper()
	if len(u.free) == 0 {
		t.Fatal("out of keys on s1")
	}
	k := u.free[0]
	u.free = u.free[1:]
	return k
}

// gid returns a fresh gid, rolled back on every shard when the test ends
// whatever happened (a prepared transaction holds its locks, and its
// database cannot be dropped, until someone finishes it).
func (u *userPrepared) gid(t *testing.T) string {
	u.n++
	gid := fmt.Sprintf("%s-ut%d", u.DB, u.n)
	t.Cleanup(func() { u.rollbackPrepared(gid) })
	return gid
}

func (u *userPrepared) rollbackPrepared(gid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range u.Shards {
		if c, err := pgx.Connect(ctx, srv.DSN(u.DB)); err == nil {
			c.Exec(ctx, "ROLLBACK PREPARED "+quoteLit(gid)) // 42704 when already finished
			c.Close(ctx)
		}
	}
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// preparedOn lists the shards where gid is prepared, asked directly.
func (u *userPrepared) preparedOn(t *testing.T, gid string) []string {
	t.Helper()
	var on []string
	for sh := range u.Shards {
		var n int
		if err := u.Direct(t, sh).QueryRow(context.Background(),
			"SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()", gid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			on = append(on, sh)
		}
	}
	slices.Sort(on)
	return on
}

// prepareOnS1 inserts key k through the proxy, on s1, and prepares the
// transaction as gid; the session that did it is closed.
func (u *userPrepared) prepareOnS1(t *testing.T, mode pgx.QueryExecMode, k int64, gid string) {
	t.Helper()
	ctx := context.Background()
	c := u.Connect(t)
	for _, q := range []string{"BEGIN", fmt.Sprintf("INSERT INTO customers VALUES (%d, 1)", k), "PREPARE TRANSACTION " + quoteLit(gid)} {
		if err := execIn(ctx, c, mode, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	c.Close(ctx)
	if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s1"}) {
		t.Fatalf("%s prepared on %v, want [s1]", gid, on)
	}
}

// TestUserPreparedTransactions: a transaction a client prepared itself on
// a shard other than the default one is finished by COMMIT PREPARED or
// ROLLBACK PREPARED from any later session: the proxy finds the shard
// that holds the gid (it keeps no record of its own).
func TestUserPreparedTransactions(t *testing.T) {
	u := startUserPrepared(t)
	ctx := context.Background()
	exec := func(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode, q, code string) {
		t.Helper()
		err := execIn(ctx, c, mode, q)
		if got := sqlState(err); got != code || code == "" && err != nil {
			t.Fatalf("%s: %v (SQLSTATE %q), want SQLSTATE %q", q, err, got, code)
		}
	}
	count := func(t *testing.T, k int64) int64 {
		t.Helper()
		return directCount(t, u.fixture, "s1", "customers", "customer_id = $1", k)
	}
	for _, mode := range txnModes {
		t.Run(mode.String()+"/commit from another session", func(t *testing.T) {
			k, gid := u.key(t), u.gid(t)
			u.prepareOnS1(t, mode, k, gid)
			if n := count(t, k); n != 0 {
				t.Fatalf("prepared row visible before COMMIT PREPARED: %d", n)
			}
			exec(t, u.Connect(t), mode, "COMMIT PREPARED "+quoteLit(gid), "")
			if n := count(t, k); n != 1 {
				t.Fatalf("rows with key %d on s1 after COMMIT PREPARED: %d, want 1", k, n)
			}
			if on := u.preparedOn(t, gid); len(on) != 0 {
				t.Fatalf("%s still prepared on %v", gid, on)
			}
		})
		t.Run(mode.String()+"/rollback from another session releases the locks", func(t *testing.T) {
			k, gid := u.key(t), u.gid(t)
			u.prepareOnS1(t, mode, k, gid)
			c := u.Connect(t)
			exec(t, c, mode, "ROLLBACK PREPARED "+quoteLit(gid), "")
			if on := u.preparedOn(t, gid); len(on) != 0 {
				t.Fatalf("%s still prepared on %v", gid, on)
			}
			// The prepared insert held the key's index entry: inserting
			// it again would wait forever. Bounded, so that it fails.
			exec(t, c, mode, "SET lock_timeout = '5s'", "")
			exec(t, c, mode, fmt.Sprintf("INSERT INTO customers VALUES (%d, 2)", k), "")
			if n := count(t, k); n != 1 {
				t.Fatalf("rows with key %d on s1: %d, want the one inserted after ROLLBACK PREPARED", k, n)
			}
		})
		t.Run(mode.String()+"/unknown gid", func(t *testing.T) {
			c := u.Connect(t)
			exec(t, c, mode, "COMMIT PREPARED "+quoteLit(u.DB+"-nosuch"), "42704")
			exec(t, c, mode, "ROLLBACK PREPARED "+quoteLit(u.DB+"-nosuch"), "42704")
			exec(t, c, mode, "SELECT 1", "") // the session goes on
		})
		t.Run(mode.String()+"/inside a transaction block", func(t *testing.T) {
			k, gid := u.key(t), u.gid(t)
			u.prepareOnS1(t, mode, k, gid)
			c := u.Connect(t)
			for _, verb := range []string{"COMMIT PREPARED ", "ROLLBACK PREPARED "} {
				for _, before := range [][]string{
					{"BEGIN"}, // no shard holds the block yet
					{"BEGIN", fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", u.b)},             // on s1
					{"BEGIN", fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", u.a)},             // on s0
					{"BEGIN", fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id IN (%d, %d)", u.a, u.b)}, // both
				} {
					for _, q := range before {
						exec(t, c, mode, q, "")
					}
					exec(t, c, mode, verb+quoteLit(gid), "25001")
					exec(t, c, mode, "SELECT 1", "25P02") // the error failed the block, as on Postgres
					exec(t, c, mode, "ROLLBACK", "")
					if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s1"}) {
						t.Fatalf("after %v; %s: %s prepared on %v, want [s1] untouched", before, verb, gid, on)
					}
				}
			}
			exec(t, c, mode, "ROLLBACK PREPARED "+quoteLit(gid), "")
		})
		t.Run(mode.String()+"/the proxy's gid prefix is refused", func(t *testing.T) {
			c := u.Connect(t)
			reserved := "shardproxy:" + u.DB
			t.Cleanup(func() { u.rollbackPrepared(reserved) })
			exec(t, c, mode, "BEGIN", "")
			exec(t, c, mode, fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", u.b), "")
			exec(t, c, mode, "PREPARE TRANSACTION "+quoteLit(reserved), "42939")
			exec(t, c, mode, "ROLLBACK", "")
			if on := u.preparedOn(t, reserved); len(on) != 0 {
				t.Fatalf("%s prepared on %v", reserved, on)
			}
			exec(t, c, mode, "COMMIT PREPARED "+quoteLit(reserved), "42939")
			exec(t, c, mode, "ROLLBACK PREPARED "+quoteLit(reserved), "42939")
		})
	}
	t.Run("gid prepared on several shards", func(t *testing.T) {
		gid := u.gid(t)
		for _, sh := range []string{"s0", "s1"} {
			d := u.Direct(t, sh)
			if _, err := d.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec(ctx, "PREPARE TRANSACTION "+quoteLit(gid)); err != nil {
				t.Fatal(err)
			}
		}
		c := u.Connect(t)
		for _, mode := range txnModes {
			exec(t, c, mode, "COMMIT PREPARED "+quoteLit(gid), "0A000")
		}
		if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s0", "s1"}) {
			t.Fatalf("%s prepared on %v after the refusal, want both untouched", gid, on)
		}
		exec(t, c, pgx.QueryExecModeSimpleProtocol, "/* shard: s1 */ ROLLBACK PREPARED "+quoteLit(gid), "")
		if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s0"}) {
			t.Fatalf("%s prepared on %v, want [s0]", gid, on)
		}
		exec(t, c, pgx.QueryExecModeExec, "ROLLBACK PREPARED "+quoteLit(gid), "")
		if on := u.preparedOn(t, gid); len(on) != 0 {
			t.Fatalf("%s still prepared on %v", gid, on)
		}
	})
	t.Run("several statements in one query", func(t *testing.T) {
		k, gid := u.key(t), u.gid(t)
		u.prepareOnS1(t, pgx.QueryExecModeSimpleProtocol, k, gid)
		c := u.Connect(t)
		for _, q := range []string{
			"COMMIT PREPARED " + quoteLit(gid) + "; SELECT 1", // Postgres: an implicit block
			fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d; COMMIT PREPARED %s", u.b, quoteLit(gid)),
			fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id IN (%d, %d); ROLLBACK PREPARED %s", u.a, u.b, quoteLit(gid)),
			fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d; UPDATE customers SET credit = credit + 1 WHERE customer_id = %d; COMMIT PREPARED %s", u.a, u.b, quoteLit(gid)),
		} {
			_, err := c.PgConn().Exec(ctx, q).ReadAll()
			if got := sqlState(err); got != "25001" {
				t.Fatalf("%s: %v, want SQLSTATE 25001", q, err)
			}
		}
		if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s1"}) {
			t.Fatalf("%s prepared on %v, want [s1] untouched", gid, on)
		}
		if n := count(t, k); n != 0 {
			t.Fatalf("prepared row visible: %d", n)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		k, gid := u.key(t), u.gid(t)
		u.prepareOnS1(t, pgx.QueryExecModeExec, k, gid)
		c := u.Connect(t)
		// After another statement of the same pipeline Postgres refuses it.
		p := c.PgConn().StartPipeline(ctx)
		p.SendQueryParams("SELECT 1", nil, nil, nil, nil)
		p.SendQueryParams("COMMIT PREPARED "+quoteLit(gid), nil, nil, nil, nil)
		p.Sync()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		var errs []string
		for range 10 { // two results and the Sync's
			r, err := p.GetResults()
			if err != nil {
				errs = append(errs, sqlState(err))
				continue
			}
			if _, ok := r.(*pgconn.PipelineSync); ok || r == nil {
				break
			}
			if rr, ok := r.(*pgconn.ResultReader); ok {
				if _, err := rr.Close(); err != nil {
					errs = append(errs, sqlState(err))
				}
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(errs, []string{"25001"}) {
			t.Fatalf("pipeline errors %v, want [25001]", errs)
		}
		if on := u.preparedOn(t, gid); !slices.Equal(on, []string{"s1"}) {
			t.Fatalf("%s prepared on %v, want [s1] untouched", gid, on)
		}
		// First in its pipeline, it runs where the gid is.
		p = c.PgConn().StartPipeline(ctx)
		p.SendQueryParams("COMMIT PREPARED "+quoteLit(gid), nil, nil, nil, nil)
		p.Sync()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if n := count(t, k); n != 1 {
			t.Fatalf("rows with key %d on s1: %d, want 1", k, n)
		}
	})
	t.Run("SHOW TRANSACTIONS lists it", func(t *testing.T) {
		k, gid := u.key(t), u.gid(t)
		u.prepareOnS1(t, pgx.QueryExecModeSimpleProtocol, k, gid)
		found := false
		rows := adminRows(t, connectAdmin(t, u.fixture), "SHOW TRANSACTIONS")
		for _, r := range rows {
			found = found || r["client_conn_id"] == gid && r["shard"] == "s1" && r["two_phase"] == "client"
		}
		if !found {
			t.Fatalf("SHOW TRANSACTIONS does not list %s on s1: %v", gid, rows)
		}
	})
}

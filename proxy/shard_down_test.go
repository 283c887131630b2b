package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/strategies"
)

// shardDownCode reports whether err is what a client must see when a shard
// is unreachable: connection class 08, or the server's own shutdown codes.
func shardDownCode(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P03"
}

// TestShardDown kills one shard under a running proxy: its keys fail fast
// with a connection-class error, other shards keep serving on the same and
// on new client connections, and the pool recovers after the shard restarts.
func TestShardDown(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  customers: {key: customer_id, strategy: by_customer}
default_shard: s0
`})
	ctx := context.Background()
	strats := buildStrategies(t, f)
	c := f.Connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		t.Fatal(err)
	}
	keyOn := map[string]int64{}
	for id := int64(1); len(keyOn) < 3; id++ {
		s, err := strats["by_customer"].Locate(ctx, strategies.Key{Type: strategies.KeyInt, Int: id}, strategies.Write)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := keyOn[s]; !ok {
			keyOn[s] = id
		}
	}
	for _, id := range keyOn {
		if _, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'c')", id); err != nil {
			t.Fatal(err)
		}
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}
	read := func(c *pgx.Conn, shard string, mode pgx.QueryExecMode) error {
		// Bound the wait: a hang is the failure this guards against.
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var name string
		err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, keyOn[shard]).Scan(&name)
		if err == nil && name != "c" {
			err = errors.New("wrong row: " + name)
		}
		return err
	}
	// Kill crashes the postmaster and its backends; Halt is a fast
	// shutdown, which sends clients FATAL 57P01 before it closes them.
	s1 := f.Shards["s1"]
	for _, how := range []struct {
		name string
		stop func() error
	}{{"kill", s1.Kill}, {"halt", s1.Halt}} {
		t.Run(how.name, func(t *testing.T) {
			// Warm the pools so that s1 has idle connections that are about to die.
			for _, mode := range modes {
				for _, s := range []string{"s0", "s1", "s2"} {
					if err := read(c, s, mode); err != nil {
						t.Fatalf("before the crash, %s via %v: %v", s, mode, err)
					}
				}
			}

			// A transaction open on s1 when it dies.
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'tx' WHERE customer_id = $1", keyOn["s1"]); err != nil {
				t.Fatal(err)
			}

			if err := how.stop(); err != nil {
				t.Fatal(err)
			}
			restarted := false
			t.Cleanup(func() {
				// The servers are shared with the package's other tests.
				if !restarted {
					if err := s1.Restart(context.Background()); err != nil {
						t.Errorf("restarting s1: %v", err)
					}
				}
			})

			t.Run("open transaction fails and the connection survives", func(t *testing.T) {
				_, err := tx.Exec(ctx, "UPDATE customers SET name = 'tx2' WHERE customer_id = $1", keyOn["s1"])
				if !shardDownCode(err) {
					t.Errorf("statement in a transaction on a dead shard: %v, want class 08 or 57P01/57P03", err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Fatalf("ROLLBACK: %v", err)
				}
				if err := read(c, "s0", pgx.QueryExecModeCacheStatement); err != nil {
					t.Errorf("s0 after ROLLBACK: %v", err)
				}
			})

			t.Run("keys on the dead shard fail fast", func(t *testing.T) {
				for _, mode := range modes {
					err := read(c, "s1", mode)
					if !shardDownCode(err) {
						t.Errorf("%v: %v, want class 08 or 57P01/57P03", mode, err)
					}
					t.Logf("%v: %v", mode, err)
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) && !strings.Contains(pgErr.Message, "s1") {
						t.Errorf("%v: message %q does not name the shard", mode, pgErr.Message)
					}
				}
			})

			t.Run("statements that need the dead shard fail whole", func(t *testing.T) {
				// Never a partial answer from the live shards.
				for _, sql := range []string{
					"SELECT customer_id FROM customers WHERE customer_id >= 0",
					"UPDATE customers SET name = 'partial' WHERE name = 'c'",
				} {
					_, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
					if !shardDownCode(err) {
						t.Errorf("%s: %v, want class 08 or 57P01/57P03", sql, err)
					}
				}
				for _, s := range []string{"s0", "s2"} {
					var n int
					if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM customers WHERE name = 'partial'").Scan(&n); err != nil || n != 0 {
						t.Errorf("%s: %d rows written by a statement that failed (%v)", s, n, err)
					}
				}
			})

			t.Run("other shards keep working", func(t *testing.T) {
				c2 := f.Connect(t) // a new client can still connect
				for _, conn := range []*pgx.Conn{c, c2} {
					for _, mode := range modes {
						for _, s := range []string{"s0", "s2"} {
							if err := read(conn, s, mode); err != nil {
								t.Errorf("%s via %v: %v", s, mode, err)
							}
						}
					}
				}
				// Writes of a live shard work too, also in a transaction.
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'c' WHERE customer_id = $1", keyOn["s2"]); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("pool recovers after restart", func(t *testing.T) {
				if err := s1.Restart(ctx); err != nil {
					t.Fatal(err)
				}
				restarted = true
				for _, mode := range modes {
					if err := read(c, "s1", mode); err != nil {
						t.Errorf("s1 via %v after restart: %v", mode, err)
					}
				}
				// The transaction that died with the shard did not commit.
				var name string
				if err := f.Direct(t, "s1").QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", keyOn["s1"]).Scan(&name); err != nil || name != "c" {
					t.Errorf("s1 row after crash: %q, %v; want the pre-transaction value", name, err)
				}
			})
		})
	}
}

package proxy_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// multiResult is what a client sees of a multi-statement Query: each
// statement's tag, the notices, the error that ended it, and the
// transaction status after it.
type multiResult struct {
	tags     []string
	notices  []string
	err      *pgconn.PgError
	txStatus byte
}

func execMulti(t *testing.T, dsn, sql string) multiResult {
	t.Helper()
	var r multiResult
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { r.notices = append(r.notices, n.Code+" "+n.Message) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	results, err := c.Exec(ctx, sql).ReadAll()
	for _, res := range results {
		if res.Err == nil {
			r.tags = append(r.tags, res.CommandTag.String())
		}
	}
	if err != nil {
		pgErr, ok := err.(*pgconn.PgError)
		if !ok {
			t.Fatalf("%s: %v", sql, err)
		}
		r.err = pgErr
	}
	r.txStatus = c.TxStatus()
	if r.txStatus != 'I' {
		if err := c.Exec(ctx, "ROLLBACK").Close(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestImplicitBlock: a multi-statement Query that writes on several shards
// is one transaction, as on Postgres (implicit.go): all of it commits, or
// none of it, also when the commit itself fails; COMMIT, BEGIN and
// SAVEPOINT inside it behave as Postgres makes them.
func TestImplicitBlock(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	a, b := f.a, f.b
	ctx := context.Background()
	orders := func() int { n, _ := f.count(t, "SELECT count(*) FROM orders"); return int(n) }
	for _, tc := range []struct {
		name, sql string
		tags      []string
		notices   []string
		code      string // the error's SQLSTATE, if any
		txStatus  byte
		credit    map[int64]int // changes to credits, when committed
		orders    int           // rows added to orders
	}{
		{name: "both commit", sql: "UPDATE customers SET credit = credit - 10 WHERE customer_id = %[1]d; UPDATE customers SET credit = credit + 10 WHERE customer_id = %[2]d",
			tags: []string{"UPDATE 1", "UPDATE 1"}, txStatus: 'I', credit: map[int64]int{a: -10, b: 10}},
		{name: "an error rolls both back", sql: "UPDATE customers SET credit = credit - 10 WHERE customer_id = %[1]d; UPDATE customers SET credit = credit - 1000 WHERE customer_id = %[2]d",
			tags: []string{"UPDATE 1"}, code: "23514", txStatus: 'I'},
		{name: "an error after reads", sql: "UPDATE customers SET credit = credit + 1 WHERE customer_id = %[2]d; SELECT count(*) FROM customers; SELECT 1/0",
			tags: []string{"UPDATE 1", "SELECT 1"}, code: "22012", txStatus: 'I'},
		{name: "a failed commit replaces the last tag", sql: "INSERT INTO orders VALUES (%[1]d, 1); INSERT INTO orders VALUES (%[2]d, 1); INSERT INTO orders VALUES (%[2]d, 1)",
			tags: []string{"INSERT 0 1", "INSERT 0 1"}, code: "23505", txStatus: 'I'},
		{name: "COMMIT ends the block", sql: "INSERT INTO orders VALUES (%[1]d, 2); UPDATE customers SET credit = credit + 5 WHERE customer_id = %[2]d; COMMIT; UPDATE customers SET credit = credit - 1000 WHERE customer_id = %[1]d",
			tags: []string{"INSERT 0 1", "UPDATE 1", "COMMIT"}, notices: []string{"25P01 there is no transaction in progress"}, code: "23514", txStatus: 'I',
			credit: map[int64]int{b: 5}, orders: 1},
		{name: "ROLLBACK ends the block", sql: "UPDATE customers SET credit = credit + 7 WHERE customer_id = %[1]d; UPDATE customers SET credit = credit + 7 WHERE customer_id = %[2]d; ROLLBACK; INSERT INTO orders VALUES (%[2]d, 3)",
			tags: []string{"UPDATE 1", "UPDATE 1", "ROLLBACK", "INSERT 0 1"}, notices: []string{"25P01 there is no transaction in progress"}, txStatus: 'I', orders: 1},
		{name: "SAVEPOINT is refused", sql: "UPDATE customers SET credit = credit + 1 WHERE customer_id = %[1]d; SAVEPOINT p; UPDATE customers SET credit = credit + 1 WHERE customer_id = %[2]d",
			tags: []string{"UPDATE 1"}, code: "25P01", txStatus: 'I'},
		{name: "BEGIN opens a transaction block that outlives the Query", sql: "UPDATE customers SET credit = credit + 3 WHERE customer_id = %[1]d; BEGIN; UPDATE customers SET credit = credit + 3 WHERE customer_id = %[2]d",
			tags: []string{"UPDATE 1", "BEGIN", "UPDATE 1"}, txStatus: 'T'}, // execMulti rolls it back
		{name: "BEGIN ... COMMIT inside", sql: "BEGIN; UPDATE customers SET credit = credit + 2 WHERE customer_id = %[1]d; UPDATE customers SET credit = credit + 2 WHERE customer_id = %[2]d; COMMIT",
			tags: []string{"BEGIN", "UPDATE 1", "UPDATE 1", "COMMIT"}, txStatus: 'I', credit: map[int64]int{a: 2, b: 2}},
		{name: "DDL on every shard", sql: "ALTER TABLE customers ADD COLUMN x int; ALTER TABLE customers ADD COLUMN y int",
			tags: []string{"ALTER TABLE", "ALTER TABLE"}, txStatus: 'I'},
		{name: "failed DDL on every shard", sql: "ALTER TABLE customers ADD COLUMN z int; ALTER TABLE customers ADD COLUMN x int",
			tags: []string{"ALTER TABLE"}, code: "42701", txStatus: 'I'},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before, ordersBefore := f.credits(t), orders()
			sql := tc.sql
			if strings.Contains(sql, "%[") {
				sql = fmt.Sprintf(sql, a, b)
			}
			got := execMulti(t, f.DSN(), sql)
			if !slices.Equal(got.tags, tc.tags) {
				t.Errorf("tags %q, want %q", got.tags, tc.tags)
			}
			if !slices.Equal(got.notices, tc.notices) {
				t.Errorf("notices %q, want %q", got.notices, tc.notices)
			}
			code := ""
			if got.err != nil {
				code = got.err.Code
			}
			if code != tc.code {
				t.Errorf("error %v, want SQLSTATE %q", got.err, tc.code)
			}
			if got.txStatus != tc.txStatus {
				t.Errorf("transaction status %q, want %q", got.txStatus, tc.txStatus)
			}
			f.checkAfter(t, before, tc.credit, orders()-ordersBefore, tc.orders)
		})
	}
	f.checkClean(t)
	// The DDL Queries: y and x everywhere, z nowhere.
	for sh := range f.Shards {
		var cols string
		if err := f.Direct(t, sh).QueryRow(ctx, `SELECT string_agg(attname, ',' ORDER BY attname) FROM pg_attribute
			WHERE attrelid = 'customers'::regclass AND attname IN ('x', 'y', 'z')`).Scan(&cols); err != nil {
			t.Fatal(err)
		}
		if cols != "x,y" {
			t.Errorf("%s: customers has columns %q of x, y, z; want x,y", sh, cols)
		}
	}
}

// TestImplicitBlockWithoutTwoPhaseCommit: without two-phase commit such a
// Query cannot be one transaction; it is refused and writes nothing.
func TestImplicitBlockWithoutTwoPhaseCommit(t *testing.T) {
	f := startTxnFixture(t, defaultBody)
	before := f.credits(t)
	got := execMulti(t, f.DSN(), fmt.Sprintf("UPDATE customers SET credit = credit - 10 WHERE customer_id = %d; UPDATE customers SET credit = credit + 10 WHERE customer_id = %d", f.a, f.b))
	if got.err == nil || got.err.Code != "0A000" || !strings.Contains(got.err.Hint, "two_phase_commit") {
		t.Errorf("error %v, want 0A000 with a hint to set two_phase_commit", got.err)
	}
	if len(got.tags) != 0 || got.txStatus != 'I' {
		t.Errorf("tags %q, status %q; want none, 'I'", got.tags, got.txStatus)
	}
	if after := f.credits(t); !maps.Equal(after, before) {
		t.Errorf("credits changed: %v, before %v", after, before)
	}
}

// TestImplicitPipeline: a pipeline up to Sync is one transaction on
// Postgres (pgx.Batch, JDBC's executeBatch); one that writes on several
// shards commits on all of them at Sync, or on none.
func TestImplicitPipeline(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	a, b := f.a, f.b
	ctx := context.Background()
	conn := f.Connect(t)
	orders := func() int { n, _ := f.count(t, "SELECT count(*) FROM orders"); return int(n) }
	for _, tc := range []struct {
		name    string
		queue   func(*pgx.Batch)
		results int    // results read before the error, if any
		code    string // the error's SQLSTATE
		credit  map[int64]int
		orders  int
	}{
		{name: "both commit", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit - 10 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 10 WHERE customer_id = $1", b)
		}, results: 2, credit: map[int64]int{a: -10, b: 10}},
		{name: "an error rolls both back", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit - 10 WHERE customer_id = $1", a)
			bt.Queue("INSERT INTO orders VALUES ($1, 10)", b)
			bt.Queue("UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", b)
		}, results: 2, code: "23514"},
		{name: "reads see the pipeline's writes", queue: func(bt *pgx.Batch) {
			bt.Queue("INSERT INTO orders VALUES ($1, 11)", a)
			bt.Queue("INSERT INTO orders VALUES ($1, 11)", b)
			bt.Queue("SELECT count(*) FROM orders WHERE u = 11")
			bt.Queue("UPDATE customers SET credit = credit + 1 WHERE customer_id = $1", a)
		}, results: 4, credit: map[int64]int{a: 1}, orders: 2},
		{name: "a failed commit fails the pipeline", queue: func(bt *pgx.Batch) {
			bt.Queue("INSERT INTO orders VALUES ($1, 12)", a)
			bt.Queue("INSERT INTO orders VALUES ($1, 12)", b)
			bt.Queue("INSERT INTO orders VALUES ($1, 12)", b)
		}, results: 3, code: "23505"},
		{name: "then a statement on every shard", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 2 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 1")
			bt.Queue("UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", a)
		}, results: 2, code: "23514"},
		{name: "an error before the second shard", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 1 WHERE customer_id = $1", b)
			bt.Queue("UPDATE customers SET credit = credit + 1")
		}, results: 0, code: "23514"},
		{name: "a statement on every shard first", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 1")
			bt.Queue("INSERT INTO orders VALUES ($1, 13)", b)
			bt.Queue("UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", a)
		}, results: 2, code: "23514"},
		{name: "a statement on every shard alone", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 1 WHERE customer_id IN ($1, $2)", a, b)
		}, results: 1, credit: map[int64]int{a: 1, b: 1}},
		{name: "COMMIT inside", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 4 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 4 WHERE customer_id = $1", b)
			bt.Queue("COMMIT")
			bt.Queue("UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", a)
		}, results: 3, code: "23514", credit: map[int64]int{a: 4, b: 4}},
		{name: "SAVEPOINT inside", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 4 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 4 WHERE customer_id = $1", b)
			bt.Queue("SAVEPOINT p")
		}, results: 2, code: "25P01"},
		{name: "BEGIN inside, then COMMIT", queue: func(bt *pgx.Batch) {
			bt.Queue("UPDATE customers SET credit = credit + 5 WHERE customer_id = $1", a)
			bt.Queue("UPDATE customers SET credit = credit + 5 WHERE customer_id = $1", b)
			bt.Queue("BEGIN")
			bt.Queue("UPDATE customers SET credit = credit + 5 WHERE customer_id = $1", a)
			bt.Queue("COMMIT")
		}, results: 5, credit: map[int64]int{a: 10, b: 5}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before, ordersBefore := f.credits(t), orders()
			bt := &pgx.Batch{}
			tc.queue(bt)
			br := conn.SendBatch(ctx, bt)
			n := 0
			var err error
			for range bt.Len() {
				if _, err = br.Exec(); err != nil {
					break
				}
				n++
			}
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			code := ""
			if pgErr, ok := err.(*pgconn.PgError); ok {
				code = pgErr.Code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("error %v, want SQLSTATE %q", err, tc.code)
			}
			if tc.code != "" && n != tc.results || tc.code == "" && n != bt.Len() {
				t.Errorf("%d results before the error, want %d", n, tc.results)
			}
			if s := conn.PgConn().TxStatus(); s != 'I' {
				t.Errorf("transaction status %q after the batch, want 'I'", s)
			}
			f.checkAfter(t, before, tc.credit, orders()-ordersBefore, tc.orders)
		})
	}
	f.checkClean(t)
}

// checkAfter asserts what a Query or pipeline left: each customer's credit
// changed by credit from before (none if absent), added orders rows where
// wantOrders were expected, and no backend on the shards is left inside a
// transaction.
func (f txnFixture) checkAfter(t *testing.T, before, credit map[int64]int, added, wantOrders int) {
	t.Helper()
	want := maps.Clone(before)
	for id, d := range credit {
		want[id] += d
	}
	if after := f.credits(t); !maps.Equal(after, want) {
		t.Errorf("credits %v, want %v (before: %v)", after, want, before)
	}
	if added != wantOrders {
		t.Errorf("%d orders added, want %d", added, wantOrders)
	}
	if n, per := f.count(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'"); n != 0 {
		t.Errorf("backends left in a transaction: %v", per)
	}
}

// TestPipelineRowLocks: a row lock taken in a pipeline lasts to the end
// of the pipeline's transaction on Postgres, so a pipeline moving on to
// another shard after SELECT ... FOR UPDATE is one transaction across
// shards, as after a write; without two-phase commit it is refused rather
// than letting the lock go.
func TestPipelineRowLocks(t *testing.T) {
	for _, body := range []string{defaultBody, twoPCBody} {
		f := startTxnFixture(t, body)
		ctx := context.Background()
		conn := f.Connect(t)
		before := f.credits(t)
		bt := &pgx.Batch{}
		bt.Queue("SELECT credit FROM customers WHERE customer_id = $1 FOR UPDATE", f.a)
		bt.Queue("UPDATE customers SET credit = credit + 1 WHERE customer_id = $1", f.b)
		err := conn.SendBatch(ctx, bt).Close()
		want := map[int64]int{f.b: 1}
		if body == defaultBody {
			if sqlState(err) != "0A000" {
				t.Errorf("without two-phase commit: %v, want 0A000", err)
			}
			want = nil
		} else if err != nil {
			t.Errorf("with two-phase commit: %v", err)
		}
		f.checkAfter(t, before, want, 0, 0)
	}
}

// TestImplicitShardDown: a Query or a pipeline that writes on a shard and
// then needs one that is down fails whole (class 08 or 57P01), nothing
// of it stays on the live shard, and the connection goes on.
func TestImplicitShardDown(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	conn := f.Connect(t)
	if err := f.Shards["s1"].Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		// The servers are shared with the package's other tests.
		if !restarted {
			if err := f.Shards["s1"].Restart(context.Background()); err != nil {
				t.Errorf("restarting s1: %v", err)
			}
		}
	})
	credit := func() int {
		var n int
		if err := f.Direct(t, "s0").QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = $1", f.a).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := credit()
	upd := "UPDATE customers SET credit = credit + 1 WHERE customer_id = "
	for name, run := range map[string]func(context.Context) error{
		"query": func(ctx context.Context) error {
			_, err := conn.Exec(ctx, fmt.Sprintf("%s%d; %s%d", upd, f.a, upd, f.b), pgx.QueryExecModeSimpleProtocol)
			return err
		},
		"pipeline": func(ctx context.Context) error {
			bt := &pgx.Batch{}
			bt.Queue(upd+"$1", f.a)
			bt.Queue(upd+"$1", f.b)
			return conn.SendBatch(ctx, bt).Close()
		},
	} {
		// Bound the wait: a hang is a failure too.
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := run(rctx)
		cancel()
		if !shardDownCode(err) {
			t.Errorf("%s: %v, want class 08 or 57P01/57P03", name, err)
		}
		if got := credit(); got != before {
			t.Errorf("%s: credit on s0 %d, want %d: the part on the live shard stayed", name, got, before)
		}
		if s := conn.PgConn().TxStatus(); s != 'I' {
			t.Errorf("%s: transaction status %q, want 'I'", name, s)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = $1", f.a).Scan(&n); err != nil || n != before {
			t.Errorf("%s: reading s0 afterwards: %d, %v", name, n, err)
		}
	}
	restarted = true
	if err := f.Shards["s1"].Restart(ctx); err != nil {
		t.Fatalf("restarting s1: %v", err)
	}
	f.checkClean(t)
}

// TestSelectThatWrites: a SELECT calling a function that writes belongs
// to its transaction as a write does: a multi-statement Query or a
// pipeline that fails on another shard afterwards leaves nothing of it.
func TestSelectThatWrites(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	conn := f.Connect(t)
	for _, q := range []string{
		"CREATE TABLE visits (customer_id bigint)", // unmapped: on the default shard, s0
		"SET check_function_bodies = off",
		"CREATE FUNCTION log_visit(c bigint) RETURNS int LANGUAGE sql AS 'INSERT INTO visits VALUES (c) RETURNING 1'",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	visits := func() int {
		var n int
		if err := f.Direct(t, "s0").QueryRow(ctx, "SELECT count(*) FROM visits").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for name, run := range map[string]func() error{
		"query": func() error {
			_, err := conn.Exec(ctx, fmt.Sprintf("SELECT log_visit(1); SELECT credit / 0 FROM customers WHERE customer_id = %d", f.b),
				pgx.QueryExecModeSimpleProtocol)
			return err
		},
		"pipeline": func() error {
			bt := &pgx.Batch{}
			bt.Queue("SELECT log_visit($1)", 1)
			bt.Queue("SELECT credit / 0 FROM customers WHERE customer_id = $1", f.b)
			return conn.SendBatch(ctx, bt).Close()
		},
	} {
		if err := run(); sqlState(err) != "22012" {
			t.Errorf("%s: %v, want 22012", name, err)
		}
		if n := visits(); n != 0 {
			t.Errorf("%s: %d visits stayed after the failed %s", name, n, name)
		}
		if s := conn.PgConn().TxStatus(); s != 'I' {
			t.Errorf("%s: transaction status %q, want 'I'", name, s)
		}
	}
	f.checkClean(t)
}

// TestImplicitHeldTagNotReused: the tag held for a commit that failed is
// not delivered later, after another Query's error (read on the wire:
// clients drop messages after an error).
func TestImplicitHeldTagNotReused(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	failedCommit := fmt.Sprintf("INSERT INTO orders VALUES (%[1]d, 31); INSERT INTO orders VALUES (%[2]d, 31); INSERT INTO orders VALUES (%[2]d, 31)", f.a, f.b)
	if _, err := c.Exec(ctx, failedCommit).ReadAll(); sqlState(err) != "23505" {
		t.Fatalf("deferred duplicate: %v, want 23505", err)
	}
	hj, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Conn.Close()
	fe := hj.Frontend
	fe.Send(&pgproto3.Query{String: fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d; UPDATE customers SET credit = credit WHERE customer_id = %d; SELECT 1/0", f.a, f.b)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	hj.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var seen []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %q: %v", seen, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			seen = append(seen, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			seen = append(seen, "error "+m.Code)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if want := []string{"UPDATE 1", "UPDATE 1", "error 22012"}; !slices.Equal(seen, want) {
		t.Errorf("replies %q, want %q", seen, want)
	}
}

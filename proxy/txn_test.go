package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy"
)

const twoPCBody = defaultBody + "two_phase_commit: true\n"

// txnFixture is a 2-shard proxy with two_phase_commit and a customers
// table (credit 100 each) whose keys a and b live on s0 and s1.
type txnFixture struct {
	*fixture
	a, b int64 // a customer on s0, one on s1
}

func startTxnFixture(t testing.TB, body string) txnFixture {
	t.Helper()
	f := startFixture(t, fixtureOptions{Body: body})
	ctx := context.Background()
	c := f.Connect(t)
	for _, q := range []string{
		"CREATE TABLE customers (customer_id bigint PRIMARY KEY, credit int NOT NULL CHECK (credit >= 0))",
		"CREATE TABLE orders (customer_id bigint NOT NULL, u int, UNIQUE (customer_id, u) DEFERRABLE INITIALLY DEFERRED)",
		"CREATE TABLE products (id int PRIMARY KEY, name text)",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for id := 1; id <= 10; id++ {
		if _, err := c.Exec(ctx, "INSERT INTO customers VALUES ($1, 100)", id); err != nil {
			t.Fatal(err)
		}
	}
	tf := txnFixture{fixture: f}
	for sh, dst := range map[string]*int64{"s0": &tf.a, "s1": &tf.b} {
		if err := f.Direct(t, sh).QueryRow(ctx, "SELECT min(customer_id) FROM customers").Scan(dst); err != nil {
			t.Fatalf("no customer on %s: %v", sh, err)
		}
	}
	return tf
}

// credits reads every customer's credit straight from the shards.
func (f txnFixture) credits(t *testing.T) map[int64]int {
	t.Helper()
	got := map[int64]int{}
	for sh := range f.Shards {
		rows, err := f.Direct(t, sh).Query(context.Background(), "SELECT customer_id, credit FROM customers")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			var credit int
			if err := rows.Scan(&id, &credit); err != nil {
				t.Fatal(err)
			}
			if _, dup := got[id]; dup {
				t.Fatalf("customer %d on two shards", id)
			}
			got[id] = credit
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// count runs a count(*) query on every shard directly and sums it.
func (f txnFixture) count(t *testing.T, q string) (total int64, perShard map[string]int64) {
	t.Helper()
	perShard = map[string]int64{}
	for sh := range f.Shards {
		var n int64
		if err := f.Direct(t, sh).QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s on %s: %v", q, sh, err)
		}
		perShard[sh] = n
		total += n
	}
	return total, perShard
}

// checkClean asserts that no prepared transaction and no decision row is left.
func (f txnFixture) checkClean(t *testing.T) {
	t.Helper()
	if n, per := f.count(t, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"); n != 0 {
		t.Fatalf("prepared transactions left on the shards: %v", per)
	}
	meta, err := pgx.Connect(context.Background(), f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(context.Background())
	var n int
	if err := meta.QueryRow(context.Background(), "SELECT count(*) FROM shardproxy_2pc").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d decision rows left in the metadata database", n)
	}
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

var txnModes = []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec}

// execIn runs sql in the simple protocol, or (any other mode) in the
// extended protocol even without parameters (pgx would switch to simple).
func execIn(ctx context.Context, c *pgx.Conn, mode pgx.QueryExecMode, sql string) error {
	if mode == pgx.QueryExecModeSimpleProtocol {
		_, err := c.Exec(ctx, sql, mode)
		return err
	}
	return c.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
}

// TestCrossShardTransactions: transactions that touch both shards commit
// atomically, and every way of not committing leaves nothing anywhere.
func TestCrossShardTransactions(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	a, b := f.a, f.b
	// step is one statement of a scenario; code is the SQLSTATE it must fail
	// with ("" = must succeed).
	type step struct {
		sql  string
		code string
	}
	upd := func(id int64, delta int) string {
		return fmt.Sprintf("UPDATE customers SET credit = credit + %d WHERE customer_id = %d", delta, id)
	}
	tests := []struct {
		name  string
		steps []step
		want  map[int64]int // credit changes
		all   int           // credit change of every customer
		refs  int64         // products rows expected per shard
	}{
		{name: "commit", steps: []step{{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 2), ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 1, b: 2}},
		{name: "rollback", steps: []step{{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 2), ""}, {"ROLLBACK", ""}}},
		{name: "error on second shard, then COMMIT rolls back", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, -1000), "23514"}, {upd(a, 1), "25P02"}, {"COMMIT", ""}}},
		{name: "error on first shard blocks the second", steps: []step{
			{"BEGIN", ""}, {upd(a, -1000), "23514"}, {upd(b, 1), "25P02"}, {"ROLLBACK", ""}}},
		{name: "statement on every shard inside the transaction", steps: []step{
			{"BEGIN", ""}, {upd(a, 5), ""}, {"UPDATE customers SET credit = credit + 1", ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 5}, all: 1},
		{name: "reference table write joins every shard", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {"INSERT INTO products VALUES (1, 'p')", ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 1}, refs: 1},
		{name: "savepoint after both shards", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 1), ""}, {"SAVEPOINT sp", ""}, {upd(a, 10), ""}, {upd(b, 10), ""},
			{"ROLLBACK TO SAVEPOINT sp", ""}, {"RELEASE sp", ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 1, b: 1}},
		{name: "savepoint taken before the second shard joined", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {"SAVEPOINT sp", ""}, {upd(b, 10), ""}, {upd(a, 10), ""},
			{"ROLLBACK TO sp", ""}, {upd(b, 3), ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 1, b: 3}},
		{name: "savepoint before any shard", steps: []step{
			{"BEGIN", ""}, {"SAVEPOINT sp", ""}, {upd(a, 1), ""}, {upd(b, 1), ""}, {"ROLLBACK TO sp", ""}, {upd(b, 4), ""}, {"COMMIT", ""}},
			want: map[int64]int{b: 4}},
		{name: "rollback to a savepoint that does not exist", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 1), ""}, {"ROLLBACK TO nosuch", "3B001"}, {upd(a, 1), "25P02"}, {"COMMIT", ""}}},
		{name: "ROLLBACK TO recovers a failed transaction", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {"SAVEPOINT sp", ""}, {upd(b, -1000), "23514"}, {upd(a, 1), "25P02"},
			{"ROLLBACK TO sp", ""}, {upd(b, 2), ""}, {"COMMIT", ""}},
			want: map[int64]int{a: 1, b: 2}},
		{name: "deferred constraint fails at PREPARE", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""},
			{fmt.Sprintf("INSERT INTO orders VALUES (%d, 1)", b), ""}, {fmt.Sprintf("INSERT INTO orders VALUES (%d, 1)", b), ""},
			{"COMMIT", "23505"}}},
		{name: "PREPARE TRANSACTION is refused", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 1), ""}, {"PREPARE TRANSACTION 'mine'", "0A000"}, {"ROLLBACK", ""}}},
		{name: "COMMIT AND CHAIN is refused", steps: []step{
			{"BEGIN", ""}, {upd(a, 1), ""}, {upd(b, 1), ""}, {"COMMIT AND CHAIN", "0A000"}, {"COMMIT", ""}}},
		{name: "autocommit statement on every shard", steps: []step{{"UPDATE customers SET credit = credit + 7", ""}},
			all: 7},
		{name: "autocommit statement on every shard fails on one", steps: []step{
			{fmt.Sprintf("UPDATE customers SET credit = credit - (CASE WHEN customer_id = %d THEN 1000 ELSE 1 END)", b), "23514"}}},
	}
	for _, mode := range txnModes {
		for _, tc := range tests {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				before := f.credits(t)
				refsBefore, _ := f.count(t, "SELECT count(*) FROM products")
				c := f.Connect(t)
				for _, s := range tc.steps {
					err := execIn(ctx, c, mode, s.sql)
					if got := sqlState(err); got != s.code || s.code == "" && err != nil {
						t.Fatalf("%s: %v (SQLSTATE %q), want SQLSTATE %q", s.sql, err, got, s.code)
					}
				}
				after := f.credits(t)
				for id, credit := range after {
					want := before[id] + tc.want[id] + tc.all
					if credit != want {
						t.Errorf("customer %d: credit %d, want %d", id, credit, want)
					}
				}
				refs, per := f.count(t, "SELECT count(*) FROM products")
				if refs-refsBefore != tc.refs*int64(len(f.Shards)) {
					t.Errorf("products per shard %v, want %d more on each", per, tc.refs)
				}
				if err := execIn(ctx, c, mode, "DELETE FROM products"); err != nil {
					t.Fatal(err)
				}
				if err := execIn(ctx, c, mode, "DELETE FROM orders"); err != nil {
					t.Fatal(err)
				}
				f.checkClean(t)
			})
		}
	}
}

// TestCrossShardSetLocal: SET LOCAL reaches shards that join later.
func TestCrossShardSetLocal(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SET LOCAL statement_timeout = '1234ms'",
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a),
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.b),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// SHOW runs on the leg of the last statement: s1, which joined after SET LOCAL.
	var v string
	if err := tx.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "1234ms" {
		t.Fatalf("statement_timeout on the joined shard: %q, %v", v, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "0" {
		t.Fatalf("SET LOCAL outlived its transaction: %q, %v", v, err)
	}
	f.checkClean(t)
}

// TestCrossShardDisconnect: a client that goes away mid-transaction leaves
// nothing behind (its backends are closed, which rolls them back).
func TestCrossShardDisconnect(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	before := f.credits(t)
	c, err := pgx.Connect(ctx, f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"BEGIN",
		fmt.Sprintf("UPDATE customers SET credit = 0 WHERE customer_id = %d", f.a),
		fmt.Sprintf("UPDATE customers SET credit = 0 WHERE customer_id = %d", f.b)} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
	// Both rows are free again once the proxy closed the backends: an
	// update through the proxy waits for the locks, then succeeds.
	c2 := f.Connect(t)
	for _, id := range []int64{f.a, f.b} {
		if _, err := c2.Exec(ctx, "UPDATE customers SET credit = credit + 0 WHERE customer_id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
	after := f.credits(t)
	for id, v := range before {
		if after[id] != v {
			t.Errorf("customer %d: %d after the client vanished, want %d", id, after[id], v)
		}
	}
	f.checkClean(t)
}

// TestCrossShardWithout2PC: with two_phase_commit off, touching a second
// shard in a transaction is a clear 0A000 that says how to allow it.
func TestCrossShardWithout2PC(t *testing.T) {
	f := startTxnFixture(t, defaultBody)
	ctx := context.Background()
	for _, mode := range txnModes {
		for _, second := range []string{
			fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.b),
			"UPDATE customers SET credit = credit + 1",
		} {
			t.Run(mode.String()+"/"+second, func(t *testing.T) {
				c := f.Connect(t)
				for _, q := range []string{"BEGIN", fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a)} {
					if err := execIn(ctx, c, mode, q); err != nil {
						t.Fatal(err)
					}
				}
				err := execIn(ctx, c, mode, second)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Hint, "two_phase_commit: true") {
					t.Fatalf("second shard: %v (hint %q), want 0A000 with a hint naming two_phase_commit", err, hintOf(err))
				}
				if err := execIn(ctx, c, mode, "ROLLBACK"); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func hintOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Hint
	}
	return ""
}

// TestCrossShardAdminAndMetrics: SHOW TRANSACTIONS marks a transaction that
// spans shards, and the two-phase commit counters count its commit.
func TestCrossShardAdminAndMetrics(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	before := proxy.TwoPCStats()
	c := f.Connect(t)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{f.a, f.b} {
		if _, err := tx.Exec(ctx, "UPDATE customers SET credit = credit + 1 WHERE customer_id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
	var found bool
	for _, r := range adminRows(t, connectAdmin(t, f.fixture), "SHOW TRANSACTIONS") {
		if r["two_phase"] == "yes" && r["shard"] == "s0,s1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("SHOW TRANSACTIONS does not show the transaction on s0,s1 as two-phase: %v",
			adminRows(t, connectAdmin(t, f.fixture), "SHOW TRANSACTIONS"))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if after := proxy.TwoPCStats(); after.Committed != before.Committed+1 {
		t.Fatalf("2PC commits counted: %d -> %d, want one more", before.Committed, after.Committed)
	}
	f.checkClean(t)
}

// TestCrossShardMultiStatementQuery: inside a transaction block, a simple
// Query whose statements target different shards runs statement by
// statement; outside one it is an implicit cross-shard transaction
// (implicit.go, TestImplicitBlock), committed with two-phase commit.
func TestCrossShardMultiStatementQuery(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	before := f.credits(t)
	both := fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d; UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a, f.b)
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, both); err != nil {
		t.Fatalf("two shards in one Query inside BEGIN: %v", err)
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, both); err != nil {
		t.Fatalf("two shards in one Query outside a transaction: %v", err)
	}
	after := f.credits(t)
	for _, id := range []int64{f.a, f.b} {
		if after[id] != before[id]+2 {
			t.Errorf("customer %d: credit %d, want %d", id, after[id], before[id]+2)
		}
	}
	f.checkClean(t)
}

// TestCrossShardPipeline: a pgx batch (one pipeline, one Sync) inside a
// transaction moves between the shards' backends statement by statement;
// an error in it fails the whole transaction.
func TestCrossShardPipeline(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	before := f.credits(t)
	upd := "UPDATE customers SET credit = credit + $2 WHERE customer_id = $1"
	run := func(t *testing.T, deltas []int, wantErr string) {
		t.Helper()
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		ids := []int64{f.a, f.b, f.a}
		for i, d := range deltas {
			b.Queue(upd, ids[i], d)
		}
		b.Queue("SELECT credit FROM customers WHERE customer_id = $1", f.b)
		err = tx.SendBatch(ctx, b).Close()
		if sqlState(err) != wantErr || wantErr == "" && err != nil {
			t.Fatalf("batch: %v, want SQLSTATE %q", err, wantErr)
		}
		if wantErr != "" {
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	run(t, []int{1, 2, 4}, "")
	run(t, []int{1, -1000, 4}, "23514")
	after := f.credits(t)
	if after[f.a] != before[f.a]+5 || after[f.b] != before[f.b]+2 {
		t.Fatalf("credits a %d -> %d (want +5), b %d -> %d (want +2)", before[f.a], after[f.a], before[f.b], after[f.b])
	}
	f.checkClean(t)
}

// TestCrossShardLegLost: a shard's backend dies while the transaction is
// open; COMMIT must then roll back on the other shard too (its PREPARE is
// undone), and the client gets an error, not COMMIT.
func TestCrossShardLegLost(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	before := f.credits(t)
	for _, q := range []string{"BEGIN",
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a),
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.b)} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var killed int
	if err := f.Direct(t, "s1").QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminating the transaction's backend on s1: %d, %v", killed, err)
	}
	_, err := c.Exec(ctx, "COMMIT")
	if code := sqlState(err); code == "" || code == "00000" {
		t.Fatalf("COMMIT after losing a shard: %v, want an error", err)
	}
	after := f.credits(t)
	for id, v := range before {
		if after[id] != v {
			t.Errorf("customer %d: %d, want %d (nothing committed)", id, after[id], v)
		}
	}
	// The session is usable again.
	if _, err := c.Exec(ctx, "UPDATE customers SET credit = credit WHERE customer_id = $1", f.a); err != nil {
		t.Fatal(err)
	}
	f.checkClean(t)
}

// TestCrossShardMergedSelect: a merged multi-shard SELECT (aggregate,
// ORDER BY ... LIMIT) inside a cross-shard transaction runs on the
// transaction's backends and sees its uncommitted writes.
func TestCrossShardMergedSelect(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	base := f.credits(t)
	var total int64
	for _, v := range base {
		total += int64(v)
	}
	for _, mode := range txnModes {
		t.Run(mode.String(), func(t *testing.T) {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "UPDATE customers SET credit = credit + 1000 WHERE customer_id = $1", mode, f.b); err != nil {
				t.Fatal(err)
			}
			var sum, n int64
			if err := tx.QueryRow(ctx, "SELECT sum(credit), count(*) FROM customers WHERE credit >= $1", mode, 0).Scan(&sum, &n); err != nil {
				t.Fatal(err)
			}
			if sum != total+1000 || n != int64(len(base)) {
				t.Fatalf("sum %d count %d inside the transaction, want %d and %d", sum, n, total+1000, len(base))
			}
			var top int64
			if err := tx.QueryRow(ctx, "SELECT customer_id FROM customers ORDER BY credit DESC LIMIT $1", mode, 1).Scan(&top); err != nil || top != f.b {
				t.Fatalf("top customer %d, %v; want %d", top, err, f.b)
			}
			if _, err := tx.Exec(ctx, "UPDATE customers SET credit = credit - 1000 WHERE customer_id = $1", mode, f.a); sqlState(err) != "23514" {
				t.Fatalf("violating update: %v", err)
			}
			if err := tx.QueryRow(ctx, "SELECT sum(credit) FROM customers WHERE credit >= $1", mode, 0).Scan(&sum); sqlState(err) != "25P02" {
				t.Fatalf("merged SELECT in a failed transaction: %v, want 25P02", err)
			}
		})
	}
	after := f.credits(t)
	for id, v := range base {
		if after[id] != v {
			t.Errorf("customer %d: %d, want %d", id, after[id], v)
		}
	}
	f.checkClean(t)
}

// TestCrossShardCopy: COPY FROM STDIN split over both shards commits with
// two-phase commit.
func TestCrossShardCopy(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	before := proxy.TwoPCStats()
	var data strings.Builder
	for id := 101; id <= 120; id++ {
		fmt.Fprintf(&data, "%d\t5\n", id)
	}
	tag, err := c.PgConn().CopyFrom(ctx, strings.NewReader(data.String()), "COPY customers (customer_id, credit) FROM STDIN")
	if err != nil || tag.RowsAffected() != 20 {
		t.Fatalf("COPY: %v, %v", tag, err)
	}
	if n, per := f.count(t, "SELECT count(*) FROM customers WHERE customer_id > 100"); n != 20 || per["s0"] == 0 || per["s1"] == 0 {
		t.Fatalf("copied rows per shard %v, want 20 on both shards", per)
	}
	if after := proxy.TwoPCStats(); after.Committed <= before.Committed {
		t.Fatalf("the COPY did not commit through two-phase commit: %+v -> %+v", before, after)
	}
	f.checkClean(t)
}

// A Describe of a portal that the proxy answers with the portal's Execute
// (a merged read, a cursor, a table-less read beside a transaction) must be
// answered also when that Execute fails in the proxy: before, the pending
// Describe outlived the pipeline, and the next such Execute, from a client
// that sent no Describe (pgx's cached statements), got a RowDescription it
// did not ask for, and pgx closed the connection.
func TestDescribeAnsweredWhenExecuteFails(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)

	// LOCK TABLE outside a transaction block fails at Execute (25P01); the
	// pipeline spans two shards, so the proxy raises the error. The lock
	// of a reference table runs on every shard: its Describe waits for
	// the Execute.
	b := &pgconn.Batch{}
	for _, q := range []string{
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a),
		fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.b),
		"LOCK TABLE products IN SHARE MODE",
	} {
		b.ExecParams(q, nil, nil, nil, nil)
	}
	_, err := c.PgConn().ExecBatch(ctx, b).ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25P01" {
		t.Fatalf("LOCK TABLE after a pipeline spanning shards: %v; want 25P01", err)
	}
	if got := f.credits(t); got[f.a] != 100 || got[f.b] != 100 {
		t.Errorf("credits %d and %d after the failed pipeline; want 100 and 100 (rolled back)", got[f.a], got[f.b])
	}

	// A table-less read inside BEGIN runs beside the transaction; pgx
	// executes its cached statement without a Describe.
	if _, err := c.Exec(ctx, "SELECT 2"); err != nil { // cached
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bt := &pgx.Batch{}
	bt.Queue("SELECT 2")
	bt.Queue("SELECT credit FROM customers WHERE customer_id = $1", f.a)
	var two, credit int
	br := tx.SendBatch(ctx, bt)
	if err := br.QueryRow().Scan(&two); err != nil || two != 2 {
		t.Fatalf("SELECT 2 in the batch: %d, %v", two, err)
	}
	if err := br.QueryRow().Scan(&credit); err != nil || credit != 100 {
		t.Fatalf("credit %d, %v; want 100", credit, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDescribeInFailedTransaction: in a failed transaction Postgres
// describes a prepared statement only if it returns no rows (25P02
// otherwise), since describing rows needs the catalog. The proxy
// describes on a backend outside the client's transaction when no shard
// holds it, or when it spans shards, and must refuse the same: checked
// against a shard itself, for a transaction that failed before any shard
// and for one that failed across two.
func TestDescribeInFailedTransaction(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	prepare := frontend(
		&pgproto3.Parse{Name: "rows", Query: "SELECT credit FROM customers WHERE customer_id = $1", ParameterOIDs: []uint32{20}},
		&pgproto3.Parse{Name: "norows", Query: "UPDATE customers SET credit = credit WHERE customer_id = $1", ParameterOIDs: []uint32{20}},
		&pgproto3.Sync{})
	describe := func(name string) []byte {
		return frontend(&pgproto3.Describe{ObjectType: 'S', Name: name}, &pgproto3.Sync{})
	}
	query := func(sql string) []byte { return frontend(&pgproto3.Query{String: sql}) }
	// run sends each step and returns the SQLSTATEs of each reply.
	run := func(t *testing.T, nc net.Conn, steps ...[]byte) [][]string {
		t.Helper()
		var out [][]string
		for _, b := range steps {
			if _, err := nc.Write(b); err != nil {
				t.Fatal(err)
			}
			r := readReplies(t, nc)
			if !r.ready {
				t.Fatalf("no ReadyForQuery (%+v)", r)
			}
			out = append(out, r.codes)
		}
		return out
	}
	steps := func(fail ...[]byte) [][]byte {
		s := append([][]byte{prepare, query("BEGIN")}, fail...)
		return append(s, describe("rows"), describe("norows"), query("ROLLBACK"), describe("rows"))
	}
	shard := hijack(t, f.Shards["s0"].DSN(f.DB)).Conn
	t.Cleanup(func() { shard.Close() })
	want := run(t, shard, steps(query("SELECT 1/0"))...)
	if !slices.Equal(want[3], []string{"25P02"}) || len(want[4]) != 0 || len(want[6]) != 0 {
		t.Fatalf("Postgres itself: %v; want 25P02 for the rows only, inside the failed transaction", want)
	}
	for name, fail := range map[string][][]byte{
		"before any shard": {query("SELECT 1/0")},
		"across shards": {
			query(fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", f.a)),
			query(fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", f.b)),
			query("SELECT 1/0"),
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := run(t, authedConn(t, f.fixture), steps(fail...)...)
			// Postgres' run with the writes before SELECT 1/0, which succeed.
			expect := slices.Concat(want[:2], make([][]string, len(fail)-1), want[2:])
			if !reflect.DeepEqual(got, expect) {
				t.Errorf("through the proxy: %v; want %v, as Postgres", got, expect)
			}
		})
	}
}

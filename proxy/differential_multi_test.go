package proxy_test

// The multi-statement Query differential suite: seeded random Queries of
// several statements ("stmt1; stmt2; ...", one simple-protocol Query)
// against an unsharded oracle. Postgres runs such a Query as one implicit
// transaction (xact.c; the proxy's emulation across shards is
// implicit.go): an error rolls back what the Query did since its last
// COMMIT, BEGIN inside turns it into a transaction block that outlives
// the Query, COMMIT/ROLLBACK inside end the block with WARNING 25P01,
// SAVEPOINT outside a block fails with 25P01, SET LOCAL lasts to the end
// of the Query, and a failed commit at the end (the deferred primary key
// of ledger) replaces the last statement's CommandComplete.
//
// Schema, data, strategies and configuration are the transaction suite's
// (differential_txn_test.go: three shards, two_phase_commit: true, every
// strategy). Each Query is 2-6 statements drawn from multiTemplates:
// single-key writes to customers, orders and ledger for customers on
// different shards, keyless writes across shards, writes to the reference
// table, reads by key and across shards, table-less SELECTs, SET and SET
// LOCAL, BEGIN/COMMIT/ROLLBACK/SAVEPOINT/ROLLBACK TO/RELEASE, and
// statements that fail (division by zero, unique violations, a deferred
// ledger primary key that only fails at commit). INSERTs take key values
// no earlier Query used. A Query that leaves a transaction open on the
// oracle is followed by a ROLLBACK on both sides, or (one time in three)
// the next Query is sent inside that transaction.
//
// Each Query must give, proxy vs oracle (diffRounds): the same results in
// order (tag, columns, rows: a multiset unless the statement has a
// top-level ORDER BY), the same error (SQLSTATE, after as many results),
// the same notices (severity, code, message) and the same transaction
// status. After each Query the tables it (and the transaction it ran in)
// wrote must equal the oracle's, every row on its key's shard, and, once
// both sides are idle, no shard may hold a prepared or idle-in-transaction
// leftover. A difference is reported and the tables copied from the
// oracle, so that later Queries report their own differences.
//
// A Query the proxy refuses (0A000 with a hint) counts as refused: the
// oracle runs in its place the statements before the refused one followed
// by SELECT 1/0, which is what a refusal must amount to (the results
// before it, the status and the tables must agree), then both sides roll
// back. More than a quarter of the Queries refused fails the suite.
//
// multiRegressions, fixed Queries run before the random ones, keep the
// differences the suite found, minimised. It fails today on them: a
// savepoint statement first in a Query the proxy runs statement by
// statement (accepted where Postgres fails it with 25P01); RELEASE or
// ROLLBACK TO a missing savepoint before any shard joined a transaction
// (answered, the 3B001 coming at the next statement); the tag of RESET
// answered by the proxy (SET); BEGIN with an isolation level after a
// query of the transaction (accepted where Postgres fails it with 25001);
// SET after SET LOCAL, then a shard joining the transaction (the SET
// LOCAL wins there); SET, BEGIN in a Query sent whole to one shard, then
// ROLLBACK (the proxy keeps the SET). Seen now and then too: a shard
// backend still idle in a transaction for some 50 ms after the client's
// ROLLBACK got ReadyForQuery.
//
// DIFF_MULTI_N=N runs N random Queries per strategy (default 150),
// DIFF_MULTI_SEED=S another sequence (the seed is logged),
// DIFF_MULTI_SHOW=1 logs every Query's outcome.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	multiDefaultN    = 150
	multiDefaultSeed = uint64(20260502)
)

// multiRegressions are Queries run first, every strategy, in this order;
// cont sends one inside the transaction the one before left open. Most
// are differences the random Queries found, minimised; customers 7 and
// 390 lie on different shards under the range strategy (s0 and s2).
var multiRegressions = []struct {
	cont  bool
	stmts []string
}{
	// A failed commit at the end of a Query across shards replaces the
	// last statement's tag (the proxy gets it right; a guard).
	{stmts: []string{"UPDATE customers SET name = 'r1' WHERE customer_id = 7", "INSERT INTO ledger (customer_id, entry, amount) VALUES (150, 1, 9)"}},
	{stmts: []string{"INSERT INTO ledger (customer_id, entry, amount) VALUES (390, 1, 9)", "UPDATE customers SET name = 'r2' WHERE customer_id = 150", "SELECT count(*), sum(credit) FROM customers"}},
	// A savepoint statement first in a Query the proxy runs statement
	// by statement, outside a transaction block: Postgres fails it with
	// 25P01 (and runs nothing more). The proxy answers SAVEPOINT itself
	// and runs (and commits) the rest; it answers ROLLBACK TO and
	// RELEASE with their tag, and the next statement fails with 3B001
	// (or 25P02).
	{stmts: []string{"SAVEPOINT x", "UPDATE customers SET name = 'r3' WHERE customer_id = 7", "UPDATE customers SET name = 'r3' WHERE customer_id = 390"}},
	{stmts: []string{"SAVEPOINT x", "UPDATE customers SET vip = true WHERE region_id = 1"}},
	{stmts: []string{"SAVEPOINT x", "SELECT count(*) FROM customers"}},
	{stmts: []string{"ROLLBACK TO x", "SELECT count(*) FROM customers"}},
	{stmts: []string{"RELEASE SAVEPOINT x", "UPDATE customers SET name = 'r4' WHERE customer_id = 7", "UPDATE customers SET name = 'r4' WHERE customer_id = 390"}},
	// RELEASE or ROLLBACK TO a savepoint that does not exist, in a
	// transaction block before any shard joined it: Postgres fails it
	// with 3B001; the proxy answers it (RELEASE / ROLLBACK) and the next
	// statement fails with 3B001, also in Queries of their own.
	{stmts: []string{"BEGIN", "RELEASE SAVEPOINT x", "SELECT count(*) FROM orders"}},
	{stmts: []string{"BEGIN", "ROLLBACK TO x", "SELECT count(*) FROM orders"}},
	{stmts: []string{"BEGIN"}},
	{cont: true, stmts: []string{"RELEASE SAVEPOINT x"}},
	// RESET answered by the proxy (in a Query run statement by
	// statement, or in a transaction before any shard joined it) has the
	// tag SET; Postgres' is RESET.
	{stmts: []string{"RESET DateStyle", "SELECT count(*) FROM customers"}},
	{stmts: []string{"BEGIN"}},
	{cont: true, stmts: []string{"RESET DateStyle"}},
	// BEGIN with an isolation level after the transaction ran a query:
	// Postgres fails it with 25001 "SET TRANSACTION ISOLATION LEVEL must
	// be called before any query"; the proxy answers BEGIN (with
	// WARNING 25001 inside a block) and goes on.
	{stmts: []string{"SELECT 1", "BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT count(*) FROM customers"}},
	{stmts: []string{"BEGIN"}},
	{cont: true, stmts: []string{"SELECT count(*) FROM customers"}},
	{cont: true, stmts: []string{"BEGIN ISOLATION LEVEL REPEATABLE READ"}},
	// SET after SET LOCAL in a transaction: the session value holds for
	// the rest of the transaction, on Postgres; a shard that joins the
	// transaction afterwards has the SET LOCAL replayed over it by the
	// proxy (customer 7's date comes as 05/01/2021, not 2021-01-05).
	{stmts: []string{"BEGIN", "SET LOCAL DateStyle = 'SQL, DMY'", "UPDATE customers SET name = 'r5' WHERE customer_id = 390", "SET DateStyle = 'ISO, MDY'", "SELECT signup FROM customers WHERE customer_id = 7", "COMMIT"}},
	{stmts: []string{"SET LOCAL DateStyle = 'SQL, DMY'", "UPDATE customers SET name = 'r6' WHERE customer_id = 390", "SET DateStyle = 'ISO, MDY'", "SELECT signup FROM customers WHERE customer_id = 7"}},
	// SET before BEGIN in a Query sent whole to one shard, the block
	// left open, then ROLLBACK: Postgres undoes the SET; the proxy keeps
	// it (SHOW DateStyle says SQL, DMY after the ROLLBACK, not ISO, MDY).
	{stmts: []string{"SET DateStyle = 'SQL, DMY'", "BEGIN", "SELECT 1"}},
	{stmts: []string{"SHOW DateStyle", "SELECT 1"}},
	// A ROLLBACK after a COMMIT in a Query sent whole to one shard ends
	// the implicit block that began after the COMMIT: Postgres undoes the
	// RESET in it (DateStyle stays German); the proxy kept it (seed 6).
	{stmts: []string{"SET DateStyle = 'German'"}},
	{stmts: []string{"UPDATE customers SET name = 'r7' WHERE customer_id = 260", "COMMIT", "RESET DateStyle", "ROLLBACK"}},
	{stmts: []string{"SHOW DateStyle", "SELECT 1"}},
	{stmts: []string{"RESET DateStyle"}},
	// A savepoint taken in a Query sent whole to one shard, then a
	// statement that needs another shard: the proxy replayed the
	// transaction there without the savepoint, and ROLLBACK TO it failed
	// with 3B001 on the joining shard (seed 8).
	{stmts: []string{"BEGIN", "SAVEPOINT x", "UPDATE customers SET name = 'r8' WHERE customer_id = 7"}},
	{cont: true, stmts: []string{"ROLLBACK TO SAVEPOINT x"}},
	{cont: true, stmts: []string{"SELECT count(*), sum(credit) FROM customers", "COMMIT"}},
	// COMMIT of a failed transaction across shards first in a Query: the
	// statements after it ran one by one, committed each, where Postgres
	// runs them as one implicit block that the failing SELECT rolls back
	// (order 10999 stayed; seed 10).
	{stmts: []string{"BEGIN", "UPDATE customers SET name = 'r9' WHERE customer_id = 7", "UPDATE customers SET name = 'r9' WHERE customer_id = 390", "SELECT 1/0"}},
	{cont: true, stmts: []string{"COMMIT", "INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES (10999, 150, 'multi', 1.25, 1)", "SELECT 1/0", "UPDATE customers SET name = 'r9' WHERE customer_id = 7"}},
	// SET LOCAL in the implicit block before BEGIN, in a Query sent whole
	// to one shard: BEGIN makes it the transaction's, but the proxy did
	// not replay it on shards that joined later (their dates came as
	// ISO; seed 20261128).
	{stmts: []string{"SET LOCAL DateStyle = 'SQL, DMY'", "BEGIN", "UPDATE customers SET name = 'r10' WHERE customer_id = 390"}},
	{cont: true, stmts: []string{"SELECT customer_id, signup FROM customers WHERE customer_id IN (7, 12, 45, 150, 260, 333, 390) ORDER BY customer_id", "COMMIT"}},
	// A SET after a SET LOCAL sent whole to one shard, in the same Query
	// or a later one: the session value wins on Postgres, but a shard
	// that joined later had the SET LOCAL replayed last.
	{stmts: []string{"BEGIN", "SET LOCAL DateStyle = 'German'", "UPDATE customers SET name = 'r11' WHERE customer_id = 390", "SET DateStyle = 'SQL, DMY'"}},
	{cont: true, stmts: []string{"SELECT customer_id, signup FROM customers WHERE customer_id IN (7, 12, 45, 150, 260, 333, 390) ORDER BY customer_id", "COMMIT"}},
	{stmts: []string{"BEGIN", "SET LOCAL DateStyle = 'German'", "UPDATE customers SET name = 'r12' WHERE customer_id = 390"}},
	{cont: true, stmts: []string{"SET DateStyle = 'ISO, MDY'"}},
	{cont: true, stmts: []string{"SELECT customer_id, signup FROM customers WHERE customer_id IN (7, 12, 45, 150, 260, 333, 390) ORDER BY customer_id", "COMMIT"}},
	{stmts: []string{"RESET DateStyle"}},
	// A Query sent whole to one shard that fails after a COMMIT in it:
	// what the COMMIT ended stands on Postgres (the SET before it), only
	// the block the error came in rolls back; the proxy took the whole
	// Query as undone (DateStyle German after it, where Postgres has ISO,
	// MDY; seed 11).
	{stmts: []string{"SET DateStyle = 'German'"}},
	{stmts: []string{"UPDATE customers SET name = 'r13' WHERE customer_id = 260", "SET DateStyle = 'ISO, MDY'", "COMMIT", "SELECT 1/0"}},
	{stmts: []string{"BEGIN", "SET DateStyle = 'SQL, DMY'", "UPDATE customers SET name = 'r14' WHERE customer_id = 260", "COMMIT", "SET DateStyle = 'German'", "SELECT 1/0"}},
	{stmts: []string{"BEGIN", "SET DateStyle = 'Postgres, MDY'", "UPDATE customers SET name = 'r15' WHERE customer_id = 260", "SELECT 1/0"}},
	{cont: true, stmts: []string{"ROLLBACK"}},
	{stmts: []string{"SELECT customer_id, signup FROM customers WHERE customer_id IN (7, 12, 45, 150, 260, 333, 390) ORDER BY customer_id"}},
	{stmts: []string{"RESET DateStyle"}},
	// A REPEATABLE READ transaction that a Query sent whole to one shard
	// began and failed: the next statement for every shard had the proxy
	// take the snapshot everywhere, running its own statements on the
	// aborted backend, whose errors then answered the client's ROLLBACK
	// (seed 20261128, with the change above).
	{stmts: []string{"ROLLBACK", "BEGIN ISOLATION LEVEL REPEATABLE READ", "RELEASE SAVEPOINT x", "UPDATE customers SET name = 'r16' WHERE customer_id = 390", "BEGIN", "COMMIT"}},
	{cont: true, stmts: []string{"SELECT count(*) FROM customers WHERE customer_id = 7", "SELECT count(*) FROM customers"}},
	{stmts: []string{"SELECT count(*) FROM customers"}},
	// BEGIN with another isolation level after a SAVEPOINT, before any
	// shard joined the transaction: Postgres fails it with 25001 (in a
	// subtransaction); the proxy took the level (seed 5). The same level
	// is no error.
	{stmts: []string{"BEGIN", "SAVEPOINT x", "BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT count(*) FROM customers"}},
	{stmts: []string{"BEGIN ISOLATION LEVEL SERIALIZABLE", "SAVEPOINT x", "BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT count(*) FROM customers WHERE customer_id = 7"}},
	{stmts: []string{"BEGIN", "SAVEPOINT x", "BEGIN READ ONLY DEFERRABLE", "SELECT 1"}},
}

// multiCustomers lie on three shards under the range strategy (1-119 s0,
// 120-259 s1, 260- s2), on two or three under the others. ledger has
// entry 1 for the ones not divisible by 4 (genLedger): multiDupLedger.
var (
	multiCustomers = []int{7, 12, 45, 150, 260, 333, 390}
	multiDupLedger = []int{7, 45, 150, 333, 390}
	multiStatuses  = []string{"paid", "new", "shipped", "returned"}
	multiDateStyle = []string{"German", "SQL, DMY", "ISO, MDY", "Postgres, MDY"}
)

// multiQuery is one generated Query; cont: when a transaction is open
// before it, send it inside that transaction rather than rolling back.
type multiQuery struct {
	stmts []pipeStmt
	cont  bool
	name  string
}

func (q multiQuery) sql() string {
	var s []string
	for _, st := range q.stmts {
		s = append(s, st.sql)
	}
	return strings.Join(s, "; ")
}

// multiGen generates statements; next hands out fresh key values.
type multiGen struct {
	rng       *rand.Rand
	next      int
	orders    [][2]int // (customer, order) inserted so far
	ledger    [][2]int // (customer, entry)
	customers []int
}

func (g *multiGen) fresh() int { g.next++; return g.next }

func (g *multiGen) pick(xs []int) int { return xs[g.rng.IntN(len(xs))] }

func (g *multiGen) cust() int { return g.pick(multiCustomers) }

// multiTemplate is a statement template and its weight.
type multiTemplate struct {
	w   int
	gen func(g *multiGen) string
}

var multiTemplates = []multiTemplate{
	// Single-key writes.
	{6, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE customers SET credit = coalesce(credit, 0) + %d WHERE customer_id = %d RETURNING customer_id, credit", 1+g.rng.IntN(50), g.cust())
	}},
	{4, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE customers SET name = 'q%d' WHERE customer_id = %d", g.fresh(), g.cust())
	}},
	{2, func(g *multiGen) string {
		id := 5000 + g.fresh()
		g.customers = append(g.customers, id)
		return fmt.Sprintf("INSERT INTO customers (customer_id, name, credit) VALUES (%d, 'q%d', %d.50) RETURNING customer_id, name", id, id, g.rng.IntN(100))
	}},
	{1, func(g *multiGen) string {
		id := 5000 + g.next + 1 // none yet: a key nobody inserted
		if len(g.customers) > 0 {
			id = g.pick(g.customers)
		}
		return fmt.Sprintf("DELETE FROM customers WHERE customer_id = %d RETURNING customer_id, name", id)
	}},
	{6, func(g *multiGen) string {
		o, c := 10000+g.fresh(), g.cust()
		g.orders = append(g.orders, [2]int{c, o})
		ret := ""
		if g.rng.IntN(2) == 0 {
			ret = " RETURNING order_id, total"
		}
		return fmt.Sprintf("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES (%d, %d, 'multi', %d.25, %d)%s", o, c, g.rng.IntN(500), 1+g.rng.IntN(9), ret)
	}},
	{3, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE orders SET qty = coalesce(qty, 0) + 1 WHERE customer_id = %d AND status = '%s'", g.cust(), multiStatuses[g.rng.IntN(len(multiStatuses))])
	}},
	{2, func(g *multiGen) string {
		co := [2]int{g.cust(), 10000 + g.next + 1}
		if len(g.orders) > 0 {
			co = g.orders[g.rng.IntN(len(g.orders))]
		}
		return fmt.Sprintf("DELETE FROM orders WHERE customer_id = %d AND order_id = %d RETURNING order_id, total", co[0], co[1])
	}},
	{4, func(g *multiGen) string {
		c, e := g.cust(), 1000+g.fresh()
		g.ledger = append(g.ledger, [2]int{c, e})
		return fmt.Sprintf("INSERT INTO ledger (customer_id, entry, amount, memo) VALUES (%d, %d, 1.50, 'q%d')", c, e, e)
	}},
	{2, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE ledger SET amount = amount + 1 WHERE customer_id = %d", g.cust())
	}},
	{1, func(g *multiGen) string {
		ce := [2]int{g.cust(), 1000 + g.next + 1}
		if len(g.ledger) > 0 {
			ce = g.ledger[g.rng.IntN(len(g.ledger))]
		}
		return fmt.Sprintf("DELETE FROM ledger WHERE customer_id = %d AND entry = %d", ce[0], ce[1])
	}},
	// Keyless writes, on every shard.
	{2, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE orders SET note = 'q%d' WHERE status = '%s'", g.fresh(), multiStatuses[g.rng.IntN(len(multiStatuses))])
	}},
	{2, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE customers SET vip = NOT coalesce(vip, false) WHERE region_id = %d", g.rng.IntN(10))
	}},
	{1, func(g *multiGen) string {
		return fmt.Sprintf("DELETE FROM orders WHERE status = 'multi' AND qty = %d", 1+g.rng.IntN(9))
	}},
	// The reference table.
	{2, func(g *multiGen) string {
		return fmt.Sprintf("UPDATE products SET price = price + 0.01 WHERE product_id = %d", 1+g.rng.IntN(50))
	}},
	{1, func(g *multiGen) string {
		id := 1000 + g.fresh()
		return fmt.Sprintf("INSERT INTO products (product_id, name, price) VALUES (%d, 'q%d', 2.00)", id, id)
	}},
	// Reads by key, across shards, table-less.
	{3, func(g *multiGen) string {
		return fmt.Sprintf("SELECT customer_id, name, credit, signup FROM customers WHERE customer_id = %d", g.cust())
	}},
	{2, func(g *multiGen) string {
		return fmt.Sprintf("SELECT count(*), sum(total), sum(qty) FROM orders WHERE customer_id = %d", g.cust())
	}},
	{2, func(*multiGen) string { return "SELECT count(*), sum(credit) FROM customers" }},
	{2, func(*multiGen) string {
		return "SELECT customer_id, name, credit, signup FROM customers WHERE customer_id IN (7, 12, 45, 150, 260, 333, 390) ORDER BY customer_id"
	}},
	{2, func(*multiGen) string {
		return "SELECT order_id, customer_id, total, qty FROM orders WHERE order_id >= 10000 ORDER BY customer_id, order_id"
	}},
	{1, func(*multiGen) string { return "SELECT count(*), sum(total) FROM orders WHERE status = 'multi'" }},
	{2, func(*multiGen) string {
		return "SELECT customer_id, entry, amount, memo FROM ledger WHERE entry >= 1000 OR customer_id IN (7, 150) ORDER BY 1, 2, 3, 4"
	}},
	{1, func(*multiGen) string { return "SELECT count(*), sum(amount) FROM ledger" }},
	{1, func(*multiGen) string { return "SELECT count(*), sum(price) FROM products" }},
	{1, func(*multiGen) string { return "SELECT vip, count(*) FROM customers GROUP BY vip ORDER BY vip" }},
	{2, func(*multiGen) string { return "SELECT 1" }},
	{2, func(*multiGen) string { return "SELECT current_setting('DateStyle')" }},
	{1, func(*multiGen) string { return "SHOW DateStyle" }},
	// Settings.
	{2, func(g *multiGen) string {
		return fmt.Sprintf("SET DateStyle = '%s'", multiDateStyle[g.rng.IntN(len(multiDateStyle))])
	}},
	{2, func(g *multiGen) string {
		return fmt.Sprintf("SET LOCAL DateStyle = '%s'", multiDateStyle[g.rng.IntN(len(multiDateStyle))])
	}},
	{1, func(*multiGen) string { return "RESET DateStyle" }},
	// Transaction control.
	{4, func(*multiGen) string { return "BEGIN" }},
	{1, func(*multiGen) string { return "BEGIN ISOLATION LEVEL REPEATABLE READ" }},
	{3, func(*multiGen) string { return "COMMIT" }},
	{2, func(*multiGen) string { return "ROLLBACK" }},
	{2, func(*multiGen) string { return "SAVEPOINT x" }},
	{2, func(g *multiGen) string { return []string{"ROLLBACK TO x", "ROLLBACK TO SAVEPOINT x"}[g.rng.IntN(2)] }},
	{1, func(*multiGen) string { return "RELEASE SAVEPOINT x" }},
	// Failures.
	{1, func(*multiGen) string { return "SELECT 1/0" }},
	{1, func(g *multiGen) string {
		return fmt.Sprintf("SELECT count(*) / 0 FROM orders WHERE customer_id = %d", g.cust())
	}},
	{2, func(g *multiGen) string {
		return fmt.Sprintf("INSERT INTO customers (customer_id, name) VALUES (%d, 'dup')", g.cust())
	}},
	{4, func(g *multiGen) string { // deferred: fails at commit
		return fmt.Sprintf("INSERT INTO ledger (customer_id, entry, amount) VALUES (%d, 1, 9)", g.pick(multiDupLedger))
	}},
	{1, func(g *multiGen) string { // immediate: ledger_memo
		return fmt.Sprintf("INSERT INTO ledger (customer_id, entry, amount, memo) VALUES (7, %d, 1, 'm-7-1')", 1000+g.fresh())
	}},
}

func multiStmt(sql string) pipeStmt {
	ordered, err := topLevelOrderBy(sql)
	if err != nil {
		panic(fmt.Sprintf("%v: %s", err, sql))
	}
	return pipeStmt{sql: sql, ordered: ordered}
}

// genMultiQueries generates the regression Queries and n random ones
// from seed; stream tells the strategies' sequences apart.
func genMultiQueries(seed, stream uint64, n int) []multiQuery {
	var out []multiQuery
	for i, r := range multiRegressions {
		q := multiQuery{name: fmt.Sprintf("regression %d", i+1), cont: r.cont}
		for _, s := range r.stmts {
			q.stmts = append(q.stmts, multiStmt(s))
		}
		out = append(out, q)
	}
	g := &multiGen{rng: rand.New(rand.NewPCG(seed, stream))}
	total := 0
	for _, tp := range multiTemplates {
		total += tp.w
	}
	for i := range n {
		q := multiQuery{name: fmt.Sprintf("query %d", i+1), cont: g.rng.IntN(3) == 0}
		for range 2 + g.rng.IntN(5) {
			k := g.rng.IntN(total)
			for _, tp := range multiTemplates {
				if k < tp.w {
					q.stmts = append(q.stmts, multiStmt(tp.gen(g)))
					break
				}
				k -= tp.w
			}
		}
		out = append(out, q)
	}
	return out
}

// multiWrites finds the tables a Query's statements write.
func multiWrites(q multiQuery) []writeTable {
	var out []writeTable
	for _, s := range q.stmts {
		f := strings.Fields(s.sql)
		var name string
		switch f[0] {
		case "INSERT", "DELETE":
			name = f[2]
		case "UPDATE":
			name = f[1]
		default:
			continue
		}
		i := slices.IndexFunc(txnTables, func(w writeTable) bool { return w.name == name })
		if i < 0 {
			panic("unknown table " + name)
		}
		if !slices.ContainsFunc(out, func(w writeTable) bool { return w.name == name }) {
			out = append(out, txnTables[i])
		}
	}
	return out
}

// multiCounts are one strategy's outcomes.
type multiCounts struct {
	queries, statements, equal  int
	committed, failed, leftOpen int
	failedAtEnd                 int // a deferred constraint failed the Query's implicit commit
	failedAtCommit              int // a deferred constraint failed a COMMIT in the Query
	inside, rolledBack          int
	refused, differ, wrong      int
	settings, leftovers         int // DateStyle differed after a Query; transactions left on the shards
	why                         map[string]int
}

func multiSettings() (n int, seed uint64) {
	n, seed = multiDefaultN, multiDefaultSeed
	if v, err := strconv.Atoi(os.Getenv("DIFF_MULTI_N")); err == nil {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("DIFF_MULTI_SEED"), 10, 64); err == nil {
		seed = v
	}
	return n, seed
}

func TestDifferentialMultiStatement(t *testing.T) {
	n, seed := multiSettings()
	t.Logf("seed %d, %d random Queries per strategy (DIFF_MULTI_SEED, DIFF_MULTI_N)", seed, n)
	schema := append(readSQLFile(t, diffDir+"schema.sql"), sqlQuery{sql: walletsDDL}, sqlQuery{sql: ledgerDDL}, sqlQuery{sql: readingsDDL})
	data := append(genDiffData(), genWallets(), genLedger(), genReadings())
	show := os.Getenv("DIFF_MULTI_SHOW") != ""
	lists := make([][]multiQuery, len(diffStrategies))
	for si := range diffStrategies {
		lists[si] = genMultiQueries(seed, uint64(si), n)
	}

	counts := make([]*multiCounts, len(diffStrategies))
	t.Run("group", func(t *testing.T) {
		// The Queries must have one right answer: an oracle holding the
		// rows in reverse physical order must agree Query by Query.
		t.Run("oracle_self_check", func(t *testing.T) {
			t.Parallel()
			a := startOracle(t, "multi_a", schema, data)
			b := startOracle(t, "multi_b", schema, reverseRows(data))
			pa, pb := connectPipe(t, oracleDSN(t, a)), connectPipe(t, oracleDSN(t, b))
			for _, qs := range lists {
				for _, q := range qs {
					sa, sb := pa.get(t).PgConn().TxStatus(), pb.get(t).PgConn().TxStatus()
					if sa != sb {
						t.Fatalf("the oracles' statuses differ: %c, %c", sa, sb)
					}
					if sa != 'I' && !q.cont {
						multiRollback(t, pa, pb)
					}
					r := pipeRound{simple: true, stmts: []pipeStmt{{sql: q.sql()}}}
					ra, rb := runRound(t, pa, "text", r), runRound(t, pb, "text", r)
					if d := diffRounds(ra, rb, pipeRound{stmts: q.stmts}); d != "" {
						t.Fatalf("%s: the oracles differ (the result depends on the physical row order):\n  %s\n  %s", q.name, d, q.sql())
					}
				}
				multiRollback(t, pa, pb)
				for _, tb := range txnTables {
					if d := diffResults(readTable(a, tb), readTable(b, tb), true); d != "" {
						t.Fatalf("the contents of %s depend on the physical row order: %s", tb.name, d)
					}
				}
				for _, p := range []*pipeConn{pa, pb} {
					if r := runQuery(p.get(t).PgConn(), "simple", sqlQuery{sql: "RESET ALL"}); r.err != nil {
						t.Fatalf("RESET ALL: %v", r.err)
					}
				}
			}
		})
		var mu sync.Mutex
		for si, st := range diffStrategies {
			t.Run(st.name, func(t *testing.T) {
				t.Parallel()
				body := txnSuiteBody(st)
				pc, oracle, reader := startWriteSuite(t, st, body, "multi_", schema, data)
				proxy, orc := connectPipe(t, pc.f.DSN()), connectPipe(t, oracleDSN(t, oracle))
				c := &multiCounts{why: map[string]int{}}
				mu.Lock()
				counts[si] = c
				mu.Unlock()
				start := time.Now()
				runMultiQueries(t, lists[si], proxy, orc, reader, c, show)
				if len(compareTxnTables(t, reader, txnTables)) > 0 {
					c.wrong++
				}
				t.Logf("%s: %d Queries (%d regressions, seed %d), %d statements in %v: %d statement results equal the oracle; %d ran through alike, %d failed alike (%d of them at the implicit commit after the last statement, %d at a COMMIT), %d left a transaction open; %d sent inside an open transaction, %d followed by ROLLBACK; %d refused with 0A000; %d Queries differ, %d left tables differing, %d left DateStyle differing, %d left transactions on the shards",
					st.name, c.queries, len(multiRegressions), seed, c.statements, time.Since(start).Round(time.Millisecond), c.equal,
					c.committed, c.failed, c.failedAtEnd, c.failedAtCommit, c.leftOpen, c.inside, c.rolledBack, c.refused, c.differ, c.wrong, c.settings, c.leftovers)
				for _, msg := range slices.Sorted(maps.Keys(c.why)) {
					t.Logf("refused %3d× %s", c.why[msg], msg)
				}
				if c.refused*4 > c.queries {
					t.Errorf("%s: %d of %d Queries refused: the generator tests next to nothing", st.name, c.refused, c.queries)
				}
				if c.failedAtEnd == 0 {
					t.Errorf("%s: no Query failed at its implicit commit: the generator misses deferred constraints", st.name)
				}
			})
		}
	})
	for si, st := range diffStrategies {
		if c := counts[si]; c != nil {
			t.Logf("%-10s Queries %3d, statements %3d, equal %3d, ran alike %3d, failed alike %3d (at the end %2d, at COMMIT %2d), left open %2d, inside %2d, refused %2d, differed %2d, tables differed %2d, DateStyle differed %2d, leftovers %2d",
				st.name, c.queries, c.statements, c.equal, c.committed, c.failed, c.failedAtEnd, c.failedAtCommit, c.leftOpen, c.inside, c.refused, c.differ, c.wrong, c.settings, c.leftovers)
		}
	}
}

// multiRollback rolls back whatever transaction is open on each side.
func multiRollback(t *testing.T, conns ...*pipeConn) {
	t.Helper()
	for _, p := range conns {
		c := p.get(t).PgConn()
		if c.TxStatus() == 'I' {
			continue
		}
		if r := runQuery(c, "simple", sqlQuery{sql: "ROLLBACK"}); r.err != nil {
			t.Errorf("ROLLBACK: %s", describeErr(r.err))
		}
		if c.TxStatus() != 'I' {
			t.Errorf("not idle after ROLLBACK")
		}
	}
}

// runMultiQueries runs qs through the proxy and on the oracle and
// compares them (package comment).
func runMultiQueries(t *testing.T, qs []multiQuery, proxy, orc *pipeConn, reader *tableReader, c *multiCounts, show bool) {
	t.Helper()
	var pending []writeTable // tables written since both sides were last idle
	addPending := func(tbs []writeTable) {
		for _, tb := range tbs {
			if !slices.ContainsFunc(pending, func(w writeTable) bool { return w.name == tb.name }) {
				pending = append(pending, tb)
			}
		}
	}
	// resetBoth ends a difference: no transaction, default settings.
	resetBoth := func(what string) {
		multiRollback(t, proxy, orc)
		if l := multiLeftovers(t, reader); l != "" {
			t.Errorf("%s: transactions left on the shards after ROLLBACK: %s", what, l)
			c.leftovers++
		}
		for _, p := range []*pipeConn{proxy, orc} {
			if r := runQuery(p.get(t).PgConn(), "simple", sqlQuery{sql: "RESET ALL"}); r.err != nil {
				t.Errorf("RESET ALL: %s", describeErr(r.err))
			}
		}
	}
	status := func() (byte, byte) {
		return proxy.get(t).PgConn().TxStatus(), orc.get(t).PgConn().TxStatus()
	}
	// check compares the pending tables (committed state) after what
	// and, when both sides are idle, looks for leftovers on the shards
	// and compares the session's DateStyle.
	check := func(what string) {
		if bad := compareTxnTables(t, reader, pending); len(bad) > 0 {
			t.Errorf("the tables differ from the oracle's, or hold misplaced rows, after %s", what)
			c.wrong++
			multiRollback(t, proxy, orc) // TRUNCATE would wait for the open transaction
			reader.resync(t, bad)
			if len(compareTxnTables(t, reader, bad)) > 0 {
				t.Fatalf("the tables still differ after copying the oracle's rows through the proxy, after %s", what)
			}
		}
		if ps, oc := status(); ps == 'I' && oc == 'I' {
			pending = nil
			if l := multiLeftovers(t, reader); l != "" {
				t.Errorf("transactions left on the shards after %s: %s", what, l)
				c.leftovers++
			}
			// The session settings the Queries SET must agree too.
			show := sqlQuery{sql: "SHOW DateStyle"}
			if g, w := runQuery(proxy.get(t).PgConn(), "simple", show), runQuery(orc.get(t).PgConn(), "simple", show); diffResults(w, g, false) != "" {
				t.Errorf("DateStyle %v (%v) after %s, oracle %v (%v)", g.rows, g.err, what, w.rows, w.err)
				c.settings++
				resetBoth(what)
			}
		}
	}
	for _, q := range qs {
		c.queries++
		c.statements += len(q.stmts)
		if ps, oc := status(); ps != 'I' || oc != 'I' {
			if q.cont && ps == oc {
				c.inside++
			} else {
				c.rolledBack++
				multiRollback(t, proxy, orc)
				check("the ROLLBACK before " + q.name) // it must leave the committed state as it was
			}
		}
		text := q.sql()
		round := pipeRound{simple: true, stmts: []pipeStmt{{sql: text}}}
		got := runRound(t, proxy, "text", round)
		var pgErr *pgconn.PgError
		refused := errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != ""
		want := round
		if refused {
			// The oracle fails where the proxy refused.
			c.refused++
			c.why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
			var s []string
			for _, st := range q.stmts[:min(got.errAt, len(q.stmts))] {
				s = append(s, st.sql)
			}
			want.stmts = []pipeStmt{{sql: strings.Join(append(s, "SELECT 1/0"), "; ")}}
		}
		exp := runRound(t, orc, "text", want)
		if show {
			t.Logf("%s: %s\n  proxy:  %s\n  oracle: %s", q.name, text, got, exp)
		}
		if refused {
			if sqlState(exp.err) != "22012" || exp.errAt != got.errAt {
				t.Errorf("%s: the oracle's stand-in for the refused statement %d failed with %v at %d\n  %s",
					q.name, got.errAt+1, exp.err, exp.errAt+1, text)
			}
			exp.err = got.err // the refusal is the stand-in's error
		}
		if d := diffRounds(exp, got, pipeRound{stmts: q.stmts}); d != "" {
			c.differ++
			t.Errorf("%s: the proxy differs from the oracle:\n  %s\n  proxy:  %s\n  oracle: %s\n  Query: %s", q.name, d, got, exp, text)
			resetBoth(q.name)
		} else {
			c.equal += len(got.results)
			switch {
			case refused:
				if show {
					t.Logf("%s: refused: %s", q.name, describeErr(got.err))
				}
			case got.err != nil:
				c.failed++
				switch deferredFailure(q, got) {
				case "end":
					c.failedAtEnd++
				case "COMMIT":
					c.failedAtCommit++
				}
			case got.status != 'I':
				c.leftOpen++
			default:
				c.committed++
			}
		}
		if refused {
			multiRollback(t, proxy, orc)
		}
		addPending(multiWrites(q))
		check(q.name + " (" + text + ")")
	}
	multiRollback(t, proxy, orc)
	check("the final ROLLBACK")
}

// deferredFailure tells a Query that failed on a deferred constraint at
// a commit: at its implicit commit after the last statement ("end": the
// last statement's tag replaced by the error), or at a COMMIT in it.
// Every other unique violation the generator writes is an immediate one.
func deferredFailure(q multiQuery, r roundResult) string {
	if sqlState(r.err) != "23505" || r.errAt >= len(q.stmts) {
		return ""
	}
	s := q.stmts[r.errAt].sql
	switch {
	case s == "COMMIT":
		return "COMMIT"
	case strings.HasPrefix(s, "INSERT INTO customers") || strings.Contains(s, "'m-7-1'"):
		return ""
	case r.errAt == len(q.stmts)-1:
		return "end"
	}
	return ""
}

// multiLeftovers is leftovers, with what each backend left idle in a
// transaction last ran, if they are still there after a second. A
// backend the proxy discarded after an error (it closes the connection,
// and Postgres rolls back when it reads the end) may show for some
// milliseconds: that is logged only.
func multiLeftovers(t *testing.T, r *tableReader) string {
	t.Helper()
	l := leftovers(t, r)
	if l == "" {
		return ""
	}
	var last []string
	for _, sh := range []string{"s0", "s1", "s2"} {
		res := runQuery(r.direct[sh], "simple", sqlQuery{sql: `SELECT state, query FROM pg_stat_activity
			WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`})
		if res.err != nil {
			t.Fatalf("pg_stat_activity on %s: %v", sh, res.err)
		}
		for _, row := range res.rows {
			last = append(last, sh+": "+row)
		}
	}
	start := time.Now()
	for time.Since(start) < time.Second {
		time.Sleep(50 * time.Millisecond)
		if leftovers(t, r) == "" {
			t.Logf("%s (last statements %s; gone after %v)", l, strings.Join(last, "; "), time.Since(start).Round(10*time.Millisecond))
			return ""
		}
	}
	return fmt.Sprintf("%s (last statements %s; still there after 1s)", l, strings.Join(last, "; "))
}

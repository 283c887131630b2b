package proxy_test

// The pipeline differential suite: the transaction differential
// (differential_txn_test.go: same schema, data, strategies, three shards,
// two_phase_commit: true) for extended-protocol pipelines. Postgres runs a
// pipeline up to Sync as one transaction, an implicit transaction block;
// the proxy emulates it across shards (implicit.go). Each scenario of
// pipelineScenarios is a list of rounds: a pipeline (several statements,
// with parameters where natural, one Sync at the end) or a single
// statement sent as a simple Query (BEGIN, COMMIT, ROLLBACK around a
// pipeline). Every round runs on an unsharded oracle and through the
// proxy; each must give, proxy vs oracle: the same results statement by
// statement (tag, columns, rows: a multiset unless the statement has a
// top-level ORDER BY), the same first error (SQLSTATE, and at which
// statement, or at Sync: a failed commit), the same notices (WARNING
// 25P01 for COMMIT or ROLLBACK inside the implicit block) and the same
// transaction status afterwards. After every scenario the tables it names
// must equal the oracle's, every row on its key's shard, and no shard may
// hold a prepared or idle-in-transaction leftover.
//
// Pipelines are sent three ways, rotating per scenario and strategy:
// pgconn.Batch with text results, pgconn.Batch with binary results (both
// Parse/Bind/Describe/Execute per statement, unnamed), and pgx.Batch on a
// pgx.Conn (statements prepared by name first, as applications send them).
//
// A statement the proxy refuses with 0A000 and a hint counts as refused:
// the oracle then runs the same round with that statement replaced by one
// that fails (SELECT 1/0), which is what a refusal must amount to, the
// results before it and the transaction status after it must still
// agree, and the rest of the scenario is skipped (both sides roll back).
//
// The schema is the transaction suite's plus one CHECK constraint on
// customers.credit (credit_floor), for check violations.
//
// DIFF_PIPE_SHOW=1 logs every round's outcome.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pipeStmt is one statement of a round; args are bound as parameters
// (text in the pgconn modes, Go values encoded by pgx in the pgx mode).
type pipeStmt struct {
	sql     string
	args    []any
	ordered bool
}

// pipeRound is one pipeline up to Sync, or one statement sent as a simple
// Query (simple).
type pipeRound struct {
	simple bool
	stmts  []pipeStmt
}

type pipeScenario struct {
	name   string
	rounds []pipeRound
}

// roundResult is what a client sees of a round: the results of the
// statements that completed, the error that ended it (errAt: how many
// statements completed before it; len(stmts) for an error at Sync), the
// notices, the transaction status after it.
type roundResult struct {
	results []qresult
	err     error
	errAt   int
	notices []string
	status  byte
}

// pipeConn is one side's client connection, reopened (and reported) when a
// round took it down.
type pipeConn struct {
	dsn     string
	c       *pgx.Conn
	notices []string
}

func connectPipe(t *testing.T, dsn string) *pipeConn {
	t.Helper()
	p := &pipeConn{dsn: dsn}
	p.get(t)
	t.Cleanup(func() {
		if p.c != nil {
			p.c.Close(context.Background())
		}
	})
	return p
}

func (p *pipeConn) get(t *testing.T) *pgx.Conn {
	t.Helper()
	if p.c != nil && !p.c.IsClosed() {
		return p.c
	}
	cfg, err := pgx.ParseConfig(p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		p.notices = append(p.notices, n.Severity+" "+n.Code+" "+n.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to %s: %v", p.dsn, err)
	}
	p.c = c
	return c
}

var pipeModes = []string{"text", "binary", "pgx"}

// runRound sends r on p in mode ("text", "binary", "pgx"; a simple round
// is a simple Query in every mode).
func runRound(t *testing.T, p *pipeConn, mode string, r pipeRound) roundResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := p.get(t)
	p.notices = nil
	var out roundResult
	switch {
	case r.simple:
		out.results, out.err = readMulti(conn.PgConn().Exec(ctx, r.stmts[0].sql))
	case mode == "pgx":
		bt := &pgx.Batch{}
		for _, s := range r.stmts {
			bt.Queue(s.sql, s.args...)
		}
		br := conn.SendBatch(ctx, bt)
		for range r.stmts {
			rows, err := br.Query()
			if err != nil {
				out.err = err
				break
			}
			var raw [][][]byte
			for rows.Next() {
				row := make([][]byte, len(rows.RawValues()))
				for i, v := range rows.RawValues() {
					if v != nil {
						row[i] = append([]byte{}, v...)
					}
				}
				raw = append(raw, row)
			}
			fds := slices.Clone(rows.FieldDescriptions())
			rows.Close()
			if err := rows.Err(); err != nil {
				out.err = err
				break
			}
			out.results = append(out.results, formatResult(fds, raw, rows.CommandTag()))
		}
		if err := br.Close(); out.err == nil {
			out.err = err
		}
	default:
		var formats []int16
		if mode == "binary" {
			formats = binaryResults
		}
		b := &pgconn.Batch{}
		for _, s := range r.stmts {
			var params [][]byte
			for _, a := range s.args {
				if a == nil {
					params = append(params, nil)
				} else {
					params = append(params, []byte(fmt.Sprint(a)))
				}
			}
			b.ExecParams(s.sql, params, nil, nil, formats)
		}
		out.results, out.err = readMulti(conn.PgConn().ExecBatch(ctx, b))
	}
	out.errAt = -1
	if out.err != nil {
		out.errAt = len(out.results)
		var pgErr *pgconn.PgError
		if !errors.As(out.err, &pgErr) {
			t.Errorf("round failed without a server error: %v", out.err)
		}
	}
	out.notices = p.notices
	out.status = conn.PgConn().TxStatus()
	if conn.IsClosed() {
		t.Errorf("the connection closed during the round (error %v)", out.err)
		out.status = 'I'
	}
	return out
}

// diffRounds describes how got differs from want, or returns "".
func diffRounds(want, got roundResult, r pipeRound) string {
	var d []string
	switch {
	case want.err == nil && got.err != nil:
		d = append(d, fmt.Sprintf("error %s at statement %d; the oracle ran every statement", describeErr(got.err), got.errAt+1))
	case want.err != nil && got.err == nil:
		d = append(d, fmt.Sprintf("no error; the oracle failed with %s at statement %d", describeErr(want.err), want.errAt+1))
	case want.err != nil:
		if sqlState(want.err) != sqlState(got.err) || want.errAt != got.errAt {
			d = append(d, fmt.Sprintf("error %s at statement %d; oracle %s at statement %d",
				describeErr(got.err), got.errAt+1, describeErr(want.err), want.errAt+1))
		}
	}
	if len(want.results) != len(got.results) {
		d = append(d, fmt.Sprintf("%d results, oracle %d", len(got.results), len(want.results)))
	}
	for i := range min(len(want.results), len(got.results)) {
		if x := diffResults(want.results[i], got.results[i], i < len(r.stmts) && r.stmts[i].ordered); x != "" {
			d = append(d, fmt.Sprintf("statement %d (%s): %s", i+1, r.stmts[min(i, len(r.stmts)-1)].sql, x))
		}
	}
	if !slices.Equal(want.notices, got.notices) {
		d = append(d, fmt.Sprintf("notices %q, oracle %q", got.notices, want.notices))
	}
	if want.status != got.status {
		d = append(d, fmt.Sprintf("transaction status %q, oracle %q", got.status, want.status))
	}
	return strings.Join(d, "\n  ")
}

func (r roundResult) String() string {
	var b strings.Builder
	for i, res := range r.results {
		fmt.Fprintf(&b, "[%d %s, %d rows]", i+1, res.tag, len(res.rows))
	}
	if r.err != nil {
		fmt.Fprintf(&b, " error at %d: %s", r.errAt+1, describeErr(r.err))
	}
	if len(r.notices) > 0 {
		fmt.Fprintf(&b, " notices %q", r.notices)
	}
	fmt.Fprintf(&b, " status %c", r.status)
	return b.String()
}

// endPipes rolls back whatever a scenario left open, on both sides, and
// resets the session settings a scenario that SETs may have left.
func endPipes(t *testing.T, sc pipeScenario, conns ...*pipeConn) {
	t.Helper()
	sets := false
	for _, r := range sc.rounds {
		for _, s := range r.stmts {
			sets = sets || strings.HasPrefix(s.sql, "SET ")
		}
	}
	for _, p := range conns {
		c := p.get(t)
		if c.PgConn().TxStatus() != 'I' {
			if r := runQuery(c.PgConn(), "simple", sqlQuery{sql: "ROLLBACK"}); r.err != nil {
				t.Errorf("%s: ROLLBACK: %s", sc.name, describeErr(r.err))
			}
			if c.PgConn().TxStatus() != 'I' {
				t.Errorf("%s: not idle after ROLLBACK", sc.name)
			}
		}
		if sets {
			if r := runQuery(c.PgConn(), "simple", sqlQuery{sql: "RESET ALL"}); r.err != nil {
				t.Errorf("%s: RESET ALL: %s", sc.name, describeErr(r.err))
			}
		}
	}
}

// pipeTouched finds the tables a scenario names.
func pipeTouched(sc pipeScenario) []writeTable {
	var b txnBlock
	for _, r := range sc.rounds {
		for _, s := range r.stmts {
			b.steps = append(b.steps, txnStep{q: sqlQuery{sql: s.sql}})
		}
	}
	return txnTouched(b)
}

// leftovers counts, on every shard, prepared transactions and backends
// idle in a transaction: a pipeline's transaction must be over, on every
// shard, when the client has ReadyForQuery with status I.
func leftovers(t *testing.T, r *tableReader) string {
	t.Helper()
	var out []string
	for _, sh := range []string{"s0", "s1", "s2"} {
		res := runQuery(r.direct[sh], "simple", sqlQuery{sql: `SELECT (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()),
			(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%')`})
		if res.err != nil || len(res.rows) != 1 {
			t.Fatalf("leftovers on %s: %v", sh, res.err)
		}
		if res.rows[0] != `"0" | "0"` {
			out = append(out, sh+" (prepared | idle in transaction): "+res.rows[0])
		}
	}
	return strings.Join(out, "; ")
}

// pipeCounts are one strategy's outcomes.
type pipeCounts struct {
	scenarios, pipelines, simple int
	statements, equal            int
	failedAlike, committedAlike  int
	refused                      int
	differ, wrong                int
	modes, why                   map[string]int
}

func TestDifferentialPipelines(t *testing.T) {
	scenarios := pipelineScenarios()
	if len(scenarios) < 40 {
		t.Fatalf("%d scenarios; want at least 40", len(scenarios))
	}
	runPipelineSuite(t, scenarios, len(scenarios)/5)
}

// runPipelineSuite checks that scenarios have one right answer (two
// oracles, rows in opposite physical order, agree), then runs them through
// the proxy under every strategy against an oracle. maxRefused is how many
// scenarios per strategy the proxy may refuse.
func runPipelineSuite(t *testing.T, scenarios []pipeScenario, maxRefused int) {
	t.Helper()
	schema := append(readSQLFile(t, diffDir+"schema.sql"), sqlQuery{sql: walletsDDL}, sqlQuery{sql: ledgerDDL}, sqlQuery{sql: readingsDDL},
		sqlQuery{sql: "ALTER TABLE customers ADD CONSTRAINT credit_floor CHECK (credit > -100000)"})
	data := append(genDiffData(), genWallets(), genLedger(), genReadings())
	show := os.Getenv("DIFF_PIPE_SHOW") != ""

	// The scenarios must have one right answer: an oracle holding the rows
	// in reverse physical order must agree round by round, in every mode.
	t.Run("oracle_self_check", func(t *testing.T) {
		a := startOracle(t, "pipe_a", schema, data)
		b := startOracle(t, "pipe_b", schema, reverseRows(data))
		pa, pb := connectPipe(t, oracleDSN(t, a)), connectPipe(t, oracleDSN(t, b))
		for i, sc := range scenarios {
			mode := pipeModes[i%len(pipeModes)]
			for ri, r := range sc.rounds {
				ra, rb := runRound(t, pa, mode, r), runRound(t, pb, mode, r)
				if d := diffRounds(ra, rb, r); d != "" {
					t.Fatalf("%s, round %d (%s): the oracles differ (the result depends on the physical row order):\n  %s", sc.name, ri+1, mode, d)
				}
			}
			endPipes(t, sc, pa, pb)
			for _, tb := range pipeTouched(sc) {
				if d := diffResults(readTable(a, tb), readTable(b, tb), true); d != "" {
					t.Fatalf("%s: the contents of %s depend on the physical row order: %s", sc.name, tb.name, d)
				}
			}
		}
	})

	counts := map[string]*pipeCounts{}
	for si, st := range diffStrategies {
		t.Run(st.name, func(t *testing.T) {
			body := txnSuiteBody(st)
			pc, oracle, reader := startWriteSuite(t, st, body, "pipe_", schema, data)
			proxy, orc := connectPipe(t, pc.f.DSN()), connectPipe(t, oracleDSN(t, oracle))

			c := &pipeCounts{modes: map[string]int{}, why: map[string]int{}}
			counts[st.name] = c
			for i, sc := range scenarios {
				c.scenarios++
				mode := pipeModes[(i+si)%len(pipeModes)]
				c.modes[mode]++
				runScenario(t, sc, mode, proxy, orc, c, show)
				endPipes(t, sc, proxy, orc)
				if bad := compareTxnTables(t, reader, pipeTouched(sc)); len(bad) > 0 {
					t.Errorf("%s (%s): the tables differ from the oracle's, or hold misplaced rows, after it", sc.name, mode)
					c.wrong++
					reader.resync(t, bad)
					if len(compareTxnTables(t, reader, bad)) > 0 {
						t.Fatalf("%s: the tables still differ after copying the oracle's rows through the proxy", sc.name)
					}
				}
				if l := leftovers(t, reader); l != "" {
					t.Errorf("%s (%s): transactions left on the shards: %s", sc.name, mode, l)
				}
			}
			if len(compareTxnTables(t, reader, txnTables)) > 0 {
				c.wrong++
			}
			t.Logf("%s: %d scenarios (%d text, %d binary, %d pgx), %d pipelines and %d simple Queries, %d statements: %d statement results equal the oracle; %d rounds failed alike, %d ran through alike; %d refused with 0A000; %d rounds differ, %d scenarios left tables differing",
				st.name, c.scenarios, c.modes["text"], c.modes["binary"], c.modes["pgx"], c.pipelines, c.simple, c.statements, c.equal,
				c.failedAlike, c.committedAlike, c.refused, c.differ, c.wrong)
			for _, msg := range slices.Sorted(maps.Keys(c.why)) {
				t.Logf("refused %3d× %s", c.why[msg], msg)
			}
			if c.refused > maxRefused {
				t.Errorf("%s: %d of %d scenarios refused: the proxy refuses too much", st.name, c.refused, len(scenarios))
			}
		})
	}
	for _, st := range diffStrategies {
		if c := counts[st.name]; c != nil {
			t.Logf("%-10s scenarios %2d, pipelines %3d, statements %3d, equal %3d, failed alike %2d, refused %2d, rounds differed %2d, tables differed %2d",
				st.name, c.scenarios, c.pipelines, c.statements, c.equal, c.failedAlike, c.refused, c.differ, c.wrong)
		}
	}
}

// pipeStandIn is what the oracle runs in a pipeline where the proxy
// refused a statement: it fails when it runs (22023), and its Parse takes
// no snapshot.
const pipeStandIn = "SET lock_timeout = 'stand-in'"

// runScenario runs a scenario's rounds on both sides and compares them.
func runScenario(t *testing.T, sc pipeScenario, mode string, proxy, orc *pipeConn, c *pipeCounts, show bool) {
	t.Helper()
	for ri, r := range sc.rounds {
		if r.simple {
			c.simple++
		} else {
			c.pipelines++
		}
		c.statements += len(r.stmts)
		got := runRound(t, proxy, mode, r)
		want := pipeRound{}
		var pgErr *pgconn.PgError
		refused := errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != ""
		if refused {
			// The oracle fails where the proxy refused.
			c.refused++
			c.why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
			want.simple = r.simple
			if r.simple {
				want.stmts = []pipeStmt{{sql: "SELECT 1/0"}}
			} else {
				// A stand-in that takes no snapshot to parse fails where
				// the proxy refused, and the refused statement and the
				// rest follow it, never run: pgx then parses, and after
				// the error uncaches, the same statements on both sides.
				// (pgx parses a batch's uncached statements before any
				// runs, and a SELECT's Parse takes the snapshot of an open
				// transaction block, after which a BEGIN in the batch can
				// no longer change its isolation level: a SELECT 1/0
				// stand-in made the oracle fail such a BEGIN where the
				// refused statement, cached, had not.)
				at := min(got.errAt, len(r.stmts))
				want.stmts = slices.Concat(r.stmts[:at], []pipeStmt{{sql: pipeStandIn}}, r.stmts[at:])
			}
		} else {
			want = r
		}
		exp := runRound(t, orc, mode, want)
		if show {
			t.Logf("%s, round %d (%s): proxy %s; oracle %s", sc.name, ri+1, mode, got, exp)
		}
		if refused {
			// (In a failed transaction the stand-in fails with 25P02:
			// the refused statement failed there all the same.)
			if code := sqlState(exp.err); code != "22012" && code != "22023" && code != "25P02" || exp.errAt != got.errAt {
				t.Errorf("%s, round %d (%s): the oracle's stand-in for the refused statement %d failed with %v at %d",
					sc.name, ri+1, mode, got.errAt+1, exp.err, exp.errAt+1)
			}
			exp.err = got.err // the refusal is the stand-in's error
		}
		if d := diffRounds(exp, got, r); d != "" {
			c.differ++
			t.Errorf("%s, round %d (%s): the proxy differs from the oracle:\n  %s\n  proxy:  %s\n  oracle: %s\n  %s",
				sc.name, ri+1, mode, d, got, exp, roundSQL(r))
			return
		}
		c.equal += len(got.results)
		switch {
		case refused:
			if show {
				t.Logf("%s, round %d (%s): refused: %s", sc.name, ri+1, mode, describeErr(got.err))
			}
			return // the rest of the scenario is skipped; endPipes rolls back
		case got.err != nil:
			c.failedAlike++
		default:
			c.committedAlike++
		}
	}
}

func roundSQL(r pipeRound) string {
	var out []string
	for i, s := range r.stmts {
		line := fmt.Sprintf("%d: %s", i+1, s.sql)
		if len(s.args) > 0 {
			line += fmt.Sprintf("  -- args %v", s.args)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n  ")
}

// pipeSQL is a statement of a round; ordered if it has a top-level ORDER BY.
func pipeSQL(sql string, args ...any) pipeStmt {
	ordered, err := topLevelOrderBy(sql)
	if err != nil {
		panic(fmt.Sprintf("%v: %s", err, sql))
	}
	return pipeStmt{sql: sql, args: args, ordered: ordered}
}

// The statements scenarios are made of, fixed and random ones alike.

func pipeSetName(name string, id int) pipeStmt {
	return pipeSQL("UPDATE customers SET name = $2 WHERE customer_id = $1 RETURNING customer_id, name", id, name)
}

func pipeAddOrder(order, cust int) pipeStmt {
	return pipeSQL("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES ($1, $2, 'pipe', 1.50, 1)", order, cust)
}

func pipeDupCustomer(id int) pipeStmt { // 23505
	return pipeSQL("INSERT INTO customers (customer_id, name) VALUES ($1, 'dup')", id)
}

func pipeOverdraw(id int) pipeStmt { // 23514: credit_floor
	return pipeSQL("UPDATE customers SET credit = coalesce(credit, 0) - 1000000 WHERE customer_id = $1", id)
}

func pipeNames(ids string) pipeStmt {
	return pipeSQL("SELECT customer_id, name FROM customers WHERE customer_id IN (" + ids + ") ORDER BY customer_id")
}

func pipeOrdersIn(lo, hi int) pipeStmt {
	return pipeSQL(fmt.Sprintf("SELECT count(*), sum(total) FROM orders WHERE order_id BETWEEN %d AND %d", lo, hi))
}

// pipelineScenarios are the suite's scenarios. Customers 7, 150 and 390
// (and 12, 260) lie on three shards under the range strategy (1-119 s0,
// 120-259 s1, 260- s2), on two or three under the others; every id from 1
// to 400 exists, so new customers are negative or above 1000. New orders
// use order ids from 8000, a range of their own per scenario.
func pipelineScenarios() []pipeScenario {
	s, setName, addOrder, dupCustomer, overdraw, names, ordersIn := pipeSQL, pipeSetName, pipeAddOrder, pipeDupCustomer, pipeOverdraw, pipeNames, pipeOrdersIn
	batch := func(stmts ...pipeStmt) pipeRound { return pipeRound{stmts: stmts} }
	query := func(sql string) pipeRound { return pipeRound{simple: true, stmts: []pipeStmt{s(sql)}} }
	sc := func(name string, rounds ...pipeRound) pipeScenario { return pipeScenario{name: name, rounds: rounds} }

	return []pipeScenario{
		// Outside a transaction: writes on several shards, then reads of
		// them; one transaction committed at Sync.
		sc("transfer between two shards", batch(
			s("UPDATE customers SET credit = coalesce(credit, 0) - 25 WHERE customer_id = $1 RETURNING customer_id, credit", 7),
			s("UPDATE customers SET credit = coalesce(credit, 0) + 25 WHERE customer_id = $1 RETURNING customer_id, credit", 150),
			s("SELECT sum(credit), count(*) FROM customers"),
			s("SELECT customer_id, credit FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id"))),
		sc("single-row INSERTs on three shards", batch(
			s("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES ($1, $2, 'pipe', $3, $4)", 8001, 7, "10.50", 1),
			s("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES ($1, $2, 'pipe', $3, $4)", 8002, 150, "20.25", 2),
			s("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES ($1, $2, 'pipe', $3, $4) RETURNING order_id, total", 8003, 390, "30.00", 3),
			s("SELECT count(*), sum(total), sum(qty) FROM orders WHERE order_id BETWEEN 8001 AND 8003"),
			s("SELECT order_id, customer_id, total FROM orders WHERE order_id BETWEEN 8001 AND 8003 ORDER BY order_id"),
			s("SELECT count(*) FROM orders WHERE customer_id = $1", 150))),
		sc("multi-row INSERT across shards first", batch(
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES (8011, 7, 'multi', 1), (8012, 150, 'multi', 2), (8013, 390, 'multi', 3), (8014, 12, 'multi', 4) RETURNING order_id, customer_id"),
			s("UPDATE orders SET total = total * 10 WHERE customer_id = $1 AND order_id = $2 RETURNING total", 150, 8012),
			s("SELECT count(*), sum(total) FROM orders WHERE status = 'multi'"),
			s("SELECT total FROM orders WHERE customer_id = $1 AND order_id = $2", 390, 8013))),
		sc("keyless UPDATE first, then keyed writes", batch(
			s("UPDATE orders SET qty = coalesce(qty, 0) + 1 WHERE status = 'paid'"),
			s("INSERT INTO orders (order_id, customer_id, status, qty) VALUES ($1, $2, 'paid', 5)", 8021, 150),
			s("UPDATE customers SET vip = true WHERE customer_id = $1", 390),
			s("SELECT sum(qty), count(*) FROM orders WHERE status = 'paid'"),
			s("SELECT status, count(*), sum(qty) FROM orders GROUP BY status ORDER BY status"))),
		sc("reference table write, then keyed writes", batch(
			s("UPDATE products SET price = price + 1 WHERE product_id <= 3 RETURNING product_id, price"),
			s("UPDATE customers SET credit = coalesce(credit, 0) + 1 WHERE customer_id = $1", 390),
			s("INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) VALUES ($1, 8031, 1, 2, 3, 4.5)", 7),
			s("SELECT sum(price), count(*) FROM products"),
			s("SELECT sum(i.qty * p.price) FROM order_items i JOIN products p USING (product_id) WHERE i.customer_id = $1", 7))),
		sc("keyed writes, then the reference table", batch(
			setName("ref-after", 150),
			setName("ref-after", 12),
			s("INSERT INTO products (product_id, name, category, price, active) VALUES ($1, $2, 'pipe', $3, true)", 801, "pipe-ware", "9.99"),
			s("SELECT product_id, name, price FROM products WHERE product_id > 800 ORDER BY product_id"))),
		sc("deletes on several shards", batch(
			s("DELETE FROM order_items WHERE customer_id = $1 AND line = 3 RETURNING order_id, line", 7),
			s("DELETE FROM order_items WHERE customer_id IN (150, 390, 12, 260) AND line = 2 RETURNING customer_id, order_id"),
			s("SELECT count(*), sum(qty) FROM order_items"),
			s("SELECT line, count(*) FROM order_items GROUP BY line ORDER BY line"))),
		sc("text keys on several shards", batch(
			s("UPDATE events SET kind = 'pipe' WHERE stream = $1 AND seq <= 2 RETURNING stream, seq", "acct-1"),
			s("UPDATE events SET kind = 'pipe' WHERE stream = $1 AND seq <= 2 RETURNING stream, seq", "zz-9"),
			s("UPDATE events SET kind = 'pipe' WHERE stream = $1 RETURNING stream, seq", "日本-3"),
			s("SELECT stream, count(*) FROM events WHERE kind = 'pipe' GROUP BY stream ORDER BY stream"))),
		sc("wallet upserts", batch(
			s("INSERT INTO wallets (customer_id, wallet_id, label, balance) VALUES ($1, 1, 'pipe', $2) ON CONFLICT (customer_id, wallet_id) DO UPDATE SET balance = coalesce(wallets.balance, 0) + EXCLUDED.balance RETURNING customer_id, wallet_id, balance", 7, "1.25"),
			s("INSERT INTO wallets (customer_id, wallet_id, label, balance) VALUES ($1, 1, 'pipe', $2) ON CONFLICT (customer_id, wallet_id) DO UPDATE SET balance = coalesce(wallets.balance, 0) + EXCLUDED.balance RETURNING customer_id, wallet_id, balance", 150, "2.50"),
			s("INSERT INTO wallets (customer_id, wallet_id, label, balance) VALUES ($1, 1, 'pipe', $2) ON CONFLICT (customer_id, wallet_id) DO UPDATE SET balance = coalesce(wallets.balance, 0) + EXCLUDED.balance RETURNING customer_id, wallet_id, balance", 400, "3.75"),
			s("SELECT customer_id, wallet_id, balance FROM wallets WHERE customer_id IN (7, 150, 400) ORDER BY 1, 2"),
			s("SELECT sum(balance), count(*) FROM wallets"))),
		sc("readings in three ranges", batch(
			s("INSERT INTO readings (at, sensor, value, note) VALUES ($1, 21, $2, 'pipe')", "2024-02-10 10:00:00+00", "1.5"),
			s("INSERT INTO readings (at, sensor, value, note) VALUES ($1, 21, $2, 'pipe')", "2024-05-10 10:00:00+00", "2.5"),
			s("INSERT INTO readings (at, sensor, value, note) VALUES ($1, 21, $2, 'pipe')", "2024-10-10 10:00:00+00", "3.5"),
			s("UPDATE readings SET value = value * 2 WHERE sensor = 21"),
			s("SELECT count(*), sum(value) FROM readings WHERE sensor = 21"))),
		sc("reads first, then writes on two shards", batch(
			s("SELECT count(*), sum(total) FROM orders"),
			s("SELECT credit FROM customers WHERE customer_id = $1", 390),
			s("UPDATE customers SET vip = true WHERE customer_id = $1", 12),
			s("UPDATE customers SET vip = false WHERE customer_id = $1", 390),
			s("SELECT vip, count(*) FROM customers GROUP BY vip ORDER BY vip"))),
		sc("one parameterised INSERT for five customers", batch(
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)", 8041, 7, "batch", "1.00"),
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)", 8042, 150, "batch", "2.00"),
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)", 8043, 390, "batch", "3.00"),
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)", 8044, 12, "batch", "4.00"),
			s("INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1, $2, $3, $4)", 8045, 260, "batch", "5.00"),
			s("SELECT customer_id, order_id, total FROM orders WHERE status = 'batch' ORDER BY customer_id, order_id"))),
		sc("merged reads between writes", batch(
			addOrder(8051, 7),
			ordersIn(8051, 8059),
			addOrder(8052, 390),
			ordersIn(8051, 8059),
			s("DELETE FROM orders WHERE order_id = 8051"),
			ordersIn(8051, 8059))),
		sc("INSERT ... SELECT by key on two shards", batch(
			s("INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) SELECT customer_id, order_id, 7, 1, 1, 1.5 FROM orders WHERE customer_id = $1 AND order_id < 300", 7),
			s("INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) SELECT customer_id, order_id, 7, 1, 1, 1.5 FROM orders WHERE customer_id = $1", 150),
			s("SELECT count(*), sum(price) FROM order_items WHERE line = 7"))),

		// Failures mid-pipeline: the whole pipeline rolls back.
		sc("unique violation after writes on two shards", batch(
			setName("b1", 7),
			addOrder(8101, 390),
			dupCustomer(150),
			s("SELECT count(*) FROM customers"))),
		sc("check violation after a merged read", batch(
			s("UPDATE customers SET credit = coalesce(credit, 0) + 5 WHERE customer_id = $1", 7),
			s("UPDATE customers SET credit = coalesce(credit, 0) + 5 WHERE customer_id = $1", 390),
			s("SELECT sum(credit) FROM customers"),
			overdraw(150),
			setName("not reached", 12))),
		sc("division by zero in a keyed UPDATE", batch(
			addOrder(8111, 7),
			addOrder(8112, 150),
			ordersIn(8111, 8113),
			s("UPDATE orders SET total = total / 0 WHERE customer_id = $1 AND order_id = 8112", 150),
			addOrder(8113, 390))),
		sc("deferred primary key violated at Sync", batch(
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 910, 1)", 7),
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 910, 1)", 150),
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 910, 2)", 150),
			s("SELECT count(*) FROM ledger WHERE entry = 910"))),
		sc("deferred primary key violated at Sync, a reference write first", batch(
			s("UPDATE products SET price = price + 0.01 WHERE product_id = 1"),
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 1, 1)", 390),
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 930, 1)", 7))),
		sc("keyless UPDATE first, then division by zero", batch(
			s("UPDATE orders SET note = 'b5' WHERE status = 'new'"),
			addOrder(8121, 150),
			s("SELECT $1::int / 0", 5))),
		sc("multi-row INSERT across shards first, then unique violation", batch(
			s("INSERT INTO orders (order_id, customer_id, status) VALUES (8131, 7, 'b6'), (8132, 150, 'b6'), (8133, 390, 'b6')"),
			setName("b6", 12),
			s("INSERT INTO orders (order_id, customer_id) VALUES (8132, $1)", 150))),
		sc("reference write first, then check violation", batch(
			s("UPDATE products SET active = NOT coalesce(active, false) WHERE product_id = 10"),
			s("INSERT INTO products (product_id, name, price) VALUES (901, 'b7', 1)"),
			overdraw(7))),
		sc("keyless DELETE first, then division by zero in a merged read", batch(
			s("DELETE FROM order_items WHERE line = 3 AND qty = 1"),
			setName("b8", 390),
			s("SELECT count(*) FROM order_items"),
			s("SELECT sum(qty) / 0 FROM orders"))),
		sc("immediate unique violation on ledger memo", batch(
			s("INSERT INTO ledger (customer_id, entry, amount, memo) VALUES ($1, 920, 1, 'b10')", 150),
			s("INSERT INTO ledger (customer_id, entry, amount, memo) VALUES ($1, 920, 1, 'm-7-1')", 7),
			s("SELECT count(*) FROM ledger WHERE entry = 920"))),
		sc("not-null violation in a multi-row INSERT across shards", batch(
			setName("b11", 150),
			s("INSERT INTO orders (order_id, customer_id, status) VALUES (8141, 7, 'x'), (8142, 390, NULL), (8143, 12, 'y'), (NULL, 150, 'z')"))),
		sc("a failing statement's successors are skipped", batch(
			addOrder(8151, 7),
			addOrder(8152, 390),
			ordersIn(8151, 8159),
			dupCustomer(12),
			addOrder(8153, 150),
			ordersIn(8151, 8159))),
		sc("an invalid cast after writes on two shards", batch(
			setName("b13", 7),
			setName("b13", 390),
			s("SELECT 'abc'::int"))),
		sc("an UPDATE ... RETURNING across shards that fails", batch(
			setName("b15", 12),
			s("UPDATE customers SET credit = coalesce(credit, 0) - 1000000 WHERE customer_id IN (7, 150, 390) RETURNING customer_id"))),

		// COMMIT, ROLLBACK, BEGIN and SAVEPOINT inside the implicit block.
		sc("COMMIT in the middle keeps the work before it", batch(
			setName("c1", 7),
			setName("c1", 150),
			s("COMMIT"),
			setName("c1-after", 12),
			overdraw(390))),
		sc("ROLLBACK in the middle", batch(
			setName("c2", 7),
			addOrder(8201, 390),
			s("ROLLBACK"),
			addOrder(8202, 150),
			ordersIn(8201, 8202))),
		sc("ROLLBACK after a multi-row INSERT across shards", batch(
			s("INSERT INTO orders (order_id, customer_id, status) VALUES (8211, 7, 'c14'), (8212, 150, 'c14'), (8213, 390, 'c14')"),
			s("ROLLBACK"),
			ordersIn(8211, 8213))),
		sc("keyless write first, COMMIT, then an error", batch(
			s("UPDATE orders SET note = 'c13' WHERE status = 'returned'"),
			s("COMMIT"),
			addOrder(8221, 150),
			s("SELECT 1/0"))),
		sc("COMMIT first, then writes", batch(
			s("COMMIT"),
			setName("c12", 7),
			setName("c12", 150),
			names("7, 150"))),
		// BEGIN on the one shard the pipeline wrote on so far, then a
		// statement for another shard (or all of them): the block is the
		// client's, not the implicit one (s.ext.begun). This suite found
		// the proxy taking it for the implicit one: a WARNING 25P01 at the
		// COMMIT, a commit at Sync of a block Postgres leaves open (status
		// T), a rollback at Sync of a failed block Postgres leaves failed
		// (status E).
		sc("BEGIN in the middle, COMMIT at the end", batch(
			setName("c3", 7),
			s("BEGIN"),
			setName("c3", 150),
			setName("c3", 390),
			names("7, 150, 390"),
			s("COMMIT"))),
		sc("BEGIN in the middle, ROLLBACK at the end undoes the work before BEGIN", batch(
			setName("c4", 7),
			addOrder(8231, 150),
			s("BEGIN"),
			setName("c4", 390),
			s("ROLLBACK"),
			s("SELECT count(*) FROM customers WHERE name = 'c4'"),
			ordersIn(8231, 8231))),
		sc("BEGIN in the middle, the block outlives the pipeline",
			batch(
				addOrder(8241, 390),
				s("BEGIN"),
				addOrder(8242, 7),
				ordersIn(8241, 8249)),
			batch(
				setName("c5", 150),
				ordersIn(8241, 8249)),
			query("COMMIT")),
		sc("BEGIN in the middle, then an error: the block stays failed",
			batch(
				setName("c6", 7),
				s("BEGIN"),
				setName("c6", 150),
				dupCustomer(390),
				setName("c6", 12)),
			query("SELECT 1"),
			query("ROLLBACK")),
		sc("BEGIN after the pipeline spans two shards, the block outlives the pipeline",
			batch(
				setName("c5b", 7),
				setName("c5b", 150),
				s("BEGIN"),
				addOrder(8243, 390)),
			batch(names("7, 150")),
			query("ROLLBACK")),
		sc("BEGIN after the pipeline spans two shards, then an error",
			batch(
				setName("c6b", 7),
				setName("c6b", 390),
				s("BEGIN"),
				dupCustomer(150)),
			query("SELECT 1"),
			query("ROLLBACK")),
		sc("BEGIN ... COMMIT, then an implicit block that fails", batch(
			s("BEGIN"),
			setName("c7", 7),
			setName("c7", 150),
			s("COMMIT"),
			setName("c7", 390),
			addOrder(8251, 12),
			dupCustomer(12))),
		sc("SAVEPOINT outside a transaction block", batch(
			setName("c8", 7),
			setName("c8", 150),
			s("SAVEPOINT p"),
			setName("c8", 390))),
		sc("ROLLBACK TO SAVEPOINT outside a transaction block", batch(
			addOrder(8271, 150),
			setName("c10", 7),
			s("ROLLBACK TO SAVEPOINT p"))),
		sc("COMMIT AND CHAIN inside the implicit block", batch(
			setName("c11", 7),
			setName("c11", 390),
			s("COMMIT AND CHAIN"),
			setName("c11", 150))),
		sc("SET in a pipeline that fails is undone",
			batch(
				s("SET DateStyle = 'German'"),
				setName("c16", 7),
				setName("c16", 150),
				s("SELECT current_setting('DateStyle')"),
				dupCustomer(390)),
			batch(
				s("SHOW DateStyle"),
				s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", 7)),
			query("RESET DateStyle")),
		sc("SET in a pipeline that commits stays",
			batch(
				s("SET DateStyle = 'SQL, DMY'"),
				setName("c17", 7),
				setName("c17", 390)),
			batch(
				s("SHOW DateStyle"),
				s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", 390),
				s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", 7)),
			query("RESET DateStyle")),

		// Pipelines inside an explicit transaction.
		sc("BEGIN, a pipeline on three shards, COMMIT",
			query("BEGIN"),
			batch(
				setName("d1", 7),
				setName("d1", 150),
				addOrder(8301, 390),
				s("SELECT count(*) FROM customers WHERE name = 'd1'"),
				ordersIn(8301, 8301)),
			query("COMMIT")),
		sc("BEGIN, a pipeline on three shards, ROLLBACK",
			query("BEGIN"),
			batch(
				setName("d2", 7),
				addOrder(8311, 150),
				addOrder(8312, 390),
				ordersIn(8311, 8312)),
			query("ROLLBACK"),
			batch(ordersIn(8311, 8312))),
		sc("BEGIN, a pipeline that fails in the middle, ROLLBACK",
			query("BEGIN"),
			batch(
				setName("d3", 7),
				setName("d3", 150),
				dupCustomer(390),
				setName("d3", 12)),
			batch(s("SELECT 1")),
			query("ROLLBACK")),
		sc("savepoints in a pipeline inside BEGIN",
			query("BEGIN"),
			batch(
				setName("d4a", 7),
				s("SAVEPOINT a"),
				setName("d4b", 150),
				addOrder(8321, 390),
				s("ROLLBACK TO SAVEPOINT a"),
				setName("d4c", 390),
				s("RELEASE SAVEPOINT a"),
				names("7, 150, 390")),
			batch(ordersIn(8321, 8321)),
			query("COMMIT")),
		sc("deferred violation at COMMIT after a pipeline",
			query("BEGIN"),
			batch(
				s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 940, 1)", 150),
				s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 940, 1)", 7),
				s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 940, 2)", 7),
				s("SELECT count(*) FROM ledger WHERE entry = 940")),
			query("COMMIT")),
		sc("COMMIT inside ends the explicit block, the rest is an implicit block",
			query("BEGIN"),
			batch(
				setName("d6", 7),
				setName("d6", 150),
				s("COMMIT"),
				setName("d6", 390),
				addOrder(8331, 12),
				s("SELECT 1/0"))),
		sc("ROLLBACK inside, then writes committed at Sync",
			query("BEGIN"),
			batch(
				setName("d7", 7),
				setName("d7", 390),
				s("ROLLBACK"),
				setName("d7", 150),
				addOrder(8341, 260))),
		sc("multi-shard statements in a pipeline inside BEGIN",
			query("BEGIN"),
			batch(
				s("UPDATE orders SET qty = coalesce(qty, 0) + 1 WHERE status = 'shipped'"),
				s("UPDATE products SET price = price + 0.5 WHERE product_id = 5"),
				s("SELECT sum(qty), count(*) FROM orders WHERE status = 'shipped'"),
				s("DELETE FROM order_items WHERE line = 2 AND customer_id IN (7, 390)"),
				s("SELECT count(*) FROM order_items"),
				s("COMMIT"))),
		sc("two pipelines in one transaction, ROLLBACK TO between them",
			query("BEGIN"),
			batch(
				setName("d10", 7),
				s("SAVEPOINT s")),
			batch(
				setName("d10", 150),
				dupCustomer(390)),
			query("ROLLBACK TO SAVEPOINT s"),
			batch(
				setName("d10", 390),
				names("7, 150, 390")),
			query("COMMIT")),
		sc("REPEATABLE READ across shards",
			query("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			batch(
				setName("d8", 7),
				setName("d8", 150),
				setName("d8", 390)),
			query("COMMIT")),

		// Found by TestDifferentialPipelinesRandom (seed 20261129): what
		// Postgres checks of a pipeline's own transaction, which is no
		// transaction block, where the proxy ran its part on another
		// shard, on several, or in a block of its own across shards.
		sc("BEGIN with an isolation level after a merged read", batch(
			ordersIn(8501, 8509),
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			s("SAVEPOINT a"),
			dupCustomer(260))),
		sc("BEGIN with an isolation level after a reference write", batch(
			s("UPDATE products SET price = price + 1 WHERE product_id = $1 RETURNING product_id, price", 9),
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			dupCustomer(12))),
		sc("BEGIN DEFERRABLE after a keyed read on another shard than its next", batch(
			names("7"),
			s("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"),
			names("150"))),
		sc("BEGIN with the default level after a merged read", batch(
			ordersIn(8501, 8509),
			s("BEGIN ISOLATION LEVEL READ COMMITTED"),
			setName("f4", 7),
			setName("f4", 150),
			s("COMMIT"))),
		sc("COMMIT in a pipeline starts a transaction that took no snapshot", batch(
			names("7, 150"),
			s("COMMIT"),
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			setName("f5", 390),
			s("COMMIT"))),
		sc("SET LOCAL before and after the pipeline spans shards", batch(
			s("SET LOCAL DateStyle = 'Postgres, MDY'"),
			setName("f6", 12),
			setName("f6", 260),
			names("7, 390, 12"),
			s("SET LOCAL DateStyle = 'SQL, DMY'"),
			s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", 150))),
		sc("SET TRANSACTION and SET CONSTRAINTS after the pipeline spans shards", batch(
			setName("f7", 7),
			setName("f7", 150),
			s("SET TRANSACTION READ WRITE"),
			s("SET CONSTRAINTS ALL IMMEDIATE"),
			s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, 950, 1)", 390))),
		sc("LOCK TABLE after the pipeline spans shards", batch(
			setName("f8", 7),
			setName("f8", 390),
			s("LOCK TABLE products IN SHARE MODE"),
			names("7, 390"))),
		sc("DECLARE CURSOR after the pipeline spans shards", batch(
			setName("f9", 150),
			setName("f9", 390),
			s("DECLARE c CURSOR FOR SELECT customer_id FROM customers WHERE customer_id = 7"),
			names("150, 390"))),
		sc("BEGIN in a pipeline inside a transaction no shard holds yet",
			query("BEGIN"),
			batch(
				s("BEGIN"),
				setName("f10", 7),
				s("BEGIN ISOLATION LEVEL SERIALIZABLE")),
			query("ROLLBACK")),
		sc("BEGIN with another level in a pipeline inside a transaction no shard holds yet",
			query("BEGIN"),
			batch(
				s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
				setName("f11", 7),
				s("SHOW transaction_isolation")),
			query("ROLLBACK")),

		sc("BEGIN with another level in a pipeline inside a transaction that spans shards",
			query("BEGIN"),
			batch(
				setName("f12", 7),
				setName("f12", 150),
				s("BEGIN ISOLATION LEVEL SERIALIZABLE"),
				setName("f12", 390)),
			query("ROLLBACK")),

		// Found by TestDifferentialPipelinesRandom (seed 1).
		sc("an error on one shard skips what follows on the next",
			query("UPDATE customers SET name = 'g1' WHERE customer_id = 390 RETURNING customer_id, name"),
			batch(
				s("SELECT 1/0"),
				addOrder(8601, 12),
				s("SET LOCAL DateStyle = 'SQL, DMY'")),
			batch(ordersIn(8601, 8603))),
		sc("COMMIT AND CHAIN in a pipeline keeps the block open",
			batch(
				ordersIn(8611, 8619),
				setName("g2", 260),
				s("BEGIN"),
				s("COMMIT AND CHAIN"),
				setName("g2", 150),
				names("12")),
			query("ROLLBACK"),
			batch(names("150, 260"))),
		sc("statements prepared in a failed transaction fail",
			query("BEGIN"),
			batch(dupCustomer(7)),
			batch(s("SELECT count(*) FROM customers WHERE name = 'g3'")),
			batch(s("SELECT count(*) FROM customers WHERE name = 'g3'")),
			query("ROLLBACK"),
			batch(s("SELECT count(*) FROM customers WHERE name = 'g3'"))),

		// Found by TestDifferentialPipelinesRandom (seed 2): AND CHAIN
		// of a transaction no shard holds yet.
		sc("COMMIT AND CHAIN before any shard, in a pipeline", batch(
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			s("COMMIT AND CHAIN"),
			s("SHOW transaction_isolation"),
			s("BEGIN"),
			setName("g4", 7),
			s("COMMIT"))),
		sc("COMMIT AND CHAIN before any shard, as Queries",
			query("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			query("COMMIT AND CHAIN"),
			query("SHOW transaction_isolation"),
			query("BEGIN"),
			query("ROLLBACK")),
		sc("COMMIT AND CHAIN of a failed transaction before any shard",
			query("BEGIN"),
			batch(s("SELECT 1/0")),
			batch(
				s("COMMIT AND CHAIN"),
				s("SAVEPOINT a"),
				setName("g5", 150)),
			query("ROLLBACK"),
			batch(names("150"))),
		sc("ROLLBACK AND CHAIN before any shard",
			query("BEGIN ISOLATION LEVEL SERIALIZABLE"),
			query("ROLLBACK AND CHAIN"),
			batch(
				s("SHOW transaction_isolation"),
				setName("g6", 390)),
			query("COMMIT")),

		// Found by TestDifferentialPipelinesRandom (seed 3): the session
		// waited for a reply that never came.
		sc("COMMIT of a block begun before the pipeline, then other shards", batch(
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			setName("g7", 12),
			s("COMMIT"),
			s("COMMIT"),
			s("SET DateStyle = 'German'"),
			setName("g7", 260))),
		sc("COMMIT of a block open before the pipeline, then other shards",
			query("BEGIN"),
			batch(
				setName("g8", 7),
				s("COMMIT"),
				setName("g8", 150),
				setName("g8", 390),
				s("SELECT 1/0")),
			batch(names("7, 150, 390"))),
		sc("ROLLBACK of a failed block in a pipeline, then other shards",
			query("BEGIN"),
			batch(
				setName("g9", 7),
				dupCustomer(7),
				s("ROLLBACK"),
				setName("g9", 150)),
			query("ROLLBACK"),
			batch(names("7, 150"))),
		// Found by TestDifferentialPipelinesRandom (seed 5): a chained
		// COMMIT of a failed block left the new block failed.
		sc("COMMIT AND CHAIN of a block failed in a pipeline, then other shards",
			batch(
				s("BEGIN"),
				setName("h1", 150),
				s("BEGIN ISOLATION LEVEL REPEATABLE READ")),
			batch(
				s("COMMIT AND CHAIN"),
				setName("h1", 7),
				setName("h1", 12)),
			query("COMMIT"),
			batch(names("7, 12, 150"))),
		sc("SET after COMMIT AND CHAIN, then ROLLBACK",
			query("BEGIN"),
			query("SET DateStyle = 'German'"),
			batch(setName("h2", 7)),
			query("COMMIT AND CHAIN"),
			query("SET DateStyle = 'SQL, MDY'"),
			batch(setName("h2", 12)),
			query("ROLLBACK"),
			batch(s("SHOW DateStyle"), names("7, 12"))),
		sc("SET after COMMIT AND CHAIN in a pipeline, then ROLLBACK",
			batch(
				s("BEGIN"),
				s("SET DateStyle = 'German'"),
				setName("h3", 7),
				s("COMMIT AND CHAIN"),
				s("SET DateStyle = 'SQL, MDY'"),
				setName("h3", 12),
				s("ROLLBACK"),
				s("SHOW DateStyle")),
			batch(s("SHOW DateStyle"), names("7, 12"))),
		// Seed 7: the WARNING of a BEGIN with options, refused after a
		// BEGIN in the same pipeline.
		sc("BEGIN, then BEGIN with options, after a write in a pipeline", batch(
			setName("h5", 12),
			s("BEGIN"),
			s("BEGIN ISOLATION LEVEL REPEATABLE READ"),
			setName("h5", 390))),
		sc("SET TRANSACTION before any shard, then COMMIT AND CHAIN",
			query("BEGIN"),
			query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
			query("SET LOCAL DateStyle = 'German'"),
			query("COMMIT AND CHAIN"),
			batch(s("SHOW transaction_isolation"), s("SHOW DateStyle"), setName("h6", 7)),
			query("COMMIT AND CHAIN"),
			batch(s("SHOW transaction_isolation")),
			query("COMMIT"),
			batch(s("SHOW transaction_isolation"), names("7"))),

		// Table-less statements inside BEGIN before keyed statements.
		sc("SELECT 1, current_setting and SHOW before keyed writes",
			query("BEGIN"),
			batch(
				s("SELECT 1"),
				s("SELECT current_setting('DateStyle')"),
				s("SHOW TimeZone"),
				setName("e1", 7),
				setName("e1", 150),
				names("7, 150")),
			batch(s("COMMIT"))),
		sc("BEGIN in the pipeline, then table-less statements", batch(
			s("BEGIN"),
			s("SELECT 1 AS one, 'two' AS two"),
			s("SHOW DateStyle"),
			setName("e2", 390),
			addOrder(8401, 7),
			s("COMMIT"))),
		sc("a table-less statement that fails inside BEGIN",
			query("BEGIN"),
			batch(
				s("SELECT current_setting('DateStyle'), 2 + 2"),
				s("SELECT 1/0"),
				setName("e3", 7)),
			query("ROLLBACK")),
		sc("SET LOCAL, then SHOW, then keyed writes",
			query("BEGIN"),
			batch(
				s("SET LOCAL DateStyle = 'German'"),
				s("SHOW DateStyle"),
				s("SELECT current_setting('DateStyle')"),
				setName("e4", 7),
				setName("e4", 390),
				s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", 7)),
			query("COMMIT"),
			batch(s("SHOW DateStyle"))),
		sc("table-less statements first, outside a transaction", batch(
			s("SELECT 1"),
			s("SHOW TimeZone"),
			setName("e5", 7),
			setName("e5", 150),
			names("7, 150"))),
		sc("table-less pipeline, then a keyed one, in one transaction",
			query("BEGIN"),
			batch(
				s("SHOW DateStyle"),
				s("SELECT 1")),
			batch(
				setName("e6", 150),
				setName("e6", 390)),
			query("ROLLBACK"),
			batch(names("150, 390"))),
	}
}

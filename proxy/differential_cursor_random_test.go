package proxy_test

// The random cursor differential: SQL cursors (cursor.go) in random
// transaction blocks, on an unsharded oracle and through the proxy over
// three shards (two_phase_commit: true), once per strategy. A session is
// one block: BEGIN, then 5 to 15 random steps, then COMMIT or ROLLBACK.
// A step is one of
//
//   - DECLARE of one of three cursor names (c1, c2, "Cur") over a random
//     ordered query: the ordered queries of queries.sql without
//     parameters, and queries written here (GROUP BY, DISTINCT,
//     LIMIT/OFFSET, colocated joins, UNION ALL ... ORDER BY, keyed on one
//     or two customers' shards, a reference table, no rows, and queries
//     that fail at run time with a division by zero, on the shards or in
//     the proxy's own evaluation of the select list);
//   - FETCH n / ALL / NEXT and MOVE n / ALL / NEXT, in their several
//     spellings, from a random cursor (open, closed, never declared,
//     named with another case);
//   - CLOSE name, CLOSE ALL;
//   - SAVEPOINT, ROLLBACK TO, RELEASE (two savepoint names);
//   - keyed and keyless writes (UPDATE, DELETE, INSERT, with and without
//     RETURNING) to orders, customers, order_items and events;
//   - plain SELECTs of the query pool, and of a query that fails.
//
// Each step goes through a random protocol: simple Query, extended with
// text results, extended with binary results. It must give the oracle's
// outcome (columns, tag, rows in order, or the same SQLSTATE) and leave
// the same transaction status. Only forward reads are generated, so no
// documented refusal (SCROLL, backward FETCH, FETCH ABSOLUTE/RELATIVE/0,
// WITH HOLD) may occur: a 0A000 from the proxy is a difference like any
// other. After each session the tables it wrote must equal the oracle's
// (every row on its key's shard), and no transaction may be left on the
// shards.
//
// Every step also runs on a second oracle holding the rows in reverse
// physical order: a step whose two oracle answers differ has no single
// right answer, and the generator is wrong. When the oracle's transaction
// has failed, the next step is more often a ROLLBACK TO, so that sessions
// go on past their errors; the oracle's status steers the generator, so a
// seed still gives one sequence.
//
// Before its random sessions, the range strategy (customers 7, 150 and
// 390 on s0, s1 and s2) runs fixed sessions (cursorRegressions), the
// reduced form of each difference this test found. A difference ends
// its session; the next one starts on a new connection.
//
// DIFF_CURSOR_SEED=S runs another sequence, DIFF_CURSOR_N=N N sessions
// per strategy; DIFF_CURSOR_SHOW=1 logs every step.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	cursorRandomSessions = 60
	cursorRandomSeed     = 20260612
)

// cursorNames are the cursors in play. cursorRefs adds spellings of them
// and names of cursors never declared: C1 is c1; cur is not "Cur".
var (
	cursorNames = []string{"c1", "c2", `"Cur"`}
	cursorRefs  = []string{"C1", "cur", "nosuch"}
)

// cursorKeys are customer ids the keyed queries and writes use.
var cursorKeys = []int{1, 2, 3, 7, 12, 150, 151, 260, 261, 300, 390, 399, 400}

// cursorQueries are the queries written for this test, all with a total
// ORDER BY. %K is replaced by one to three customer ids, %k by one.
var cursorQueries = []string{
	"SELECT order_id, customer_id, total FROM orders ORDER BY order_id",
	"SELECT customer_id, count(*) AS n, sum(total) AS s FROM orders GROUP BY customer_id ORDER BY customer_id",
	"SELECT customer_id, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC, 1",
	"SELECT status, count(*), min(order_id), max(total) FROM orders GROUP BY status ORDER BY status NULLS FIRST",
	"SELECT DISTINCT status FROM orders ORDER BY status",
	"SELECT DISTINCT customer_id FROM order_items ORDER BY customer_id DESC",
	"SELECT order_id, total FROM orders ORDER BY total DESC NULLS LAST, order_id LIMIT 100 OFFSET 20",
	"SELECT order_id, total FROM orders ORDER BY order_id DESC LIMIT 70",
	"SELECT order_id, customer_id, total FROM orders WHERE customer_id IN (%K) ORDER BY order_id",
	"SELECT order_id, total FROM orders WHERE customer_id = %k ORDER BY order_id",
	"SELECT status, count(*), sum(total) FROM orders WHERE customer_id IN (%K) GROUP BY status ORDER BY status NULLS FIRST",
	"SELECT order_id, total FROM orders WHERE customer_id IN (%K) ORDER BY total DESC NULLS LAST, order_id LIMIT 10",
	"SELECT customer_id, order_id, total FROM orders WHERE customer_id = %k ORDER BY order_id LIMIT 5 OFFSET 2",
	"SELECT o.order_id, c.name, o.total FROM orders o JOIN customers c ON c.customer_id = o.customer_id ORDER BY o.order_id",
	"SELECT o.order_id, c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id WHERE o.customer_id IN (%K) ORDER BY o.order_id",
	"SELECT i.customer_id, i.order_id, i.line, i.price FROM order_items i JOIN orders o ON o.customer_id = i.customer_id AND o.order_id = i.order_id WHERE o.total > 500 ORDER BY i.order_id, i.line",
	"SELECT customer_id, order_id FROM orders WHERE total < 50 UNION ALL SELECT customer_id, order_id FROM order_items WHERE price > 400 ORDER BY 1, 2",
	"SELECT customer_id, order_id FROM orders WHERE customer_id IN (%K) UNION ALL SELECT customer_id, order_id FROM order_items WHERE customer_id IN (%K) ORDER BY 1 DESC, 2",
	"SELECT stream, seq, kind, amount FROM events ORDER BY stream, seq",
	"SELECT kind, count(*), sum(amount) FROM events GROUP BY kind ORDER BY kind NULLS FIRST",
	"SELECT stream, seq, amount FROM events WHERE stream = 'acct-1' ORDER BY seq",
	"SELECT customer_id, name, credit FROM customers ORDER BY customer_id",
	"SELECT customer_id, name FROM customers WHERE customer_id IN (%K) ORDER BY customer_id",
	"SELECT order_id FROM orders WHERE total < -1 ORDER BY order_id",
	"SELECT product_id, name, price FROM products ORDER BY product_id",
	"SELECT order_id, row_number() OVER (ORDER BY order_id) FROM orders WHERE qty = 5 ORDER BY order_id",
}

// cursorFailing are queries that fail at run time (22012) on some rows,
// the first on the shards, the last in the proxy's evaluation of the
// select list over merged groups. A sort under them makes every server
// evaluate them on all rows at the first FETCH.
var cursorFailing = []string{
	"SELECT order_id, 1000 / (qty - 20) AS r FROM orders ORDER BY order_id",
	"SELECT order_id, 1000 / (qty - 20) AS r FROM orders WHERE customer_id IN (%K) ORDER BY order_id",
	"SELECT status, count(*) / (count(*) - count(*)) AS boom FROM orders GROUP BY status ORDER BY status",
}

var cursorDeclares = []string{
	"DECLARE %s CURSOR FOR %s",
	"DECLARE %s NO SCROLL CURSOR FOR %s",
	"DECLARE %s BINARY CURSOR FOR %s",
	"DECLARE %s CURSOR WITHOUT HOLD FOR %s",
	"DECLARE %s INSENSITIVE NO SCROLL CURSOR FOR %s",
	"DECLARE %s BINARY NO SCROLL CURSOR WITHOUT HOLD FOR %s",
}

// cursorCounts are FETCH and MOVE counts: around the proxy's first batch
// (64 rows) and its doubling.
var cursorCounts = []int{1, 2, 3, 5, 10, 63, 64, 65, 100, 129, 500, 5000}

// cursorStep is one statement of a session.
type cursorStep struct {
	sql     string
	mode    string
	ordered bool // compare rows in order (RETURNING is not)
	// refused: the proxy must refuse the step with 0A000 and a hint (a
	// documented refusal) and fail the transaction; the oracle runs it.
	refused bool
	writes  []string
	// What the generator learns from the oracle's outcome: op is 'D'
	// (DECLARE name), 'C' (CLOSE name), 'A' (CLOSE ALL), 'S' (SAVEPOINT
	// name), 'B' (ROLLBACK TO name), 'R' (RELEASE name).
	op   byte
	name string
}

// cursorGen generates one strategy's sessions. It follows the oracle's
// outcomes (observe), so that most steps name cursors and savepoints
// that exist.
type cursorGen struct {
	rng    *rand.Rand
	pool   []string       // the ordered queries of queries.sql, without parameters
	serial int            // makes inserted keys unique
	sps    []string       // the session's savepoints, oldest first
	open   map[string]int // the session's open cursors -> savepoints when declared
}

var cursorModes = []string{"simple", "extended", "binary"}

func (g *cursorGen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *cursorGen) keys(n int) string {
	ks := slices.Clone(cursorKeys)
	g.rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	var s []string
	for _, k := range ks[:n] {
		s = append(s, strconv.Itoa(k))
	}
	return strings.Join(s, ", ")
}

func (g *cursorGen) fill(q string) string {
	for strings.Contains(q, "%K") {
		q = strings.Replace(q, "%K", g.keys(1+g.rng.IntN(3)), 1)
	}
	for strings.Contains(q, "%k") {
		q = strings.Replace(q, "%k", g.keys(1), 1)
	}
	return q
}

// query is a random ordered query; failing ones one time in fail.
func (g *cursorGen) query(fail int) string {
	switch {
	case g.rng.IntN(fail) == 0:
		return g.fill(g.pick(cursorFailing))
	case g.rng.IntN(5) < 2:
		return g.pick(g.pool)
	}
	return g.fill(g.pick(cursorQueries))
}

// cursorCanonical is the name Postgres gives a cursor named as SQL.
func cursorCanonical(name string) string {
	if strings.HasPrefix(name, `"`) {
		return strings.Trim(name, `"`)
	}
	return strings.ToLower(name)
}

// openNames are the open cursors, as SQL, in a fixed order.
func (g *cursorGen) openNames() []string {
	var out []string
	for _, n := range cursorNames {
		if _, ok := g.open[cursorCanonical(n)]; ok {
			out = append(out, n)
		}
	}
	return out
}

// ref names a cursor: mostly an open one.
func (g *cursorGen) ref() string {
	open := g.openNames()
	switch r := g.rng.IntN(20); {
	case r == 0:
		return g.pick(cursorRefs)
	case r < 3 || len(open) == 0:
		return g.pick(cursorNames)
	}
	return g.pick(open)
}

// sp names a savepoint: mostly one that exists.
func (g *cursorGen) sp() string {
	if len(g.sps) == 0 || g.rng.IntN(10) == 0 {
		return g.pick([]string{"sp", "sp2"})
	}
	return g.pick(g.sps)
}

func (g *cursorGen) count() int { return cursorCounts[g.rng.IntN(len(cursorCounts))] }

func (g *cursorGen) write() cursorStep {
	g.serial++
	var sql string
	var tables []string
	switch g.rng.IntN(10) {
	case 0:
		sql, tables = fmt.Sprintf("UPDATE orders SET total = total + 1 WHERE customer_id IN (%s)", g.keys(1+g.rng.IntN(3))), []string{"orders"}
	case 1:
		sql, tables = fmt.Sprintf("UPDATE orders SET total = total + 1 WHERE customer_id IN (%s) RETURNING order_id, total", g.keys(1+g.rng.IntN(2))), []string{"orders"}
	case 2:
		sql, tables = fmt.Sprintf("UPDATE orders SET total = total - 2, status = 'cursor' WHERE qty = %d", 1+g.rng.IntN(19)), []string{"orders"}
	case 3:
		sql, tables = fmt.Sprintf("UPDATE customers SET name = name || '+' WHERE customer_id = %s", g.keys(1)), []string{"customers"}
	case 4:
		sql, tables = "UPDATE customers SET credit = credit - 1 WHERE vip", []string{"customers"}
	case 5:
		sql, tables = fmt.Sprintf("DELETE FROM order_items WHERE customer_id IN (%s) AND line = 3", g.keys(1+g.rng.IntN(3))), []string{"order_items"}
	case 6:
		sql, tables = fmt.Sprintf("INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES (%d, %s, 'cursor', 1.50, 1), (%d, %s, 'cursor', 2.50, 2)",
			100000+2*g.serial, g.keys(1), 100001+2*g.serial, g.keys(1)), []string{"orders"}
	case 7:
		sql, tables = fmt.Sprintf("INSERT INTO events (stream, seq, event_id, customer_id, kind, amount) VALUES ('cursor-%d', %d, '%08x-0000-4000-8000-%012x', %s, 'cur', 1.5) RETURNING stream, seq",
			g.rng.IntN(5), g.serial, g.rng.Uint32(), g.serial, g.keys(1)), []string{"events"}
	case 8:
		sql, tables = "UPDATE events SET amount = amount + 1 WHERE stream = 'acct-1'", []string{"events"}
	default:
		sql, tables = fmt.Sprintf("UPDATE orders SET note = 'cursor' WHERE customer_id = %s AND order_id %% 7 = %d", g.keys(1), g.rng.IntN(7)), []string{"orders"}
	}
	return cursorStep{sql: sql, writes: tables}
}

// begin starts a session.
func (g *cursorGen) begin() cursorStep {
	g.sps, g.open = nil, map[string]int{}
	return cursorStep{sql: g.pick([]string{"BEGIN", "BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL READ COMMITTED"}), mode: g.pick(cursorModes)}
}

// end ends a session.
func (g *cursorGen) end() cursorStep {
	return cursorStep{sql: g.pick([]string{"COMMIT", "ROLLBACK"}), mode: g.pick(cursorModes)}
}

// next is a random step; status is the oracle's transaction status.
func (g *cursorGen) next(status byte) cursorStep {
	s := g.step(status)
	s.mode = g.pick(cursorModes)
	return s
}

func (g *cursorGen) step(status byte) cursorStep {
	if status == 'E' && len(g.sps) > 0 && g.rng.IntN(10) < 7 {
		sp := g.sp()
		return cursorStep{sql: "ROLLBACK TO SAVEPOINT " + sp, op: 'B', name: sp}
	}
	r := g.rng.IntN(100)
	if len(g.open) == 0 && g.rng.IntN(2) == 0 {
		r = 0 // most often, a cursor first
	}
	switch {
	case r < 18:
		name := g.pick(cursorNames)
		for i := 0; i < 3 && g.open != nil; i++ {
			if _, ok := g.open[cursorCanonical(name)]; !ok {
				break
			}
			name = g.pick(cursorNames) // mostly a name not in use
		}
		return cursorStep{sql: fmt.Sprintf(g.pick(cursorDeclares), name, g.query(10)), ordered: true, op: 'D', name: name}
	case r < 56:
		n, c := g.count(), g.ref()
		forms := []string{"FETCH %[1]d FROM %[2]s", "FETCH FORWARD %[1]d IN %[2]s", "FETCH %[1]d %[2]s", "FETCH ALL FROM %[2]s",
			"FETCH FORWARD ALL FROM %[2]s", "FETCH NEXT FROM %[2]s", "FETCH %[2]s", "FETCH FROM %[2]s", "FETCH FORWARD %[2]s"}
		return cursorStep{sql: fmt.Sprintf(g.pick(forms), n, c), ordered: true}
	case r < 62:
		n, c := g.count(), g.ref()
		forms := []string{"MOVE %[1]d FROM %[2]s", "MOVE FORWARD %[1]d IN %[2]s", "MOVE ALL IN %[2]s", "MOVE NEXT FROM %[2]s", "MOVE %[2]s"}
		return cursorStep{sql: fmt.Sprintf(g.pick(forms), n, c)}
	case r < 66:
		c := g.ref()
		return cursorStep{sql: "CLOSE " + c, op: 'C', name: c}
	case r < 68:
		return cursorStep{sql: "CLOSE ALL", op: 'A'}
	case r < 75:
		sp := g.pick([]string{"sp", "sp", "sp2"})
		return cursorStep{sql: "SAVEPOINT " + sp, op: 'S', name: sp}
	case r < 79:
		sp := g.sp()
		return cursorStep{sql: g.pick([]string{"ROLLBACK TO ", "ROLLBACK TO SAVEPOINT "}) + sp, op: 'B', name: sp}
	case r < 82:
		sp := g.sp()
		return cursorStep{sql: g.pick([]string{"RELEASE ", "RELEASE SAVEPOINT "}) + sp, op: 'R', name: sp}
	case r < 92:
		return g.write()
	}
	return cursorStep{sql: g.query(12), ordered: true}
}

// observe follows the oracle's outcome of s (err nil: it succeeded), as
// Postgres keeps cursors and savepoints.
func (g *cursorGen) observe(s cursorStep, err error) {
	if err != nil || g.open == nil {
		return
	}
	last := -1
	for i := len(g.sps) - 1; i >= 0; i-- {
		if g.sps[i] == s.name {
			last = i
			break
		}
	}
	switch s.op {
	case 'D':
		g.open[cursorCanonical(s.name)] = len(g.sps)
	case 'C':
		delete(g.open, cursorCanonical(s.name))
	case 'A':
		clear(g.open)
	case 'S':
		g.sps = append(g.sps, s.name)
	case 'B', 'R':
		if last < 0 {
			return
		}
		keep := last + 1 // ROLLBACK TO keeps the savepoint
		if s.op == 'R' {
			keep = last
		}
		g.sps = g.sps[:keep]
		for name, depth := range g.open {
			switch {
			case depth <= last:
			case s.op == 'R':
				g.open[name] = last
			default:
				delete(g.open, name) // declared after the savepoint
			}
		}
	}
}

// cursorStats are one strategy's outcomes.
type cursorStats struct {
	sessions, regressions, committed  int
	steps, equal, failedAlike         int
	fetches, fetchRows, fetchesFailed int // FETCHes compared, rows they returned, FETCHes that failed alike
	declares, savepoints, writes      int // DECLAREs, savepoint statements, writes that ran alike
	differ, tablesDiffer, leftovers   int
	hangs, refused                    int            // refused: documented refusals (cursorStep.refused)
	codes                             map[string]int // SQLSTATEs both sides gave
}

func cursorRandomSettings() (n int, seed uint64) {
	n, seed = cursorRandomSessions, cursorRandomSeed
	if v, err := strconv.Atoi(os.Getenv("DIFF_CURSOR_N")); err == nil {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("DIFF_CURSOR_SEED"), 10, 64); err == nil {
		seed = v
	}
	return n, seed
}

// cursorRegressions are fixed sessions for what this test found, run
// before the random ones with the range strategy (customer 7 on s0, 150
// on s1, 390 on s2). Each step names its protocol.
var cursorRegressions = [][]cursorStep{
	// Two one-shard cursors of one name on different shards: Postgres
	// refuses the second DECLARE (42P03); the proxy declared it on the
	// other shard and forgot the first.
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id FROM orders WHERE customer_id = 390 ORDER BY order_id"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id FROM orders WHERE customer_id = 7 ORDER BY order_id"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "ROLLBACK"}},
	// The same with a cursor across shards (s0, s1) and a one-shard one
	// (s2) of the same name, both ways round.
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id FROM orders WHERE customer_id = 390 ORDER BY order_id", mode: "extended"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "ROLLBACK"}},
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id FROM orders WHERE customer_id = 390 ORDER BY order_id"},
		{sql: "DECLARE c CURSOR FOR SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "ROLLBACK"}},
	// A shard's error in a transaction on that one shard, then a
	// statement across shards (25P02, right), then ROLLBACK TO: the proxy
	// answered 25P01 "can only be used in transaction blocks" with status
	// idle, and from then on 25P02 to everything, ROLLBACK included.
	{{sql: "BEGIN"}, {sql: "SAVEPOINT sp"},
		{sql: "SELECT count(*) FROM orders WHERE customer_id = 7 AND 1/0 = 1"},
		{sql: "SELECT count(*) FROM orders"},
		{sql: "ROLLBACK TO SAVEPOINT sp"},
		{sql: "SELECT count(*) FROM orders"},
		{sql: "ROLLBACK"}},
	// A positioned write through a one-shard cursor: Postgres updates
	// (deletes) the row the cursor is on; the proxy answered 34000
	// "cursor does not exist" (through a cursor across shards, 24000).
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id, total FROM orders WHERE customer_id = 150 AND order_id = 1241"},
		{sql: "FETCH 1 FROM c", ordered: true},
		{sql: "UPDATE orders SET note = 'current' WHERE CURRENT OF c", writes: []string{"orders"}},
		{sql: "SELECT order_id, note FROM orders WHERE note = 'current' ORDER BY order_id", ordered: true},
		{sql: "ROLLBACK"}},
	// A setting that changes how values are written, between FETCHes of
	// a cursor across shards: Postgres writes every row it FETCHes after
	// the SET in the new style; the proxy sent the rows of the batch it
	// had already read from the shards in the old one. Now such a SET is
	// refused while the cursor has rows read ahead (0A000, documented);
	// before its first FETCH, or after CLOSE, it works.
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id, created_at FROM orders ORDER BY order_id"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "SET TimeZone = 'America/St_Johns'", refused: true},
		{sql: "ROLLBACK"}},
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id, created_at FROM orders ORDER BY order_id"},
		{sql: "SET TimeZone = 'America/St_Johns'"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "SET DateStyle = 'SQL, DMY'", mode: "extended", refused: true},
		{sql: "ROLLBACK"}},
	{{sql: "BEGIN"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id, created_at FROM orders ORDER BY order_id"},
		{sql: "FETCH 2 FROM c", ordered: true},
		{sql: "CLOSE c"},
		{sql: "SET LOCAL DateStyle = 'SQL, DMY'", mode: "extended"},
		{sql: "DECLARE c CURSOR FOR SELECT order_id, created_at FROM orders ORDER BY order_id"},
		{sql: "FETCH 3 FROM c", ordered: true},
		{sql: "ROLLBACK"}},
	// ROLLBACK TO in the extended protocol after an error before the
	// transaction used any shard: 25P02 where Postgres rolls back (and
	// 3B001 for a savepoint that does not exist).
	{{sql: "BEGIN"}, {sql: "SAVEPOINT sp"}, {sql: "SELECT 1/0"},
		{sql: "ROLLBACK TO SAVEPOINT sp", mode: "extended"},
		{sql: "SELECT 1"},
		{sql: "ROLLBACK"}},
}

var cursorFirstWord = regexp.MustCompile(`^\s*(\w+)`)

func TestDifferentialCursorsRandom(t *testing.T) {
	n, seed := cursorRandomSettings()
	t.Logf("seed %d, %d sessions per strategy (DIFF_CURSOR_SEED, DIFF_CURSOR_N)", seed, n)
	show := os.Getenv("DIFF_CURSOR_SHOW") != ""
	var pool []string
	for _, q := range readSQLFile(t, diffDir+"queries.sql") {
		w := strings.ToUpper(cursorFirstWord.FindString(q.sql))
		if q.ordered && len(q.args) == 0 && (strings.TrimSpace(w) == "SELECT" || strings.TrimSpace(w) == "WITH") {
			pool = append(pool, q.sql)
		}
	}
	if len(pool) < 100 {
		t.Fatalf("%d ordered queries without parameters in queries.sql; want at least 100", len(pool))
	}
	schema := readSQLFile(t, diffDir+"schema.sql")
	data := genDiffData()
	start := time.Now()
	stats := make([]*cursorStats, len(diffStrategies))
	t.Run("group", func(t *testing.T) {
		var mu sync.Mutex
		for si, st := range diffStrategies {
			t.Run(st.name, func(t *testing.T) {
				t.Parallel()
				pc, oracle, reader := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_random_", schema, data)
				reversed := startOracle(t, "cursor_random_rev_"+st.name, schema, reverseRows(data))
				c := &cursorStats{codes: map[string]int{}}
				mu.Lock()
				stats[si] = c
				mu.Unlock()
				began := time.Now()
				r := &cursorRun{t: t, pc: pc, oracle: oracle, reversed: reversed, reader: reader, c: c, show: show}
				if st.name == "range" {
					for i, steps := range cursorRegressions {
						c.regressions++
						r.run(fmt.Sprintf("regression %d", i+1), steps, nil)
					}
				}
				g := &cursorGen{rng: rand.New(rand.NewPCG(seed, uint64(si))), pool: pool}
				for i := 0; i < n && c.hangs < 2 && c.differ < 20; i++ {
					r.random(fmt.Sprintf("session %d", i+1), g)
				}
				if c.hangs >= 2 || c.differ >= 20 {
					t.Errorf("%s: stopped after %d sessions: %d differences, %d hangs", st.name, c.sessions, c.differ, c.hangs)
				}
				t.Logf("%s: %d sessions (%d fixed, %d committed) in %v, %d steps: %d equal the oracle, %d failed alike, %d differ; %d FETCHes compared (%d rows, %d failed alike), %d DECLAREs, %d savepoint statements, %d writes ran alike; %d sessions left the tables differing, %d left transactions on the shards",
					st.name, c.sessions, c.regressions, c.committed, time.Since(began).Round(time.Millisecond), c.steps, c.equal, c.failedAlike, c.differ,
					c.fetches, c.fetchRows, c.fetchesFailed, c.declares, c.savepoints, c.writes, c.tablesDiffer, c.leftovers)
				var codes []string
				for _, code := range slices.Sorted(maps.Keys(c.codes)) {
					codes = append(codes, fmt.Sprintf("%s×%d", code, c.codes[code]))
				}
				t.Logf("%s: SQLSTATEs both sides gave: %s", st.name, strings.Join(codes, " "))
				// Enough of each kind of step ran, and ran alike, that the
				// test cannot pass by comparing errors alone.
				if c.sessions < n || c.equal < c.steps/2 || c.failedAlike < n/3 || c.fetches < n/2 || c.fetchRows < 15*n ||
					c.fetchesFailed < n/20 || c.declares < 3*n/4 || c.savepoints < n/6 || c.writes < n/8 || c.codes["22012"] < 1 || c.codes["34000"] < n/30 {
					t.Errorf("%s: too little compared: %+v", st.name, *c)
				}
			})
		}
	})
	for si, st := range diffStrategies {
		if c := stats[si]; c != nil {
			t.Logf("%-10s sessions %3d, steps %4d, equal %4d, failed alike %3d, differ %2d, FETCHes %3d (rows %5d), tables differed %d, leftovers %d",
				st.name, c.sessions, c.steps, c.equal, c.failedAlike, c.differ, c.fetches, c.fetchRows, c.tablesDiffer, c.leftovers)
		}
	}
	t.Logf("all strategies in %v", time.Since(start).Round(time.Millisecond))
}

// cursorRun runs one strategy's sessions.
type cursorRun struct {
	t                *testing.T
	pc               *proxyConn
	oracle, reversed *pgconn.PgConn
	reader           *tableReader
	c                *cursorStats
	show             bool
	log              []string // the session so far
	written          []writeTable
	observe          func(cursorStep, error) // told the oracle's outcome of each step
}

// random runs one random session, drawing its steps one by one (the
// oracle's status steers them).
func (r *cursorRun) random(name string, g *cursorGen) {
	r.observe = g.observe
	defer func() { r.observe = nil }()
	steps := 5 + g.rng.IntN(11)
	r.run(name, nil, func(i int) (cursorStep, bool) {
		switch {
		case i == 0:
			return g.begin(), true
		case r.oracle.TxStatus() == 'I':
			return cursorStep{}, false // ended early
		case i <= steps:
			if r.oracle.TxStatus() == 'E' && len(g.sps) == 0 && g.rng.IntN(2) == 0 {
				return g.end(), true // nothing left to do in it
			}
			return g.next(r.oracle.TxStatus()), true
		case i == steps+1:
			return g.end(), true
		}
		return cursorStep{}, false
	})
}

// run runs a session: steps, or those next gives until it says no more.
// It stops at the first difference, rolls back both sides, and compares
// the tables the session wrote.
func (r *cursorRun) run(name string, steps []cursorStep, next func(int) (cursorStep, bool)) {
	t, c := r.t, r.c
	t.Helper()
	c.sessions++
	r.log = r.log[:0]
	r.written = nil
	for i := 0; ; i++ {
		var s cursorStep
		if next != nil {
			var ok bool
			if s, ok = next(i); !ok {
				break
			}
		} else {
			if i == len(steps) {
				break
			}
			if s = steps[i]; s.mode == "" {
				s.mode = "simple"
			}
		}
		if !r.step(name, s) {
			// A fresh connection for the next session: the difference
			// may have left this one in any state.
			r.pc.get(t).Close(context.Background())
			break
		}
		if s.sql == "COMMIT" && r.oracle.TxStatus() == 'I' {
			c.committed++
		}
	}
	r.endAll(name)
	if bad := r.reader.compare(t, r.written); len(bad) > 0 {
		t.Errorf("%s: the tables differ from the oracle's, or hold misplaced rows, after it:\n%s", name, strings.Join(r.log, "\n"))
		c.tablesDiffer++
		r.reader.resync(t, bad)
		if len(r.reader.compare(t, bad)) > 0 {
			t.Fatalf("%s: the tables still differ after copying the oracle's rows through the proxy", name)
		}
	}
	if l := multiLeftovers(t, r.reader); l != "" {
		t.Errorf("%s: transactions left on the shards: %s\n%s", name, l, strings.Join(r.log, "\n"))
		c.leftovers++
	}
}

// step runs one statement on both oracles and through the proxy and
// compares them; false ends the session.
func (r *cursorRun) step(name string, s cursorStep) bool {
	t, c := r.t, r.c
	t.Helper()
	q := sqlQuery{sql: s.sql, ordered: s.ordered}
	want := runStatement(r.oracle, s.mode, q)
	alt := runStatement(r.reversed, s.mode, q)
	line := fmt.Sprintf("[%s] %s", s.mode, s.sql)
	switch {
	case sqlState(want.err) != sqlState(alt.err) || (want.err == nil) != (alt.err == nil):
		t.Errorf("%s: the oracles disagree (%s / %s): the step has no single right answer (fix the generator)\n%s\n%s",
			name, errText(want.err), errText(alt.err), strings.Join(r.log, "\n"), line)
		return false
	case want.err == nil && diffResults(want, alt, s.ordered) != "":
		t.Errorf("%s: the oracles disagree: %s: the step has no single right answer (fix the generator)\n%s\n%s",
			name, diffResults(want, alt, s.ordered), strings.Join(r.log, "\n"), line)
		return false
	case r.oracle.TxStatus() != r.reversed.TxStatus():
		t.Errorf("%s: the oracles' transaction statuses differ\n%s\n%s", name, strings.Join(r.log, "\n"), line)
		return false
	}
	if r.observe != nil {
		r.observe(s, want.err)
	}
	got := runStatement(r.pc.get(t), s.mode, q)
	c.steps++
	for _, tb := range s.writes {
		if i := slices.IndexFunc(writeTables, func(w writeTable) bool { return w.name == tb }); i >= 0 &&
			!slices.ContainsFunc(r.written, func(w writeTable) bool { return w.name == tb }) {
			r.written = append(r.written, writeTables[i])
		}
	}
	verb := strings.ToUpper(strings.TrimSpace(cursorFirstWord.FindString(s.sql)))
	outcome, ok := "", true
	var refusal *pgconn.PgError
	switch {
	case pgconn.Timeout(got.err) || errors.Is(got.err, context.DeadlineExceeded):
		c.hangs++
		outcome, ok = "proxy HANG: "+errText(got.err), false
	case s.refused:
		if !errors.As(got.err, &refusal) || refusal.Code != "0A000" || refusal.Hint == "" || want.err != nil || r.pc.c.TxStatus() != 'E' {
			outcome, ok = fmt.Sprintf("NOT REFUSED: proxy %s (status %c), oracle %s", errText(got.err), r.pc.c.TxStatus(), errText(want.err)), false
			break
		}
		c.refused++
		outcome = "refused as documented: " + errText(got.err)
	case want.err != nil || got.err != nil:
		if sqlState(want.err) != sqlState(got.err) || want.err == nil || got.err == nil {
			outcome, ok = fmt.Sprintf("DIFFERENT ERRORS: proxy %s, oracle %s", errText(got.err), errText(want.err)), false
			break
		}
		c.failedAlike++
		c.codes[sqlState(want.err)]++
		if verb == "FETCH" {
			c.fetchesFailed++
		}
		outcome = "failed alike: " + errText(want.err)
	default:
		if d := diffResults(want, got, s.ordered); d != "" {
			outcome, ok = "WRONG RESULT: "+d, false
			break
		}
		c.equal++
		switch verb {
		case "FETCH":
			c.fetches++
			c.fetchRows += len(want.rows)
		case "DECLARE":
			c.declares++
		case "SAVEPOINT", "RELEASE":
			c.savepoints++
		case "ROLLBACK":
			if strings.Contains(strings.ToUpper(s.sql), " TO ") {
				c.savepoints++
			}
		case "UPDATE", "INSERT", "DELETE":
			c.writes++
		}
		outcome = fmt.Sprintf("equal: %s (%d rows)", want.tag, len(want.rows))
	}
	if ok && !s.refused {
		if r.pc.c.IsClosed() {
			outcome, ok = "the proxy closed the connection", false
		} else if ps, os := r.pc.c.TxStatus(), r.oracle.TxStatus(); ps != os {
			outcome, ok = fmt.Sprintf("%s; TRANSACTION STATUS %c, oracle %c", outcome, ps, os), false
		}
	}
	r.log = append(r.log, line+"  -> "+outcome)
	if r.show {
		t.Logf("%s: %s -> %s", name, line, outcome)
	}
	if !ok {
		c.differ++
		t.Errorf("%s: the proxy differs from the oracle at its last step:\n%s", name, strings.Join(r.log, "\n"))
	}
	return ok
}

// endAll rolls back whatever the session left open, on the proxy and
// both oracles.
func (r *cursorRun) endAll(name string) {
	t := r.t
	t.Helper()
	for side, conn := range map[string]*pgconn.PgConn{"oracle": r.oracle, "reversed oracle": r.reversed, "proxy": r.pc.get(t)} {
		if conn.TxStatus() == 'I' {
			continue
		}
		if res := runQuery(conn, "simple", sqlQuery{sql: "ROLLBACK"}); res.err != nil {
			t.Errorf("%s: ROLLBACK on the %s: %s", name, side, describeErr(res.err))
		}
		if conn.TxStatus() != 'I' {
			t.Errorf("%s: the %s is not idle after ROLLBACK", name, side)
		}
	}
	r.pc.checkUsable(t)
}

package proxy_test

// SQL cursors through the proxy (cursor.go), against an unsharded oracle:
//
//   - every query of the read differential (queries.sql) declared as a
//     cursor in a transaction and read with FETCHes of varying sizes, in
//     the simple protocol and in the extended one (binary results; the
//     queries with parameters declare with them), must return the rows the
//     oracle returns for the query itself; writes the transaction makes
//     between FETCHes must not show (the cursor reads as of DECLARE);
//   - scripted blocks (savepoints, CLOSE, errors, refusals, a one-shard
//     cursor in a transaction spanning shards) must give the oracle's
//     outcome statement by statement;
//   - psql with FETCH_COUNT (it reads every SELECT through a cursor) must
//     print what it prints against the oracle.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// cursorSizes are the FETCH counts a cursor is read with, cycled; 0 is
// FETCH ALL. (readCursor runs the writes between FETCHes after DECLARE for
// an even number of sizes, after the first FETCH for an odd one.)
var cursorSizes = [][]int{{1, 2, 50}, {3}, {1000}, {7, 0}, {0}, {2, 5}}

// readCursor declares q (with its parameters) as cursor c in the open
// transaction of conn and FETCHes it in mode ("simple", or "binary":
// extended protocol, binary results) with the counts of sizes until a
// FETCH returns fewer rows than it asked for. between runs after DECLARE
// or after the first FETCH. It returns the rows read as one result tagged like the query's,
// or the first error.
func readCursor(conn *pgconn.PgConn, mode string, q sqlQuery, sizes []int, between func() error) qresult {
	declare := sqlQuery{sql: "DECLARE c NO SCROLL CURSOR FOR " + strings.TrimSuffix(strings.TrimSpace(q.sql), ";"), args: q.args}
	dmode := mode
	if len(q.args) > 0 {
		dmode = "extended"
	}
	if r := runStatement(conn, dmode, declare); r.err != nil {
		return r
	}
	if between != nil && len(sizes)%2 == 0 {
		// Before the first FETCH: the shards' cursors must already hold
		// their snapshots.
		if err := between(); err != nil {
			return qresult{err: fmt.Errorf("after DECLARE: %w", err)}
		}
		between = nil
	}
	var all qresult
	for i := 0; ; i++ {
		n := sizes[i%len(sizes)]
		fetch := fmt.Sprintf("FETCH %d FROM c", n)
		if n == 0 {
			fetch = "FETCH ALL FROM c"
		}
		r := runQuery(conn, mode, sqlQuery{sql: fetch})
		if r.err != nil {
			return r
		}
		if i == 0 {
			all.cols = r.cols
			if between != nil {
				if err := between(); err != nil {
					return qresult{err: fmt.Errorf("between FETCHes: %w", err)}
				}
			}
		} else if d := diffResults(qresult{cols: all.cols}, qresult{cols: r.cols}, false); strings.Contains(d, "columns") && len(r.rows) > 0 {
			// (pgconn keeps no description for a FETCH of no rows, from Postgres as from the proxy.)
			return qresult{err: fmt.Errorf("FETCH %d describes %v, the first %v", i+1, r.cols, all.cols)}
		}
		if !strings.HasPrefix(r.tag, "FETCH ") {
			return qresult{err: fmt.Errorf("FETCH tag %q", r.tag)}
		}
		all.rows = append(all.rows, r.rows...)
		if n == 0 || len(r.rows) < n {
			break
		}
	}
	all.tag = fmt.Sprintf("SELECT %d", len(all.rows))
	return all
}

func TestCursorsDifferential(t *testing.T) {
	queries := readSQLFile(t, diffDir+"queries.sql")
	schema := readSQLFile(t, diffDir+"schema.sql")
	data := genDiffData()
	for _, st := range diffStrategies {
		t.Run(st.name, func(t *testing.T) {
			pc, oracle, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_", schema, data)
			// Writes between FETCHes, on every shard: the cursor must not see them.
			writes := []string{
				"UPDATE orders SET total = total + 1000, status = 'moved' WHERE customer_id IN (1, 7, 150, 390)",
				"DELETE FROM order_items WHERE customer_id IN (2, 7, 150, 390)",
				"INSERT INTO customers (customer_id, name) VALUES (7001, 'late'), (7150, 'late'), (7390, 'late')",
			}
			run, compared := 0, 0
			for _, q := range queries {
				if first := strings.ToUpper(strings.Fields(q.sql)[0]); first != "SELECT" && first != "WITH" && first != "VALUES" && first != "TABLE" {
					continue
				}
				for _, mode := range []string{"simple", "binary"} {
					if len(q.args) > 0 && mode == "simple" {
						mode = "extended"
					}
					run++
					t.Run(fmt.Sprintf("line%d/%s", q.line, mode), func(t *testing.T) {
						want := runQuery(oracle, mode, q)
						if want.err != nil {
							t.Fatalf("oracle: %v\n%s", want.err, q.sql)
						}
						c := pc.get(t)
						if r := runQuery(c, "simple", sqlQuery{sql: "BEGIN"}); r.err != nil {
							t.Fatal(r.err)
						}
						defer func() {
							if r := runQuery(pc.get(t), "simple", sqlQuery{sql: "ROLLBACK"}); r.err != nil {
								t.Errorf("ROLLBACK: %v", r.err)
							}
							pc.checkUsable(t)
						}()
						var between func() error
						if run%3 == 0 {
							between = func() error {
								for _, w := range writes {
									if r := runQuery(c, "simple", sqlQuery{sql: w}); r.err != nil {
										return r.err
									}
								}
								return nil
							}
						}
						got := readCursor(c, mode, q, cursorSizes[run%len(cursorSizes)], between)
						if got.err != nil {
							t.Fatalf("line %d (%s): proxy error %s\n%s", q.line, mode, describeErr(got.err), q.sql)
						}
						if d := diffResults(want, got, q.ordered); d != "" {
							t.Fatalf("line %d (%s, FETCH %v, writes between: %v): the cursor's rows differ from the oracle's query (WRONG RESULT): %s\n%s",
								q.line, mode, cursorSizes[run%len(cursorSizes)], between != nil, d, q.sql)
						}
						compared++
					})
				}
			}
			if compared < 250 {
				t.Errorf("%d cursors equal the oracle's queries, of %d run; want at least 250", compared, run)
			}
			t.Logf("%s: %d cursors read, %d equal the oracle's query", st.name, run, compared)
		})
	}
}

// cursorBlocks run statement by statement on the oracle and through the
// proxy (range strategy: customers 7, 150 and 390 live on s0, s1, s2).
var cursorBlocks = [][]string{
	// A one-shard cursor in a transaction that spans shards: FETCH, MOVE
	// and CLOSE go to its shard, whichever shard ran last.
	{"BEGIN", "UPDATE customers SET name = name || '!' WHERE customer_id = 7",
		"DECLARE c CURSOR FOR SELECT order_id, total FROM orders WHERE customer_id = 150 ORDER BY order_id",
		"SELECT count(*) FROM orders WHERE customer_id = 390", "FETCH 2 FROM c", "MOVE 1 IN c",
		"SELECT name FROM customers WHERE customer_id = 7", "FETCH ALL FROM c", "CLOSE c", "FETCH 1 FROM c", "ROLLBACK"},
	// Merged cursors and savepoints: ROLLBACK TO closes the cursors
	// declared after the savepoint and keeps the others where they were.
	{"BEGIN", "DECLARE a NO SCROLL CURSOR FOR SELECT order_id, total FROM orders ORDER BY order_id", "FETCH 3 FROM a",
		"SAVEPOINT s1", "DECLARE b CURSOR FOR SELECT customer_id, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC, 1",
		"FETCH 2 FROM b", "ROLLBACK TO s1", "FETCH 2 FROM a", "SAVEPOINT s2", "FETCH 1 FROM b", "ROLLBACK TO s2",
		"FETCH FORWARD 2 FROM a", "DECLARE b CURSOR FOR SELECT status, sum(total) FROM orders GROUP BY status ORDER BY status",
		"FETCH ALL FROM b", "RELEASE s1", "MOVE FORWARD 5 FROM a", "FETCH NEXT FROM a", "CLOSE ALL", "FETCH 1 FROM a", "ROLLBACK"},
	// RELEASE keeps a cursor declared after the savepoint; a later
	// ROLLBACK TO an earlier one closes it.
	{"BEGIN", "SAVEPOINT p", "SAVEPOINT q", "DECLARE r CURSOR FOR SELECT customer_id FROM customers ORDER BY customer_id",
		"RELEASE q", "FETCH 2 FROM r", "ROLLBACK TO p", "FETCH 2 FROM r", "ROLLBACK"},
	// Empty strings are not NULL (the batches share their values' arrays).
	{"BEGIN", "DECLARE e CURSOR FOR SELECT '' AS empty, NULL::text AS null, coalesce(status, '') FROM orders ORDER BY order_id",
		"FETCH 5 FROM e", "FETCH ALL FROM e", "ROLLBACK"},
	// The cursor reads as of DECLARE; the transaction's later writes show elsewhere.
	{"BEGIN", "DECLARE w CURSOR FOR SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150, 390) ORDER BY customer_id",
		"UPDATE customers SET name = 'renamed' WHERE customer_id IN (7, 150, 390)", "FETCH ALL FROM w",
		"SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150, 390) ORDER BY customer_id", "ROLLBACK"},
	// Errors, as Postgres gives them.
	{"BEGIN", "DECLARE d NO SCROLL CURSOR FOR SELECT order_id FROM orders ORDER BY order_id", "FETCH 2 FROM d",
		"FETCH BACKWARD 1 FROM d", "ROLLBACK"},
	{"BEGIN", "DECLARE d CURSOR FOR SELECT order_id FROM orders ORDER BY order_id", "DECLARE d CURSOR FOR SELECT 1", "ROLLBACK"},
	{"BEGIN", "DECLARE z CURSOR FOR SELECT order_id, 100 / (customer_id - 390) FROM orders ORDER BY customer_id DESC, order_id",
		"FETCH 1000 FROM z", "ROLLBACK"},
	{"BEGIN", "DECLARE z CURSOR FOR SELECT order_id, 100 / (customer_id - 390) FROM orders ORDER BY customer_id, order_id",
		"SAVEPOINT s", "FETCH 100000 FROM z", "ROLLBACK TO s", "FETCH 1 FROM z", "ROLLBACK"},
	{"DECLARE o CURSOR FOR SELECT order_id FROM orders"},
	{"BEGIN", "DECLARE e CURSOR FOR SELECT order_id FROM orders ORDER BY order_id", "COMMIT", "FETCH 1 FROM e"},
	{"BEGIN", "DECLARE v CURSOR FOR SELECT count(*), sum(total) FROM orders", "FETCH 1 FROM nosuch", "ROLLBACK"},
}

func TestCursorsScripted(t *testing.T) {
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[1] // range: keys 7, 150, 390 on s0, s1, s2
	pc, oracle, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_script_", schema, genDiffData())
	modes := []string{"simple", "binary", "extended"}
	n, equal, failedAlike := 0, 0, 0
	for bi, block := range cursorBlocks {
		for _, sql := range block {
			mode := modes[n%len(modes)]
			n++
			want := runQuery(oracle, mode, sqlQuery{sql: sql})
			got := runQuery(pc.get(t), mode, sqlQuery{sql: sql})
			switch {
			case want.err != nil || got.err != nil:
				if sqlState(want.err) != sqlState(got.err) {
					t.Errorf("block %d, %q (%s): proxy %s, oracle %s", bi, sql, mode, errText(got.err), errText(want.err))
				} else {
					failedAlike++
				}
			default:
				if d := diffResults(want, got, true); d != "" {
					t.Errorf("block %d, %q (%s): proxy differs from oracle (WRONG RESULT): %s", bi, sql, mode, d)
				} else {
					equal++
				}
			}
			if ps, os := pc.get(t).TxStatus(), oracle.TxStatus(); ps != os {
				t.Errorf("block %d, %q (%s): transaction status %q, oracle %q", bi, sql, mode, ps, os)
			}
		}
		endBoth(t, oracle, pc, bi)
	}
	t.Logf("%d statements: %d equal the oracle's, %d failed alike", n, equal, failedAlike)
	if failedAlike < 10 || equal < 50 {
		t.Errorf("the blocks no longer exercise what they were written for: %d equal, %d failed alike", equal, failedAlike)
	}
}

// TestCursorsPsqlFetchCount: psql with FETCH_COUNT reads every SELECT
// through a cursor, FETCH_COUNT rows at a time; what it prints must be
// what it prints against the oracle.
func TestCursorsPsqlFetchCount(t *testing.T) {
	queries := readSQLFile(t, diffDir+"queries.sql")
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[0]
	pc, oracle, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_psql_", schema, genDiffData())
	psql := clientTool(t, "psql")
	odsn := oracleDSN(t, oracle)
	// samePsql runs q with FETCH_COUNT fetch through the proxy and on the
	// oracle: psql must print the same.
	samePsql := func(file string, q sqlQuery, fetch int) {
		t.Helper()
		args := []string{"-X", "-A", "-v", "ON_ERROR_STOP=1", "-v", fmt.Sprintf("FETCH_COUNT=%d", fetch), "-c", q.sql}
		got, gerr, gcode := pc.f.runTool(t, psql, "", args...)
		want, werr, wcode := pc.f.runTool(t, psql, "", append(args, odsn)...)
		if gcode != 0 || wcode != 0 {
			t.Fatalf("%s line %d: psql exit %d (%s) through the proxy, %d (%s) on the oracle\n%s", file, q.line, gcode, gerr, wcode, werr, q.sql)
		}
		if got != want {
			t.Errorf("%s line %d (FETCH_COUNT=%d): psql prints through the proxy:\n%s\non the oracle:\n%s\n%s", file, q.line, fetch, got, want, q.sql)
		}
	}
	ran := 0
	for _, q := range queries {
		if !q.ordered || len(q.args) > 0 || !strings.HasPrefix(strings.ToUpper(q.sql), "SELECT") || ran >= 40 {
			continue
		}
		ran++
		samePsql("queries.sql", q, 1+ran%9)
	}
	if ran < 40 {
		t.Fatalf("only %d ordered queries to run", ran)
	}
	// Gathered statements (plan_build_gather.go) as cursors: the cursor's
	// query is the gathering, whose evaluation runs on the first FETCH.
	gran := 0
	for _, q := range readSQLFile(t, diffDir+"gathered.sql") {
		if !q.ordered || len(q.args) > 0 {
			continue
		}
		gran++
		samePsql("gathered.sql", q, 1+gran%5)
	}
	if gran < 8 {
		t.Fatalf("only %d ordered gathered statements", gran)
	}
}

// TestCursorsRefused: what a cursor across shards cannot do is refused
// with 0A000 and a hint, fails the transaction as any error does, and
// the connection goes on.
func TestCursorsRefused(t *testing.T) {
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[0]
	pc, _, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_refused_", schema, genDiffData())
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		stmts []string // the last one is refused
	}{
		{"scroll", []string{"BEGIN", "DECLARE s SCROLL CURSOR FOR SELECT order_id FROM orders"}},
		{"backward", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders ORDER BY 1", "FETCH 2 FROM s", "FETCH BACKWARD 1 FROM s"}},
		{"prior", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders", "MOVE PRIOR FROM s"}},
		{"absolute", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders", "FETCH ABSOLUTE 3 FROM s"}},
		{"refetch", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders", "FETCH 1 FROM s", "FETCH 0 FROM s"}},
		{"current_of", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders", "FETCH 1 FROM s", "DELETE FROM orders WHERE CURRENT OF s"}},
		{"set_timezone", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT created_at FROM orders ORDER BY 1", "FETCH 1 FROM s", "SET TimeZone = 'Asia/Tokyo'"}},
		{"reset_all", []string{"BEGIN", "DECLARE s CURSOR FOR SELECT created_at FROM orders ORDER BY 1", "FETCH 1 FROM s", "RESET ALL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pc.get(t)
			defer endBoth(t, c, pc, 0)
			for i, sql := range tc.stmts {
				_, err := c.Exec(ctx, sql).ReadAll()
				if i < len(tc.stmts)-1 {
					if err != nil {
						t.Fatalf("%s: %v", sql, err)
					}
					continue
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "0A000" || pe.Hint == "" {
					t.Fatalf("%s: %v, want 0A000 with a hint", sql, err)
				}
				if c.TxStatus() != 'E' {
					t.Fatalf("transaction status %q after the refusal, want E", c.TxStatus())
				}
			}
		})
	}
	t.Run("row_limited_execute", func(t *testing.T) {
		// Execute with a row limit of a FETCH portal (the extended
		// protocol's own cursor over a cursor): refused.
		c, err := pgconn.Connect(ctx, pc.f.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		for _, sql := range []string{"BEGIN", "DECLARE s CURSOR FOR SELECT order_id FROM orders ORDER BY 1"} {
			if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
		hj, err := c.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		defer hj.Conn.Close()
		fe := hj.Frontend
		for _, m := range []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "FETCH 10 FROM s"}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 3}, &pgproto3.Sync{}} {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		hj.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var refusal *pgproto3.ErrorResponse
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok && refusal == nil {
				cp := *e
				refusal = &cp
			}
			if rfq, ok := msg.(*pgproto3.ReadyForQuery); ok {
				if rfq.TxStatus != 'E' {
					t.Errorf("transaction status %q after the refusal, want E", rfq.TxStatus)
				}
				break
			}
		}
		if refusal == nil || refusal.Code != "0A000" || refusal.Hint == "" {
			t.Fatalf("row-limited Execute of FETCH: %+v, want 0A000 with a hint", refusal)
		}
	})
}

// TestCursorsWithoutTwoPhaseCommit: a transaction without two-phase
// commit stays on one shard, so a cursor across shards is refused (0A000,
// naming two_phase_commit); a one-shard cursor works.
func TestCursorsWithoutTwoPhaseCommit(t *testing.T) {
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[1]
	pc, _, _ := startWriteSuite(t, st, st.strategies+diffTables, "cursor_no2pc_", schema, genDiffData())
	ctx := context.Background()
	c := pc.get(t)
	defer endBoth(t, c, pc, 0)
	for _, sql := range []string{"BEGIN", "DECLARE one CURSOR FOR SELECT order_id FROM orders WHERE customer_id = 150 ORDER BY 1", "FETCH 2 FROM one"} {
		if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_, err := c.Exec(ctx, "DECLARE every CURSOR FOR SELECT order_id FROM orders").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Hint, "two_phase_commit") {
		t.Fatalf("DECLARE across shards without two-phase commit: %v, want 0A000 naming two_phase_commit", err)
	}
	// A row-limited Execute across shards, outside a transaction: the
	// shards' cursors would need a transaction across them.
	other, err := pgconn.Connect(ctx, pc.f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	hj, err := other.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Conn.Close()
	hj.Conn.SetDeadline(time.Now().Add(time.Minute))
	got := transcript(t, hj.Frontend, &pgproto3.Parse{Query: "SELECT order_id FROM orders ORDER BY 1"}, &pgproto3.Bind{},
		&pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{})
	if want := []string{"ParseComplete", "BindComplete", "ErrorResponse 0A000", "ReadyForQuery I"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("row-limited Execute across shards without two-phase commit: %q, want %q", got, want)
	}
}

// transcript sends msgs (ending in Sync) on a hijacked connection and
// returns what comes back up to ReadyForQuery, one line per message
// (values as text, errors by SQLSTATE).
func transcript(t *testing.T, fe *pgproto3.Frontend, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %q: %v", out, err)
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			var cols []string
			for _, f := range m.Fields {
				cols = append(cols, fmt.Sprintf("%s:%d/%d", f.Name, f.DataTypeOID, f.Format))
			}
			out = append(out, "RowDescription "+strings.Join(cols, ","))
		case *pgproto3.DataRow:
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, fmt.Sprintf("%q", v))
			}
			out = append(out, "DataRow "+strings.Join(vals, ","))
		case *pgproto3.CommandComplete:
			out = append(out, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "ErrorResponse "+m.Code)
		case *pgproto3.ReadyForQuery:
			return append(out, "ReadyForQuery "+string(m.TxStatus))
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			out = append(out, fmt.Sprintf("%T", msg)[len("*pgproto3."):])
		}
	}
}

// TestCursorsRowLimitedExecute: a SELECT across shards read a number of
// rows per Execute (JDBC's setFetchSize inside a transaction; a pipeline
// that executes a portal in steps before Sync) answers what the oracle
// answers, message for message: rows, PortalSuspended, the final tag.
func TestCursorsRowLimitedExecute(t *testing.T) {
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[0]
	pc, oracle, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "cursor_rows_", schema, genDiffData())
	ctx := context.Background()
	hijack := func(dsn string) *pgproto3.Frontend {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		hj, err := c.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hj.Conn.Close() })
		hj.Conn.SetDeadline(time.Now().Add(2 * time.Minute))
		return hj.Frontend
	}
	proxyFE, oracleFE := hijack(pc.f.DSN()), hijack(oracleDSN(t, oracle))
	same := func(what string, msgs ...pgproto3.FrontendMessage) []string {
		t.Helper()
		got, want := transcript(t, proxyFE, msgs...), transcript(t, oracleFE, msgs...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: proxy\n  %s\noracle\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		return got
	}
	queries := []struct {
		sql    string
		params [][]byte
	}{
		{"SELECT order_id, customer_id, total FROM orders ORDER BY order_id", nil},
		{"SELECT customer_id, count(*), sum(total) FROM orders GROUP BY customer_id ORDER BY 3 DESC NULLS LAST, 1", nil},
		{"SELECT order_id FROM orders WHERE total > $1 ORDER BY order_id LIMIT $2", [][]byte{[]byte("10"), []byte("25")}},
		{"SELECT DISTINCT status FROM orders ORDER BY status", nil},
		{"SELECT name FROM customers ORDER BY customer_id", nil},
	}
	suspended := 0
	for i, q := range queries {
		binary := []int16{int16(i % 2)} // text, then binary results
		// JDBC with a fetch size: in a transaction, a named portal read
		// with Execute(n) + Sync until it completes.
		same("BEGIN", &pgproto3.Query{String: "BEGIN"})
		portal := fmt.Sprintf("C_%d", i)
		first := same(q.sql+": first Execute", &pgproto3.Parse{Query: q.sql}, &pgproto3.Bind{DestinationPortal: portal, Parameters: q.params, ResultFormatCodes: binary},
			&pgproto3.Describe{ObjectType: 'P', Name: portal}, &pgproto3.Execute{Portal: portal, MaxRows: 4}, &pgproto3.Sync{})
		for n := 0; n < 100 && !strings.HasPrefix(first[len(first)-2], "CommandComplete"); n++ {
			suspended++
			first = same(q.sql+": next Execute", &pgproto3.Execute{Portal: portal, MaxRows: uint32(3 + n%5)}, &pgproto3.Sync{})
		}
		same(q.sql+": Close", &pgproto3.Close{ObjectType: 'P', Name: portal}, &pgproto3.Sync{})
		same("COMMIT", &pgproto3.Query{String: "COMMIT"})
		// Outside a transaction: the unnamed portal in steps, then the rest, before Sync.
		same(q.sql+": steps before Sync", &pgproto3.Parse{Query: q.sql}, &pgproto3.Bind{Parameters: q.params, ResultFormatCodes: binary},
			&pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{MaxRows: 5}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	if suspended < 10 {
		t.Fatalf("only %d Executes were suspended", suspended)
	}
	pc.get(t)
	pc.checkUsable(t)
}

// TestCopyQueryMerged: COPY (query) TO STDOUT whose query needs merging
// across shards writes, byte for byte, what the oracle writes: every
// ordered query of the read differential, under text and CSV options
// (HEADER, DELIMITER, NULL, QUOTE, ESCAPE, FORCE_QUOTE), outside and
// inside a transaction, plus values that need escaping.
func TestCopyQueryMerged(t *testing.T) {
	queries := readSQLFile(t, diffDir+"queries.sql")
	schema := readSQLFile(t, diffDir+"schema.sql")
	st := diffStrategies[2]
	pc, oracle, _ := startWriteSuite(t, st, st.strategies+diffTables+"two_phase_commit: true\n", "copy_merged_", schema, genDiffData())
	ctx := context.Background()
	options := []string{"", "(FORMAT csv, HEADER)", "(FORMAT csv, DELIMITER ';', NULL 'NULL', FORCE_QUOTE *)",
		"(DELIMITER '|', NULL '', HEADER)", "(FORMAT csv, QUOTE '''', ESCAPE '\\')", "(FORMAT text, HEADER true)"}
	special := []string{
		`SELECT customer_id, name || E'\t|\\x\n' || chr(1) || chr(11), NULL::text, '' FROM customers ORDER BY customer_id LIMIT 20`,
		`SELECT status || ',"q;''' , count(*), E'\\.' FROM orders GROUP BY status ORDER BY 1`,
		`SELECT E'\\.' FROM orders GROUP BY status ORDER BY status`,
		`SELECT DISTINCT ON (status) status, 'NULL', order_id FROM orders ORDER BY status, order_id`,
	}
	var stmts []string
	for _, q := range special {
		for _, o := range options {
			stmts = append(stmts, fmt.Sprintf("COPY (%s) TO STDOUT %s", q, o))
		}
	}
	for i, q := range queries {
		if !q.ordered || len(q.args) > 0 || !strings.HasPrefix(strings.ToUpper(q.sql), "SELECT") {
			continue
		}
		stmts = append(stmts, fmt.Sprintf("COPY (%s) TO STDOUT %s", strings.TrimSuffix(q.sql, ";"), options[i%len(options)]))
	}
	copyOut := func(c *pgconn.PgConn, sql string) (string, string, error) {
		var b strings.Builder
		tag, err := c.CopyTo(ctx, &b, sql)
		return b.String(), tag.String(), err
	}
	equal := 0
	for i, sql := range stmts {
		inTx := i%3 == 2
		if inTx {
			for _, c := range []*pgconn.PgConn{pc.get(t), oracle} {
				if _, err := c.Exec(ctx, "BEGIN").ReadAll(); err != nil {
					t.Fatal(err)
				}
			}
		}
		want, wtag, werr := copyOut(oracle, sql)
		got, gtag, gerr := copyOut(pc.get(t), sql)
		switch {
		case werr != nil:
			t.Errorf("oracle: %v\n%s", werr, sql)
		case gerr != nil:
			t.Errorf("proxy: %s\n%s", describeErr(gerr), sql)
		case got != want || gtag != wtag:
			t.Errorf("COPY differs from the oracle (WRONG RESULT) (in a transaction: %v): proxy %s\n%s\noracle %s\n%s\n%s", inTx, gtag, got, wtag, want, sql)
		default:
			equal++
		}
		if inTx {
			endBoth(t, oracle, pc, i)
		}
	}
	t.Logf("%d of %d COPY statements equal the oracle's output", equal, len(stmts))
	if equal < 60 {
		t.Errorf("only %d COPY statements compared", equal)
	}
	pc.checkUsable(t)
}

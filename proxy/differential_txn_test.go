package proxy_test

// The transaction differential suite: the write differential
// (differential_writes_test.go) extended to explicit transactions and to
// binary bind parameters. The blocks of testdata/differential/
// transactions.sql (BEGIN ... COMMIT / ROLLBACK, savepoints, errors
// mid-transaction, deferred constraints, reads of the transaction's own
// writes on one shard and merged over several) and the blocks of
// txnBinaryBlocks (writes whose parameters are sent in binary: int8, int4,
// int2, text, varchar, numeric, timestamptz, arrays, jsonb, NULL) run on
// an unsharded oracle and through the proxy over three shards with
// two_phase_commit: true, once per strategy. Every statement must give
// the oracle's outcome (tag, columns, rows, or the same SQLSTATE) and
// leave the same transaction status; after every block the tables it
// names must equal the oracle's and every row must sit on its key's
// shard. A statement the proxy refuses with 0A000 and a hint fails its
// transaction (status E) or, outside one, changes nothing: both sides
// then roll back, skip the rest of the block, and the tables must be as
// the oracle's. Statements rotate through the simple protocol and the
// extended one with text and with binary results; some blocks (a
// different subset per strategy) are sent whole as one simple Query.
//
// DIFF_TXN_SHOW=1 logs every statement's outcome.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// ledgerDDL: a table with deferred constraints (both include the key).
const ledgerDDL = `CREATE TABLE ledger (
    customer_id int8 NOT NULL,
    entry       int4 NOT NULL,
    amount      numeric(12,2),
    memo        text,
    CONSTRAINT ledger_pkey PRIMARY KEY (customer_id, entry) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT ledger_memo UNIQUE (customer_id, memo) DEFERRABLE INITIALLY IMMEDIATE
)`

// readingsDDL: a table range-sharded by a timestamptz key (by_day).
const readingsDDL = `CREATE TABLE readings (
    at     timestamptz NOT NULL,
    sensor int4 NOT NULL,
    value  numeric,
    note   text,
    PRIMARY KEY (at, sensor)
)`

const byDayStrategy = `  by_day:      {type: range, key_type: timestamptz, ranges: [{upper: "2024-04-01", shard: s0}, {upper: "2024-08-01", shard: s1}, {upper: null, shard: s2}]}
`

const txnExtraTables = `  wallets:     {key: customer_id, strategy: by_customer}
  ledger:      {key: customer_id, strategy: by_customer}
  readings:    {key: at, strategy: by_day}
`

// txnSuiteBody is the configuration of the transaction-style suites
// (transactions, pipelines, multi-statement Queries) under strategy st:
// the read suite's tables plus wallets, ledger and readings (by_day), with
// two_phase_commit.
func txnSuiteBody(st diffStrategy) string {
	strategies := strings.Replace(st.strategies, "strategies:\n", "strategies:\n"+byDayStrategy, 1)
	return strategies + strings.Replace(diffTables, "tables:\n", "tables:\n"+txnExtraTables, 1) + "two_phase_commit: true\n"
}

var (
	ledgerTable   = writeTable{"ledger", "customer_id", "1, 2, 3, 4"}
	readingsTable = writeTable{"readings", "at", "1, 2, 3, 4"}
	txnTables     = append(slices.Clone(writeTables), ledgerTable, readingsTable)
	txnTargets    = regexp.MustCompile(`\b(customers|orders|order_items(?:_first|_rest)?|events|wallets|products|ledger|readings)\b`)
)

// txnTouched finds the tables a block names.
func txnTouched(b txnBlock) []writeTable {
	var out []writeTable
	for _, s := range b.steps {
		for _, m := range txnTargets.FindAllStringSubmatch(s.q.sql, -1) {
			name := strings.TrimSuffix(strings.TrimSuffix(m[1], "_first"), "_rest")
			if !slices.ContainsFunc(out, func(w writeTable) bool { return w.name == name }) {
				i := slices.IndexFunc(txnTables, func(w writeTable) bool { return w.name == name })
				out = append(out, txnTables[i])
			}
		}
	}
	return out
}

// genLedger: entry 1 for three customers in four, entry 2 for the even
// ones among them; memos unique per customer, some NULL.
func genLedger() diffTable {
	l := diffTable{name: "ledger", key: 0, cols: []string{"customer_id", "entry", "amount", "memo"}}
	for cust := 1; cust <= 400; cust++ {
		if cust%4 == 0 {
			continue
		}
		for entry := 1; entry <= 1+(cust+1)%2; entry++ {
			memo := "NULL"
			if cust%3 != 0 {
				memo = fmt.Sprintf("'m-%d-%d'", cust, entry)
			}
			l.rows = append(l.rows, []string{strconv.Itoa(cust), strconv.Itoa(entry), fmt.Sprintf("%d.%02d", cust*entry%97, cust%100), memo})
		}
	}
	return l
}

// genReadings: readings through 2024 (every shard of by_day), three
// sensors, microsecond timestamps.
func genReadings() diffTable {
	r := diffTable{name: "readings", key: 0, cols: []string{"at", "sensor", "value", "note"}}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 240 {
		at := base.Add(time.Duration(i)*36*time.Hour + time.Duration(i*7919)*time.Microsecond)
		note := "NULL"
		if i%5 != 0 {
			note = fmt.Sprintf("'n%d'", i%7)
		}
		r.rows = append(r.rows, []string{"'" + at.Format("2006-01-02 15:04:05.999999-07") + "'", strconv.Itoa(1 + i%3), fmt.Sprintf("%d.%d", i*13%1000, i%10), note})
	}
	return r
}

// txnStep is one statement of a block: text arguments as in the other
// suites, or binary ones.
type txnStep struct {
	q   sqlQuery
	bin *binParams
}

// binParams are a statement's parameters as sent: values already
// encoded, their formats and type OIDs (0 lets the server infer), and the
// result formats asked for; prepared runs it as a named statement.
type binParams struct {
	values   [][]byte
	oids     []uint32
	formats  []int16
	results  []int16
	prepared bool
}

type txnBlock struct {
	steps []txnStep
	line  int
}

func (b txnBlock) hasArgs() bool {
	return slices.ContainsFunc(b.steps, func(s txnStep) bool { return s.bin != nil || len(s.q.args) > 0 })
}

// splitBlocks groups statements into transaction blocks.
func splitBlocks(stmts []sqlQuery) []txnBlock {
	var out []txnBlock
	var cur *txnBlock
	for _, q := range stmts {
		f := strings.Fields(strings.ToUpper(q.sql))
		if cur == nil {
			out = append(out, txnBlock{line: q.line})
			cur = &out[len(out)-1]
			cur.steps = append(cur.steps, txnStep{q: q})
			if f[0] != "BEGIN" && f[0] != "START" {
				cur = nil
			}
			continue
		}
		cur.steps = append(cur.steps, txnStep{q: q})
		end := false
		switch f[0] {
		case "COMMIT", "END", "ROLLBACK", "ABORT":
			end = !strings.Contains(strings.Join(f, " "), "AND CHAIN") && (len(f) == 1 || (f[1] != "TO" && f[1] != "PREPARED"))
		}
		if end {
			cur = nil
		}
	}
	return out
}

// txnCounts are one strategy's outcomes.
type txnCounts struct {
	blocks, scripts, implicit  int
	statements, binary         int
	equal, bothFailed, refused int
	refusedBlocks              int
	wrong                      int
	why                        map[string]int
}

func TestDifferentialTransactions(t *testing.T) {
	stmts := readSQLFile(t, diffDir+"transactions.sql")
	blocks := append(splitBlocks(stmts), txnBinaryBlocks()...)
	schema := append(readSQLFile(t, diffDir+"schema.sql"), sqlQuery{sql: walletsDDL}, sqlQuery{sql: ledgerDDL}, sqlQuery{sql: readingsDDL})
	data := append(genDiffData(), genWallets(), genLedger(), genReadings())
	show := os.Getenv("DIFF_TXN_SHOW") != ""

	// The blocks must have one right answer: an oracle holding the rows in
	// reverse physical order must agree statement by statement.
	t.Run("oracle_self_check", func(t *testing.T) {
		a := startOracle(t, "txn_a", schema, data)
		b := startOracle(t, "txn_b", schema, reverseRows(data))
		for _, bl := range blocks {
			for _, s := range bl.steps {
				ra, rb := runStep(a, "simple", s), runStep(b, "simple", s)
				if sqlState(ra.err) != sqlState(rb.err) || (ra.err == nil) != (rb.err == nil) {
					t.Fatalf("line %d: oracle errors differ (%v / %v)\n%s", s.q.line, ra.err, rb.err, s.q.sql)
				}
				if d := diffResults(ra, rb, s.q.ordered); d != "" {
					t.Fatalf("line %d: the result depends on the physical row order: %s\n%s", s.q.line, d, s.q.sql)
				}
			}
			for _, c := range []*pgconn.PgConn{a, b} {
				if c.TxStatus() != 'I' {
					t.Fatalf("block at line %d leaves the oracle in a transaction", bl.line)
				}
			}
			for _, tb := range txnTouched(bl) {
				if d := diffResults(readTable(a, tb), readTable(b, tb), true); d != "" {
					t.Fatalf("block at line %d: the contents of %s depend on the physical row order: %s", bl.line, tb.name, d)
				}
			}
		}
	})

	counts := map[string]*txnCounts{}
	for si, st := range diffStrategies {
		t.Run(st.name, func(t *testing.T) {
			body := txnSuiteBody(st)
			pc, oracle, reader := startWriteSuite(t, st, body, "txn_", schema, data)

			c := &txnCounts{why: map[string]int{}}
			counts[st.name] = c
			n := 0 // statements so far: picks each one's protocol
			for bi, bl := range blocks {
				c.blocks++
				ib, implicit := implicitBlock(bl)
				switch {
				case len(bl.steps) > 1 && !bl.hasArgs() && (bi+si)%4 == 3:
					c.scripts++
					runScript(t, oracle, pc, bl, c, show)
				case implicit && (bi+si)%4 == 1:
					c.scripts++
					c.implicit++
					runScript(t, oracle, pc, ib, c, show)
				default:
					runBlock(t, oracle, pc, bl, si, &n, c, show)
				}
				if bad := compareTxnTables(t, reader, txnTouched(bl)); len(bad) > 0 {
					t.Errorf("block at line %d: the tables differ from the oracle's, or hold misplaced rows, after it", bl.line)
					c.wrong++
					reader.resync(t, bad)
					if len(compareTxnTables(t, reader, bad)) > 0 {
						t.Fatalf("block at line %d: the tables still differ after copying the oracle's rows through the proxy", bl.line)
					}
				}
			}
			if len(compareTxnTables(t, reader, txnTables)) > 0 {
				c.wrong++
			}
			t.Logf("%s: %d blocks (%d sent as one Query, %d of them without BEGIN and its end), %d statements (%d with binary parameters): %d equal the oracle, %d fail on both alike, %d refused with 0A000 (%d blocks rolled back for it), %d blocks differ",
				st.name, c.blocks, c.scripts, c.implicit, c.statements, c.binary, c.equal, c.bothFailed, c.refused, c.refusedBlocks, c.wrong)
			for _, msg := range slices.Sorted(maps.Keys(c.why)) {
				t.Logf("refused %3d× %s", c.why[msg], msg)
			}
		})
	}
	for _, st := range diffStrategies {
		if c := counts[st.name]; c != nil {
			t.Logf("%-10s blocks %3d, statements %3d, equal %3d, both failed %2d, refused %2d, blocks differed %2d",
				st.name, c.blocks, c.statements, c.equal, c.bothFailed, c.refused, c.wrong)
		}
	}
}

// runBlock runs a block statement by statement on both sides.
func runBlock(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn, bl txnBlock, si int, n *int, c *txnCounts, show bool) {
	t.Helper()
	defer endBoth(t, oracle, pc, bl.line)
	for _, s := range bl.steps {
		modes := []string{"simple", "extended", "binary"}
		if len(s.q.args) > 0 {
			modes = s.q.modes()
		}
		mode := modes[(*n+si)%len(modes)]
		if s.bin != nil {
			mode = "binary-params"
			c.binary++
		}
		*n++
		c.statements++
		got := runStep(pc.get(t), mode, s)
		var pgErr *pgconn.PgError
		if errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "" {
			c.refused++
			c.why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
			inTxn := oracle.TxStatus() != 'I'
			if show {
				t.Logf("line %d (%s): refused: %s", s.q.line, mode, describeErr(got.err))
			}
			if want := map[bool]byte{true: 'E', false: 'I'}[inTxn]; pc.get(t).TxStatus() != want {
				t.Errorf("line %d (%s): transaction status %q after a refusal, want %q\n%s", s.q.line, mode, pc.get(t).TxStatus(), want, s.q.sql)
			}
			if inTxn {
				c.refusedBlocks++
				return // endBoth rolls both back
			}
			continue
		}
		want := runStep(oracle, mode, s)
		outcome := ""
		switch {
		case got.err != nil && want.err != nil:
			if sqlState(got.err) != sqlState(want.err) {
				t.Errorf("line %d (%s): proxy error %s, oracle error %s\n%s", s.q.line, mode, describeErr(got.err), describeErr(want.err), s.q.sql)
				outcome = "different errors"
			} else {
				c.bothFailed++
				outcome = "both failed: " + describeErr(want.err)
			}
		case got.err != nil:
			t.Errorf("line %d (%s): proxy error %s; the oracle ran it (%s, %d rows)\n%s", s.q.line, mode, describeErr(got.err), want.tag, len(want.rows), s.q.sql)
			outcome = "proxy error"
		case want.err != nil:
			t.Errorf("line %d (%s): the proxy ran it (%s, %d rows); oracle error %s\n%s", s.q.line, mode, got.tag, len(got.rows), describeErr(want.err), s.q.sql)
			outcome = "oracle error"
		default:
			if d := diffResults(want, got, s.q.ordered); d != "" {
				t.Errorf("line %d (%s): proxy differs from oracle (WRONG RESULT): %s\n%s", s.q.line, mode, d, s.q.sql)
				outcome = "wrong result"
			} else {
				c.equal++
				outcome = "equal: " + want.tag
			}
		}
		if show {
			t.Logf("line %d (%s): %s", s.q.line, mode, outcome)
		}
		if ps, ost := pc.get(t).TxStatus(), oracle.TxStatus(); ps != ost {
			t.Errorf("line %d (%s): transaction status %q, oracle %q\n%s", s.q.line, mode, ps, ost, s.q.sql)
			return
		}
	}
}

// endBoth rolls back whatever a block left open, on both sides.
func endBoth(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn, line int) {
	t.Helper()
	for name, conn := range map[string]*pgconn.PgConn{"oracle": oracle, "proxy": pc.get(t)} {
		if conn.TxStatus() == 'I' {
			continue
		}
		if r := runQuery(conn, "simple", sqlQuery{sql: "ROLLBACK"}); r.err != nil {
			t.Errorf("block at line %d: ROLLBACK on the %s: %s", line, name, describeErr(r.err))
		}
		if conn.TxStatus() != 'I' {
			t.Errorf("block at line %d: the %s is not idle after ROLLBACK", line, name)
		}
	}
	pc.checkUsable(t)
}

// implicitBlock is a transaction block without its BEGIN and its COMMIT or
// ROLLBACK, for runScript: Postgres runs such a Query as one implicit
// transaction, which commits at its end (implicit.go). ok is false for a
// block that is not BEGIN ... end, or has parameters.
func implicitBlock(b txnBlock) (txnBlock, bool) {
	if len(b.steps) < 4 || b.hasArgs() {
		return b, false
	}
	first := strings.Fields(strings.ToUpper(b.steps[0].q.sql))[0]
	last := strings.Fields(strings.ToUpper(b.steps[len(b.steps)-1].q.sql))[0]
	if first != "BEGIN" && first != "START" || last == "BEGIN" || last == "START" {
		return b, false
	}
	return txnBlock{steps: b.steps[1 : len(b.steps)-1], line: b.line}, true
}

// runScript sends a whole block as one simple Query on both sides: the
// same results up to the same error.
func runScript(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn, bl txnBlock, c *txnCounts, show bool) {
	t.Helper()
	defer endBoth(t, oracle, pc, bl.line)
	var sqls []string
	for _, s := range bl.steps {
		sqls = append(sqls, s.q.sql)
	}
	script := strings.Join(sqls, ";\n")
	got, gerr := runMulti(pc.get(t), script)
	var pgErr *pgconn.PgError
	if errors.As(gerr, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "" {
		c.refused++
		c.refusedBlocks++
		c.why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
		if show {
			t.Logf("block at line %d (script): refused: %s", bl.line, describeErr(gerr))
		}
		return
	}
	want, werr := runMulti(oracle, script)
	c.statements += len(bl.steps)
	if show {
		t.Logf("block at line %d (script): %d results, error %v", bl.line, len(want), werr)
	}
	if sqlState(gerr) != sqlState(werr) || (gerr == nil) != (werr == nil) {
		t.Errorf("block at line %d (script): proxy error %v, oracle error %v\n%s", bl.line, errText(gerr), errText(werr), script)
		return
	}
	if gerr != nil {
		c.bothFailed++
	}
	if len(got) != len(want) {
		t.Errorf("block at line %d (script): %d results, oracle %d\n%s", bl.line, len(got), len(want), script)
		return
	}
	for i := range want {
		ordered := i < len(bl.steps) && bl.steps[i].q.ordered
		if d := diffResults(want[i], got[i], ordered); d != "" {
			t.Errorf("block at line %d (script), result %d: proxy differs from oracle (WRONG RESULT): %s\n%s", bl.line, i+1, d, sqls[min(i, len(sqls)-1)])
			return
		}
		c.equal++
	}
	if ps, ost := pc.get(t).TxStatus(), oracle.TxStatus(); ps != ost {
		t.Errorf("block at line %d (script): transaction status %q, oracle %q", bl.line, ps, ost)
	}
}

func errText(err error) string {
	if err == nil {
		return "none"
	}
	return describeErr(err)
}

// runMulti runs a multi-statement Query and returns each statement's
// result and the error that ended it.
func runMulti(c *pgconn.PgConn, sql string) ([]qresult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return readMulti(c.Exec(ctx, sql))
}

// readMulti collects every result of mrr, up to the error that ended it.
func readMulti(mrr *pgconn.MultiResultReader) ([]qresult, error) {
	var out []qresult
	for mrr.NextResult() {
		r, err := collect(mrr.ResultReader())
		if err != nil {
			mrr.Close()
			return out, err
		}
		out = append(out, r)
	}
	return out, mrr.Close()
}

// runStep runs one statement: as runStatement does, or with its binary
// parameters.
func runStep(c *pgconn.PgConn, mode string, s txnStep) qresult {
	if s.bin == nil {
		return runStatement(c, mode, s.q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := s.bin
	if !b.prepared {
		r, err := collect(c.ExecParams(ctx, s.q.sql, b.values, b.oids, b.formats, b.results))
		if err != nil {
			return qresult{err: err}
		}
		return r
	}
	name := fmt.Sprintf("difft_%d", s.q.line)
	if _, err := c.Prepare(ctx, name, s.q.sql, b.oids); err != nil {
		return qresult{err: err}
	}
	r, err := collect(c.ExecPrepared(ctx, name, b.values, b.formats, b.results))
	if derr := c.Deallocate(ctx, name); err == nil && derr != nil {
		err = derr
	}
	if err != nil {
		return qresult{err: err}
	}
	return r
}

// collect reads a result as runStatement does (columns kept without rows,
// binary numerics canonical).
func collect(rr *pgconn.ResultReader) (qresult, error) {
	fds, rows := readRows(rr)
	tag, err := rr.Close()
	if err != nil {
		return qresult{}, err
	}
	return formatResult(fds, rows, tag), nil
}

// compareTxnTables compares tables as tableReader.compare does; readings
// (keyed by a timestamptz, which compare's placement check does not
// know) is compared here, its placement checked by the by_day bounds.
func compareTxnTables(t *testing.T, r *tableReader, tables []writeTable) []writeTable {
	t.Helper()
	var others, bad []writeTable
	for _, tb := range tables {
		if tb.name != readingsTable.name {
			others = append(others, tb)
			continue
		}
		ok := true
		want := readTable(r.oracle, tb)
		if want.err != nil {
			t.Fatalf("reading readings on the oracle: %v", want.err)
		}
		if got := readTable(r.proxy.get(t), tb); got.err != nil {
			t.Errorf("reading readings through the proxy: %s", describeErr(got.err))
			ok = false
		} else if d := diffResults(want, got, true); d != "" {
			t.Errorf("readings through the proxy differs from the oracle's: %s", d)
			ok = false
		}
		for sh, outside := range map[string]string{
			"s0": "at >= '2024-04-01 00:00:00+00'",
			"s1": "at < '2024-04-01 00:00:00+00' OR at >= '2024-08-01 00:00:00+00'",
			"s2": "at < '2024-08-01 00:00:00+00'",
		} {
			res := runQuery(r.direct[sh], "simple", sqlQuery{sql: "SELECT at::text FROM readings WHERE " + outside})
			if res.err != nil {
				t.Fatalf("readings on %s: %v", sh, res.err)
			}
			if len(res.rows) > 0 {
				t.Errorf("readings: %d rows on %s outside its range (MISPLACED ROWS): %s", len(res.rows), sh, firstFew(res.rows))
				ok = false
			}
		}
		if !ok {
			bad = append(bad, tb)
		}
	}
	return append(bad, r.compare(t, others)...)
}

// Binary encodings, by pgx's own codecs.
var binMap = pgtype.NewMap()

func enc(oid uint32, v any) []byte {
	if v == nil {
		return nil
	}
	b, err := binMap.Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		panic(fmt.Sprintf("encoding %v as %d: %v", v, oid, err))
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func numeric(s string) pgtype.Numeric {
	var n pgtype.Numeric
	if err := n.Scan(s); err != nil {
		panic(err)
	}
	return n
}

func utc(s string) time.Time {
	ts, err := time.Parse("2006-01-02 15:04:05.999999Z07:00", s)
	if err != nil {
		panic(err)
	}
	return ts
}

// bp is a parameter: its OID as sent (0: unspecified), the type to
// encode its value as, and the value (nil: NULL). text sends it in text.
type bp struct {
	oid   uint32
	as    uint32
	value any
	text  bool
}

const (
	oidInt2        = 21
	oidInt4        = 23
	oidInt8        = 20
	oidText        = 25
	oidVarchar     = 1043
	oidNumeric     = 1700
	oidFloat8      = 701
	oidTimestamptz = 1184
	oidTimestamp   = 1114
	oidDate        = 1082
	oidInt8Array   = 1016
	oidTextArray   = 1009
	oidNumArray    = 1231
	oidJSONB       = 3802
)

// typed: the parameter's OID is sent; untyped: the server infers it.
func typed(oid uint32, v any) bp   { return bp{oid: oid, as: oid, value: v} }
func untyped(oid uint32, v any) bp { return bp{as: oid, value: v} }
func textParam(oid uint32, s string) bp {
	return bp{oid: oid, value: s, text: true}
}

// txnBinaryBlocks are the blocks of binary-parameter writes. Lines are
// numbered from 100000 so that messages tell them from the file's.
func txnBinaryBlocks() []txnBlock {
	line := 100000
	results := [][]int16{nil, binaryResults}
	step := func(sql string, prepared bool, params ...bp) txnStep {
		line++
		b := &binParams{results: results[line%2], prepared: prepared}
		for _, p := range params {
			b.oids = append(b.oids, p.oid)
			if p.text {
				b.formats = append(b.formats, 0)
				b.values = append(b.values, []byte(p.value.(string)))
				continue
			}
			b.formats = append(b.formats, 1)
			b.values = append(b.values, enc(p.as, p.value))
		}
		q := sqlQuery{sql: sql, line: line}
		var err error
		if q.ordered, err = topLevelOrderBy(sql); err != nil {
			panic(err)
		}
		return txnStep{q: q, bin: b}
	}
	plain := func(sql string) txnStep {
		line++
		q := sqlQuery{sql: sql, line: line}
		q.ordered, _ = topLevelOrderBy(sql)
		return txnStep{q: q}
	}
	block := func(steps ...txnStep) txnBlock { return txnBlock{steps: steps, line: steps[0].q.line} }
	x := func(sql string, params ...bp) txnStep { return step(sql, false, params...) }
	p := func(sql string, params ...bp) txnStep { return step(sql, true, params...) }

	inf := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	ninf := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	return []txnBlock{
		// Autocommit writes, every parameter binary, typed and untyped.
		block(x("UPDATE customers SET credit = $2, name = $3, signup = $4 WHERE customer_id = $1 RETURNING customer_id, credit, name, signup",
			typed(oidInt8, int64(150)), typed(oidNumeric, numeric("1234.56")), typed(oidText, "bin-Zoë"), typed(oidDate, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)))),
		block(x("UPDATE customers SET credit = $2, name = $3 WHERE customer_id = $1 RETURNING customer_id, credit, name",
			untyped(oidInt8, int64(390)), untyped(oidNumeric, numeric("-0.5")), untyped(oidText, "bin-untyped"))),
		block(x("UPDATE customers SET name = $2 WHERE customer_id = $1 RETURNING customer_id, name",
			typed(oidInt4, int32(260)), typed(oidText, "int4 key"))),
		block(x("UPDATE customers SET name = $2 WHERE customer_id = $1 RETURNING customer_id, name",
			typed(oidInt2, int16(12)), typed(oidText, "int2 key"))),
		// A key given as a binary numeric, float8 or (for a timestamptz
		// key) timestamp parameter: Postgres converts it first. The proxy
		// read the bytes as a key by their length (UPDATE 0 where Postgres
		// updates a row; a row stored on another shard than its key's).
		block(x("UPDATE customers SET name = name || '!' WHERE customer_id = $1 RETURNING customer_id", typed(oidNumeric, numeric("0")))),
		block(x("UPDATE customers SET name = name || '!' WHERE customer_id = $1 RETURNING customer_id", typed(oidFloat8, float64(150)))),
		block(x("UPDATE customers SET name = name || '?' WHERE customer_id = $1 RETURNING customer_id", typed(oidNumeric, numeric("150")))),
		block(x("INSERT INTO customers (customer_id, name) VALUES ($1, 'float key')", typed(oidFloat8, float64(151)))),
		block(plain("SET TimeZone = 'America/St_Johns'"),
			x("INSERT INTO readings (at, sensor) VALUES ($1, 1)", typed(oidTimestamp, time.Date(2024, 3, 31, 23, 0, 0, 0, time.UTC))),
			plain("RESET TimeZone")),
		block(x("UPDATE customers SET name = 'null key' WHERE customer_id = $1 RETURNING customer_id", typed(oidInt8, nil))),
		block(x("INSERT INTO customers (customer_id, name) VALUES ($1, $2)", typed(oidInt8, nil), typed(oidText, "null key"))),
		block(x("INSERT INTO orders (order_id, customer_id, status, total, qty, discount, created_at, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16), ($17, $18, $19, $20, $21, $22, $23, $24) RETURNING *",
			typed(oidInt8, int64(6001)), typed(oidInt8, int64(7)), typed(oidText, "bin"), typed(oidNumeric, numeric("10.50")), typed(oidInt4, int32(1)), typed(oidNumeric, numeric("0.0001")), typed(oidTimestamptz, utc("2024-07-01 10:00:00.123456Z")), typed(oidText, "ß"),
			typed(oidInt8, int64(6002)), typed(oidInt8, int64(150)), typed(oidText, "bin"), typed(oidNumeric, numeric("99999.99")), typed(oidInt4, int32(2)), typed(oidNumeric, numeric("NaN")), typed(oidTimestamptz, inf), typed(oidText, nil),
			typed(oidInt8, int64(6003)), typed(oidInt8, int64(390)), typed(oidText, ""), typed(oidNumeric, numeric("-1")), typed(oidInt4, nil), typed(oidNumeric, numeric("0.00000000000000000001")), typed(oidTimestamptz, ninf), typed(oidText, "日本"))),
		block(x("INSERT INTO customers (customer_id, name, credit) VALUES ($1, $2, $3), ($4, $5, $6) RETURNING customer_id, name, credit",
			untyped(oidInt8, int64(6001)), untyped(oidText, "u1"), untyped(oidNumeric, numeric("1.5")),
			untyped(oidInt8, int64(-6002)), untyped(oidText, "u2"), untyped(oidNumeric, numeric("2.25")))),
		// Text keys: text, varchar, unspecified; non-ASCII.
		block(x("UPDATE events SET payload = $2, amount = $3, at = $4 WHERE stream = $1 AND seq = $5 RETURNING stream, seq, payload, amount, at",
			typed(oidText, "日本-3"), typed(oidText, "bin-π"), typed(oidNumeric, numeric("3.14159")), typed(oidTimestamptz, utc("2024-03-31 23:59:59.999999Z")), typed(oidInt8, int64(1)))),
		block(x("UPDATE events SET kind = $2 WHERE stream = $1 RETURNING stream, seq",
			typed(oidVarchar, "zz-9"), typed(oidVarchar, "varchar"))),
		block(x("DELETE FROM events WHERE stream = $1 AND seq <= $2 RETURNING stream, seq, amount",
			untyped(oidText, "acct-1"), untyped(oidInt8, int64(3)))),
		block(x("UPDATE events SET kind = 'any' WHERE stream = ANY ($1) AND seq = 2 RETURNING stream, seq",
			typed(oidTextArray, []string{"acct-1", "zz-9", "日本-3", "Box-2"}))),
		block(x("INSERT INTO events (stream, seq, event_id, amount) VALUES ($1, $2, $3, $4), ($5, $2, $3, $4) RETURNING stream, seq",
			typed(oidText, "bin-ü"), typed(oidInt8, int64(1)), textParam(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), typed(oidNumeric, numeric("0.10")), typed(oidText, "acct-1"))),
		// Arrays and jsonb values; mixed formats.
		block(x("INSERT INTO wallets (customer_id, wallet_id, label, balance, tags, limits, attrs, updated_at) VALUES ($1, 70, $2, $3, $4, $5, $6, $7), ($8, 70, $2, $3, $4, $5, $6, $7) RETURNING *",
			typed(oidInt8, int64(7)), typed(oidText, "bin"), typed(oidNumeric, numeric("12.30")), typed(oidTextArray, []string{"a,b", "", "日本"}),
			typed(oidNumArray, []pgtype.Numeric{numeric("1.50"), numeric("NaN")}), typed(oidJSONB, map[string]any{"n": 1, "s": "x"}),
			typed(oidTimestamptz, utc("2024-12-31 23:59:59.5Z")), typed(oidInt8, int64(390)))),
		block(x("UPDATE wallets SET balance = balance + $2, label = $3 WHERE customer_id = $1 AND wallet_id = $4 RETURNING customer_id, wallet_id, balance, label",
			typed(oidInt8, int64(7)), textParam(oidNumeric, "0.70"), typed(oidText, "mixed"), textParam(0, "70"))),
		block(x("UPDATE orders SET note = 'any8' WHERE customer_id = ANY ($1) AND qty = 4 RETURNING customer_id, order_id",
			typed(oidInt8Array, []int64{12, 150, 390}))),
		// Upsert and INSERT ... SELECT by a binary key.
		block(x("INSERT INTO customers (customer_id, name, credit) VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO UPDATE SET credit = customers.credit + EXCLUDED.credit RETURNING customer_id, name, credit",
			typed(oidInt8, int64(150)), typed(oidText, "upsert"), typed(oidNumeric, numeric("0.01")))),
		block(x("INSERT INTO customers (customer_id, name) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM customers WHERE customer_id = $1) RETURNING customer_id",
			typed(oidInt8, int64(6010)), typed(oidText, "insert-select"))),
		// The timestamptz key: bounds of by_day's ranges, infinities,
		// a timestamp parameter (read in the session's TimeZone) and a
		// text one with an offset.
		block(x("INSERT INTO readings (at, sensor, value, note) VALUES ($1, 7, $3, $4), ($2, 7, $3, $4), ($5, 7, $3, $4), ($6, 7, $3, $4)",
			typed(oidTimestamptz, utc("2024-03-31 23:59:59.999999Z")), typed(oidTimestamptz, utc("2024-04-01 00:00:00Z")), typed(oidNumeric, numeric("7.25")),
			typed(oidText, "bin"), typed(oidTimestamptz, inf), typed(oidTimestamptz, ninf))),
		block(x("INSERT INTO readings (at, sensor, value) VALUES ($1, 8, 1) RETURNING at",
			typed(oidTimestamptz, utc("2024-07-31 23:00:00-01:00")))),
		block(x("UPDATE readings SET value = value + $2 WHERE at = $1 RETURNING at, sensor, value",
			typed(oidTimestamptz, utc("2024-04-01 00:00:00Z")), typed(oidNumeric, numeric("0.5")))),
		block(x("UPDATE readings SET note = 'ts' WHERE at = $1 RETURNING at, sensor",
			typed(oidTimestamp, time.Date(2024, 3, 31, 23, 59, 59, 999999000, time.UTC)))),
		block(x("UPDATE readings SET note = 'text-offset' WHERE at = $1 RETURNING at, sensor",
			textParam(oidTimestamptz, "2024-04-01 01:00:00+01"))),
		block(x("DELETE FROM readings WHERE at = $1 RETURNING sensor, note", untyped(oidTimestamptz, inf))),
		block(x("DELETE FROM readings WHERE at = ANY ($1) RETURNING sensor, note",
			typed(1185, []time.Time{utc("2024-01-01 00:00:00Z"), utc("2024-08-01 00:00:00Z")}))),
		// Transactions of binary writes over several shards.
		block(plain("BEGIN"),
			x("UPDATE orders SET total = total + $2 WHERE customer_id = $1 AND order_id = $3 RETURNING total",
				typed(oidInt8, int64(7)), typed(oidNumeric, numeric("5")), typed(oidInt8, int64(6001))),
			x("UPDATE orders SET total = total - $2 WHERE customer_id = $1 AND order_id = $3 RETURNING total",
				typed(oidInt8, int64(150)), typed(oidNumeric, numeric("5")), typed(oidInt8, int64(6002))),
			x("SELECT sum(total), count(*) FROM orders WHERE customer_id = ANY ($1)", typed(oidInt8Array, []int64{7, 150, 390})),
			x("SELECT order_id, total FROM orders WHERE order_id >= $1 ORDER BY order_id", typed(oidInt8, int64(6000))),
			plain("SAVEPOINT bin"),
			x("DELETE FROM orders WHERE customer_id = $1 AND order_id = $2 RETURNING order_id", typed(oidInt4, int32(390)), typed(oidInt8, int64(6003))),
			x("SELECT count(*) FROM orders WHERE order_id >= $1", typed(oidInt8, int64(6000))),
			plain("ROLLBACK TO SAVEPOINT bin"),
			x("INSERT INTO readings (at, sensor, value) VALUES ($1, 11, $2), ($3, 11, $2)",
				typed(oidTimestamptz, utc("2024-02-02 02:02:02Z")), typed(oidNumeric, numeric("11")), typed(oidTimestamptz, utc("2024-11-11 11:11:11Z"))),
			x("SELECT count(*), sum(value) FROM readings WHERE sensor = $1", typed(oidInt4, int32(11))),
			plain("COMMIT")),
		block(plain("BEGIN"),
			p("UPDATE customers SET credit = credit + $2 WHERE customer_id = $1 RETURNING customer_id, credit", typed(oidInt8, int64(7)), typed(oidNumeric, numeric("1.01"))),
			p("UPDATE customers SET credit = credit + $2 WHERE customer_id = $1 RETURNING customer_id, credit", typed(oidInt8, int64(150)), typed(oidNumeric, numeric("2.02"))),
			p("UPDATE customers SET credit = credit + $2 WHERE customer_id = $1 RETURNING customer_id, credit", typed(oidInt8, int64(390)), typed(oidNumeric, numeric("3.03"))),
			p("SELECT sum(credit) FROM customers WHERE customer_id = ANY ($1)", typed(oidInt8Array, []int64{7, 150, 390})),
			p("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, $2, $3)", typed(oidInt8, int64(150)), typed(oidInt4, int32(1)), typed(oidNumeric, numeric("1"))),
			plain("COMMIT")),
		block(plain("BEGIN"),
			x("INSERT INTO ledger (customer_id, entry, amount, memo) VALUES ($1, $2, $3, $4), ($5, $2, $3, $4)",
				typed(oidInt8, int64(7)), typed(oidInt4, int32(950)), typed(oidNumeric, numeric("9.5")), typed(oidText, "bin-memo"), typed(oidInt8, int64(390))),
			x("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, $2, $3)", typed(oidInt8, int64(7)), typed(oidInt4, int32(950)), typed(oidNumeric, numeric("1"))),
			x("DELETE FROM ledger WHERE customer_id = $1 AND entry = $2 AND amount = $3", typed(oidInt8, int64(7)), typed(oidInt4, int32(950)), typed(oidNumeric, numeric("1.00"))),
			x("SELECT customer_id, entry, amount, memo FROM ledger WHERE entry = $1 ORDER BY customer_id", typed(oidInt4, int32(950))),
			plain("COMMIT")),
	}
}

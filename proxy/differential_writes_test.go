package proxy_test

// The write differential suite: the statements of
// testdata/differential/writes.sql (UPDATE, DELETE, INSERT, upserts,
// writing CTEs) run one after the other on an unsharded oracle and through
// the proxy over three shards, both loaded with the read suite's data
// (genDiffData) plus a wallets table of jsonb and array columns. Each
// statement must give the oracle's command tag, result columns and
// RETURNING rows (a multiset: RETURNING has no order), or fail on both
// with the same SQLSTATE, or be refused by the proxy with 0A000 and a hint
// (then the oracle skips it, so that both stay alike). After every
// statement the tables it names are read back, on connections of their
// own, through the proxy and on the oracle and must be equal; the
// reference table's copy on every shard must equal the oracle's table;
// and every row of a sharded table must sit on the shard the proxy routes
// its key to (read on the shards directly: a write can leave the right
// contents for a full scan and still put a row where no keyed statement
// finds it). A refused or failed statement must have changed nothing.
// Statements rotate through the simple protocol and the extended one with
// text and with binary results (prepared statements when they have
// parameters), shifted by one per strategy, so that each runs in several.
// Every other strategy runs with two_phase_commit: true.
//
// When the tables differ, the test reports the statement and copies the
// oracle's rows back through the proxy (which places them anew), so that
// the following statements report their own differences.
// DIFF_WRITES_SHOW=1 logs every statement's outcome; DIFF_WRITES_FILE=path
// runs another statement file.

import (
	"bytes"
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
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// walletsDDL adds a table of the types the read suite's schema lacks
// (jsonb, text[], numeric[]), sharded by customer_id like customers, with
// a unique constraint that includes the key for ON CONFLICT.
const walletsDDL = `CREATE TABLE wallets (
    customer_id int8 NOT NULL,
    wallet_id   int4 NOT NULL,
    label       text,
    balance     numeric(12,2),
    tags        text[],
    limits      numeric[],
    attrs       jsonb,
    updated_at  timestamptz,
    PRIMARY KEY (customer_id, wallet_id),
    UNIQUE (customer_id, label)
)`

// writeTable is a table the suite reads back: its shard key ("" for the
// reference table) and an ORDER BY over all its columns (a total order,
// since each has a primary key among them).
type writeTable struct {
	name    string
	key     string
	orderBy string
}

var writeTables = []writeTable{
	{"customers", "customer_id", "1, 2, 3, 4, 5, 6, 7, 8"},
	{"orders", "customer_id", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"},
	{"order_items", "customer_id", "1, 2, 3, 4, 5, 6"},
	{"events", "stream", "1, 2, 3, 4, 5, 6, 7, 8"},
	{"wallets", "customer_id", "1, 2, 3, 4, 5, 6, 7::text, 8"},
	{"products", "", "1, 2, 3, 4, 5"},
}

// writeTargets finds the tables a statement names (partitions as their
// parent); tables it only reads are compared too, which costs little.
var writeTargets = regexp.MustCompile(`\b(customers|orders|order_items(?:_first|_rest)?|events|wallets|products)\b`)

func touchedTables(sql string) []writeTable {
	if f := strings.Fields(sql); len(f) > 0 && (strings.EqualFold(f[0], "SET") || strings.EqualFold(f[0], "RESET")) {
		return nil
	}
	var out []writeTable
	for _, m := range writeTargets.FindAllStringSubmatch(sql, -1) {
		name := strings.TrimSuffix(strings.TrimSuffix(m[1], "_first"), "_rest")
		i := slices.IndexFunc(writeTables, func(w writeTable) bool { return w.name == name })
		if !slices.ContainsFunc(out, func(w writeTable) bool { return w.name == name }) {
			out = append(out, writeTables[i])
		}
	}
	if len(out) == 0 {
		return writeTables
	}
	return out
}

// genWallets generates the wallets rows (fixed seed): about two per
// customer, arrays with NULL elements, quotes and commas, NaN, jsonb
// objects of several shapes.
func genWallets() diffTable {
	rng := rand.New(rand.NewPCG(20261127, 5))
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	tagPool := []string{`"vip"`, `"closed"`, `"a,b"`, `"日本"`, `""`, `NULL`, `"it's"`, `"new"`, `"x y"`}
	labels := []string{"main", "savings", "Reise", "日本", "o'clock"}
	attrPool := []string{`{}`, `{"n": 1}`, `{"n": 2.50, "tier": "silver"}`, `{"tier": "gold", "flags": [true, false, null]}`,
		`{"nested": {"a": [1, 2, {"b": null}]}, "n": -3}`, `{"name": "Zoë", "emoji": "🎉"}`, `[]`, `"scalar"`}
	w := diffTable{name: "wallets", key: 0,
		cols: []string{"customer_id", "wallet_id", "label", "balance", "tags", "limits", "attrs", "updated_at"}}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for cust := 1; cust <= 400; cust++ {
		if cust%5 == 0 {
			continue
		}
		for id := 1; id <= 1+rng.IntN(2); id++ {
			row := []string{strconv.Itoa(cust), strconv.Itoa(id)}
			if rng.IntN(6) == 0 {
				row = append(row, "NULL")
			} else {
				row = append(row, lit(labels[(cust+id)%len(labels)])) // distinct per customer
			}
			if rng.IntN(8) == 0 {
				row = append(row, "NULL")
			} else {
				row = append(row, fmt.Sprintf("%d.%02d", rng.IntN(2000)-200, rng.IntN(100)))
			}
			var tags []string
			for range rng.IntN(4) {
				tags = append(tags, tagPool[rng.IntN(len(tagPool))])
			}
			if rng.IntN(7) == 0 {
				row = append(row, "NULL")
			} else {
				row = append(row, lit("{"+strings.Join(tags, ",")+"}"))
			}
			switch rng.IntN(5) {
			case 0:
				row = append(row, "NULL")
			case 1:
				row = append(row, "'{}'")
			default:
				row = append(row, fmt.Sprintf("'{%d.5,%d,NaN}'", rng.IntN(100), rng.IntN(1000)))
			}
			if rng.IntN(9) == 0 {
				row = append(row, "NULL")
			} else {
				row = append(row, lit(attrPool[rng.IntN(len(attrPool))]))
			}
			if rng.IntN(10) == 0 {
				row = append(row, "NULL")
			} else {
				ts := base.Add(time.Duration(rng.IntN(365*24*3600)) * time.Second)
				row = append(row, lit(ts.Format("2006-01-02 15:04:05-07")))
			}
			w.rows = append(w.rows, row)
		}
	}
	return w
}

// writeCounts are one strategy's outcomes.
type writeCounts struct {
	equal, bothFailed, refused int
	wrong                      int            // statements after which the tables differed
	why                        map[string]int // refusal messages, numbers and names masked
}

func TestDifferentialWrites(t *testing.T) {
	file := diffDir + "writes.sql"
	if v := os.Getenv("DIFF_WRITES_FILE"); v != "" {
		file = v
	}
	stmts := readSQLFile(t, file)
	if len(stmts) < 60 && file == diffDir+"writes.sql" {
		t.Fatalf("%d statements in writes.sql; want at least 60", len(stmts))
	}
	schema := append(readSQLFile(t, diffDir+"schema.sql"), sqlQuery{sql: walletsDDL})
	data := append(genDiffData(), genWallets())
	show := os.Getenv("DIFF_WRITES_SHOW") != ""

	// The file must have one right answer: an oracle holding the rows in
	// reverse physical order must give the same results and contents
	// (an UPDATE ... FROM with several matches per row would not).
	t.Run("oracle_self_check", func(t *testing.T) {
		a := startOracle(t, "writes_a", schema, data)
		b := startOracle(t, "writes_b", schema, reverseRows(data))
		for _, q := range stmts {
			mode := q.modes()[0]
			ra, rb := runStatement(a, mode, q), runStatement(b, mode, q)
			if (ra.err == nil) != (rb.err == nil) || sqlState(ra.err) != sqlState(rb.err) {
				t.Fatalf("line %d: oracle errors differ (%v / %v)\n%s", q.line, ra.err, rb.err, q.sql)
			}
			if d := diffResults(ra, rb, false); d != "" {
				t.Fatalf("line %d: the result depends on the physical row order: %s\n%s", q.line, d, q.sql)
			}
			for _, tb := range touchedTables(q.sql) {
				if d := diffResults(readTable(a, tb), readTable(b, tb), true); d != "" {
					t.Fatalf("line %d: the contents of %s depend on the physical row order: %s\n%s", q.line, tb.name, d, q.sql)
				}
			}
		}
	})

	counts := map[string]*writeCounts{}
	for si, st := range diffStrategies {
		t.Run(st.name, func(t *testing.T) {
			body := st.strategies + strings.Replace(diffTables, "tables:\n",
				"tables:\n  wallets:     {key: customer_id, strategy: by_customer}\n", 1)
			if si%2 == 1 {
				// Multi-shard writes commit with two-phase commit; in the
				// extended protocol, at Sync (implicit.go).
				body += "two_phase_commit: true\n"
			}
			pc, oracle, reader := startWriteSuite(t, st, body, "writes_", schema, data)

			c := &writeCounts{why: map[string]int{}}
			counts[st.name] = c
			for i, q := range stmts {
				modes := []string{"simple", "extended", "binary"}
				if len(q.args) > 0 {
					modes = q.modes()
				}
				mode := modes[(i+si)%len(modes)]
				outcome := runWrite(t, oracle, pc, q, mode, c)
				if show {
					t.Logf("line %d (%s): %s", q.line, mode, outcome)
				}
				if bad := reader.compare(t, touchedTables(q.sql)); len(bad) > 0 {
					t.Errorf("line %d (%s): the tables differ from the oracle's, or hold misplaced rows, after this statement (%s)\n%s", q.line, mode, outcome, q.sql)
					c.wrong++
					reader.resync(t, bad)
					if len(reader.compare(t, bad)) > 0 {
						t.Fatalf("line %d: the tables still differ after copying the oracle's rows through the proxy", q.line)
					}
				}
			}
			if len(reader.compare(t, writeTables)) > 0 {
				c.wrong++
			}

			t.Logf("%s: %d statements: %d equal the oracle, %d fail on both alike, %d refused with 0A000, %d differ",
				st.name, len(stmts), c.equal, c.bothFailed, c.refused, c.wrong)
			for _, msg := range slices.Sorted(maps.Keys(c.why)) {
				t.Logf("refused %3d× %s", c.why[msg], msg)
			}
			if ran := c.equal + c.bothFailed; ran < len(stmts)*3/4 {
				t.Errorf("%s: only %d of %d statements ran: the proxy refuses too much", st.name, ran, len(stmts))
			}
		})
	}
	for _, st := range diffStrategies {
		if c := counts[st.name]; c != nil {
			t.Logf("%-10s equal %3d, both failed %2d, refused %2d, tables differed %2d", st.name, c.equal, c.bothFailed, c.refused, c.wrong)
		}
	}
}

// startWriteSuite starts one strategy's run of a write suite: the proxy
// over 3 shards (body: strategies and tables) and the oracle, each with
// schema and data, the rows checked to be on their keys' shards. The
// tables are read back on connections of their own (reader), untouched
// by the statements' session settings (DateStyle).
func startWriteSuite(t *testing.T, st diffStrategy, body, prefix string, schema []sqlQuery, data []diffTable) (*proxyConn, *pgconn.PgConn, *tableReader) {
	t.Helper()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: body})
	writeDirectory(t, f, st.dir)
	pc := newProxyConn(t, f)
	for _, s := range schema {
		if r := runQuery(pc.get(t), "simple", s); r.err != nil {
			t.Fatalf("schema through the proxy: %s\n%s", describeErr(r.err), s.sql)
		}
	}
	loadThroughProxy(t, pc, data)
	checkPlacement(t, f, st, data)
	oracle := startOracle(t, prefix+st.name, schema, data)
	reader := &tableReader{oracle: connectLike(t, oracle), proxy: newProxyConn(t, f), direct: map[string]*pgconn.PgConn{}}
	for _, sh := range []string{"s0", "s1", "s2"} {
		reader.direct[sh] = f.Direct(t, sh).PgConn()
	}
	return pc, oracle, reader
}

// runWrite runs q through the proxy and, unless the proxy refused it, on
// the oracle, records the outcome in c and returns it as text.
func runWrite(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn, q sqlQuery, mode string, c *writeCounts) string {
	t.Helper()
	got := runStatement(pc.get(t), mode, q)
	var pgErr *pgconn.PgError
	if errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "" {
		c.refused++
		c.why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
		pc.checkUsable(t)
		return "refused: " + describeErr(got.err)
	}
	want := runStatement(oracle, mode, q)
	switch {
	case got.err != nil && want.err != nil:
		pc.checkUsable(t)
		if sqlState(got.err) != sqlState(want.err) {
			t.Errorf("line %d (%s): proxy error %s, oracle error %s\n%s", q.line, mode, describeErr(got.err), describeErr(want.err), q.sql)
			return "different errors"
		}
		c.bothFailed++
		return "both failed: " + describeErr(want.err)
	case got.err != nil:
		pc.checkUsable(t)
		t.Errorf("line %d (%s): proxy error %s; the oracle ran it (%s, %d rows)\n%s", q.line, mode, describeErr(got.err), want.tag, len(want.rows), q.sql)
		return "proxy error"
	case want.err != nil:
		t.Errorf("line %d (%s): the proxy ran it (%s, %d rows); oracle error %s\n%s", q.line, mode, got.tag, len(got.rows), describeErr(want.err), q.sql)
		return "oracle error"
	}
	if st := pc.get(t).TxStatus(); st != 'I' {
		t.Errorf("line %d (%s): transaction status %q after the statement, want idle", q.line, mode, st)
	}
	if d := diffResults(want, got, false); d != "" {
		t.Errorf("line %d (%s): proxy differs from oracle (WRONG RESULT): %s\n%s", q.line, mode, d, q.sql)
		return "wrong result"
	}
	c.equal++
	return "equal: " + want.tag
}

// readTable reads all of a table's rows in a total order.
func readTable(c *pgconn.PgConn, tb writeTable) qresult {
	return runQuery(c, "simple", sqlQuery{sql: "SELECT * FROM " + tb.name + " ORDER BY " + tb.orderBy, ordered: true})
}

// tableReader reads tables back: on the oracle, through the proxy, and
// on each shard directly.
type tableReader struct {
	oracle *pgconn.PgConn
	proxy  *proxyConn
	direct map[string]*pgconn.PgConn
	port   map[string]string // server port -> shard
	owner  map[string]string // "table family|key" -> shard the proxy routes it to
}

// oracleDSN is the DSN of the database c is connected to, on the metadata
// server, where startOracle makes it.
func oracleDSN(t *testing.T, c *pgconn.PgConn) string {
	t.Helper()
	r := runQuery(c, "simple", sqlQuery{sql: "SELECT current_database()"})
	if r.err != nil || len(r.rows) != 1 {
		t.Fatalf("current_database(): %v %v", r.rows, r.err)
	}
	db, err := strconv.Unquote(r.rows[0])
	if err != nil {
		t.Fatal(err)
	}
	return sharedServers(t)[3].DSN(db)
}

// connectLike opens a second connection to c's database (on the metadata
// server, where startOracle makes it), closed when the test ends.
func connectLike(t *testing.T, c *pgconn.PgConn) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := pgconn.Connect(ctx, oracleDSN(t, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close(context.Background()) })
	return c2
}

// compare reads tables through the proxy and on the oracle, the
// reference table on every shard directly, and checks where the rows of
// sharded tables are; it reports differences and returns the tables that
// differ or hold misplaced rows.
func (r *tableReader) compare(t *testing.T, tables []writeTable) (differ []writeTable) {
	t.Helper()
	for _, tb := range tables {
		ok := true
		want := readTable(r.oracle, tb)
		if want.err != nil {
			t.Fatalf("reading %s on the oracle: %v", tb.name, want.err)
		}
		got := readTable(r.proxy.get(t), tb)
		if got.err != nil {
			t.Errorf("reading %s through the proxy: %s", tb.name, describeErr(got.err))
			ok = false
		} else if d := diffResults(want, got, true); d != "" {
			t.Errorf("%s through the proxy differs from the oracle's: %s", tb.name, d)
			ok = false
		}
		if !r.placed(t, tb) {
			ok = false
		}
		for _, sh := range []string{"s0", "s1", "s2"} {
			if tb.key != "" {
				break // sharded: placed read the shards
			}
			got := readTable(r.direct[sh], tb)
			if got.err != nil {
				t.Fatalf("reading %s on %s: %v", tb.name, sh, got.err)
			}
			if d := diffResults(want, got, true); d != "" {
				t.Errorf("reference table %s: the copy on %s differs from the oracle's: %s", tb.name, sh, d)
				ok = false
			}
		}
		if !ok {
			differ = append(differ, tb)
		}
	}
	return differ
}

// resync replaces the rows of tables, through the proxy, by the oracle's:
// TRUNCATE, then COPY (which the proxy splits by key, placing misplaced
// rows anew).
func (r *tableReader) resync(t *testing.T, tables []writeTable) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tb := range tables {
		var buf bytes.Buffer
		if _, err := r.oracle.CopyTo(ctx, &buf, "COPY (SELECT * FROM "+tb.name+") TO STDOUT"); err != nil {
			t.Fatalf("copying %s from the oracle: %v", tb.name, err)
		}
		if _, err := r.proxy.get(t).Exec(ctx, "TRUNCATE "+tb.name).ReadAll(); err != nil {
			t.Fatalf("TRUNCATE %s through the proxy: %s", tb.name, describeErr(err))
		}
		if _, err := r.proxy.get(t).CopyFrom(ctx, &buf, "COPY "+tb.name+" FROM STDIN"); err != nil {
			t.Fatalf("copying %s through the proxy: %s", tb.name, describeErr(err))
		}
	}
}

// placed reads tb's keys on every shard directly: each key must have all
// its rows on one shard, the one the proxy routes the key to (asked with
// a shard_key hint and inet_server_port(), once per key). It reports
// misplaced keys and returns whether there were none.
func (r *tableReader) placed(t *testing.T, tb writeTable) bool {
	t.Helper()
	if tb.key == "" {
		return true
	}
	if r.port == nil {
		r.port, r.owner = map[string]string{}, map[string]string{}
		for sh, c := range r.direct {
			res := runQuery(c, "simple", sqlQuery{sql: "SELECT inet_server_port()"})
			if res.err != nil || len(res.rows) != 1 {
				t.Fatalf("port of %s: %v", sh, res.err)
			}
			r.port[res.rows[0]] = sh
		}
	}
	family := "customers" // the tables sharded by by_customer share their keys' shards
	if tb.key == "stream" {
		family = "events"
	}
	where := map[string][]string{} // key -> shards holding rows of it
	for _, sh := range []string{"s0", "s1", "s2"} {
		res := runQuery(r.direct[sh], "simple", sqlQuery{sql: "SELECT " + tb.key + "::text FROM " + tb.name + " GROUP BY 1"})
		if res.err != nil {
			t.Fatalf("keys of %s on %s: %v", tb.name, sh, res.err)
		}
		for _, k := range res.rows {
			k, err := strconv.Unquote(k)
			if err != nil {
				t.Fatalf("key %s: %v", k, err)
			}
			where[k] = append(where[k], sh)
		}
	}
	bad := 0
	for _, k := range slices.Sorted(maps.Keys(where)) {
		shards := where[k]
		if len(shards) > 1 {
			t.Errorf("%s: rows of key %q on several shards: %v (MISPLACED ROWS)", tb.name, k, shards)
			bad++
			continue
		}
		o, ok := r.owner[family+"|"+k]
		if !ok {
			value := k
			if tb.key == "stream" {
				value = "'" + strings.ReplaceAll(k, "'", "''") + "'"
			}
			res := runQuery(r.proxy.get(t), "simple", sqlQuery{sql: "/* shard_key: " + family + " = " + value + " */ SELECT inet_server_port()"})
			switch {
			case res.err != nil:
				o = "none (" + describeErr(res.err) + ")"
				r.proxy.checkUsable(t)
			case len(res.rows) != 1:
				o = fmt.Sprintf("none (%d rows)", len(res.rows))
			default:
				o = r.port[res.rows[0]]
				r.owner[family+"|"+k] = o // keys stay where they are placed
			}
		}
		if o != shards[0] {
			t.Errorf("%s: the rows of key %q are on %s, but the proxy routes the key to %s (MISPLACED ROWS)", tb.name, k, shards[0], o)
			bad++
		}
	}
	return bad == 0
}

// runStatement runs q in mode as runQuery does, and keeps the result's
// columns when it has no rows (pgconn's Read drops them): a RETURNING
// that matches nothing still describes its columns in Postgres.
func runStatement(c *pgconn.PgConn, mode string, q sqlQuery) qresult {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var params [][]byte
	for _, a := range q.args {
		params = append(params, []byte(a))
	}
	var rr *pgconn.ResultReader
	var mrr *pgconn.MultiResultReader
	prepared := ""
	switch mode {
	case "simple":
		mrr = c.Exec(ctx, q.sql)
		if !mrr.NextResult() {
			err := mrr.Close()
			if err == nil {
				err = errors.New("no result for the statement")
			}
			return qresult{err: err}
		}
		rr = mrr.ResultReader()
	case "extended":
		rr = c.ExecParams(ctx, q.sql, params, nil, nil, nil)
	case "binary":
		rr = c.ExecParams(ctx, q.sql, params, nil, nil, binaryResults)
	case "prepared":
		prepared = fmt.Sprintf("diffw_%d", q.line)
		if _, err := c.Prepare(ctx, prepared, q.sql, nil); err != nil {
			return qresult{err: err}
		}
		rr = c.ExecPrepared(ctx, prepared, params, nil, binaryResults)
	default:
		panic("unknown mode " + mode)
	}
	fds, rows := readRows(rr)
	tag, err := rr.Close()
	if mrr != nil {
		if err == nil && mrr.NextResult() {
			err = errors.New("several results for one statement")
		}
		if cerr := mrr.Close(); err == nil {
			err = cerr
		}
	}
	if prepared != "" {
		if derr := c.Deallocate(ctx, prepared); err == nil {
			err = derr
		}
	}
	if err != nil {
		return qresult{err: err}
	}
	return formatResult(fds, rows, tag)
}

// readRows reads rr's rows (copied: pgconn reuses its buffers) and its
// columns, which it keeps even when no row came.
func readRows(rr *pgconn.ResultReader) ([]pgconn.FieldDescription, [][][]byte) {
	var rows [][][]byte
	for rr.NextRow() {
		row := make([][]byte, len(rr.Values()))
		for i, v := range rr.Values() {
			if v != nil {
				row[i] = slices.Clone(v)
				if row[i] == nil {
					row[i] = []byte{}
				}
			}
		}
		rows = append(rows, row)
	}
	return slices.Clone(rr.FieldDescriptions()), rows
}

// formatResult renders a statement's columns, rows and tag as the suites
// compare them (binary numerics in canonical form).
func formatResult(fds []pgconn.FieldDescription, rows [][][]byte, tag pgconn.CommandTag) qresult {
	var r qresult
	for _, fd := range fds {
		r.cols = append(r.cols, fmt.Sprintf("%s:%d(%d)/%d", fd.Name, fd.DataTypeOID, fd.TypeModifier, fd.Format))
	}
	for _, row := range rows {
		var b strings.Builder
		for i, v := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			if i < len(fds) && fds[i].Format == 1 && fds[i].DataTypeOID == numericOID {
				v = canonicalNumeric(v)
			} else if i < len(fds) && fds[i].Format == 1 && fds[i].DataTypeOID == numericArrayOID {
				v = canonicalNumericArray(v)
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				b.WriteString(strconv.Quote(string(v)))
			}
		}
		r.rows = append(r.rows, b.String())
	}
	r.tag = tag.String()
	return r
}

package proxy_test

// The differential suite (issue 3, "Acceptance"): the same data lives in one
// unsharded oracle Postgres and, behind the proxy, on three shards; every
// query of testdata/differential/queries.sql runs on both and the results
// must be identical: column names, type OIDs and modifiers, command tag,
// and rows as text (in order when the query has a top-level ORDER BY, as
// sorted multisets otherwise). The oracle decides what is right, so the
// suite encodes no expected output of its own. It runs once per strategy
// type; statements of refusals.sql must get 0A000 from the proxy while the
// oracle runs them fine.
//
// The oracle is a database on the fixture's metadata server: it holds no
// shard data, and the pgtest servers share settings (C collation, UTC), so
// text comparison and ordering agree with the shards'.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

const diffDir = "../testdata/differential/"

// diffTables shards the suite's tables; strategies by_customer and
// by_stream come from each diffStrategy.
const diffTables = `
tables:
  customers:   {key: customer_id, strategy: by_customer}
  orders:      {key: customer_id, strategy: by_customer}
  order_items: {key: customer_id, strategy: by_customer}
  events:      {key: stream, strategy: by_stream}
  products:    {reference: true}
default_shard: s0
`

// diffStrategy is one run of the suite. dir, when set, is written to the
// directory tables before any row is loaded (key -> shard), so that the
// directory places keys where its fallback would not.
type diffStrategy struct {
	name       string
	strategies string
	dir        map[string]map[string]string // table -> key -> shard
}

var diffStrategies = []diffStrategy{
	{name: "hash", strategies: `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
  by_stream:   {type: hash, key_type: text, shards: [s0, s1, s2]}
`},
	// Customer 7 (30% of the orders) is in the first range; stream names
	// starting with a-f and upper case go to s0, g-r to s1, the rest (z,
	// non-ASCII) to s2 (byte order, as the C collation compares).
	{name: "range", strategies: `
strategies:
  by_customer: {type: range, key_type: int, ranges: [{upper: 120, shard: s0}, {upper: 260, shard: s1}, {upper: null, shard: s2}]}
  by_stream:   {type: range, key_type: text, ranges: [{upper: g, shard: s0}, {upper: s, shard: s1}, {upper: null, shard: s2}]}
`},
	{name: "consistent", strategies: `
strategies:
  by_customer: {type: consistent, key_type: int, shards: [s0, s1, s2], partitions: 271}
  by_stream:   {type: consistent, key_type: text, shards: [s0, s1, s2]}
`},
	{name: "directory", strategies: `
strategies:
  h_customer:  {type: hash, key_type: int, shards: [s0, s1, s2]}
  c_stream:    {type: consistent, key_type: text, shards: [s0, s1, s2]}
  by_customer: {type: directory, table: dir_customer, fallback: h_customer}
  by_stream:   {type: directory, table: dir_stream, fallback: c_stream}
`, dir: map[string]map[string]string{
		"dir_customer": {"7": "s1", "1": "s2", "2": "s2", "3": "s2", "4": "s2", "5": "s2", "400": "s0"},
		"dir_stream":   {"acct-1": "s2", "日本-3": "s0", "zz-9": "s1"},
	}},
}

func TestDifferential(t *testing.T) {
	queries := readSQLFile(t, diffDir+"queries.sql")
	refusals := readSQLFile(t, diffDir+"refusals.sql")
	gathered := readSQLFile(t, diffDir+"gathered.sql")
	schema := readSQLFile(t, diffDir+"schema.sql")
	if len(queries) < 150 || len(refusals) < 30 || len(gathered) < 50 {
		t.Fatalf("%d queries, %d refusals and %d gathered; the acceptance asks for 150 queries and 30 refusals (and the gathered file has 50)", len(queries), len(refusals), len(gathered))
	}
	data := genDiffData()
	oracle := startOracle(t, "diff", schema, data)
	// Oracle answers do not depend on the strategy: computed once.
	oracleCache := map[string]qresult{}
	settings := "" // the session settings oracle results were computed under
	oracleRun := func(t *testing.T, mode string, q sqlQuery) qresult {
		key := settings + "\x00" + mode + "\x00" + q.sql + "\x00" + strings.Join(q.args, "\x00")
		r, ok := oracleCache[key]
		if !ok {
			r = runQuery(oracle, mode, q)
			oracleCache[key] = r
		}
		if r.err != nil {
			t.Fatalf("oracle rejects line %d (fix the query file): %v\n%s", q.line, r.err, q.sql)
		}
		return r
	}

	// A query compared in order must have one right answer: a second oracle
	// holding the rows in reverse physical order must agree with the first
	// (a sort with ties would come out differently), or the file is wrong.
	t.Run("oracle_self_check", func(t *testing.T) {
		reversed := startOracle(t, "diff_reversed", schema, reverseRows(data))
		for _, q := range queries {
			mode := q.modes()[0]
			if d := diffResults(oracleRun(t, mode, q), runQuery(reversed, mode, q), q.ordered); d != "" {
				t.Errorf("line %d: the result depends on the physical row order (ORDER BY not total?; proxy below means the reversed oracle): %s\n%s", q.line, d, q.sql)
			}
		}
	})

	for _, st := range diffStrategies {
		t.Run(st.name, func(t *testing.T) {
			f, pc := startDiffProxy(t, st, schema, data)
			checkPlacement(t, f, st, data)

			t.Run("queries", func(t *testing.T) {
				// One line per failing query at the end: the list to work through.
				var refused, wrong []string
				hung := 0 // queries that timed out: after 3, the rest fail unrun
				for _, q := range queries {
					for _, mode := range q.modes() {
						t.Run(fmt.Sprintf("line%d/%s", q.line, mode), func(t *testing.T) {
							if hung >= 3 {
								t.Fatalf("line %d (%s) not run: the proxy timed out on %d queries", q.line, mode, hung)
							}
							want := oracleRun(t, mode, q)
							got := runQuery(pc.get(t), mode, q)
							if pgconn.Timeout(got.err) {
								hung++
							}
							if got.err != nil {
								refused = append(refused, fmt.Sprintf("%d/%s: %s", q.line, mode, describeErr(got.err)))
								t.Errorf("line %d (%s): proxy error %v\n%s", q.line, mode, describeErr(got.err), q.sql)
								pc.checkUsable(t)
								return
							}
							if d := diffResults(want, got, q.ordered); d != "" {
								wrong = append(wrong, fmt.Sprintf("%d/%s", q.line, mode))
								t.Errorf("line %d (%s): proxy differs from oracle: %s\n%s", q.line, mode, d, q.sql)
							}
						})
					}
				}
				if len(wrong) > 0 {
					t.Logf("%s: %d query runs differ from the oracle (WRONG RESULTS): %v", st.name, len(wrong), wrong)
				}
				if len(refused) > 0 {
					t.Logf("%s: %d query runs fail with an error:\n%s", st.name, len(refused), strings.Join(refused, "\n"))
				}
			})
			// What the merge refuses and one Postgres answers over the
			// gathered rows: every run equal to the oracle's.
			t.Run("gathered", func(t *testing.T) {
				for _, q := range gathered {
					for _, mode := range q.modes() {
						t.Run(fmt.Sprintf("line%d/%s", q.line, mode), func(t *testing.T) {
							checkEqual(t, pc, q, mode, oracleRun(t, mode, q), runQuery(pc.get(t), mode, q))
						})
					}
				}
			})
			t.Run("random", func(t *testing.T) { runRandomDifferential(t, oracle, pc) })
			// Date and time queries again under session settings that change
			// their text (and the text the shards send the proxy): the proxy
			// must replay them on every shard and parse the shards' output in
			// that style when it converts merged values to binary.
			for _, ss := range diffSettings {
				t.Run("session_"+ss.name, func(t *testing.T) {
					for _, c := range []*pgconn.PgConn{oracle, pc.get(t)} {
						for _, set := range ss.sets {
							if r := runQuery(c, "simple", sqlQuery{sql: set}); r.err != nil {
								t.Fatalf("%s: %v", set, r.err)
							}
						}
					}
					settings = ss.name
					defer func() {
						settings = ""
						for _, c := range []*pgconn.PgConn{oracle, pc.get(t)} {
							if r := runQuery(c, "simple", sqlQuery{sql: "RESET ALL"}); r.err != nil {
								t.Errorf("RESET ALL: %v", r.err)
							}
						}
					}()
					for _, q := range queries {
						if !diffTimeQuery.MatchString(q.sql) {
							continue
						}
						for _, mode := range q.modes() {
							t.Run(fmt.Sprintf("line%d/%s", q.line, mode), func(t *testing.T) {
								want := oracleRun(t, mode, q)
								got := runQuery(pc.get(t), mode, q)
								var pgErr *pgconn.PgError
								if ss.refusable && errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "" {
									// Refused clearly: merging needs ISO output (see ss.refusable).
									pc.checkUsable(t)
									return
								}
								checkEqual(t, pc, q, mode, want, got)
							})
						}
					}
				})
			}
			t.Run("refusals", func(t *testing.T) {
				for _, q := range refusals {
					t.Run(fmt.Sprintf("line%d", q.line), func(t *testing.T) {
						checkRefusal(t, oracle, pc, q)
					})
				}
				t.Run("in_transaction", func(t *testing.T) {
					checkRefusalInTransaction(t, pc, refusals[0])
				})
			})
		})
	}
}

// checkEqual fails t unless the proxy's result got of q (in mode)
// equals the oracle's want; after a proxy error the connection must
// still work.
func checkEqual(t *testing.T, pc *proxyConn, q sqlQuery, mode string, want, got qresult) {
	t.Helper()
	if got.err != nil {
		t.Errorf("line %d (%s): proxy error %v\n%s", q.line, mode, describeErr(got.err), q.sql)
		pc.checkUsable(t)
		return
	}
	if d := diffResults(want, got, q.ordered); d != "" {
		t.Errorf("line %d (%s): proxy differs from oracle: %s\n%s", q.line, mode, d, q.sql)
	}
}

// diffSettings change how dates, times and numbers are written as text,
// one group per pass. St. John's has a half-hour offset; SQL, DMY writes
// 25/11/2026 and zone abbreviations.
//
// refusable: under a DateStyle other than ISO the merge cannot read dates
// and timestamps (SQL style writes zone abbreviations, not offsets), so a
// query that must compare or convert them across shards may be refused
// with 0A000 and a hint; every other query must still equal the oracle.
var diffSettings = []struct {
	name      string
	sets      []string
	refusable bool
}{
	{"timezone", []string{"SET TimeZone = 'America/St_Johns'", "SET IntervalStyle = 'postgres_verbose'", "SET extra_float_digits = 0"}, false},
	{"datestyle", []string{"SET DateStyle = 'SQL, DMY'"}, true},
}

// diffTimeQuery picks the queries whose results hold dates or timestamps.
var diffTimeQuery = regexp.MustCompile(`created_at|signup|ship_date|\bat\b|date_trunc|SELECT \*`)

// checkRefusal asserts that q is valid SQL (the oracle runs it, inside a
// rolled-back transaction), that the proxy refuses it with 0A000 and a
// hint, and that the proxy connection still works afterwards.
func checkRefusal(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn, q sqlQuery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := oracle.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	want := runQuery(oracle, "simple", q)
	if _, err := oracle.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if want.err != nil {
		t.Fatalf("oracle rejects refusal at line %d (fix the file): %v\n%s", q.line, want.err, q.sql)
	}
	got := runQuery(pc.get(t), "simple", q)
	var pgErr *pgconn.PgError
	switch {
	case got.err == nil:
		verdict := "differs from the oracle: " + diffResults(want, got, q.ordered)
		if diffResults(want, got, q.ordered) == "" {
			verdict = "happens to equal the oracle's on this data"
		}
		t.Errorf("line %d: not refused; the proxy returned %d rows (oracle %d), result %s\n%s",
			q.line, len(got.rows), len(want.rows), verdict, q.sql)
	case !errors.As(got.err, &pgErr):
		t.Errorf("line %d: want SQLSTATE 0A000, got a non-Postgres error %v\n%s", q.line, got.err, q.sql)
	case pgErr.Code != "0A000":
		t.Errorf("line %d: want SQLSTATE 0A000, got %s\n%s", q.line, describeErr(got.err), q.sql)
	case pgErr.Hint == "":
		t.Errorf("line %d: 0A000 without a hint: %q\n%s", q.line, pgErr.Message, q.sql)
	}
	pc.checkUsable(t)
}

// checkRefusalInTransaction asserts that a refusal inside a transaction
// behaves like any Postgres error there: the transaction is aborted (25P02
// for the next statement) until ROLLBACK, which leaves the connection idle
// and usable.
func checkRefusalInTransaction(t *testing.T, pc *proxyConn, q sqlQuery) {
	steps := []struct {
		sql      string
		wantCode string // "" = success
		wantTx   byte   // transaction status afterwards
	}{
		{"BEGIN", "", 'T'},
		{"SELECT count(*) FROM orders WHERE customer_id = 7", "", 'T'},
		{q.sql, "0A000", 'E'},
		{"SELECT 1", "25P02", 'E'},
		{"ROLLBACK", "", 'I'},
		{"SELECT count(*) FROM customers WHERE customer_id = 7", "", 'I'},
	}
	for _, s := range steps {
		r := runQuery(pc.get(t), "simple", sqlQuery{sql: s.sql})
		var pgErr *pgconn.PgError
		code := ""
		if errors.As(r.err, &pgErr) {
			code = pgErr.Code
		} else if r.err != nil {
			t.Fatalf("%s: %v", s.sql, r.err)
		}
		if code != s.wantCode {
			t.Errorf("%s: SQLSTATE %q (%v), want %q", s.sql, code, r.err, s.wantCode)
		}
		if st := pc.get(t).TxStatus(); st != s.wantTx {
			t.Errorf("%s: transaction status %q, want %q", s.sql, st, s.wantTx)
		}
	}
}

// sqlQuery is one statement of a .sql file of the suite.
type sqlQuery struct {
	sql     string
	line    int      // where it starts in the file
	args    []string // text bind parameters: the query runs in the extended protocol only
	ordered bool     // top-level ORDER BY: compare rows in order
}

// modes lists the protocols a query runs in: parameters need the extended
// protocol (unnamed statement with text results, named statement with
// binary results, as pgx asks for them); other queries run in the simple
// protocol and as unnamed extended statements with binary results (a value
// the proxy computes must be encoded in the format the client asked for).
func (q sqlQuery) modes() []string {
	if len(q.args) > 0 {
		return []string{"extended", "prepared"}
	}
	return []string{"simple", "binary"}
}

// readSQLFile reads statements ending with ";" at the end of a line;
// lines starting with "--" are comments. A trailing "-- args: a b c"
// after the ";" gives text bind parameters $1, $2, ... (space separated).
func readSQLFile(t testing.TB, path string) []sqlQuery {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var out []sqlQuery
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		} else {
			cur.WriteByte('\n')
		}
		var args []string
		if i := strings.Index(line, "; -- args:"); i >= 0 {
			args = strings.Fields(line[i+len("; -- args:"):])
			line = line[:i+1]
		}
		if !strings.HasSuffix(line, ";") {
			cur.WriteString(line)
			continue
		}
		cur.WriteString(strings.TrimSuffix(line, ";"))
		q := sqlQuery{sql: cur.String(), line: start, args: args}
		cur.Reset()
		q.ordered, err = topLevelOrderBy(q.sql)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, start, err)
		}
		out = append(out, q)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s:%d: statement without a final ';'", path, start)
	}
	return out
}

// topLevelOrderBy reports whether the statement's result order is defined
// by an ORDER BY (Postgres' own parser decides).
func topLevelOrderBy(sql string) (bool, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return false, err
	}
	if len(tree.Stmts) != 1 {
		return false, fmt.Errorf("want one statement, got %d", len(tree.Stmts))
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	return sel != nil && len(sel.SortClause) > 0, nil
}

// binaryResults asks for every result column in binary format.
var binaryResults = []int16{1}

// qresult is a result reduced to text: what a client can observe.
type qresult struct {
	cols []string // name, type OID and modifier per column
	rows []string // one line per row, values quoted, NULL unquoted
	tag  string
	err  error
}

// runQuery runs q in mode: "simple" (Query message), "extended" (unnamed
// statement, text results), "binary" (unnamed statement, binary results)
// or "prepared" (named statement, binary results). Binary values are
// compared byte for byte, numerics after canonicalNumeric: the binary
// encodings of the suite's types are otherwise unique per value (numeric
// keeps its display scale), so equal bytes mean equal text.
func runQuery(c *pgconn.PgConn, mode string, q sqlQuery) qresult {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var params [][]byte
	for _, a := range q.args {
		params = append(params, []byte(a))
	}
	var res *pgconn.Result
	switch mode {
	case "simple":
		rs, err := c.Exec(ctx, q.sql).ReadAll()
		if err != nil {
			return qresult{err: err}
		}
		if len(rs) != 1 {
			return qresult{err: fmt.Errorf("%d results for one statement", len(rs))}
		}
		res = rs[0]
	case "extended":
		res = c.ExecParams(ctx, q.sql, params, nil, nil, nil).Read()
	case "binary":
		res = c.ExecParams(ctx, q.sql, params, nil, nil, binaryResults).Read()
	case "prepared":
		name := fmt.Sprintf("diff_%d", q.line)
		if _, err := c.Prepare(ctx, name, q.sql, nil); err != nil {
			return qresult{err: err}
		}
		res = c.ExecPrepared(ctx, name, params, nil, binaryResults).Read()
		if err := c.Deallocate(ctx, name); err != nil && res.Err == nil {
			res.Err = err
		}
	default:
		panic("unknown mode " + mode)
	}
	if res.Err != nil {
		return qresult{err: res.Err}
	}
	var r qresult
	for _, fd := range res.FieldDescriptions {
		r.cols = append(r.cols, fmt.Sprintf("%s:%d(%d)/%d", fd.Name, fd.DataTypeOID, fd.TypeModifier, fd.Format))
	}
	for _, row := range res.Rows {
		var b strings.Builder
		for i, v := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			if fd := res.FieldDescriptions[i]; fd.Format == 1 && fd.DataTypeOID == numericOID {
				v = canonicalNumeric(v)
			} else if fd.Format == 1 && fd.DataTypeOID == numericArrayOID {
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
	r.tag = res.CommandTag.String()
	return r
}

const (
	numericOID = 1700
	// Sign words of numeric's special values (src/backend/utils/adt/numeric.c).
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

const numericArrayOID = 1231

// canonicalNumericArray applies canonicalNumeric to every element of a
// binary numeric[] (header: ndim, has-null flag, element type, then
// ndim (length, lower bound) pairs; then each element's length and bytes).
func canonicalNumericArray(v []byte) []byte {
	if len(v) < 12 {
		return v
	}
	ndim := int(binary.BigEndian.Uint32(v[0:4]))
	head := 12 + 8*ndim
	if ndim < 0 || len(v) < head {
		return v
	}
	out := append([]byte(nil), v[:head]...)
	for rest := v[head:]; len(rest) > 0; {
		if len(rest) < 4 {
			return v
		}
		n := int32(binary.BigEndian.Uint32(rest[:4]))
		rest = rest[4:]
		if n < 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(n))
			continue
		}
		if int(n) > len(rest) {
			return v
		}
		e := canonicalNumeric(rest[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
		rest = rest[n:]
	}
	return out
}

// canonicalNumeric rewrites a binary numeric as Postgres' numeric_send
// writes it: no leading or trailing zero base-10000 digits, and weight 0
// for zero. Other encodings of the same value (with the same display
// scale, which is kept) decode to the same number in every client, so the
// suite does not count them as differences.
func canonicalNumeric(v []byte) []byte {
	if len(v) < 8 {
		return v
	}
	n := int(binary.BigEndian.Uint16(v[0:2]))
	if len(v) != 8+2*n {
		return v // malformed: compared as is, and will differ
	}
	weight := int16(binary.BigEndian.Uint16(v[2:4]))
	sign := binary.BigEndian.Uint16(v[4:6])
	digits := v[8:]
	for len(digits) > 0 && digits[0] == 0 && digits[1] == 0 {
		digits = digits[2:]
		weight--
	}
	for len(digits) > 0 && digits[len(digits)-2] == 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-2]
	}
	if len(digits) == 0 && sign != numericNaN && sign != numericPInf && sign != numericNInf { // zero
		weight, sign = 0, 0
	}
	out := make([]byte, 8, 8+len(digits))
	binary.BigEndian.PutUint16(out[0:2], uint16(len(digits)/2))
	binary.BigEndian.PutUint16(out[2:4], uint16(weight))
	binary.BigEndian.PutUint16(out[4:6], sign)
	copy(out[6:8], v[6:8]) // display scale
	if sign == numericPInf || sign == numericNInf {
		// Postgres sends bits of the infinity's header as its display
		// scale (32); decoders ignore it.
		out[6], out[7] = 0, 0
	}
	return append(out, digits...)
}

func TestCanonicalNumeric(t *testing.T) {
	num := func(weight int16, sign, dscale uint16, digits ...uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
		b = binary.BigEndian.AppendUint16(b, uint16(weight))
		b = binary.BigEndian.AppendUint16(b, sign)
		b = binary.BigEndian.AppendUint16(b, dscale)
		for _, d := range digits {
			b = binary.BigEndian.AppendUint16(b, d)
		}
		return b
	}
	cases := []struct {
		name    string
		in, out []byte
	}{
		{"canonical stays", num(0, 0, 2, 970), num(0, 0, 2, 970)},
		{"trailing zero digit", num(0, 0, 2, 970, 0), num(0, 0, 2, 970)},
		{"leading zero digit", num(1, 0x4000, 0, 0, 5), num(0, 0x4000, 0, 5)},
		{"zero with weight -1", num(-1, 0, 4), num(0, 0, 4)},
		{"zero from digits", num(2, 0x4000, 1, 0, 0), num(0, 0, 1)},
		{"NaN stays", num(0, numericNaN, 0), num(0, numericNaN, 0)},
		{"-Infinity stays", num(0, numericNInf, 0), num(0, numericNInf, 0)},
		{"Infinity's display scale ignored", num(0, numericPInf, 32), num(0, numericPInf, 0)},
		{"malformed stays", []byte{0, 2, 0}, []byte{0, 2, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := canonicalNumeric(tc.in); !slices.Equal(got, tc.out) {
				t.Errorf("canonicalNumeric(%x) = %x, want %x", tc.in, got, tc.out)
			}
		})
	}
}

// diffResults describes how got differs from want, or returns "".
func diffResults(want, got qresult, ordered bool) string {
	var d []string
	if !slices.Equal(want.cols, got.cols) {
		d = append(d, fmt.Sprintf("columns %v, oracle %v", got.cols, want.cols))
	}
	if want.tag != got.tag {
		d = append(d, fmt.Sprintf("tag %q, oracle %q", got.tag, want.tag))
	}
	if ordered {
		if slices.Equal(want.rows, got.rows) {
			return strings.Join(d, "; ")
		}
		i := 0
		for i < len(want.rows) && i < len(got.rows) && want.rows[i] == got.rows[i] {
			i++
		}
		d = append(d, fmt.Sprintf("%d rows, oracle %d; first difference at row %d: proxy %s, oracle %s",
			len(got.rows), len(want.rows), i+1, rowAt(got.rows, i), rowAt(want.rows, i)))
		if sameMultiset(want.rows, got.rows) {
			d = append(d, "(same rows, wrong order)")
		}
		return strings.Join(d, "; ")
	}
	missing, extra := multisetDiff(want.rows, got.rows)
	if len(missing)+len(extra) > 0 {
		d = append(d, fmt.Sprintf("%d rows, oracle %d; %d missing %s; %d extra %s",
			len(got.rows), len(want.rows), len(missing), firstFew(missing), len(extra), firstFew(extra)))
	}
	return strings.Join(d, "; ")
}

func rowAt(rows []string, i int) string {
	if i < len(rows) {
		return "(" + rows[i] + ")"
	}
	return "(none)"
}

func firstFew(rows []string) string {
	const n = 4
	if len(rows) > n {
		return "[(" + strings.Join(rows[:n], "), (") + "), ...]"
	}
	if len(rows) == 0 {
		return "[]"
	}
	return "[(" + strings.Join(rows, "), (") + ")]"
}

func sameMultiset(a, b []string) bool {
	m, e := multisetDiff(a, b)
	return len(m)+len(e) == 0
}

// multisetDiff returns the rows of want missing from got and the rows of
// got not in want, counting duplicates.
func multisetDiff(want, got []string) (missing, extra []string) {
	count := map[string]int{}
	for _, r := range want {
		count[r]++
	}
	for _, r := range got {
		count[r]--
	}
	for _, r := range want {
		if count[r] > 0 {
			missing = append(missing, r)
			count[r]--
		}
	}
	for _, r := range got {
		if count[r] < 0 {
			extra = append(extra, r)
			count[r]++
		}
	}
	return missing, extra
}

func describeErr(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		s := fmt.Sprintf("%s %s", pgErr.Code, pgErr.Message)
		if pgErr.Hint != "" {
			s += " (hint: " + pgErr.Hint + ")"
		}
		return s
	}
	return err.Error()
}

// proxyConn is the suite's one client connection to the proxy, reopened
// (and reported) when a failing query took it down.
type proxyConn struct {
	f *fixture
	c *pgconn.PgConn
}

// startDiffProxy is the suite's proxy over 3 shards sharded by st, with
// the schema made and the data loaded through it.
func startDiffProxy(t *testing.T, st diffStrategy, schema []sqlQuery, data []diffTable) (*fixture, *proxyConn) {
	t.Helper()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: st.strategies + diffTables})
	writeDirectory(t, f, st.dir)
	pc := newProxyConn(t, f)
	for _, s := range schema {
		if r := runQuery(pc.get(t), "simple", s); r.err != nil {
			t.Fatalf("schema through the proxy: %v\n%s", r.err, s.sql)
		}
	}
	loadThroughProxy(t, pc, data)
	return f, pc
}

func newProxyConn(t *testing.T, f *fixture) *proxyConn {
	p := &proxyConn{f: f}
	p.get(t)
	t.Cleanup(func() {
		if p.c != nil {
			p.c.Close(context.Background())
		}
	})
	return p
}

func (p *proxyConn) get(t testing.TB) *pgconn.PgConn {
	t.Helper()
	if p.c != nil && !p.c.IsClosed() {
		return p.c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, p.f.DSN())
	if err != nil {
		t.Fatalf("connecting to the proxy: %v", err)
	}
	p.c = c
	return c
}

// checkUsable asserts that the connection survived an error: it answers
// the next query, outside any transaction.
func (p *proxyConn) checkUsable(t testing.TB) {
	t.Helper()
	if p.c.IsClosed() {
		t.Errorf("the proxy connection closed after the error")
		return
	}
	r := runQuery(p.c, "simple", sqlQuery{sql: "SELECT 1 AS alive"})
	if r.err != nil || len(r.rows) != 1 || r.rows[0] != `"1"` {
		t.Errorf("the proxy connection is not usable after the error: %v %v", r.rows, r.err)
	}
	if st := p.c.TxStatus(); st != 'I' {
		t.Errorf("transaction status %q after the error, want idle", st)
	}
}

// startOracle creates and loads a database on the metadata server: the
// unsharded Postgres every result is compared with.
func startOracle(t testing.TB, name string, schema []sqlQuery, data []diffTable) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	meta := sharedServers(t)[3]
	db := shared.DatabaseName("oracle_" + name + "_")
	if err := meta.CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.Connect(ctx, meta.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	for _, s := range schema {
		if _, err := c.Exec(ctx, s.sql).ReadAll(); err != nil {
			t.Fatalf("oracle schema: %v\n%s", err, s.sql)
		}
	}
	for _, tb := range data {
		for _, rows := range chunks(tb.rows, 200) {
			if _, err := c.Exec(ctx, tb.insert(rows)).ReadAll(); err != nil {
				t.Fatalf("oracle load %s: %v", tb.name, err)
			}
		}
	}
	if _, err := c.Exec(ctx, "ANALYZE").ReadAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

// loadThroughProxy inserts the data with multi-row INSERTs of 200 rows
// whose keys span shards: the router splits each one per shard, and
// checkPlacement then reads every shard directly.
func loadThroughProxy(t *testing.T, p *proxyConn, data []diffTable) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tb := range data {
		for _, rows := range chunks(tb.rows, 200) {
			if _, err := p.get(t).Exec(ctx, tb.insert(rows)).ReadAll(); err != nil {
				t.Fatalf("loading %s through the proxy: %s", tb.name, describeErr(err))
			}
		}
	}
	for _, s := range []string{"ANALYZE customers", "ANALYZE orders", "ANALYZE order_items", "ANALYZE products", "ANALYZE events"} {
		if _, err := p.get(t).Exec(ctx, s).ReadAll(); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// checkPlacement reads the shards directly: every row landed exactly once,
// every shard holds some rows of every sharded table (so that the queries
// really merge), the reference table is complete everywhere, and the
// directory overrides were honoured.
func checkPlacement(t *testing.T, f *fixture, st diffStrategy, data []diffTable) {
	t.Helper()
	for _, tb := range data {
		total := 0
		for _, sh := range []string{"s0", "s1", "s2"} {
			n := countOn(t, f, sh, "SELECT count(*) FROM "+tb.name)
			total += n
			switch {
			case tb.key < 0 && n != len(tb.rows):
				t.Errorf("reference table %s: %d rows on %s, want %d", tb.name, n, sh, len(tb.rows))
			case tb.key >= 0 && n == 0:
				t.Errorf("%s: no rows on %s; the strategy's placement leaves a shard empty", tb.name, sh)
			}
		}
		if tb.key >= 0 && total != len(tb.rows) {
			t.Errorf("%s: %d rows over all shards, want %d", tb.name, total, len(tb.rows))
		}
	}
	if st.dir == nil {
		return
	}
	checks := map[string]string{
		"dir_customer": "SELECT count(*) FROM customers WHERE customer_id = %s",
		"dir_stream":   "SELECT count(*) FROM events WHERE stream = '%s'",
	}
	for table, keys := range st.dir {
		for key, shard := range keys {
			q := fmt.Sprintf(checks[table], key)
			if n := countOn(t, f, shard, q); n == 0 {
				t.Errorf("directory %s places %s on %s, but %s finds no rows there", table, key, shard, q)
			}
		}
	}
}

func countOn(t testing.TB, f *fixture, shard, sql string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	if err := f.Direct(t, shard).QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s on %s: %v", sql, shard, err)
	}
	return n
}

// writeDirectory places keys in the directory tables (in the metadata
// database) before the proxy has looked any of them up. The table DDL is
// the proxy's own (strategies/directory.go); it adds its triggers later.
func writeDirectory(t testing.TB, f *fixture, dir map[string]map[string]string) {
	t.Helper()
	if len(dir) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.Meta.Connect(ctx, f.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for table, keys := range dir {
		if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (key text PRIMARY KEY, shard text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"); err != nil {
			t.Fatal(err)
		}
		for k, sh := range keys {
			if _, err := c.Exec(ctx, "INSERT INTO "+table+" (key, shard) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET shard = EXCLUDED.shard", k, sh); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// diffTable is one table's generated rows as SQL literals.
type diffTable struct {
	name string
	cols []string
	key  int // index of the shard key column; -1 for the reference table
	rows [][]string
}

func reverseRows(data []diffTable) []diffTable {
	out := slices.Clone(data)
	for i := range out {
		out[i].rows = slices.Clone(out[i].rows)
		slices.Reverse(out[i].rows)
	}
	return out
}

func (tb diffTable) insert(rows [][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", tb.name, strings.Join(tb.cols, ", "))
	for i, r := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strings.Join(r, ", ") + ")")
	}
	return b.String()
}

func chunks(rows [][]string, n int) [][][]string {
	var out [][][]string
	for len(rows) > n {
		out = append(out, rows[:n])
		rows = rows[n:]
	}
	if len(rows) > 0 {
		out = append(out, rows)
	}
	return out
}

// Value pools: duplicates on purpose, non-ASCII (é, ß, 日本, emoji), empty
// strings, quotes and backslashes. Numerics equal in value are always
// spelt the same, so that DISTINCT and GROUP BY have one right text.
var (
	diffNames = []string{"Émile", "Zoë", "Straße", "日本太郎", "🎉party", "", "alice", "Bob", "bob",
		"o'Brien", "ñandú", "Ærø", "zed", "Ünal", "名無し", "a b", "A", `back\slash`, "ß", "émile"}
	diffCountries = []string{"FR", "DE", "JP", "US", "BR", "", "日本"}
	diffStatuses  = []string{"new", "paid", "shipped", "cancelled", "returned", "Paid", "ß-special", ""}
	diffDiscounts = []string{"0", "0.5", "1.25", "3.125", "0.0001", "10", "-2.5", "99.99"}
	diffNotes     = []string{"gift", "Geschenk für Oma", "ギフト", "🎁 wrap it", "fragile!", "rush", "it's late", "naïve café"}
	diffCategory  = []string{"tools", "food", "日本", "", "Garden", "ßtuff"}
	diffKinds     = []string{"created", "paid", "shipped", "refunded", "noted", "Émis"}
	diffPayloads  = []string{"{}", "ok", "ünïcödé", "🚀🚀", "line\nbreak", "tab\there", "日本語", "x"}
	diffFracs     = []string{"", ".5", ".25", ".125", ".0001", ".99"}
	diffPrefixes  = []string{"acct", "order", "pay", "Straße", "émile", "日本", "zz", "🎉", "ñandú", "Box"}
)

// genDiffData generates the suite's rows deterministically (fixed seed).
// Customer 7 owns 30% of the orders (a skewed key); stream acct-1 20% of
// the events.
func genDiffData() []diffTable {
	rng := rand.New(rand.NewPCG(20261125, 3))
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	pick := func(pool []string) string { return pool[rng.IntN(len(pool))] }
	// maybeNull returns NULL one time in n.
	maybeNull := func(n int, v func() string) string {
		if rng.IntN(n) == 0 {
			return "NULL"
		}
		return v()
	}
	boolean := func() string { return strconv.FormatBool(rng.IntN(2) == 0) }
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	timestamp := func() string {
		ts := base.Add(time.Duration(rng.IntN(365*24*60)) * time.Minute)
		if rng.IntN(3) == 0 {
			ts = ts.Add(time.Duration(rng.IntN(1_000_000)) * time.Microsecond)
		}
		return lit(ts.Format("2006-01-02 15:04:05.999999-07"))
	}
	date := func() string {
		return lit(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(2000)).Format("2006-01-02"))
	}

	customers := diffTable{name: "customers", key: 0,
		cols: []string{"customer_id", "name", "email", "country", "credit", "vip", "signup", "region_id"}}
	for id := 1; id <= 400; id++ {
		customers.rows = append(customers.rows, []string{
			strconv.Itoa(id),
			maybeNull(25, func() string {
				n := pick(diffNames)
				if rng.IntN(3) == 0 {
					n += strconv.Itoa(rng.IntN(50))
				}
				return lit(n)
			}),
			maybeNull(7, func() string { return lit(fmt.Sprintf("user%d@example.com", rng.IntN(300))) }),
			maybeNull(8, func() string { return lit(pick(diffCountries)) }),
			maybeNull(10, func() string { return fmt.Sprintf("%d.%02d", rng.IntN(200000)-20000, rng.IntN(100)) }),
			maybeNull(5, boolean),
			maybeNull(6, date),
			maybeNull(4, func() string { return strconv.Itoa(rng.IntN(10)) }),
		})
	}

	orders := diffTable{name: "orders", key: 1,
		cols: []string{"order_id", "customer_id", "status", "total", "qty", "discount", "created_at", "shipped", "note", "ship_date"}}
	items := diffTable{name: "order_items", key: 0,
		cols: []string{"customer_id", "order_id", "line", "product_id", "qty", "price"}}
	for id := 1; id <= 3000; id++ {
		cust := 1 + rng.IntN(400)
		if rng.IntN(10) < 3 {
			cust = 7
		}
		orders.rows = append(orders.rows, []string{
			strconv.Itoa(id), strconv.Itoa(cust),
			maybeNull(30, func() string { return lit(pick(diffStatuses)) }),
			maybeNull(20, func() string { return fmt.Sprintf("%d.%02d", rng.IntN(1000), rng.IntN(100)) }),
			maybeNull(15, func() string { return strconv.Itoa(1 + rng.IntN(20)) }),
			maybeNull(4, func() string { return pick(diffDiscounts) }),
			maybeNull(40, timestamp),
			maybeNull(6, boolean),
			maybeNull(3, func() string {
				if rng.IntN(4) == 0 {
					return "''"
				}
				return lit(pick(diffNotes))
			}),
			maybeNull(2, date),
		})
		for line := 1; line <= rng.IntN(4); line++ {
			product := maybeNull(20, func() string { return strconv.Itoa(1 + rng.IntN(55)) }) // 51..55 do not exist
			items.rows = append(items.rows, []string{
				strconv.Itoa(cust), strconv.Itoa(id), strconv.Itoa(line), product,
				maybeNull(12, func() string { return strconv.Itoa(1 + rng.IntN(5)) }),
				maybeNull(12, func() string { return fmt.Sprintf("%d.%03d", rng.IntN(500), rng.IntN(1000)) }),
			})
		}
	}

	products := diffTable{name: "products", key: -1, cols: []string{"product_id", "name", "category", "price", "active"}}
	for id := 1; id <= 50; id++ {
		products.rows = append(products.rows, []string{
			strconv.Itoa(id),
			lit(fmt.Sprintf("%s-%02d", pick([]string{"prod", "Ware", "品", "ñu"}), id)),
			maybeNull(6, func() string { return lit(pick(diffCategory)) }),
			fmt.Sprintf("%d.%02d", rng.IntN(300), rng.IntN(100)),
			maybeNull(5, boolean),
		})
	}

	events := diffTable{name: "events", key: 0,
		cols: []string{"stream", "seq", "event_id", "customer_id", "kind", "payload", "at", "amount"}}
	seqs := map[string]int{}
	for i := 0; i < 1500; i++ {
		stream := fmt.Sprintf("%s-%d", pick(diffPrefixes), rng.IntN(15))
		if rng.IntN(5) == 0 {
			stream = "acct-1"
		}
		seqs[stream]++
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.IntN(256))
		}
		uuid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		events.rows = append(events.rows, []string{
			lit(stream), strconv.Itoa(seqs[stream]), lit(uuid),
			maybeNull(5, func() string { return strconv.Itoa(1 + rng.IntN(400)) }),
			maybeNull(10, func() string { return lit(pick(diffKinds)) }),
			maybeNull(6, func() string {
				if rng.IntN(5) == 0 {
					return "''"
				}
				return lit(pick(diffPayloads))
			}),
			maybeNull(20, timestamp),
			maybeNull(4, func() string { return fmt.Sprintf("%d%s", rng.IntN(2000)-500, pick(diffFracs)) }),
		})
	}
	return []diffTable{customers, orders, items, products, events}
}

// memoryBody range-shards big on k: each shard holds a third of the rows,
// loaded directly on the shards with generate_series.
const memoryBody = `
strategies:
  by_k: {type: range, key_type: int, ranges: [{upper: 20001, shard: s0}, {upper: 40001, shard: s1}, {upper: null, shard: s2}]}
tables:
  big: {key: k, strategy: by_k}
default_shard: s0
`

// TestDifferentialMergeMemory runs multi-shard SELECTs over 60000 rows
// (about 3 MB of row text) with merge_memory at its minimum, 64kB. What
// can stream (a k-way merge, LIMIT, aggregates with few groups) must give
// the oracle's exact result; what must hold every group or value (a sort
// over aggregated groups) must fail with 53200 out_of_memory and leave the
// connection usable; what may do either (GROUP BY / DISTINCT with 60000
// groups: exact when the merge streams sorted groups, else 53200) must do
// one of the two, never a wrong result or another error.
func TestDifferentialMergeMemory(t *testing.T) {
	const rows = 60000
	f := startFixture(t, fixtureOptions{Shards: 3, Top: "merge_memory: 64kB\n", Body: memoryBody})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ddl = "CREATE TABLE big (k int8 PRIMARY KEY, g int4, v text)"
	load := func(from, to int) string {
		return fmt.Sprintf("INSERT INTO big SELECT k, k %% 100, md5(k::text) FROM generate_series(%d, %d) k", from, to)
	}
	pc := newProxyConn(t, f)
	if _, err := pc.get(t).Exec(ctx, ddl).ReadAll(); err != nil {
		t.Fatalf("DDL through the proxy: %v", err)
	}
	for i, sh := range []string{"s0", "s1", "s2"} {
		if _, err := f.Direct(t, sh).Exec(ctx, load(1+i*rows/3, (i+1)*rows/3)); err != nil {
			t.Fatalf("loading %s: %v", sh, err)
		}
	}
	oracle := startOracle(t, "memory", []sqlQuery{{sql: ddl}, {sql: load(1, rows)}}, nil)

	type outcome int
	const (
		exact outcome = 1 << iota
		outOfMemory
	)
	cases := []struct {
		sql  string
		want outcome
	}{
		{"SELECT k, v FROM big ORDER BY v, k", exact},
		{"SELECT * FROM big", exact},
		{"SELECT k FROM big ORDER BY v DESC, k LIMIT 10 OFFSET 50000", exact},
		{"SELECT count(*), sum(k), min(v), max(v), avg(g) FROM big", exact},
		{"SELECT g, count(*), sum(k) FROM big GROUP BY g ORDER BY g", exact},
		{"SELECT v, count(*) FROM big GROUP BY v", exact | outOfMemory},
		{"SELECT DISTINCT v FROM big", exact | outOfMemory},
		{"SELECT DISTINCT v FROM big ORDER BY v", exact | outOfMemory},
		{"SELECT count(DISTINCT v) FROM big", exact | outOfMemory},
		{"SELECT v, count(*) FROM big GROUP BY v ORDER BY count(*) DESC, v", outOfMemory},
		// Gathered (plan_build_gather.go): every row of big is held.
		{"SELECT k FROM big WHERE g > (SELECT avg(g) FROM big)", outOfMemory},
		{"SELECT g, count(*) FROM big GROUP BY ROLLUP (g)", outOfMemory},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("q%d", i), func(t *testing.T) {
			q := sqlQuery{sql: tc.sql, line: i}
			var err error
			if q.ordered, err = topLevelOrderBy(q.sql); err != nil {
				t.Fatal(err)
			}
			want := runQuery(oracle, "simple", q)
			if want.err != nil {
				t.Fatalf("oracle: %v", want.err)
			}
			got := runQuery(pc.get(t), "simple", q)
			var pgErr *pgconn.PgError
			switch {
			case got.err == nil && tc.want&exact == 0:
				t.Errorf("%s: succeeded under a 64kB budget (%d rows, diff from oracle: %q); want 53200", q.sql, len(got.rows), diffResults(want, got, q.ordered))
			case got.err == nil:
				if d := diffResults(want, got, q.ordered); d != "" {
					t.Errorf("%s: differs from the oracle: %s", q.sql, d)
				}
			case errors.As(got.err, &pgErr) && pgErr.Code == "53200" && tc.want&outOfMemory != 0:
				t.Logf("%s: 53200 %s", q.sql, pgErr.Message)
				pc.checkUsable(t)
			default:
				t.Errorf("%s: %s; want %s", q.sql, describeErr(got.err), map[outcome]string{
					exact: "the oracle's result", outOfMemory: "SQLSTATE 53200", exact | outOfMemory: "the oracle's result or 53200"}[tc.want])
				pc.checkUsable(t)
			}
		})
	}
}

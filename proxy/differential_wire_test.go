package proxy_test

// The wire differential: extended-protocol message sequences (Parse, Bind,
// Describe, Execute with row limits, Close, Flush, Sync, in pipelines) sent
// byte for byte to an unsharded oracle Postgres and through the proxy to
// two shards holding the same rows; the client must see the same backend
// messages from both, in the same order: RowDescriptions (names, type OIDs,
// sizes, modifiers, formats), ParameterDescriptions, DataRows as bytes
// (binary ones too), command tags, PortalSuspended, errors (SQLSTATE and
// message) and transaction status.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const wireSchema = `CREATE TABLE items (
    id     int8 PRIMARY KEY,
    k      int4,
    name   varchar(20),
    amount numeric(10,2),
    u      uuid,
    at     timestamptz,
    flag   bool,
    data   bytea,
    tags   int4[],
    small  int2
)`

// wireRows has ids 1..12 (both shards hold some) and repeated k.
func wireRows() [][]string {
	var rows [][]string
	for i := 1; i <= 12; i++ {
		rows = append(rows, []string{
			fmt.Sprint(i), fmt.Sprint(i % 4), fmt.Sprintf("'n%02d'", 13-i), fmt.Sprintf("%d.%02d", i*10, i),
			fmt.Sprintf("'00000000-0000-0000-0000-%012d'", i), fmt.Sprintf("'2024-01-%02d 10:00:00+00'", i),
			fmt.Sprint(i%2 == 0), fmt.Sprintf("'\\x%02x'", i), fmt.Sprintf("'{%d,%d}'", i, i+1), fmt.Sprint(i % 3),
		})
	}
	return rows
}

var wireItems = diffTable{name: "items", cols: []string{"id", "k", "name", "amount", "u", "at", "flag", "data", "tags", "small"}, key: 0}

type wireFixture struct {
	f         *fixture
	oracleDSN string
}

func startWireFixture(t *testing.T, extraDDL ...string) *wireFixture {
	t.Helper()
	f := startFixture(t, fixtureOptions{Body: `
two_phase_commit: true
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  items:  {key: id, strategy: by_id}
  evolve: {key: id, strategy: by_id}
default_shard: s0
`})
	schema := []sqlQuery{{sql: wireSchema}, {sql: "CREATE TABLE evolve (id int8 PRIMARY KEY, v int4)"}}
	for _, d := range extraDDL {
		schema = append(schema, sqlQuery{sql: d})
	}
	tb := wireItems
	tb.rows = wireRows()
	evolve := diffTable{name: "evolve", cols: []string{"id", "v"}, key: 0, rows: [][]string{{"1", "10"}, {"2", "20"}, {"3", "30"}, {"4", "40"}}}
	oracle := startOracle(t, "wire", schema, []diffTable{tb, evolve})
	pc := newProxyConn(t, f)
	for _, s := range schema {
		if r := runQuery(pc.get(t), "simple", s); r.err != nil {
			t.Fatalf("schema through the proxy: %v", r.err)
		}
	}
	for _, d := range []diffTable{tb, evolve} {
		if r := runQuery(pc.get(t), "simple", sqlQuery{sql: d.insert(d.rows)}); r.err != nil {
			t.Fatalf("loading %s through the proxy: %v", d.name, r.err)
		}
	}
	if directCount(t, f, "s0", "items", "true") == 0 || directCount(t, f, "s1", "items", "true") == 0 {
		t.Fatal("want items on both shards")
	}
	return &wireFixture{f: f, oracleDSN: oracleDSN(t, oracle)}
}

// wireConn is a raw protocol connection (authenticated by pgconn, then
// hijacked).
type wireConn struct {
	hc *pgconn.HijackedConn
}

func dialWire(t *testing.T, dsn string) *wireConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return &wireConn{hc: hc}
}

// exchange sends msgs and reads backend messages until done says the
// exchange is complete (by default: one ReadyForQuery per Sync or Query sent).
func (w *wireConn) exchange(t *testing.T, msgs []pgproto3.FrontendMessage, done func([]string) bool) []string {
	t.Helper()
	syncs := 0
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			syncs++
		}
		w.hc.Frontend.Send(m)
	}
	if err := w.hc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	if done == nil {
		done = func(got []string) bool {
			n := 0
			for _, g := range got {
				if strings.HasPrefix(g, "Z ") {
					n++
				}
			}
			return n == syncs
		}
	}
	var got []string
	w.hc.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !done(got) {
		m, err := w.hc.Frontend.Receive()
		if err != nil {
			return append(got, "receive: "+err.Error())
		}
		if s := renderWire(m); s != "" {
			got = append(got, s)
		}
	}
	return got
}

// renderWire prints what a client sees of m; what legitimately differs
// between two databases (table OIDs, parameter statuses, PIDs) is left out.
func renderWire(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.ParseComplete:
		return "ParseComplete"
	case *pgproto3.BindComplete:
		return "BindComplete"
	case *pgproto3.CloseComplete:
		return "CloseComplete"
	case *pgproto3.NoData:
		return "NoData"
	case *pgproto3.PortalSuspended:
		return "PortalSuspended"
	case *pgproto3.EmptyQueryResponse:
		return "EmptyQueryResponse"
	case *pgproto3.ReadyForQuery:
		return "Z " + string(m.TxStatus)
	case *pgproto3.CommandComplete:
		return "C " + string(m.CommandTag)
	case *pgproto3.ParameterDescription:
		return fmt.Sprint("ParameterDescription ", m.ParameterOIDs)
	case *pgproto3.RowDescription:
		var b strings.Builder
		b.WriteString("RowDescription")
		for _, f := range m.Fields {
			fmt.Fprintf(&b, " [%s oid=%d size=%d typmod=%d fmt=%d att=%d tbl=%v]", f.Name, f.DataTypeOID, f.DataTypeSize, f.TypeModifier, f.Format, f.TableAttributeNumber, f.TableOID != 0)
		}
		return b.String()
	case *pgproto3.DataRow:
		var b strings.Builder
		b.WriteString("DataRow")
		for _, v := range m.Values {
			if v == nil {
				b.WriteString(" NULL")
			} else {
				fmt.Fprintf(&b, " %q", v)
			}
		}
		return b.String()
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("Error %s %s: %s", m.Severity, m.Code, m.Message)
	case *pgproto3.NoticeResponse:
		return fmt.Sprintf("Notice %s %s: %s", m.Severity, m.Code, m.Message)
	case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
		return ""
	}
	return fmt.Sprintf("%T %+v", m, m)
}

// wireStep is one exchange: messages, and when the reply is complete (nil:
// at the ReadyForQuery of every Sync).
type wireStep struct {
	msgs []pgproto3.FrontendMessage
	done func([]string) bool
	// other: run on a second connection (the same on both sides).
	other bool
}

// wireCase runs steps on fresh connections to the oracle and the proxy and
// reports where they differ.
func (wf *wireFixture) diff(t *testing.T, name string, steps []wireStep) bool {
	t.Helper()
	o, p := dialWire(t, wf.oracleDSN), dialWire(t, wf.f.DSN())
	var o2, p2 *wireConn
	ok := true
	for i, st := range steps {
		oc, pc := o, p
		if st.other {
			if o2 == nil {
				o2, p2 = dialWire(t, wf.oracleDSN), dialWire(t, wf.f.DSN())
			}
			oc, pc = o2, p2
		}
		want := oc.exchange(t, st.msgs, st.done)
		got := pc.exchange(t, st.msgs, st.done)
		if os.Getenv("WIRE_SHOW") != "" {
			t.Logf("%s, step %d:\nPostgres:\n  %s\nproxy:\n  %s", name, i+1, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("%s, step %d: the proxy differs from Postgres\nPostgres:\n  %s\nproxy:\n  %s", name, i+1, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
			ok = false
		}
	}
	return ok
}

func parse(name, q string, oids ...uint32) *pgproto3.Parse {
	return &pgproto3.Parse{Name: name, Query: q, ParameterOIDs: oids}
}

func bind(portal, stmt string, pfmt []int16, params [][]byte, rfmt ...int16) *pgproto3.Bind {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt, ParameterFormatCodes: pfmt, Parameters: params, ResultFormatCodes: rfmt}
}

func describeS(name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: 'S', Name: name}
}
func describeP(name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: 'P', Name: name}
}
func execute(portal string, max uint32) *pgproto3.Execute {
	return &pgproto3.Execute{Portal: portal, MaxRows: max}
}
func query(q string) *pgproto3.Query { return &pgproto3.Query{String: q} }

var (
	wSync  = &pgproto3.Sync{}
	wFlush = &pgproto3.Flush{}
)

func msgs(m ...pgproto3.FrontendMessage) []pgproto3.FrontendMessage { return m }

func step(m ...pgproto3.FrontendMessage) wireStep { return wireStep{msgs: m} }

func texts(vs ...string) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		out[i] = []byte(v)
	}
	return out
}

// TestWireResultTypeChange: Postgres fixes a prepared statement's result
// type when it is prepared; after DDL that changes it, every execution
// fails with 0A000 "cached plan must not change result type" until the
// type is back, while a statement prepared after the DDL runs with the
// new type. Through the proxy a multi-shard statement returned rows of
// the new type (three columns under a two-column description), and a
// client preparing the statement after the DDL got the error from a
// backend's copy prepared before it.
func TestWireResultTypeChange(t *testing.T) {
	wf := startWireFixture(t)
	other := func(m ...pgproto3.FrontendMessage) wireStep { return wireStep{msgs: m, other: true} }
	addW := other(query("ALTER TABLE evolve ADD COLUMN w int"))
	dropW := other(query("ALTER TABLE evolve DROP COLUMN w"))
	toInt8 := other(query("ALTER TABLE evolve ALTER COLUMN v TYPE int8"))
	toInt4 := other(query("ALTER TABLE evolve ALTER COLUMN v TYPE int4"))
	// As pgx prepares (Parse, Describe statement), and as libpq runs a
	// prepared statement (Bind, Describe portal, Execute).
	prepare := func(name, q string) wireStep { return step(parse(name, q), describeS(name), wSync) }
	run := func(name string, args ...string) wireStep {
		return step(bind("", name, nil, texts(args...)), describeP(""), execute("", 0), wSync)
	}
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"one shard", []wireStep{
			prepare("s", "SELECT * FROM evolve WHERE id = $1"), run("s", "1"),
			addW, run("s", "1"), run("s", "2"), step(describeS("s"), wSync),
			dropW, run("s", "1"), run("s", "2"),
		}},
		{"all shards", []wireStep{
			prepare("s", "SELECT * FROM evolve ORDER BY id"), run("s"),
			addW, run("s"), step(describeS("s"), wSync),
			dropW, run("s"),
		}},
		{"all shards, merged", []wireStep{
			prepare("s", "SELECT v, count(*) FROM evolve GROUP BY v ORDER BY v"), run("s"),
			toInt8, run("s"),
			toInt4, run("s"),
		}},
		{"a column's type, one shard", []wireStep{
			step(parse("s", "SELECT v FROM evolve WHERE id = $1"), wSync), run("s", "3"),
			toInt8, run("s", "3"), run("s", "4"),
			toInt4, run("s", "3"),
		}},
		{"never described", []wireStep{
			step(parse("s", "SELECT * FROM evolve WHERE id = $1"), bind("", "s", nil, texts("1")), execute("", 0), wSync),
			addW,
			step(bind("", "s", nil, texts("1")), execute("", 0), wSync),
			dropW,
			step(bind("", "s", nil, texts("1")), execute("", 0), wSync),
		}},
		{"SQL PREPARE, one shard", []wireStep{
			step(query("PREPARE q(int8) AS SELECT * FROM evolve WHERE id = $1")), step(query("EXECUTE q(1)")),
			addW, step(query("EXECUTE q(1)")), step(query("EXECUTE q(2)")),
			dropW, step(query("EXECUTE q(1)")),
			step(query("DEALLOCATE q")), addW,
			step(query("PREPARE q(int8) AS SELECT * FROM evolve WHERE id = $1")), step(query("EXECUTE q(1)")),
			dropW, step(query("EXECUTE q(1)")), step(query("DEALLOCATE q")),
		}},
		{"SQL PREPARE, all shards", []wireStep{
			step(query("PREPARE q AS SELECT v, count(*) FROM evolve GROUP BY v ORDER BY v")), step(query("EXECUTE q")),
			toInt8, step(query("EXECUTE q")),
			toInt4, step(query("EXECUTE q")),
		}},
		{"prepared after the change", []wireStep{
			prepare("s", "SELECT * FROM evolve WHERE id = $1"), run("s", "1"), run("s", "2"),
			addW,
			// Another client prepares the same text: Postgres prepares it
			// with the new type.
			other(parse("s", "SELECT * FROM evolve WHERE id = $1"), describeS("s"), wSync),
			other(bind("", "s", nil, texts("1")), describeP(""), execute("", 0), wSync),
			other(bind("", "s", nil, texts("2")), describeP(""), execute("", 0), wSync),
			run("s", "1"),
			dropW,
			other(bind("", "s", nil, texts("1")), describeP(""), execute("", 0), wSync),
			run("s", "1"),
		}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestPreparedStatementsViewRefused: pg_prepared_statements on a pooled
// backend listed the copies every client's statements share there (sp_
// names, other clients' texts), not the session's own: refused, in both
// protocols.
func TestPreparedStatementsViewRefused(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	a, b := f.Connect(t), f.Connect(t)
	mustExec(t, a, "CREATE TABLE customers (customer_id int8 PRIMARY KEY, secret text)")
	if _, err := a.Prepare(ctx, "mine", "SELECT secret FROM customers WHERE customer_id = $1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "mine", 1); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		var n int
		err := b.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements", mode).Scan(&n)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
			t.Errorf("mode %v: pg_prepared_statements gave %d rows, err %v; want 0A000 with a hint", mode, n, err)
		}
	}
}

// TestWireStatementNamespace: statements of Parse and of SQL PREPARE
// share one namespace per session, as in Postgres: DEALLOCATE (in either
// protocol) and Close act on both; the unnamed statement survives
// DEALLOCATE ALL.
func TestWireStatementNamespace(t *testing.T) {
	wf := startWireFixture(t)
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"DEALLOCATE in the extended protocol", []wireStep{
			step(parse("a", "SELECT name FROM items WHERE id = $1"), parse("b", "SELECT count(*) FROM items"), wSync),
			step(parse("", "DEALLOCATE a"), bind("", "", nil, nil), describeP(""), execute("", 0), wSync),
			step(bind("", "a", nil, texts("1")), execute("", 0), wSync),
			step(bind("", "b", nil, nil), execute("", 0), wSync),
			step(parse("", "DEALLOCATE a"), bind("", "", nil, nil), execute("", 0), wSync),
		}},
		{"DEALLOCATE ALL in the extended protocol", []wireStep{
			step(parse("a", "SELECT 1"), wSync),
			step(query("PREPARE q AS SELECT 2")),
			step(parse("", "SELECT 3"), wSync),
			step(parse("d", "DEALLOCATE ALL"), bind("", "d", nil, nil), execute("", 0), wSync),
			step(bind("", "a", nil, nil), execute("", 0), wSync),
			step(bind("", "", nil, nil), execute("", 0), wSync),
			step(query("EXECUTE q")),
			step(bind("", "d", nil, nil), execute("", 0), wSync),
			// (A simple Query drops the unnamed statement.)
			step(bind("", "", nil, nil), execute("", 0), wSync),
		}},
		{"Close of a SQL-prepared statement", []wireStep{
			step(query("PREPARE q AS SELECT 2")),
			step(&pgproto3.Close{ObjectType: 'S', Name: "q"}, wSync),
			step(query("EXECUTE q")),
			step(query("PREPARE q AS SELECT 3")), step(query("EXECUTE q")),
		}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
	// Postgres binds a statement of SQL PREPARE too; the proxy keeps it
	// as text for EXECUTE, and refuses to bind or describe it, rather
	// than say that it does not exist.
	p := dialWire(t, wf.f.DSN())
	p.exchange(t, msgs(query("PREPARE q(int8) AS SELECT name FROM items WHERE id = $1")), nil)
	for _, m := range []pgproto3.FrontendMessage{bind("", "q", nil, texts("1")), describeS("q")} {
		got := p.exchange(t, msgs(m, wSync), nil)
		if len(got) != 2 || !strings.HasPrefix(got[0], "Error ERROR 0A000: ") {
			t.Errorf("%T of a statement of SQL PREPARE: %q, want 0A000", m, got)
		}
	}
}

// TestWireBinaryParams: binary parameters the client did not type (OID 0
// in Parse, as pgx and libpq send them) have the type Postgres infers,
// often from a cast in the statement. The proxy read them by their
// length: a numeric 0.00 or pgx's numeric 0 (eight bytes) as an int8 in
// a merged HAVING (no group came back), a float8 7.0 in `id = $1::float8`
// as the int8 4619567317775286272, routed to that key's shard (the row
// was missing when 7 lives elsewhere), a numeric 7 (ten bytes) as a
// malformed key (22P03).
func TestWireBinaryParams(t *testing.T) {
	wf := startWireFixture(t)
	bin := []int16{1}
	run := func(sql string, params ...[]byte) wireStep {
		return step(parse("", sql), describeS(""), bind("", "", bin, params), describeP(""), execute("", 0), wSync)
	}
	float8 := func(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
	having := "SELECT k, sum(amount) FROM items GROUP BY k HAVING sum(amount) > $1 ORDER BY k"
	steps := []wireStep{
		run(having, []byte{0, 0, 0, 0, 0, 0, 0, 2}),                     // 0.00
		run(having, []byte{0, 0, 0xff, 0xff, 0, 0, 0, 0}),               // pgx's 0
		run(having, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 200}),             // 200
		run(having, []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 200, 0x13, 0x88}), // 200.50
		run("SELECT k, count(*) FROM items GROUP BY k HAVING count(*) >= $1 ORDER BY k LIMIT $2", be8(3), be8(2)),
		run("SELECT id FROM items ORDER BY id LIMIT $1", be8(2)),
		// (A merged statement's binary parameters of other types: refused
		// with 0A000 on the proxy, so not compared here.)
	}
	for id := 1; id <= 12; id++ {
		steps = append(steps,
			run("SELECT id, name FROM items WHERE id = $1::float8", float8(float64(id))),
			run("SELECT id, name FROM items WHERE id = $1::numeric", []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, byte(id)}),
			run("SELECT id, name FROM items WHERE id = $1::text::int8", []byte(fmt.Sprint(id))),
		)
	}
	wf.diff(t, "binary parameters", steps)
}

func be8(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// TestWireZeroColumns: a merged SELECT of no columns (SELECT FROM t ...,
// an existence check) returns its rows, as Postgres does; the proxy took
// the shards' empty RowDescription for none and failed (XX000 "no shard
// returned a result description for a merged SELECT").
func TestWireZeroColumns(t *testing.T) {
	wf := startWireFixture(t)
	var steps []wireStep
	for _, sql := range []string{
		"SELECT FROM items ORDER BY id LIMIT 2",
		"SELECT FROM items WHERE id > 3 OFFSET 5",
		"SELECT FROM items GROUP BY k ORDER BY k",
		"SELECT FROM items",
	} {
		steps = append(steps,
			step(query(sql)),
			step(parse("", sql), describeS(""), bind("", "", nil, nil, 1), describeP(""), execute("", 0), wSync))
	}
	wf.diff(t, "zero columns", steps)
}

// TestWirePortalRunTwice: an Execute of a portal that already ran to its
// end does not run the statement again: a SELECT's (or a write's with
// RETURNING) has no more rows, another statement's cannot be run (55000).
// A multi-shard portal lives in the proxy, which ran it again on its
// shards: the rows came twice, an UPDATE was applied twice. And a portal
// does not outlive its transaction: after a simple-Query COMMIT the proxy
// still ran a multi-shard one.
func TestWirePortalRunTwice(t *testing.T) {
	wf := startWireFixture(t)
	twice := func(sql string) wireStep {
		return step(parse("", sql), bind("p", "", nil, nil), execute("p", 0), describeP("p"), execute("p", 0), wSync)
	}
	show := step(query("SELECT id, v FROM evolve ORDER BY id"))
	reset := step(query("UPDATE evolve SET v = id * 10"))
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"SELECT", []wireStep{twice("SELECT k, count(*) FROM items GROUP BY k ORDER BY k"), twice("SELECT id FROM items WHERE id < 4")}},
		{"SELECT in a transaction", []wireStep{step(query("BEGIN")),
			step(parse("", "SELECT k, count(*) FROM items GROUP BY k ORDER BY k"), bind("p", "", nil, nil), execute("p", 0), wSync),
			step(execute("p", 0), wSync), step(query("COMMIT"))}},
		{"UPDATE", []wireStep{twice("UPDATE evolve SET v = v + 1 WHERE id IN (1, 2, 3, 4)"), show, reset}},
		{"UPDATE in a transaction", []wireStep{step(query("BEGIN")), twice("UPDATE evolve SET v = v + 1"), show, step(query("ROLLBACK")), show}},
		{"UPDATE RETURNING", []wireStep{twice("UPDATE evolve SET v = v + 1 RETURNING id, v"), show, reset}},
		{"INSERT RETURNING", []wireStep{twice("INSERT INTO evolve VALUES (21, 1), (22, 2), (23, 3) RETURNING id"), show,
			step(query("DELETE FROM evolve WHERE id > 20"))}},
		{"DELETE", []wireStep{twice("DELETE FROM evolve WHERE id > 100")}},
		{"after COMMIT", []wireStep{step(query("BEGIN")),
			step(parse("", "SELECT id FROM items ORDER BY id"), bind("p", "", nil, nil), execute("p", 3), wSync),
			step(query("COMMIT")),
			step(execute("p", 3), wSync)}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestWirePortalAcrossShards: in a transaction, a portal read part way on
// one shard can be read on after a statement on other shards made the
// transaction span them (two_phase_commit). The proxy said the portal
// does not exist (34000) and the transaction failed.
func TestWirePortalAcrossShards(t *testing.T) {
	wf := startWireFixture(t)
	wf.diff(t, "portal across shards", []wireStep{
		step(query("BEGIN")),
		step(parse("b", "SELECT id, n FROM items, generate_series(1, 4) AS n WHERE id = $1 ORDER BY n"), bind("pb", "b", nil, texts("1")), execute("pb", 1), wSync),
		step(parse("a", "SELECT k, count(*) FROM items GROUP BY k ORDER BY k"), bind("pa", "a", nil, nil), execute("pa", 0), wSync),
		step(execute("pb", 1), wSync),
		step(parse("", "UPDATE evolve SET v = v + 1"), bind("", "", nil, nil), execute("", 0), execute("pb", 0), wSync),
		step(query("ROLLBACK")),
	})
}

// TestWirePortalExists: Bind onto a named portal that exists fails with
// 42P03 (cursor "x" already exists), as Postgres' CreatePortal fails it;
// only the unnamed portal is replaced. The proxy replaced a named portal
// it kept itself (a multi-shard one), and one it had left on a shard
// when the next Bind went to another.
func TestWirePortalExists(t *testing.T) {
	wf := startWireFixture(t)
	multi := parse("m", "SELECT k, count(*) FROM items GROUP BY k ORDER BY k")
	one := parse("o", "SELECT id, name FROM items WHERE id = $1")
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"multi-shard twice", []wireStep{step(multi, bind("x", "m", nil, nil), bind("x", "m", nil, nil), execute("x", 0), wSync)}},
		{"one shard, then multi-shard", []wireStep{step(multi, one, bind("x", "o", nil, texts("1")), bind("x", "m", nil, nil), execute("x", 0), wSync)}},
		{"multi-shard, then one shard", []wireStep{step(multi, one, bind("x", "m", nil, nil), bind("x", "o", nil, texts("1")), execute("x", 0), wSync)}},
		{"one shard, two shards", []wireStep{step(one, bind("x", "o", nil, texts("1")), bind("x", "o", nil, texts("2")), bind("x", "o", nil, texts("3")), execute("x", 0), wSync)}},
		{"in a transaction", []wireStep{
			step(query("BEGIN")),
			step(multi, one, bind("x", "m", nil, nil), execute("x", 0), wSync),
			step(bind("x", "o", nil, texts("2")), execute("x", 0), wSync),
			step(query("ROLLBACK")),
			step(query("BEGIN")),
			step(multi, one, bind("y", "o", nil, texts("1")), execute("y", 1), wSync),
			step(bind("y", "m", nil, nil), execute("y", 0), wSync),
			step(query("ROLLBACK")),
		}},
		// Outside a transaction a Sync ends the implicit one, and its
		// portals with it: the name is free again.
		{"again after Sync", []wireStep{
			step(multi, one, bind("x", "m", nil, nil), execute("x", 0), wSync),
			step(bind("x", "m", nil, nil), execute("x", 0), wSync),
			step(bind("x", "o", nil, texts("1")), execute("x", 0), wSync),
			step(bind("x", "o", nil, texts("2")), execute("x", 0), wSync),
		}},
		{"after Close", []wireStep{step(multi, bind("x", "m", nil, nil), &pgproto3.Close{ObjectType: 'P', Name: "x"}, bind("x", "m", nil, nil), execute("x", 0), wSync)}},
		{"a SQL cursor's name", []wireStep{
			step(query("BEGIN")),
			step(query("DECLARE c CURSOR FOR SELECT id FROM items ORDER BY id")),
			step(multi, bind("c", "m", nil, nil), execute("c", 0), wSync),
			step(query("ROLLBACK")),
			step(query("BEGIN")),
			step(multi, bind("d", "m", nil, nil), wSync),
			step(query("DECLARE d CURSOR FOR SELECT 1")),
			step(query("ROLLBACK")),
			step(query("BEGIN")),
			step(bind("e", "m", nil, nil), wSync),
			step(parse("", "DECLARE e CURSOR FOR SELECT id FROM items"), bind("", "", nil, nil), execute("", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"unnamed", []wireStep{step(multi, one, bind("", "m", nil, nil), bind("", "o", nil, texts("2")), execute("", 0), wSync)}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestWirePortalSavepoint: ROLLBACK TO a savepoint drops the portals
// created after it (a later Execute gets 34000), as Postgres drops them
// with their subtransaction; those created before it, and those of a
// released savepoint, stay.
func TestWirePortalSavepoint(t *testing.T) {
	wf := startWireFixture(t)
	multi := parse("m", "SELECT k, count(*) FROM items GROUP BY k ORDER BY k")
	one := parse("o", "SELECT id, name FROM items WHERE id = $1")
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"multi-shard", []wireStep{
			step(query("BEGIN")), step(query("SAVEPOINT s")),
			step(multi, bind("p", "m", nil, nil), wSync),
			step(query("ROLLBACK TO SAVEPOINT s")),
			step(execute("p", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"multi-shard, row limited", []wireStep{
			step(query("BEGIN")), step(query("SAVEPOINT s")),
			step(parse("r", "SELECT id FROM items ORDER BY id"), bind("p", "r", nil, nil), execute("p", 2), wSync),
			step(query("ROLLBACK TO SAVEPOINT s")),
			step(execute("p", 2), wSync),
			step(query("ROLLBACK")),
		}},
		{"one shard", []wireStep{
			step(query("BEGIN")), step(query("SAVEPOINT s")),
			step(one, bind("p", "o", nil, texts("1")), wSync),
			step(query("ROLLBACK TO SAVEPOINT s")),
			step(execute("p", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"one shard, transaction on two", []wireStep{
			step(query("BEGIN")),
			step(query("UPDATE evolve SET v = v WHERE id IN (1, 2, 3, 4)")),
			step(query("SAVEPOINT s")),
			step(one, bind("p", "o", nil, texts("1")), wSync),
			step(bind("q", "o", nil, texts("2")), wSync),
			step(query("ROLLBACK TO SAVEPOINT s")),
			step(execute("p", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"before the savepoint, and released", []wireStep{
			step(query("BEGIN")),
			step(multi, bind("a", "m", nil, nil), wSync),
			step(query("SAVEPOINT s")), step(query("SAVEPOINT t")),
			step(bind("b", "m", nil, nil), wSync),
			step(query("RELEASE SAVEPOINT t")),
			step(bind("c", "m", nil, nil), wSync),
			step(query("ROLLBACK TO SAVEPOINT s")),
			step(execute("a", 0), wSync),
			step(execute("b", 0), wSync),
			step(execute("c", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"one shard, pipelined", []wireStep{
			step(query("BEGIN")),
			step(parse("", "SAVEPOINT s"), bind("", "", nil, nil), execute("", 0), one, bind("p", "o", nil, texts("1")),
				parse("", "ROLLBACK TO SAVEPOINT s"), bind("", "", nil, nil), execute("", 0), execute("p", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"bound after ROLLBACK TO", []wireStep{
			step(query("BEGIN")), step(query("SELECT name FROM items WHERE id = 1")), step(query("SAVEPOINT s")),
			step(parse("", "ROLLBACK TO SAVEPOINT s"), bind("", "", nil, nil), execute("", 0), multi, bind("p", "m", nil, nil),
				one, bind("q", "o", nil, texts("1")), execute("q", 1), wSync),
			step(execute("p", 0), wSync),
			step(execute("q", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"extended ROLLBACK TO", []wireStep{
			step(query("BEGIN")),
			step(parse("", "SAVEPOINT s"), bind("", "", nil, nil), execute("", 0), multi, bind("p", "m", nil, nil),
				parse("", "ROLLBACK TO SAVEPOINT s"), bind("", "", nil, nil), execute("", 0), execute("p", 0), wSync),
			step(query("ROLLBACK")),
		}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestWireUnnamedResultType: the unnamed statement, bound again in a later
// batch after DDL changed its result type, fails as Postgres fails it.
func TestWireUnnamedResultType(t *testing.T) {
	wf := startWireFixture(t)
	other := func(m ...pgproto3.FrontendMessage) wireStep { return wireStep{msgs: m, other: true} }
	toInt8 := other(query("ALTER TABLE evolve ALTER COLUMN v TYPE int8"))
	toInt4 := other(query("ALTER TABLE evolve ALTER COLUMN v TYPE int4"))
	run := func(args ...string) wireStep { return step(bind("", "", nil, texts(args...)), execute("", 0), wSync) }
	runD := func(args ...string) wireStep {
		return step(bind("", "", nil, texts(args...)), describeP(""), execute("", 0), wSync)
	}
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"one shard", []wireStep{step(parse("", "SELECT v FROM evolve WHERE id = $1"), wSync), run("1"), toInt8, run("1"), runD("2"), toInt4, run("1")}},
		{"one shard, described", []wireStep{step(parse("", "SELECT v FROM evolve WHERE id = $1"), describeS(""), wSync), runD("1"), toInt8, runD("1"), toInt4, runD("1")}},
		{"all shards", []wireStep{step(parse("", "SELECT id, v FROM evolve ORDER BY id"), wSync), run(), toInt8, run(), runD(), toInt4, run()}},
		{"all shards, merged", []wireStep{step(parse("", "SELECT v, count(*) FROM evolve GROUP BY v ORDER BY v"), wSync), run(), toInt8, runD(), toInt4, run()}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestWireMultiBindError: an error Postgres raises at Bind (a parameter
// that does not convert to its type) comes instead of BindComplete for a
// multi-shard statement too. The shards bind it at Execute; the proxy
// sent BindComplete at once, then the error. (Still so when a Sync or
// Flush comes between the Bind and its Execute: not compared here.)
func TestWireMultiBindError(t *testing.T) {
	wf := startWireFixture(t)
	cases := []struct {
		name  string
		steps []wireStep
	}{
		{"one shard", []wireStep{step(parse("", "SELECT id FROM items WHERE id = $1::int8 AND k = $2"), bind("", "", nil, texts("1", "abc")), describeP(""), execute("", 0), wSync)}},
		{"all shards", []wireStep{step(parse("", "SELECT id FROM items WHERE k = $1 ORDER BY id"), bind("", "", nil, texts("abc")), describeP(""), execute("", 0), wSync)}},
		{"all shards, no describe", []wireStep{step(parse("", "SELECT id FROM items WHERE k = $1 ORDER BY id"), bind("", "", nil, texts("abc")), execute("", 0), wSync)}},
		{"all shards, merged", []wireStep{step(parse("", "SELECT k, count(*) FROM items WHERE k <> $1 GROUP BY k ORDER BY k"), bind("", "", nil, texts("abc")), execute("", 0), wSync)}},
		{"all shards, update", []wireStep{step(parse("", "UPDATE evolve SET v = $1"), bind("", "", nil, texts("abc")), execute("", 0), wSync)}},
		{"all shards, in a transaction", []wireStep{
			step(query("BEGIN")), step(query("UPDATE evolve SET v = v WHERE id IN (1, 2, 3, 4)")),
			step(parse("", "SELECT id FROM items WHERE k = $1 ORDER BY id"), bind("", "", nil, texts("abc")), describeP(""), execute("", 0), wSync),
			step(query("ROLLBACK")),
		}},
		{"all shards, fails at Execute", []wireStep{
			step(parse("", "SELECT sum(1 / (k - $1)) FROM items"), bind("", "", nil, texts("1")), describeP(""), execute("", 0), wSync),
			step(parse("", "UPDATE evolve SET v = 1 / (v - $1)"), bind("", "", nil, texts("10")), execute("", 0), wSync),
		}},
	}
	for _, c := range cases {
		wf.diff(t, c.name, c.steps)
	}
}

// TestWireExecuteSearchPath: EXECUTE of a SQL-prepared statement after
// the session's search_path changed resolves its names under the new
// path, as Postgres 15 does (it re-analyses the statement), and fails
// with 0A000 "cached plan must not change result type" when that changes
// its result type. The proxy refused any such EXECUTE with 0A000, under
// a comment that said Postgres keeps the old path's names. (Under a path
// other than the default, the router refuses unqualified sharded table
// names, in an EXECUTE as in any statement.)
func TestWireExecuteSearchPath(t *testing.T) {
	wf := startWireFixture(t, "CREATE SCHEMA other", "CREATE TABLE other.evolve (id int8 PRIMARY KEY, v int4, w text)",
		"CREATE FUNCTION public.f() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'",
		"CREATE FUNCTION other.f() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 2'",
		"CREATE FUNCTION other.g() RETURNS int8 LANGUAGE sql IMMUTABLE AS 'SELECT 3'",
		"CREATE FUNCTION public.g() RETURNS int4 LANGUAGE sql IMMUTABLE AS 'SELECT 4'")
	wf.diff(t, "search_path", []wireStep{
		step(query("PREPARE q AS SELECT count(*) FROM evolve")), step(query("EXECUTE q")),
		step(query("PREPARE r(int8) AS SELECT v, f() FROM public.evolve WHERE id = $1")), step(query("EXECUTE r(1)")),
		step(query("PREPARE a(int8) AS SELECT id, g() FROM public.evolve WHERE id = $1")), step(query("EXECUTE a(1)")),
		step(query("PREPARE u AS SELECT id, f() FROM public.evolve ORDER BY id")), step(query("EXECUTE u")),
		// The default path, spelt otherwise.
		step(query("SET search_path = public")), step(query("EXECUTE q")), step(query("EXECUTE r(2)")),
		step(query("SET search_path = other, public")),
		step(query("EXECUTE r(1)")), step(query("EXECUTE a(1)")), step(query("EXECUTE a(2)")), step(query("EXECUTE u")),
		step(query("RESET search_path")),
		step(query("EXECUTE q")), step(query("EXECUTE r(1)")), step(query("EXECUTE a(1)")), step(query("EXECUTE u")),
	})
	// Prepared, then the path changed before its first EXECUTE: the
	// proxy has not learnt the type Postgres fixed at PREPARE, and
	// refuses rather than guess.
	p := dialWire(t, wf.f.DSN())
	p.exchange(t, msgs(query("PREPARE b AS SELECT g() FROM public.evolve")), nil)
	p.exchange(t, msgs(query("SET search_path = other, public")), nil)
	got := p.exchange(t, msgs(query("EXECUTE b")), nil)
	if len(got) != 2 || !strings.HasPrefix(got[0], "Error ERROR 0A000: search_path changed before the first EXECUTE") {
		t.Errorf("EXECUTE after search_path changed, before the first: %q, want 0A000", got)
	}
}

package router

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// The differential tests let Postgres decide what is right: the same
// rows are split into three "shards" (part = 0, 1, 2 of one table), each
// part's partial result is computed by Postgres, Execute merges them, and
// the merged text must equal what Postgres returns for the whole table.

const parts = 3

// pgResult runs sql with the simple protocol (text format) and returns the
// fields and rows, NULL as nil.
func pgResult(t *testing.T, conn *pgx.Conn, sql string) ([]pgproto3.FieldDescription, [][][]byte) {
	t.Helper()
	mrr := conn.PgConn().Exec(context.Background(), sql)
	defer mrr.Close()
	var fields []pgproto3.FieldDescription
	var out [][][]byte
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		fields = fields[:0]
		for _, f := range rr.FieldDescriptions() {
			fields = append(fields, pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
				DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format})
		}
		out = out[:0]
		for rr.NextRow() {
			row := make([][]byte, len(rr.Values()))
			for i, v := range rr.Values() {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			out = append(out, row)
		}
		if _, err := rr.Close(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := mrr.Close(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return fields, out
}

type sliceSource struct {
	rows [][][]byte
	i    int
}

func (s *sliceSource) Next() ([][]byte, error) {
	if s.i >= len(s.rows) {
		return nil, nil
	}
	s.i++
	return s.rows[s.i-1], nil
}

func rowText(row [][]byte) string {
	parts := make([]string, len(row))
	for i, v := range row {
		if v == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = string(v)
		}
	}
	return strings.Join(parts, "|")
}

// mergeParts runs partSQL (with %d for the part) on every part, merges the
// results with p and returns the rows as text and the output fields.
func mergeParts(t *testing.T, conn *pgx.Conn, p *ScatterPlan, partSQL string) ([]string, []pgproto3.FieldDescription) {
	t.Helper()
	var fields []pgproto3.FieldDescription
	var srcs []Source
	for k := range parts {
		f, rows := pgResult(t, conn, fmt.Sprintf(partSQL, k))
		if fields != nil {
			if err := CheckFields(fields, f); err != nil {
				t.Fatal(err)
			}
		}
		fields = f
		srcs = append(srcs, &sliceSource{rows: rows})
	}
	var got []string
	_, err := p.Execute(context.Background(), fields, srcs, nil, ExecOptions{}, func(row [][]byte) error {
		got = append(got, rowText(row))
		return nil
	})
	if err != nil {
		t.Fatalf("Execute over %q: %v", partSQL, err)
	}
	out, err := p.OutputFields(fields)
	if err != nil {
		t.Fatal(err)
	}
	return got, out
}

func oracle(t *testing.T, conn *pgx.Conn, sql string) ([]string, []pgproto3.FieldDescription) {
	t.Helper()
	fields, rows := pgResult(t, conn, sql)
	var out []string
	for _, r := range rows {
		out = append(out, rowText(r))
	}
	return out, fields
}

func startOracle(t *testing.T) *pgx.Conn {
	t.Helper()
	srv := pgtest.StartN(t, 1, pgtest.Options{Name: "exec"})[0]
	conn, err := srv.Connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// typeValues are values of every type the merge compares, with the edge
// cases of each (SQL literals; NULL included).
var typeValues = []struct {
	typ  string
	vals []string
}{
	{"int2", []string{"-32768", "-1", "0", "1", "32767", "5", "5", "NULL"}},
	{"int4", []string{"-2147483648", "-10", "0", "9", "10", "2147483647", "NULL"}},
	{"int8", []string{"-9223372036854775808", "-1", "0", "42", "1000000000000", "9223372036854775807", "NULL"}},
	{"oid", []string{"0", "1", "100", "4294967295", "2147483648", "NULL"}},
	{"numeric", []string{"'NaN'", "'Infinity'", "'-Infinity'", "0", "0.000", "-0.0001", "1.0", "1.00", "1", "10", "9.9999",
		"123456789012345678901234567890.123", "-1e-20", "99.99", "-99.990", "NULL"}},
	{"float4", []string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0", "1.5", "-3.25e10", "1e-30", "3.4e38", "0.1", "NULL"}},
	{"float8", []string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0", "0.1", "1e308", "-1e-308", "5e-324", "123456789012345.6", "NULL"}},
	{"text", []string{"''", "'a'", "'B'", "'é'", "'ü'", "'z'", "'ab'", "E'a\\tb'", "'日本'", "'a '", "NULL"}},
	{"varchar(10)", []string{"''", "'a'", "'B'", "'é'", "'Z'", "NULL"}},
	{"name", []string{"'a'", "'B'", "'é'", "'pg_class'", "NULL"}},
	{"char(3)", []string{"'a'", "'ab'", "''", "'é'", "'a!'", "'A'", "NULL"}},
	{"bool", []string{"true", "false", "true", "NULL"}},
	{"date", []string{"'infinity'", "'-infinity'", "'4713-01-01 BC'", "'0044-03-15 BC'", "'0001-12-31 BC'", "'0001-01-01'",
		"'2024-02-29'", "'10000-01-01'", "'5874897-12-31'", "'1999-12-31'", "NULL"}},
	{"timestamp", []string{"'infinity'", "'-infinity'", "'4713-01-01 00:00:00 BC'", "'0001-01-01 12:00 BC'", "'2024-01-01 00:00:00'",
		"'2024-01-01 00:00:00.000001'", "'1999-12-31 23:59:59.999999'", "'294276-12-31 23:59:59.999999'", "'2000-01-01 00:00:00.5'", "NULL"}},
	{"timestamptz", []string{"'infinity'", "'-infinity'", "'2024-10-27 02:30:00+02'", "'2024-10-27 02:15:00+01'", "'1850-01-01 00:00:00+00'",
		"'0500-06-01 12:00:00+00 BC'", "'2024-07-01 00:00:00.123+00'", "'2024-01-01 00:00:00+00'", "NULL"}},
	{"time", []string{"'00:00'", "'24:00'", "'12:34:56.789'", "'23:59:59.999999'", "'00:00:00.000001'", "NULL"}},
	{"uuid", []string{"'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
		"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'", "'10000000-0000-0000-0000-000000000000'", "NULL"}},
	{"interval", []string{"'1 day'", "'24 hours'", "'-1 days +02:00:00'", "'1 mon'", "'30 days'", "'1 year 2 mons 3 days 04:05:06.789'",
		"'-178000000 years'", "'178000000 years'", "'00:00:00'", "'-00:00:00.000001'", "'1000000 hours'", "'-1 mons +29 days'", "NULL"}},
	{"bytea", []string{`'\x'`, `'\x00'`, `'\x0000'`, `'\xff'`, `'\x7f80'`, `'\x0001'`, "NULL"}},
	{`"char"`, []string{`'a'::"char"`, `'Z'::"char"`, `chr(200)::"char"`, `''::"char"`, `'~'::"char"`, "NULL"}},
	// Arrays: element order first (NULL above values), then fewer
	// elements, dimensions, lengths, lower bounds.
	{"int4[]", []string{"'{}'", "'{1}'", "'{1,2}'", "'{1,NULL}'", "'{NULL}'", "'{NULL,1}'", "'{NULL,NULL}'", "'{2}'", "'{1,2,3}'",
		"'{{1,2},{3,4}}'", "'{1,2,3,4}'", "'{{1,2,3,4}}'", "'{{1},{2},{3},{4}}'", "'[0:1]={1,2}'", "'[2:3]={1,2}'", "'[0:1][5:6]={{1,2},{3,4}}'",
		"'{-5,10}'", "'{10,-5}'", "'{1,2}'", "NULL"}},
	{"text[]", []string{"'{}'", "ARRAY['']", "ARRAY['a']", "ARRAY['a','']", "ARRAY['a b','c']", "ARRAY['NULL']", "ARRAY[NULL,'x']",
		"ARRAY['a\"b', 'a\\b']", "ARRAY['a\\']", "ARRAY['é','B']", "ARRAY['{}', ',']", "ARRAY['ab']", "ARRAY['a','b']", "ARRAY[' a']",
		"ARRAY[['a','b'],['c','d']]", "NULL"}},
	{"numeric[]", []string{"ARRAY[1.0]", "ARRAY[1.00]", "ARRAY[1]", "ARRAY[1,2.5]", "ARRAY[1.0,2.50]", "ARRAY['NaN'::numeric]", "ARRAY[-1]",
		"ARRAY[NULL::numeric]", "'{}'", "ARRAY['Infinity'::numeric, 0]", "NULL"}},
	{"timestamptz[]", []string{"ARRAY['2024-10-27 02:30:00+02'::timestamptz]", "ARRAY['2024-10-27 02:15:00+01'::timestamptz]",
		"ARRAY['1850-01-01 00:00:00+00'::timestamptz, NULL]", "ARRAY['infinity'::timestamptz]", "ARRAY['-infinity'::timestamptz, 'infinity']", "NULL"}},
	{"interval[]", []string{"ARRAY['1 day'::interval]", "ARRAY['24 hours'::interval]", "ARRAY['1 mon'::interval, NULL]",
		"ARRAY['30 days'::interval, '1 day']", "ARRAY['-1 days +02:00:00'::interval]", "NULL"}},
	{"char(3)[]", []string{"ARRAY['a'::char(3)]", "ARRAY['a  '::char(3)]", "ARRAY['ab'::char(3), 'a']", "ARRAY[''::char(3)]", "NULL"}},
	{"bool[]", []string{"ARRAY[true]", "ARRAY[false, true]", "ARRAY[false]", "ARRAY[NULL::bool]", "'{}'", "NULL"}},
	{"date[]", []string{"ARRAY['2024-02-29'::date]", "ARRAY['0044-03-15 BC'::date]", "ARRAY['infinity'::date]", "ARRAY['1999-12-31'::date, '2000-01-01']", "NULL"}},
}

func TestExecuteAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	// A zone with DST and an LMT offset with seconds: equal instants print
	// alike, but text order is not instant order.
	mustExec(t, conn, "SET TimeZone = 'Europe/Amsterdam'")

	for ti, tv := range typeValues {
		table := "t" + strconv.Itoa(ti)
		var vals []string
		for i, v := range tv.vals {
			vals = append(vals, fmt.Sprintf("(%d, %d, %s)", i, i%parts, v))
		}
		mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id int, part int, v %s); INSERT INTO %s VALUES %s",
			table, tv.typ, table, strings.Join(vals, ", ")))

		t.Run(tv.typ, func(t *testing.T) {
			for _, dir := range []struct {
				sql string
				key SortKey
			}{
				{"ASC", SortKey{Col: c(0)}},
				{"ASC NULLS FIRST", SortKey{Col: c(0), NullsFirst: true}},
				{"DESC", SortKey{Col: c(0), Desc: true, NullsFirst: true}},
				{"DESC NULLS LAST", SortKey{Col: c(0), Desc: true}},
			} {
				t.Run("order by "+dir.sql, func(t *testing.T) {
					p := &ScatterPlan{Root: &MergeSort{Input: scatter, Keys: []SortKey{dir.key, {Col: c(1)}}}}
					got, _ := mergeParts(t, conn, p, "SELECT v, id FROM "+table+" WHERE part = %d ORDER BY v "+dir.sql+", id")
					want, _ := oracle(t, conn, "SELECT v, id FROM "+table+" ORDER BY v "+dir.sql+", id")
					if !slices.Equal(got, want) {
						t.Errorf("got  %q\nwant %q", got, want)
					}
				})
			}

			minmax, fmin, fmax := "min/max", AggMin, AggMax
			if tv.typ == "bool" {
				minmax, fmin, fmax = "bool_and/bool_or", AggBoolAnd, AggBoolOr
			}
			fns := strings.Split(minmax, "/")
			wheres := []string{"true", "false", "v IS NULL"}
			if tv.typ == "uuid" || tv.typ == "bytea" {
				wheres = nil // Postgres 15 has no min/max for them
			}
			for _, where := range wheres {
				t.Run(minmax+" where "+where, func(t *testing.T) {
					p := &ScatterPlan{Root: &Aggregate{Input: scatter, Aggs: []AggSpec{{Func: fmin, Col: c(0)}, {Func: fmax, Col: c(1)}, {Func: AggCount, Col: c(2)}}}}
					sel := fmt.Sprintf("SELECT %s(v), %s(v), count(v) FROM %s WHERE ", fns[0], fns[1], table)
					got, _ := mergeParts(t, conn, p, sel+"part = %d AND "+where)
					want, _ := oracle(t, conn, sel+where)
					if !slices.Equal(got, want) {
						t.Errorf("got  %q\nwant %q", got, want)
					}
				})
			}

			t.Run("distinct", func(t *testing.T) {
				p := &ScatterPlan{Root: &Aggregate{Input: scatter, Aggs: []AggSpec{{Func: AggCountDistinct, Col: c(0)}}}}
				got, _ := mergeParts(t, conn, p, "SELECT v FROM "+table+" WHERE part = %d GROUP BY v")
				want, _ := oracle(t, conn, "SELECT count(DISTINCT v) FROM "+table)
				if !slices.Equal(got, want) {
					t.Errorf("count(DISTINCT): got %q want %q", got, want)
				}
				d := &ScatterPlan{Root: &Distinct{Input: &Concatenate{Input: scatter}}}
				rows, _ := mergeParts(t, conn, d, "SELECT DISTINCT v FROM "+table+" WHERE part = %d")
				want, _ = oracle(t, conn, "SELECT count(*) FROM (SELECT DISTINCT v FROM "+table+") s")
				if strconv.Itoa(len(rows)) != want[0] {
					t.Errorf("DISTINCT: got %d rows %q, want %s", len(rows), rows, want[0])
				}
			})

			t.Run("group by", func(t *testing.T) {
				p := &ScatterPlan{Root: &Sort{Keys: []SortKey{{Col: c(0)}}, Input: &Aggregate{Input: scatter, GroupBy: []ColRef{c(0)}, Aggs: []AggSpec{{Func: AggCount, Col: c(1)}}}}}
				got, _ := mergeParts(t, conn, p, "SELECT v, count(*) FROM "+table+" WHERE part = %d GROUP BY v")
				want, _ := oracle(t, conn, "SELECT v, count(*) FROM "+table+" GROUP BY v ORDER BY v")
				if len(got) != len(want) {
					t.Fatalf("got  %q\nwant %q", got, want)
				}
				for i := range got { // a group's representative text may differ (1.0 vs 1.00); counts may not
					gc, wc := got[i][strings.LastIndexByte(got[i], '|'):], want[i][strings.LastIndexByte(want[i], '|'):]
					if gc != wc {
						t.Errorf("group %d: got %q want %q", i, got[i], want[i])
					}
				}
			})
		})
	}
}

// numericRow makes a random numeric literal: scale 0..20, up to 30
// integer digits, either sign, sometimes zero.
func numericLit(r *rand.Rand) string {
	if r.IntN(10) == 0 {
		return []string{"0", "0.00", "-0.000000", "NULL"}[r.IntN(4)]
	}
	intDigits, scale := r.IntN(31), r.IntN(21)
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteByte('-')
	}
	b.WriteByte('0')
	for range intDigits {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	if scale > 0 {
		b.WriteByte('.')
		for range scale {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	return b.String()
}

func TestAggregateAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	mustExec(t, conn, "CREATE TABLE nums (id int, part int, g int, x numeric, i4 int4, i8 int8, f8 float8, f4 float4)")
	r := rand.New(rand.NewPCG(1, 2))
	var vals []string
	for id := range 900 {
		g := r.IntN(16)
		part := id % parts
		switch {
		case id%50 == 0:
			g = 16 // only on part 0 (ids that are multiples of 50 are even... and id%3 varies; fine)
			part = 0
		case id%41 == 0:
			g = 17 // only NULLs
		}
		x, i4, i8, f8, f4 := numericLit(r), strconv.Itoa(int(r.Int32())-1<<30), strconv.FormatInt(r.Int64()>>4-1<<58, 10),
			strconv.FormatFloat(float64(r.Int64N(1<<40)-1<<39)/8, 'g', -1, 64), strconv.Itoa(r.IntN(200)-100)
		if r.IntN(15) == 0 {
			x, i4, i8, f8, f4 = "NULL", "NULL", "NULL", "NULL", "NULL"
		}
		if g == 17 {
			x, i4, i8, f8, f4 = "NULL", "NULL", "NULL", "NULL", "NULL"
		}
		vals = append(vals, fmt.Sprintf("(%d, %d, %d, %s, %s, %s, %s, %s)", id, part, g, x, i4, i8, f8, f4))
	}
	// Special values: NaN absorbs, opposite infinities give NaN.
	vals = append(vals, "(1000, 1, 18, 'NaN', 1, 1, 'NaN', 'NaN')", "(1001, 2, 18, 5, 1, 1, 1, 1)",
		"(1002, 0, 19, 'Infinity', 1, 1, 'Infinity', 'Infinity')", "(1003, 1, 19, 1, 1, 1, 1, 1)",
		"(1004, 1, 20, 'Infinity', 1, 1, 'Infinity', '-Infinity')", "(1005, 2, 20, '-Infinity', 1, 1, '-Infinity', 'Infinity')",
		"(1006, 0, 21, 99999999999999999999999999999999999999.99999999999999999999, 2147483647, 9223372036854775807, 1e300, 3e38)",
		"(1007, 1, 21, 0.00000000000000000001, 2147483647, 9223372036854775807, 1e300, 1)")
	mustExec(t, conn, "INSERT INTO nums VALUES "+strings.Join(vals, ", "))

	// Visible: g, sum(x), avg(x), sum(i4), avg(i4), sum(i8), avg(i8),
	// sum(f8), avg(f8), sum(f4), avg(f4), count(*); hidden: the counts.
	partial := "SELECT %s sum(x), sum(x), sum(i4), sum(i4), sum(i8), sum(i8), sum(f8), sum(f8), sum(f4), sum(f4::float8), count(*), " +
		"count(x), count(i4), count(i8), count(f8), count(f4) FROM nums WHERE part = %%d %s"
	whole := "SELECT %s sum(x), avg(x), sum(i4), avg(i4), sum(i8), avg(i8), sum(f8), avg(f8), sum(f4), avg(f4), count(*) FROM nums %s"
	aggs := func(first int) []AggSpec {
		return []AggSpec{
			{Func: AggSum, Col: c(first)}, {Func: AggAvg, Col: c(first + 1), Count: h(0)},
			{Func: AggSum, Col: c(first + 2)}, {Func: AggAvg, Col: c(first + 3), Count: h(1)},
			{Func: AggSum, Col: c(first + 4)}, {Func: AggAvg, Col: c(first + 5), Count: h(2)},
			{Func: AggSum, Col: c(first + 6)}, {Func: AggAvg, Col: c(first + 7), Count: h(3)},
			{Func: AggSum, Col: c(first + 8)}, {Func: AggAvg, Col: c(first + 9), Count: h(4)},
			{Func: AggCount, Col: c(first + 10)},
		}
	}
	tests := []struct {
		name           string
		plan           *ScatterPlan
		partSQL, whole string
	}{
		{"group by g", &ScatterPlan{Hidden: 5, Root: &Project{Input: &Sort{Keys: []SortKey{{Col: c(0)}}, Input: &Aggregate{Input: scatter, GroupBy: []ColRef{c(0)}, Aggs: aggs(1)}}}},
			fmt.Sprintf(partial, "g,", "GROUP BY g"), fmt.Sprintf(whole, "g,", "GROUP BY g ORDER BY g")},
		{"no group by", &ScatterPlan{Hidden: 5, Root: &Project{Input: &Aggregate{Input: scatter, Aggs: aggs(0)}}},
			fmt.Sprintf(partial, "", "AND g < 16"), fmt.Sprintf(whole, "", "WHERE g < 16")},
		{"no rows", &ScatterPlan{Hidden: 5, Root: &Project{Input: &Aggregate{Input: scatter, Aggs: aggs(0)}}},
			fmt.Sprintf(partial, "", "AND false"), fmt.Sprintf(whole, "", "WHERE false")},
		{"having and order by avg", &ScatterPlan{Hidden: 5, Root: &Project{Input: &Sort{Keys: []SortKey{{Col: c(2), Desc: true, NullsFirst: true}, {Col: c(0)}},
			Input: &Aggregate{Input: scatter, GroupBy: []ColRef{c(0)}, Aggs: aggs(1), Having: &Expr{Op: ExprCmp, Cmp: ">", Col: c(2), Value: ValueRef{Text: "-1e25"}}}}}},
			fmt.Sprintf(partial, "g,", "AND g < 20 GROUP BY g"), fmt.Sprintf(whole, "g,", "WHERE g < 20 GROUP BY g HAVING avg(x) > -1e25 ORDER BY 3 DESC, 1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotFields := mergeParts(t, conn, tt.plan, tt.partSQL)
			want, wantFields := oracle(t, conn, tt.whole)
			if len(got) != len(want) {
				t.Fatalf("got %d rows, want %d\ngot  %q\nwant %q", len(got), len(want), got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("row %d:\ngot  %s\nwant %s", i, got[i], want[i])
				}
			}
			for i := range wantFields {
				if gotFields[i].DataTypeOID != wantFields[i].DataTypeOID || gotFields[i].DataTypeSize != wantFields[i].DataTypeSize {
					t.Errorf("column %d (%s): type %d/%d, want %d/%d", i, wantFields[i].Name,
						gotFields[i].DataTypeOID, gotFields[i].DataTypeSize, wantFields[i].DataTypeOID, wantFields[i].DataTypeSize)
				}
			}
		})
	}

	// Overflow: Postgres' own error where Postgres errs.
	mustExec(t, conn, "CREATE TABLE big (part int, i4 int4, f8 float8); INSERT INTO big VALUES (0, 2147483647, 1e308), (1, 2147483647, 1e308)")
	t.Run("float overflow", func(t *testing.T) {
		p := &ScatterPlan{Root: &Aggregate{Input: scatter, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}}
		_, _, err := executeParts(t, conn, p, "SELECT sum(f8) FROM big WHERE part = %d")
		_, werr := conn.Exec(context.Background(), "SELECT sum(f8) FROM big")
		if sqlState(err) != "22003" || sqlState(werr) != "22003" {
			t.Errorf("got %v, Postgres %v", err, werr)
		}
	})
}

// executeParts is mergeParts returning the error instead of failing.
func executeParts(t *testing.T, conn *pgx.Conn, p *ScatterPlan, partSQL string) ([]string, []pgproto3.FieldDescription, error) {
	t.Helper()
	var fields []pgproto3.FieldDescription
	var srcs []Source
	for k := range parts {
		var rows [][][]byte
		fields, rows = pgResult(t, conn, fmt.Sprintf(partSQL, k))
		srcs = append(srcs, &sliceSource{rows: rows})
	}
	var got []string
	_, err := p.Execute(context.Background(), fields, srcs, nil, ExecOptions{}, func(row [][]byte) error {
		got = append(got, rowText(row))
		return nil
	})
	return got, fields, err
}

// TestAvgScaleAgainstPostgres checks numeric_div's result scale where it
// depends on the weights of sum and count: counts past 10^4 and 10^8
// (more base-10000 digits), sums far above and below 1.
func TestAvgScaleAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	mustExec(t, conn, `CREATE TABLE a (part int, g int, x numeric, i int8);
		INSERT INTO a SELECT s % 3, s % 4, CASE s % 4
			WHEN 0 THEN (s::int8 * 7919 % 100003)::numeric / 1000
			WHEN 1 THEN (s::int8 * 7919 % 100003)::numeric * 1e-25
			WHEN 2 THEN -(s::numeric * 1e20)
			ELSE 1 END, s::int8 * 104729
		FROM generate_series(1, 30000) s;
		INSERT INTO a SELECT 1, 4, 0.0001, 1 FROM generate_series(1, 3);
		INSERT INTO a SELECT 2, 5, 1, 1 FROM generate_series(1, 9999);
		INSERT INTO a SELECT 0, 5, 1, 1 FROM generate_series(1, 2)`)
	p := &ScatterPlan{Hidden: 2, Root: &Project{Input: &Sort{Keys: []SortKey{{Col: c(0)}}, Input: &Aggregate{Input: scatter, GroupBy: []ColRef{c(0)},
		Aggs: []AggSpec{{Func: AggAvg, Col: c(1), Count: h(0)}, {Func: AggAvg, Col: c(2), Count: h(1)}, {Func: AggSum, Col: c(3)}}}}}}
	got, _ := mergeParts(t, conn, p, "SELECT g, sum(x), sum(i), sum(x), count(x), count(i) FROM a WHERE part = %d GROUP BY g")
	want, _ := oracle(t, conn, "SELECT g, avg(x), avg(i), sum(x) FROM a GROUP BY g ORDER BY g")
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestFloatTextAgainstPostgres: sums and averages of floats are printed
// by the proxy, so its float8out/float4out must be Postgres' own, for
// values of every magnitude.
func TestFloatTextAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	r := rand.New(rand.NewPCG(5, 6))
	var f8 []float64
	var f4 []float32
	for range 3000 {
		f8 = append(f8, math.Float64frombits(r.Uint64()))
		f4 = append(f4, math.Float32frombits(r.Uint32()))
	}
	f8 = append(f8, 1e15, 1e14, 123456789012345.6, 0.0001, 0.00001, -0.0, 5e-324, math.MaxFloat64, 1, 100, 0.1)
	f4 = append(f4, 1e6, 1e5, 123456.7, 0.0001, 0.00001, 1.4e-45, math.MaxFloat32, 0.1)
	var lits []string
	for _, f := range f8 {
		if !math.IsNaN(f) {
			lits = append(lits, "('"+strconv.FormatFloat(f, 'g', -1, 64)+"'::float8::text, NULL)")
		}
	}
	for _, f := range f4 {
		if !math.IsNaN(float64(f)) {
			lits = append(lits, "(NULL, '"+strconv.FormatFloat(float64(f), 'g', -1, 32)+"'::float4::text)")
		}
	}
	_, rows := pgResult(t, conn, "SELECT * FROM (VALUES "+strings.Join(lits, ", ")+") v")
	i8, i4 := 0, 0
	for _, row := range rows {
		if row[0] != nil {
			for math.IsNaN(f8[i8]) {
				i8++
			}
			if got := string(appendFloat8(nil, f8[i8])); got != string(row[0]) {
				t.Errorf("float8 %v: got %s, Postgres %s", f8[i8], got, row[0])
			}
			i8++
			continue
		}
		for math.IsNaN(float64(f4[i4])) {
			i4++
		}
		if got := string(appendFloat4(nil, f4[i4])); got != string(row[1]) {
			t.Errorf("float4 %v: got %s, Postgres %s", f4[i4], got, row[1])
		}
		i4++
	}
	if i8 < 2900 || i4 < 2900 {
		t.Fatalf("compared %d float8 and %d float4 values", i8, i4)
	}
}

// TestMergeAgainstPostgres: ORDER BY with LIMIT/OFFSET pushed down as
// limit+offset, and DISTINCT ON over a merge, against the whole table.
func TestMergeAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	mustExec(t, conn, `CREATE TABLE m (id int, part int, g text, x numeric);
		INSERT INTO m SELECT s, s % 3, chr(65 + s % 7) || CASE WHEN s % 5 = 0 THEN 'é' ELSE '' END,
			CASE WHEN s % 11 = 0 THEN NULL ELSE ((s * 7919) % 1009)::numeric / (1 + s % 3) END
		FROM generate_series(1, 3000) s`)
	tests := []struct {
		name          string
		plan          *ScatterPlan
		partSQL, want string
	}{
		{"order by limit offset", &ScatterPlan{Root: &Limit{Input: &MergeSort{Input: scatter, Keys: []SortKey{{Col: c(1), Desc: true}, {Col: c(0)}}},
			Count: &ValueRef{Text: "25"}, Offset: &ValueRef{Text: "40"}}},
			"SELECT id, x FROM m WHERE part = %d ORDER BY x DESC NULLS LAST, id LIMIT 65",
			"SELECT id, x FROM m ORDER BY x DESC NULLS LAST, id LIMIT 25 OFFSET 40"},
		{"distinct on", &ScatterPlan{Root: &Distinct{On: []ColRef{c(0)}, Input: &MergeSort{Input: scatter, Keys: []SortKey{{Col: c(0)}, {Col: c(1), NullsFirst: true}, {Col: c(2)}}}}},
			"SELECT DISTINCT ON (g) g, x, id FROM m WHERE part = %d ORDER BY g, x NULLS FIRST, id",
			"SELECT DISTINCT ON (g) g, x, id FROM m ORDER BY g, x NULLS FIRST, id"},
		{"group by text order by count", &ScatterPlan{Hidden: 1, Root: &Project{Input: &Limit{Count: &ValueRef{Text: "5"}, Input: &Sort{Keys: []SortKey{{Col: c(1), Desc: true, NullsFirst: true}, {Col: c(0)}},
			Input: &Aggregate{Input: scatter, GroupBy: []ColRef{c(0)}, Aggs: []AggSpec{{Func: AggCount, Col: c(1)}, {Func: AggMax, Col: h(0)}},
				Having: &Expr{Op: ExprCmp, Cmp: ">", Col: h(0), Value: ValueRef{Text: "1000"}}}}}}},
			"SELECT g, count(*), max(x) FROM m WHERE part = %d GROUP BY g",
			"SELECT g, count(*) FROM m GROUP BY g HAVING max(x) > 1000 ORDER BY 2 DESC, 1 LIMIT 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := mergeParts(t, conn, tt.plan, tt.partSQL)
			want, _ := oracle(t, conn, tt.want)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

// TestMergeCollationAgainstPostgres: shards that sort text by an ICU
// collation interleave differently from the proxy's C comparison; the
// merge notices the disagreement in a shard's stream and refuses rather
// than return a wrongly ordered result.
func TestMergeCollationAgainstPostgres(t *testing.T) {
	conn := startOracle(t)
	p := &ScatterPlan{Root: &MergeSort{Input: scatter, Keys: []SortKey{{Col: c(0)}}}}
	// Part 1 holds 'a' and 'F': "a" < "F" in ICU order, "F" < "a" in C.
	_, _, err := executeParts(t, conn, p, `SELECT v FROM unnest(ARRAY['a','B','c','D','e','F']) v WHERE ascii(v) %% 3 = %d ORDER BY v COLLATE "und-x-icu"`)
	if sqlState(err) != "0A000" {
		t.Errorf("ICU-sorted shards merged without error: %v", err)
	}
	got, _, err := executeParts(t, conn, p, `SELECT v FROM unnest(ARRAY['a','B','c','D','e','F']) v WHERE ascii(v) %% 3 = %d ORDER BY v COLLATE "C"`)
	if err != nil || !slices.Equal(got, []string{"B", "D", "F", "a", "c", "e"}) {
		t.Errorf("C-sorted shards: %q, %v", got, err)
	}
}

package router

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// N is NULL in the in-memory rows of these tests.
const N = "\x00NULL"

// memSource serves rows like a shard connection does: each row aliases a
// buffer that the next Next overwrites, so a node that keeps a row
// without copying it sees garbage and fails the test.
type memSource struct {
	rows  [][]string
	i     int
	buf   []byte
	row   [][]byte
	nexts int
}

func (m *memSource) Next() ([][]byte, error) {
	m.nexts++
	for i := range m.buf {
		m.buf[i] = '#'
	}
	if m.i >= len(m.rows) {
		return nil, nil
	}
	r := m.rows[m.i]
	m.i++
	if m.buf == nil {
		m.buf = make([]byte, 0, 64) // non-nil: an empty value must not read as NULL
	}
	m.buf = m.buf[:0]
	for _, v := range r {
		if v != N {
			m.buf = append(m.buf, v...)
		}
	}
	m.row = m.row[:0]
	off := 0
	for _, v := range r {
		if v == N {
			m.row = append(m.row, nil)
			continue
		}
		m.row = append(m.row, m.buf[off:off+len(v):off+len(v)])
		off += len(v)
	}
	return m.row, nil
}

type errSource struct{ err error }

func (e errSource) Next() ([][]byte, error) { return nil, e.err }

func fieldsOf(oids ...uint32) []pgproto3.FieldDescription {
	fs := make([]pgproto3.FieldDescription, len(oids))
	for i, o := range oids {
		fs[i] = pgproto3.FieldDescription{Name: []byte("c" + strconv.Itoa(i)), DataTypeOID: o, DataTypeSize: -1, TypeModifier: -1}
	}
	return fs
}

func srcsOf(shards ...[][]string) ([]Source, []*memSource) {
	var srcs []Source
	var mems []*memSource
	for _, s := range shards {
		m := &memSource{rows: s}
		srcs = append(srcs, m)
		mems = append(mems, m)
	}
	return srcs, mems
}

func rows(rs ...string) [][]string {
	var out [][]string
	for _, r := range rs {
		vals := strings.Split(r, "|")
		for i, v := range vals {
			if v == "NULL" {
				vals[i] = N
			}
		}
		out = append(out, vals)
	}
	return out
}

// execText runs p and returns the rows as "a|b" strings (NULL as NULL).
func execText(p *ScatterPlan, oids []uint32, params []string, budget int64, shards ...[][]string) ([]string, error) {
	srcs, _ := srcsOf(shards...)
	var param ParamFunc = func(n int) ([]byte, bool, error) {
		if n > len(params) {
			return nil, false, errors.New("no such param")
		}
		if params[n-1] == "NULL" {
			return nil, true, nil
		}
		return []byte(params[n-1]), false, nil
	}
	var out []string
	n, err := p.Execute(context.Background(), fieldsOf(oids...), srcs, param, ExecOptions{Budget: budget}, func(row [][]byte) error {
		parts := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				parts[i] = "NULL"
			} else {
				parts[i] = string(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
		return nil
	})
	if err == nil && n != int64(len(out)) {
		return out, fmt.Errorf("Execute returned %d rows, emitted %d", n, len(out))
	}
	return out, err
}

func c(i int) ColRef { return ColRef{Index: i} }
func h(i int) ColRef { return ColRef{Hidden: true, Index: i} }

var scatter = &Scatter{SQL: Template{Pieces: []string{"SELECT ..."}}}

func mergeOn(keys ...SortKey) Node { return &MergeSort{Input: scatter, Keys: keys} }
func asc(col ColRef) SortKey       { return SortKey{Col: col} }
func desc(col ColRef) SortKey      { return SortKey{Col: col, Desc: true, NullsFirst: true} }

func TestExecute(t *testing.T) {
	tests := []struct {
		name   string
		plan   *ScatterPlan
		oids   []uint32
		params []string
		budget int64
		shards [][][]string
		want   []string
		code   string // expected SQLSTATE instead of rows
	}{
		{name: "concatenate", plan: &ScatterPlan{Root: &Concatenate{Input: scatter}}, oids: []uint32{oidInt4, oidText},
			shards: [][][]string{rows("1|a", "2|NULL"), nil, rows("3|")}, want: []string{"1|a", "2|NULL", "3|"}},
		{name: "project drops hidden", plan: &ScatterPlan{Hidden: 1, Root: &Project{Input: &Concatenate{Input: scatter}}}, oids: []uint32{oidInt4, oidText},
			shards: [][][]string{rows("1|a")}, want: []string{"1"}},
		{name: "merge int asc", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidInt8},
			shards: [][][]string{rows("-10", "2", "30"), rows("-9", "3", "NULL"), rows("1", "100")},
			want:   []string{"-10", "-9", "1", "2", "3", "30", "100", "NULL"}},
		{name: "merge int desc nulls first", plan: &ScatterPlan{Root: mergeOn(desc(c(0)))}, oids: []uint32{oidInt4},
			shards: [][][]string{rows("NULL", "30", "2", "-10"), rows("100", "1")},
			want:   []string{"NULL", "100", "30", "2", "1", "-10"}},
		{name: "merge asc nulls first", plan: &ScatterPlan{Root: mergeOn(SortKey{Col: c(0), NullsFirst: true})}, oids: []uint32{oidInt4},
			shards: [][][]string{rows("NULL", "1"), rows("NULL", "0")}, want: []string{"NULL", "NULL", "0", "1"}},
		{name: "merge desc nulls last", plan: &ScatterPlan{Root: mergeOn(SortKey{Col: c(0), Desc: true})}, oids: []uint32{oidInt4},
			shards: [][][]string{rows("1", "NULL"), rows("2", "NULL")}, want: []string{"2", "1", "NULL", "NULL"}},
		{name: "merge numeric", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidNumeric, oidInt4},
			shards: [][][]string{rows("-Infinity|1", "-1.5|2", "0.001|3", "1.00|4", "Infinity|5"), rows("-10|6", "0|7", "1.0|8", "9.99|9", "NaN|10")},
			want:   []string{"-Infinity|1", "-10|6", "-1.5|2", "0|7", "0.001|3", "1.00|4", "1.0|8", "9.99|9", "Infinity|5", "NaN|10"}},
		{name: "merge float8", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidFloat8, oidInt4},
			shards: [][][]string{rows("-Infinity|1", "-0|2", "1e-05|3", "NaN|4"), rows("-1.5|5", "0|6", "1e+100|7", "Infinity|8", "NaN|9")},
			want:   []string{"-Infinity|1", "-1.5|5", "-0|2", "0|6", "1e-05|3", "1e+100|7", "Infinity|8", "NaN|4", "NaN|9"}},
		{name: "merge text bytewise", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidText},
			shards: [][][]string{rows("B", "a", "é"), rows("", "Z", "b", "ü")}, want: []string{"", "B", "Z", "a", "b", "é", "ü"}},
		{name: "merge bpchar ignores trailing spaces", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidBpchar, oidInt4},
			shards: [][][]string{rows("a  |2", "a! |3"), rows("a  |1")}, want: []string{"a  |1", "a  |2", "a! |3"}},
		{name: "merge bool", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidBool},
			shards: [][][]string{rows("f", "t"), rows("f", "NULL")}, want: []string{"f", "f", "t", "NULL"}},
		{name: "merge date with BC and infinity", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidDate},
			shards: [][][]string{rows("-infinity", "0044-03-15 BC", "2024-01-05", "10000-01-01"), rows("0001-12-31 BC", "0001-01-01", "infinity")},
			want:   []string{"-infinity", "0044-03-15 BC", "0001-12-31 BC", "0001-01-01", "2024-01-05", "10000-01-01", "infinity"}},
		{name: "merge timestamptz by instant", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidTimestamptz},
			shards: [][][]string{rows("2024-01-01 10:00:00+02", "2024-01-01 09:30:00.5+00"), rows("2024-01-01 09:00:00.000001+00", "2024-01-01 05:00:00-05")},
			want:   []string{"2024-01-01 10:00:00+02", "2024-01-01 09:00:00.000001+00", "2024-01-01 09:30:00.5+00", "2024-01-01 05:00:00-05"}},
		{name: "merge timestamp and time", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidTimestamp, oidTime},
			shards: [][][]string{rows("2024-01-01 00:00:00|24:00:00", "2024-01-01 00:00:00.1|00:00:00"), rows("2024-01-01 00:00:00|23:59:59.999999")},
			want:   []string{"2024-01-01 00:00:00|23:59:59.999999", "2024-01-01 00:00:00|24:00:00", "2024-01-01 00:00:00.1|00:00:00"}},
		{name: "merge bytea and char", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidBytea, oidChar},
			shards: [][][]string{rows(`\x|a`, `\x00|\201`), rows(`\x|\377`, `\x0000|b`)},
			want:   []string{`\x|a`, `\x|\377`, `\x00|\201`, `\x0000|b`}},
		{name: "merge timetz is refused", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidTimetz}, code: "0A000"},
		{name: "merge interval by span", plan: &ScatterPlan{Root: mergeOn(asc(c(0)), asc(c(1)))}, oids: []uint32{oidInterval, oidInt4},
			shards: [][][]string{rows("-1 days +02:00:00|1", "1 day|2", "1 mon|3"), rows("00:00:00|4", "24:00:00|5", "29 days 23:59:59.999999|6", "30 days|7")},
			want:   []string{"-1 days +02:00:00|1", "00:00:00|4", "1 day|2", "24:00:00|5", "29 days 23:59:59.999999|6", "1 mon|3", "30 days|7"}},
		{name: "merge detects a shard sorted differently", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidText},
			shards: [][][]string{rows("a", "B"), rows("b")}, code: "0A000"}, // en_US order: a < B; C order: B < a
		{name: "merge width mismatch", plan: &ScatterPlan{Root: mergeOn(asc(c(0)))}, oids: []uint32{oidInt4, oidInt4},
			shards: [][][]string{rows("1")}, code: "XX000"},

		{name: "limit offset over merge", plan: &ScatterPlan{Root: &Limit{Input: mergeOn(asc(c(0))), Count: &ValueRef{Param: 1}, Offset: &ValueRef{Text: "2"}}},
			oids: []uint32{oidInt4}, params: []string{"3"}, shards: [][][]string{rows("1", "3", "5", "7"), rows("2", "4", "6")},
			want: []string{"3", "4", "5"}},
		{name: "limit NULL is all", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Null: true}, Offset: &ValueRef{Param: 1}}},
			oids: []uint32{oidInt4}, params: []string{"NULL"}, shards: [][][]string{rows("1", "2")}, want: []string{"1", "2"}},
		{name: "limit 0", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Text: " 0 "}}},
			oids: []uint32{oidInt4}, shards: [][][]string{rows("1")}, want: nil},
		{name: "limit negative", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Param: 1}}},
			oids: []uint32{oidInt4}, params: []string{"-1"}, code: "2201W"},
		{name: "offset negative", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Offset: &ValueRef{Text: "-5"}}},
			oids: []uint32{oidInt4}, code: "2201X"},
		{name: "limit not an integer", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Param: 1}}},
			oids: []uint32{oidInt4}, params: []string{"1.5"}, code: "22P02"},
		{name: "limit out of range", plan: &ScatterPlan{Root: &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Param: 1}}},
			oids: []uint32{oidInt4}, params: []string{"9223372036854775808"}, code: "22003"},

		{name: "distinct numeric and float by value", plan: &ScatterPlan{Root: &Distinct{Input: &Concatenate{Input: scatter}}}, oids: []uint32{oidNumeric, oidFloat8},
			shards: [][][]string{rows("1.0|0", "NULL|NaN"), rows("1.00|-0", "1|0", "NULL|NaN", "2|0")}, want: []string{"1.0|0", "NULL|NaN", "2|0"}},
		{name: "distinct hidden not compared", plan: &ScatterPlan{Hidden: 1, Root: &Project{Input: &Distinct{Input: &Concatenate{Input: scatter}}}}, oids: []uint32{oidText, 3802},
			shards: [][][]string{rows(`a |{"a": 1}`, `a |{"b": 1}`)}, want: []string{"a "}},
		{name: "distinct bpchar", plan: &ScatterPlan{Root: &Distinct{Input: &Concatenate{Input: scatter}}}, oids: []uint32{oidBpchar},
			shards: [][][]string{rows("a", "a  ")}, want: []string{"a"}},
		{name: "distinct on", plan: &ScatterPlan{Root: &Distinct{Input: mergeOn(asc(c(0)), desc(c(1))), On: []ColRef{c(0)}}}, oids: []uint32{oidText, oidInt4},
			shards: [][][]string{rows("a|5", "b|1", "NULL|1"), rows("a|7", "b|3", "NULL|9")}, want: []string{"a|7", "b|3", "NULL|9"}},
		{name: "distinct over budget", plan: &ScatterPlan{Root: &Distinct{Input: &Concatenate{Input: scatter}}}, oids: []uint32{oidInt4},
			budget: 500, shards: [][][]string{rows("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")}, code: "53200"},

		{name: "count sum min max no group", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter},
			Aggs: []AggSpec{{Func: AggCount, Col: c(0)}, {Func: AggSum, Col: c(1)}, {Func: AggMin, Col: c(2)}, {Func: AggMax, Col: c(3)}}}},
			oids:   []uint32{oidInt8, oidInt8, oidText, oidNumeric},
			shards: [][][]string{rows("2|10|b|1.5"), rows("0|NULL|NULL|NULL"), rows("5|-3|a|10")}, want: []string{"7|7|a|10"}},
		{name: "no input no group", plan: &ScatterPlan{Hidden: 1, Root: &Aggregate{Input: &Concatenate{Input: scatter},
			Aggs: []AggSpec{{Func: AggCount, Col: c(0)}, {Func: AggSum, Col: c(1)}, {Func: AggAvg, Col: c(2), Count: h(0)}, {Func: AggCountDistinct, Col: c(3)}, {Func: AggBoolAnd, Col: c(4)}}}},
			oids: []uint32{oidInt8, oidNumeric, oidNumeric, oidInt4, oidBool, oidInt8}, shards: [][][]string{nil, nil}, want: []string{"0|NULL|NULL|0|NULL"}},
		{name: "no input with group", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Aggs: []AggSpec{{Func: AggCount, Col: c(1)}}}}, oids: []uint32{oidInt4, oidInt8}, shards: [][][]string{nil}, want: nil},
		{name: "group by with NULL key and having", plan: &ScatterPlan{Root: &Sort{Keys: []SortKey{asc(c(0))}, Input: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Aggs:   []AggSpec{{Func: AggCount, Col: c(1)}},
			Having: &Expr{Op: ExprCmp, Cmp: ">=", Col: c(1), Value: ValueRef{Param: 1}}}}},
			oids: []uint32{oidNumeric, oidInt8}, params: []string{"2.5"},
			shards: [][][]string{rows("1.0|2", "NULL|1", "2|1"), rows("1|1", "NULL|2", "2|1")}, want: []string{"1.0|3", "NULL|3"}},
		{name: "having and or not is null", plan: &ScatterPlan{Root: &Sort{Keys: []SortKey{asc(c(0))}, Input: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Aggs: []AggSpec{{Func: AggSum, Col: c(1)}, {Func: AggMax, Col: c(2)}},
			Having: &Expr{Op: ExprOr, Args: []*Expr{
				{Op: ExprAnd, Args: []*Expr{{Op: ExprIsNull, Col: c(1)}, {Op: ExprNot, Args: []*Expr{{Op: ExprCmp, Cmp: "=", Col: c(2), Value: ValueRef{Text: "2024-01-01"}}}}}},
				{Op: ExprCmp, Cmp: "<>", Col: c(1), Value: ValueRef{Text: "5"}},
			}}}}},
			oids:   []uint32{oidText, oidInt8, oidDate},
			shards: [][][]string{rows("a|NULL|2024-01-02", "b|NULL|2024-01-01", "c|2|NULL", "d|NULL|NULL"), rows("c|3|2020-01-01", "e|1|NULL")},
			want:   []string{"a|NULL|2024-01-02", "e|1|NULL"}},
		{name: "having NULL constant", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter},
			Aggs: []AggSpec{{Func: AggCount, Col: c(0)}}, Having: &Expr{Op: ExprCmp, Cmp: "=", Col: c(0), Value: ValueRef{Null: true}}}},
			oids: []uint32{oidInt8}, shards: [][][]string{rows("1")}, want: nil},
		{name: "numeric sum keeps the largest scale", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}},
			oids: []uint32{oidNumeric}, shards: [][][]string{rows("1.50", "-0.005"), rows("99999999999999999999999999.1")}, want: []string{"100000000000000000000000000.595"}},
		{name: "numeric sum of infinities", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}, {Func: AggSum, Col: c(1)}}}},
			oids: []uint32{oidNumeric, oidNumeric}, shards: [][][]string{rows("Infinity|1"), rows("-Infinity|NaN")}, want: []string{"NaN|NaN"}},
		{name: "avg of ints", plan: &ScatterPlan{Hidden: 1, Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggAvg, Col: c(0), Count: h(0)}}}},
			oids: []uint32{oidInt8, oidInt8}, shards: [][][]string{rows("3|2"), rows("NULL|0"), rows("3|1")}, want: []string{"2.0000000000000000"}},
		{name: "avg numeric small and big", plan: &ScatterPlan{Hidden: 2, Root: &Aggregate{Input: &Concatenate{Input: scatter},
			Aggs: []AggSpec{{Func: AggAvg, Col: c(0), Count: h(0)}, {Func: AggAvg, Col: c(1), Count: h(1)}}}},
			oids: []uint32{oidNumeric, oidNumeric, oidInt8, oidInt8}, shards: [][][]string{rows("0.0002|-20000|2|3"), rows("0.0001|0|1|3")},
			want: []string{"0.000100000000000000000000|-3333.3333333333333333"}},
		{name: "avg float", plan: &ScatterPlan{Hidden: 1, Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggAvg, Col: c(0), Count: h(0)}}}},
			oids: []uint32{oidFloat8, oidInt8}, shards: [][][]string{rows("1|2"), rows("0.5|1")}, want: []string{"0.5"}},
		{name: "sum float8 and float4", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}, {Func: AggSum, Col: c(1)}}}},
			oids: []uint32{oidFloat8, oidFloat4}, shards: [][][]string{rows("1e+15|1e+06"), rows("1e+15|1")}, want: []string{"2e+15|1.000001e+06"}},
		{name: "sum float of negative zeros", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}},
			oids: []uint32{oidFloat8}, shards: [][][]string{rows("-0"), rows("-0")}, want: []string{"-0"}},
		{name: "float sum overflow", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}},
			oids: []uint32{oidFloat8}, shards: [][][]string{rows("1e+308"), rows("1e+308")}, code: "22003"},
		{name: "count overflow", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}},
			oids: []uint32{oidInt8}, shards: [][][]string{rows("9223372036854775807"), rows("1")}, code: "22003"},
		{name: "bool_and bool_or", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggBoolAnd, Col: c(0)}, {Func: AggBoolOr, Col: c(1)}}}},
			oids: []uint32{oidBool, oidBool}, shards: [][][]string{rows("t|f"), rows("NULL|NULL"), rows("f|t")}, want: []string{"f|t"}},
		{name: "count distinct across shards", plan: &ScatterPlan{Root: &Project{Input: &Sort{Keys: []SortKey{asc(c(0))}, Input: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Aggs: []AggSpec{{Func: AggCountDistinct, Col: c(1)}, {Func: AggCount, Col: c(2)}}}}}},
			oids:   []uint32{oidText, oidNumeric, oidInt8},
			shards: [][][]string{rows("a|1.0|2", "a|2|1", "a|NULL|4", "b|5|1"), rows("a|1.00|3", "b|6|1", "b|5.0|1")},
			want:   []string{"a|2|10", "b|2|3"}},
		{name: "avg real refused", plan: &ScatterPlan{Hidden: 1, Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggAvg, Col: c(0), Count: h(0)}}}},
			oids: []uint32{oidFloat4, oidInt8}, code: "0A000"},
		{name: "avg interval refused", plan: &ScatterPlan{Hidden: 1, Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggAvg, Col: c(0), Count: h(0)}}}},
			oids: []uint32{oidInterval, oidInt8}, code: "0A000"},
		{name: "sum money refused", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggSum, Col: c(0)}}}},
			oids: []uint32{oidMoney}, code: "0A000"},
		{name: "group by jsonb refused", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)}}},
			oids: []uint32{3802}, code: "0A000"},
		{name: "max of unknown type refused", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggMax, Col: c(0)}}}},
			oids: []uint32{3802}, code: "0A000"},
		{name: "aggregate over budget", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)}}},
			oids: []uint32{oidInt4}, budget: 500, shards: [][][]string{rows("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")}, code: "53200"},
		{name: "count distinct set over budget", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggCountDistinct, Col: c(0)}}}},
			oids: []uint32{oidText}, budget: 600, shards: [][][]string{rows("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3",
				"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa5", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa6", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa7")}, code: "53200"},
		{name: "count distinct within budget", plan: &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggCountDistinct, Col: c(0)}}}},
			oids: []uint32{oidText}, budget: 600, shards: [][][]string{rows("a", "a", "a"), rows("a", "b")}, want: []string{"2"}},
		{name: "sort over budget", plan: &ScatterPlan{Root: &Sort{Keys: []SortKey{asc(c(0))}, Input: &Concatenate{Input: scatter}}},
			oids: []uint32{oidInt4}, budget: 500, shards: [][][]string{rows("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")}, code: "53200"},
		{name: "sort by avg desc", plan: &ScatterPlan{Hidden: 1, Root: &Project{Input: &Sort{Keys: []SortKey{desc(c(1))}, Input: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Aggs: []AggSpec{{Func: AggAvg, Col: c(1), Count: h(0)}}}}}},
			oids:   []uint32{oidInt4, oidInt8, oidInt8},
			shards: [][][]string{rows("1|10|1", "2|9|1", "3|NULL|0"), rows("1|1|2", "2|91|9")},
			want:   []string{"3|NULL", "2|10.0000000000000000", "1|3.6666666666666667"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := execText(tt.plan, tt.oids, tt.params, tt.budget, tt.shards...)
			if tt.code != "" {
				if sqlState(err) != tt.code {
					t.Fatalf("got %v, %v; want SQLSTATE %s", got, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestExecuteLimitStopsPulling(t *testing.T) {
	many := make([][]string, 1000)
	for i := range many {
		many[i] = []string{strconv.Itoa(i)}
	}
	tests := []struct {
		name string
		root Node
	}{
		{"merge", &Limit{Input: mergeOn(asc(c(0))), Count: &ValueRef{Text: "3"}}},
		{"concatenate", &Limit{Input: &Concatenate{Input: scatter}, Count: &ValueRef{Text: "3"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcs, mems := srcsOf(many, many, many)
			n, err := (&ScatterPlan{Root: tt.root}).Execute(context.Background(), fieldsOf(oidInt4), srcs, nil, ExecOptions{}, func([][]byte) error { return nil })
			if err != nil || n != 3 {
				t.Fatalf("n=%d err=%v", n, err)
			}
			total := 0
			for _, m := range mems {
				total += m.nexts
			}
			if total > 6 {
				t.Errorf("pulled %d rows from the shards for LIMIT 3", total)
			}
		})
	}
}

func TestExecuteCancelAndErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srcs, _ := srcsOf(rows("1", "2", "3"))
	seen := 0
	_, err := (&ScatterPlan{Root: &Concatenate{Input: scatter}}).Execute(ctx, fieldsOf(oidInt4), srcs, nil, ExecOptions{}, func([][]byte) error {
		seen++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen != 1 {
		t.Errorf("after cancel: err=%v rows=%d", err, seen)
	}

	boom := errors.New("shard s1 failed")
	for _, root := range []Node{&Concatenate{Input: scatter}, mergeOn(asc(c(0))), &Aggregate{Input: &Concatenate{Input: scatter}}} {
		_, err := (&ScatterPlan{Root: root}).Execute(context.Background(), fieldsOf(oidInt4), []Source{&memSource{rows: rows("1")}, errSource{boom}}, nil, ExecOptions{}, func([][]byte) error { return nil })
		if !errors.Is(err, boom) {
			t.Errorf("%s: shard error lost: %v", root.Describe(), err)
		}
	}
}

func TestOutputFieldsAndCheckFields(t *testing.T) {
	shard := fieldsOf(oidText, oidNumeric, oidFloat4, oidInt4, oidInt8, oidInt8, oidInt8)
	shard[1].TableOID, shard[1].TableAttributeNumber = 1234, 2
	p := &ScatterPlan{Hidden: 2, Root: &Project{Input: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
		Aggs: []AggSpec{{Func: AggAvg, Col: c(1), Count: h(0)}, {Func: AggAvg, Col: c(2), Count: h(1)}, {Func: AggCountDistinct, Col: c(3)}, {Func: AggSum, Col: c(4)}}}}}
	out, err := p.OutputFields(shard)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(out))
	for i, f := range out {
		got[i] = fmt.Sprintf("%s:%d/%d/%d/%d", f.Name, f.DataTypeOID, f.DataTypeSize, f.TypeModifier, f.TableOID)
	}
	want := []string{"c0:25/-1/-1/0", "c1:1700/-1/-1/0", "c2:701/8/-1/0", "c3:20/8/-1/0", "c4:20/-1/-1/0"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	bin := fieldsOf(oidInt4)
	bin[0].Format = 1
	if _, err := (&ScatterPlan{Root: &Concatenate{Input: scatter}}).Execute(context.Background(), bin, nil, nil, ExecOptions{}, nil); sqlState(err) != "XX000" {
		t.Errorf("binary shard fields: %v", err)
	}
	if _, err := p.OutputFields(shard[:1]); sqlState(err) != "XX000" {
		t.Errorf("too few columns: %v", err)
	}

	tests := []struct {
		name string
		a, b []pgproto3.FieldDescription
		ok   bool
	}{
		{"same", fieldsOf(oidInt4, oidText), fieldsOf(oidInt4, oidText), true},
		{"count", fieldsOf(oidInt4), fieldsOf(oidInt4, oidText), false},
		{"type", fieldsOf(oidInt4), fieldsOf(oidInt8), false},
		{"name", fieldsOf(oidInt4), []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: oidInt4}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFields(tt.a, tt.b)
			if (err == nil) != tt.ok || (err != nil && sqlState(err) != "XX000") {
				t.Errorf("CheckFields = %v", err)
			}
		})
	}
}

func TestNumeric(t *testing.T) {
	tests := []struct {
		name string
		vals []string
		sum  string
		avg  string
	}{
		{"ints", []string{"1", "2"}, "3", "1.5000000000000000"},
		{"scales", []string{"1.5", "-0.25", "100"}, "101.25", "33.7500000000000000"},
		{"zero", []string{"0.000", "-0.0"}, "0.000", "0.00000000000000000000"},
		{"exponent input", []string{"1.5e3", "2E-2"}, "1500.02", "750.0100000000000000"},
		{"tiny", []string{"0.00000001"}, "0.00000001", "0.0000000100000000000000000000"},
		{"rounds half away from zero", []string{"-2", "0", "0"}, "-2", "-0.66666666666666666667"},
		{"nan", []string{"1", "NaN"}, "NaN", "NaN"},
		{"inf", []string{"Infinity", "1"}, "Infinity", "Infinity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s numeric
			for i, v := range tt.vals {
				x, err := parseNumeric([]byte(v))
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					s = x
				} else {
					s.add(&x)
				}
			}
			if got := s.String(); got != tt.sum {
				t.Errorf("sum = %s, want %s", got, tt.sum)
			}
			q := s.divInt(int64(len(tt.vals)))
			if got := q.String(); got != tt.avg {
				t.Errorf("avg = %s, want %s", got, tt.avg)
			}
		})
	}
	for _, bad := range []string{"", "1.2.3", "abc", "1e", "--1"} {
		if _, err := parseNumeric([]byte(bad)); sqlState(err) != "22P02" {
			t.Errorf("parseNumeric(%q) = %v", bad, err)
		}
	}
}

func TestFloatText(t *testing.T) {
	tenth, fifth := 0.1, 0.2
	tests := []struct {
		f8   float64
		want string
	}{
		{tenth + fifth, "0.30000000000000004"}, {1e15, "1e+15"}, {1e14, "100000000000000"}, {123456789012345.6, "123456789012345.6"},
		{0.0001, "0.0001"}, {0.00001, "1e-05"}, {-1.5e-300, "-1.5e-300"}, {100, "100"},
	}
	for _, tt := range tests {
		if got := string(appendFloat8(nil, tt.f8)); got != tt.want {
			t.Errorf("float8 %v = %s, want %s", tt.f8, got, tt.want)
		}
	}
	tests4 := []struct {
		f4   float32
		want string
	}{{100000, "100000"}, {1e6, "1e+06"}, {0.1, "0.1"}, {1.0 / 3, "0.33333334"},
		{-85065024, "-8.5065024e+07"}, // Go's shortest "-8.506502e+07" lies exactly on the rounding bound, which Postgres' Ryu excludes
	}
	for _, tt := range tests4 {
		if got := string(appendFloat4(nil, tt.f4)); got != tt.want {
			t.Errorf("float4 %v = %s, want %s", tt.f4, got, tt.want)
		}
	}
}

// TestNumericTextOrderLaw: comparing numeric_out texts agrees with exact
// rational comparison, and equality keys are equal exactly when the
// values are.
func TestNumericTextOrderLaw(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	texts := []string{"0", "0.000", "-0.5", "NaN", "Infinity", "-Infinity"}
	for range 300 {
		x, err := parseNumeric([]byte(numericLit(r)))
		if err == nil && r.IntN(20) != 0 {
			texts = append(texts, x.String())
		}
	}
	rat := func(s string) *big.Rat {
		q, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("rat %q", s)
		}
		return q
	}
	rank := map[string]int{"-Infinity": -1, "Infinity": 1, "NaN": 2}
	nt := typeOf(oidNumeric)
	for _, a := range texts {
		for _, b := range texts {
			want := cmpInt(rank[a], rank[b])
			if want == 0 && rank[a] == 0 {
				want = rat(a).Cmp(rat(b))
			}
			if got := cmpNumericText([]byte(a), []byte(b)); got != want {
				t.Fatalf("cmp(%s, %s) = %d, want %d", a, b, got, want)
			}
			ka, _ := nt.appendKey(nil, []byte(a))
			kb, _ := nt.appendKey(nil, []byte(b))
			if (string(ka) == string(kb)) != (want == 0) {
				t.Fatalf("keys of %s, %s: %q %q", a, b, ka, kb)
			}
		}
	}
}

// TestDateLaw: day numbers of ISO dates follow the calendar (checked
// against package time for years 1..9999) and BC years continue them.
func TestDateLaw(t *testing.T) {
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 10000; d = d.AddDate(0, 0, 97) {
		got, err := parseDate([]byte(d.Format("2006-01-02")))
		if err != nil {
			t.Fatal(err)
		}
		if want := (d.Unix() - base.Unix()) / 86400; got != want {
			t.Fatalf("%s: day %d, want %d", d.Format("2006-01-02"), got, want)
		}
	}
	// 0001-12-31 BC is the day before 0001-01-01; 4713 BC is a leap year
	// in the proleptic Gregorian calendar (year -4712).
	pairs := [][2]string{{"0001-12-31 BC", "0001-01-01"}, {"0001-01-01 BC", "0002-12-31 BC"}, {"4713-02-29 BC", "4713-03-01 BC"}}
	for _, p := range pairs {
		a, err1 := parseDate([]byte(p[0]))
		b, err2 := parseDate([]byte(p[1]))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if p[0] == "0001-01-01 BC" {
			a, b = b, a
		}
		if b-a != 1 {
			t.Errorf("%s .. %s: %d days apart", p[0], p[1], b-a)
		}
	}
}

// FuzzValueText: no shard output, however unexpected, may panic the
// proxy; comparison stays antisymmetric and keys agree with it.
func FuzzValueText(f *testing.F) {
	for _, s := range []string{"1", "-1.50", "NaN", "2024-01-01 00:00:00+02", "0044-03-15 BC", "24:00:00", `\x00ff`, `\377`,
		"1 year -2 mons +3 days -04:05:06.5", "-00:00:01", "Infinity", "1e+300", "a  ",
		"{1,NULL}", `[0:1]={"a\"",b}`, "{{1,2},{3,4}}", "{}", `{"",NULL,"NULL"}`} {
		f.Add(s, "1")
		f.Add(s, "{1}")
	}
	oids := []uint32{oidInt8, oidOid, oidNumeric, oidFloat4, oidFloat8, oidText, oidBpchar, oidBool, oidDate, oidTime,
		oidTimestamp, oidTimestamptz, oidBytea, oidChar, oidInterval, arrayOf[oidInt4], arrayOf[oidText], arrayOf[oidNumeric]}
	number := func(c typeClass) bool { return c == clsInt || c == clsNumeric || c == clsFloat4 || c == clsFloat8 }
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, oid := range oids {
			ty := typeOf(oid)
			c1, err1 := ty.compare([]byte(a), []byte(b))
			c2, err2 := ty.compare([]byte(b), []byte(a))
			ka, kerr1 := ty.appendKey(nil, []byte(a))
			kb, kerr2 := ty.appendKey(nil, []byte(b))
			if err1 != nil || err2 != nil || kerr1 != nil || kerr2 != nil {
				continue
			}
			if c1 != -c2 {
				t.Fatalf("%s: compare(%q, %q) = %d but reversed %d", ty.name(), a, b, c1, c2)
			}
			if !number(ty.cls) && !(ty.cls == clsArray && number(typeOf(ty.elem).cls)) && (c1 == 0) != (string(ka) == string(kb)) {
				// (number texts that are not Postgres' canonical output may compare equal yet key apart)
				t.Fatalf("%s: compare(%q, %q) = %d, keys %q %q", ty.name(), a, b, c1, ka, kb)
			}
		}
	})
}

// TestExecuteCollatedText: under a database collation that does not
// order text by its bytes, the proxy orders no text itself (sort, merge,
// min/max, HAVING <) unless the statement asked for COLLATE "C"; other
// types, and text equality, are unaffected.
func TestExecuteCollatedText(t *testing.T) {
	run := func(root Node, oid uint32) error {
		srcs, _ := srcsOf(rows("b", "a"), rows("B"))
		_, err := (&ScatterPlan{Root: root}).Execute(context.Background(), fieldsOf(oid), srcs, nil,
			ExecOptions{CollatedText: true}, func([][]byte) error { return nil })
		return err
	}
	refused := []struct {
		name string
		root Node
	}{
		{"merge sort", mergeOn(asc(c(0)))},
		{"sort", &Sort{Input: &Concatenate{Input: scatter}, Keys: []SortKey{asc(c(0))}}},
		{"min", &Aggregate{Input: &Concatenate{Input: scatter}, Aggs: []AggSpec{{Func: AggMin, Col: c(0)}}}},
		{"having <", &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Having: &Expr{Op: ExprCmp, Cmp: "<", Col: c(0), Value: ValueRef{Text: "b"}}}},
	}
	for _, tt := range refused {
		for _, oid := range []uint32{oidText, oidVarchar, oidBpchar} {
			if err := run(tt.root, oid); sqlState(err) != "0A000" || !strings.Contains(err.Error(), "collation") {
				t.Errorf("%s of type %d: %v, want 0A000 naming the collation", tt.name, oid, err)
			}
		}
	}
	allowed := []struct {
		name string
		root Node
		oid  uint32
	}{
		{"COLLATE \"C\" sort", &Sort{Input: &Concatenate{Input: scatter}, Keys: []SortKey{{Col: c(0), Bytewise: true}}}, oidText},
		{"group by text", &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)}}, oidText},
		{"having =", &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: []ColRef{c(0)},
			Having: &Expr{Op: ExprCmp, Cmp: "=", Col: c(0), Value: ValueRef{Text: "b"}}}, oidText},
		{"\"char\" sort", &Sort{Input: &Concatenate{Input: scatter}, Keys: []SortKey{asc(c(0))}}, oidChar},
	}
	for _, tt := range allowed {
		if err := run(tt.root, tt.oid); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestCastNames: every array type a whole-mode Evaluate may be handed has
// a name to cast its text back to (an array argument is sent as text[]).
func TestCastNames(t *testing.T) {
	for elem := range arrayOf {
		if castName[elem] == "" {
			t.Errorf("type OID %d has an array type but no castName", elem)
		}
	}
	if got := wholeFrom(3, []string{"", "int4[]"}); got != " FROM (SELECT _sp_t0, _sp_t1::int4[] FROM unnest($3, $4) AS _sp_u(_sp_t0, _sp_t1)) AS _sp_m(_sp_a0, _sp_a1)" {
		t.Errorf("wholeFrom with a cast: %s", got)
	}
}

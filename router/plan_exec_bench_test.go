package router

import (
	"context"
	"strconv"
	"testing"
)

// rewindSource replays prepared rows; Reset makes it serve them again
// without allocating.
type rewindSource struct {
	rows [][][]byte
	i    int
}

func (s *rewindSource) Next() ([][]byte, error) {
	if s.i >= len(s.rows) {
		return nil, nil
	}
	s.i++
	return s.rows[s.i-1], nil
}

func benchRun(b *testing.B, p *ScatterPlan, oids []uint32, srcs []*rewindSource, perOp int) {
	b.Helper()
	fields := fieldsOf(oids...)
	in := make([]Source, len(srcs))
	for i, s := range srcs {
		in[i] = s
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, s := range srcs {
			s.i = 0
		}
		if _, err := p.Execute(context.Background(), fields, in, nil, ExecOptions{}, func([][]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(perOp), "ns/row")
}

// BenchmarkMergeSort merges 3 shards of 300k rows each, sorted by an int8
// key, interleaved so that every row changes the heap's top.
func BenchmarkMergeSort(b *testing.B) {
	const shards, perShard = 3, 300_000
	for _, tc := range []struct {
		name string
		oid  uint32
		val  func(i int) string
	}{
		{"int8", oidInt8, func(i int) string { return strconv.Itoa(i*3 - 400_000) }},
		{"numeric", oidNumeric, func(i int) string { return strconv.Itoa(i) + ".25" }},
		{"text", oidText, func(i int) string { return "customer-" + strconv.Itoa(10_000_000+i) }},
		{"timestamptz", oidTimestamptz, func(i int) string {
			return "2024-01-" + twoDigits(10+i/86400) + " " + twoDigits(i/3600%24) + ":" + twoDigits(i/60%60) + ":" + twoDigits(i%60) + "+00"
		}},
		// An array_agg result: equal leading elements, the last one decides.
		{"int4[]", arrayOf[oidInt4], func(i int) string { return "{7,NULL,42," + strconv.Itoa(i) + "}" }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srcs := make([]*rewindSource, shards)
			for s := range srcs {
				srcs[s] = &rewindSource{}
				for i := range perShard {
					v := shards*i + s
					srcs[s].rows = append(srcs[s].rows, [][]byte{[]byte(tc.val(v)), []byte("payload")})
				}
			}
			p := &ScatterPlan{Root: &MergeSort{Input: scatter, Keys: []SortKey{{Col: c(0)}}}}
			benchRun(b, p, []uint32{tc.oid, oidText}, srcs, shards*perShard)
		})
	}
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// BenchmarkAggregate re-aggregates 1M partial rows (count, int8 sum,
// numeric sum) from 3 shards, without and with 1000 groups.
func BenchmarkAggregate(b *testing.B) {
	const shards, total = 3, 1_000_000
	for _, tc := range []struct {
		name    string
		groupBy []ColRef
	}{{"no group", nil}, {"1000 groups", []ColRef{c(0)}}} {
		b.Run(tc.name, func(b *testing.B) {
			srcs := make([]*rewindSource, shards)
			for s := range srcs {
				srcs[s] = &rewindSource{}
			}
			for i := range total {
				srcs[i%shards].rows = append(srcs[i%shards].rows, [][]byte{
					[]byte(strconv.Itoa(i % 1000)), []byte(strconv.Itoa(i%97 + 1)), []byte(strconv.Itoa(i * 31)), []byte(strconv.Itoa(i%1000) + ".5")})
			}
			p := &ScatterPlan{Root: &Aggregate{Input: &Concatenate{Input: scatter}, GroupBy: tc.groupBy,
				Aggs: []AggSpec{{Func: AggCount, Col: c(1)}, {Func: AggSum, Col: c(2)}, {Func: AggSum, Col: c(3)}}}}
			benchRun(b, p, []uint32{oidInt4, oidInt8, oidInt8, oidNumeric}, srcs, total)
		})
	}
}

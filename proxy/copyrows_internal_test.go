package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/router"
)

type splitRow struct {
	Raw  string
	Key  string
	Null bool
}

// splitAll feeds input in chunks of size n (every split point is hit by
// some n) and returns the rows.
func splitAll(t *testing.T, sql string, keyPos int, input []byte, n int) ([]splitRow, error) {
	t.Helper()
	sp, err := router.ParseCopy(sql)
	if err != nil {
		t.Fatal(err)
	}
	s := newCopySplitter(sp, keyPos, "k")
	var rows []splitRow
	row := func(raw, key []byte, null bool) error {
		rows = append(rows, splitRow{string(raw), string(key), null})
		return nil
	}
	for i := 0; i < len(input); i += n {
		if err := s.feed(input[i:min(i+n, len(input))], row); err != nil {
			return rows, err
		}
	}
	return rows, s.finish(row)
}

func TestCopySplitter(t *testing.T) {
	tests := []struct {
		name   string
		sql    string
		keyPos int
		in     string
		want   []splitRow
		code   string // expected SQLSTATE
	}{
		{name: "text simple", sql: "COPY t FROM STDIN", keyPos: 1, in: "a\t1\nb\t2\n",
			want: []splitRow{{"a\t1\n", "1", false}, {"b\t2\n", "2", false}}},
		{name: "text last line without newline", sql: "COPY t FROM STDIN", keyPos: 0, in: "1\tx\n2\ty",
			want: []splitRow{{"1\tx\n", "1", false}, {"2\ty", "2", false}}},
		{name: "text escapes", sql: "COPY t FROM STDIN", keyPos: 1, in: "a\\\nb\tk\\tey\\\\\\n\\101\\x42\n",
			want: []splitRow{{"a\\\nb\tk\\tey\\\\\\n\\101\\x42\n", "k\tey\\\nAB", false}}},
		{name: "text escaped delimiter", sql: "COPY t FROM STDIN", keyPos: 1, in: "a\\\tb\t7\n",
			want: []splitRow{{"a\\\tb\t7\n", "7", false}}},
		{name: "text null", sql: "COPY t FROM STDIN", keyPos: 0, in: "\\N\tx\n",
			want: []splitRow{{"\\N\tx\n", "", true}}},
		{name: "text custom null and delimiter", sql: "COPY t FROM STDIN WITH (DELIMITER '|', NULL 'nil')", keyPos: 1, in: "x|nil\nnil|3\n",
			want: []splitRow{{"x|nil\n", "", true}, {"nil|3\n", "3", false}}},
		{name: "text crlf", sql: "COPY t FROM STDIN", keyPos: 1, in: "a\t1\r\nb\t2\r\n",
			want: []splitRow{{"a\t1\r\n", "1", false}, {"b\t2\r\n", "2", false}}},
		{name: "text cr", sql: "COPY t FROM STDIN", keyPos: 0, in: "1\r2\r",
			want: []splitRow{{"1\r", "1", false}, {"2\r", "2", false}}},
		{name: "text end marker", sql: "COPY t FROM STDIN", keyPos: 0, in: "1\n\\.\ngarbage\n",
			want: []splitRow{{"1\n", "1", false}}},
		{name: "text header", sql: "COPY t FROM STDIN WITH (HEADER)", keyPos: 0, in: "k\tv\n5\tx\n",
			want: []splitRow{{"5\tx\n", "5", false}}},
		{name: "text missing key field", sql: "COPY t FROM STDIN", keyPos: 2, in: "1\t2\n", code: "22P04"},
		{name: "non-ASCII", sql: "COPY t FROM STDIN", keyPos: 0, in: "Zürich\tö\n",
			want: []splitRow{{"Zürich\tö\n", "Zürich", false}}},
		{name: "csv quoted", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 1, in: "\"a,\nb\",\"k\"\"1\"\r\n2,\"x\"\r\n",
			want: []splitRow{{"\"a,\nb\",\"k\"\"1\"\r\n", "k\"1", false}, {"2,\"x\"\r\n", "x", false}}},
		{name: "mixed line endings", sql: "COPY t FROM STDIN", keyPos: 0, in: "1\n2\r\n", code: "22P04"},
		{name: "mixed line endings csv", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 0, in: "1\r\n2\n", code: "22P04"},
		{name: "csv mixed quoting", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 0, in: "a\"b,c\"d,e\n",
			want: []splitRow{{"a\"b,c\"d,e\n", "ab,cd", false}}},
		{name: "csv null and empty string", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 0, in: ",1\n\"\",2\n",
			want: []splitRow{{",1\n", "", true}, {"\"\",2\n", "", false}}},
		{name: "csv force not null", sql: "COPY t (k, v) FROM STDIN (FORMAT csv, FORCE_NOT_NULL (k))", keyPos: 0, in: ",1\n",
			want: []splitRow{{",1\n", "", false}}},
		{name: "csv force null", sql: "COPY t (k, v) FROM STDIN (FORMAT csv, FORCE_NULL (k))", keyPos: 0, in: "\"\",1\n",
			want: []splitRow{{"\"\",1\n", "", true}}},
		{name: "csv escape", sql: "COPY t FROM STDIN (FORMAT csv, ESCAPE '\\')", keyPos: 0, in: "\"a\\\"b\\\\\",1\n",
			want: []splitRow{{"\"a\\\"b\\\\\",1\n", "a\"b\\", false}}},
		{name: "csv header with quoted newline", sql: "COPY t FROM STDIN (FORMAT csv, HEADER true)", keyPos: 0, in: "\"k\ney\",v\n9,x\n",
			want: []splitRow{{"9,x\n", "9", false}}},
		{name: "csv unterminated", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 0, in: "\"abc\n", code: "22P04"},
		{name: "csv end marker", sql: "COPY t FROM STDIN (FORMAT csv)", keyPos: 0, in: "1,a\n\\.\n",
			want: []splitRow{{"1,a\n", "1", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for n := 1; n <= len(tc.in)+1; n++ {
				got, err := splitAll(t, tc.sql, tc.keyPos, []byte(tc.in), n)
				if tc.code != "" {
					var pe *pgconn.PgError
					if !errors.As(err, &pe) || pe.Code != tc.code {
						t.Fatalf("chunk %d: err = %v, want SQLSTATE %s", n, err, tc.code)
					}
					continue
				}
				if err != nil {
					t.Fatalf("chunk %d: %v", n, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("chunk %d:\n got %+v\nwant %+v", n, got, tc.want)
				}
			}
		})
	}
}

func TestCopySplitterBinary(t *testing.T) {
	header := append(append([]byte(nil), binarySignature...), 0, 0, 0, 0, 0, 0, 0, 2, 'x', 'y')
	tuple := func(fields ...[]byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
		for _, f := range fields {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
		return b
	}
	t1 := tuple([]byte("abc"), binary.BigEndian.AppendUint64(nil, 42))
	t2 := tuple([]byte("d"), nil)
	in := append(append(append(append([]byte(nil), header...), t1...), t2...), binaryTrailer...)
	in = append(in, "ignored"...)
	want := []splitRow{{string(t1), string(binary.BigEndian.AppendUint64(nil, 42)), false}, {string(t2), "", true}}
	for n := 1; n <= len(in); n++ {
		sp, _ := router.ParseCopy("COPY t FROM STDIN (FORMAT binary)")
		s := newCopySplitter(sp, 1, "k")
		var rows []splitRow
		row := func(raw, key []byte, null bool) error {
			rows = append(rows, splitRow{string(raw), string(key), null})
			return nil
		}
		for i := 0; i < len(in); i += n {
			if err := s.feed(in[i:min(i+n, len(in))], row); err != nil {
				t.Fatalf("chunk %d: %v", n, err)
			}
		}
		if err := s.finish(row); err != nil {
			t.Fatalf("chunk %d: %v", n, err)
		}
		if !reflect.DeepEqual(rows, want) || string(s.binHeader) != string(header) {
			t.Fatalf("chunk %d: got %+v header %q", n, rows, s.binHeader)
		}
	}
	t.Run("truncated", func(t *testing.T) {
		_, err := splitAll(t, "COPY t FROM STDIN (FORMAT binary)", 1, append(append([]byte(nil), header...), t1[:5]...), 3)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "22P04" {
			t.Fatalf("err = %v, want 22P04", err)
		}
	})
}

func TestStripBinaryHeader(t *testing.T) {
	h := append(append([]byte(nil), binarySignature...), 0, 0, 0, 0, 0, 0, 0, 0)
	if got := stripBinaryHeader(append(h, 1, 2)); string(got) != "\x01\x02" {
		t.Fatalf("got %q", got)
	}
	if got := stripBinaryHeader([]byte{0, 1}); string(got) != "\x00\x01" {
		t.Fatalf("got %q", got)
	}
}

// BenchmarkCopySplitter measures cutting rows and decoding keys (no I/O):
// the proxy's own cost per byte of COPY FROM data.
func BenchmarkCopySplitter(b *testing.B) {
	for _, tc := range []struct{ name, sql, row string }{
		{"text", "COPY t FROM STDIN", "%d\t%d\t0\tsome filler text with a \\t tab\n"},
		{"csv", "COPY t FROM STDIN (FORMAT csv)", "%d,%d,0,\"quoted, filler \"\"text\"\"\"\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var data []byte
			for i := 0; len(data) < 1<<20; i++ {
				data = fmt.Appendf(data, tc.row, i, i/100)
			}
			sp, err := router.ParseCopy(tc.sql)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			rows := 0
			row := func(raw, key []byte, null bool) error { rows++; return nil }
			for b.Loop() {
				s := newCopySplitter(sp, 0, "k")
				for i := 0; i < len(data); i += 64 << 10 {
					if err := s.feed(data[i:min(i+64<<10, len(data))], row); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.finish(row); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCopySplitter: however CopyData messages cut the stream, the rows,
// keys and errors are the same as for the whole input in one message.
func FuzzCopySplitter(f *testing.F) {
	for _, in := range []string{"1\ta\n2\tb\n", "\"a,\nb\",1\r\n", "x\\\ty\t2\r3\t\\N\r", "1,\"\"\"\",2\n\\.\nzz"} {
		f.Add([]byte(in), uint8(0), uint16(3))
		f.Add([]byte(in), uint8(1), uint16(1))
	}
	sqls := []string{"COPY t FROM STDIN", "COPY t FROM STDIN (FORMAT csv)", "COPY t FROM STDIN (FORMAT csv, HEADER, ESCAPE '\\')",
		"COPY t FROM STDIN (DELIMITER ',', NULL '')"}
	f.Fuzz(func(t *testing.T, in []byte, which uint8, cut uint16) {
		sql := sqls[int(which)%len(sqls)]
		whole, errWhole := splitAll(t, sql, 1, in, len(in)+1)
		n := int(cut)%(len(in)+1) + 1
		parts, errParts := splitAll(t, sql, 1, in, n)
		if (errWhole == nil) != (errParts == nil) {
			t.Fatalf("chunk %d: error %v, whole input: %v", n, errParts, errWhole)
		}
		if errWhole != nil {
			return
		}
		if !reflect.DeepEqual(whole, parts) {
			t.Fatalf("chunk %d: rows %+v, whole input: %+v", n, parts, whole)
		}
	})
}

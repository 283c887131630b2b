package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/strategies"
)

// COPY through the proxy over 3 shards: rows of COPY FROM STDIN land where
// their key's strategy says (checked against the strategy itself, on each
// shard directly), COPY TO STDOUT returns every row once, and a failure
// anywhere leaves nothing behind anywhere.

const copyBody = `
strategies:
  h:  {type: hash, key_type: int, shards: [s0, s1, s2]}
  r:  {type: range, key_type: int, ranges: [{upper: 100, shard: s0}, {upper: 1000, shard: s1}, {shard: s2}]}
  ht: {type: hash, key_type: text, shards: [s0, s1, s2]}
  d:  {type: directory, table: dir_d, fallback: h}
tables:
  ditems: {key: id, strategy: d}
  gitems: {key: id, strategy: h}
  hitems: {key: id, strategy: h}
  ritems: {key: id, strategy: r}
  titems: {key: name, strategy: ht}
  refs:   {reference: true}
default_shard: s0
`

type copyFixture struct {
	*fixture
	c      *pgx.Conn
	strats map[string]strategies.Strategy
}

func startCopyFixture(t *testing.T) *copyFixture {
	t.Helper()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: copyBody})
	c := f.Connect(t)
	for _, ddl := range []string{
		"CREATE TABLE hitems (id bigint NOT NULL, name text, note text CHECK (note IS DISTINCT FROM 'bad'))",
		"CREATE TABLE ritems (id bigint NOT NULL, name text, note text)",
		"CREATE TABLE titems (name text NOT NULL, id bigint, note text)",
		"CREATE TABLE refs (id bigint, note text)",
		"CREATE TABLE ditems (id bigint NOT NULL, name text, note text)",
		"CREATE TABLE gitems (a int, g int GENERATED ALWAYS AS (a * 2) STORED, id bigint NOT NULL, note text)",
	} {
		mustExec(t, c, ddl)
	}
	return &copyFixture{fixture: f, c: c, strats: buildStrategies(t, f)}
}

// placed reads table on every shard directly, checks that each row is on
// the shard its key's strategy names, and returns key -> note ("<NULL>"
// for NULL).
func (f *copyFixture) placed(t *testing.T, table, keyCol, strategy string) map[string]string {
	t.Helper()
	ctx := context.Background()
	st := f.strats[strategy]
	out := map[string]string{}
	for _, sh := range []string{"s0", "s1", "s2"} {
		rows, err := f.Direct(t, sh).Query(ctx, fmt.Sprintf("SELECT %s::text, coalesce(note, '<NULL>') FROM %s", keyCol, table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, note string
			if err := rows.Scan(&k, &note); err != nil {
				t.Fatal(err)
			}
			key, err := strategies.ParseKey(st.KeyType(), k)
			if err != nil {
				t.Fatal(err)
			}
			want, err := st.Locate(ctx, key, strategies.Write)
			if err != nil {
				t.Fatal(err)
			}
			if want != sh {
				t.Errorf("%s row %s=%q is on %s, strategy %s places it on %s", table, keyCol, k, sh, strategy, want)
			}
			if _, dup := out[k]; dup {
				t.Errorf("%s row %s=%q is stored twice", table, keyCol, k)
			}
			out[k] = note
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (f *copyFixture) total(t *testing.T, table string) int64 {
	t.Helper()
	var n int64
	for _, sh := range []string{"s0", "s1", "s2"} {
		n += directCount(t, f.fixture, sh, table, "true")
	}
	return n
}

func (f *copyFixture) copyIn(sql, data string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tag, err := f.c.PgConn().CopyFrom(ctx, strings.NewReader(data), sql)
	return tag.RowsAffected(), err
}

func TestCopyFromSplitsRows(t *testing.T) {
	f := startCopyFixture(t)
	var plain strings.Builder
	want := map[string]string{}
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&plain, "%d\tn%d\tnote %d\n", i*37, i, i)
		want[strconv.Itoa(i*37)] = fmt.Sprintf("note %d", i)
	}
	tests := []struct {
		name, table, key, strategy string
		sql, data                  string
		want                       map[string]string
	}{
		{name: "text without column list", table: "hitems", key: "id", strategy: "h",
			sql: "COPY hitems FROM STDIN", data: plain.String(), want: want},
		{name: "text range strategy", table: "ritems", key: "id", strategy: "r",
			sql: "copy ritems from stdin", data: "5\ta\tlow\n150\tb\tmid\n99\tc\tedge\n100\td\tedge2\n5000\te\thigh\n",
			want: map[string]string{"5": "low", "150": "mid", "99": "edge", "100": "edge2", "5000": "high"}},
		{name: "text column list reordered", table: "hitems", key: "id", strategy: "h",
			sql: "COPY hitems (note, id) FROM STDIN", data: "x\t1\ny\t2\nz\t3\n",
			want: map[string]string{"1": "x", "2": "y", "3": "z"}},
		{name: "text escapes NULL and non-ASCII", table: "hitems", key: "id", strategy: "h",
			sql:  "COPY hitems (id, note) FROM STDIN",
			data: "1\tline\\nbreak\n2\ttab\\there\n3\t\\N\n4\tback\\\\slash\n5\tZürich ✓\n6\tliteral\\\nnewline\n\\.\n",
			want: map[string]string{"1": "line\nbreak", "2": "tab\there", "3": "<NULL>", "4": `back\slash`, "5": "Zürich ✓", "6": "literal\nnewline"}},
		{name: "text key with escapes", table: "titems", key: "name", strategy: "ht",
			sql:  "COPY titems (name, note) FROM STDIN",
			data: "Zü\\trich\ta\nplain\tb\n\\x41B\tc\nkey\\\\x\td\n",
			want: map[string]string{"Zü\trich": "a", "plain": "b", "AB": "c", `key\x`: "d"}},
		{name: "csv header quoted fields", table: "hitems", key: "id", strategy: "h",
			sql:  "COPY hitems (id, name, note) FROM STDIN WITH (FORMAT csv, HEADER true)",
			data: "id,name,note\r\n1,a,\"comma, inside\"\r\n2,b,\"quote \"\"q\"\" inside\"\r\n3,c,\"new\nline\"\r\n\"4\",d,\r\n5,e,\"\"\r\n",
			want: map[string]string{"1": "comma, inside", "2": `quote "q" inside`, "3": "new\nline", "4": "<NULL>", "5": ""}},
		{name: "csv custom delimiter and quote", table: "titems", key: "name", strategy: "ht",
			sql:  "COPY titems (note, name) FROM STDIN WITH (FORMAT csv, DELIMITER ';', QUOTE '''')",
			data: "a;'x;y'\nb;'it''s'\nc;ü\n",
			want: map[string]string{"x;y": "a", "it's": "b", "ü": "c"}},
		{name: "directory strategy", table: "ditems", key: "id", strategy: "d",
			sql: "COPY ditems (id, note) FROM STDIN", data: "1\ta\n2\tb\n3\tc\n4\td\n",
			want: map[string]string{"1": "a", "2": "b", "3": "c", "4": "d"}},
		{name: "generated column before the key", table: "gitems", key: "id", strategy: "h",
			sql: "COPY gitems FROM STDIN", data: "1\t7\tseven\n2\t8\teight\n3\t9\tnine\n",
			want: map[string]string{"7": "seven", "8": "eight", "9": "nine"}},
		{name: "csv legacy syntax", table: "ritems", key: "id", strategy: "r",
			sql: "COPY ritems (id, note) FROM STDIN CSV HEADER", data: "id,note\n1,a\n500,b\n2000,c",
			want: map[string]string{"1": "a", "500": "b", "2000": "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustExec(t, f.c, "TRUNCATE "+tc.table)
			n, err := f.copyIn(tc.sql, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tc.want)) {
				t.Errorf("COPY tag says %d rows, want %d", n, len(tc.want))
			}
			got := f.placed(t, tc.table, tc.key, tc.strategy)
			if len(got) != len(tc.want) {
				t.Errorf("shards hold %d rows, want %d", len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("row %q: note %q, want %q", k, got[k], v)
				}
				// A point read through the proxy finds the row, as after an INSERT.
				var note *string
				if err := f.c.QueryRow(context.Background(), fmt.Sprintf("SELECT note FROM %s WHERE %s = $1", tc.table, tc.key), k).Scan(&note); err != nil {
					t.Errorf("reading row %q through the proxy: %v", k, err)
				}
			}
		})
	}
}

func TestCopyFromReferenceTable(t *testing.T) {
	f := startCopyFixture(t)
	n, err := f.copyIn("COPY refs FROM STDIN (FORMAT csv, HEADER)", "id,note\n1,a\n2,b\n3,c\n")
	if err != nil || n != 3 {
		t.Fatalf("COPY refs: %d rows, %v; want 3", n, err)
	}
	for _, sh := range []string{"s0", "s1", "s2"} {
		if got := directCount(t, f.fixture, sh, "refs", "true"); got != 3 {
			t.Errorf("%s holds %d rows of refs, want every row (3)", sh, got)
		}
	}
}

func TestCopyFromBinaryPgx(t *testing.T) {
	f := startCopyFixture(t)
	ctx := context.Background()
	var rows [][]any
	want := map[string]string{}
	for i := int64(1); i <= 1000; i++ {
		note := any(fmt.Sprintf("bin ü %d", i))
		if i%10 == 0 {
			note = nil
			want[strconv.FormatInt(i, 10)] = "<NULL>"
		} else {
			want[strconv.FormatInt(i, 10)] = note.(string)
		}
		rows = append(rows, []any{i, "n", note})
	}
	n, err := f.c.CopyFrom(ctx, pgx.Identifier{"hitems"}, []string{"id", "name", "note"}, pgx.CopyFromRows(rows))
	if err != nil || n != 1000 {
		t.Fatalf("pgx CopyFrom: %d, %v", n, err)
	}
	got := f.placed(t, "hitems", "id", "h")
	if len(got) != len(want) {
		t.Fatalf("shards hold %d rows, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("row %s: %q, want %q", k, got[k], v)
		}
	}
	t.Run("text key", func(t *testing.T) {
		n, err := f.c.CopyFrom(ctx, pgx.Identifier{"titems"}, []string{"name", "note"},
			pgx.CopyFromRows([][]any{{"alpha", "1"}, {"Zürich", "2"}, {"", "3"}}))
		if err != nil || n != 3 {
			t.Fatalf("pgx CopyFrom: %d, %v", n, err)
		}
		got := f.placed(t, "titems", "name", "ht")
		if got["alpha"] != "1" || got["Zürich"] != "2" || got[""] != "3" {
			t.Fatalf("got %v", got)
		}
	})
}

// failingReader returns data, then an error: pgconn answers with CopyFail.
type failingReader struct{ data io.Reader }

func (r *failingReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if err == io.EOF {
		return n, errors.New("client changed its mind")
	}
	return n, err
}

func TestCopyFromFailuresLeaveNothing(t *testing.T) {
	f := startCopyFixture(t)
	var many strings.Builder
	for i := 1; i <= 2000; i++ {
		fmt.Fprintf(&many, "%d\tn\tok\n", i)
	}
	tests := []struct {
		name, sql, data string
		code            string
		where           string // the error's context: where in the client's data, as Postgres says it
	}{
		// Rows for every shard first, then a row a shard rejects.
		{name: "check violation on one shard", sql: "COPY hitems FROM STDIN", data: many.String() + "2001\tn\tbad\n", code: "23514",
			where: "COPY hitems, line 2001"},
		{name: "check violation after a header", sql: "COPY hitems FROM STDIN (FORMAT csv, HEADER)", data: "id,name,note\n1,a,b\n2,a,b\n3,a,bad\n4,a,b\n", code: "23514",
			where: "COPY hitems, line 4"},
		{name: "extra column on one shard", sql: "COPY hitems FROM STDIN", data: many.String() + "2001\tn\tok\textra\n", code: "22P04"},
		{name: "bad key", sql: "COPY hitems FROM STDIN", data: many.String() + "abc\tn\tok\n", code: "22P02", where: "COPY hitems, line 2001"},
		{name: "NULL key", sql: "COPY hitems FROM STDIN", data: many.String() + "\\N\tn\tok\n", code: "23502", where: "COPY hitems, line 2001"},
		{name: "CSV NULL key", sql: "COPY hitems FROM STDIN (FORMAT csv)", data: "1,a,b\n,a,b\n", code: "23502", where: "COPY hitems, line 2"},
		{name: "missing key field", sql: "COPY hitems (note, id) FROM STDIN", data: "x\t1\ny\n", code: "22P04"},
		{name: "mixed line endings", sql: "COPY hitems FROM STDIN", data: many.String() + "2001\tn\tok\r\n", code: "22P04"},
		{name: "unterminated CSV quote", sql: "COPY hitems FROM STDIN (FORMAT csv)", data: "1,a,b\n2,\"open\n", code: "22P04"},
		{name: "key column not copied", sql: "COPY hitems (note) FROM STDIN", data: "x\n", code: "0A000"},
		{name: "header match", sql: "COPY hitems FROM STDIN (FORMAT csv, HEADER match)", data: "id,name,note\n", code: "0A000"},
		{name: "server file", sql: "COPY hitems FROM '/tmp/shardproxy-nonexistent'", code: "0A000"},
		{name: "unknown column", sql: "COPY hitems (id, nope) FROM STDIN", data: "1\tx\n", code: "42703"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.copyIn(tc.sql, tc.data)
			wantSQLState(t, err, tc.code)
			var pgErr *pgconn.PgError
			if tc.where != "" && (!errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Where, tc.where) ||
				len(pgErr.Where) > len(tc.where) && strings.ContainsAny(pgErr.Where[len(tc.where):len(tc.where)+1], "0123456789")) {
				t.Errorf("error %v, want the context %q", err, tc.where)
			}
			if n := f.total(t, "hitems"); n != 0 {
				t.Fatalf("%d rows committed after a failed COPY", n)
			}
			var one int
			if err := f.c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
				t.Fatalf("connection unusable after the error: %v", err)
			}
		})
	}
	t.Run("CopyFail", func(t *testing.T) {
		_, err := f.c.PgConn().CopyFrom(context.Background(), &failingReader{strings.NewReader(many.String())}, "COPY hitems FROM STDIN")
		wantSQLState(t, err, "57014")
		if n := f.total(t, "hitems"); n != 0 {
			t.Fatalf("%d rows committed after CopyFail", n)
		}
	})
	t.Run("inside a transaction", func(t *testing.T) {
		tx, err := f.c.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		_, err = tx.Conn().PgConn().CopyFrom(context.Background(), strings.NewReader("1\ta\tb\n"), "COPY hitems FROM STDIN")
		wantSQLState(t, err, "0A000")
	})
}

func TestCopyFromLargeStream(t *testing.T) {
	f := startCopyFixture(t)
	const rows = 200_000
	pr, pw := io.Pipe()
	go func() { // owned by this test: ends when every row is written or the reader is gone
		w := make([]byte, 0, 64<<10)
		for i := 1; i <= rows; i++ {
			w = fmt.Appendf(w, "%d\tname %d\tsome note text for row %d\n", i, i, i)
			if len(w) > 60<<10 {
				if _, err := pw.Write(w); err != nil {
					return
				}
				w = w[:0]
			}
		}
		pw.Write(w)
		pw.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tag, err := f.c.PgConn().CopyFrom(ctx, pr, "COPY hitems FROM STDIN")
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != rows {
		t.Errorf("tag %q, want %d rows", tag, rows)
	}
	for _, sh := range []string{"s0", "s1", "s2"} {
		n := directCount(t, f.fixture, sh, "hitems", "true")
		if n < rows/6 {
			t.Errorf("%s holds only %d of %d rows", sh, n, rows)
		}
	}
	if n := f.total(t, "hitems"); n != rows {
		t.Errorf("shards hold %d rows, want %d", n, rows)
	}
	got := f.placed(t, "hitems", "id", "h")
	if len(got) != rows {
		t.Errorf("%d distinct rows, want %d", len(got), rows)
	}
}

// copyOut runs a COPY TO STDOUT through the proxy.
func (f *copyFixture) copyOut(t *testing.T, sql string) (string, int64) {
	t.Helper()
	var buf bytes.Buffer
	tag, err := f.c.PgConn().CopyTo(context.Background(), &buf, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return buf.String(), tag.RowsAffected()
}

func TestCopyToConcatenates(t *testing.T) {
	f := startCopyFixture(t)
	var data strings.Builder
	var want []string
	for i := 1; i <= 500; i++ {
		fmt.Fprintf(&data, "%d\tn%d\tü %d\n", i, i, i)
		want = append(want, fmt.Sprintf("%d\tn%d\tü %d", i, i, i))
	}
	if _, err := f.copyIn("COPY hitems FROM STDIN", data.String()); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	lines := func(s string) []string {
		l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		sort.Strings(l)
		return l
	}
	t.Run("text", func(t *testing.T) {
		out, n := f.copyOut(t, "COPY hitems TO STDOUT")
		if n != 500 || strings.Join(lines(out), "\n") != strings.Join(want, "\n") {
			t.Fatalf("COPY TO gave %d rows:\n%.300s", n, out)
		}
	})
	t.Run("csv header once", func(t *testing.T) {
		out, n := f.copyOut(t, "COPY hitems (id, name) TO STDOUT WITH (FORMAT csv, HEADER)")
		if n != 500 || !strings.HasPrefix(out, "id,name\n") || strings.Count(out, "id,name") != 1 || strings.Count(out, "\n") != 501 {
			t.Fatalf("COPY TO csv gave %d rows:\n%.300s", n, out)
		}
	})
	t.Run("query", func(t *testing.T) {
		out, n := f.copyOut(t, "COPY (SELECT id FROM hitems WHERE id > 100) TO STDOUT")
		if n != 400 || len(lines(out)) != 400 {
			t.Fatalf("COPY (SELECT) gave %d rows", n)
		}
	})
	t.Run("query needing a merge", func(t *testing.T) {
		// Merged as the SELECT would be (copymerge.go; TestCopyQueryMerged
		// compares many such with an oracle).
		out, n := f.copyOut(t, "COPY (SELECT id FROM hitems ORDER BY id DESC LIMIT 300) TO STDOUT")
		ls := strings.Split(strings.TrimSuffix(out, "\n"), "\n") // in order
		if n != 300 || len(ls) != 300 || ls[0] != "500" || ls[299] != "201" {
			t.Fatalf("COPY (SELECT ... ORDER BY ... LIMIT) gave %d rows, from %q to %q", n, ls[0], ls[len(ls)-1])
		}
	})
	t.Run("binary query needing a merge is refused", func(t *testing.T) {
		_, err := f.c.PgConn().CopyTo(context.Background(), io.Discard, "COPY (SELECT id FROM hitems ORDER BY id) TO STDOUT (FORMAT binary)")
		wantSQLState(t, err, "0A000")
	})
	t.Run("binary round trip", func(t *testing.T) {
		bin, n := f.copyOut(t, "COPY hitems TO STDOUT (FORMAT binary)")
		if n != 500 {
			t.Fatalf("binary COPY TO gave %d rows", n)
		}
		mustExec(t, f.c, "TRUNCATE hitems")
		if m, err := f.copyIn("COPY hitems FROM STDIN (FORMAT binary)", bin); err != nil || m != 500 {
			t.Fatalf("binary COPY FROM: %d, %v", m, err)
		}
		out, _ := f.copyOut(t, "COPY hitems TO STDOUT")
		if strings.Join(lines(out), "\n") != strings.Join(want, "\n") {
			t.Fatalf("binary round trip changed the rows:\n%.300s", out)
		}
		f.placed(t, "hitems", "id", "h")
	})
}

func TestCopyPsqlRoundTrip(t *testing.T) {
	f := startCopyFixture(t)
	psql := clientTool(t, "psql")
	src := "1\ta\tplain\n2\tb\tquote \" and , comma\n3\tc\t\\N\n4\td\tmulti\\nline\n5\te\tÜnïcødé\n"
	for i := 6; i <= 300; i++ {
		src += fmt.Sprintf("%d\tn\tnote %d\n", i, i)
	}
	if _, err := f.copyIn("COPY hitems FROM STDIN", src); err != nil {
		t.Fatal(err)
	}
	before := f.placed(t, "hitems", "id", "h")
	dir := t.TempDir()
	for _, format := range []string{"text", "csv header"} {
		t.Run(format, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(format, " ", "_"))
			if out, errOut, code := f.runTool(t, psql, "", "-X", "-v", "ON_ERROR_STOP=1", "-c",
				fmt.Sprintf(`\copy hitems to '%s' with (format %s)`, file, strings.Replace(format, " header", ", header", 1))); code != 0 {
				t.Fatalf("psql \\copy to: %d\n%s\n%s", code, out, errOut)
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(b), "\n"); got < 300 {
				t.Fatalf("exported %d lines, want at least 300", got)
			}
			mustExec(t, f.c, "TRUNCATE hitems")
			out, errOut, code := f.runTool(t, psql, "", "-X", "-v", "ON_ERROR_STOP=1", "-c",
				fmt.Sprintf(`\copy hitems from '%s' with (format %s)`, file, strings.Replace(format, " header", ", header", 1)))
			if code != 0 || !strings.Contains(out, "COPY 300") {
				t.Fatalf("psql \\copy from: %d\n%s\n%s", code, out, errOut)
			}
			after := f.placed(t, "hitems", "id", "h")
			if len(after) != len(before) {
				t.Fatalf("%d rows after the round trip, want %d", len(after), len(before))
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("row %s: %q after the round trip, was %q", k, after[k], v)
				}
			}
		})
	}
	t.Run("stdin", func(t *testing.T) {
		mustExec(t, f.c, "TRUNCATE hitems")
		out, errOut, code := f.runTool(t, psql, "1\tx\ty\n2\tx\ty\n3\tx\ty\n\\.\n", "-X", "-v", "ON_ERROR_STOP=1", "-c", `\copy hitems from stdin`)
		if code != 0 || !strings.Contains(out, "COPY 3") {
			t.Fatalf("psql \\copy from stdin: %d\n%s\n%s", code, out, errOut)
		}
		if n := f.total(t, "hitems"); n != 3 {
			t.Fatalf("%d rows, want 3", n)
		}
	})
	// A COPY the proxy refuses but Postgres would start fails in copy-in
	// mode, as Postgres fails one in its data: psql sends the script's
	// data lines as COPY data, not as SQL.
	t.Run("refused in copy-in mode", func(t *testing.T) {
		mustExec(t, f.c, "TRUNCATE hitems")
		for _, copy := range []string{`\copy hitems (name) from stdin`, `\copy hitems from stdin with (format csv, header match)`} {
			script := copy + "\nid,name,note\nDROP TABLE hitems;\n\\.\nSELECT 'after' AS next;\n"
			out, errOut, code := f.runTool(t, psql, script, "-X", "-f", "-")
			if code != 0 || !strings.Contains(errOut, "not supported") && !strings.Contains(errOut, "does not set shard key column") ||
				strings.Contains(errOut, "syntax error") || !strings.Contains(out, "after") {
				t.Fatalf("%s: exit %d\n%s\n%s", copy, code, out, errOut)
			}
			if n := f.total(t, "hitems"); n != 0 {
				t.Fatalf("%s: %d rows, want none", copy, n)
			}
		}
	})
	_ = pgconn.CommandTag{}
}

// pgbenchCopyBody shards pgbench_accounts by aid over 3 shards; branches and
// tellers are reference tables, history lives on s0.
const pgbenchCopyBody = `
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  pgbench_accounts: {key: aid, strategy: by_aid}
  pgbench_history:  {key: aid, strategy: by_aid}
  pgbench_branches: {reference: true}
  pgbench_tellers:  {reference: true}
default_shard: s0
`

// checkPgbenchPlacement checks every account is on its strategy's shard
// and every shard has all tellers.
func checkPgbenchPlacement(t *testing.T, f *fixture, accounts int64) {
	t.Helper()
	ctx := context.Background()
	strats, err := strategies.Build(ctx, f.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	elsewhere := map[string][]int64{}
	for aid := int64(1); aid <= accounts; aid++ {
		owner, err := strats["by_aid"].Locate(ctx, strategies.Key{Type: strategies.KeyInt, Int: aid}, strategies.Write)
		if err != nil {
			t.Fatal(err)
		}
		want[owner]++
		for _, sh := range []string{"s0", "s1", "s2"} {
			if sh != owner {
				elsewhere[sh] = append(elsewhere[sh], aid)
			}
		}
	}
	for _, sh := range []string{"s0", "s1", "s2"} {
		// The right number of accounts, none of them another shard's.
		if n := directCount(t, f, sh, "pgbench_accounts", "true"); n != want[sh] {
			t.Errorf("%s holds %d accounts, the strategy places %d there", sh, n, want[sh])
		}
		if n := directCount(t, f, sh, "pgbench_accounts", "aid = ANY($1)", elsewhere[sh]); n != 0 {
			t.Errorf("%s holds %d accounts the strategy places elsewhere", sh, n)
		}
		if n := directCount(t, f, sh, "pgbench_tellers", "true"); n != 10 {
			t.Errorf("%s holds %d tellers, want 10 (reference table)", sh, n)
		}
	}
}

// pgbench's client-side data generation, step by step through the proxy:
// tables created by pgbench -i -I dt, rows loaded with the COPY statements
// and row format pgbench 15 uses (minus FREEZE, which needs the table
// truncated in the same transaction), then pgbench -i -I vp and a
// select-only run.
func TestCopyPgbenchData(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: pgbenchCopyBody})
	pgbench := clientTool(t, "pgbench")
	if out, errOut, code := f.runTool(t, pgbench, "", "-i", "-I", "dt"); code != 0 {
		t.Fatalf("pgbench -i -I dt: exit %d\n%s\n%s", code, out, errOut)
	}
	c := f.Connect(t)
	ctx := context.Background()
	load := func(table string, n int, row func(w []byte, i int) []byte) {
		t.Helper()
		pr, pw := io.Pipe()
		go func() { // ends when all rows are written or the reader is closed
			var w []byte
			for i := 0; i < n; i++ {
				w = row(w, i)
				if len(w) > 32<<10 {
					if _, err := pw.Write(w); err != nil {
						return
					}
					w = w[:0]
				}
			}
			pw.Write(w)
			pw.Close()
		}()
		tag, err := c.PgConn().CopyFrom(ctx, pr, "copy "+table+" from stdin")
		pr.Close()
		if err != nil || tag.RowsAffected() != int64(n) {
			t.Fatalf("copy %s: %v, %v; want %d rows", table, tag, err, n)
		}
	}
	load("pgbench_branches", 1, func(w []byte, i int) []byte { return fmt.Appendf(w, "%d\t0\t\n", i+1) })
	load("pgbench_tellers", 10, func(w []byte, i int) []byte { return fmt.Appendf(w, "%d\t%d\t0\t\n", i+1, i/10+1) })
	load("pgbench_accounts", 100000, func(w []byte, i int) []byte {
		return fmt.Appendf(w, "%d\t%d\t%d\t\n", i+1, i/100000+1, 0)
	})
	if out, errOut, code := f.runTool(t, pgbench, "", "-i", "-I", "vp"); code != 0 {
		t.Fatalf("pgbench -i -I vp: exit %d\n%s\n%s", code, out, errOut)
	}
	checkPgbenchPlacement(t, f, 100000)
	out, errOut, code := f.runTool(t, pgbench, "", "-n", "-S", "-t", "200")
	if code != 0 || pgbenchFailed.FindStringSubmatch(out) == nil || pgbenchFailed.FindStringSubmatch(out)[1] != "0" {
		t.Fatalf("pgbench -S: exit %d\n%s\n%s", code, out, errOut)
	}
}

// pgbench -i itself: pgbench 15 runs TRUNCATE and the COPYs of all three
// tables in one transaction, which spans shards. It needs cross-shard
// transactions (two-phase commit work) to take COPY into them; until then
// the proxy refuses the TRUNCATE with 0A000 and this test fails.
func TestCopyPgbenchInit(t *testing.T) {
	// pgbench -i truncates and loads every table in one transaction, which
	// spans shards: two-phase commit makes it one atomic load.
	f := startFixture(t, fixtureOptions{Shards: 3, Body: pgbenchCopyBody, Top: "two_phase_commit: true\n"})
	pgbench := clientTool(t, "pgbench")
	out, errOut, code := f.runTool(t, pgbench, "", "-i", "-s", "1")
	if code != 0 {
		t.Fatalf("pgbench -i through the proxy: exit %d\n%s\n%s", code, out, errOut)
	}
	checkPgbenchPlacement(t, f, 100000)

	// COPY inside a transaction block is part of it: ROLLBACK undoes it
	// on every shard, COMMIT keeps it on every shard.
	ctx := context.Background()
	c := f.Connect(t)
	for _, end := range []string{"ROLLBACK", "COMMIT"} {
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		var rows strings.Builder
		for aid := 100001; aid <= 100300; aid++ {
			fmt.Fprintf(&rows, "%d\t1\t0\t\n", aid)
		}
		tag, err := c.PgConn().CopyFrom(ctx, strings.NewReader(rows.String()), "COPY pgbench_accounts FROM STDIN")
		if err != nil || tag.RowsAffected() != 300 {
			t.Fatalf("COPY in a transaction: %v, %v", tag, err)
		}
		var inTx int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts WHERE aid > 100000").Scan(&inTx); err != nil || inTx != 300 {
			t.Fatalf("inside the transaction the copied rows count %d (%v), want 300", inTx, err)
		}
		if _, err := c.Exec(ctx, end); err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if end == "COMMIT" {
			want = 300
		}
		var total int64
		for sh := range f.Shards {
			var n int64
			if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts WHERE aid > 100000").Scan(&n); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total != want {
			t.Errorf("after %s the shards hold %d copied rows, want %d", end, total, want)
		}
	}
}

// blockingReader hands out data, then blocks until its context ends.
type blockingReader struct {
	ctx  context.Context
	data io.Reader
}

func (r *blockingReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if err == io.EOF {
		<-r.ctx.Done()
		return 0, r.ctx.Err()
	}
	return n, err
}

func TestCopyClientGoneAndShardErrors(t *testing.T) {
	f := startCopyFixture(t)
	var rows strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&rows, "%d\tn\tok\n", i)
	}
	t.Run("client disconnects mid-COPY", func(t *testing.T) {
		c := f.Connect(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { // ends when CopyFrom returns (cancel below)
			_, err := c.PgConn().CopyFrom(ctx, &blockingReader{ctx, strings.NewReader(rows.String())}, "COPY hitems FROM STDIN")
			done <- err
		}()
		// The rows have reached the proxy once the shards hold them in
		// their open transactions; wait for that instead of sleeping.
		d := f.Direct(t, "s0")
		for {
			var n int64
			err := d.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY hitems%' AND datname = current_database()").Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("CopyFrom succeeded after its context was cancelled")
		}
		c.Close(context.Background())
		if n := f.total(t, "hitems"); n != 0 {
			t.Fatalf("%d rows committed after the client went away", n)
		}
	})
	t.Run("COPY TO fails on one shard", func(t *testing.T) {
		if _, err := f.copyIn("COPY hitems FROM STDIN", rows.String()); err != nil {
			t.Fatal(err)
		}
		_, err := f.c.PgConn().CopyTo(context.Background(), io.Discard, "COPY (SELECT 1 / (id - 4321) FROM hitems) TO STDOUT")
		wantSQLState(t, err, "22012")
		var one int
		if err := f.c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("connection unusable after the error: %v", err)
		}
	})
	t.Run("COPY TO a server file is refused", func(t *testing.T) {
		_, err := f.c.Exec(context.Background(), "COPY hitems TO '/tmp/shardproxy-copy-out'")
		wantSQLState(t, err, "0A000")
	})
}

// BenchmarkCopyFrom loads 100k rows with COPY FROM STDIN straight into one
// shard and through the proxy over 3 shards (one op = 100k rows).
func BenchmarkCopyFrom(b *testing.B) {
	f := startFixture(b, fixtureOptions{Shards: 3, Body: copyBody})
	ctx := context.Background()
	var data []byte
	for i := 1; i <= 100_000; i++ {
		data = fmt.Appendf(data, "%d\tname %d\tsome note text for row %d\n", i, i, i)
	}
	proxyConn := f.Connect(b)
	mustExec(b, proxyConn, "CREATE TABLE hitems (id bigint NOT NULL, name text, note text)")
	for _, tc := range []struct {
		name string
		c    *pgx.Conn
	}{{"direct-one-shard", f.Direct(b, "s0")}, {"proxy-3-shards", proxyConn}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := tc.c.Exec(ctx, "TRUNCATE hitems"); err != nil {
					b.Fatal(err)
				}
				if _, err := tc.c.PgConn().CopyFrom(ctx, bytes.NewReader(data), "COPY hitems FROM STDIN"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

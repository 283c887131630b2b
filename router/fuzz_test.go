package router

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// FuzzParseQuery checks that ParseQuery never panics, that a successful
// split covers the input exactly, and that routing whatever it returns
// does not panic either. Besides the seeds here, the corpus files in the
// repository's testdata/fuzz/FuzzParseQuery are added (go test only reads
// the package's own testdata directory by itself).
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
		"SELECT 1; SELECT 'a;b'; SELECT $$;$$",
		"SELECT E'\\'', 'it''s', $tag$x$tag$, \"q;\" /* a /* b */ c */ -- d\n",
		"INSERT INTO orders (id, customer_id) VALUES (1, 2), (3, 4)",
		"INSERT INTO order_items (customer_id, qty) SELECT o.customer_id, count(*) FROM orders o WHERE o.customer_id = $1 GROUP BY 1 HAVING count(*) > 1",
		"INSERT INTO orders (id, customer_id) SELECT 1, $1 WHERE NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = $1)",
		"UPDATE orders SET total = -1.5e3 WHERE customer_id IN (1, $1)",
		"/* shard: s1 */ SELECT * FROM orders o JOIN products p ON p.id = o.id",
		"SET shardproxy.shard = 's1'; RESET ALL",
		"SELECT 'unterminated",
		"SELECT $",
		"E'\\",
		"U&'x",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
		";;",
	} {
		f.Add(s)
	}
	for _, s := range repoCorpus(f, "FuzzParseQuery") {
		f.Add(s)
	}
	for _, g := range planStatements {
		f.Add(g.sql)
	}
	r, _ := newTestRouter(f)
	f.Fuzz(func(t *testing.T, sql string) {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			if sqlState(err) != "42601" {
				t.Fatalf("ParseQuery(%q): %v", sql, err)
			}
			return
		}
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
			if p.Stmt == nil {
				t.Fatalf("ParseQuery(%q): part %q without a statement", sql, p.Text)
			}
			_, _ = r.Route(context.Background(), p.Stmt, Args{Params: p.Args})
			// A plan's shard query, rendered with the client's literals,
			// must be SQL Postgres' parser accepts.
			if plan, _ := p.Stmt.Plan(); plan != nil {
				n := plan.Root
				for len(n.Children()) > 0 {
					n = n.Children()[0]
				}
				sc := n.(*Scatter)
				text := sc.SQL.Render(func(k int) string {
					if k <= len(p.Lits) {
						return p.Lits[k-1]
					}
					return "$" + strconv.Itoa(k)
				})
				// Text that is not UTF-8 cannot cross pg_query's protobuf;
				// the shards reject it with 22021, as Postgres does.
				if _, err := pg.Parse(text); err != nil && utf8.ValidString(text) {
					t.Fatalf("ParseQuery(%q): shard SQL %q does not parse: %v", sql, text, err)
				}
			}
		}
		if b.String() != sql {
			t.Fatalf("parts of %q cover %q", sql, b.String())
		}
		_, _ = r.Prepare(sql)
	})
}

// repoCorpus reads string entries in the "go test fuzz v1" format from
// ../testdata/fuzz/<name>.
func repoCorpus(f *testing.F, name string) []string {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "fuzz", name, "*"))
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.SplitN(string(data), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			f.Fatalf("%s: not a go test fuzz v1 file", file)
		}
		body := strings.TrimSpace(lines[1])
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(body, "string("), ")"))
		if err != nil {
			f.Fatalf("%s: %v", file, err)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		f.Fatalf("no corpus in testdata/fuzz/%s", name)
	}
	return out
}

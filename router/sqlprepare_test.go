package router

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// TestSQLPrepare: PREPARE's statement and parameters are read from the
// text (comments, nested parentheses and a "$1" inside a string literal
// included), CheckQuery prepares the same text under another name, and
// EXECUTE's constants replace the parameters, cast to their types.
func TestSQLPrepare(t *testing.T) {
	p, err := ParsePrepare("/* shard: s1 */ PREPARE q (int, text) AS SELECT '$1' AS lit, $1 + 1, upper($2), ($1) FROM t WHERE a = ($1);")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "q" {
		t.Errorf("name %q", p.Name)
	}
	if want := "PREPARE " + checkName + " (int, text) AS SELECT"; !strings.HasPrefix(p.CheckQuery(), want) {
		t.Errorf("check query %q, want it to start with %q", p.CheckQuery(), want)
	}
	p.SetTypes("pg_catalog.int4,pg_catalog.text")
	got, pos, err := p.Bind(&SQLExecute{Name: "q", Args: []ExecArg{{"41", 10}, {"'x'", 14}}})
	if err != nil {
		t.Fatal(err)
	}
	// An error at the 'x' in the bound text is at the 'x' of EXECUTE; one
	// elsewhere (the cast) has no position the client could see.
	if at := strings.Index(got, "'x'") + 2; pos(int32(at)) != 15 || pos(int32(strings.Index(got, "CAST"))) != 0 {
		t.Errorf("positions moved to %d and %d", pos(int32(at)), pos(int32(strings.Index(got, "CAST"))))
	}
	want := "SELECT '$1' AS lit, (CAST(41 AS pg_catalog.int4)) + 1, upper((CAST('x' AS pg_catalog.text))), ((CAST(41 AS pg_catalog.int4))) FROM t WHERE a = ((CAST(41 AS pg_catalog.int4)))"
	if got != want {
		t.Errorf("bound:\n got %s\nwant %s", got, want)
	}
	_, _, err = p.Bind(&SQLExecute{Name: "q", Args: []ExecArg{{"1", 10}}})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" || pgErr.Message != `wrong number of parameters for prepared statement "q"` ||
		pgErr.Detail != "Expected 2 parameters but got 1." {
		t.Errorf("one argument for two: %v", err)
	}

	ex, err := ParseExecute("EXECUTE q (41, 'a, (b)' /* c */, -2.5, NULL, '{1,2}'::int[])")
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []ExecArg{{"41", 12}, {"'a, (b)' /* c */", 16}, {"-2.5", 34}, {"NULL", 40}, {"'{1,2}'::int[]", 46}}
	if ex.Name != "q" || ex.Prefix != "" || fmt.Sprint(ex.Args) != fmt.Sprint(wantArgs) {
		t.Errorf("EXECUTE read as %+v, want args %v", ex, wantArgs)
	}
	if ex, err := ParseExecute("execute Q"); err != nil || ex.Name != "q" || len(ex.Args) != 0 {
		t.Errorf("EXECUTE without arguments: %+v %v", ex, err)
	}
	// EXPLAIN of EXECUTE explains the bound statement.
	ex, err = ParseExecute("EXPLAIN (ANALYZE, COSTS off) EXECUTE q(41, 'x')")
	if err != nil {
		t.Fatal(err)
	}
	if bound, _, err := p.Bind(ex); err != nil || !strings.HasPrefix(bound, "EXPLAIN (ANALYZE, COSTS off) SELECT '$1' AS lit, (CAST(41 AS pg_catalog.int4))") {
		t.Errorf("EXPLAIN EXECUTE bound to %q, %v", bound, err)
	}
	// CREATE TABLE AS EXECUTE binds the statement inside parentheses and
	// keeps what follows the clause (the table may be named execute).
	for sql, want := range map[string]string{
		`CREATE TABLE execute (a, b) AS EXECUTE q(41, 'x') WITH NO DATA;`: `CREATE TABLE execute (a, b) AS (SELECT '$1' AS lit, (CAST(41 AS pg_catalog.int4))`,
		`EXPLAIN CREATE TABLE t AS EXECUTE q (1, 'y')`:                    `EXPLAIN CREATE TABLE t AS (SELECT '$1' AS lit, (CAST(1 AS pg_catalog.int4))`,
	} {
		ex, err := ParseExecute(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		bound, _, err := p.Bind(ex)
		if err != nil || !strings.HasPrefix(bound, want) || !strings.HasSuffix(bound, ")"+ex.Suffix) || !ex.Into ||
			ex.NoData != strings.Contains(sql, "NO DATA") {
			t.Errorf("%s: bound to %q (%+v), %v", sql, bound, ex, err)
		}
		if _, err := pg.Parse(bound); err != nil {
			t.Errorf("%s: bound to %q: %v", sql, bound, err)
		}
	}
	if ex, err := ParseExecute("CREATE TABLE t AS EXECUTE q(1, 'x') WITH NO DATA"); err != nil || ex.Suffix != " WITH NO DATA" {
		t.Errorf("suffix: %+v %v", ex, err)
	}
	for _, sql := range []string{"EXECUTE q(now())", "EXECUTE q((SELECT 1))", "EXECUTE q(1 + 1)", "EXECUTE q(random()::int)"} {
		if _, err := ParseExecute(sql); !errors.As(err, &pgErr) || pgErr.Code != codeFeatureNotSupport {
			t.Errorf("%s: %v, want 0A000", sql, err)
		}
	}

	// An error at a position of CheckQuery's PREPARE is moved to the same
	// place in the client's text.
	p, err = ParsePrepare("PREPARE bad AS SELECT * FROM nosuch")
	if err != nil {
		t.Fatal(err)
	}
	at := strings.Index(p.CheckQuery(), "nosuch") + 1
	moved := p.CheckError(&pgconn.PgError{Code: "42P01", Position: int32(at)})
	if !errors.As(moved, &pgErr) || int(pgErr.Position) != strings.Index("PREPARE bad AS SELECT * FROM nosuch", "nosuch")+1 {
		t.Errorf("position moved to %v", moved)
	}
}

package router

import (
	"slices"
	"strings"
	"testing"
)

// normalized returns each statement's normalised text and literal values.
func normalized(sql string) (texts []string, args [][]string) {
	var s scanner
	s.scan(sql, true)
	for i := range s.segs {
		seg := &s.segs[i]
		if seg.empty {
			texts = append(texts, "")
			args = append(args, nil)
			continue
		}
		vals, a := s.normalize(sql, seg, make([]byte, 0, len(sql)), nil)
		_ = vals
		texts = append(texts, string(s.norm))
		var strs []string
		for _, v := range a {
			strs = append(strs, string(v))
		}
		args = append(args, strs)
	}
	return texts, args
}

func TestScannerNormalize(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		norm []string
		args [][]string
	}{
		{"number", "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
			[]string{"SELECT abalance FROM pgbench_accounts WHERE aid = $1"}, [][]string{{"12345"}}},
		{"numbers of every shape", "SELECT 1, 1.5, .5, 1e5, 2.5E-3, 7.",
			[]string{"SELECT $1, $2, $3, $4, $5, $6"}, [][]string{{"1", "1.5", ".5", "1e5", "2.5E-3", "7."}}},
		{"numbers glued to identifiers stay", "SELECT 0x1F, 1_000, 12abc, t1.c2 FROM t1",
			[]string{"SELECT 0x1F, 1_000, 12abc, t1.c2 FROM t1"}, [][]string{nil}},
		{"string with doubled quote", "SELECT * FROM t WHERE a = 'O''Brien'",
			[]string{"SELECT * FROM t WHERE a = $1"}, [][]string{{"O'Brien"}}},
		{"E string escapes", `SELECT * FROM t WHERE a = E'it\'s\n\x41\101\u00e9\\' AND b = e'x''y'`,
			[]string{"SELECT * FROM t WHERE a = $1 AND b = $2"}, [][]string{{"it's\nAAé\\", "x'y"}}},
		{"typed literals stay", "SELECT date '2024-01-01', interval '1 day', timestamp '2024-01-01 00:00', x'1f', b'01', U&'\\0041'",
			[]string{"SELECT date '2024-01-01', interval '1 day', timestamp '2024-01-01 00:00', x'1f', b'01', U&'\\0041'"}, [][]string{nil}},
		{"string after keyword is a value", "SELECT 'a' WHERE x LIKE 'b%' AND y IN ('c')",
			[]string{"SELECT $1 WHERE x LIKE $2 AND y IN ($3)"}, [][]string{{"a", "b%", "c"}}},
		{"client params keep literals", "SELECT * FROM t WHERE a = $2 AND b = 5 AND c = $1",
			[]string{"SELECT * FROM t WHERE a = $2 AND b = 5 AND c = $1"}, [][]string{nil}},
		{"comments dropped, not their literals", "SELECT /* 42; 'x' */ 1 -- 7;\n FROM t",
			[]string{"SELECT   $1  \n FROM t"}, [][]string{{"1"}}},
		{"nested comments", "SELECT /* a /* b; */ c; */ 1",
			[]string{"SELECT   $1"}, [][]string{{"1"}}},
		{"quoted identifier", `SELECT "a;b", "x""y" FROM "T"`,
			[]string{`SELECT "a;b", "x""y" FROM "T"`}, [][]string{nil}},
		{"dollar quotes", "SELECT $$a;'b'$$, $tag$ $$ ; $tag$, 3",
			[]string{"SELECT $$a;'b'$$, $tag$ $$ ; $tag$, $1"}, [][]string{{"3"}}},
		{"split on top-level semicolons", "SELECT 1; SELECT 'a;b';SELECT 2",
			[]string{"SELECT $1", "SELECT $1", "SELECT $1"}, [][]string{{"1"}, {"a;b"}, {"2"}}},
		{"semicolon inside parentheses", "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)",
			[]string{"CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)"}, [][]string{nil}},
		{"hint comment kept in key", "SELECT 1 /* shard: s1 */",
			[]string{"/*shard:s1*/ SELECT $1"}, [][]string{{"1"}}},
		{"operators and comments", "SELECT 2--1\n, 3/*x*/-1, a<>-4",
			[]string{"SELECT $1 \n, $2 -$3, a<>-$4"}, [][]string{{"2", "3", "1", "4"}}},
		{"unicode", "SELECT * FROM t WHERE name = 'ünï' AND 1 = 1",
			[]string{"SELECT * FROM t WHERE name = $1 AND $2 = $3"}, [][]string{{"ünï", "1", "1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			norm, args := normalized(tc.sql)
			if !slices.Equal(norm, tc.norm) {
				t.Errorf("normalised\n got %q\nwant %q", norm, tc.norm)
			}
			if len(args) != len(tc.args) {
				t.Fatalf("args %q, want %q", args, tc.args)
			}
			for i := range args {
				if !slices.Equal(args[i], tc.args[i]) {
					t.Errorf("statement %d args %q, want %q", i, args[i], tc.args[i])
				}
			}
		})
	}
}

func TestParseQueryParts(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql   string
		texts []string
		kinds []Kind
	}{
		{"", []string{""}, []Kind{KindEmpty}},
		{" ; -- x\n ;", []string{" ; -- x\n ;"}, []Kind{KindEmpty}},
		{"SELECT 1", []string{"SELECT 1"}, []Kind{KindSelect}},
		{"SELECT 1;", []string{"SELECT 1;"}, []Kind{KindSelect}},
		{"BEGIN; UPDATE t SET a = 1; COMMIT;", []string{"BEGIN;", " UPDATE t SET a = 1;", " COMMIT;"}, []Kind{KindBegin, KindUpdate, KindCommit}},
		{";;SELECT 1;; -- done", []string{";;SELECT 1;; -- done"}, []Kind{KindSelect}},
		{"SELECT 1; -- trailing", []string{"SELECT 1; -- trailing"}, []Kind{KindSelect}},
		{"SELECT ';'; SELECT $$;$$", []string{"SELECT ';';", " SELECT $$;$$"}, []Kind{KindSelect, KindSelect}},
		// A SQL-standard function body holds top-level semicolons; the
		// scanner splits it wrongly and Postgres' parser takes over.
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
			[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;", " SELECT 3"}, []Kind{KindDDL, KindSelect}},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			parts, err := r.ParseQuery(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			var kinds []Kind
			for _, p := range parts {
				texts = append(texts, p.Text)
				kinds = append(kinds, p.Stmt.Kind)
			}
			if !slices.Equal(texts, tc.texts) {
				t.Errorf("texts %q, want %q", texts, tc.texts)
			}
			if tc.kinds != nil && !slices.Equal(kinds, tc.kinds) {
				t.Errorf("kinds %v, want %v", kinds, tc.kinds)
			}
		})
	}
}

func TestParseQueryArgs(t *testing.T) {
	r, _ := newTestRouter(t)
	parts, err := r.ParseQuery("SELECT * FROM t WHERE a = 3 AND b = 'x'; SET TimeZone = 'UTC'; SELECT 7")
	if err != nil {
		t.Fatal(err)
	}
	got := func(i int) []string {
		var out []string
		for _, a := range parts[i].Args {
			out = append(out, string(a))
		}
		return out
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	if !slices.Equal(got(0), []string{"3", "x"}) || parts[0].Stmt.NumParams != 2 {
		t.Errorf("part 0 args %q NumParams %d, want [3 x] 2", got(0), parts[0].Stmt.NumParams)
	}
	// SET is analysed from its original text: no arguments.
	if got(1) != nil || parts[1].Stmt.SetValue != "'UTC'" {
		t.Errorf("part 1 args %q SetValue %q", got(1), parts[1].Stmt.SetValue)
	}
	if !slices.Equal(got(2), []string{"7"}) {
		t.Errorf("part 2 args %q", got(2))
	}
}

func TestSyntaxErrors(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql string
		pos int32
	}{
		{"SELEC 1", 1},
		{"SELECT 1; SELEC 2", 11},
		{"SELECT 'ü' FRM t", 16}, // characters, not bytes (17)
		{"SELECT 'unterminated", 8},
		{"SELECT (1; SELECT 2", 0},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			_, err := r.ParseQuery(tc.sql)
			pe := asPg(t, err)
			if pe.Code != "42601" || pe.Severity != "ERROR" || pe.Message == "" {
				t.Fatalf("got %+v", pe)
			}
			if tc.pos != 0 && pe.Position != tc.pos {
				t.Errorf("position %d, want %d (%s)", pe.Position, tc.pos, pe.Message)
			}
		})
	}
}

func TestPrepare(t *testing.T) {
	r, _ := newTestRouter(t)
	st, err := r.Prepare("SELECT * FROM orders WHERE customer_id = $1 AND status = 'x' /* shard: s1 */")
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != KindSelect || st.NumParams != 1 || st.hint != "s1" {
		t.Errorf("got kind %s NumParams %d hint %q", st.Kind, st.NumParams, st.hint)
	}
	_, err = r.Prepare("SELECT 1; SELECT 2")
	if pe := asPg(t, err); pe.Code != "42601" || pe.Message != "cannot insert multiple commands into a prepared statement" {
		t.Errorf("got %+v", pe)
	}
	if st, err := r.Prepare("SELECT 1;"); err != nil || st.Kind != KindSelect {
		t.Errorf("trailing semicolon: %v %v", st, err)
	}
	if st, err := r.Prepare(""); err != nil || st.Kind != KindEmpty {
		t.Errorf("empty: %v %v", st, err)
	}
	_, err = r.Prepare("SELECT * FORM t")
	if pe := asPg(t, err); pe.Code != "42601" || pe.Position != 10 {
		t.Errorf("got %+v", pe)
	}
}

func TestPlanCache(t *testing.T) {
	r, _ := newTestRouter(t) // PlanCacheSize 100
	a, _ := r.ParseQuery("SELECT * FROM orders WHERE customer_id = 1")
	b, _ := r.ParseQuery("SELECT * FROM orders WHERE customer_id = 2;")
	if a[0].Stmt != b[0].Stmt {
		t.Error("statements differing only in literals do not share a plan")
	}
	for i := 0; i < 500; i++ {
		if _, err := r.ParseQuery("SELECT " + strings.Repeat("x, ", i%250) + "y FROM t"); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.CacheLen(); n > 100 {
		t.Errorf("cache holds %d plans, bound is 100", n)
	}
	// SET: normalised text is marked unusable, the original is cached.
	s1, _ := r.ParseQuery("SET work_mem = '1MB'")
	s2, _ := r.ParseQuery("SET work_mem = '2MB'")
	if s1[0].Stmt.SetValue != "'1MB'" || s2[0].Stmt.SetValue != "'2MB'" {
		t.Errorf("SET values %q %q", s1[0].Stmt.SetValue, s2[0].Stmt.SetValue)
	}
}

func TestPlanCacheConcurrent(t *testing.T) {
	r, _ := newTestRouter(t)
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			var err error
			for i := 0; i < 300 && err == nil; i++ {
				_, err = r.ParseQuery("SELECT * FROM orders WHERE customer_id = 1 AND id = " + strings.Repeat("1", g+1) + " AND x" + string(rune('a'+i%26)) + " = 1")
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// A Parse of the normalised SET text must not make later simple-protocol
// SETs lose their values.
func TestSetAfterPrepareOfNormalisedText(t *testing.T) {
	r, _ := newTestRouter(t)
	if _, err := r.ParseQuery("SET work_mem = '1MB'"); err != nil {
		t.Fatal(err)
	}
	_, _ = r.Prepare("SET work_mem = $1") // may or may not parse
	parts, err := r.ParseQuery("SET work_mem = '2MB'")
	if err != nil {
		t.Fatal(err)
	}
	if v := parts[0].Stmt.SetValue; v != "'2MB'" {
		t.Errorf("SetValue %q, want '2MB'", v)
	}
}

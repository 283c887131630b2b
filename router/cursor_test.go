package router

import (
	"testing"
)

func TestParseCursor(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want CursorStmt
	}{
		{"DECLARE c CURSOR FOR SELECT 1", CursorStmt{Op: 'D', Name: "c", Query: " SELECT 1"}},
		{`declare "Big cursor" binary no scroll cursor without hold for select a FROM t ORDER BY a FOR UPDATE`,
			CursorStmt{Op: 'D', Name: "Big cursor", Options: CursorBinary | CursorNoScroll, Query: " select a FROM t ORDER BY a FOR UPDATE"}},
		{"/* c */ DECLARE cursor CURSOR FOR (SELECT 'for') ;", CursorStmt{Op: 'D', Name: "cursor", Query: " (SELECT 'for') "}},
		{"DECLARE s SCROLL CURSOR FOR VALUES (1)", CursorStmt{Op: 'D', Name: "s", Options: CursorScroll, Query: " VALUES (1)"}},
		{"FETCH 10 FROM c", CursorStmt{Op: 'F', Name: "c", Forward: true, Count: 10}},
		{"FETCH c", CursorStmt{Op: 'F', Name: "c", Forward: true, Count: 1}},
		{"fetch forward all in C", CursorStmt{Op: 'F', Name: "c", Forward: true, Count: FetchAll}},
		{"FETCH ALL FROM c", CursorStmt{Op: 'F', Name: "c", Forward: true, Count: FetchAll}},
		{"FETCH BACKWARD 2 FROM c", CursorStmt{Op: 'F', Name: "c", Backward: true, Count: 2}},
		{"FETCH PRIOR FROM c", CursorStmt{Op: 'F', Name: "c", Backward: true, Count: 1}},
		{"FETCH FORWARD -3 FROM c", CursorStmt{Op: 'F', Name: "c", Forward: true, Count: -3}},
		{"FETCH ABSOLUTE 3 FROM c", CursorStmt{Op: 'F', Name: "c", Count: 3}},
		{"MOVE 5 IN c", CursorStmt{Op: 'F', Name: "c", Move: true, Forward: true, Count: 5}},
		{"CLOSE c", CursorStmt{Op: 'C', Name: "c"}},
		{"CLOSE ALL", CursorStmt{Op: 'C'}},
	} {
		got, err := ParseCursor(tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		got.Options &^= 0x0100 // CURSOR_OPT_FAST_PLAN: the grammar sets it on every DECLARE
		if *got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.sql, *got, tc.want)
		}
	}
}

func TestParenthesized(t *testing.T) {
	for sql, want := range map[string]string{
		"COPY (SELECT 1) TO STDOUT": "SELECT 1",
		"COPY ( SELECT f(1, (2)), ')' FROM t /* ) */ ) TO STDOUT (FORMAT csv)": " SELECT f(1, (2)), ')' FROM t /* ) */ ",
		"copy (select $$)$$) to stdout":                                        "select $$)$$",
	} {
		sp, err := ParseCopy(sql)
		if err != nil || sp.QueryText != want {
			t.Errorf("%s: %q, %v; want %q", sql, sp.QueryText, err, want)
		}
	}
}

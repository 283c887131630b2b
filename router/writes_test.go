package router

import (
	"testing"
	"time"
)

// TestMayWrite: a SELECT that locks rows or calls a
// function that writes (built-in, or a user function whose body writes,
// directly or through another) is marked, so that the proxy keeps it in
// its transaction as a write (SELECT INTO is one by its kind); plain
// reads and pure functions are not.
func TestMayWrite(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Functions: []FunctionDef{
			{Name: "log_visit", Body: "INSERT INTO visits VALUES ($1, now()) RETURNING id"},
			{Name: "visit_twice", Body: "BEGIN PERFORM log_visit($1); PERFORM log_visit($1); END"}, // through log_visit
			{Name: "dyn", Body: "BEGIN EXECUTE format('DELETE FROM %I', $1); END"},
			{Name: "double_it", Body: "SELECT $1 * 2 -- pure"},
			{Name: "c_volatile", Volatile: true},
		}})
	}
	for sql, want := range map[string]bool{
		"SELECT name FROM customers WHERE customer_id = 7":                           false,
		"SELECT lower(name), double_it(credit) FROM customers WHERE customer_id = 7": false,
		"SELECT 1": false,
		"SELECT name FROM customers WHERE customer_id = 7 FOR UPDATE":       true,
		"SELECT * FROM customers WHERE customer_id IN (SELECT 7 FOR SHARE)": true,
		"SELECT name INTO copy_of FROM customers WHERE customer_id = 7":     true,
		"SELECT nextval('s')":                 true,
		"SELECT pg_advisory_xact_lock(7)":     true,
		"SELECT log_visit(7)":                 true,
		"SELECT double_it(1), visit_twice(7)": true,
		"SELECT dyn('t')":                     true,
		"SELECT c_volatile()":                 true,
		"SELECT count(*) FROM customers WHERE customer_id = 7 AND log_visit(7) > 0": true,
	} {
		st, _, err := route(r, sql, nil, "")
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		// SELECT INTO is CREATE TABLE AS: a write by its kind.
		if got := st.MayWrite || st.Kind != KindSelect; got != want {
			t.Errorf("%s (%v): MayWrite %v, want %v", sql, st.Kind, st.MayWrite, want)
		}
	}
}

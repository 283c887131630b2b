// This test runs real SELECTs through the planner,
// the rendered shard SQL on three databases that each hold a third of the
// rows, and Execute, and compares with the whole table in a fourth.

package router

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

func TestPlannerExecutorAgainstPostgres(t *testing.T) {
	srv := pgtest.StartN(t, 1, pgtest.Options{Name: "integ"})[0]
	ctx := context.Background()
	ddl := `CREATE TABLE orders (customer_id int, id int, total numeric, note text, f float8, r real, created timestamptz, status text);`
	var conns []*pgx.Conn
	for _, db := range []string{"oracle", "p0", "p1", "p2"} {
		if err := srv.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
		c, err := srv.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		mustExec(t, c, ddl)
		where := "true"
		if db != "oracle" {
			where = fmt.Sprintf("s %% 3 = %c", db[1])
		}
		mustExec(t, c, `INSERT INTO orders SELECT s % 50, s, CASE WHEN s % 13 = 0 THEN NULL ELSE (s * 7919 % 1000)::numeric / 100 END,
			CASE s % 4 WHEN 0 THEN 'a' WHEN 1 THEN 'é' WHEN 2 THEN 'B' ELSE NULL END, (s % 17) / 4.0, (s % 9) / 2.0,
			'2024-01-01 00:00:00+00'::timestamptz + (s * 3571 % 1000) * interval '1 hour', CASE WHEN s % 3 = 0 THEN 'open' ELSE 'done' END
			FROM generate_series(1, 2000) s WHERE `+where)
		conns = append(conns, c)
	}
	r, _ := newTestRouter(t)
	queries := []string{
		"SELECT count(*) FROM orders",
		"SELECT count(*), sum(total), avg(total), min(note), max(created), sum(f), avg(f) FROM orders",
		"SELECT status, count(*), avg(total) FROM orders GROUP BY status ORDER BY status",
		"SELECT note, count(DISTINCT total), count(*) FROM orders GROUP BY note ORDER BY note",
		"SELECT id, total FROM orders ORDER BY total DESC NULLS LAST, id LIMIT 10 OFFSET 5",
		"SELECT id FROM orders ORDER BY created, id LIMIT 7",
		"SELECT DISTINCT note FROM orders ORDER BY note",
		"SELECT DISTINCT ON (note) note, id FROM orders ORDER BY note, id DESC",
		"SELECT customer_id, sum(total) FROM orders GROUP BY customer_id HAVING sum(total) > 200 ORDER BY 2 DESC, 1 LIMIT 5",
		"SELECT note, avg(total) FROM orders GROUP BY note ORDER BY avg(total) DESC",
		"SELECT bool_and(total > 1), bool_or(total > 9.9) FROM orders",
		"SELECT count(*) FROM orders WHERE false", "SELECT note, count(*) FROM orders GROUP BY note HAVING max(note) > 'B' AND count(*) >= 2 ORDER BY 1", "SELECT status, max(created) FROM orders GROUP BY status HAVING max(created) > '2024-01-02 00:00:00+00' ORDER BY 1 LIMIT 1 OFFSET 1", "SELECT id FROM orders WHERE note = 'é' ORDER BY total NULLS FIRST, id LIMIT 3", "SELECT count(DISTINCT total), sum(total) FROM orders WHERE id > 1990",
		"SELECT sum(total), avg(total) FROM orders WHERE false",
		"SELECT id, note FROM orders ORDER BY note NULLS FIRST, id DESC LIMIT 20",
	}
	for _, sql := range queries {
		t.Run(sql, func(t *testing.T) {
			parts, err := r.ParseQuery(sql)
			if err != nil {
				t.Fatal(err)
			}
			p, err := parts[0].Stmt.Plan()
			if err != nil || p == nil {
				t.Fatalf("plan %v %v", p, err)
			}
			lits := parts[0].Lits
			var leafSQL string
			walkPlan(p.Root, func(n Node) {
				if s, ok := n.(*Scatter); ok {
					leafSQL = s.SQL.Render(func(n int) string { return lits[n-1] })
				}
			})
			var fields []pgproto3.FieldDescription
			var srcs []Source
			for _, c := range conns[1:] {
				f, rows := pgResult(t, c, leafSQL)
				if fields != nil {
					if err := CheckFields(fields, f); err != nil {
						t.Fatal(err)
					}
				}
				fields = f
				srcs = append(srcs, &sliceSource{rows: rows})
			}
			var got []string
			// The values of the literals (unquoted), not their tokens (Lits).
			args := parts[0].Args
			param := func(n int) ([]byte, bool, error) { return args[n-1], args[n-1] == nil, nil }
			_, err = p.Execute(ctx, fields, srcs, param, ExecOptions{}, func(row [][]byte) error {
				got = append(got, rowText(row))
				return nil
			})
			if err != nil {
				t.Fatalf("%s\n%s\nshard SQL %s: %v", sql, p, leafSQL, err)
			}
			out, err := p.OutputFields(fields)
			if err != nil {
				t.Fatal(err)
			}
			want, wf := oracle(t, conns[0], sql)
			if !strings.Contains(sql, "ORDER BY") {
				sort.Strings(got)
				sort.Strings(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s\nplan:\n%s\nshard SQL: %s\ngot  %q\nwant %q", sql, p, leafSQL, got, want)
			}
			for i := range wf {
				if i >= len(out) || out[i].DataTypeOID != wf[i].DataTypeOID || string(out[i].Name) != string(wf[i].Name) {
					t.Errorf("field %d: got %+v want %+v", i, out, wf)
					break
				}
			}
		})
	}
}

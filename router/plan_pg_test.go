package router

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

const planSchema = `
CREATE TABLE orders (id int8, customer_id int8, status text, total numeric, created_at timestamptz,
	paid bool, product_id int8, note text, tag text, flags int4, parent_id int8);
CREATE TABLE order_items (id int8, customer_id int8, order_id int8, qty int4);
CREATE TABLE products (id int8, name text, price numeric);
INSERT INTO orders VALUES
	(1, 1, 'open', 10.5, '2026-01-01 10:00Z', true, 1, 'it''s $1', 'x', 1, NULL),
	(2, 3, 'paid', 20, '2026-01-02 11:00Z', false, 2, NULL, NULL, 2, 1),
	(3, 3, NULL, NULL, NULL, NULL, NULL, 'a', 'b', NULL, NULL);
INSERT INTO order_items VALUES (1, 1, 1, 2), (2, 3, 2, 5);
INSERT INTO products VALUES (1, 'pen', 1.5), (2, 'ink', 3);
`

// TestPlanShardSQLOnPostgres runs every planned shard query of the golden
// list on a real Postgres, as the simple protocol renders it (literal
// tokens) or the extended protocol binds it: it must be valid SQL, and its
// row description must be the client's columns (same names, same count)
// followed by exactly Hidden extra columns, as the executor assumes.
func TestPlanShardSQLOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postgres")
	}
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.Options{Name: "router-plans"})
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := srv.CreateDatabase(ctx, "plans"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "plans", planSchema); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, srv.DSN("plans"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	planned := 0
	for _, g := range planStatements {
		sql := keys.Replace(g.sql)
		t.Run(sql, func(t *testing.T) {
			var lits []string
			var params [][]byte
			var st *Statement
			if g.params == nil {
				parts, err := r.ParseQuery(sql)
				if err != nil {
					t.Fatal(err)
				}
				st, lits = parts[0].Stmt, parts[0].Lits
			} else {
				if st, err = r.Prepare(sql); err != nil {
					t.Fatal(err)
				}
				for _, p := range g.params {
					params = append(params, []byte(p))
				}
			}
			p, err := st.Plan()
			if p == nil || err != nil {
				return
			}
			planned++
			tmpl := leaf(p.Root).SQL
			shardSQL := tmpl.Render(func(n int) string {
				if lits != nil {
					return lits[n-1]
				}
				return "$" + strconv.Itoa(n)
			})
			// run executes q as the proxy would send it and returns its
			// columns (Describe: a result without rows may lack them).
			run := func(q string) ([]pgconn.FieldDescription, error) {
				sd, err := conn.Prepare(ctx, "", q, nil)
				if err != nil {
					return nil, err
				}
				if params == nil {
					_, err = conn.Exec(ctx, q).ReadAll()
				} else {
					err = conn.ExecParams(ctx, q, params, nil, nil, nil).Read().Err
				}
				return sd.Fields, err
			}
			want, err := run(sql)
			if err != nil {
				t.Fatalf("original fails on Postgres: %v", err)
			}
			got, err := run(shardSQL)
			if err != nil {
				t.Fatalf("shard SQL fails on Postgres: %v\n%s", err, shardSQL)
			}
			if len(got) != len(want)+p.Hidden {
				t.Fatalf("shard returns %d columns, want %d visible + %d hidden\n%s",
					len(got), len(want), p.Hidden, shardSQL)
			}
			for i, f := range want {
				if g := got[i].Name; g != f.Name {
					t.Errorf("column %d is %q on the shard, %q for the client", i, g, f.Name)
				}
			}
			for j := 0; j < p.Hidden; j++ {
				name := got[len(want)+j].Name
				if !strings.HasPrefix(name, hiddenPrefix) {
					t.Errorf("hidden column %d is named %q", j, name)
				}
			}
		})
	}
	if planned < 40 {
		t.Errorf("only %d planned statements ran", planned)
	}
}

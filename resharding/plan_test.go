package resharding

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestPlanGolden(t *testing.T) {
	c := NewCluster(t)
	cur, _ := c.LoadMap(t, "current.yaml")
	next, _ := c.LoadMap(t, "target.yaml")
	SeedExample(t, c, cur)
	c.Exec(t, "s2", "SELECT 1") // s2 exists but is empty: tables get created
	p, err := NewPlan(context.Background(), cur, next, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Print(&out)
	checkGolden(t, "../testdata/resharding/plan.golden", out.Bytes())
	// The counts the golden file pins must also agree with the strategies.
	rows, _ := p.MovingRows()
	if rows == 0 {
		t.Fatal("nothing moves")
	}
}

func TestPlanRefusals(t *testing.T) {
	tests := []struct {
		name   string
		schema string // replaces the example schema of orders on every shard
		want   string
	}{
		{"no primary key", "DROP TABLE orders; CREATE TABLE orders (customer_id bigint, order_id bigint, amount numeric, note text)", "orders has no primary key"},
		{"key outside the primary key", "DROP TABLE orders; CREATE TABLE orders (customer_id bigint, order_id bigint PRIMARY KEY, amount numeric, note text)", `shard key "customer_id" is not part of the primary key`},
		{"replica identity full", "ALTER TABLE orders REPLICA IDENTITY FULL", "REPLICA IDENTITY FULL"},
		{"reference table without primary key", "ALTER TABLE products DROP CONSTRAINT products_pkey", "reference table products has no primary key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(t)
			cur, _ := c.LoadMap(t, "current.yaml")
			next, _ := c.LoadMap(t, "target.yaml")
			SeedExample(t, c, cur)
			for _, s := range []string{"s0", "s1"} {
				c.Exec(t, s, tt.schema)
			}
			p, err := NewPlan(context.Background(), cur, next, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(p.Refusals, "\n"), tt.want) {
				t.Errorf("refusals %q, want one containing %q", p.Refusals, tt.want)
			}
		})
	}
	t.Run("one free slot", func(t *testing.T) {
		c := NewCluster(t)
		cur, _ := c.LoadMap(t, "current.yaml")
		next, _ := c.LoadMap(t, "target.yaml")
		SeedExample(t, c, cur)
		s0 := c.Conn(t, "s0")
		ctx := context.Background()
		var free int
		if err := s0.QueryRow(ctx, "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)").Scan(&free); err != nil {
			t.Fatal(err)
		}
		// Slots are per server: leave exactly one free for the plan.
		for i := range free - 1 {
			name := fmt.Sprintf("%s_hold_%d", c.DB, i)
			if _, err := s0.Exec(ctx, "SELECT pg_create_physical_replication_slot($1)", name); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s0.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", name) }) // before s0 closes (LIFO)
		}
		p, err := NewPlan(ctx, cur, next, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "shard s0: 1 free replication slots, the job needs 2"
		if !strings.Contains(strings.Join(p.Refusals, "\n"), want) {
			t.Errorf("refusals %q, want one containing %q", p.Refusals, want)
		}
	})
	t.Run("structural", func(t *testing.T) {
		c := NewCluster(t)
		cur, curText := c.LoadMap(t, "current.yaml")
		_, nextText := c.LoadMap(t, "target.yaml")
		for _, tt := range []struct{ from, to, want string }{
			{"orders:    {key: customer_id, strategy: by_customer}", "orders:    {key: order_id, strategy: by_customer}", "changes its shard key"},
			{"default_shard: s0", "default_shard: s1", "default_shard changes"},
			{"products:  {reference: true}", "products:  {key: sku, strategy: by_customer}", "products changes between reference and sharded"},
		} {
			text := strings.Replace(nextText, tt.from, tt.to, 1)
			c1 := MustParse(t, curText)
			n1 := MustParse(t, text)
			_ = cur
			p := &Plan{Cur: c1, Next: n1}
			p.structure()
			if !strings.Contains(strings.Join(p.Refusals, "\n"), tt.want) {
				t.Errorf("refusals %q, want one containing %q", p.Refusals, tt.want)
			}
		}
	})
}

// TestPlanWithDirectory: a map may keep a directory-placed table while
// other tables move (nothing of it moves: every key has an entry), if the
// new shards have the table; a directory whose table changes is refused.
func TestPlanWithDirectory(t *testing.T) {
	c := NewCluster(t)
	cur, curText := c.LoadMap(t, "current.yaml")
	_, nextText := c.LoadMap(t, "target.yaml")
	SeedExample(t, c, cur)
	addDir := func(text, fallback string) string {
		text = strings.Replace(text, "strategies:\n", "strategies:\n  by_tenant: {type: directory, table: tenant_directory, fallback: "+fallback+"}\n", 1)
		return strings.Replace(text, "tables:\n", "tables:\n  tenants:   {key: tenant_id, strategy: by_tenant}\n", 1)
	}
	for _, tt := range []struct {
		name, table, onS2 string // the target's directory table; SQL run on s2 first
		refusal           string // "" = none
	}{
		{"new shard lacks the table", "tenant_directory", "", "table tenants (placed by a directory) does not exist on the new shard s2"},
		{"kept directory", "tenant_directory", "CREATE TABLE tenants (tenant_id bigint PRIMARY KEY)", ""},
		{"directory table changes", "other_directory", "", "tenants uses a directory strategy whose table or key type changes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.onS2 != "" {
				c.Exec(t, "s2", tt.onS2)
			}
			next := strings.Replace(addDir(nextText, "by_customer"), "table: tenant_directory", "table: "+tt.table, 1)
			p, err := NewPlan(context.Background(), MustParse(t, addDir(curText, "by_customer")), MustParse(t, next), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(p.Refusals, "\n")
			if tt.refusal == "" && got != "" {
				t.Errorf("refusals %q, want none", p.Refusals)
			}
			if tt.refusal != "" && !strings.Contains(got, tt.refusal) {
				t.Errorf("refusals %q, want one containing %q", p.Refusals, tt.refusal)
			}
			if tt.refusal == "" && len(p.Tables) != 3 {
				t.Errorf("%d moving tables, want 3 (customers, orders, events)", len(p.Tables))
			}
		})
	}
}

// directoryExample loads the directory example (every customer gets an
// entry, placed by the hash fallback) and returns the keys on s0 and s1.
func directoryExample(t *testing.T) (c *Cluster, cur, next *config.Config, on map[string][]string) {
	c = NewCluster(t)
	cur, _ = c.LoadMap(t, "directory_current.yaml")
	next, _ = c.LoadMap(t, "directory_target.yaml")
	SeedExample(t, c, cur)
	rows, err := c.Conn(t, "meta").Query(context.Background(), "SELECT key, shard FROM tenant_directory ORDER BY key::int8")
	if err != nil {
		t.Fatal(err)
	}
	on = map[string][]string{}
	var key, shard string
	if _, err := pgx.ForEachRow(rows, []any{&key, &shard}, func() error { on[shard] = append(on[shard], key); return nil }); err != nil {
		t.Fatal(err)
	}
	return c, cur, next, on
}

// TestPlanDirectoryMoves pins the plan of moving directory keys (golden)
// and the refusals of moves that cannot run.
func TestPlanDirectoryMoves(t *testing.T) {
	_, cur, next, on := directoryExample(t)
	mv := func(key, to string) DirectoryMove { return DirectoryMove{Strategy: "by_tenant", Key: key, To: to} }
	t.Run("golden", func(t *testing.T) {
		p, err := NewPlan(context.Background(), cur, next, []DirectoryMove{mv(on["s0"][0], "s2"), mv(on["s1"][0], "s2"), mv(on["s0"][1], "s1")})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		p.Print(&out)
		checkGolden(t, "../testdata/resharding/plan_directory.golden", out.Bytes())
		if rows, _ := p.MovingRows(); rows != 3*4+50 { // a customer and its 3 orders, per key; products onto s2
			t.Errorf("moving %d rows, want %d", rows, 3*4+50)
		}
	})
	for _, tt := range []struct {
		name  string
		moves []DirectoryMove
		next  *config.Config
		want  string
	}{
		{"unknown key", []DirectoryMove{mv("100000", "s2")}, next, "key 100000 has no entry in directory tenant_directory"},
		{"already there", []DirectoryMove{mv(on["s1"][0], "s1")}, next, "is on s1 already"},
		{"not a directory", []DirectoryMove{{Strategy: "by_customer", Key: "1", To: "s2"}}, next, "by_customer is not a directory strategy"},
		{"unknown shard", []DirectoryMove{mv(on["s0"][0], "s9")}, next, "the target map has no shard s9"},
		{"bad key", []DirectoryMove{mv("abc", "s2")}, next, `invalid input syntax for type bigint: "abc"`},
		{"moved twice", []DirectoryMove{mv("1", "s2"), mv("01", "s1")}, next, "key 1 is moved twice"},
		{"dropped shard keeps entries", nil, dropS1(t, next), "directory tenant_directory has"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan(context.Background(), cur, tt.next, tt.moves)
			if err != nil {
				t.Fatal(err)
			}
			p.Print(io.Discard) // a refused plan prints too
			if got := strings.Join(p.Refusals, "\n"); !strings.Contains(got, tt.want) {
				t.Errorf("refusals %q, want one containing %q", p.Refusals, tt.want)
			}
		})
	}
}

// dropS1 is next without shard s1 (its fallback hashing over s0 and s2).
func dropS1(t *testing.T, next *config.Config) *config.Config {
	c := *next
	c.Shards = slices.DeleteFunc(slices.Clone(c.Shards), func(s config.Shard) bool { return s.Name == "s1" })
	c.Strategies = slices.Clone(c.Strategies)
	for i := range c.Strategies {
		if s := &c.Strategies[i]; s.Type == config.StrategyHash {
			s.Shards = []string{"s0", "s2"}
		}
		if s := &c.Strategies[i]; s.Type == config.StrategyRange {
			s.Ranges = []config.Range{{Upper: "500", Shard: "s0"}, {Unbounded: true, Shard: "s2"}}
		}
	}
	return &c
}

func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("plan output differs from %s (run with -update after checking):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

package resharding

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestPlanGolden(t *testing.T) {
	c := NewCluster(t)
	cur, _ := c.LoadMap(t, "current.yaml")
	next, _ := c.LoadMap(t, "target.yaml")
	SeedExample(t, c, cur)
	c.Exec(t, "s2", "SELECT 1") // s2 exists but is empty: tables get created
	p, err := NewPlan(context.Background(), cur, next)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p.Print(&out)
	golden := "../testdata/resharding/plan.golden"
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("plan output differs from %s (run with -update after checking):\n--- got\n%s--- want\n%s", golden, out.String(), want)
	}
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
			p, err := NewPlan(context.Background(), cur, next)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(p.Refusals, "\n"), tt.want) {
				t.Errorf("refusals %q, want one containing %q", p.Refusals, tt.want)
			}
		})
	}
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
			p, err := NewPlan(context.Background(), MustParse(t, addDir(curText, "by_customer")), MustParse(t, next))
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

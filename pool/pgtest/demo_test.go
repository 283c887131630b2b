package pgtest_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

const demoDir = "../../testdata/demo"

// TestDemoFixtures loads the `make run` demo schema and data into a real
// server, so that a broken fixture fails here rather than in a demo.
func TestDemoFixtures(t *testing.T) {
	s := pgtest.StartN(t, 1, pgtest.Options{Name: "demo"})[0]
	if err := s.CreateDatabase(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"schema.sql", "data.sql"} {
		if err := s.ExecFile(t.Context(), "app", filepath.Join(demoDir, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	checks := []struct {
		name string
		sql  string // yields one integer
		want int64
	}{
		{"customers", "SELECT count(*) FROM customers", 12},
		{"products", "SELECT count(*) FROM products", 6},
		{"orders have customers", "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM customers c WHERE c.customer_id = o.customer_id)", 0},
		{"items have orders", "SELECT count(*) FROM order_items i WHERE NOT EXISTS (SELECT FROM orders o WHERE (o.customer_id, o.order_id) = (i.customer_id, i.order_id))", 0},
		{"items have products", "SELECT count(*) FROM order_items i WHERE NOT EXISTS (SELECT FROM products p WHERE p.product_id = i.product_id)", 0},
		{"totals match items", `SELECT count(*) FROM orders o WHERE o.total <> (SELECT sum(qty * price) FROM order_items i WHERE (i.customer_id, i.order_id) = (o.customer_id, o.order_id))`, 0},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if got := queryInt(t, s, "app", c.sql); got != c.want {
				t.Errorf("%s = %d, want %d", c.sql, got, c.want)
			}
		})
	}
}

// TestDemoConfigTemplate renders the demo config and checks that it is
// YAML with the shape `shardproxy dev` relies on.
func TestDemoConfigTemplate(t *testing.T) {
	tmpl, err := template.ParseFiles(filepath.Join(demoDir, "shardproxy.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = tmpl.Option("missingkey=error").Execute(&buf, map[string]string{
		"Listen":    "127.0.0.1:6432",
		"MetaDSN":   "postgres://postgres@127.0.0.1:1/meta?sslmode=disable",
		"Shard0DSN": "postgres://postgres@127.0.0.1:2/app?sslmode=disable",
		"Shard1DSN": "postgres://postgres@127.0.0.1:3/app?sslmode=disable",
	})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Listen   string
		Metadata struct{ DSN string }
		Shards   []struct{ Name, DSN string }
		Users    []struct {
			Name, Password string
			Admin          bool
		}
		Strategies map[string]struct {
			Type    string
			KeyType string `yaml:"key_type"`
			Shards  []string
		}
		Tables map[string]struct {
			Key, Strategy string
			Reference     bool
		}
		DefaultShard string `yaml:"default_shard"`
	}
	if err := yaml.Unmarshal(buf.Bytes(), &cfg); err != nil {
		t.Fatalf("rendered config is not YAML: %v\n%s", err, buf.String())
	}
	by := cfg.Strategies["by_customer"]
	checks := []struct {
		name string
		ok   bool
	}{
		{"listen", cfg.Listen == "127.0.0.1:6432"},
		{"metadata", cfg.Metadata.DSN == "postgres://postgres@127.0.0.1:1/meta?sslmode=disable"},
		{"shards", len(cfg.Shards) == 2 && cfg.Shards[0].Name == "s0" && cfg.Shards[1].DSN == "postgres://postgres@127.0.0.1:3/app?sslmode=disable"},
		{"users", len(cfg.Users) == 2 && cfg.Users[0].Name == "app" && !cfg.Users[0].Admin && cfg.Users[1].Name == "admin" && cfg.Users[1].Admin},
		{"strategy", by.Type == "hash" && by.KeyType == "int" && len(by.Shards) == 2},
		{"customers", cfg.Tables["customers"].Key == "customer_id" && cfg.Tables["customers"].Strategy == "by_customer"},
		{"order_items", cfg.Tables["order_items"].Key == "customer_id" && cfg.Tables["order_items"].Strategy == "by_customer"},
		{"products", cfg.Tables["products"].Reference},
		{"default_shard", cfg.DefaultShard == "s0"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: unexpected value in rendered config:\n%s", c.name, buf.String())
		}
	}
}

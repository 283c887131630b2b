package resharding

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool/pgtest"
	"github.com/shardproxy/shardproxy/strategies"
)

// The package shares one set of servers (s0, s1, s2 and a metadata
// server); every test gets fresh databases on them.
var shared = pgtest.NewShared("s0", "s1", "s2", "meta")

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopAll()
	os.Exit(code)
}

func sharedServers(t testing.TB) []*pgtest.Server { return shared.Servers(t) }

// cluster is a fresh database on every shared server.
type Cluster struct {
	DB      string
	Servers map[string]*pgtest.Server // s0, s1, s2, meta
}

func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	srvs := sharedServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &Cluster{DB: shared.DatabaseName("r"), Servers: map[string]*pgtest.Server{}}
	for i, name := range []string{"s0", "s1", "s2", "meta"} {
		c.Servers[name] = srvs[i]
		if err := srvs[i].CreateDatabase(ctx, c.DB); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// exampleDSNs are the DSNs of testdata/resharding/*.yaml.
var exampleDSNs = map[string]string{
	"s0":   "postgres://postgres@127.0.0.1:5433/app",
	"s1":   "postgres://postgres@127.0.0.1:5434/app",
	"s2":   "postgres://postgres@127.0.0.1:5435/app",
	"meta": "postgres://postgres@127.0.0.1:5436/shardproxy_meta",
}

// mapText rewrites a YAML shard map so that its DSNs point at c.
func (c *Cluster) mapText(t testing.TB, yaml string) string {
	t.Helper()
	for name, dsn := range exampleDSNs {
		yaml = strings.ReplaceAll(yaml, dsn, c.Servers[name].DSN(c.DB))
	}
	return yaml
}

// loadMap reads a shard map from testdata/resharding and points it at c.
func (c *Cluster) LoadMap(t testing.TB, file string) (*config.Config, string) {
	t.Helper()
	b, err := os.ReadFile("../testdata/resharding/" + file)
	if err != nil {
		t.Fatal(err)
	}
	text := c.mapText(t, string(b))
	cfg, err := config.Parse([]byte(text), file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return cfg, text
}

func (c *Cluster) Exec(t testing.TB, shard, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Servers[shard].Exec(ctx, c.DB, sql); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) Conn(t testing.TB, shard string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Servers[shard].Connect(ctx, c.DB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// SeedRows inserts rows on the shard cfg names for each key: table(cols)
// gets one row per element of rows, whose element keyIdx is the shard key.
func SeedRows(t testing.TB, c *Cluster, cfg *config.Config, table string, cols []string, keyIdx int, rows [][]any) {
	t.Helper()
	ctx := context.Background()
	strats := buildAll(t, cfg)
	tc := cfg.TableByName(table)
	s := strats[tc.Strategy]
	per := map[string][][]any{}
	for _, r := range rows {
		owner, err := locate(ctx, s, s.KeyType(), fmt.Sprint(r[keyIdx]))
		if err != nil {
			t.Fatal(err)
		}
		per[owner] = append(per[owner], r)
	}
	for shard, rs := range per {
		conn := c.Conn(t, shard)
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rs)); err != nil {
			t.Fatal(err)
		}
	}
}

// SeedExample loads testdata/resharding/schema.sql on every shard and the
// example data placed by cfg.
func SeedExample(t testing.TB, c *Cluster, cfg *config.Config) {
	t.Helper()
	schema, err := os.ReadFile("../testdata/resharding/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Shards {
		c.Exec(t, s.Name, string(schema))
	}
	var customers, orders, events [][]any
	for i := int64(1); i <= 300; i++ {
		customers = append(customers, []any{i, fmt.Sprintf("customer %d", i)})
		for j := int64(1); j <= 3; j++ {
			orders = append(orders, []any{i, i*10 + j, fmt.Sprintf("%d.%02d", i*j, j), strings.Repeat("x", int(i%7))})
		}
	}
	for i := int64(1); i <= 1000; i++ {
		events = append(events, []any{i, []string{"created", "paid", "shipped"}[i%3], fmt.Sprintf("payload %d", i)})
	}
	SeedRows(t, c, cfg, "customers", []string{"customer_id", "name"}, 0, customers)
	SeedRows(t, c, cfg, "orders", []string{"customer_id", "order_id", "amount", "note"}, 0, orders)
	SeedRows(t, c, cfg, "events", []string{"id", "kind", "payload"}, 0, events)
	// products is a reference table: the same rows on every shard.
	for _, s := range cfg.Shards {
		c.Exec(t, s.Name, "INSERT INTO products SELECT i, 'product ' || i, i * 1.5 FROM generate_series(1, 50) i")
	}
}

// buildAll builds every strategy of cfg, directories included (placing a
// key writes its entry, as the proxy does).
func buildAll(t testing.TB, cfg *config.Config) map[string]strategies.Strategy {
	t.Helper()
	ctx := context.Background()
	var dir *strategies.DirectoryStore
	for _, s := range cfg.Strategies {
		if s.Type == config.StrategyDirectory && dir == nil {
			var err error
			if dir, err = strategies.OpenDirectory(ctx, cfg.Metadata.DSN, nil); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(dir.Close)
		}
	}
	strats, err := strategies.Build(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	return strats
}

func MustParse(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

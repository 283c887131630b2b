package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/strategies"
)

// testConfig has three shards, a hash, a range and a consistent strategy
// built by the strategies package, and a directory strategy faked here
// (the real one needs the metadata database).
func testConfig() *config.Config {
	return &config.Config{
		Shards: []config.Shard{{Name: "s0"}, {Name: "s1"}, {Name: "s2"}},
		Strategies: []config.Strategy{
			{Name: "by_customer", Type: config.StrategyHash, KeyType: config.KeyInt, Shards: []string{"s0", "s1"}},
			{Name: "by_id", Type: config.StrategyRange, KeyType: config.KeyInt, Ranges: []config.Range{
				{Upper: "1000", Shard: "s0"}, {Upper: "2000", Shard: "s1"}, {Unbounded: true, Shard: "s2"}}},
			{Name: "ring", Type: config.StrategyConsistent, KeyType: config.KeyText, Shards: []string{"s0", "s1", "s2"}, Partitions: 271},
			{Name: "by_tenant", Type: config.StrategyDirectory, KeyType: config.KeyText, Table: "tenant_directory", Fallback: "ring"},
		},
		Tables: []config.Table{
			{Name: "orders", Key: "customer_id", Strategy: "by_customer"},
			{Name: "order_items", Key: "customer_id", Strategy: "by_customer"},
			{Name: "pgbench_accounts", Key: "aid", Strategy: "by_customer"},
			{Name: "events", Key: "id", Strategy: "by_id"},
			{Name: "sessions", Key: "token", Strategy: "ring"},
			{Name: "tenant_data", Key: "tenant", Strategy: "by_tenant"},
			{Name: "app.audit", Key: "id", Strategy: "by_id"},
			{Name: `"MixedCase"`, Key: "id", Strategy: "by_customer"},
			{Name: "products", Reference: true},
		},
		DefaultShard:  "s0",
		PlanCacheSize: 100,
	}
}

// fakeDirectory knows two tenants; unknown keys have no owner on reads
// and go to the fallback on writes, like the real directory.
type fakeDirectory struct{ fallback strategies.Strategy }

func (d *fakeDirectory) Name() string                { return "by_tenant" }
func (d *fakeDirectory) KeyType() strategies.KeyType { return strategies.KeyText }
func (d *fakeDirectory) Shards() []string            { return []string{"s0", "s1", "s2"} }
func (d *fakeDirectory) Locate(ctx context.Context, k strategies.Key, intent strategies.Intent) (string, error) {
	switch k.Text {
	case "acme":
		return "s2", nil
	case "globex":
		return "s0", nil
	}
	if intent == strategies.Read {
		return "", strategies.ErrNoOwner
	}
	return d.fallback.Locate(ctx, k, intent)
}

// routerFor builds the strategies of cfg (no directory) and its router.
func routerFor(t testing.TB, cfg *config.Config) *Router {
	t.Helper()
	strats, err := strategies.Build(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, strats)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newTestRouter(t testing.TB) (*Router, map[string]strategies.Strategy) {
	t.Helper()
	cfg := testConfig()
	noDir := *cfg
	noDir.Strategies = cfg.Strategies[:3]
	strats, err := strategies.Build(context.Background(), &noDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	strats["by_tenant"] = &fakeDirectory{fallback: strats["ring"]}
	r, err := New(cfg, strats)
	if err != nil {
		t.Fatal(err)
	}
	return r, strats
}

// keysOn finds, for each shard of the strategy, the smallest int key (or
// "k<n>" text key) it places there, so tests do not hard-code hash values.
func keysOn(t testing.TB, s strategies.Strategy) map[string]string {
	t.Helper()
	out := map[string]string{}
	for n := 1; n < 10000 && len(out) < len(s.Shards()); n++ {
		text := strconv.Itoa(n)
		if s.KeyType() == strategies.KeyText {
			text = "k" + text
		}
		k, err := strategies.ParseKey(s.KeyType(), text)
		if err != nil {
			t.Fatal(err)
		}
		shard, err := s.Locate(context.Background(), k, strategies.Write)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := out[shard]; !ok {
			out[shard] = text
		}
	}
	if len(out) != len(s.Shards()) {
		t.Fatalf("no keys for every shard of %s: %v", s.Name(), out)
	}
	return out
}

// keyReplacer expands {c0} {c1} (by_customer keys on s0, s1) and {r0}
// {r1} {r2} (ring keys on s0..s2) in test SQL.
func keyReplacer(t testing.TB, strats map[string]strategies.Strategy) *strings.Replacer {
	c := keysOn(t, strats["by_customer"])
	g := keysOn(t, strats["ring"])
	// A second by_customer key on s0, for IN lists that stay on one shard.
	var c0b string
	for n, _ := strconv.Atoi(c["s0"]); c0b == ""; n++ {
		k := strategies.Key{Type: strategies.KeyInt, Int: int64(n)}
		if s, _ := strats["by_customer"].Locate(context.Background(), k, strategies.Read); s == "s0" && strconv.Itoa(n) != c["s0"] {
			c0b = strconv.Itoa(n)
		}
	}
	return strings.NewReplacer("{c0}", c["s0"], "{c1}", c["s1"], "{c0b}", c0b,
		"{r0}", g["s0"], "{r1}", g["s1"], "{r2}", g["s2"])
}

// route runs sql through ParseQuery (params == nil: literals become the
// arguments) or Prepare (params given, "NULL" for a NULL) and routes it.
func route(r *Router, sql string, params []string, session string) (*Statement, Route, error) {
	return routeWith(r, sql, params, Args{SessionShard: session, MergeOnly: true})
}

// routeWith is route with more of Args set (Params are filled in).
func routeWith(r *Router, sql string, params []string, args Args) (*Statement, Route, error) {
	var st *Statement
	if params == nil {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			return nil, Route{}, err
		}
		if len(parts) != 1 {
			return nil, Route{}, fmt.Errorf("%d statements", len(parts))
		}
		st, args.Params, args.Literals = parts[0].Stmt, parts[0].Args, true
	} else {
		var err error
		if st, err = r.Prepare(sql); err != nil {
			return nil, Route{}, err
		}
		for _, p := range params {
			if p == "NULL" {
				args.Params = append(args.Params, nil)
			} else {
				args.Params = append(args.Params, []byte(p))
			}
		}
	}
	rt, err := r.Route(context.Background(), st, args)
	return st, rt, err
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "not a PgError: " + err.Error()
	}
	return ""
}

// formatRoute prints a route on one line for golden files and failures.
func formatRoute(rt Route, err error) string {
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			s := fmt.Sprintf("ERROR %s: %s", pe.Code, pe.Message)
			if pe.Hint != "" {
				s += " (hint: " + pe.Hint + ")"
			}
			return s
		}
		return "ERROR " + err.Error()
	}
	return fmt.Sprintf("%s %v merge=%s | %s", rt.Kind, rt.Shards, rt.Merge, rt.Reason)
}

func asPg(t testing.TB, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *pgconn.PgError", err)
	}
	return pe
}

// checkRefusals routes every statement of refused and wants 0A000 with
// a hint and a message containing the statement's text there; every
// statement of allowed must route.
func checkRefusals(t *testing.T, r *Router, refused map[string]string, allowed []string) {
	t.Helper()
	for sql, want := range refused {
		_, _, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) || pgErr.Hint == "" {
			t.Errorf("%s: %v; want 0A000 saying %q, with a hint", sql, err, want)
		}
	}
	for _, sql := range allowed {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// withKeys fills refused's {c0}-style placeholders with keys (keyReplacer).
func withKeys(keys *strings.Replacer, refused map[string]string) map[string]string {
	out := make(map[string]string, len(refused))
	for sql, want := range refused {
		out[keys.Replace(sql)] = want
	}
	return out
}

package strategies

import (
	"context"
	"slices"
	"testing"

	"github.com/shardproxy/shardproxy/config"
)

func testConfig() *config.Config {
	return &config.Config{
		Shards: []config.Shard{{Name: "s0"}, {Name: "s1"}, {Name: "s2"}},
		Strategies: []config.Strategy{
			{Name: "by_customer", Type: config.StrategyHash, KeyType: config.KeyInt, Shards: []string{"s0", "s1"}},
			{Name: "by_id", Type: config.StrategyRange, KeyType: config.KeyInt,
				Ranges: []config.Range{{Upper: "1000", Shard: "s1"}, {Unbounded: true, Shard: "s0"}}},
			{Name: "ring", Type: config.StrategyConsistent, KeyType: config.KeyText, Shards: []string{"s0", "s1", "s2"}, Partitions: 271},
		},
	}
}

func TestBuild(t *testing.T) {
	got, err := Build(context.Background(), testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		keyType KeyType
		shards  []string
	}{
		"by_customer": {KeyInt, []string{"s0", "s1"}},
		"by_id":       {KeyInt, []string{"s1", "s0"}},
		"ring":        {KeyText, []string{"s0", "s1", "s2"}},
	}
	if len(got) != len(want) {
		t.Fatalf("Build returned %d strategies, want %d", len(got), len(want))
	}
	for name, w := range want {
		s := got[name]
		if s == nil || s.Name() != name || s.KeyType() != w.keyType || !slices.Equal(s.Shards(), w.shards) {
			t.Errorf("%s: got %v", name, s)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
	}{
		{"unknown shard", func(c *config.Config) { c.Strategies[0].Shards = []string{"s0", "s9"} }},
		{"duplicate shard", func(c *config.Config) { c.Strategies[0].Shards = []string{"s0", "s0"} }},
		{"no shards", func(c *config.Config) { c.Strategies[2].Shards = nil }},
		{"range on unknown shard", func(c *config.Config) { c.Strategies[1].Ranges[0].Shard = "s9" }},
		{"hash on timestamps", func(c *config.Config) { c.Strategies[0].KeyType = config.KeyTimestamp }},
		{"unknown key type", func(c *config.Config) { c.Strategies[0].KeyType = "float" }},
		{"unknown type", func(c *config.Config) { c.Strategies[0].Type = "modulo" }},
		{"directory without metadata", func(c *config.Config) {
			c.Strategies = append(c.Strategies, config.Strategy{Name: "dir", Type: config.StrategyDirectory, KeyType: config.KeyInt, Table: "d", Fallback: "by_customer"})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mutate(cfg)
			if _, err := Build(context.Background(), cfg, nil); err == nil {
				t.Fatal("Build succeeded")
			}
		})
	}
}

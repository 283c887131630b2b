package config

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Describe renders the resolved shard map for humans (shardproxy
// check-config): every default filled in, ranges as half-open intervals,
// and for each table the shards its rows can live on. Passwords, also
// those inside DSNs, are never printed.
func Describe(c *Config) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if c.Path != "" {
		fmt.Fprintf(w, "config:\t%s\n", c.Path)
	}
	fmt.Fprintf(w, "listen:\t%s\n", c.Listen)
	fmt.Fprintf(w, "metrics listen:\t%s\n", orNone(c.MetricsListen, "disabled"))
	fmt.Fprintf(w, "admin database:\t%s\n", c.AdminDatabase)
	if c.TLS != nil {
		fmt.Fprintf(w, "tls:\tcert %s, key %s, client_tls %s\n", c.TLS.Cert, c.TLS.Key, c.TLS.ClientTLS)
	} else {
		fmt.Fprintf(w, "tls:\tdisabled\n")
	}
	fmt.Fprintf(w, "metadata:\t%s\n", orNone(MaskDSN(c.Metadata.DSN), "none"))
	fmt.Fprintf(w, "pool:\tsize %d per shard, acquire timeout %s\n",
		c.Pool.Size, time.Duration(c.Pool.AcquireTimeoutMillis)*time.Millisecond)
	fmt.Fprintf(w, "two-phase commit:\t%t\n", c.TwoPhaseCommit)
	fmt.Fprintf(w, "plan cache size:\t%d\n", c.PlanCacheSize)
	fmt.Fprintf(w, "merge memory:\t%d bytes\n", c.MergeMemory)
	fmt.Fprintf(w, "default shard:\t%s\n", c.DefaultShard)
	w.Flush()

	b.WriteString("\nusers:\n")
	for _, u := range c.Users {
		role := ""
		if u.Admin {
			role = " (admin)"
		}
		fmt.Fprintf(&b, "  %s%s\n", u.Name, role)
	}

	b.WriteString("\nshards:\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for i, s := range c.Shards {
		fmt.Fprintf(w, "  %d\t%s\t%s\n", i, s.Name, MaskDSN(s.DSN))
	}
	w.Flush()

	b.WriteString("\nstrategies:\n")
	for _, s := range c.Strategies {
		fmt.Fprintf(&b, "  %s: %s, key %s", s.Name, s.Type, s.KeyType)
		switch s.Type {
		case StrategyHash:
			fmt.Fprintf(&b, ", shards %s\n", strings.Join(s.Shards, " "))
		case StrategyConsistent:
			fmt.Fprintf(&b, ", %d partitions, shards %s\n", s.Partitions, strings.Join(s.Shards, " "))
		case StrategyDirectory:
			fmt.Fprintf(&b, ", table %s, new keys by %s\n", s.Table, s.Fallback)
		case StrategyRange:
			b.WriteString("\n")
			for _, iv := range Intervals(s.Ranges) {
				fmt.Fprintf(&b, "    %s\n", iv)
			}
		default:
			b.WriteString("\n")
		}
	}

	b.WriteString("\ntables:\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, t := range c.Tables {
		if t.Reference {
			fmt.Fprintf(w, "  %s\treference\t\tall shards (%s)\n", t.Name, strings.Join(c.ShardNames(), " "))
			continue
		}
		fmt.Fprintf(w, "  %s\tkey %s\tstrategy %s\tshards %s\n", t.Name, t.Key, t.Strategy, strings.Join(c.StrategyShards(t.Strategy), " "))
	}
	fmt.Fprintf(w, "  (other tables)\tunsharded\t\tshard %s\n", c.DefaultShard)
	w.Flush()
	return b.String()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// Intervals renders ranges as half-open intervals, one per range:
// "(-inf, 1000) -> s0", "[1000, +inf) -> s1". When the last range is
// bounded, keys at or above its bound have no shard, and a last line says so.
func Intervals(ranges []Range) []string {
	var out []string
	lower := "(-inf"
	for _, r := range ranges {
		upper := "+inf)"
		if !r.Unbounded {
			upper = r.Upper + ")"
		}
		out = append(out, fmt.Sprintf("%s, %s -> %s", lower, upper, r.Shard))
		lower = "[" + r.Upper
	}
	if n := len(ranges); n > 0 && !ranges[n-1].Unbounded {
		out = append(out, fmt.Sprintf("%s, +inf) -> no shard (error)", lower))
	}
	return out
}

// StrategyShards lists the shards the named strategy can place keys on, in
// first-use order. A directory can hold any key anywhere (entries are moved
// by resharding), so it spans every shard.
func (c *Config) StrategyShards(name string) []string {
	s := c.StrategyByName(name)
	if s == nil {
		return nil
	}
	switch s.Type {
	case StrategyHash, StrategyConsistent:
		return s.Shards
	case StrategyRange:
		var out []string
		for _, r := range s.Ranges {
			if !contains(out, r.Shard) {
				out = append(out, r.Shard)
			}
		}
		return out
	default:
		return c.ShardNames()
	}
}

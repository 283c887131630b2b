package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
	_ "time/tzdata"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/strategies"
)

func routeCmd() *cobra.Command {
	var path, hint, tz string
	cmd := &cobra.Command{
		Use:   `route --config FILE "SQL" [params...]`,
		Short: "Print which shard(s) a statement goes to and why, without connecting",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			r, err := offlineRouter(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return fmt.Errorf("--timezone: %w", err)
			}
			return printRoutes(cmd.Context(), r, args[0], args[1:], router.Args{SessionShard: hint, TimeZone: loc})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "shardproxy.yaml", "shard map (YAML)")
	cmd.Flags().StringVar(&hint, "shard", "", "session shard hint, as SET shardproxy.shard would give")
	cmd.Flags().StringVar(&tz, "timezone", "UTC", "session TimeZone for timestamptz literals without an offset")
	return cmd
}

func printRoutes(ctx context.Context, r *router.Router, sql string, params []string, session router.Args) error {
	var args [][]byte
	for _, p := range params {
		if p == "NULL" {
			args = append(args, nil)
			continue
		}
		args = append(args, []byte(p))
	}
	var parts []router.QueryPart
	if len(params) > 0 {
		st, err := r.Prepare(sql)
		if err != nil {
			return err
		}
		parts = []router.QueryPart{{Stmt: st, Text: sql, Args: args}}
	} else {
		var err error
		if parts, err = r.ParseQuery(sql); err != nil {
			return err
		}
	}
	for _, p := range parts {
		fmt.Printf("statement: %s\n", strings.TrimSpace(p.Text))
		fmt.Printf("  kind:    %s\n", p.Stmt.Kind)
		if how, ok := p.Stmt.Served(p.Args); ok {
			fmt.Printf("  served:  %s\n", how)
			continue
		}
		args := session
		args.Params, args.Literals = p.Args, len(params) == 0
		route, err := r.Route(ctx, p.Stmt, args)
		if err != nil {
			fmt.Printf("  error:   %v\n", err)
			continue
		}
		fmt.Printf("  route:   %s\n", route.Kind)
		fmt.Printf("  shards:  %s\n", strings.Join(route.Shards, ", "))
		fmt.Printf("  merge:   %s\n", route.Merge)
		fmt.Printf("  reason:  %s\n", route.Reason)
		if route.Plan != nil {
			fmt.Printf("  plan:\n    %s\n", strings.ReplaceAll(route.Plan.String(), "\n", "\n    "))
		}
		if route.Split != nil {
			fmt.Printf("  split:\n    %s\n", strings.ReplaceAll(route.Split.String(), "\n", "\n    "))
		}
	}
	return nil
}

// offlineRouter builds a router that needs no database: directory
// strategies cannot look keys up without the metadata database, so they
// answer with an explanation instead of a shard.
func offlineRouter(ctx context.Context, cfg *config.Config) (*router.Router, error) {
	plain := *cfg
	plain.Strategies = nil
	var dirs []config.Strategy
	for _, s := range cfg.Strategies {
		if s.Type == config.StrategyDirectory {
			dirs = append(dirs, s)
		} else {
			plain.Strategies = append(plain.Strategies, s)
		}
	}
	strats, err := strategies.Build(ctx, &plain, nil)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		kt, err := strategies.KeyTypeOf(d.KeyType)
		if err != nil {
			return nil, err
		}
		strats[d.Name] = offlineDirectory{name: d.Name, keyType: kt, fallback: strats[d.Fallback], shards: cfg.ShardNames()}
	}
	return router.New(cfg, strats)
}

type offlineDirectory struct {
	name     string
	keyType  strategies.KeyType
	fallback strategies.Strategy
	shards   []string
}

func (d offlineDirectory) Name() string                { return d.name }
func (d offlineDirectory) KeyType() strategies.KeyType { return d.keyType }
func (d offlineDirectory) Shards() []string            { return d.shards }
func (d offlineDirectory) Locate(ctx context.Context, k strategies.Key, intent strategies.Intent) (string, error) {
	guess := "?"
	if d.fallback != nil {
		if s, err := d.fallback.Locate(ctx, k, intent); err == nil {
			guess = s
		}
	}
	return "", fmt.Errorf("directory %s: key %s is looked up in the metadata database, which route does not contact (a new key would be placed on %s by the fallback)", d.name, k, guess)
}

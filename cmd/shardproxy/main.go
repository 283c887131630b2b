// Command shardproxy is the PostgreSQL sharding proxy: serve, check-config,
// route, and dev (local shards for `make run`). Wiring only: the work lives
// in the packages.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "shardproxy",
		Short:         "PostgreSQL wire-protocol sharding proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var verbose bool
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	logger := func() *slog.Logger {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	root.AddCommand(serveCmd(logger), checkConfigCmd(), routeCmd(), devCmd(logger))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shardproxy:", err)
		os.Exit(1)
	}
}

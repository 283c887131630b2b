// Command shardproxy is the PostgreSQL sharding proxy: serve, check-config,
// route, and dev (local shards for `make run`). Wiring only: the work lives
// in the packages.
package main

import (
	"fmt"
	"io"
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
	var logs logFlags
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging (same as --log-level debug)")
	root.PersistentFlags().StringVar(&logs.format, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&logs.level, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if verbose {
			logs.level = "debug"
		}
		return logs.check()
	}
	logger := func() *slog.Logger { return logs.logger(os.Stderr) }
	root.AddCommand(serveCmd(logger), checkConfigCmd(), routeCmd(), devCmd(logger), ordersCmd(logger), reshardCmd(logger))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shardproxy:", err)
		os.Exit(1)
	}
}

// logFlags are the root command's --log-format and --log-level.
type logFlags struct {
	format string // text or json
	level  string // debug, info, warn or error
}

func (f logFlags) check() error {
	if f.format != "text" && f.format != "json" {
		return fmt.Errorf("--log-format %q: want text or json", f.format)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(f.level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	return nil
}

// logger builds the process logger; check has accepted the flags.
func (f logFlags) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(f.level))
	opts := &slog.HandlerOptions{Level: level}
	if f.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

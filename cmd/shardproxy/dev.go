package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

func devCmd(logger func() *slog.Logger) *cobra.Command {
	var listen, demo, state string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start two local shards and a metadata database, load the demo schema, and serve (make run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := logger()
			setProxyProcs(log)
			return dev(ctx, log, listen, demo, state)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6432", "client listen address")
	cmd.Flags().StringVar(&demo, "demo", "testdata/demo", "directory with schema.sql, data.sql and shardproxy.yaml.tmpl")
	cmd.Flags().StringVar(&state, "state", ".run", "directory for the generated config")
	return cmd
}

// dev is `make run`: throw-away servers, the demo schema loaded through
// the proxy itself (DDL is broadcast, rows are routed), the proxy in the
// foreground, and everything stopped on Ctrl-C.
func dev(ctx context.Context, log *slog.Logger, listen, demo, state string) error {
	fmt.Println("starting 2 shards and a metadata database (PostgreSQL, throw-away data dirs)...")
	var servers []*pgtest.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for _, name := range []string{"s0", "s1", "meta"} {
		s, err := pgtest.Start(ctx, pgtest.Options{Name: name})
		if err != nil {
			return err
		}
		servers = append(servers, s)
		db := "app"
		if name == "meta" {
			db = "shardproxy_meta"
		}
		if err := s.CreateDatabase(ctx, db); err != nil {
			return err
		}
		fmt.Printf("  %-4s 127.0.0.1:%d (pid %d)\n", name, s.Port(), s.PID())
	}
	tmpl, err := template.ParseFiles(filepath.Join(demo, "shardproxy.yaml.tmpl"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]string{
		"Listen": listen, "Shard0DSN": servers[0].DSN("app"), "Shard1DSN": servers[1].DSN("app"),
		"MetaDSN": servers[2].DSN("shardproxy_meta"),
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(state, "shardproxy.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o600); err != nil {
		return err
	}

	ready := func(addr string) {
		go func() {
			if err := loadDemo(ctx, addr, demo); err != nil {
				log.Error("loading the demo data failed", "err", err)
				return
			}
			fmt.Printf(`
shardproxy is serving on %s (config: %s)
connect with:
    psql "postgres://app:secret@%s/app?sslmode=disable"
try:
    SELECT * FROM orders WHERE customer_id = 7;
    INSERT INTO customers (customer_id, name, email) VALUES (1001, 'Ada', 'ada@example.com');
    EXPLAIN SELECT status, count(*) FROM orders GROUP BY status;   -- the proxy's plan over each shard's
Ctrl-C stops the proxy and the local servers.
`, addr, cfgPath, addr)
		}()
	}
	return serve(ctx, cfgPath, log, ready)
}

// loadDemo creates the demo schema and rows through the proxy.
func loadDemo(ctx context.Context, addr, demo string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/app?sslmode=disable", addr))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, f := range []string{"schema.sql", "data.sql"} {
		sql, err := os.ReadFile(filepath.Join(demo, f))
		if err != nil {
			return err
		}
		for _, stmt := range splitSQL(string(sql)) {
			if _, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("%s: %w\n%s", f, err, stmt)
			}
		}
	}
	return nil
}

// splitSQL splits a demo SQL file into statements at lines ending in ';'
// (the demo files keep literals free of such lines), skipping comments.
func splitSQL(sql string) []string {
	var out []string
	var cur bytes.Buffer
	for _, line := range bytes.Split([]byte(sql), []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || bytes.HasPrefix(t, []byte("--")) {
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
		if bytes.HasSuffix(t, []byte(";")) {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	if s := bytes.TrimSpace(cur.Bytes()); len(s) > 0 {
		out = append(out, string(s))
	}
	return out
}

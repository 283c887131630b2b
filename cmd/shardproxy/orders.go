package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/httpapi"
	"github.com/shardproxy/shardproxy/cqrs/load"
	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// orderFlags are shared by the orders subcommands.
type orderFlags struct {
	dsn           string
	style         string
	shards        []string
	snapshotEvery int64
	lease         time.Duration
}

func (f *orderFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dsn, "dsn", "postgres://app:secret@127.0.0.1:6432/app?sslmode=disable", "the proxy (the service is an ordinary client)")
	cmd.Flags().StringVar(&f.style, "style", "orchestration", "saga style: orchestration or choreography")
	cmd.Flags().StringSliceVar(&f.shards, "shards", []string{"s0", "s1", "s2"}, "shard names of the proxy's map (for per-shard workers)")
	cmd.Flags().Int64Var(&f.snapshotEvery, "snapshot-every", 20, "snapshot an order's stream every N events")
	cmd.Flags().DurationVar(&f.lease, "lease", 10*time.Second, "how long the orchestrator holds a saga (a dead orchestrator's sagas resume after it)")
}

func (f *orderFlags) open(ctx context.Context, log *slog.Logger) (*app.Service, error) {
	if f.style != "orchestration" && f.style != "choreography" {
		return nil, fmt.Errorf("--style %q: want orchestration or choreography", f.style)
	}
	cfg, err := pgxpool.ParseConfig(f.dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to the proxy: %w", err)
	}
	return app.New(pool, app.Options{Style: f.style, Shards: f.shards, SnapshotEvery: f.snapshotEvery, Lease: f.lease, Log: log}), nil
}

// runE makes the RunE of a subcommand that uses the service: the body
// runs with a context that SIGINT/SIGTERM cancel and the service open
// (its pool closed when the body returns).
func (f *orderFlags) runE(logger func() *slog.Logger, body func(ctx context.Context, svc *app.Service, log *slog.Logger) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		ctx, stop := signalContext(cmd)
		defer stop()
		log := logger()
		svc, err := f.open(ctx, log)
		if err != nil {
			return err
		}
		defer svc.Pool.Close()
		return body(ctx, svc, log)
	}
}

// ordersCmd is `shardproxy orders ...`: the reference workload (issue 5).
func ordersCmd(logger func() *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "orders",
		Short: "The reference order service (event sourcing, CQRS, sagas) as a client of the proxy",
	}
	cmd.AddCommand(ordersMigrateCmd(logger), ordersServeCmd(logger), ordersWorkCmd(logger), ordersLoadCmd(logger),
		ordersRebuildCmd(logger), ordersDevCmd(logger))
	return cmd
}

func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func ordersMigrateCmd(logger func() *slog.Logger) *cobra.Command {
	var f orderFlags
	var seed bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the order service's schema through the proxy (idempotent)",
		Args:  cobra.NoArgs,
		RunE: f.runE(logger, func(ctx context.Context, svc *app.Service, log *slog.Logger) error {
			if err := app.Migrate(ctx, svc.Pool); err != nil {
				return err
			}
			if seed {
				if err := svc.Seed(ctx, 100, 10_000, 50, 1_000, 100); err != nil {
					return err
				}
			}
			fmt.Println("orders: schema ready")
			return nil
		}),
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&seed, "seed", false, "also create customers 1..100 and products 1..50")
	return cmd
}

func ordersServeCmd(logger func() *slog.Logger) *cobra.Command {
	var f orderFlags
	var listen string
	var workers bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (and run the relays, orchestrator and projections)",
		Args:  cobra.NoArgs,
		RunE: f.runE(logger, func(ctx context.Context, svc *app.Service, log *slog.Logger) error {
			return serveOrders(ctx, svc, log, listen, workers, nil)
		}),
	}
	f.register(cmd)
	cmd.Flags().StringVar(&listen, "http", "127.0.0.1:8080", "HTTP listen address")
	cmd.Flags().BoolVar(&workers, "workers", true, "run the background workers in this process")
	return cmd
}

// serveOrders runs the HTTP API (and the workers) until ctx ends.
func serveOrders(ctx context.Context, svc *app.Service, log *slog.Logger, listen string, workers bool, ready func(addr string)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: httpapi.Handler(svc, log), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if workers {
		wg.Go(func() {
			if err := svc.RunWorkers(ctx); err != nil {
				log.Error("workers stopped", "err", err)
				cancel()
			}
		})
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		srv.Shutdown(sctx)
	})
	log.Info("orders HTTP API listening", "addr", ln.Addr().String(), "style", svc.Opts.Style)
	if ready != nil {
		ready(ln.Addr().String())
	}
	err = srv.Serve(ln)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func ordersWorkCmd(logger func() *slog.Logger) *cobra.Command {
	var f orderFlags
	var failRate, dupRate float64
	cmd := &cobra.Command{
		Use:   "work",
		Short: "Run only the background workers (outbox relays, saga orchestrator, projections)",
		Args:  cobra.NoArgs,
		RunE: f.runE(logger, func(ctx context.Context, svc *app.Service, log *slog.Logger) error {
			chaos(svc, failRate, dupRate)
			return svc.RunWorkers(ctx)
		}),
	}
	f.register(cmd)
	cmd.Flags().Float64Var(&failRate, "fail-rate", 0, "probability that a participant transaction aborts (chaos)")
	cmd.Flags().Float64Var(&dupRate, "duplicate-rate", 0, "probability that a relayed message is delivered twice (chaos)")
	return cmd
}

func chaos(svc *app.Service, failRate, dupRate float64) {
	load.InjectFailures(svc, failRate, uint64(time.Now().UnixNano()))
	if dupRate > 0 {
		var mu sync.Mutex
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		svc.Duplicate = func() bool { mu.Lock(); defer mu.Unlock(); return rng.Float64() < dupRate }
	}
}

func ordersLoadCmd(logger func() *slog.Logger) *cobra.Command {
	var f orderFlags
	var cfg load.Config
	var dupRate float64
	var killEvery time.Duration
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Generate orders with random failures, wait for quiescence, check the invariants, print throughput and latency percentiles",
		Long: `Generate orders with random failures, wait for quiescence, check the invariants, print
throughput and latency percentiles. With --kill-every the workers run in a child
process ("orders work") that is SIGKILLed and restarted at that interval.
The exit status is 1 if an invariant is violated.`,
		Args: cobra.NoArgs,
		RunE: f.runE(logger, func(ctx context.Context, svc *app.Service, log *slog.Logger) error {
			if err := app.Migrate(ctx, svc.Pool); err != nil {
				return err
			}
			wctx, stopWorkers := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var kills int
			if killEvery > 0 {
				wg.Go(func() { kills = killLoop(wctx, log, killEvery, f, cfg.FailRate, dupRate) })
			} else {
				chaos(svc, cfg.FailRate, dupRate)
				wg.Go(func() { svc.RunWorkers(wctx) })
			}
			rep, err := load.Run(ctx, svc, cfg, func(ctx context.Context) error {
				// Quiescence with the workers still running (and killed).
				return waitQuiescent(ctx, svc, 5*time.Minute)
			})
			stopWorkers()
			wg.Wait()
			if err != nil {
				return err
			}
			if killEvery > 0 {
				fmt.Printf("workers SIGKILLed %d times\n", kills)
			}
			fmt.Print(rep)
			if len(rep.Violations) > 0 {
				return errors.New("invariants violated")
			}
			return nil
		}),
	}
	f.register(cmd)
	cmd.Flags().IntVar(&cfg.Orders, "orders", 1000, "orders to place")
	cmd.Flags().IntVar(&cfg.Concurrency, "concurrency", 8, "concurrent clients")
	cmd.Flags().IntVar(&cfg.Customers, "customers", 100, "customers")
	cmd.Flags().IntVar(&cfg.Products, "products", 50, "products")
	cmd.Flags().Int64Var(&cfg.Credit, "credit", 20_000, "initial credit per customer")
	cmd.Flags().Int64Var(&cfg.Stock, "stock", 100, "initial stock per product")
	cmd.Flags().Float64Var(&cfg.FailRate, "fail-rate", 0.05, "probability that a participant transaction aborts")
	cmd.Flags().Float64Var(&cfg.CancelRate, "cancel-rate", 0.05, "probability that a client cancels its order")
	cmd.Flags().Float64Var(&cfg.ShipRate, "ship-rate", 0.2, "probability that a client ships its order")
	cmd.Flags().Float64Var(&dupRate, "duplicate-rate", 0.1, "probability that a relayed message is delivered twice")
	cmd.Flags().DurationVar(&killEvery, "kill-every", 0, "run the workers in a child process and SIGKILL it this often (0: workers in-process)")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	return cmd
}

func waitQuiescent(ctx context.Context, svc *app.Service, max time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	start := time.Now()
	seen := "nothing counted yet"
	for {
		sg, msgs, lag, err := svc.InFlight(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			if sg == 0 && msgs == 0 && lag == 0 {
				return nil
			}
			seen = fmt.Sprintf("%d sagas in flight, %d messages pending, projection lag %d", sg, msgs, lag)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not quiescent after %v: %s", time.Since(start).Round(time.Millisecond), seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// killLoop runs `orders work` as a child process, SIGKILLs it every
// interval (by its PID) and starts a new one, until ctx ends; then it
// starts a last child and stops it gently once ctx ends. It returns the
// number of kills.
func killLoop(ctx context.Context, log *slog.Logger, every time.Duration, f orderFlags, failRate, dupRate float64) int {
	self, err := os.Executable()
	if err != nil {
		log.Error("cannot find own executable", "err", err)
		return 0
	}
	kills := 0
	for {
		child := exec.Command(self, "orders", "work", "--dsn", f.dsn, "--style", f.style, "--shards", strings.Join(f.shards, ","),
			"--lease", f.lease.String(), "--fail-rate", fmt.Sprint(failRate), "--duplicate-rate", fmt.Sprint(dupRate), "--log-level", "error")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := child.Start(); err != nil {
			log.Error("starting worker", "err", err)
			return kills
		}
		// Random kill time in [every/2, every*3/2): deaths land at any step.
		wait := every/2 + time.Duration(rand.Int64N(int64(every)))
		select {
		case <-time.After(wait):
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
			kills++
		case <-ctx.Done():
			child.Process.Signal(syscall.SIGTERM)
			child.Wait()
			return kills
		}
	}
}

func ordersRebuildCmd(logger func() *slog.Logger) *cobra.Command {
	var f orderFlags
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the order_view read model from the events (stop the projection workers first)",
		Args:  cobra.NoArgs,
		RunE: f.runE(logger, func(ctx context.Context, svc *app.Service, log *slog.Logger) error {
			start := time.Now()
			if err := svc.Projector.Reset(ctx); err != nil {
				return err
			}
			if err := svc.Projector.CatchUp(ctx); err != nil {
				return err
			}
			// A keyless count: the proxy sums the shards' counts.
			var n int64
			if err := svc.Pool.QueryRow(ctx, "SELECT count(*) FROM order_view").Scan(&n); err != nil {
				return err
			}
			fmt.Printf("order_view rebuilt: %d orders in %v\n", n, time.Since(start).Round(time.Millisecond))
			return nil
		}),
	}
	f.register(cmd)
	return cmd
}

// ordersDevCmd is `make run-orders`: three local shards and a metadata
// database, the proxy with testdata/orders, the schema and seed data
// through the proxy, and the HTTP API with its workers, all in the
// foreground until Ctrl-C.
func ordersDevCmd(logger func() *slog.Logger) *cobra.Command {
	var listen, httpListen, tmplPath, state, style string
	var workers bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start 3 local shards, the proxy and the order service (make run-orders)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			return ordersDev(ctx, logger(), listen, httpListen, tmplPath, state, style, workers)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:6432", "proxy listen address")
	cmd.Flags().StringVar(&httpListen, "http", "127.0.0.1:8080", "HTTP API listen address")
	cmd.Flags().StringVar(&tmplPath, "config", "testdata/orders/shardproxy.yaml.tmpl", "shard map template")
	cmd.Flags().StringVar(&state, "state", ".run-orders", "directory for the generated config")
	cmd.Flags().StringVar(&style, "style", "orchestration", "saga style: orchestration or choreography")
	cmd.Flags().BoolVar(&workers, "workers", true, "run the background workers (false: leave them to `orders work` or `orders load --kill-every`)")
	return cmd
}

func ordersDev(ctx context.Context, log *slog.Logger, listen, httpListen, tmplPath, state, style string, workers bool) error {
	fmt.Println("starting 3 shards and a metadata database (PostgreSQL, throw-away data dirs)...")
	var servers []*pgtest.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for _, name := range []string{"s0", "s1", "s2", "meta"} {
		s, err := pgtest.Start(ctx, pgtest.Options{Name: name})
		if err != nil {
			return err
		}
		servers = append(servers, s)
		if err := s.CreateDatabase(ctx, "app"); err != nil {
			return err
		}
		fmt.Printf("  %-4s 127.0.0.1:%d (pid %d)\n", name, s.Port(), s.PID())
	}
	tmpl, err := template.ParseFiles(tmplPath)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]any{"Listen": listen, "PoolSize": 40,
		"Shard0DSN": servers[0].DSN("app"), "Shard1DSN": servers[1].DSN("app"), "Shard2DSN": servers[2].DSN("app"),
		"MetaDSN": servers[3].DSN("app")}); err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	cfgPath := filepath.Join(state, "shardproxy.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ready := func(addr string) {
		wg.Go(func() {
			f := orderFlags{dsn: fmt.Sprintf("postgres://app:secret@%s/app?sslmode=disable", addr), style: style,
				shards: []string{"s0", "s1", "s2"}, snapshotEvery: 20, lease: 10 * time.Second}
			svc, err := f.open(ctx, log)
			if err != nil {
				log.Error("orders: connecting", "err", err)
				cancel()
				return
			}
			defer svc.Pool.Close()
			if err := app.Migrate(ctx, svc.Pool); err != nil {
				log.Error("orders: migrate", "err", err)
				cancel()
				return
			}
			if err := svc.Seed(ctx, 100, 10_000, 50, 1_000, 100); err != nil {
				log.Error("orders: seed", "err", err)
				cancel()
				return
			}
			err = serveOrders(ctx, svc, log, httpListen, workers, func(h string) {
				fmt.Printf(`
shardproxy is serving on %s (config: %s); the order service on http://%s
try:
    curl -s -XPOST http://%s/orders -d '{"customer_id": 7, "items": [{"product_id": 3, "quantity": 2}]}'
    curl -s http://%s/orders/<id>            # read model (CQRS query side)
    curl -s http://%s/sagas/<id>             # saga state and step log
    curl -s http://%s/customers/7/orders
    curl -s http://%s/metrics | grep ^orders_
    bin/shardproxy orders load --dsn 'postgres://app:secret@%s/app?sslmode=disable' --orders 500
    psql "postgres://app:secret@%s/app?sslmode=disable"
Ctrl-C stops everything.
`, addr, cfgPath, h, h, h, h, h, h, addr, addr)
			})
			if err != nil {
				log.Error("orders: serve", "err", err)
				cancel()
			}
		})
	}
	err = serve(ctx, cfgPath, log, ready)
	cancel() // the order service stops with the proxy
	wg.Wait()
	return err
}

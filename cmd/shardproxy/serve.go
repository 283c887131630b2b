package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/proxy"
)

func serveCmd(logger func() *slog.Logger) *cobra.Command {
	var path, cpuProfile string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Serve clients on the configured listen address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			log := logger()
			setProxyProcs(log)
			return serve(ctx, path, log, nil)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "shardproxy.yaml", "shard map (YAML)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file until shutdown (for make bench)")
	return cmd
}

// serve runs the proxy until ctx is done; ready, if not nil, is called with
// the bound listen address once clients can connect.
func serve(ctx context.Context, path string, log *slog.Logger, ready func(addr string)) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	cur, err := proxy.Assemble(ctx, cfg, nil, log)
	if err != nil {
		return err
	}
	srv := proxy.NewServer(cur.Runtime(), log)
	// The admin console's SHUTDOWN drains exactly as SIGTERM does.
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	srv.SetShutdownHook(shutdown)

	// SIGHUP reloads: a valid map is swapped in for new transactions; an
	// invalid one is logged (with file:line) and the old map keeps serving.
	var mu sync.Mutex
	var assembleErr error // of the last reload, for the console's RELOAD
	w := config.Watch(ctx, path, log, func(next *config.Config) {
		mu.Lock()
		defer mu.Unlock()
		err := srv.CheckAgainstEpoch(next)
		a := cur
		if err == nil {
			a, err = proxy.Assemble(ctx, next, cur, log)
		}
		assembleErr = err
		srv.NoteReload(err == nil)
		if err != nil {
			log.Error("reload rejected; keeping the current shard map", "err", err)
			return
		}
		srv.SetRuntime(a.Runtime())
		cur.Retire(a)
		cur = a
		log.Info("shard map reloaded", "shards", len(next.Shards), "tables", len(next.Tables))
	})
	w.OnFailure(func(error) { srv.NoteReload(false) })
	srv.SetReloadHook(func() error {
		if err := w.Reload(); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		return assembleErr
	})

	// Resharding cutovers (see proxy/reshard.go): the watcher ends with ctx.
	watchDone := make(chan struct{})
	epochKnown := make(chan struct{})
	if cfg.Metadata.DSN != "" {
		go func() {
			defer close(watchDone)
			rw := reshardWatch(cfg.Metadata.DSN, log, func(next *config.Config) error {
				mu.Lock()
				defer mu.Unlock()
				a, err := proxy.Assemble(ctx, next, cur, log)
				if err != nil {
					return err
				}
				srv.CutOver(a.Runtime())
				// Statements routed on the old map just before the switch
				// still reach its pools (and get 40001 at attach): retire
				// it a little later.
				old := cur
				time.AfterFunc(2*time.Second, func() { old.Retire(a) })
				cur = a
				return nil
			})
			rw.Ready = func() { close(epochKnown) }
			srv.WatchReshard(ctx, rw)
		}()
		// Do not serve an old map file after a resharding switched the
		// cluster: wait (bounded) for the newest epoch.
		select {
		case <-epochKnown:
		case <-time.After(10 * time.Second):
			log.Warn("resharding epochs unknown (metadata database unreachable); serving the configured map")
		case <-ctx.Done():
		}
	} else {
		close(watchDone)
	}
	var jobs consoleJobs // RESHARD START/RESUME in the admin console
	srv.SetReshardHook(reshardHook(ctx, path, log, &jobs))
	defer func() { shutdown(); <-watchDone; jobs.wg.Wait() }()

	// Up before the client listener so that /healthz answers as soon as
	// clients can connect; down after the drain, so a drain can be watched.
	stopMetrics, err := serveMetrics(cfg.MetricsListen, srv, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("shardproxy listening", "addr", ln.Addr().String(), "shards", len(cfg.Shards))
	if ready != nil {
		ready(ln.Addr().String())
	}
	err = srv.Serve(ctx, ln)
	// Drain: idle clients go now, open transactions get shutdown_timeout
	// (of the map in force) to finish, then are rolled back.
	timeout := srv.Runtime().Config.ShutdownTimeout()
	log.Info("shutting down; draining clients", "timeout", timeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	mu.Lock()
	cur.Close()
	mu.Unlock()
	log.Info("shardproxy stopped")
	return err
}

func checkConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "Validate a shard map and print it resolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Print(config.Describe(cfg))
			return nil
		},
	}
}

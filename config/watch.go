package config

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Watcher reloads a shard map on SIGHUP or on request. A map that fails
// validation is logged and dropped: the old map keeps serving, because a
// typo in a reload must never take the proxy down or half-apply.
type Watcher struct {
	path     string
	logger   *slog.Logger
	onReload func(*Config)

	mu        sync.Mutex  // serializes reloads, so onReload sees maps in load order
	onFailure func(error) // see OnFailure; guarded by mu
	done      chan struct{}
}

// Watch starts a goroutine that calls Reload on every SIGHUP until ctx is
// done. onReload receives each valid new map; the caller publishes it (for
// example with an atomic.Pointer[Config]) and must not block for long.
// SIGHUP is caught from the moment Watch returns, so a SIGHUP can no longer
// terminate the process while ctx is live.
func Watch(ctx context.Context, path string, logger *slog.Logger, onReload func(*Config)) *Watcher {
	w := &Watcher{path: path, logger: logger, onReload: onReload, done: make(chan struct{})}
	// The channel and the signal registration are owned by the goroutine
	// below, which undoes the registration when it exits.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(w.done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = w.Reload() // logged by Reload
			}
		}
	}()
	return w
}

// Reload loads the file now (the admin console's RELOAD, and tests). On
// success onReload gets the new map; on failure the error, a
// *ValidationError naming file:line, is logged and returned, and onReload
// is not called.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := Load(w.path)
	if err != nil {
		w.logger.Error("config reload failed; keeping the current shard map", "path", w.path, "err", err)
		if w.onFailure != nil {
			w.onFailure(err)
		}
		return err
	}
	w.onReload(c)
	w.logger.Info("config reloaded", "path", w.path, "shards", len(c.Shards), "strategies", len(c.Strategies), "tables", len(c.Tables))
	return nil
}

// OnFailure sets f to be called with the error of every map that fails to
// load or validate on reload (SIGHUP included), e.g. to count it in metrics.
func (w *Watcher) OnFailure(f func(error)) {
	w.mu.Lock()
	w.onFailure = f
	w.mu.Unlock()
}

// Done is closed when the signal goroutine has exited (after ctx is done).
func (w *Watcher) Done() <-chan struct{} { return w.done }

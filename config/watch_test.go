package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recordHandler hands every log record to the test.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.ch <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// watchFixture starts a Watcher on a temporary file; reloaded configs and
// log records arrive on channels. Buffered generously: tests read them all.
type watchFixture struct {
	path     string
	w        *Watcher
	reloaded chan *Config
	logs     chan slog.Record
}

func newWatchFixture(t *testing.T) *watchFixture {
	t.Helper()
	f := &watchFixture{
		path:     filepath.Join(t.TempDir(), "shardproxy.yaml"),
		reloaded: make(chan *Config, 10),
		logs:     make(chan slog.Record, 10),
	}
	f.write(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	f.w = Watch(ctx, f.path, slog.New(recordHandler{f.logs}), func(c *Config) { f.reloaded <- c })
	t.Cleanup(func() {
		cancel()
		<-f.w.Done() // the goroutine must exit once ctx is done
	})
	return f
}

// write stores a valid map whose pool size identifies the version.
func (f *watchFixture) write(t *testing.T, poolSize int) {
	t.Helper()
	src := base + fmt.Sprintf("pool: {size: %d}\n", poolSize)
	if err := os.WriteFile(f.path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *watchFixture) writeInvalid(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(f.path, []byte(base+"pool: {size: -1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// next waits for a value; the deadline only turns a hang into a failure.
func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func TestWatcherReload(t *testing.T) {
	f := newWatchFixture(t)

	f.write(t, 7)
	if err := f.w.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := next(t, f.reloaded, "reload"); c.Pool.Size != 7 {
		t.Errorf("reloaded pool size %d, want 7", c.Pool.Size)
	}
	if r := next(t, f.logs, "log"); r.Level != slog.LevelInfo {
		t.Errorf("log %v %q, want info", r.Level, r.Message)
	}

	f.writeInvalid(t)
	err := f.w.Reload()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Reload() = %v, want *ValidationError", err)
	}
	wantMsg := f.path + ":5:14: pool.size: must be at least 1"
	if err.Error() != wantMsg {
		t.Errorf("Reload() = %q, want %q", err, wantMsg)
	}
	r := next(t, f.logs, "log")
	if r.Level != slog.LevelError || !strings.Contains(logText(r), wantMsg) {
		t.Errorf("log %v %q %s, want error naming %q", r.Level, r.Message, logText(r), wantMsg)
	}
	select {
	case c := <-f.reloaded:
		t.Errorf("onReload called with an invalid map (pool size %d)", c.Pool.Size)
	default:
	}
}

func TestWatcherSIGHUP(t *testing.T) {
	f := newWatchFixture(t)

	f.write(t, 9)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if c := next(t, f.reloaded, "reload after SIGHUP"); c.Pool.Size != 9 {
		t.Errorf("reloaded pool size %d, want 9", c.Pool.Size)
	}
	next(t, f.logs, "info log")

	f.writeInvalid(t)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The error log is written after the failed Load and instead of
	// onReload, so once it arrives no callback can follow for this signal.
	if r := next(t, f.logs, "error log after SIGHUP"); r.Level != slog.LevelError {
		t.Errorf("log %v %q, want error", r.Level, r.Message)
	}
	select {
	case c := <-f.reloaded:
		t.Errorf("onReload called with an invalid map (pool size %d)", c.Pool.Size)
	default:
	}
}

func logText(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(a.Key + "=" + a.Value.String() + " ")
		return true
	})
	return b.String()
}

package strategies

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shardproxy/shardproxy/config"
)

// fixedStrategy places every key on one shard, so that two proxies with
// different fallbacks would disagree unless the directory arbitrates.
type fixedStrategy struct{ shard string }

func (f fixedStrategy) Name() string     { return "fixed_" + f.shard }
func (f fixedStrategy) KeyType() KeyType { return KeyInt }
func (f fixedStrategy) Shards() []string { return []string{f.shard} }
func (f fixedStrategy) Locate(context.Context, Key, Intent) (string, error) {
	return f.shard, nil
}

// twoProxies opens two DirectoryStores on one fresh metadata database and
// returns a directory strategy (table "dir") for each, with the given
// fallbacks.
func twoProxies(t *testing.T, db string, fallbackA, fallbackB Strategy) (a, b *directoryStrategy, dsn string) {
	t.Helper()
	_, dsn = testDatabase(t, db)
	open := func(fallback Strategy) *directoryStrategy {
		d, err := OpenDirectory(t.Context(), dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		if err := d.ensureTable(t.Context(), "dir"); err != nil {
			t.Fatal(err)
		}
		return &directoryStrategy{name: "by_tenant", keyType: KeyInt, table: "dir", fallback: fallback, shards: []string{"s0", "s1"}, dir: d}
	}
	return open(fallbackA), open(fallbackB), dsn
}

func intKey(v int64) Key { return Key{Type: KeyInt, Int: v} }

func mustLocate(t *testing.T, s Strategy, k Key, intent Intent) string {
	t.Helper()
	shard, err := s.Locate(t.Context(), k, intent)
	if err != nil {
		t.Fatalf("%s.Locate(%v): %v", s.Name(), k, err)
	}
	return shard
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isCached(s *directoryStrategy, k Key) bool {
	_, _, ok := s.dir.cached(dirKey{s.table, k.String()})
	return ok
}

func TestDirectoryPlacementIsShared(t *testing.T) {
	a, b, _ := twoProxies(t, "dir_shared", fixedStrategy{"s0"}, fixedStrategy{"s1"})
	if _, err := b.Locate(t.Context(), intKey(1), Read); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("read of an unknown key: %v, want ErrNoOwner", err)
	}
	if got := mustLocate(t, a, intKey(1), Write); got != "s0" {
		t.Fatalf("first write placed key on %s, want fallback's s0", got)
	}
	// B's own fallback says s1, but the directory already knows.
	for _, intent := range []Intent{Read, Write} {
		if got := mustLocate(t, b, intKey(1), intent); got != "s0" {
			t.Fatalf("other proxy (intent %d) sees %s, want s0", intent, got)
		}
	}
	if !isCached(b, intKey(1)) {
		t.Fatal("other proxy did not cache the answer")
	}
}

func TestDirectoryAssignInvalidatesOtherProxy(t *testing.T) {
	a, b, dsn := twoProxies(t, "dir_assign", fixedStrategy{"s0"}, fixedStrategy{"s0"})
	k := intKey(42)
	mustLocate(t, a, k, Write)
	if got := mustLocate(t, b, k, Read); got != "s0" || !isCached(b, k) {
		t.Fatalf("B: %s, cached %v; want s0 cached", got, isCached(b, k))
	}
	if err := a.dir.Assign(t.Context(), "dir", k, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := mustLocate(t, a, k, Read); got != "s1" {
		t.Fatalf("A after its own Assign: %s, want s1", got)
	}
	eventually(t, "B to see the move to s1", func() bool { return mustLocate(t, b, k, Read) == "s1" })

	// Manual edits reach the caches too (the trigger, not Assign, notifies).
	if !isCached(b, k) {
		t.Fatal("B did not cache the new answer")
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "UPDATE dir SET shard = 's0' WHERE key = '42'"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to see the manual edit", func() bool { return mustLocate(t, b, k, Read) == "s0" })
	if _, err := conn.Exec(t.Context(), "DELETE FROM dir WHERE key = '42'"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to forget the deleted key", func() bool {
		_, err := b.Locate(t.Context(), k, Read)
		return errors.Is(err, ErrNoOwner)
	})
	// TRUNCATE forgets the whole table.
	mustLocate(t, a, intKey(7), Write)
	mustLocate(t, b, intKey(7), Read)
	if _, err := conn.Exec(t.Context(), "TRUNCATE dir"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to forget the truncated table", func() bool {
		_, err := b.Locate(t.Context(), intKey(7), Read)
		return errors.Is(err, ErrNoOwner)
	})
}

func TestDirectoryConcurrentPlacementAgrees(t *testing.T) {
	a, b, _ := twoProxies(t, "dir_race", fixedStrategy{"s0"}, fixedStrategy{"s1"})
	const keys = 200
	var got [2][keys]string
	var wg sync.WaitGroup
	errs := make(chan error, 2*keys)
	for p, s := range []*directoryStrategy{a, b} {
		wg.Go(func() {
			for i := range keys {
				shard, err := s.Locate(context.Background(), intKey(int64(i)), Write)
				if err != nil {
					errs <- err
				}
				got[p][i] = shard
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wins := map[string]int{}
	for i := range keys {
		if got[0][i] != got[1][i] {
			t.Fatalf("key %d: proxy A placed it on %s, proxy B on %s", i, got[0][i], got[1][i])
		}
		if stored := mustLocate(t, a, intKey(int64(i)), Read); stored != got[0][i] {
			t.Fatalf("key %d: both said %s, directory holds %s", i, got[0][i], stored)
		}
		wins[got[0][i]]++
	}
	t.Logf("placements: %v", wins)
}

func TestDirectoryListenerReconnects(t *testing.T) {
	a, b, dsn := twoProxies(t, "dir_reconnect", fixedStrategy{"s0"}, fixedStrategy{"s0"})
	k := intKey(5)
	mustLocate(t, a, k, Write)
	mustLocate(t, b, k, Read)
	if !isCached(b, k) {
		t.Fatal("B did not cache")
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Drop every LISTEN connection of both proxies.
	var terminated int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+notifyChannel+`'`).Scan(&terminated); err != nil {
		t.Fatal(err)
	}
	if terminated != 2 {
		t.Fatalf("terminated %d LISTEN connections, want 2", terminated)
	}
	// While the listener is down the cache must not answer; once it is
	// back, invalidation works again.
	if err := a.dir.Assign(t.Context(), "dir", k, "s1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to see the move made while its listener was down", func() bool { return mustLocate(t, b, k, Read) == "s1" })
	eventually(t, "B's listener to reconnect and cache again", func() bool {
		mustLocate(t, b, k, Read)
		return isCached(b, k)
	})
	if err := a.dir.Assign(t.Context(), "dir", k, "s0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to see the move after reconnecting", func() bool { return mustLocate(t, b, k, Read) == "s0" })
}

func TestDirectoryCacheIsBounded(t *testing.T) {
	a, _, _ := twoProxies(t, "dir_bounded", fixedStrategy{"s0"}, fixedStrategy{"s0"})
	a.dir.maxEntries = 10
	for i := range 100 {
		mustLocate(t, a, intKey(int64(i)), Write)
		mustLocate(t, a, intKey(int64(i)), Read)
	}
	a.dir.mu.Lock()
	n := len(a.dir.cache)
	a.dir.mu.Unlock()
	if n > 10 {
		t.Fatalf("cache holds %d entries, bound is 10", n)
	}
}

func TestBuildDirectory(t *testing.T) {
	_, dsn := testDatabase(t, "dir_build")
	d, err := OpenDirectory(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := testConfig()
	cfg.Strategies = append(cfg.Strategies, config.Strategy{Name: "by_tenant", Type: config.StrategyDirectory,
		KeyType: config.KeyInt, Table: "tenant_directory", Fallback: "by_customer"})
	built, err := Build(t.Context(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	s := built["by_tenant"]
	if fmt.Sprint(s.Shards()) != "[s0 s1 s2]" {
		t.Fatalf("directory shards %v, want every shard", s.Shards())
	}
	want := mustLocate(t, built["by_customer"], intKey(77), Write)
	if got := mustLocate(t, s, intKey(77), Write); got != want {
		t.Fatalf("new key placed on %s, fallback says %s", got, want)
	}
	if err := d.Assign(t.Context(), "tenant_directory", intKey(77), "s2"); err != nil {
		t.Fatal(err)
	}
	if got := mustLocate(t, s, intKey(77), Read); got != "s2" {
		t.Fatalf("after Assign: %s, want s2", got)
	}
	for _, bad := range []struct{ table, fallback string }{{"tenant_directory", "nope"}, {"bad:name", "by_customer"}} {
		cfg.Strategies[len(cfg.Strategies)-1].Table = bad.table
		cfg.Strategies[len(cfg.Strategies)-1].Fallback = bad.fallback
		if _, err := Build(t.Context(), cfg, d); err == nil {
			t.Errorf("Build with table %q fallback %q succeeded", bad.table, bad.fallback)
		}
	}
}

// TestDirectoryForget: Forget drops every cached answer, so a change the
// proxy was not notified of (here made with triggers off, as a cutover's
// notification may arrive after the new epoch) is read afresh.
func TestDirectoryForget(t *testing.T) {
	a, _, dsn := twoProxies(t, "dir_forget", fixedStrategy{"s0"}, fixedStrategy{"s0"})
	k := intKey(7)
	if got := mustLocate(t, a, k, Write); got != "s0" || !isCached(a, k) {
		t.Fatalf("placed on %s, cached %v; want s0 cached", got, isCached(a, k))
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	// session_replication_role = replica: the notify trigger does not fire.
	if _, err := conn.Exec(t.Context(), "SET session_replication_role = replica; UPDATE dir SET shard = 's1' WHERE key = '7'"); err != nil {
		t.Fatal(err)
	}
	if got := mustLocate(t, a, k, Read); got != "s0" {
		t.Fatalf("before Forget: %s, want the cached s0 (the test relies on no notification)", got)
	}
	a.dir.Forget()
	if isCached(a, k) {
		t.Fatal("still cached after Forget")
	}
	if got := mustLocate(t, a, k, Read); got != "s1" {
		t.Fatalf("after Forget: %s, want s1", got)
	}
}

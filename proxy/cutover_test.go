package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/resharding"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/strategies"
)

// TestPipelineRoutedBeforeCutover: a statement of a pipeline routed on
// the map before a cutover fails with 40001, also when the pipeline's
// work on another shard ended (it was synced, its backend given back)
// between the routing and the moment the statement takes its shards.
// The session used to forget the map it routed with there (its runtime
// is let go with the backend), so the check after the PAUSE gate found
// nothing to compare and the statement ran on its old route: a write to
// a key's old owner, a reference-table write that leaves out a new
// shard, a read that misses one.
func TestPipelineRoutedBeforeCutover(t *testing.T) {
	f, app, keys := productsFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, sql string
		check     string // on s1, directly: 0 when the statement did not run
	}{
		{"a write on another shard", fmt.Sprintf("UPDATE customers SET name = 'stale' WHERE customer_id = %d", keys["s1"]),
			"SELECT count(*) FROM customers WHERE name = 'stale'"},
		{"a reference-table write", "UPDATE products SET price = 9 WHERE sku = 1",
			"SELECT count(*) FROM products WHERE price = 9"},
		{"a read over every shard", "SELECT count(*) FROM customers", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := app.PgConn().StartPipeline(ctx)
			defer p.Close()
			// A read on s0, delivered: the session holds s0 in this
			// batch and routes the next statement on the map it has.
			p.SendQueryParams("SELECT name FROM customers WHERE customer_id = $1", [][]byte{[]byte(fmt.Sprint(keys["s0"]))}, nil, nil, nil)
			p.SendFlushRequest()
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			r, err := p.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.(*pgconn.ResultReader).Close(); err != nil {
				t.Fatal(err)
			}
			rt := *f.Server.Runtime() // same pools: only the map object is new
			f.Server.CutOver(&rt)
			p.SendQueryParams(tc.sql, nil, nil, nil, nil)
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			r, err = p.GetResults()
			if err == nil {
				_, err = r.(*pgconn.ResultReader).Close()
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
				t.Errorf("%s, routed before the cutover: %v, want 40001", tc.sql, err)
			}
			if _, err := p.GetResults(); err != nil { // the Sync
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.check != "" {
				var n int
				if err := f.Direct(t, "s1").QueryRow(ctx, tc.check).Scan(&n); err != nil || n != 0 {
					t.Errorf("s1: the statement ran (%d rows, %v)", n, err)
				}
			}
			// The retry routes on the new map.
			if _, err := app.Exec(ctx, tc.sql); err != nil {
				t.Fatalf("the retry: %v", err)
			}
		})
	}
}

// forwarder relays TCP connections to target until down, and again after up.
type forwarder struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func startForwarder(t *testing.T, target string) *forwarder {
	fw := &forwarder{addr: "127.0.0.1:0", target: target}
	fw.up(t)
	fw.addr = fw.ln.Addr().String()
	t.Cleanup(fw.down)
	return fw
}

func (fw *forwarder) up(t *testing.T) {
	ln, err := net.Listen("tcp", fw.addr)
	if err != nil {
		t.Fatal(err)
	}
	fw.mu.Lock()
	fw.ln = ln
	fw.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", fw.target)
			if err != nil {
				c.Close()
				continue
			}
			fw.mu.Lock()
			fw.conns = append(fw.conns, c, u)
			fw.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// down refuses new connections and breaks the relayed ones.
func (fw *forwarder) down() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.ln != nil {
		fw.ln.Close()
		fw.ln = nil
	}
	for _, c := range fw.conns {
		c.Close()
	}
	fw.conns = nil
}

// heldShards is what SHOW RESHARD says the proxy holds for a cutover.
func heldShards(t *testing.T, adm *pgx.Conn) string {
	t.Helper()
	return rowWhere(adminRows(t, adm, "SHOW RESHARD"), "item", "held shards")["value"]
}

// TestPauseOutlivesLostMetadata: a proxy paused for a cutover that loses
// its metadata connection keeps the shards held past the pause's bound
// until it can read the newest epoch again: the job may have switched
// meanwhile, and resuming on the map it has would send writes to the old
// owners of moved keys (the job deletes the moved rows there and no
// stream carries anything written after the switch). Once reconnected it
// adopts the newest epoch and only then resumes. The watcher used to end
// the pause on time on the old map while disconnected.
func TestPauseOutlivesLostMetadata(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	adm := connectAdmin(t, f)
	fw := startForwarder(t, net.JoinHostPort(f.Meta.Host(), fmt.Sprint(f.Meta.Port())))
	u, err := url.Parse(f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = fw.addr
	meta, err := f.Meta.Connect(ctx, f.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(ctx)
	mapText, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var applied []string // held shards at each Apply
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Server.WatchReshard(wctx, proxy.ReshardWatch{
			MetaDSN: u.String(), ID: "p1", Channel: resharding.Channel, Prepare: resharding.EnsureSchema,
			PauseMargin: 50 * time.Millisecond,
			Apply: func(_ context.Context, cfg *config.Config) error {
				mu.Lock()
				defer mu.Unlock()
				applied = append(applied, heldShards(t, connectAdmin(t, f)))
				rt := *f.Server.Runtime()
				f.Server.CutOver(&rt)
				return nil
			},
		})
	}()
	defer func() { stop(); <-done }()
	waitFor(t, func() bool {
		var n int
		return meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_proxy WHERE id = 'p1'").Scan(&n) == nil && n == 1
	})
	if _, err := meta.Exec(ctx, "SELECT pg_notify($1, 'pause 1 1 100 s1')", resharding.Channel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		var n int
		return meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_reshard_ack WHERE job_id = 1 AND step = 'pause' AND proxy = 'p1'").Scan(&n) == nil && n == 1
	})
	// The proxy loses the metadata database; the job switches.
	fw.down()
	if _, err := meta.Exec(ctx, "INSERT INTO shardproxy_epoch (map, job_id) VALUES ($1, 1)", string(mapText)); err != nil {
		t.Fatal(err)
	}
	// Well past the bound and the margin, through several reconnects.
	time.Sleep(2500 * time.Millisecond)
	if got := heldShards(t, adm); got != "s1" {
		t.Fatalf("held shards while the metadata database is unreachable, past the bound: %q, want s1", got)
	}
	fw.up(t)
	waitFor(t, func() bool { return heldShards(t, adm) == "" })
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 1 || applied[0] != "s1" {
		t.Fatalf("epochs applied, with the shards held at each: %q, want one, while s1 was held", applied)
	}
}

// TestReloadRightAfterCutover: once a cutover installed a map, a reload
// of a file that still holds the previous map is refused, from the
// moment of the switch. The serve command serializes the switch with a
// reload's check and swap, but the proxy recorded the epoch's map for the
// check only after the switch returned: a SIGHUP in between put the old
// map back (with no 40001 for anything, a reload is no cutover), and
// writes went to old owners until the next reload.
func TestReloadRightAfterCutover(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	text, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(text), "shards: [s0, s1]", "shards: [s1, s0]", 1)
	if moved == string(text) {
		t.Fatal("the fixture's strategy is not as expected")
	}
	next, err := config.Parse([]byte(moved), "epoch")
	if err != nil {
		t.Fatal(err)
	}
	strats, err := strategies.Build(ctx, next, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(next, strats)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := proxy.NewRuntime(next, r, f.Server.Runtime().Pools)
	if err != nil {
		t.Fatal(err)
	}
	f.Server.CutOver(rt)
	if err := f.Server.CheckAgainstEpoch(f.Config); err == nil {
		t.Fatal("a reload of the map the cutover replaced was accepted")
	}
	if err := f.Server.CheckAgainstEpoch(next); err != nil {
		t.Fatalf("a reload of the map the cutover installed: %v", err)
	}
}

// stepReader yields its chunks one Read at a time, each after a receive
// from next (closed: go on without waiting).
type stepReader struct {
	chunks []string
	next   chan struct{}
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	<-r.next
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

// TestCopyAcrossCutoverGivesBackToItsPools: a COPY FROM STDIN that starts
// a shard's leg after a cutover fails with 40001 (it splits rows by the
// old map), and the legs it had started go back to the pools they came
// from. A cutover to a new shard list replaces the pools, and the COPY
// used to give its legs to the new runtime's pools, whose in-use count
// went below zero while the old ones' never came down.
func TestCopyAcrossCutoverGivesBackToItsPools(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	app := f.Connect(t)
	keys := keysPerShard(t, f, app)
	mustExec(t, app, "CREATE TABLE orders (customer_id bigint, note text)")
	old := f.Server.Runtime()
	r := &stepReader{chunks: []string{fmt.Sprintf("%d\tfirst\n", keys["s0"]), fmt.Sprintf("%d\tsecond\n", keys["s1"])},
		next: make(chan struct{}, 2)}
	r.next <- struct{}{}
	done := make(chan error, 1)
	go func() {
		_, err := app.PgConn().CopyFrom(ctx, r, "COPY orders FROM STDIN")
		done <- err
	}()
	// The first row started s0's leg.
	s0 := f.Direct(t, "s0")
	waitFor(t, func() bool {
		var n int
		return s0.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY orders%'").Scan(&n) == nil && n == 1
	})
	asm, err := proxy.Assemble(ctx, f.Config, nil, slog.New(slog.DiscardHandler)) // new pools
	if err != nil {
		t.Fatal(err)
	}
	defer asm.Close()
	f.Server.CutOver(asm.Runtime())
	r.next <- struct{}{}
	err = <-done
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("COPY whose s1 leg starts after the cutover: %v, want 40001", err)
	}
	for name, cl := range map[string]*pool.Cluster{"old": old.Pools, "new": asm.Runtime().Pools} {
		for sh, st := range cl.Stats() {
			if st.InUse != 0 {
				t.Errorf("%s pool of %s: %d in use after the COPY, want 0", name, sh, st.InUse)
			}
		}
	}
	var n int
	if err := s0.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 0 {
		t.Errorf("s0 after the failed COPY: %d rows (%v)", n, err)
	}
}

// TestTransactionJoinsShardPausedWithItsOwn: a pause of several shards at
// once (PAUSE of every shard; a cutover pauses all its sources together)
// waits for a transaction holding one of them, so that transaction's next
// statement must not wait at the gate for another one: each would wait
// for the other until the pause's bound, and a cutover would give up its
// attempt. (A write across two source shards, a key on each or a
// reference table, in a two-phase transaction that began before the
// pause.) Once the pause is acknowledged no session holds any of them,
// so nothing reaches them after it. The session used to wait at the gate
// for every shard it did not hold.
func TestTransactionJoinsShardPausedWithItsOwn(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: defaultBody + "two_phase_commit: true\n"})
	ctx := context.Background()
	app := f.Connect(t)
	keys := keysPerShard(t, f, app)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'tx' WHERE customer_id = $1", keys["s0"]); err != nil {
		t.Fatal(err)
	}
	paused := pauseAside(t, f, connectAdmin(t, f), "")
	// PAUSE would time out after 30s.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := tx.Exec(sctx, "UPDATE customers SET name = 'tx' WHERE customer_id = $1", keys["s1"]); err != nil {
		t.Fatalf("the transaction's write on s1, paused with s0, which it holds: %v", err)
	}
	pausedOnceEnded(t, paused, "a transaction held s0 and s1", tx.Commit)
	// Acknowledged: a new transaction waits.
	tctx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := f.Connect(t).Exec(tctx, "UPDATE customers SET name = 'late' WHERE customer_id = $1", keys["s1"]); err == nil {
		t.Fatal("a write reached s1 after PAUSE returned")
	}
}

// TestReloadDuringCutoverPause: while the proxy holds shards for a
// cutover, a reload may not change where keys live. Loaded before the
// switch (a config management run that already pushes the job's target
// map), the proxy would write moved keys on their new owners while the
// streams still apply the sources' last changes there, and stay on that
// map if the attempt is given up while the others resume the old one;
// any other placement is as wrong. The proxy used to accept it: nothing
// was switched yet, so there was no epoch map to hold it to.
func TestReloadDuringCutoverPause(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	meta, err := f.Meta.Connect(ctx, f.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(ctx)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Server.WatchReshard(wctx, proxy.ReshardWatch{
			MetaDSN: f.Meta.DSN(f.DB), ID: "p1", Channel: resharding.Channel, Prepare: resharding.EnsureSchema,
			PauseMargin: time.Second,
			Apply:       func(context.Context, *config.Config) error { return errors.New("no epoch expected") },
		})
	}()
	defer func() { stop(); <-done }()
	acked := func(step string) func() bool {
		return func() bool {
			var n int
			return meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_reshard_ack WHERE job_id = 1 AND step = $1 AND proxy = 'p1'", step).Scan(&n) == nil && n == 1
		}
	}
	waitFor(t, func() bool {
		var n int
		return meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_proxy WHERE id = 'p1'").Scan(&n) == nil && n == 1
	})
	text, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	moved, err := config.Parse([]byte(strings.Replace(string(text), "shards: [s0, s1]", "shards: [s1, s0]", 1)), "moved")
	if err != nil {
		t.Fatal(err)
	}
	same, err := config.Parse(append(text, "\nplan_cache_size: 77\n"...), "same")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Exec(ctx, "SELECT pg_notify($1, 'pause 1 1 60000 s1')", resharding.Channel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, acked("pause"))
	if err := f.Server.CheckAgainstEpoch(moved); err == nil {
		t.Error("a reload that moves keys was accepted while s1 was held for a cutover")
	}
	if err := f.Server.CheckAgainstEpoch(same); err != nil {
		t.Errorf("a reload that keeps the placement, during the pause: %v", err)
	}
	if _, err := meta.Exec(ctx, "SELECT pg_notify($1, 'resume 1 1')", resharding.Channel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, acked("resume"))
	if err := f.Server.CheckAgainstEpoch(moved); err != nil {
		t.Errorf("a reload that moves keys with no cutover under way (the operator's call): %v", err)
	}
}

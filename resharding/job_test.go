package resharding_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/resharding"
)

// testProxy is an in-process proxy that follows cutovers.
type testProxy struct {
	addr string
}

func startProxy(t testing.TB, c *resharding.Cluster, cfg *config.Config, id string) *testProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testLog{t, id}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	asm, err := proxy.Assemble(ctx, cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewServer(asm.Runtime(), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	cur := asm
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	go func() {
		defer wg.Done()
		srv.WatchReshard(ctx, proxy.ReshardWatch{MetaDSN: cfg.Metadata.DSN, ID: id, Log: log, Channel: resharding.Channel, Prepare: resharding.EnsureSchema, PauseMargin: resharding.PauseMargin,
			Apply: func(ctx context.Context, next *config.Config) error {
				mu.Lock()
				defer mu.Unlock()
				a, err := proxy.Assemble(ctx, next, cur, log)
				if err != nil {
					return err
				}
				srv.CutOver(a.Runtime())
				// Statements routed on the old map just before the switch
				// still reach its pools (and get 40001 at attach); retire
				// it a little later.
				old := cur
				cur = a
				wg.Add(1)
				go func() {
					defer wg.Done()
					select {
					case <-ctx.Done():
					case <-time.After(2 * time.Second):
					}
					old.Retire(a)
				}()
				return nil
			}})
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		srv.Shutdown(sctx)
		mu.Lock()
		cur.Close()
		mu.Unlock()
	})
	// Registered in the metadata database before a job may start.
	meta := c.Conn(t, "meta")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_proxy WHERE id = $1", id).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy did not register")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &testProxy{addr: ln.Addr().String()}
}

type testLog struct {
	t  testing.TB
	id string
}

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(w.id + ": " + string(p[:len(p)-1]))
	return len(p), nil
}

// writer inserts, updates and deletes orders of its own customers through
// one proxy and remembers what was acknowledged.
type writer struct {
	conn     *pgx.Conn
	custs    []int64
	next     int64 // next order_id
	rows     map[[2]int64]string
	ok, fail int
	// maxPause is the longest a statement took (the cutover pause as the
	// writer saw it, logged only: no timing assertions).
	maxPause time.Duration
	history  map[[2]int64][]string // per key: what was sent and how it ended
	// interval, if set, paces the writer (one statement per interval);
	// samples then records every statement's start and duration.
	interval time.Duration
	due      time.Time // when the next paced statement is due
	samples  []sample
}

// refWriter inserts, updates and deletes rows of the reference table
// products through a proxy and remembers what was acknowledged.
type refWriter struct {
	conn     *pgx.Conn
	rows     map[int64]string // sku -> price
	next     int64
	ok, fail int
	pace     time.Duration // between statements; default 2ms
}

func (w *refWriter) run(stop context.Context, t testing.TB) {
	rng := rand.New(rand.NewPCG(uint64(w.next), 11))
	for stop.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		var sku int64
		price := fmt.Sprintf("%d.50", rng.IntN(1000))
		switch op := rng.IntN(3); {
		case op == 0 || len(w.rows) == 0:
			w.next++
			sku = w.next
			_, err = w.conn.Exec(ctx, "INSERT INTO products (sku, name, price) VALUES ($1, 'w', $2)", sku, price)
			if err == nil {
				w.rows[sku] = price
			}
		case op == 1:
			sku = 1 + rng.Int64N(w.next)
			var tag pgconn.CommandTag
			tag, err = w.conn.Exec(ctx, "UPDATE products SET price = $2 WHERE sku = $1", sku, price)
			if _, ok := w.rows[sku]; err == nil && ok {
				w.rows[sku] = price
				if tag.RowsAffected() != 1 {
					t.Errorf("refWriter: update of sku %d changed %d rows", sku, tag.RowsAffected())
				}
			}
		default:
			sku = 1 + rng.Int64N(w.next)
			_, err = w.conn.Exec(ctx, "DELETE FROM products WHERE sku = $1", sku)
			if err == nil {
				delete(w.rows, sku)
			}
		}
		cancel()
		pace := w.pace
		if pace == 0 {
			pace = 2 * time.Millisecond // leave the CPU to the order writers
		}
		time.Sleep(pace)
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "40001" {
				t.Errorf("refWriter: %v", err)
				return
			}
			w.fail++
			continue
		}
		w.ok++
	}
}

type sample struct {
	start time.Time
	d     time.Duration
}

func (w *writer) note(k [2]int64, op string, start time.Time, err error) {
	if w.history == nil {
		w.history = map[[2]int64][]string{}
	}
	w.history[k] = append(w.history[k], fmt.Sprintf("%s %s..%s err=%v", op, start.Format("15:04:05.000"), time.Now().Format("15:04:05.000"), err))
}

// run writes until stop ends; each statement runs to its end (its own
// context), so that every outcome is known.
func (w *writer) run(stop context.Context, t testing.TB) {
	rng := rand.New(rand.NewPCG(uint64(w.next), 7))
	for stop.Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cust := w.custs[rng.IntN(len(w.custs))]
		var keys [][2]int64
		for k := range w.rows {
			if k[0] == cust {
				keys = append(keys, k)
			}
		}
		var err error
		start := time.Now()
		switch op := rng.IntN(3); {
		case op == 0 || len(keys) == 0:
			w.next++
			k := [2]int64{cust, w.next}
			amt := fmt.Sprintf("%d.00", rng.IntN(1000))
			_, err = w.conn.Exec(ctx, "INSERT INTO orders (customer_id, order_id, amount, note) VALUES ($1, $2, $3, 'w')", k[0], k[1], amt)
			if err == nil {
				w.rows[k] = amt
			}
			w.note(k, "insert", start, err)
		case op == 1:
			k := keys[rng.IntN(len(keys))]
			amt := fmt.Sprintf("%d.00", rng.IntN(1000))
			_, err = w.conn.Exec(ctx, "UPDATE orders SET amount = $3 WHERE customer_id = $1 AND order_id = $2", k[0], k[1], amt)
			if err == nil {
				w.rows[k] = amt
			}
			w.note(k, "update", start, err)
		default:
			k := keys[rng.IntN(len(keys))]
			_, err = w.conn.Exec(ctx, "DELETE FROM orders WHERE customer_id = $1 AND order_id = $2", k[0], k[1])
			if err == nil {
				delete(w.rows, k)
			}
			w.note(k, "delete", start, err)
		}
		cancel()
		d := time.Since(start)
		if d > w.maxPause {
			w.maxPause = d
		}
		if w.interval > 0 {
			// Paced to a schedule, not a gap: a writer that fell behind
			// (a slow statement) catches up, so the rate holds on average.
			w.samples = append(w.samples, sample{start, d})
			if w.due.IsZero() {
				w.due = start
			}
			w.due = w.due.Add(w.interval)
			time.Sleep(time.Until(w.due))
		}
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "40001" {
				t.Errorf("writer: %v", err)
				return
			}
			w.fail++
			continue
		}
		w.ok++
	}
}

// TestMain's child mode runs a job until a hook kills it (see TestJobKilled).
func init() {
	if os.Getenv("RESHARD_CHILD_META") == "" {
		return
	}
	id, _ := strconv.ParseInt(os.Getenv("RESHARD_CHILD_JOB"), 10, 64)
	at := os.Getenv("RESHARD_CHILD_KILL_AT")
	err := resharding.Run(context.Background(), os.Getenv("RESHARD_CHILD_META"), id, resharding.WithHook(resharding.Options{BatchRows: 100}, func(p string) error {
		if p == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		return nil
	}))
	fmt.Fprintln(os.Stderr, "child job ended:", err)
	os.Exit(3)
}

// runScenario moves the example from 2 to 3 shards (hash, and a range
// split) while two writers write through two proxies; killAt names a hook
// point where a child process running the job is SIGKILLed before the job
// is resumed here.
// scenario is the example cluster with two proxies on the current map and
// a writer on each, running until stop.
type scenario struct {
	c                 *resharding.Cluster
	cur, next         *config.Config
	curText, nextText string
	moves             []resharding.DirectoryMove
	writers           []*writer
	ref               *refWriter
	stop              func()
}

// pickFunc runs once the example data is loaded, before the writers
// start: it returns the directory moves of the job and the customers the
// writers write (nil: all 300).
type pickFunc func(t testing.TB, c *resharding.Cluster) (moves []resharding.DirectoryMove, hot []int64)

// scenarioOptions vary the scenario; the zero value is two writers, one
// per proxy, on every customer, and no directory move.
type scenarioOptions struct {
	pick    pickFunc
	writers int // order writers, alternating between the two proxies; default 2
}

func startScenario(t testing.TB, curFile, nextFile string, o scenarioOptions) *scenario {
	pick := o.pick
	nw := max(o.writers, 2)
	c := resharding.NewCluster(t)
	cur, curText := c.LoadMap(t, curFile)
	next, nextText := c.LoadMap(t, nextFile)
	resharding.SeedExample(t, c, cur)
	ctx := context.Background()
	var moves []resharding.DirectoryMove
	var hot []int64
	if pick != nil {
		moves, hot = pick(t, c)
	}
	isHot := func(cust int64) bool { return hot == nil || slices.Contains(hot, cust) }

	p1 := startProxy(t, c, cur, "proxy-a")
	p2 := startProxy(t, c, cur, "proxy-b")
	var writers []*writer
	for i := range nw {
		p := []*testProxy{p1, p2}[i%2]
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", p.addr, c.DB))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		// Writer i owns the customers congruent to i+1 modulo nw, and
		// order ids from 1e6*(i+1).
		w := &writer{conn: conn, next: int64(1_000_000 * (i + 1)), rows: map[[2]int64]string{}}
		for cust := int64(1 + i); cust <= 300; cust += int64(nw) {
			if isHot(cust) {
				w.custs = append(w.custs, cust)
			}
			for j := int64(1); j <= 3; j++ {
				w.rows[[2]int64{cust, cust*10 + j}] = fmt.Sprintf("%d.%02d", cust*j, j)
			}
		}
		writers = append(writers, w)
	}
	rconn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", p1.addr, c.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rconn.Close(context.Background()) })
	ref := &refWriter{conn: rconn, next: 50, rows: map[int64]string{}}
	for i := int64(1); i <= 50; i++ {
		ref.rows[i] = fmt.Sprintf("%.2f", float64(i)*1.5)
	}
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx, t) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); ref.run(wctx, t) }()
	sc := &scenario{c: c, cur: cur, next: next, curText: curText, nextText: nextText, moves: moves, writers: writers, ref: ref}
	var once sync.Once
	sc.stop = func() { once.Do(func() { stopWriters(); wg.Wait() }) }
	t.Cleanup(sc.stop)
	return sc

}

// check asserts that every order the writers got acknowledged is present
// exactly once, on the shard cfg names, with its last value, that nothing
// else is, and that the unwritten tables kept their rows, each on its
// owner under cfg.
func (sc *scenario) check(t testing.TB, cfg *config.Config) {
	t.Helper()
	c, writers, next, ctx := sc.c, sc.writers, cfg, context.Background()
	// Every acknowledged order exactly once, on its new owner, with its last value.
	want := map[[2]int64]string{}
	for _, w := range writers {
		for k, v := range w.rows {
			want[k] = v
		}
	}
	strats := resharding.BuildStrats(t, next)
	got := map[[2]int64]string{}
	for _, s := range next.Shards {
		rows, err := c.Conn(t, s.Name).Query(ctx, "SELECT customer_id, order_id, amount::text FROM orders")
		if err != nil {
			t.Fatal(err)
		}
		var cust, order int64
		var amt string
		_, err = pgx.ForEachRow(rows, []any{&cust, &order, &amt}, func() error {
			k := [2]int64{cust, order}
			if _, dup := got[k]; dup {
				t.Errorf("order %v present twice", k)
			}
			got[k] = amt
			if owner, err := resharding.Owner(ctx, strats, next, "orders", strconv.FormatInt(cust, 10)); owner != s.Name {
				t.Errorf("order %v on %s, the new map places it on %s (%v)", k, s.Name, owner, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("order %v: got %q, want %q: %q", k, got[k], v, historyOf(writers, k))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("order %v present but not acknowledged (or deleted): %q", k, historyOf(writers, k))
		}
	}
	// The reference table: every acknowledged product, with its last
	// price, on every shard of the map, and nothing else.
	for _, s := range next.Shards {
		rows, err := c.Conn(t, s.Name).Query(ctx, "SELECT sku, price::text FROM products")
		if err != nil {
			t.Fatal(err)
		}
		got := map[int64]string{}
		var sku int64
		var price string
		if _, err := pgx.ForEachRow(rows, []any{&sku, &price}, func() error { got[sku] = price; return nil }); err != nil {
			t.Fatal(err)
		}
		for k, v := range sc.ref.rows {
			if got[k] != v {
				t.Errorf("shard %s: product %d: got %q, want %q", s.Name, k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := sc.ref.rows[k]; !ok {
				t.Errorf("shard %s: product %d present but not acknowledged (or deleted)", s.Name, k)
			}
		}
	}
	// The tables nobody wrote: same rows, each on its new owner.
	for _, tc := range []struct {
		table, key string
		rows       int
	}{{"customers", "customer_id", 300}, {"events", "id", 1000}} {
		n := 0
		for _, s := range next.Shards {
			var exists bool
			if err := c.Conn(t, s.Name).QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", tc.table).Scan(&exists); err != nil {
				t.Fatal(err)
			}
			if !exists {
				continue // a shard the table's strategy does not use (rows there would be counted)
			}
			rows, err := c.Conn(t, s.Name).Query(ctx, fmt.Sprintf("SELECT %s::text FROM %s", tc.key, tc.table))
			if err != nil {
				t.Fatal(err)
			}
			var key string
			pgx.ForEachRow(rows, []any{&key}, func() error {
				n++
				if owner, err := resharding.Owner(ctx, strats, next, tc.table, key); owner != s.Name {
					t.Errorf("%s %s on %s, want %s (%v)", tc.table, key, s.Name, owner, err)
				}
				return nil
			})
		}
		if n != tc.rows {
			t.Errorf("%s: %d rows, want %d", tc.table, n, tc.rows)
		}
	}
}

// historyOf is what the writers did to order k, for failure messages.
func historyOf(writers []*writer, k [2]int64) []string {
	var h []string
	for _, w := range writers {
		h = append(h, w.history[k]...)
	}
	return h
}

func runScenario(t *testing.T, curFile, nextFile, killAt string, pick pickFunc) {
	sc := startScenario(t, curFile, nextFile, scenarioOptions{pick: pick})
	c, curText, nextText, cur, ctx := sc.c, sc.curText, sc.nextText, sc.cur, context.Background()
	id, _, err := resharding.Create(ctx, curText, nextText, sc.moves)
	if err != nil {
		t.Fatal(err)
	}
	metaDSN := cur.Metadata.DSN
	if killAt != "" {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RESHARD_CHILD_META="+metaDSN, "RESHARD_CHILD_JOB="+strconv.FormatInt(id, 10), "RESHARD_CHILD_KILL_AT="+killAt)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child job: want SIGKILL at %s, got %v\n%s", killAt, err, out)
		}
		st, err := resharding.LoadStatus(ctx, c.Conn(t, "meta"), id)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("killed at %s in phase %s (%d rows copied)", killAt, st.Phase, st.RowsCopied())
	}
	time.Sleep(200 * time.Millisecond) // writers run under the old map for a while
	log := slog.New(slog.NewTextHandler(testLog{t, "job"}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := resharding.Run(ctx, metaDSN, id, resharding.Options{BatchRows: 100, Logger: log}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // and under the new one
	sc.stop()
	for i, w := range sc.writers {
		t.Logf("writer %d: %d ok, %d failed with 40001, longest statement %s", i, w.ok, w.fail, w.maxPause)
		if w.ok == 0 {
			t.Errorf("writer %d wrote nothing", i)
		}
	}
	t.Logf("reference writer: %d ok, %d failed with 40001", sc.ref.ok, sc.ref.fail)
	if sc.ref.ok == 0 {
		t.Error("the reference writer wrote nothing")
	}

	sc.check(t, sc.next)
	sc.checkDirectory(t, sc.moves)
	assertNoReplicationLeft(t, c, []string{"s0", "s1", "s2"})
	st, err := resharding.LoadStatus(ctx, c.Conn(t, "meta"), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != resharding.PhaseDone {
		t.Errorf("job phase %s, want done", st.Phase)
	}
}

func assertNoReplicationLeft(t testing.TB, c *resharding.Cluster, shards []string) {
	t.Helper()
	for _, s := range shards {
		var slots, pubs int
		err := c.Conn(t, s).QueryRow(context.Background(),
			"SELECT (SELECT count(*) FROM pg_replication_slots), (SELECT count(*) FROM pg_publication)").Scan(&slots, &pubs)
		if err != nil {
			t.Fatal(err)
		}
		if slots != 0 || pubs != 0 {
			t.Errorf("shard %s: %d slots and %d publications left", s, slots, pubs)
		}
	}
}

// TestJobUnderWrites moves customers and orders from 2 to 3 shards (by
// hash, consistent hash, or a split of their range) and splits the events
// range onto the new shard, while writers write orders.
func TestJobUnderWrites(t *testing.T) {
	for _, tt := range []struct{ name, cur, next string }{
		{"hash", "current.yaml", "target.yaml"},
		{"consistent", "consistent_current.yaml", "consistent_target.yaml"},
		{"range", "range_current.yaml", "range_target.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) { runScenario(t, tt.cur, tt.next, "", nil) })
	}
}

// TestJobDirectoryMove moves customers placed by a directory (two onto
// the new shard s2, one from s0 to s1, two from s1 to s2) while the
// writers write mostly those customers' orders; killed variants resume.
func TestJobDirectoryMove(t *testing.T) {
	for _, at := range []string{"", "copy-table", "cutover-paused"} {
		name := at
		if name == "" {
			name = "straight"
		}
		t.Run(name, func(t *testing.T) { runScenario(t, "directory_current.yaml", "directory_target.yaml", at, pickTenants) })
	}
}

// pickTenants moves the first three customers the directory puts on s0
// (two to s2, one to s1) and the first two on s1 (to s2); the writers
// write those and ten others.
func pickTenants(t testing.TB, c *resharding.Cluster) ([]resharding.DirectoryMove, []int64) {
	rows, err := c.Conn(t, "meta").Query(context.Background(), "SELECT key::int8, shard FROM tenant_directory ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	on := map[string][]int64{}
	var key int64
	var shard string
	if _, err := pgx.ForEachRow(rows, []any{&key, &shard}, func() error { on[shard] = append(on[shard], key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(on["s0"]) < 3 || len(on["s1"]) < 2 {
		t.Fatalf("directory: %d keys on s0, %d on s1", len(on["s0"]), len(on["s1"]))
	}
	s0, s1 := on["s0"], on["s1"]
	moves := []resharding.DirectoryMove{
		{Strategy: "by_tenant", Key: strconv.FormatInt(s0[0], 10), To: "s2"},
		{Strategy: "by_tenant", Key: strconv.FormatInt(s0[1], 10), To: "s2"},
		{Strategy: "by_tenant", Key: strconv.FormatInt(s0[2], 10), To: "s1"},
		{Strategy: "by_tenant", Key: strconv.FormatInt(s1[0], 10), To: "s2"},
		{Strategy: "by_tenant", Key: strconv.FormatInt(s1[1], 10), To: "s2"},
	}
	hot := []int64{s0[0], s0[1], s0[2], s1[0], s1[1]}
	for k := int64(1); k <= 10; k++ {
		hot = append(hot, k)
	}
	return moves, hot
}

// checkDirectory asserts that every moved key's entry names its new shard.
func (sc *scenario) checkDirectory(t testing.TB, moves []resharding.DirectoryMove) {
	t.Helper()
	for _, m := range moves {
		var shard string
		err := sc.c.Conn(t, "meta").QueryRow(context.Background(), "SELECT shard FROM tenant_directory WHERE key = $1", m.Key).Scan(&shard)
		if err != nil || shard != m.To {
			t.Errorf("directory entry of %s: %q (%v), want %s", m.Key, shard, err, m.To)
		}
	}
}

func TestJobKilled(t *testing.T) {
	for _, at := range []string{"copy-table", "catchup", "verify-holding", "cutover-paused", "cleanup"} {
		t.Run(at, func(t *testing.T) { runScenario(t, "current.yaml", "target.yaml", at, nil) })
	}
}

// TestJobAbort stops a job before its cutover and aborts it: the old map
// keeps serving every write, the destinations hold nothing of the job, and
// no slot or publication is left.
func TestJobAbort(t *testing.T) {
	for _, at := range []string{"copy-table", "catchup"} {
		t.Run(at, func(t *testing.T) {
			sc := startScenario(t, "current.yaml", "target.yaml", scenarioOptions{})
			ctx := context.Background()
			id, _, err := resharding.Create(ctx, sc.curText, sc.nextText, nil)
			if err != nil {
				t.Fatal(err)
			}
			meta := sc.cur.Metadata.DSN
			errStop := errors.New("stopped by the test")
			err = resharding.Run(ctx, meta, id, resharding.WithHook(resharding.Options{BatchRows: 100}, func(p string) error {
				if p == at {
					return errStop
				}
				return nil
			}))
			if !errors.Is(err, errStop) {
				t.Fatalf("Run: %v, want the hook's error", err)
			}
			if err := resharding.Abort(ctx, meta, id); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // writers go on under the old map
			sc.stop()
			sc.check(t, sc.cur)
			assertNoReplicationLeft(t, sc.c, []string{"s0", "s1", "s2"})
			var tables int
			if err := sc.c.Conn(t, "s2").QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("s2 (new in the target map) still has %d tables", tables)
			}
			st, err := resharding.LoadStatus(ctx, sc.c.Conn(t, "meta"), id)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != resharding.PhaseAborted {
				t.Errorf("phase %s, want aborted", st.Phase)
			}
			// Resuming an aborted job does nothing.
			if err := resharding.Run(ctx, meta, id, resharding.Options{}); err != nil {
				t.Errorf("resume after abort: %v", err)
			}
			assertNoReplicationLeft(t, sc.c, []string{"s0", "s1"})
		})
	}
}

// TestJobVerifyCatchesDifference: a moved row changed behind the job's
// back on its destination is found by the verification (which runs while
// the writers write), the job stops before its cutover naming the table
// and move, and the old map keeps serving.
func TestJobVerifyCatchesDifference(t *testing.T) {
	sc := startScenario(t, "current.yaml", "target.yaml", scenarioOptions{})
	ctx := context.Background()
	id, _, err := resharding.Create(ctx, sc.curText, sc.nextText, nil)
	if err != nil {
		t.Fatal(err)
	}
	var from string
	err = resharding.Run(ctx, sc.cur.Metadata.DSN, id, resharding.WithHook(resharding.Options{BatchRows: 100}, func(p string) error {
		if p != "catchup" {
			return nil
		}
		// Customers are not written by the writers: nothing repairs it.
		s2 := sc.c.Conn(t, "s2")
		var cust int64
		if err := s2.QueryRow(ctx, "UPDATE customers SET name = 'changed on s2' WHERE customer_id = (SELECT min(customer_id) FROM customers) RETURNING customer_id").Scan(&cust); err != nil {
			return err
		}
		from, _ = resharding.Owner(ctx, resharding.BuildStrats(t, sc.cur), sc.cur, "customers", strconv.FormatInt(cust, 10))
		return nil
	}))
	want := fmt.Sprintf("table customers %s -> s2: source", from)
	if err == nil || !strings.Contains(err.Error(), "verification failed") || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: %v, want a verification failure naming %q", err, want)
	}
	st, err := resharding.LoadStatus(ctx, sc.c.Conn(t, "meta"), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase == resharding.PhaseCleanup || st.Phase == resharding.PhaseDone {
		t.Fatalf("phase %s after a failed verification", st.Phase)
	}
	if err := resharding.Abort(ctx, sc.cur.Metadata.DSN, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	sc.stop()
	sc.check(t, sc.cur)
	assertNoReplicationLeft(t, sc.c, []string{"s0", "s1", "s2"})
}

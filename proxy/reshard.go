package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
)

// The proxy's half of a resharding cutover (the protocol is described in
// resharding/cutover.go): a watcher goroutine LISTENs on the metadata
// database, pauses the source shards when a job asks (new transactions
// are held at the PAUSE gate, running ones finish), switches to the map of
// a new epoch, resumes, and acks each step. A pause it was never told to
// end ends by itself after the job's bound plus a margin, after adopting
// the newest epoch (so not while the metadata database is unreachable),
// so that a dead job cannot leave writes held nor send them to an old
// owner. The job renews the pause while it still works after its switch
// (switch, extend), so that it ends by itself only once the job went
// quiet. After a switch the moved rows are on their old and their new
// owner until the job deleted them: a pause that ends by itself before
// that leaves the source shards fenced (checkFence) until the job's
// cleanup says they are deleted.

// checkMapAfterHold runs where a transaction takes a backend (after
// holdIfPaused). It fails a statement that was routed with a map that a
// cutover has since replaced (while it waited at the gate, or between an
// extended-protocol Parse and Execute): it would go to the old owner, and
// it has not run. It fails a shard joining a transaction that began
// before a cutover for the same reason: the transaction routes with the
// map it began with, which may name an old owner (or leave out a new
// shard that a reference-table write must reach). Only shards the cutover
// did not move can be in such a transaction already: one holding a backend
// on a moved shard holds the cutover up until it ends. Serialization
// failure tells drivers and ORMs to retry, which routes with the new map.
// A SIGHUP reload applies to new transactions: a statement routed just
// before it runs on the map it was routed with, unless the reload
// replaced the pools or the two-phase log it would use (they are closed).
// Cost: one atomic load.
func (s *session) checkMapAfterHold() error {
	if s.rt == nil {
		return nil
	}
	cur := s.srv.rt.Load()
	if s.rt == cur {
		return nil
	}
	open := s.attached != nil || s.multiLeg()
	switch {
	case s.rt.cutovers != cur.cutovers && open:
		e := pgError("40001", "the shard map changed (a resharding cutover) after this transaction began; it cannot take another shard")
		e.Hint = "roll back and retry the transaction"
		return e
	case open:
		return nil
	case s.rt.cutovers != cur.cutovers || s.rt.Pools != cur.Pools || s.rt.twopc != cur.twopc:
		s.rt = nil // the retry takes the new map
		e := pgError("40001", "the shard map changed (a resharding cutover, or a reload that replaced the shards' connections) after this statement was routed; it was not run")
		e.Hint = "retry the transaction"
		return e
	}
	return nil
}

// routedWith makes checkMapAfterHold judge a statement by rt, the
// runtime it was routed with, where the session let go of its runtime
// since: the end of a transaction does (settle), and in a pipeline that
// happens between a statement's routing and its taking a shard (the
// batch's reads on another shard are synced first, extAttach) or between
// a multi-shard portal's Bind and its Execute. With no runtime to compare
// the check would pass, and the statement would run on a route a cutover
// replaced: a write on a key's old owner, a reference-table write or a
// read without a new shard. A runtime the session took since then must
// not be past a cutover after rt either. Cost: pointer compares.
func (s *session) routedWith(rt *Runtime) error {
	switch {
	case rt == nil || s.rt == rt:
	case s.rt == nil:
		s.rt = rt // checkMapAfterHold compares it with the current one
	case s.rt.cutovers != rt.cutovers:
		e := pgError("40001", "the shard map changed (a resharding cutover) after this statement was routed; it was not run")
		e.Hint = "retry the transaction"
		return e
	}
	return nil
}

// ReshardWatch configures WatchReshard.
type ReshardWatch struct {
	MetaDSN string
	// ID names this proxy in the metadata database; default host-pid.
	ID string
	// Apply installs cfg (the shard map of a new epoch) for new
	// transactions: the serve command assembles it and calls CutOver.
	Apply func(ctx context.Context, cfg *config.Config) error
	// The protocol's constants and metadata tables belong to the
	// resharding package, which the serve command wires in (proxy does
	// not import it): Channel is resharding.Channel, Prepare is
	// resharding.EnsureSchema, PauseMargin resharding.PauseMargin.
	Channel     string
	Prepare     func(ctx context.Context, meta *pgx.Conn) error
	PauseMargin time.Duration
	Log         *slog.Logger
	// Ready, if set, is called once, after the newest epoch was adopted
	// for the first time: a proxy restarted with an old map file should
	// not serve before it knows the map a job switched to.
	Ready func()
}

// reshardState is what SHOW RESHARD reports about this proxy.
type reshardState struct {
	mu     sync.Mutex
	epoch  int64
	paused []string // shards held for a cutover
	job    int64
	bound  time.Duration // the job's pause bound, renewed by switch and extend
	until  time.Time     // auto-resume deadline while paused
	events []string      // recent protocol steps, newest last (bounded)

	// fence is set while a switched job's moved rows may still be on
	// their old shards (shardproxy_epoch.moved_rows_left): statements
	// there fail rather than see those rows twice.
	fence atomic.Pointer[fence]

	hook atomic.Pointer[ReshardHook] // the console's RESHARD
}

// fence names the source shards of a job that switched and has not
// deleted the rows it moved from them yet.
type fence struct {
	job    int64
	shards []string
}

// checkFence fails a statement that would take a backend on a fenced
// shard. Such a shard still holds rows that the map now places on other
// shards: a keyless read (or an IN list, a join, a keyless UPDATE ...
// RETURNING) there would return them besides their copies on the new
// owners. Which statements could see one cannot be told from the
// statement, so every one on the shard fails, with what to do. Holding
// them instead would hang clients until someone resumes the job. Cost
// while no fence is up: one atomic load.
func (r *reshardState) checkFence(shards []string) error {
	f := r.fence.Load()
	if f == nil {
		return nil
	}
	for _, sh := range shards {
		if slices.Contains(f.shards, sh) {
			e := pgError("55000", "shard %s still holds rows that resharding job %d moved to other shards and has not deleted yet (the job stopped after its switch); "+
				"statements there would see those rows twice", sh, f.job)
			e.Hint = fmt.Sprintf("resume the job (shardproxy reshard resume --job %d, or RESHARD RESUME %d in the admin console): once it has deleted them, the shard is served again", f.job, f.job)
			return e
		}
	}
	return nil
}

// refreshFence reads from the metadata database which source shards
// still hold moved rows of a switched job, and fences them (or lifts the
// fence). One job runs at a time, so at most one epoch has rows left.
func (s *Server) refreshFence(ctx context.Context, conn *pgx.Conn, w ReshardWatch) error {
	var job int64
	var shards []string
	err := conn.QueryRow(ctx, `SELECT e.job_id, coalesce(array(SELECT shard FROM shardproxy_reshard_source WHERE job_id = e.job_id ORDER BY shard), '{}')
		FROM shardproxy_epoch e WHERE e.moved_rows_left ORDER BY e.epoch DESC LIMIT 1`).Scan(&job, &shards)
	if errors.Is(err, pgx.ErrNoRows) {
		if old := s.reshard.fence.Swap(nil); old != nil {
			s.reshard.note("job %d deleted its moved rows: %s served again", old.job, strings.Join(old.shards, ","))
			w.Log.Info("resharding: moved rows deleted from their old shards; fence lifted", "job", old.job, "shards", old.shards)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if old := s.reshard.fence.Load(); old == nil || old.job != job || !slices.Equal(old.shards, shards) {
		s.reshard.fence.Store(&fence{job: job, shards: shards})
		s.reshard.note("job %d switched, moved rows left on %s: fenced", job, strings.Join(shards, ","))
		// The normal case while the cutover's pause holds the shards:
		// the job deletes them next.
		s.reshard.mu.Lock()
		held := len(s.reshard.paused) > 0
		s.reshard.mu.Unlock()
		if !held {
			w.Log.Warn("resharding: a switched job has not deleted its moved rows yet; statements on those shards fail until it has", "job", job, "shards", shards)
		}
	}
	return nil
}

func (r *reshardState) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, time.Now().UTC().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	if len(r.events) > 20 {
		r.events = r.events[len(r.events)-20:]
	}
}

// WatchReshard follows resharding cutovers until ctx ends; it reconnects
// to the metadata database with backoff. The caller owns the goroutine it
// runs on (run it with go and cancel ctx to stop it).
func (s *Server) WatchReshard(ctx context.Context, w ReshardWatch) {
	if w.ID == "" {
		host, _ := os.Hostname()
		w.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if w.Log == nil {
		w.Log = s.log
	}
	if w.Ready != nil {
		w.Ready = sync.OnceFunc(w.Ready) // not again after a reconnect
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.watchReshardOnce(ctx, w)
		if ctx.Err() != nil {
			break
		}
		w.Log.Warn("resharding watcher: metadata connection lost; retrying", "err", err, "backoff", backoff)
		// A pause that is due stays until the newest epoch can be read
		// (autoResume, once reconnected): see autoResume.
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	// Never leave shards held behind us.
	s.resumeHeld(w.Log, "watcher stopped")
}

func (s *Server) watchReshardOnce(ctx context.Context, w ReshardWatch) error {
	conn, err := pgx.Connect(ctx, w.MetaDSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := w.Prepare(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{w.Channel}.Sanitize()); err != nil {
		return err
	}
	// Registered after LISTEN: a job that sees us also reaches us.
	if err := s.heartbeat(ctx, conn, w); err != nil {
		return err
	}
	if err := s.adoptEpoch(ctx, conn, w, 0); err != nil {
		return err
	}
	if err := s.refreshFence(ctx, conn, w); err != nil {
		return err
	}
	if w.Ready != nil {
		w.Ready()
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if n != nil {
			if err := s.reshardStep(ctx, conn, w, n.Payload); err != nil {
				w.Log.Error("resharding watcher", "payload", n.Payload, "err", err)
			}
		}
		if err := s.heartbeat(ctx, conn, w); err != nil {
			return err
		}
		if err := s.autoResume(ctx, conn, w); err != nil {
			return err
		}
		// A fence lifts when a resumed job's cleanup deleted the rows;
		// that sends no notification.
		if s.reshard.fence.Load() != nil {
			if err := s.refreshFence(ctx, conn, w); err != nil {
				return err
			}
		}
	}
}

func (s *Server) heartbeat(ctx context.Context, conn *pgx.Conn, w ReshardWatch) error {
	s.reshard.mu.Lock()
	epoch := s.reshard.epoch
	s.reshard.mu.Unlock()
	_, err := conn.Exec(ctx, `INSERT INTO shardproxy_proxy (id, epoch, last_seen) VALUES ($1, $2, now())
		ON CONFLICT (id) DO UPDATE SET epoch = $2, last_seen = now()`, w.ID, epoch)
	return err
}

// adoptEpoch switches to the newest epoch if it is newer than ours (at
// least min, when a switch names one).
func (s *Server) adoptEpoch(ctx context.Context, conn *pgx.Conn, w ReshardWatch, min int64) error {
	var epoch int64
	var text string
	err := conn.QueryRow(ctx, "SELECT epoch, map FROM shardproxy_epoch ORDER BY epoch DESC LIMIT 1").Scan(&epoch, &text)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	s.reshard.mu.Lock()
	have := s.reshard.epoch
	s.reshard.mu.Unlock()
	if epoch <= have {
		return nil
	}
	if epoch < min {
		return fmt.Errorf("epoch %d announced but the newest is %d", min, epoch)
	}
	cfg, err := config.Parse([]byte(text), fmt.Sprintf("epoch %d", epoch))
	if err != nil {
		return fmt.Errorf("epoch %d: %w", epoch, err)
	}
	if err := w.Apply(ctx, cfg); err != nil {
		return fmt.Errorf("epoch %d: %w", epoch, err)
	}
	s.reshard.mu.Lock()
	s.reshard.epoch = epoch
	s.reshard.mu.Unlock()
	s.reshard.note("switched to epoch %d", epoch)
	w.Log.Info("resharding: switched to a new shard map epoch", "epoch", epoch, "shards", len(cfg.Shards))
	return nil
}

func ack(ctx context.Context, conn *pgx.Conn, w ReshardWatch, job, attempt int64, step string) error {
	_, err := conn.Exec(ctx, `INSERT INTO shardproxy_reshard_ack (job_id, attempt, step, proxy) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, job, attempt, step, w.ID)
	return err
}

// reshardStep handles one notification.
func (s *Server) reshardStep(ctx context.Context, conn *pgx.Conn, w ReshardWatch, payload string) error {
	f := strings.Fields(payload)
	if len(f) < 3 {
		return fmt.Errorf("malformed notification")
	}
	job, err1 := strconv.ParseInt(f[1], 10, 64)
	attempt, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	switch {
	case f[0] == "pause" && len(f) == 5:
		bound, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return err
		}
		shards := strings.Split(f[4], ",")
		s.reshard.mu.Lock()
		s.reshard.paused = shards
		s.reshard.job = job
		s.reshard.bound = time.Duration(bound) * time.Millisecond
		s.reshard.until = time.Now().Add(s.reshard.bound + w.PauseMargin)
		s.reshard.mu.Unlock()
		held := map[string]bool{}
		for _, sh := range shards {
			held[sh] = true
		}
		s.admin.gate.pause(shards...) // one pause: see pauseGate.mustWait
		s.reshard.note("job %d attempt %d: paused %s", job, attempt, f[4])
		// Ack once no transaction holds a backend on those shards; past
		// the bound the job gives up anyway.
		deadline := time.Now().Add(time.Duration(bound) * time.Millisecond)
		for s.busyOn(held) > 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("job %d: transactions still open on %s after the bound", job, f[4])
			}
			time.Sleep(time.Millisecond)
		}
		return ack(ctx, conn, w, job, attempt, "pause")
	case f[0] == "switch" && len(f) == 4:
		epoch, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return err
		}
		s.renewPause(job, w)
		if err := s.adoptEpoch(ctx, conn, w, epoch); err != nil {
			return err
		}
		// Fenced until the job says its moved rows are deleted: this
		// proxy may not be paused (it missed the pause).
		if err := s.refreshFence(ctx, conn, w); err != nil {
			return err
		}
		return ack(ctx, conn, w, job, attempt, "switch")
	case f[0] == "extend":
		s.renewPause(job, w)
		return nil
	case f[0] == "resume":
		// The job cleared moved_rows_left before it said resume; a
		// proxy that cannot read that stays paused (autoResume retries).
		if err := s.refreshFence(ctx, conn, w); err != nil {
			return err
		}
		s.resumeHeld(w.Log, fmt.Sprintf("job %d attempt %d", job, attempt))
		return ack(ctx, conn, w, job, attempt, "resume")
	}
	return fmt.Errorf("unknown notification")
}

// renewPause moves the auto-resume deadline of a pause held for job a
// bound (plus the margin) from now: the job is still at work after its
// switch (waiting for the switch acks, deleting the moved rows), and a
// pause that ended now would show those rows twice.
func (s *Server) renewPause(job int64, w ReshardWatch) {
	s.reshard.mu.Lock()
	defer s.reshard.mu.Unlock()
	if len(s.reshard.paused) > 0 && s.reshard.job == job {
		s.reshard.until = time.Now().Add(s.reshard.bound + w.PauseMargin)
	}
}

// autoResume ends a pause whose job went quiet, on the newest epoch. It
// runs only while the metadata database answers: a proxy cut off from
// it cannot tell whether the job switched meanwhile (the switch
// notification is lost with the connection), and ending the pause on the
// map it has would then send writes to the old owners of moved keys,
// where the job deletes the moved rows and no stream carries them on.
// The source shards stay held until the watcher has reconnected and
// adopted the newest epoch (the console's RESUME still ends a pause).
func (s *Server) autoResume(ctx context.Context, conn *pgx.Conn, w ReshardWatch) error {
	s.reshard.mu.Lock()
	due := len(s.reshard.paused) > 0 && time.Now().After(s.reshard.until)
	s.reshard.mu.Unlock()
	if !due {
		return nil
	}
	if err := s.adoptEpoch(ctx, conn, w, 0); err != nil {
		return err
	}
	// A job that went quiet after its switch may have left moved rows on
	// the sources: fenced before the gate opens, the held statements fail
	// rather than count them twice.
	if err := s.refreshFence(ctx, conn, w); err != nil {
		return err
	}
	if f := s.reshard.fence.Load(); f != nil {
		w.Log.Warn("resharding: the job went quiet after its switch without deleting its moved rows; statements on those shards fail until it has (resume the job)", "job", f.job, "shards", f.shards)
	}
	s.resumeHeld(w.Log, "pause bound passed without a resume")
	return nil
}

func (s *Server) resumeHeld(log *slog.Logger, why string) {
	s.reshard.mu.Lock()
	shards := s.reshard.paused
	s.reshard.paused = nil
	s.reshard.mu.Unlock()
	if len(shards) == 0 {
		return
	}
	for _, sh := range shards {
		s.admin.gate.resume(sh) // an error: already resumed by the console
	}
	s.reshard.note("resumed %s (%s)", strings.Join(shards, ","), why)
	log.Info("resharding: writes resumed", "shards", shards, "why", why)
}

// CheckAgainstEpoch refuses a reloaded configuration whose placement
// differs from the map of the resharding epoch this proxy switched to: a
// config file still holding the old map would send writes to old owners.
// The map is the one the last CutOver installed (Runtime.epochMap). While
// shards are held for a cutover, the placement may not change at all:
// before the switch a new map (the job's target, pushed early) would put
// writes on new owners while the streams still apply the sources' last
// changes there, and stay if the attempt is given up.
func (s *Server) CheckAgainstEpoch(next *config.Config) error {
	rt := s.rt.Load()
	ec := rt.epochMap
	s.reshard.mu.Lock()
	epoch, held := s.reshard.epoch, strings.Join(s.reshard.paused, ",")
	s.reshard.mu.Unlock()
	if held != "" && !samePlacement(rt.Config, next) {
		return fmt.Errorf("shards %s are held for a resharding cutover; a shard map that moves keys can be loaded only after it", held)
	}
	if ec == nil || samePlacement(ec, next) {
		return nil
	}
	return fmt.Errorf("the shard map differs from resharding epoch %d, which this proxy serves; put the job's target map in the config file", epoch)
}

func samePlacement(a, b *config.Config) bool {
	if a.DefaultShard != b.DefaultShard || len(a.Shards) != len(b.Shards) || len(a.Strategies) != len(b.Strategies) || len(a.Tables) != len(b.Tables) {
		return false
	}
	for i := range a.Shards {
		if a.Shards[i] != b.Shards[i] {
			return false
		}
	}
	for i := range a.Strategies {
		x, y := a.Strategies[i], b.Strategies[i]
		x.Line, y.Line = 0, 0
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	for i := range a.Tables {
		x, y := a.Tables[i], b.Tables[i]
		x.Line, y.Line = 0, 0
		if x != y {
			return false
		}
	}
	return true
}

// ReshardHook runs the console's RESHARD commands (args after the verb);
// the serve command installs one backed by the resharding package. Each
// returned line becomes a row.
type ReshardHook func(ctx context.Context, args []string) ([]string, error)

// SetReshardHook installs what the console's RESHARD runs.
func (s *Server) SetReshardHook(h ReshardHook) { s.reshard.hook.Store(&h) }

func (a *adminConn) reshard(ctx context.Context, args []string) error {
	h := a.srv.reshard.hook.Load()
	if h == nil {
		return errNotSupported("run `shardproxy reshard ...` instead", "RESHARD is not available: this server has no resharding hook")
	}
	lines, err := (*h)(ctx, args)
	if err != nil {
		return err
	}
	rs := &resultSet{cols: []string{"reshard"}}
	for _, l := range lines {
		rs.add(l)
	}
	a.send("RESHARD", rs)
	return nil
}

func (a *adminConn) showReshard(ctx context.Context) error {
	r := &a.srv.reshard
	r.mu.Lock()
	rs := &resultSet{cols: []string{"item", "value"}}
	rs.add("epoch", r.epoch)
	rs.add("held shards", strings.Join(r.paused, ","))
	if len(r.paused) > 0 {
		rs.add("held for job", r.job)
		rs.add("auto resume at", r.until.UTC().Format(time.RFC3339Nano))
	}
	if f := r.fence.Load(); f != nil {
		rs.add("fenced shards", strings.Join(f.shards, ","))
		rs.add("fenced for job", f.job)
	}
	for _, e := range r.events {
		rs.add("step", e)
	}
	r.mu.Unlock()
	if h := r.hook.Load(); h != nil {
		if lines, err := (*h)(ctx, []string{"STATUS"}); err == nil {
			for _, l := range lines {
				rs.add("job", l)
			}
		}
	}
	a.send("SHOW", rs)
	return nil
}

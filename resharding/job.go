package resharding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/shardproxy/shardproxy/config"
)

// Options tune a job. The zero value gets the defaults.
type Options struct {
	BatchRows int // rows per copy batch and per cleanup delete, default 5000
	// PauseBound is the longest the proxies hold writes at cutover
	// before the switch; exceeded, they resume on the old map and the job
	// retries. After the switch the job renews the pause for as long as
	// it deletes the moved rows from their old shards. Default 2s.
	PauseBound time.Duration
	// LagBytes is the replication lag (summed over the sources) under
	// which the cutover starts. Default 64 KiB.
	LagBytes int64
	// AckTimeout bounds the wait for the proxies' pause acks; default PauseBound.
	Attempts int // cutover attempts before the job fails, default 5
	// SkipVerify leaves out the count and checksum comparison of every
	// moved row with its source, made before the cutover while writes go
	// on (verifyOnline).
	SkipVerify bool
	Logger     *slog.Logger
	// hook, for tests, runs at named points ("copy-rows", "copy-table", "catchup",
	// "verify", "verify-holding", "verified", "cutover-paused",
	// "cutover-switched", "cleanup"); an error stops the job there.
	hook func(point string) error
}

func (o *Options) defaults() {
	if o.BatchRows <= 0 {
		o.BatchRows = 5000
	}
	if o.PauseBound <= 0 {
		o.PauseBound = 2 * time.Second
	}
	if o.LagBytes <= 0 {
		o.LagBytes = 64 << 10
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Job is one running resharding job. Run owns it and every connection in it.
type Job struct {
	id         int64
	cur, next  *config.Config
	targetText string
	moves      []DirectoryMove // directory keys reassigned at the cutover
	tables     []*jobTable
	// refs are reference tables copied whole from refSource onto the
	// shards new in the target map (ref is set, old/next are nil).
	refs      []*jobTable
	refSource string
	sources   []*source
	meta      *pgx.Conn
	dests     map[string]*pgx.Conn // used by the copy, on Run's goroutine
	srcConns  map[string]*pgx.Conn
	log       *slog.Logger
	opts      Options
}

type jobTable struct {
	name, key string
	ref       bool
	refTo     []string  // for a reference table: the new shards
	place     placement // for a sharded table: what moves where
	info      *tableInfo
}

type source struct {
	shard, slot, pub string
	copied           []string
}

func (j *Job) table(name string) *jobTable {
	for _, jt := range j.tables {
		if jt.name == name {
			return jt
		}
	}
	for _, jt := range j.refs {
		if jt.name == name {
			return jt
		}
	}
	return nil
}

// Create plans the move from curText to targetText (YAML shard maps) and
// of the directory keys in moves, refuses it if the plan has refusals,
// and records a new job in the metadata database. It returns the job id
// and the plan.
func Create(ctx context.Context, curText, targetText string, moves []DirectoryMove) (int64, *Plan, error) {
	cur, err := config.Parse([]byte(curText), "current map")
	if err != nil {
		return 0, nil, err
	}
	next, err := config.Parse([]byte(targetText), "target map")
	if err != nil {
		return 0, nil, err
	}
	p, err := NewPlan(ctx, cur, next, moves)
	if err != nil {
		return 0, nil, err
	}
	if len(p.Refusals) > 0 {
		return 0, p, &pgconn.PgError{Severity: "ERROR", Code: "0A000",
			Message: "resharding refused: " + p.Refusals[0],
			Hint:    "reshard plan lists every reason"}
	}
	if len(p.Tables) == 0 {
		return 0, p, &pgconn.PgError{Severity: "ERROR", Code: "22023", Message: "nothing moves between the two shard maps"}
	}
	meta, err := connect(ctx, cur.Metadata.DSN)
	if err != nil {
		return 0, nil, fmt.Errorf("metadata database: %w", err)
	}
	defer meta.Close(context.Background())
	if err := EnsureSchema(ctx, meta); err != nil {
		return 0, nil, err
	}
	var active int64
	err = meta.QueryRow(ctx, "SELECT id FROM shardproxy_reshard_job WHERE phase NOT IN ($1, $2) LIMIT 1", PhaseDone, PhaseAborted).Scan(&active)
	if err == nil {
		return 0, p, &pgconn.PgError{Severity: "ERROR", Code: "55006", Message: fmt.Sprintf("resharding job %d is still running", active),
			Hint: "wait for it, resume it or abort it: one job at a time"}
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, err
	}
	rows, _ := p.MovingRows()
	var id int64
	err = pgx.BeginFunc(ctx, meta, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, "INSERT INTO shardproxy_reshard_job (phase, cur_map, target_map, rows_total, directory_moves) VALUES ($1, $2, $3, $4, $5) RETURNING id",
			PhaseCopy, curText, targetText, rows, encodeMoves(p.DirMoves)).Scan(&id)
		if err != nil {
			return err
		}
		for _, s := range p.Sources() {
			_, err := tx.Exec(ctx, "INSERT INTO shardproxy_reshard_source (job_id, shard, slot, publication) VALUES ($1, $2, $3, $3)",
				id, s, slotName(id, s))
			if err != nil {
				return err
			}
		}
		return nil
	})
	return id, p, err
}

// Run runs (or resumes) job id until it is done, aborted, or ctx ends.
// Every phase is idempotent, so Run may be called again after any crash.
func Run(ctx context.Context, metaDSN string, id int64, opts Options) (err error) {
	opts.defaults()
	j := &Job{id: id, opts: opts, log: opts.Logger.With("job", id), dests: map[string]*pgx.Conn{}, srcConns: map[string]*pgx.Conn{}}
	defer j.close()
	if j.meta, err = connect(ctx, metaDSN); err != nil {
		return fmt.Errorf("metadata database: %w", err)
	}
	if err := EnsureSchema(ctx, j.meta); err != nil {
		return err
	}
	st, err := LoadStatus(ctx, j.meta, id)
	if err != nil {
		return err
	}
	if err := j.load(ctx, st); err != nil {
		return err
	}
	phase := st.Phase
	for {
		j.log.Info("resharding phase", "phase", phase)
		var next string
		switch phase {
		case PhaseCopy:
			next, err = j.copyPhase(ctx)
		case PhaseCatchup, PhaseCutover:
			next, err = j.catchupAndCutover(ctx)
		case PhaseCleanup:
			next, err = j.cleanup(ctx)
		case PhaseDone, PhaseAborted:
			return nil
		default:
			return fmt.Errorf("job %d: unknown phase %q", id, phase)
		}
		if err != nil {
			msg := err.Error()
			if e := setPhaseMessage(context.Background(), j.meta, id, msg); e != nil {
				j.log.Error("recording the error", "err", e)
			}
			return err
		}
		if err := setPhase(ctx, j.meta, id, next, ""); err != nil {
			return err
		}
		phase = next
	}
}

func setPhaseMessage(ctx context.Context, meta *pgx.Conn, id int64, msg string) error {
	_, err := meta.Exec(ctx, "UPDATE shardproxy_reshard_job SET message = $2, updated_at = now() WHERE id = $1", id, msg)
	return err
}

func (j *Job) close() {
	for _, c := range j.dests {
		c.Close(context.Background())
	}
	for _, c := range j.srcConns {
		c.Close(context.Background())
	}
	if j.meta != nil {
		j.meta.Close(context.Background())
	}
}

// load rebuilds the job's tables and sources from its recorded maps.
func (j *Job) load(ctx context.Context, st *Status) error {
	var err error
	if j.cur, err = config.Parse([]byte(st.CurMap), "current map"); err != nil {
		return err
	}
	if j.next, err = config.Parse([]byte(st.TargetMap), "target map"); err != nil {
		return err
	}
	j.targetText = st.TargetMap
	if j.moves, err = decodeMoves(st.DirectoryMoves); err != nil {
		return err
	}
	// The moves were planned (From read from the directory) at Create;
	// the directory may already say To if the job switched.
	p := &Plan{Cur: j.cur, Next: j.next, DirMoves: j.moves}
	p.structure()
	if len(p.Refusals) > 0 {
		return fmt.Errorf("job %d: its maps no longer plan: %s", j.id, p.Refusals[0])
	}
	if err := p.placements(ctx); err != nil {
		return err
	}
	for _, s := range st.Sources {
		j.sources = append(j.sources, &source{shard: s.Shard, slot: s.Slot, pub: s.Publication, copied: s.Copied})
	}
	// In the current map's order, as Plan.Sources: the first is the
	// reference tables' source (the status lists them by name).
	slices.SortFunc(j.sources, func(a, b *source) int { return j.cur.ShardIndex(a.shard) - j.cur.ShardIndex(b.shard) })
	for _, tp := range p.Tables {
		jt := &jobTable{name: tp.Name, key: tp.Key, place: tp.place}
		for _, src := range jt.place.sources() {
			c, err := j.source(ctx, src)
			if err != nil {
				return err
			}
			ti, ok, err := inspectTable(ctx, c, tp.Name, tp.Key)
			if err != nil {
				return err
			}
			if ok {
				jt.info = ti
				break
			}
		}
		if jt.info == nil {
			return fmt.Errorf("table %s exists on no source shard", tp.Name)
		}
		j.tables = append(j.tables, jt)
	}
	// The reference tables' source is the first source (see Plan.RefSource).
	if len(p.Refs) > 0 && len(j.sources) > 0 {
		j.refSource = j.sources[0].shard
		c, err := j.source(ctx, j.refSource)
		if err != nil {
			return err
		}
		for _, rp := range p.Refs {
			ti, ok, err := inspectTable(ctx, c, rp.Name, "")
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("reference table %s does not exist on shard %s", rp.Name, j.refSource)
			}
			j.refs = append(j.refs, &jobTable{name: rp.Name, ref: true, refTo: rp.To, info: ti})
		}
	}
	return nil
}

func (j *Job) source(ctx context.Context, shard string) (*pgx.Conn, error) {
	if c := j.srcConns[shard]; c != nil {
		return c, nil
	}
	c, err := connect(ctx, shardDSN(j.cur, shard))
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", shard, err)
	}
	j.srcConns[shard] = c
	return c, nil
}

func (j *Job) dest(ctx context.Context, shard string) (*pgx.Conn, error) {
	if c := j.dests[shard]; c != nil {
		return c, nil
	}
	c, err := connect(ctx, shardDSN(j.next, shard))
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", shard, err)
	}
	j.dests[shard] = c
	return c, nil
}

func (j *Job) addCopied(ctx context.Context, src *source, n int64) error {
	_, err := j.meta.Exec(ctx, "UPDATE shardproxy_reshard_source SET rows_copied = rows_copied + $3 WHERE job_id = $1 AND shard = $2", j.id, src.shard, n)
	return err
}

func (j *Job) hook(point string) error {
	if j.opts.hook == nil {
		return nil
	}
	return j.opts.hook(point)
}

// copyPhase creates every destination table, then per source shard the
// publication and slot, and copies what is not copied yet.
func (j *Job) copyPhase(ctx context.Context) (string, error) {
	for _, jt := range j.tables {
		for _, dst := range jt.place.destinations() {
			if err := j.ensureSchema(ctx, jt, j.sourceOf(jt), dst); err != nil {
				return "", err
			}
		}
	}
	for _, jt := range j.refs {
		for _, dst := range jt.refTo {
			if err := j.ensureSchema(ctx, jt, j.refSource, dst); err != nil {
				return "", err
			}
		}
	}
	for _, src := range j.sources {
		if err := j.copySource(ctx, src); err != nil {
			return "", err
		}
	}
	return PhaseCatchup, nil
}

// sourceOf is a shard that has jt (its schema is copied from there).
func (j *Job) sourceOf(jt *jobTable) string { return jt.place.sources()[0] }

// movesFrom lists the tables with rows on src to copy: the sharded
// tables it holds, and the reference tables when src is their source.
func (j *Job) movesFrom(src string) []*jobTable {
	var out []*jobTable
	for _, jt := range j.tables {
		if slices.Contains(jt.place.sources(), src) {
			out = append(out, jt)
		}
	}
	if src == j.refSource {
		out = append(out, j.refs...)
	}
	return out
}

func (j *Job) copySource(ctx context.Context, src *source) error {
	c, err := j.source(ctx, src.shard)
	if err != nil {
		return err
	}
	var tables []string
	for _, jt := range j.movesFrom(src.shard) {
		tables = append(tables, jt.info.Ident)
	}
	var hasPub bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_publication WHERE pubname = $1)", src.pub).Scan(&hasPub); err != nil {
		return err
	}
	if !hasPub {
		if _, err := c.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", quoteIdent(src.pub), joinComma(tables))); err != nil {
			return fmt.Errorf("shard %s: %w", src.shard, err)
		}
	}
	var slotLSN *pglogrepl.LSN
	var hasSlot bool
	err = c.QueryRow(ctx, "SELECT true, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", src.slot).Scan(&hasSlot, &slotLSN)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	// The copy must see a snapshot at or after the slot's start (see
	// doc.go). A new slot exports exactly that snapshot; an existing one
	// (resume) is older than any snapshot we can take now.
	var snapshot string
	if !hasSlot {
		rc, err := replicationConn(ctx, shardDSN(j.cur, src.shard))
		if err != nil {
			return fmt.Errorf("shard %s: replication connection: %w", src.shard, err)
		}
		// The exported snapshot lives as long as rc stays idle and open.
		defer rc.Close(context.Background())
		res, err := pglogrepl.CreateReplicationSlot(ctx, rc, src.slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("shard %s: creating slot: %w", src.shard, err)
		}
		snapshot = res.SnapshotName
		_, err = j.meta.Exec(ctx, "UPDATE shardproxy_reshard_source SET start_lsn = $3 WHERE job_id = $1 AND shard = $2", j.id, src.shard, res.ConsistentPoint)
		if err != nil {
			return err
		}
		j.log.Info("slot created", "shard", src.shard, "slot", src.slot, "lsn", res.ConsistentPoint, "snapshot", snapshot)
	}
	todo := 0
	for _, jt := range j.movesFrom(src.shard) {
		if !slices.Contains(src.copied, jt.name) {
			todo++
		}
	}
	if todo == 0 {
		return nil
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if snapshot != "" {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET TRANSACTION SNAPSHOT '%s'", snapshot)); err != nil {
			return fmt.Errorf("shard %s: %w", src.shard, err)
		}
	}
	if err := j.hook("copy-rows"); err != nil {
		return err
	}
	for _, jt := range j.movesFrom(src.shard) {
		if slices.Contains(src.copied, jt.name) {
			continue
		}
		n, err := j.copyTable(ctx, tx, src, jt)
		if err != nil {
			return err
		}
		src.copied = append(src.copied, jt.name)
		if _, err := j.meta.Exec(ctx, "UPDATE shardproxy_reshard_source SET copied = $3 WHERE job_id = $1 AND shard = $2", j.id, src.shard, src.copied); err != nil {
			return err
		}
		j.log.Info("table copied", "shard", src.shard, "table", jt.name, "rows", n)
		if err := j.hook("copy-table"); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// catchupAndCutover streams every source until the lag is small, then
// cuts over; a cutover that exceeds its bound resumes the old map and is
// tried again. Returns PhaseCleanup once the new epoch is written.
func (j *Job) catchupAndCutover(ctx context.Context) (string, error) {
	// A crash after the epoch was written but before the phase moved on:
	// the switch happened.
	if done, err := j.epochWritten(ctx); err != nil || done {
		return PhaseCleanup, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	// The streamers have a context of their own: the cutover halts them
	// (before it deletes moved rows from the sources, which they would
	// otherwise replay as deletes on the new owners).
	streamCtx, haltStreams := context.WithCancel(ctx)
	defer haltStreams()
	g, gctx := errgroup.WithContext(streamCtx)
	streamers := make([]*streamer, len(j.sources))
	for i, src := range j.sources {
		s := &streamer{job: j, src: src, rels: map[uint32]*relation{}, pending: map[string]*pgconn.Batch{}, dests: map[string]*pgconn.PgConn{}}
		streamers[i] = s
		g.Go(func() error { return s.run(gctx) })
	}
	halt := func() error {
		haltStreams()
		return g.Wait()
	}
	result := make(chan error, 1)
	go func() {
		// Owned by this function: ends when ctx ends, a streamer fails
		// (gctx), or the job is past its cutover.
		result <- j.drive(ctx, gctx, streamers, halt)
	}()
	err := <-result
	stop()
	if gerr := g.Wait(); gerr != nil && (err == nil || errors.Is(err, errStreamsStopped)) {
		err = gerr
	}
	if err != nil {
		return "", err
	}
	return PhaseCleanup, nil
}

var errStreamsStopped = errors.New("replication streams stopped")

// drive watches the lag and runs cutover attempts.
func (j *Job) drive(ctx, streams context.Context, streamers []*streamer, halt func() error) error {
	if err := j.hook("catchup"); err != nil {
		return err
	}
	tries := 0
	waitedFor := "" // prepared transactions the status names
	verified := j.opts.SkipVerify
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-streams.Done():
			return errStreamsStopped
		case <-tick.C:
		}
		if aborted, err := j.abortRequested(ctx); err != nil || aborted {
			if err == nil {
				err = errAborted
			}
			return err
		}
		lag, err := j.recordProgress(ctx, streamers)
		if err != nil {
			return err
		}
		if lag > j.opts.LagBytes {
			continue
		}
		if !verified {
			if err := j.hook("verify"); err != nil {
				return err
			}
			start := time.Now()
			diffs, err := j.verifyOnline(ctx, streams, streamers)
			if err != nil {
				return err
			}
			if len(diffs) > 0 {
				return fmt.Errorf("verification failed, the old map keeps serving:\n  %s", strings.Join(diffs, "\n  "))
			}
			verified = true
			j.log.Info("verified: every moved row matches its source (count and checksum per table and move)", "took", time.Since(start))
			if err := j.hook("verified"); err != nil {
				return err
			}
			continue // the lag grew meanwhile
		}
		// Not while a source holds a prepared transaction (see
		// preparedOnSources): wait for its COMMIT or ROLLBACK PREPARED.
		held, err := j.preparedOnSources(ctx)
		if err != nil {
			return err
		}
		if held != "" {
			if held != waitedFor {
				waitedFor = held
				j.log.Warn("cutover waits for prepared transactions on the sources to end", "prepared", held)
				if err := setPhase(ctx, j.meta, j.id, PhaseCatchup, "cutover waits for prepared transactions to end: "+held); err != nil {
					return err
				}
			}
			continue
		}
		tries++
		var attempt int
		err = j.meta.QueryRow(ctx, `UPDATE shardproxy_reshard_job SET attempts = attempts + 1, phase = $2, updated_at = now()
			WHERE id = $1 RETURNING attempts`, j.id, PhaseCutover).Scan(&attempt)
		if err != nil {
			return err
		}
		ok, err := j.cutover(ctx, attempt, streamers, halt)
		if err != nil || ok {
			return err
		}
		if tries >= j.opts.Attempts {
			return fmt.Errorf("cutover failed %d times; the old map keeps serving (see the log)", tries)
		}
		if err := setPhase(ctx, j.meta, j.id, PhaseCatchup, fmt.Sprintf("cutover attempt %d exceeded its bound; retrying", attempt)); err != nil {
			return err
		}
	}
}

var errAborted = errors.New("the job was aborted")

func (j *Job) abortRequested(ctx context.Context) (bool, error) {
	var phase string
	err := j.meta.QueryRow(ctx, "SELECT phase FROM shardproxy_reshard_job WHERE id = $1", j.id).Scan(&phase)
	return phase == PhaseAborted, err
}

// recordProgress stores each source's applied position and lag and
// returns the total lag in bytes.
func (j *Job) recordProgress(ctx context.Context, streamers []*streamer) (int64, error) {
	var total int64
	for _, s := range streamers {
		c, err := j.source(ctx, s.src.shard)
		if err != nil {
			return 0, err
		}
		cur, err := currentLSN(ctx, c)
		if err != nil {
			return 0, err
		}
		pos := s.pos.Load()
		lag := int64(0)
		if cur > pos {
			lag = int64(cur - pos)
		}
		total += lag
		if pos == 0 {
			// Nothing received yet: the lag is unknown, not zero.
			total += j.opts.LagBytes + 1
		}
		_, err = j.meta.Exec(ctx, `UPDATE shardproxy_reshard_source SET applied_lsn = $3, lag_bytes = $4, rows_applied = $5
			WHERE job_id = $1 AND shard = $2`, j.id, s.src.shard, pglogrepl.LSN(pos), lag, s.applied.Load())
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (j *Job) epochWritten(ctx context.Context) (bool, error) {
	var n int
	err := j.meta.QueryRow(ctx, "SELECT count(*) FROM shardproxy_epoch WHERE job_id = $1", j.id).Scan(&n)
	return n > 0, err
}

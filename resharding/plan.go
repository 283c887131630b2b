package resharding

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/strategies"
)

// Plan is what moves between two shard maps, measured on the shards.
type Plan struct {
	Cur, Next *config.Config
	Tables    []*TablePlan // moving tables, in the current map's order
	// Refs are the reference tables the shards new in the target map need
	// a full copy of; RefSource is the shard they are copied and streamed
	// from (the first source shard: every shard of the old map holds the
	// same rows, and this one has a slot anyway).
	Refs      []*RefPlan
	RefSource string
	// keptDirectory are directory-placed tables whose directory stays:
	// nothing of them moves, but new shards must have them.
	keptDirectory []string
	// DirMoves are the directory keys the operator reassigns (normalised,
	// with From filled in from the directory by NewPlan).
	DirMoves []DirectoryMove
	// Refusals are the reasons the job cannot run; a plan with refusals is
	// printed but not started.
	Refusals []string
	// Notes are facts the operator should know that do not stop the job.
	Notes []string
}

// TablePlan is one sharded table whose placement changes.
type TablePlan struct {
	Name, Key string
	OldDesc   string // the strategies as configured, for printing
	NewDesc   string
	Moves     []*Move // sorted by From, then To
	Rows      int64   // rows on the source shards (moving or not)
	// Info is the table as the first source shard's catalog has it.
	Info  *tableInfo
	place placement
	// dirStrategy names the directory whose keys move (DirMoves), or "".
	dirStrategy string
}

// RefPlan is one reference table copied whole onto the new shards.
type RefPlan struct {
	Name        string
	To          []string // the new shards, in target-map order
	Rows, Bytes int64    // on the source, per destination
}

// Move is the set of rows of one table going from one shard to another.
type Move struct {
	From, To    string
	Rows, Bytes int64
}

// copyRate is the assumed copy throughput for the time estimate; the
// benchmark measures the real one.
const copyRate = 20 << 20 // bytes per second

// NewPlan compares cur and next, inspects the source shards' catalogs and
// counts the moving rows exactly (one scan of the shard key per table and
// source shard). moves reassign directory keys (the maps may then be
// the same). It changes nothing. Structural problems (a table that changes
// kind, a renamed key, a move of an unknown key) come back as refusals,
// not errors; errors are for shards that cannot be reached.
func NewPlan(ctx context.Context, cur, next *config.Config, moves []DirectoryMove) (*Plan, error) {
	p := &Plan{Cur: cur, Next: next, DirMoves: moves}
	p.structure()
	if len(p.Refusals) > 0 {
		return p, nil
	}
	if err := p.readDirectories(ctx); err != nil {
		return nil, err
	}
	if len(p.Refusals) > 0 {
		return p, nil
	}
	if err := p.placements(ctx); err != nil {
		return nil, err
	}
	conns := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	for _, name := range p.Sources() {
		c, err := connect(ctx, shardDSN(cur, name))
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", name, err)
		}
		conns[name] = c
		if err := p.checkSource(ctx, name, c); err != nil {
			return nil, fmt.Errorf("shard %s: %w", name, err)
		}
	}
	for _, tp := range p.Tables {
		if err := p.measure(ctx, tp, conns); err != nil {
			return nil, err
		}
	}
	if err := p.measureRefs(ctx, conns); err != nil {
		return nil, err
	}
	if err := p.checkDestinations(ctx); err != nil {
		return nil, err
	}
	if err := p.checkKeptDirectories(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// checkKeptDirectories refuses a new shard that lacks a directory-placed
// table: after the switch the directory's fallback may place new keys
// there, and keyless reads go to every shard.
func (p *Plan) checkKeptDirectories(ctx context.Context) error {
	for _, s := range p.Next.Shards {
		if p.Cur.ShardIndex(s.Name) >= 0 || len(p.keptDirectory) == 0 {
			continue
		}
		c, err := connect(ctx, s.DSN)
		if err != nil {
			return fmt.Errorf("shard %s: %w", s.Name, err)
		}
		for _, name := range p.keptDirectory {
			if tp := p.table(name); tp != nil && slices.Contains(tp.place.destinations(), s.Name) {
				continue // the job creates it there
			}
			_, ok, err := inspectTable(ctx, c, name, "")
			if err != nil {
				c.Close(ctx)
				return fmt.Errorf("shard %s: %w", s.Name, err)
			}
			if !ok {
				p.Refusals = append(p.Refusals, fmt.Sprintf("table %s (placed by a directory) does not exist on the new shard %s: create it there first (the new map may place new keys on it)", name, s.Name))
			}
		}
		c.Close(ctx)
	}
	return nil
}

// measureRefs picks the reference tables' source and sizes them there.
func (p *Plan) measureRefs(ctx context.Context, conns map[string]*pgx.Conn) error {
	if len(p.Refs) == 0 {
		return nil
	}
	srcs := p.Sources()
	if len(srcs) == 0 {
		p.Refusals = append(p.Refusals, "the target map adds shards but no sharded row moves to them: nothing to stream reference tables with")
		return nil
	}
	p.RefSource = srcs[0]
	c := conns[p.RefSource]
	for _, rp := range p.Refs {
		ti, ok, err := inspectTable(ctx, c, rp.Name, "")
		if err != nil {
			return fmt.Errorf("shard %s: table %s: %w", p.RefSource, rp.Name, err)
		}
		if !ok {
			p.Refusals = append(p.Refusals, fmt.Sprintf("reference table %s does not exist on shard %s", rp.Name, p.RefSource))
			continue
		}
		if r := ti.refRefusal(); r != "" {
			p.Refusals = append(p.Refusals, r)
			continue
		}
		err = c.QueryRow(ctx, fmt.Sprintf("SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0)::int8 FROM %s t", ti.Ident)).Scan(&rp.Rows, &rp.Bytes)
		if err != nil {
			return fmt.Errorf("shard %s: %w", p.RefSource, err)
		}
	}
	return nil
}

// placements gives every moving table its placement: the two maps'
// strategies, or its directory's moves (whose From must be known).
func (p *Plan) placements(ctx context.Context) error {
	oldStrats, err := buildStrategies(ctx, p.Cur)
	if err != nil {
		return fmt.Errorf("current map: %w", err)
	}
	newStrats, err := buildStrategies(ctx, p.Next)
	if err != nil {
		return fmt.Errorf("target map: %w", err)
	}
	for _, tp := range p.Tables {
		nw := p.Next.StrategyByName(p.Next.TableByName(tp.Name).Strategy)
		if tp.dirStrategy != "" {
			kt, err := strategies.KeyTypeOf(nw.KeyType)
			if err != nil {
				return err
			}
			tp.place = newDirectoryPlacement(kt, movesOf(p.DirMoves, tp.dirStrategy), p.Next.ShardNames())
			continue
		}
		old := p.Cur.StrategyByName(p.Cur.TableByName(tp.Name).Strategy)
		if tp.place, err = newStrategyPlacement(oldStrats[old.Name], newStrats[nw.Name], old, nw); err != nil {
			return fmt.Errorf("table %s: %w", tp.Name, err)
		}
	}
	// A placement that differs on paper but loses no key moves nothing.
	p.Tables = slices.DeleteFunc(p.Tables, func(tp *TablePlan) bool { return len(tp.place.sources()) == 0 })
	return nil
}

// buildStrategies builds cfg's strategies except directories: a table
// placed by a directory is refused as a moving table (structure), and the
// others need only hash, range and consistent strategies, which need no
// metadata database. A map may keep an unchanged directory table.
func buildStrategies(ctx context.Context, cfg *config.Config) (map[string]strategies.Strategy, error) {
	c := *cfg
	c.Strategies = nil
	for _, s := range cfg.Strategies {
		if s.Type != config.StrategyDirectory {
			c.Strategies = append(c.Strategies, s)
		}
	}
	return strategies.Build(ctx, &c, nil)
}

// connect opens a connection whose text output does not depend on the
// server's defaults (timestamptz keys are printed in UTC).
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["timezone"] = "UTC"
	cc.RuntimeParams["application_name"] = "shardproxy-reshard"
	return pgx.ConnectConfig(ctx, cc)
}

func shardDSN(cfg *config.Config, name string) string {
	if i := cfg.ShardIndex(name); i >= 0 {
		return cfg.Shards[i].DSN
	}
	return ""
}

// structure finds the moving tables from the two maps alone.
func (p *Plan) structure() {
	cur, next := p.Cur, p.Next
	refuse := func(format string, args ...any) { p.Refusals = append(p.Refusals, fmt.Sprintf(format, args...)) }
	p.checkMoves()
	for _, s := range next.Shards {
		if d := shardDSN(cur, s.Name); d != "" && d != s.DSN {
			refuse("shard %s has a different dsn in the target map; rename the new shard instead", s.Name)
		}
	}
	if cur.DefaultShard != next.DefaultShard {
		refuse("default_shard changes from %s to %s: moving unsharded tables is not supported", cur.DefaultShard, next.DefaultShard)
	}
	if next.Metadata.DSN != cur.Metadata.DSN {
		refuse("the metadata database differs between the maps; both must use the same one")
	}
	newShards := map[string]bool{}
	for _, s := range next.Shards {
		if cur.ShardIndex(s.Name) < 0 {
			newShards[s.Name] = true
		}
	}
	for _, t := range next.Tables {
		if cur.TableByName(t.Name) == nil && !t.Reference {
			refuse("table %s is sharded in the target map only; add it to the current map first", t.Name)
		}
	}
	for _, t := range cur.Tables {
		nt := next.TableByName(t.Name)
		switch {
		case nt == nil:
			refuse("table %s is missing from the target map", t.Name)
			continue
		case t.Reference != nt.Reference:
			refuse("table %s changes between reference and sharded: not supported", t.Name)
			continue
		case t.Reference:
			if len(newShards) > 0 {
				var to []string
				for _, s := range next.Shards {
					if newShards[s.Name] {
						to = append(to, s.Name)
					}
				}
				p.Refs = append(p.Refs, &RefPlan{Name: t.Name, To: to})
			}
			continue
		case t.Key != nt.Key:
			refuse("table %s changes its shard key from %s to %s: not supported", t.Name, t.Key, nt.Key)
			continue
		}
		os, ns := cur.StrategyByName(t.Strategy), next.StrategyByName(nt.Strategy)
		if os.Type == config.StrategyDirectory || ns.Type == config.StrategyDirectory {
			if os.Type == ns.Type && os.Table == ns.Table && os.KeyType == ns.KeyType {
				// Every existing key has an entry (an INSERT creates it), so
				// only the keys the operator moves move, whatever the
				// fallback does to new keys.
				p.keptDirectory = append(p.keptDirectory, t.Name)
				if moves := movesOf(p.DirMoves, ns.Name); len(moves) > 0 {
					p.Tables = append(p.Tables, &TablePlan{Name: t.Name, Key: t.Key, OldDesc: describeStrategy(os),
						NewDesc: describeMoves(ns, moves), dirStrategy: ns.Name})
				}
				continue
			}
			refuse("table %s uses a directory strategy whose table or key type changes (a directory keeps its table; move its keys with --move instead)", t.Name)
			continue
		}
		if os.KeyType != ns.KeyType {
			refuse("table %s changes its key type from %s to %s", t.Name, os.KeyType, ns.KeyType)
			continue
		}
		if samePlacement(os, ns) {
			continue
		}
		p.Tables = append(p.Tables, &TablePlan{Name: t.Name, Key: t.Key, OldDesc: describeStrategy(os), NewDesc: describeStrategy(ns)})
	}
}

// checkMoves refuses directory moves that name no directory, shard or
// table, and normalises their keys to the directory's form.
func (p *Plan) checkMoves() {
	refuse := func(format string, args ...any) { p.Refusals = append(p.Refusals, fmt.Sprintf(format, args...)) }
	seen := map[[2]string]bool{}
	for i := range p.DirMoves {
		m := &p.DirMoves[i]
		s := p.Next.StrategyByName(m.Strategy)
		if s == nil || s.Type != config.StrategyDirectory {
			refuse("move %s: %s is not a directory strategy of the target map", m, m.Strategy)
			continue
		}
		if p.Next.ShardIndex(m.To) < 0 {
			refuse("move %s: the target map has no shard %s", m, m.To)
			continue
		}
		kt, err := strategies.KeyTypeOf(s.KeyType)
		if err != nil {
			refuse("move %s: %v", m, err)
			continue
		}
		k, err := strategies.ParseKeyIn(kt, m.Key, time.UTC)
		if err != nil {
			refuse("move %s: %v", m, err)
			continue
		}
		m.Key = k.String()
		if seen[[2]string{m.Strategy, m.Key}] {
			refuse("move %s: key %s is moved twice", m, m.Key)
		}
		seen[[2]string{m.Strategy, m.Key}] = true
		if !slices.ContainsFunc(p.Next.Tables, func(t config.Table) bool { return t.Strategy == m.Strategy }) {
			refuse("move %s: no table is placed by %s", m, m.Strategy)
		}
	}
}

// readDirectories fills in each move's From from its directory table in
// the metadata database, refusing keys without an entry (no row was ever
// placed with them) and keys already where they should go. It also
// refuses a target map that drops a shard directory entries still name.
func (p *Plan) readDirectories(ctx context.Context) error {
	var dirs []*config.Strategy
	for i := range p.Next.Strategies {
		if s := &p.Next.Strategies[i]; s.Type == config.StrategyDirectory && p.Cur.StrategyByName(s.Name) != nil {
			dirs = append(dirs, s)
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	meta, err := connect(ctx, p.Next.Metadata.DSN)
	if err != nil {
		return fmt.Errorf("metadata database: %w", err)
	}
	defer meta.Close(context.Background())
	for _, d := range dirs {
		var exists bool
		if err := meta.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", quoteTable(d.Table)).Scan(&exists); err != nil {
			return fmt.Errorf("metadata database: %w", err)
		}
		for i := range p.DirMoves {
			m := &p.DirMoves[i]
			if m.Strategy != d.Name {
				continue
			}
			if !exists {
				p.Refusals = append(p.Refusals, fmt.Sprintf("move %s: directory table %s does not exist yet: no key was ever placed", m, d.Table))
				continue
			}
			err := meta.QueryRow(ctx, "SELECT shard FROM "+quoteTable(d.Table)+" WHERE key = $1", m.Key).Scan(&m.From)
			if errors.Is(err, pgx.ErrNoRows) {
				p.Refusals = append(p.Refusals, fmt.Sprintf("move %s: key %s has no entry in directory %s (no row was ever written with it); nothing to move", m, m.Key, d.Table))
				continue
			}
			if err != nil {
				return fmt.Errorf("metadata database: %w", err)
			}
			if m.From == m.To {
				p.Refusals = append(p.Refusals, fmt.Sprintf("move %s: key %s is on %s already", m, m.Key, m.To))
			}
		}
		if !exists {
			continue
		}
		// Entries on a shard the target map drops would route nowhere.
		rows, err := meta.Query(ctx, "SELECT shard, count(*) FROM "+quoteTable(d.Table)+" GROUP BY 1 ORDER BY 1")
		if err != nil {
			return fmt.Errorf("metadata database: %w", err)
		}
		var shard string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&shard, &n}, func() error {
			for _, m := range p.DirMoves {
				if m.Strategy == d.Name && m.From == shard {
					n--
				}
			}
			if p.Next.ShardIndex(shard) < 0 && n > 0 {
				p.Refusals = append(p.Refusals, fmt.Sprintf("directory %s has %d entries on shard %s, which the target map drops: move those keys elsewhere with --move %s:KEY=SHARD", d.Table, n, shard, d.Name))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("metadata database: %w", err)
		}
	}
	return nil
}

func describeMoves(s *config.Strategy, moves []DirectoryMove) string {
	var keys []string
	for _, m := range moves {
		keys = append(keys, m.Key+"->"+m.To)
	}
	return fmt.Sprintf("%s directory %s, keys %s", s.Name, s.Table, strings.Join(keys, " "))
}

// samePlacement reports whether two strategy configs place every key alike.
func samePlacement(a, b *config.Strategy) bool {
	return a.Type == b.Type && a.KeyType == b.KeyType && slices.Equal(a.Shards, b.Shards) &&
		slices.Equal(a.Ranges, b.Ranges) && a.Partitions == b.Partitions
}

func describeStrategy(s *config.Strategy) string {
	switch s.Type {
	case config.StrategyRange:
		var parts []string
		for _, r := range s.Ranges {
			u := r.Upper
			if r.Unbounded {
				u = "+inf"
			}
			parts = append(parts, fmt.Sprintf("<%s:%s", u, r.Shard))
		}
		return fmt.Sprintf("%s range [%s]", s.Name, strings.Join(parts, " "))
	case config.StrategyConsistent:
		return fmt.Sprintf("%s consistent [%s] partitions %d", s.Name, strings.Join(s.Shards, " "), s.Partitions)
	case config.StrategyDirectory:
		return fmt.Sprintf("%s directory %s (new keys: %s)", s.Name, s.Table, s.Fallback)
	}
	return fmt.Sprintf("%s %s [%s]", s.Name, s.Type, strings.Join(s.Shards, " "))
}

func (p *Plan) inCurOrder(set map[string]bool) []string {
	var out []string
	for _, s := range p.Cur.Shards {
		if set[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// checkSource refuses shards that cannot feed logical decoding.
func (p *Plan) checkSource(ctx context.Context, name string, c *pgx.Conn) error {
	var walLevel string
	var freeSlots, freeSenders int
	err := c.QueryRow(ctx, `SELECT current_setting('wal_level'),
		current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
		current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)`).Scan(&walLevel, &freeSlots, &freeSenders)
	if err != nil {
		return err
	}
	if walLevel != "logical" {
		p.Refusals = append(p.Refusals, fmt.Sprintf("shard %s: wal_level is %s; set wal_level = logical and restart it", name, walLevel))
	}
	// One slot for the job's stream and a temporary one for its
	// verification; a WAL sender for each while both run.
	if freeSlots < 2 {
		p.Refusals = append(p.Refusals, fmt.Sprintf("shard %s: %d free replication slots, the job needs 2 (its stream and its verification; raise max_replication_slots)", name, max(freeSlots, 0)))
	}
	if freeSenders < 2 {
		p.Refusals = append(p.Refusals, fmt.Sprintf("shard %s: %d free WAL senders, the job needs 2 (raise max_wal_senders)", name, max(freeSenders, 0)))
	}
	return nil
}

// measure inspects tp on its source shards and counts what moves where.
func (p *Plan) measure(ctx context.Context, tp *TablePlan, conns map[string]*pgx.Conn) error {
	moves := map[[2]string]*Move{}
	for _, src := range p.inCurOrder(setOf(tp.place.sources())) {
		c := conns[src]
		ti, ok, err := inspectTable(ctx, c, tp.Name, tp.Key)
		if err != nil {
			return fmt.Errorf("shard %s: table %s: %w", src, tp.Name, err)
		}
		if !ok {
			p.Refusals = append(p.Refusals, fmt.Sprintf("table %s does not exist on shard %s", tp.Name, src))
			continue
		}
		if r := ti.refusal(tp.Key); r != "" {
			if !slices.Contains(p.Refusals, r) {
				p.Refusals = append(p.Refusals, r)
			}
			continue
		}
		if tp.Info == nil {
			tp.Info = ti
		}
		q := fmt.Sprintf("SELECT %s::text, pg_column_size(t.*) FROM %s t", quoteIdent(tp.Key), ti.Ident)
		rows, err := c.Query(ctx, q)
		if err != nil {
			return fmt.Errorf("shard %s: %w", src, err)
		}
		var keyText *string
		var size int64
		_, err = pgx.ForEachRow(rows, []any{&keyText, &size}, func() error {
			tp.Rows++
			if keyText == nil {
				return fmt.Errorf("table %s on shard %s has a row with a NULL shard key", tp.Name, src)
			}
			to, err := tp.place.newOwner(ctx, *keyText, src)
			if err != nil {
				return fmt.Errorf("table %s on shard %s: key %s: %w", tp.Name, src, *keyText, err)
			}
			if to == src {
				return nil
			}
			m := moves[[2]string{src, to}]
			if m == nil {
				m = &Move{From: src, To: to}
				moves[[2]string{src, to}] = m
			}
			m.Rows++
			m.Bytes += size
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, m := range moves {
		tp.Moves = append(tp.Moves, m)
	}
	sort.Slice(tp.Moves, func(i, j int) bool {
		a, b := tp.Moves[i], tp.Moves[j]
		if a.From != b.From {
			return p.Next.ShardIndex(a.From) < p.Next.ShardIndex(b.From)
		}
		return p.Next.ShardIndex(a.To) < p.Next.ShardIndex(b.To)
	})
	return nil
}

func (p *Plan) table(name string) *TablePlan {
	for _, tp := range p.Tables {
		if tp.Name == name {
			return tp
		}
	}
	return nil
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// locate is the owner of a key given in Postgres' text form.
func locate(ctx context.Context, s strategies.Strategy, kt strategies.KeyType, text string) (string, error) {
	k, err := strategies.ParseKeyIn(kt, text, time.UTC)
	if err != nil {
		return "", err
	}
	return s.Locate(ctx, k, strategies.Write)
}

// checkDestinations notes destination shards that lack a moving table (the
// job creates it from the source's schema) and refuses unreachable ones.
func (p *Plan) checkDestinations(ctx context.Context) error {
	for _, tp := range p.Tables {
		for _, dst := range tp.place.destinations() {
			c, err := connect(ctx, shardDSN(p.Next, dst))
			if err != nil {
				return fmt.Errorf("shard %s: %w", dst, err)
			}
			_, ok, err := inspectTable(ctx, c, tp.Name, tp.Key)
			c.Close(ctx)
			if err != nil {
				return fmt.Errorf("shard %s: %w", dst, err)
			}
			if !ok {
				p.Notes = append(p.Notes, fmt.Sprintf("table %s will be created on shard %s from the schema of shard %s", tp.Name, dst, tp.place.sources()[0]))
			}
		}
	}
	return nil
}

// Sources are the shards rows may move away from, in current-map order:
// each gets a slot, so that rows written there during the job are
// streamed even if none moves from there now.
func (p *Plan) Sources() []string {
	set := map[string]bool{}
	for _, tp := range p.Tables {
		for _, s := range tp.place.sources() {
			set[s] = true
		}
	}
	return p.inCurOrder(set)
}

// MovingRows is the number of rows the job copies: those that change
// owner, and the reference tables' rows once per new shard.
func (p *Plan) MovingRows() (rows, bytes int64) {
	for _, tp := range p.Tables {
		for _, m := range tp.Moves {
			rows += m.Rows
			bytes += m.Bytes
		}
	}
	for _, rp := range p.Refs {
		rows += rp.Rows * int64(len(rp.To))
		bytes += rp.Bytes * int64(len(rp.To))
	}
	return rows, bytes
}

// Print writes the plan for humans. The output depends only on the maps
// and the data, so it is golden-tested.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "reshard plan: %d shards [%s] -> %d shards [%s]\n", len(p.Cur.Shards), strings.Join(p.Cur.ShardNames(), " "),
		len(p.Next.Shards), strings.Join(p.Next.ShardNames(), " "))
	if len(p.Tables) == 0 && len(p.Refusals) == 0 {
		fmt.Fprintln(w, "nothing moves: every table keeps its placement")
	}
	// A plan refused on the maps alone was not measured.
	measured := len(p.Tables) > 0 && p.Tables[0].place != nil
	for _, tp := range p.Tables {
		fmt.Fprintf(w, "\ntable %s (key %s)\n  from %s\n  to   %s\n", tp.Name, tp.Key, tp.OldDesc, tp.NewDesc)
		if !measured {
			continue
		}
		var rows int64
		for _, m := range tp.Moves {
			fmt.Fprintf(w, "  move %-4s -> %-4s %10d rows %12s\n", m.From, m.To, m.Rows, formatBytes(m.Bytes))
			rows += m.Rows
		}
		fmt.Fprintf(w, "  moving %d of the %d rows on %s (%s)\n", rows, tp.Rows, strings.Join(tp.place.sources(), ","), percent(rows, tp.Rows))
	}
	for _, rp := range p.Refs {
		fmt.Fprintf(w, "\nreference table %s\n  copy %-4s -> %-4s %10d rows %12s each\n", rp.Name, p.RefSource, strings.Join(rp.To, ","), rp.Rows, formatBytes(rp.Bytes))
	}
	rows, bytes := p.MovingRows()
	if measured {
		fmt.Fprintf(w, "\ntotal: %d rows, %s to copy; destination WAL about %s; copy time about %s at %s/s\n",
			rows, formatBytes(bytes), formatBytes(bytes*2), estimate(bytes), formatBytes(copyRate))
		fmt.Fprintf(w, "slots: one pgoutput slot and publication per source shard (%s)\n", strings.Join(p.Sources(), " "))
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(p.Refusals) == 0 {
		fmt.Fprintln(w, "refusals: none")
		return
	}
	fmt.Fprintln(w, "refusals (the job will not start):")
	for _, r := range p.Refusals {
		fmt.Fprintf(w, "  - %s\n", r)
	}
}

func percent(a, b int64) string {
	if b == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

func estimate(bytes int64) string {
	d := time.Duration(float64(bytes) / copyRate * float64(time.Second))
	if d < time.Second {
		return "1s"
	}
	return d.Round(time.Second).String()
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

package router

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// catalog is what the router knows of the shards' catalogs beyond the
// shard map, where it changes how a statement must be read. It is
// immutable; Router.facts holds the current one, and a statement is
// analysed with the one current then (Statement.facts). Each change
// clears the plan cache.
type catalog struct {
	// aggs are aggregates the shards define (CREATE AGGREGATE,
	// extensions): mysum(x) over two shards is one aggregate to gather,
	// not a per-shard value to concatenate.
	aggs map[string]bool
	// shadows are built-in aggregate names (sum) that a user's aggregate
	// in some schema also has (agg.sum): a session search_path listing
	// that schema before pg_catalog makes sum(x) the user's.
	shadows map[string]bool
	// views are views and materialized views that read a sharded table
	// (directly or through other views), by relation name, each with one
	// such table. A view is not in the map, so the router would send it
	// to the default shard only: its rows there are part of the answer.
	views map[string]string
	// refViews are the views that read a reference table and no sharded
	// one, with one such table: read on the default shard they are
	// exact, but a write through one would change that shard's copy only.
	refViews map[string]string
	// defs are the definitions of the plain views among them, by
	// relation name: a SELECT reads such a view as the subquery it is
	// (inlineViews), which the router can route and merge.
	defs map[string]viewDef
	// children are the partitions and inheritance children of mapped
	// tables (at any depth), by "schema.rel", each routed as the mapped
	// table it descends from: its rows were placed by that table's key
	// (inserted through the parent, or through it by the key), so
	// SELECT count(*) FROM orders_2024 reads every shard and an INSERT
	// into it goes to the key's shard. Not in the map, it went to the
	// default shard alone. childOf is each one's parent, by the same
	// key; childRels their relation names.
	children  map[string]*tableInfo
	childOf   map[string]string
	childRels map[string]bool
	// shardedRels maps the relation names of sharded tables and their
	// children to their names, for reading function bodies.
	shardedRels map[string]string
	// triggers are triggers whose functions write where their tables'
	// rows cannot (triggers.go), by the table's "schema.rel".
	triggers map[string][]triggerRisk
	// funcs are functions and procedures whose bodies touch sharded data
	// (functions.go), by name, each with what it touches: a statement
	// calling one is refused without a shard hint.
	funcs map[string]string
	// divergent are functions whose value may differ between shards
	// (replicas.go), by name, each with what it calls; defaults the
	// columns of reference tables whose defaults do, by the table's
	// "schema.rel": a write to a reference table that uses one would
	// make the table's copies differ.
	divergent map[string]string
	defaults  map[string][]divergentDefault
	// writing are functions whose bodies may write (writes.go), by name,
	// each with why.
	writing map[string]string
	// setting are functions whose bodies may change a session setting
	// (pooling.go), by name, each with why.
	setting map[string]string
	// indexOf maps the indexes of the shards' tables, by "schema.index",
	// to their table's "schema.rel": a statement naming an index goes
	// where its table is (indexes.go), and an index of a sharded table is
	// sharded with it (sizes.go). seqOf does the same for the sequences
	// tables own (serial, identity, OWNED BY).
	indexOf, seqOf map[string]string
}

// viewDef is a view's query as a shard prints it (pg_get_viewdef), or
// as CREATE VIEW through the proxy gave it, with the view's schema ("":
// created unqualified) and column names when they are not in the query.
type viewDef struct {
	schema string
	sql    string
	cols   []string
}

// ViewDef is a view's definition as a shard's catalog has it.
type ViewDef struct {
	Schema, View string
	SQL          string // pg_get_viewdef
}

func (c *catalog) aggregate(name string) bool { return c != nil && c.aggs[name] }

// indexTable is the table ("schema.rel") of index "schema.index", or "".
func (c *catalog) indexTable(key string) string {
	if c == nil {
		return ""
	}
	return c.indexOf[key]
}

// ownerOf is the table ("schema.rel") that owns index or (seq) sequence
// "schema.name", or "".
func (c *catalog) ownerOf(seq bool, key string) string {
	if c == nil {
		return ""
	}
	if seq {
		return c.seqOf[key]
	}
	return c.indexOf[key]
}

func (c *catalog) shadowed() map[string]bool {
	if c == nil {
		return nil
	}
	return c.shadows
}

func (c *catalog) viewDefs() map[string]viewDef {
	if c == nil {
		return nil
	}
	return c.defs
}

// child is the mapped table a partition or inheritance child "schema.rel"
// descends from, as the router routes it, or nil.
func (c *catalog) child(key string) *tableInfo {
	if c == nil {
		return nil
	}
	return c.children[key]
}

// parentOf is the parent of child table "schema.rel", or "".
func (c *catalog) parentOf(key string) string {
	if c == nil {
		return ""
	}
	return c.childOf[key]
}

// viewTables maps each view over a sharded table to one such table.
func (c *catalog) viewTables() map[string]string {
	if c == nil {
		return nil
	}
	return c.views
}

func (c *catalog) writingFuncs() map[string]string {
	if c == nil {
		return nil
	}
	return c.writing
}

func (c *catalog) settingFuncs() map[string]string {
	if c == nil {
		return nil
	}
	return c.setting
}

func (c *catalog) divergentFuncs() map[string]string {
	if c == nil {
		return nil
	}
	return c.divergent
}

func (c *catalog) functions() map[string]string {
	if c == nil {
		return nil
	}
	return c.funcs
}

// shardedView returns the sharded table view rel reads, or "".
func (c *catalog) shardedView(rel string) string {
	if c == nil {
		return ""
	}
	return c.views[rel]
}

// referenceView returns the reference table view rel reads (and no
// sharded table), or "".
func (c *catalog) referenceView(rel string) string {
	if c == nil {
		return ""
	}
	return c.refViews[rel]
}

// learning is the writers' side of Router.facts.
//
// Aggregate names only accumulate: a name read as an aggregate that no
// longer is one is gathered or refused, an error at worst.
//
// Views, functions, child tables and triggers come from two sources.
// Each shard's health check reports them (CatalogChecked), replacing
// that shard's previous report, so one dropped behind the proxy's back
// stops counting within one check. CREATE and DROP analysed here take
// effect at once: a created one is held (made) until every shard has a
// report from a check begun after the transaction that created it ended;
// a dropped one leaves every report at once.
//
// A statement's transaction is the session's to know: it tells the router
// when a statement that learned runs (LearningOpened) and when its
// transaction ends (LearningClosed). While any such transaction is open
// nothing made is released, since a check that ran before its COMMIT could
// not see what it made: releasing then forgot a view made in a transaction
// that outlived one health check, and after COMMIT the view read as an
// unmapped table, on the default shard alone. The session reads the
// shards' catalogs itself when what was learned may be wrong (the
// transaction failed or rolled back: a failed DROP VIEW must not leave the
// view unknown) or incomplete (a view made with *), so that its next
// statement sees the truth.
type learning struct {
	mu      sync.Mutex
	aggs    map[string]bool
	shadows map[string]bool
	reports map[string]shardReport // by shard
	made    madeHere
	exprs   map[string]*pg.Node // parsed column defaults (divergentDefaults)
	// txns: the sessions' transactions that ran a statement that learned
	// and have not ended. Shared with the routers of later reloads
	// (Adopt), since a session ends what it opened on the router it
	// began with.
	txns *learnTxns
}

// learnTxns counts the open transactions that learned, and notes when one
// last opened or ended (settled): what was made before that is released
// only by checks begun after it.
type learnTxns struct {
	mu      sync.Mutex
	open    int
	settled time.Time
}

func (l *learnTxns) change(by int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open += by
	if l.open < 0 {
		panic("router: LearningClosed without LearningOpened")
	}
	l.settled = time.Now()
}

func (l *learnTxns) state() (open int, settled time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.settled
}

// madeHere are the objects CREATE statements analysed here made, held
// until the shards' reports show them.
type madeHere struct {
	views    held[createdView]     // by view name
	funcs    held[body]            // by function name
	children held[string]          // by child "schema.rel": the parent's
	triggers held[Trigger]         // by Trigger.key
	defaults held[[]ColumnDefault] // by table "schema.rel": all of its defaults
	indexes  held[string]          // by index "schema.name": its table's "schema.rel"
	seqs     held[string]          // by owned sequence "schema.name": its table's
}

func (m madeHere) clone() madeHere {
	return madeHere{views: maps.Clone(m.views), funcs: maps.Clone(m.funcs),
		children: maps.Clone(m.children), triggers: maps.Clone(m.triggers), defaults: maps.Clone(m.defaults),
		indexes: maps.Clone(m.indexes), seqs: maps.Clone(m.seqs)}
}

// held maps a name to a fact and when it was learned.
type held[T any] map[string]heldFact[T]

type heldFact[T any] struct {
	fact T
	at   time.Time
}

func (h *held[T]) put(name string, fact T) {
	if *h == nil {
		*h = held[T]{}
	}
	(*h)[name] = heldFact[T]{fact: fact, at: time.Now()}
}

// release drops the facts every shard's report has had the chance to
// show.
func (h held[T]) release(reportedSince func(time.Time) bool) {
	maps.DeleteFunc(h, func(_ string, f heldFact[T]) bool { return reportedSince(f.at) })
}

func (m madeHere) release(reportedSince func(time.Time) bool) {
	m.views.release(reportedSince)
	m.funcs.release(reportedSince)
	m.children.release(reportedSince)
	m.triggers.release(reportedSince)
	m.defaults.release(reportedSince)
	m.indexes.release(reportedSince)
	m.seqs.release(reportedSince)
}

// LearningOpened tells r that a statement whose analysis learned
// (Statement.Learns) runs in a transaction that has not ended: nothing
// made is released until LearningClosed is called once for each call.
func (r *Router) LearningOpened() { r.learn.txns.change(1) }

// LearningClosed tells r that a transaction LearningOpened for has ended
// (committed, rolled back, or its client gone). What was made is held
// until every shard has a report from a check begun after now: a check
// begun earlier may not have seen the COMMIT.
func (r *Router) LearningClosed() { r.learn.txns.change(-1) }

// ViewDep is one dependency of a view (or materialized view) on a
// relation, as a shard's catalog lists it.
type ViewDep struct {
	ViewSchema, View string
	RefSchema, Ref   string
}

// ShardCatalog is what a health check read of one shard's catalog.
type ShardCatalog struct {
	Aggregates []string // names of aggregates
	Views      []ViewDep
	ViewDefs   []ViewDef
	Functions  []FunctionDef
	Inherits   []Inherit
	Triggers   []Trigger
	Defaults   []ColumnDefault
	Indexes    []Owned
	Sequences  []Owned
}

// Owned is a relation a shard's table owns: an index (pg_index), or a
// sequence made for a column (serial, identity, OWNED BY: pg_depend).
type Owned struct {
	Schema, Name       string
	TableSchema, Table string
}

// Inherit is one pg_inherits row of a shard: a partition or inheritance
// child of a table.
type Inherit struct {
	ChildSchema, Child   string
	ParentSchema, Parent string
}

type shardReport struct {
	deps     []ViewDep
	defs     []ViewDef
	inherits []Inherit
	triggers []Trigger
	defaults []ColumnDefault
	indexes  []Owned
	seqs     []Owned
	funcs    map[string]body // by name: its bodies, read
	checked  time.Time       // when the check that read them began
}

type createdView struct {
	table    string   // the sharded table it reads ("" if none)
	refTable string   // else a reference table it reads
	def      *viewDef // nil: not a plain view
}

// LearnAggregates tells the router that names (pg_proc.proname, exact
// case) are aggregate functions on some shard (CREATE AGGREGATE analysed
// here; the shards' catalogs come through CatalogChecked). It reports
// whether a name was new.
func (r *Router) LearnAggregates(names []string) bool {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	added := r.addAggregates(names)
	if added {
		r.publish()
	}
	return added
}

// addAggregates adds names to learn.aggs, or to learn.shadows when
// Postgres has an aggregate of that name too; learn.mu is held.
func (r *Router) addAggregates(names []string) bool {
	added := false
	for _, n := range names {
		set := &r.learn.aggs
		if builtinAggregates[n] {
			set = &r.learn.shadows
		}
		if n != "" && !(*set)[n] {
			if *set == nil {
				*set = map[string]bool{}
			}
			(*set)[n] = true
			added = true
		}
	}
	return added
}

// LearnedAggregates lists the names LearnAggregates added, sorted.
func (r *Router) LearnedAggregates() []string {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	return slices.Sorted(maps.Keys(r.learn.aggs))
}

// CatalogChecked records what a check of shard that began at checked
// read from its catalog: the aggregates it defines, and its views and
// functions (which replace the shard's last report).
func (r *Router) CatalogChecked(shard string, checked time.Time, cat ShardCatalog) {
	funcs := map[string]body{}
	for _, f := range cat.Functions {
		b := readBody(f.Body)
		b.volatile = f.Volatile
		if prev, ok := funcs[f.Name]; ok { // overloads: one name
			b = b.merge(prev)
		}
		funcs[f.Name] = b
	}
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.addAggregates(cat.Aggregates)
	if r.learn.reports == nil {
		r.learn.reports = map[string]shardReport{}
	}
	if prev, ok := r.learn.reports[shard]; ok && checked.Before(prev.checked) {
		// Checks overlap (the periodic one and a session's): one begun
		// earlier may have read the catalog before a COMMIT that a later
		// one saw.
		r.publish()
		return
	}
	r.learn.reports[shard] = shardReport{deps: cat.Views, defs: cat.ViewDefs, inherits: cat.Inherits, triggers: cat.Triggers, defaults: cat.Defaults, indexes: cat.Indexes, seqs: cat.Sequences, funcs: funcs, checked: checked}
	if open, settled := r.learn.txns.state(); open == 0 && r.reportedSince(settled) {
		r.learn.made.release(r.reportedSince)
	}
	r.publish()
}

// reportedSince tells whether every shard has a report from a check
// begun after at. learn.mu is held.
func (r *Router) reportedSince(at time.Time) bool {
	for _, s := range r.cfg.Shards {
		if rep, ok := r.learn.reports[s.Name]; !ok || !rep.checked.After(at) {
			return false
		}
	}
	return true
}

// viewCreated and viewDropped are CREATE VIEW reading sharded table
// table (or else reference table refTable), and DROP VIEW (or CREATE OR
// REPLACE VIEW that reads neither), analysed here.
func (r *Router) viewCreated(view string, v createdView) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.made.views.put(view, v)
	r.publish()
}

func (r *Router) viewDropped(view string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.forgetView(view)
	r.publish()
}

// viewRenamed is ALTER VIEW old RENAME TO name analysed here: the view,
// if it reads a sharded table, under its new name at once.
func (r *Router) viewRenamed(old, name string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	c := r.facts.Load()
	v := createdView{table: c.shardedView(old), refTable: c.referenceView(old)}
	if v.table == "" && v.refTable == "" {
		return
	}
	if d, ok := c.viewDefs()[old]; ok {
		v.def = &d
	}
	r.forgetView(old)
	r.learn.made.views.put(name, v)
	r.publish()
}

// forgetView removes view from what was made here and from every
// shard's report. learn.mu is held.
func (r *Router) forgetView(view string) {
	delete(r.learn.made.views, view)
	r.editReports(func(rep *shardReport) {
		rep.deps = without(rep.deps, func(d ViewDep) bool { return d.View == view })
		rep.defs = without(rep.defs, func(d ViewDef) bool { return d.View == view })
	})
}

// forget removes a dropped object from what was made here (drop) and
// from every shard's report (edit), and publishes the result.
func (r *Router) forget(drop func(*madeHere), edit func(*shardReport)) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	drop(&r.learn.made)
	r.editReports(edit)
	r.publish()
}

// editReports applies edit to every shard's report. learn.mu is held.
func (r *Router) editReports(edit func(rep *shardReport)) {
	for s, rep := range r.learn.reports {
		edit(&rep)
		r.learn.reports[s] = rep
	}
}

// without is s less what drop selects, in a new slice: a report's
// slices may be shared with the reports a reload cloned (Adopt).
func without[T any](s []T, drop func(T) bool) []T {
	return slices.DeleteFunc(slices.Clone(s), drop)
}

// functionCreated and functionsDropped are CREATE FUNCTION (or
// PROCEDURE) name with body b, and DROP of names, analysed here.
func (r *Router) functionCreated(name string, b body) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.made.funcs.put(name, b)
	r.publish()
}

func (r *Router) functionsDropped(names []string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	for _, name := range names {
		delete(r.learn.made.funcs, name)
		r.editReports(func(rep *shardReport) {
			if _, ok := rep.funcs[name]; ok {
				rep.funcs = maps.Clone(rep.funcs)
				delete(rep.funcs, name)
			}
		})
	}
	r.publish()
}

// childCreated and childDropped are CREATE TABLE ... PARTITION OF or
// INHERITS, ALTER TABLE ... ATTACH PARTITION, and DROP TABLE or DETACH
// PARTITION, analysed here (keys "schema.rel").
func (r *Router) childCreated(child, parent string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.made.children.put(child, parent)
	r.publish()
}

func (r *Router) childDropped(child string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	if r.facts.Load().parentOf(child) == "" {
		return
	}
	delete(r.learn.made.children, child)
	r.editReports(func(rep *shardReport) {
		rep.inherits = without(rep.inherits, func(i Inherit) bool { return i.ChildSchema+"."+i.Child == child })
	})
	r.publish()
}

// ownedCreated, ownedRenamed and ownedDropped are CREATE INDEX, ALTER
// INDEX ... RENAME and DROP INDEX analysed here, or (seq) the same of a
// sequence a table owns (keys "schema.name"; table "schema.rel").
func (r *Router) ownedCreated(seq bool, key, table string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.made(seq).put(key, table)
	r.publish()
}

func (r *Router) ownedRenamed(seq bool, key, to string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	table := r.facts.Load().ownerOf(seq, key)
	if table == "" {
		return
	}
	r.forgetOwned(seq, key)
	r.made(seq).put(to, table)
	r.publish()
}

func (r *Router) ownedDropped(seq bool, key string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.forgetOwned(seq, key)
	r.publish()
}

// made is where indexes or (seq) sequences made here are held.
// learn.mu is held.
func (r *Router) made(seq bool) *held[string] {
	if seq {
		return &r.learn.made.seqs
	}
	return &r.learn.made.indexes
}

// forgetOwned removes an index or (seq) sequence from what was made here
// and from every shard's report. learn.mu is held.
func (r *Router) forgetOwned(seq bool, key string) {
	delete(*r.made(seq), key)
	r.editReports(func(rep *shardReport) {
		list := &rep.indexes
		if seq {
			list = &rep.seqs
		}
		*list = without(*list, func(o Owned) bool { return o.Schema+"."+o.Name == key })
	})
}

// Adopt starts r from what old learned (a reload's new router: these
// are facts of the databases, not of the configuration).
func (r *Router) Adopt(old *Router) {
	old.learn.mu.Lock()
	aggs, shadows := maps.Clone(old.learn.aggs), maps.Clone(old.learn.shadows)
	reports := maps.Clone(old.learn.reports)
	made := old.learn.made.clone()
	old.learn.mu.Unlock()
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.aggs, r.learn.shadows, r.learn.reports, r.learn.made = aggs, shadows, reports, made
	r.learn.txns = old.learn.txns
	r.publish()
}

// publish stores the catalog the learning state gives, when it differs
// from the current one, and then clears the plan cache. learn.mu is held.
func (r *Router) publish() {
	next := &catalog{aggs: maps.Clone(r.learn.aggs), shadows: maps.Clone(r.learn.shadows), views: map[string]string{},
		refViews: map[string]string{}, defs: map[string]viewDef{}}
	next.childOf = map[string]string{}
	for _, sh := range r.cfg.Shards {
		for _, i := range r.learn.reports[sh.Name].inherits {
			next.childOf[i.ChildSchema+"."+i.Child] = i.ParentSchema + "." + i.Parent
		}
	}
	for child, c := range r.learn.made.children {
		next.childOf[child] = c.fact
	}
	next.children, next.childRels = r.descendants(next.childOf)
	next.indexOf, next.seqOf = map[string]string{}, map[string]string{}
	for _, sh := range r.cfg.Shards {
		rep := r.learn.reports[sh.Name]
		for _, i := range rep.indexes {
			next.indexOf[i.Schema+"."+i.Name] = i.TableSchema + "." + i.Table
		}
		for _, q := range rep.seqs {
			next.seqOf[q.Schema+"."+q.Name] = q.TableSchema + "." + q.Table
		}
	}
	for index, t := range r.learn.made.indexes {
		next.indexOf[index] = t.fact
	}
	for seq, t := range r.learn.made.seqs {
		next.seqOf[seq] = t.fact
	}
	next.shardedRels = maps.Clone(r.shardedRels)
	shardedRelNames(next.children, next.shardedRels)
	for name, v := range r.learn.made.views {
		if v.fact.table != "" {
			next.views[name] = v.fact.table
		} else {
			next.refViews[name] = v.fact.refTable
		}
		if v.fact.def != nil {
			next.defs[name] = *v.fact.def
		}
	}
	// Shards in configuration order, so that one definition is chosen
	// whatever the map's order (the shards' should be the same).
	for _, sh := range r.cfg.Shards {
		rep := r.learn.reports[sh.Name]
		r.viewsOver(rep.deps, next.children, false, next.views)
		r.viewsOver(rep.deps, next.children, true, next.refViews)
		for _, d := range rep.defs {
			if _, ok := next.defs[d.View]; !ok {
				next.defs[d.View] = viewDef{schema: d.Schema, sql: d.SQL}
			}
		}
	}
	maps.DeleteFunc(next.defs, func(name string, _ viewDef) bool { return next.views[name] == "" })
	maps.DeleteFunc(next.refViews, func(name string, _ string) bool { return next.views[name] != "" })
	functions := r.learnedFunctions()
	next.funcs = r.shardedFunctions(functions, next)
	next.divergent = divergentFunctions(functions)
	next.writing = writingFunctions(functions)
	next.setting = settingFunctions(functions)
	next.defaults = r.divergentDefaults(r.learnedDefaults(), next)
	next.triggers = r.triggerRisks(r.learnedTriggers(), functions, next)
	if cur := cmp.Or(r.facts.Load(), &catalog{}); cur.same(next) {
		return
	}
	// Stored before the cache is cleared: a statement analysed with the
	// old facts is then either cleared or not stored (planCache.put).
	r.facts.Store(next)
	r.cache.clear()
}

// same tells whether c and o read statements alike (children and
// viewTables follow from childOf and views).
func (c *catalog) same(o *catalog) bool {
	return maps.Equal(c.aggs, o.aggs) && maps.Equal(c.shadows, o.shadows) && maps.Equal(c.views, o.views) &&
		maps.Equal(c.refViews, o.refViews) &&
		maps.EqualFunc(c.defs, o.defs, viewDef.equal) && maps.Equal(c.childOf, o.childOf) &&
		maps.Equal(c.funcs, o.funcs) && maps.EqualFunc(c.triggers, o.triggers, slices.Equal) &&
		maps.Equal(c.divergent, o.divergent) && maps.EqualFunc(c.defaults, o.defaults, slices.Equal) &&
		maps.Equal(c.writing, o.writing) && maps.Equal(c.setting, o.setting) && maps.Equal(c.indexOf, o.indexOf) && maps.Equal(c.seqOf, o.seqOf)
}

// learnedFunctions are the bodies of every function the shards reported
// or CREATE FUNCTION here gave, by name (the union over shards and
// overloads). learn.mu is held.
func (r *Router) learnedFunctions() map[string]body {
	out := map[string]body{}
	add := func(name string, b body) {
		if prev, ok := out[name]; ok {
			b = b.merge(prev)
		}
		out[name] = b
	}
	for _, rep := range r.learn.reports {
		for name, b := range rep.funcs {
			add(name, b)
		}
	}
	for name, f := range r.learn.made.funcs {
		add(name, f.fact)
	}
	return out
}

// descendants resolves childOf to the mapped table each child descends
// from, through any number of levels (children of unmapped tables are
// left out), and the relation names of those children.
func (r *Router) descendants(childOf map[string]string) (map[string]*tableInfo, map[string]bool) {
	out, rels := map[string]*tableInfo{}, map[string]bool{}
	for changed := true; changed; {
		changed = false
		for child, parent := range childOf {
			if out[child] != nil || r.tables[child] != nil {
				continue // a mapped child keeps its own entry
			}
			p := r.tables[parent]
			if p == nil {
				p = out[parent]
			}
			if p == nil {
				continue
			}
			schema, rel, _ := strings.Cut(child, ".")
			name := rel
			if schema != "public" {
				name = child
			}
			out[child] = &tableInfo{name: name, key: p.key, ref: p.ref, strat: p.strat}
			rels[rel] = true
			changed = true
		}
	}
	return out, rels
}

// viewsOver adds to out the views of deps that read a sharded table of
// the map (ref: a reference table), or a child of one, directly or
// through other such views.
func (r *Router) viewsOver(deps []ViewDep, children map[string]*tableInfo, wantRef bool, out map[string]string) {
	reads := map[string]string{} // "schema.view" -> such a table it reads
	for changed := true; changed; {
		changed = false
		for _, d := range deps {
			key := d.ViewSchema + "." + d.View
			if reads[key] != "" {
				continue
			}
			ref := d.RefSchema + "." + d.Ref
			if t := cmp.Or(r.tables[ref], children[ref]); t != nil && t.ref == wantRef {
				reads[key] = t.name
			} else if via := reads[ref]; via != "" {
				reads[key] = via
			} else {
				continue
			}
			out[d.View] = reads[key]
			changed = true
		}
	}
}

func (d viewDef) equal(e viewDef) bool {
	return d.schema == e.schema && d.sql == e.sql && slices.Equal(d.cols, e.cols)
}

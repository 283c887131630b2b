package router

import (
	"maps"
	"slices"
	"sync"
	"time"
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
	// views are views and materialized views that read a sharded table
	// (directly or through other views), by relation name, each with one
	// such table. A view is not in the map, so the router would send it
	// to the default shard only: its rows there are part of the answer.
	views map[string]string
	// defs are the definitions of the plain views among them, by
	// relation name: a SELECT reads such a view as the subquery it is
	// (inlineViews), which the router can route and merge.
	defs map[string]viewDef
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

func (c *catalog) viewDefs() map[string]viewDef {
	if c == nil {
		return nil
	}
	return c.defs
}

// shardedView returns the sharded table view rel reads, or "".
func (c *catalog) shardedView(rel string) string {
	if c == nil {
		return ""
	}
	return c.views[rel]
}

// learning is the writers' side of Router.facts.
//
// Aggregate names only accumulate: a name read as an aggregate that no
// longer is one is gathered or refused, an error at worst.
//
// Views come from two sources. Each shard's health check reports its
// catalog's view dependencies (CatalogChecked), which replace that shard's
// previous report, so a view dropped behind the proxy's back stops
// being refused within one check. CREATE VIEW and DROP VIEW analysed
// here take effect at once: a created view is held (created) until every
// shard has a report from a check begun after it; a dropped one leaves
// every report at once (a check racing the DROP may bring it back until
// the next one, which refuses, never misreads).
type learning struct {
	mu      sync.Mutex
	aggs    map[string]bool
	reports map[string]viewReport // by shard
	created map[string]createdView
}

// ViewDep is one dependency of a view (or materialized view) on a
// relation, as a shard's catalog lists it.
type ViewDep struct {
	ViewSchema, View string
	RefSchema, Ref   string
}

type viewReport struct {
	deps    []ViewDep
	defs    []ViewDef
	checked time.Time // when the check that read deps began
}

type createdView struct {
	table string
	def   *viewDef // nil: not a plain view
	at    time.Time
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

// addAggregates adds names to learn.aggs; learn.mu is held.
func (r *Router) addAggregates(names []string) bool {
	added := false
	for _, n := range names {
		if n != "" && !builtinAggregates[n] && !r.learn.aggs[n] {
			if r.learn.aggs == nil {
				r.learn.aggs = map[string]bool{}
			}
			r.learn.aggs[n] = true
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
// read from its catalog: the aggregates it defines, and its views'
// dependencies and definitions (which replace the shard's last report).
func (r *Router) CatalogChecked(shard string, checked time.Time, aggs []string, deps []ViewDep, defs []ViewDef) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.addAggregates(aggs)
	if r.learn.reports == nil {
		r.learn.reports = map[string]viewReport{}
	}
	r.learn.reports[shard] = viewReport{deps: deps, defs: defs, checked: checked}
	for name, v := range r.learn.created {
		seen := true
		for _, s := range r.cfg.Shards {
			if rep, ok := r.learn.reports[s.Name]; !ok || !rep.checked.After(v.at) {
				seen = false
			}
		}
		if seen {
			delete(r.learn.created, name)
		}
	}
	r.publish()
}

// viewCreated and viewDropped are CREATE VIEW reading sharded table
// table, and DROP VIEW (or CREATE OR REPLACE VIEW that reads none),
// analysed here.
func (r *Router) viewCreated(view, table string, def *viewDef) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	if r.learn.created == nil {
		r.learn.created = map[string]createdView{}
	}
	r.learn.created[view] = createdView{table: table, def: def, at: time.Now()}
	r.publish()
}

func (r *Router) viewDropped(view string) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	delete(r.learn.created, view)
	for s, rep := range r.learn.reports {
		rep.deps = slices.DeleteFunc(slices.Clone(rep.deps), func(d ViewDep) bool { return d.View == view })
		rep.defs = slices.DeleteFunc(slices.Clone(rep.defs), func(d ViewDef) bool { return d.View == view })
		r.learn.reports[s] = rep
	}
	r.publish()
}

// Adopt starts r from what old learned (a reload's new router: these
// are facts of the databases, not of the configuration).
func (r *Router) Adopt(old *Router) {
	old.learn.mu.Lock()
	aggs := maps.Clone(old.learn.aggs)
	reports := maps.Clone(old.learn.reports)
	created := maps.Clone(old.learn.created)
	old.learn.mu.Unlock()
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.aggs, r.learn.reports, r.learn.created = aggs, reports, created
	r.publish()
}

// publish stores the catalog the learning state gives, when it differs
// from the current one, and then clears the plan cache. learn.mu is held.
func (r *Router) publish() {
	next := &catalog{aggs: maps.Clone(r.learn.aggs), views: map[string]string{}, defs: map[string]viewDef{}}
	for name, v := range r.learn.created {
		next.views[name] = v.table
		if v.def != nil {
			next.defs[name] = *v.def
		}
	}
	// Shards in configuration order, so that one definition is chosen
	// whatever the map's order (the shards' should be the same).
	for _, sh := range r.cfg.Shards {
		rep := r.learn.reports[sh.Name]
		r.shardedViews(rep.deps, next.views)
		for _, d := range rep.defs {
			if _, ok := next.defs[d.View]; !ok {
				next.defs[d.View] = viewDef{schema: d.Schema, sql: d.SQL}
			}
		}
	}
	maps.DeleteFunc(next.defs, func(name string, _ viewDef) bool { return next.views[name] == "" })
	cur := r.facts.Load()
	if cur != nil && maps.Equal(cur.aggs, next.aggs) && maps.Equal(cur.views, next.views) &&
		maps.EqualFunc(cur.defs, next.defs, viewDef.equal) ||
		cur == nil && len(next.aggs) == 0 && len(next.views) == 0 {
		return
	}
	// Stored before the cache is cleared: a statement analysed with the
	// old facts is then either cleared or not stored (planCache.put).
	r.facts.Store(next)
	r.cache.clear()
}

// shardedViews adds to out the views of deps that read a sharded table
// of the map, directly or through other such views.
func (r *Router) shardedViews(deps []ViewDep, out map[string]string) {
	reads := map[string]string{} // "schema.view" -> a sharded table it reads
	for changed := true; changed; {
		changed = false
		for _, d := range deps {
			key := d.ViewSchema + "." + d.View
			if reads[key] != "" {
				continue
			}
			ref := d.RefSchema + "." + d.Ref
			if t := r.tables[ref]; t != nil && !t.ref {
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

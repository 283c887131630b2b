package router

import (
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A trigger runs on the shard where the row it fires for is written. Its
// function's writes are then made on that shard only, which is wrong in
// three cases the router can see from the function's body (readBody):
//
//   - a trigger on a sharded table that writes a reference table (stock
//     kept in products, updated from order_items): only the row's shard's
//     copy changes, and the copies diverge;
//   - a trigger on a reference table that writes a sharded table: every
//     shard's copy fires it, and the row is written once per shard;
//   - a trigger on a sharded table that writes a table sharded by another
//     strategy: the row lands on the first table's shard, not its own.
//
// Rules (CREATE RULE ... ON INSERT TO t DO ALSO ...) act the same way
// and are read the same way, from their definitions. A write that fires
// such a trigger or rule is refused (0A000) unless a shard hint takes
// responsibility for it. Writes to a table sharded by the
// same strategy are taken to follow the row's key (an audit or history
// table of the same key), as colocated statements are.

// Trigger event bits, as pg_trigger.tgtype and CreateTrigStmt.events
// have them.
const (
	triggerInsert   = 1 << 2
	triggerDelete   = 1 << 3
	triggerUpdate   = 1 << 4
	triggerTruncate = 1 << 5
)

// Trigger is one user trigger, or rule, a shard's catalog defines.
type Trigger struct {
	Schema, Table, Name string
	Function            string // a trigger's pg_proc.proname
	Events              int    // tgtype; a rule's event as a trigger's bit
	Rule                string // a rule's definition (pg_get_ruledef); "" for a trigger
}

func (t Trigger) key() string {
	if t.Rule != "" {
		return t.Schema + "." + t.Table + "/rule " + t.Name
	}
	return t.Schema + "." + t.Table + "/" + t.Name
}

// ruleEvent is the trigger event bit of a rule's event.
func ruleEvent(c pg.CmdType) int {
	switch c {
	case pg.CmdType_CMD_UPDATE:
		return triggerUpdate
	case pg.CmdType_CMD_INSERT:
		return triggerInsert
	case pg.CmdType_CMD_DELETE:
		return triggerDelete
	}
	return 0
}

// triggerRisk is a trigger whose function writes where its table's rows
// cannot.
type triggerRisk struct {
	events int
	what   string // "trigger t on orders runs f(), which ..."
}

// triggerRisks finds, among triggers, those whose functions (followed
// through the functions they call) write where their tables' rows
// cannot, by the table's "schema.rel".
func (r *Router) triggerRisks(triggers []Trigger, functions map[string]body, facts *catalog) map[string][]triggerRisk {
	if len(triggers) == 0 {
		return nil
	}
	// Each function's writes, with those of the functions it calls (to
	// a fixed point: calls may be mutual).
	writes := map[string]map[string]bool{}
	for f, b := range functions {
		writes[f] = maps.Clone(b.writes)
	}
	for changed := true; changed; {
		changed = false
		for f, b := range functions {
			for g := range b.words {
				for w := range writes[g] {
					if g != f && !writes[f][w] {
						writes[f][w] = true
						changed = true
					}
				}
			}
		}
	}
	out := map[string][]triggerRisk{}
	for _, t := range triggers {
		home, info, _ := r.table(facts, t.Schema, t.Table)
		if info == nil {
			continue
		}
		tw, runs := writes[t.Function], fmt.Sprintf("trigger %s on %s runs %s(), which", t.Name, info.name, t.Function)
		if t.Rule != "" {
			b := readBody(t.Rule)
			tw, runs = maps.Clone(b.writes), fmt.Sprintf("rule %s on %s", t.Name, info.name)
			for g := range b.words {
				maps.Copy(tw, writes[g])
			}
		}
		key := home + "." + t.Table
		if info.ref {
			// Every copy fires it: a value it computes differs by copy.
			why := facts.divergentFuncs()[t.Function]
			if t.Rule != "" {
				b := readBody(t.Rule)
				if w := firstIn(b.words, divergentWords); w != "" {
					why = "calls " + w
				} else if f := firstIn(b.words, facts.divergentFuncs()); f != "" {
					why = fmt.Sprintf("calls %s(), which %s", f, facts.divergentFuncs()[f])
				}
			}
			if why != "" {
				out[key] = append(out[key], triggerRisk{events: t.Events,
					what: fmt.Sprintf("%s %s, and each shard's copy of %s would get its own value", runs, why, info.name)})
				continue
			}
		}
		for _, w := range slices.Sorted(maps.Keys(tw)) {
			target := r.writeTarget(facts, w)
			var why string
			switch {
			case target == nil:
				continue
			case info.ref && !target.ref:
				why = fmt.Sprintf("writes sharded table %s once for each shard's copy of %s", target.name, info.name)
			case !info.ref && target.ref:
				why = fmt.Sprintf("writes reference table %s on the row's shard only", target.name)
			case !info.ref && !target.ref && target.strat.Name() != info.strat.Name():
				why = fmt.Sprintf("writes %s, sharded by %s, on the shard of the row of %s (sharded by %s)",
					target.name, target.strat.Name(), info.name, info.strat.Name())
			default:
				continue
			}
			out[key] = append(out[key], triggerRisk{events: t.Events, what: runs + " " + why})
			break
		}
	}
	return out
}

// triggerRefusal is the error for statement st when a write of it fires
// a trigger of triggerRisks; nil otherwise.
func triggerRefusal(st *Statement) *pgconn.PgError {
	if st.facts == nil || len(st.facts.triggers) == 0 {
		return nil
	}
	for _, u := range st.uses {
		if u.fires == 0 {
			continue
		}
		for _, risk := range st.facts.triggers[u.home+"."+u.rel] {
			if risk.events&u.fires != 0 {
				return pgError(codeFeatureNotSupport, risk.what+"; shardproxy cannot run it correctly across shards",
					"make the trigger's write a statement of its own, which shardproxy routes (in the same transaction to keep it atomic)")
			}
		}
	}
	return nil
}

// learnedTriggers lists the triggers the shards reported and CREATE TRIGGER
// here gave, one per key. learn.mu is held.
func (r *Router) learnedTriggers() []Trigger {
	byKey := map[string]Trigger{}
	for _, sh := range r.cfg.Shards {
		for _, t := range r.learn.reports[sh.Name].triggers {
			if _, ok := byKey[t.key()]; !ok {
				byKey[t.key()] = t
			}
		}
	}
	for k, c := range r.learn.made.triggers {
		byKey[k] = c.fact
	}
	keys := slices.Sorted(maps.Keys(byKey))
	out := make([]Trigger, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func (r *Router) triggerCreated(t Trigger) {
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	r.learn.made.triggers.put(t.key(), t)
	r.publish()
}

func (r *Router) triggerDropped(key string) {
	r.forget(func(m *madeHere) { delete(m.triggers, key) }, func(rep *shardReport) {
		rep.triggers = without(rep.triggers, func(t Trigger) bool { return t.key() == key })
	})
}

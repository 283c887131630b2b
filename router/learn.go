package router

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// learnFromDDL tells the router what statement n (whose text is text)
// creates, drops or renames among the catalog objects it reads
// (catalog.go), before the shards have run it: the next statement of the
// same Query string may already depend on it. The shards' catalogs
// confirm or correct it at the next health checks. CREATE VIEW is
// learned by the analyzer (analyzer.view): which tables a view reads is
// part of the statement's analysis.
func (r *Router) learnFromDDL(n *pg.Node, text string, facts *catalog) {
	r.learnIndex(n, facts)
	r.learnSequence(n, facts)
	switch x := n.Node.(type) {
	case *pg.Node_DefineStmt:
		if names := stringItems(x.DefineStmt.Defnames); x.DefineStmt.Kind == pg.ObjectType_OBJECT_AGGREGATE && len(names) > 0 {
			r.LearnAggregates(names[len(names)-1:])
		}
	case *pg.Node_CreateFunctionStmt:
		// The whole statement is read as the body: the body, whatever
		// the language, is part of it.
		if names := stringItems(x.CreateFunctionStmt.Funcname); len(names) > 0 {
			r.functionCreated(names[len(names)-1], readBody(text))
		}
	case *pg.Node_CreateTrigStmt:
		c := x.CreateTrigStmt
		if names := stringItems(c.Funcname); c.Relation != nil && len(names) > 0 {
			home, _, _ := r.table(facts, c.Relation.Schemaname, c.Relation.Relname)
			r.triggerCreated(Trigger{Schema: home, Table: c.Relation.Relname, Name: c.Trigname,
				Function: names[len(names)-1], Events: int(c.Events)})
		}
	case *pg.Node_RuleStmt:
		c := x.RuleStmt
		if c.Relation != nil && ruleEvent(c.Event) != 0 {
			home, _, _ := r.table(facts, c.Relation.Schemaname, c.Relation.Relname)
			r.triggerCreated(Trigger{Schema: home, Table: c.Relation.Relname, Name: c.Rulename,
				Events: ruleEvent(c.Event), Rule: text})
		}
	case *pg.Node_CreateStmt: // PARTITION OF, INHERITS; defaults
		r.createdTable(facts, x.CreateStmt)
		for _, p := range x.CreateStmt.InhRelations {
			if rv := p.GetRangeVar(); rv != nil {
				r.attach(facts, x.CreateStmt.Relation, rv)
			}
		}
	case *pg.Node_AlterTableStmt:
		for _, cmd := range x.AlterTableStmt.Cmds {
			at := cmd.GetAlterTableCmd()
			r.alteredColumns(facts, x.AlterTableStmt.Relation, at)
			pc := at.GetDef().GetPartitionCmd()
			switch {
			case pc == nil:
			case at.Subtype == pg.AlterTableType_AT_AttachPartition:
				r.attach(facts, pc.Name, x.AlterTableStmt.Relation)
			case at.Subtype == pg.AlterTableType_AT_DetachPartition:
				r.childDropped(r.childKey(facts, pc.Name))
			}
		}
	case *pg.Node_RenameStmt:
		r.renamed(x.RenameStmt, facts)
	case *pg.Node_DropStmt:
		r.dropped(x.DropStmt, facts)
	}
}

// renamed moves a known view or child table to its new name: left to
// the next health check, the new name would be read on the default shard
// alone until then.
func (r *Router) renamed(rn *pg.RenameStmt, facts *catalog) {
	if rn.Relation == nil {
		return
	}
	switch rn.RenameType {
	case pg.ObjectType_OBJECT_VIEW:
		r.viewRenamed(rn.Relation.Relname, rn.Newname)
	case pg.ObjectType_OBJECT_TABLE:
		old := r.childKey(facts, rn.Relation)
		if parent := facts.parentOf(old); parent != "" {
			r.childDropped(old)
			schema, _, _ := strings.Cut(old, ".")
			r.childCreated(schema+"."+rn.Newname, parent)
		}
	}
}

// dropped forgets what DROP d removes.
func (r *Router) dropped(d *pg.DropStmt, facts *catalog) {
	for _, o := range d.Objects {
		names := stringItems(o.GetList().GetItems())
		switch d.RemoveType {
		case pg.ObjectType_OBJECT_FUNCTION, pg.ObjectType_OBJECT_PROCEDURE, pg.ObjectType_OBJECT_ROUTINE:
			if names := stringItems(o.GetObjectWithArgs().GetObjname()); len(names) > 0 {
				r.functionsDropped(names[len(names)-1:])
			}
		case pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW:
			if len(names) > 0 {
				r.viewDropped(names[len(names)-1])
			}
		case pg.ObjectType_OBJECT_TABLE:
			switch len(names) {
			case 1:
				r.childDropped(r.childKey(facts, &pg.RangeVar{Relname: names[0]}))
				home, _, _ := r.table(facts, "", names[0])
				r.defaultsDropped(home + "." + names[0])
			case 2:
				r.childDropped(names[0] + "." + names[1])
				r.defaultsDropped(names[0] + "." + names[1])
			}
		case pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE: // [schema.]table.name
			if len(names) < 2 {
				continue
			}
			t := Trigger{Table: names[len(names)-2], Name: names[len(names)-1]}
			if len(names) > 2 {
				t.Schema = names[len(names)-3]
			}
			t.Schema, _, _ = r.table(facts, t.Schema, t.Table)
			if d.RemoveType == pg.ObjectType_OBJECT_RULE {
				t.Rule = "dropped" // keyed as a rule
			}
			r.triggerDropped(t.key())
		}
	}
}

// attach records child as a child of parent when parent is mapped or a
// child of a mapped table.
func (r *Router) attach(facts *catalog, child, parent *pg.RangeVar) {
	if child == nil || parent == nil {
		return
	}
	home, info, err := r.table(facts, parent.Schemaname, parent.Relname)
	if err != nil || info == nil {
		return
	}
	r.childCreated(r.childKey(facts, child), home+"."+parent.Relname)
}

// childKey is the "schema.rel" of a child table named rv. An unqualified
// name is taken to be where CREATE TABLE puts it under the default
// search_path: the login user's schema when the map has tables there
// (so it exists), else public; the shards' catalogs correct a guess.
func (r *Router) childKey(facts *catalog, rv *pg.RangeVar) string {
	if rv.Schemaname != "" {
		return rv.Schemaname + "." + rv.Relname
	}
	if home, info, err := r.table(facts, "", rv.Relname); err == nil && info != nil {
		return home + "." + rv.Relname // a known child
	}
	if r.loginSchema && len(r.logins) == 1 {
		return r.logins[0] + "." + rv.Relname
	}
	return "public." + rv.Relname
}

// needsOriginalText tells whether statement n must be analysed from its
// original text, not the normalised one whose literals are lifted out:
// CREATE VIEW keeps its query (viewDef), and CREATE FUNCTION, CREATE RULE
// and DO are read for their bodies (readBody).
func needsOriginalText(n *pg.Node) bool {
	switch n.Node.(type) {
	case *pg.Node_ViewStmt, *pg.Node_CreateFunctionStmt, *pg.Node_RuleStmt, *pg.Node_DoStmt:
		return true
	}
	return false
}

// checkCatalogFacts refuses statement st (n, text) for what the shards'
// catalogs say of it: a call of a function, or a DO block, that touches
// sharded data (functions.go); a write that fires a trigger or rule
// whose writes cannot follow the row (triggers.go). It also notes the
// built-in aggregate names a user aggregate shadows (Route refuses their
// merge under a custom search_path).
func (r *Router) checkCatalogFacts(st *Statement, n *pg.Node, text string) {
	if st.Kind != KindDDL || st.createAs {
		if err := r.functionRefusal(n, text, st.facts); err != nil && st.err == nil {
			st.err = err
		}
	}
	if err := triggerRefusal(st); err != nil && st.err == nil {
		st.err = err
	}
	if err := r.replicaRefusal(st, n); err != nil && st.err == nil {
		st.err = err
	}
	if shadows := st.facts.shadowed(); len(shadows) > 0 {
		walk(n, func(c *pg.Node) bool {
			if f := c.GetFuncCall(); f != nil && f.Over == nil {
				if names := stringItems(f.Funcname); len(names) == 1 && shadows[names[0]] && !slices.Contains(st.shadowedAggs, names[0]) {
					st.shadowedAggs = append(st.shadowedAggs, names[0])
				}
			}
			return true
		})
	}
}

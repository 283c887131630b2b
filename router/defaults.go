package router

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Column defaults of reference tables (replicas.go): an INSERT that
// leaves created_at to DEFAULT now(), or an id to its serial sequence,
// has each copy compute the value on its own. The router learns which
// columns of reference tables have such defaults from the shards'
// catalogs (pg_attrdef and identity columns, with each column's
// position for INSERTs without a column list) and from CREATE, ALTER and
// DROP TABLE through the proxy, and refuses the writes that would use
// them.

// ColumnDefault is a column of a shard's table whose default calls a
// function or reads the time (pg_attrdef), or an identity column.
type ColumnDefault struct {
	Schema, Table, Column string
	Position              int    // among the table's columns, from 1; 0 when not known
	Expr                  string // pg_get_expr of the default; "" for an identity column
	Identity              bool
	node                  *pg.Node // the parsed default, from CREATE/ALTER TABLE here
}

func (d ColumnDefault) key() string { return d.Schema + "." + d.Table }

// divergentDefault is a column of a reference table whose default each
// copy computes on its own.
type divergentDefault struct {
	col  string
	pos  int // 0: not known
	what string
}

// divergentDefaults finds, among defaults, those of reference tables
// whose value each copy computes on its own, by the table's
// "schema.rel". Expressions are parsed once and kept in learn.exprs
// while some shard still reports them. learn.mu is held.
func (r *Router) divergentDefaults(defaults []ColumnDefault, next *catalog) map[string][]divergentDefault {
	out := map[string][]divergentDefault{}
	used := map[string]*pg.Node{}
	for _, d := range defaults {
		if t := cmp.Or(r.tables[d.key()], next.children[d.key()]); t == nil || !t.ref {
			continue
		}
		what := ""
		switch {
		case d.Identity:
			what = d.Column + "'s identity sequence"
		default:
			n := d.node
			if n == nil {
				var ok bool
				if n, ok = r.learn.exprs[d.Expr]; !ok {
					n = parseExpr(d.Expr)
				}
				used[d.Expr] = n
			}
			if n == nil {
				what = fmt.Sprintf("%s's default %s", d.Column, d.Expr) // unreadable: taken to differ
			} else if risk := divergence(n, next.divergent, nil); risk != nil {
				what = fmt.Sprintf("%s's default %s", d.Column, cmp.Or(d.Expr, strings.TrimSuffix(risk.what, ",")))
			}
		}
		if what != "" {
			out[d.key()] = append(out[d.key()], divergentDefault{col: d.Column, pos: d.Position, what: what})
		}
	}
	r.learn.exprs = used
	return out
}

// parseExpr parses a default expression as pg_get_expr prints it; nil
// if it does not parse.
func parseExpr(expr string) *pg.Node {
	tree, err := pg.Parse("SELECT " + expr)
	if err != nil || len(tree.Stmts) != 1 {
		return nil
	}
	targets := tree.Stmts[0].Stmt.GetSelectStmt().GetTargetList()
	if len(targets) != 1 {
		return nil
	}
	return targets[0].GetResTarget().GetVal()
}

// defaultsRisk finds a write in n to a reference table that leaves a
// column to a default each copy computes on its own (divergentDefaults):
// an INSERT, MERGE's INSERT or COPY FROM that does not give it, or a
// DEFAULT written for it.
func (r *Router) defaultsRisk(n *pg.Node, facts *catalog) *replicaRisk {
	if facts == nil || len(facts.defaults) == 0 {
		return nil
	}
	var risk *replicaRisk
	defaultsOf := func(rv *pg.RangeVar) []divergentDefault {
		if rv == nil {
			return nil
		}
		home, _, _ := r.table(facts, rv.Schemaname, rv.Relname)
		return facts.defaults[home+"."+rv.Relname]
	}
	refuse := func(d divergentDefault) {
		if risk != nil {
			return
		}
		risk = &replicaRisk{d.what, fmt.Sprintf("give %s a value in the statement, computed once (in the application, or SELECT it first)", d.col)}
		if strings.HasSuffix(d.what, "identity sequence") {
			risk.hint += "; a GENERATED ALWAYS column takes one with OVERRIDING SYSTEM VALUE"
		}
	}
	// omits checks rows written to a table with defaults defs: cols are
	// the named target columns (none: by position, the first width of
	// them; -1 when not known), rows the VALUES rows, where a DEFAULT
	// item leaves its column to the default too.
	omits := func(defs []divergentDefault, cols []*pg.Node, width int, rows [][]*pg.Node) {
		for _, d := range defs {
			p := d.pos - 1
			if len(cols) > 0 {
				p = slices.IndexFunc(cols, func(c *pg.Node) bool { return c.GetResTarget().GetName() == d.col })
			} else if d.pos == 0 || width < d.pos {
				p = -1
			}
			if p < 0 || slices.ContainsFunc(rows, func(row []*pg.Node) bool { return p < len(row) && row[p].GetSetToDefault() != nil }) {
				refuse(d)
			}
		}
	}
	// setsDefault checks SET lists: col = DEFAULT.
	setsDefault := func(defs []divergentDefault, targets []*pg.Node) {
		for _, d := range defs {
			for _, t := range targets {
				if rt := t.GetResTarget(); rt.GetName() == d.col && rt.GetVal().GetSetToDefault() != nil {
					refuse(d)
				}
			}
		}
	}
	walk(n, func(c *pg.Node) bool {
		switch x := c.Node.(type) {
		case *pg.Node_InsertStmt:
			ins := x.InsertStmt
			if defs := defaultsOf(ins.Relation); len(defs) > 0 {
				width, rows := rowSource(ins.SelectStmt)
				omits(defs, ins.Cols, width, rows)
				if oc := ins.OnConflictClause; oc != nil {
					setsDefault(defs, oc.TargetList)
				}
			}
		case *pg.Node_UpdateStmt:
			if defs := defaultsOf(x.UpdateStmt.Relation); len(defs) > 0 {
				setsDefault(defs, x.UpdateStmt.TargetList)
			}
		case *pg.Node_CopyStmt:
			if cp := x.CopyStmt; cp.IsFrom {
				if defs := defaultsOf(cp.Relation); len(defs) > 0 && len(cp.Attlist) > 0 { // no list: every column
					var cols []*pg.Node
					for _, a := range cp.Attlist {
						if s := a.GetString_(); s != nil {
							cols = append(cols, &pg.Node{Node: &pg.Node_ResTarget{ResTarget: &pg.ResTarget{Name: s.Sval}}})
						}
					}
					omits(defs, cols, 0, nil)
				}
			}
		case *pg.Node_MergeStmt:
			if defs := defaultsOf(x.MergeStmt.Relation); len(defs) > 0 {
				for _, w := range x.MergeStmt.MergeWhenClauses {
					mw := w.GetMergeWhenClause()
					switch mw.GetCommandType() {
					case pg.CmdType_CMD_INSERT:
						omits(defs, mw.TargetList, len(mw.Values), [][]*pg.Node{mw.Values}) // none: DEFAULT VALUES
					case pg.CmdType_CMD_UPDATE:
						setsDefault(defs, mw.TargetList)
					}
				}
			}
		}
		return risk == nil
	})
	return risk
}

// rowSource is the width of an INSERT's rows (-1 when not known: a
// SELECT of *) and its VALUES rows; DEFAULT VALUES (no source) has none.
func rowSource(n *pg.Node) (int, [][]*pg.Node) {
	sel := n.GetSelectStmt()
	for sel != nil && sel.Larg != nil { // a set operation: its first arm's width
		sel = sel.Larg
	}
	if sel == nil {
		return 0, nil
	}
	if len(sel.ValuesLists) > 0 {
		var rows [][]*pg.Node
		for _, v := range sel.ValuesLists {
			rows = append(rows, v.GetList().GetItems())
		}
		return len(rows[0]), rows
	}
	for _, t := range sel.TargetList {
		if cr := t.GetResTarget().GetVal().GetColumnRef(); cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
			return -1, nil
		}
	}
	return len(sel.TargetList), nil
}

// learnedDefaults lists the defaults of every table: what CREATE or
// ALTER TABLE here gave, else the report of the first shard, in
// configuration order, that has the table. learn.mu is held.
func (r *Router) learnedDefaults() []ColumnDefault {
	byTable := map[string][]ColumnDefault{}
	for _, sh := range r.cfg.Shards {
		mine := map[string]bool{}
		for _, d := range r.learn.reports[sh.Name].defaults {
			if _, had := byTable[d.key()]; had && !mine[d.key()] {
				continue
			}
			mine[d.key()] = true
			byTable[d.key()] = append(byTable[d.key()], d)
		}
	}
	for k, h := range r.learn.made.defaults {
		byTable[k] = h.fact
	}
	var out []ColumnDefault
	for _, k := range slices.Sorted(maps.Keys(byTable)) {
		out = append(out, byTable[k]...)
	}
	return out
}

// defaultsChanged applies change to the defaults of table rv, when it is
// a reference table, as CREATE or ALTER TABLE here made them.
func (r *Router) defaultsChanged(facts *catalog, rv *pg.RangeVar, change func(schema string, cur []ColumnDefault) []ColumnDefault) {
	if rv == nil {
		return
	}
	home, info, _ := r.table(facts, rv.Schemaname, rv.Relname)
	if info == nil || !info.ref {
		return
	}
	key := home + "." + rv.Relname
	r.learn.mu.Lock()
	defer r.learn.mu.Unlock()
	var cur []ColumnDefault
	for _, d := range r.learnedDefaults() {
		if d.key() == key {
			cur = append(cur, d)
		}
	}
	r.learn.made.defaults.put(key, change(home, cur))
	r.publish()
}

// defaultsDropped forgets the defaults of table key ("schema.rel").
func (r *Router) defaultsDropped(key string) {
	r.forget(func(m *madeHere) { delete(m.defaults, key) }, func(rep *shardReport) {
		rep.defaults = without(rep.defaults, func(d ColumnDefault) bool { return d.key() == key })
	})
}

// serialTypes are the column types that make a sequence default.
var serialTypes = map[string]bool{"serial": true, "bigserial": true, "smallserial": true, "serial2": true, "serial4": true, "serial8": true}

// columnDefault is the default of column definition cd (pos: its
// position, 0 when not known), if it has one that may call a function.
func columnDefault(schema, table string, cd *pg.ColumnDef, pos int) (ColumnDefault, bool) {
	d := ColumnDefault{Schema: schema, Table: table, Column: cd.Colname, Position: pos}
	if names := stringItems(cd.GetTypeName().GetNames()); len(names) == 1 && serialTypes[names[0]] {
		d.Expr = fmt.Sprintf("nextval('%s_%s_seq'::regclass)", table, cd.Colname)
		return d, true
	}
	for _, c := range cd.Constraints {
		switch con := c.GetConstraint(); con.GetContype() {
		case pg.ConstrType_CONSTR_DEFAULT:
			if con.RawExpr.GetAConst() == nil {
				d.node = con.RawExpr
				return d, true
			}
		case pg.ConstrType_CONSTR_IDENTITY:
			d.Identity = true
			return d, true
		}
	}
	return d, false
}

// createdTable learns the defaults of CREATE TABLE c.
func (r *Router) createdTable(facts *catalog, c *pg.CreateStmt) {
	r.defaultsChanged(facts, c.Relation, func(schema string, _ []ColumnDefault) []ColumnDefault {
		var out []ColumnDefault
		pos := 0
		for _, e := range c.TableElts {
			if e.GetTableLikeClause() != nil {
				pos = math.MinInt // LIKE's columns: positions not known
			}
			if cd := e.GetColumnDef(); cd != nil {
				pos++
				if d, ok := columnDefault(schema, c.Relation.Relname, cd, max(pos, 0)); ok {
					out = append(out, d)
				}
			}
		}
		return out
	})
}

// alteredColumns learns what ALTER TABLE cmd changes of a table's
// defaults.
func (r *Router) alteredColumns(facts *catalog, rv *pg.RangeVar, at *pg.AlterTableCmd) {
	var change func(schema string, cur []ColumnDefault) []ColumnDefault
	without := func(cur []ColumnDefault, identity bool) []ColumnDefault {
		return slices.DeleteFunc(cur, func(d ColumnDefault) bool { return d.Column == at.Name && d.Identity == identity })
	}
	switch at.Subtype {
	case pg.AlterTableType_AT_AddColumn:
		change = func(schema string, cur []ColumnDefault) []ColumnDefault {
			if d, ok := columnDefault(schema, rv.Relname, at.Def.GetColumnDef(), 0); ok {
				cur = append(cur, d)
			}
			return cur
		}
	case pg.AlterTableType_AT_ColumnDefault: // SET DEFAULT, DROP DEFAULT (no Def)
		change = func(schema string, cur []ColumnDefault) []ColumnDefault {
			pos := 0
			for _, d := range cur {
				if d.Column == at.Name {
					pos = d.Position
				}
			}
			cur = without(cur, false)
			if at.Def != nil && at.Def.GetAConst() == nil {
				cur = append(cur, ColumnDefault{Schema: schema, Table: rv.Relname, Column: at.Name, Position: pos, node: at.Def})
			}
			return cur
		}
	case pg.AlterTableType_AT_AddIdentity:
		change = func(schema string, cur []ColumnDefault) []ColumnDefault {
			return append(cur, ColumnDefault{Schema: schema, Table: rv.Relname, Column: at.Name, Identity: true})
		}
	case pg.AlterTableType_AT_DropIdentity:
		change = func(_ string, cur []ColumnDefault) []ColumnDefault { return without(cur, true) }
	case pg.AlterTableType_AT_DropColumn:
		change = func(_ string, cur []ColumnDefault) []ColumnDefault {
			cur = slices.DeleteFunc(cur, func(d ColumnDefault) bool { return d.Column == at.Name })
			for i := range cur {
				cur[i].Position = 0 // the columns after it moved up
			}
			return cur
		}
	default:
		return
	}
	r.defaultsChanged(facts, rv, change)
}

// addColumnRefusal refuses ALTER TABLE n of reference table table when
// it adds a column whose default each copy computes on its own: the
// table's rows get that value at once, copy by copy (SET DEFAULT, which
// leaves the rows as they are, is allowed).
func (r *Router) addColumnRefusal(n *pg.Node, facts *catalog, table string) *pgconn.PgError {
	alter := n.GetAlterTableStmt()
	if alter == nil {
		return nil
	}
	for _, cmd := range alter.Cmds {
		at := cmd.GetAlterTableCmd()
		cd := at.GetDef().GetColumnDef()
		if at.GetSubtype() != pg.AlterTableType_AT_AddColumn || cd == nil {
			continue
		}
		d, ok := columnDefault("", table, cd, 0)
		if !ok {
			continue
		}
		what := ""
		switch {
		case d.Identity:
			what = "an identity column"
		case d.node == nil:
			what = "a serial column"
		default:
			if risk := divergence(d.node, facts.divergentFuncs(), nil); risk != nil {
				what = "a column with default " + strings.TrimSuffix(risk.what, ",")
			}
		}
		if what != "" {
			return pgError(codeFeatureNotSupport,
				fmt.Sprintf("adding %s to reference table %s would fill its rows differently on each shard's copy", what, table),
				"add the column without a default, fill it with values computed once (UPDATE), then SET DEFAULT")
		}
	}
	return nil
}

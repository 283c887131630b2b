package proxy_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Random differential queries for gathered SELECTs (router/plan_build_gather.go):
// joins not on the shard keys, outer joins, aggregates in subqueries,
// ROLLUP, set operations, with random WHERE conditions of which the
// shards apply the pushable ones before gathering. A wrong pushdown
// changes results silently, so each generated SELECT must, through the
// proxy, equal the oracle's result or be refused with 0A000 and a hint.
// DIFF_GATHER_N=N runs N queries per strategy, DIFF_GATHER_SEED=S
// another sequence.

const diffGatherDefault = 150

// gCol is a column with literals of its type that the data has (or
// nearly has).
type gCol struct {
	name string
	kind string // int, num, text, bool, ts, date
	vals []string
}

var (
	gTsVals   = []string{"'2024-01-15 00:00:00+00'", "'2024-06-01 12:00:00+00'", "'2024-11-30 23:59:59.5+00'", "'2024-03-10 08:30:00+02'"}
	gDateVals = []string{"'2020-06-01'", "'2022-01-01'", "'2024-05-01'", "'2021-02-28'"}
	gCustVals = []string{"1", "7", "12", "150", "260", "390", "400"}
)

var gTables = map[string][]gCol{
	"orders": {
		{"order_id", "int", []string{"1", "17", "250", "999", "1500", "2999", "3000"}},
		{"customer_id", "int", gCustVals},
		{"status", "text", []string{"'new'", "'paid'", "'Paid'", "'shipped'", "''", "'ß-special'", "'cancelled'"}},
		{"total", "num", []string{"0", "10.5", "100", "250.25", "500", "999.99"}},
		{"qty", "int", []string{"1", "3", "5", "10", "15", "20"}},
		{"discount", "num", []string{"0", "0.5", "1.25", "-2.5", "10", "99.99"}},
		{"created_at", "ts", gTsVals},
		{"shipped", "bool", []string{"true", "false"}},
		{"note", "text", []string{"'gift'", "'rush'", "''", "'it''s late'", "'naïve café'", "'fragile!'"}},
		{"ship_date", "date", gDateVals},
	},
	"customers": {
		{"customer_id", "int", gCustVals},
		{"name", "text", []string{"'Émile'", "'bob'", "'Bob'", "''", "'o''Brien'", "'zed'", "'ß'"}},
		{"email", "text", []string{"'user1@example.com'", "'user150@example.com'", "'user7@example.com'"}},
		{"country", "text", []string{"'FR'", "'DE'", "'JP'", "''", "'日本'", "'US'"}},
		{"credit", "num", []string{"-1000", "0", "5000.5", "100000", "150000.25"}},
		{"vip", "bool", []string{"true", "false"}},
		{"signup", "date", gDateVals},
		{"region_id", "int", []string{"0", "1", "3", "5", "9"}},
	},
	"order_items": {
		{"customer_id", "int", gCustVals},
		{"order_id", "int", []string{"1", "17", "250", "999", "1500", "2999"}},
		{"line", "int", []string{"1", "2", "3"}},
		{"product_id", "int", []string{"1", "10", "25", "50", "53"}},
		{"qty", "int", []string{"1", "2", "3", "5"}},
		{"price", "num", []string{"0", "100.5", "250", "499.999"}},
	},
	"events": {
		{"stream", "text", []string{"'acct-1'", "'zz-9'", "'Box-2'", "'émile-4'", "'日本-3'", "'pay-7'"}},
		{"seq", "int", []string{"1", "5", "10", "50", "200"}},
		{"customer_id", "int", gCustVals},
		{"kind", "text", []string{"'created'", "'paid'", "'Émis'", "'refunded'"}},
		{"payload", "text", []string{"'ok'", "'{}'", "''", "'x'"}},
		{"at", "ts", gTsVals},
		{"amount", "num", []string{"-500", "0", "100.5", "1000", "1499.99"}},
	},
	"products": {
		{"product_id", "int", []string{"1", "10", "25", "50"}},
		{"name", "text", []string{"'prod-01'", "'Ware-10'"}},
		{"category", "text", []string{"'tools'", "'food'", "''", "'Garden'"}},
		{"price", "num", []string{"0", "50", "150.5", "299.99"}},
		{"active", "bool", []string{"true", "false"}},
	},
}

// gOcc is one FROM item of a level: a table (or a CTE with its columns)
// under a name; bare means its columns are written unqualified.
type gOcc struct {
	table, name string
	bare        bool
}

func (o gOcc) cols() []gCol { return gTables[o.table] }

func (o gOcc) ref(c gCol) string {
	if o.bare {
		return c.name
	}
	return o.name + "." + c.name
}

type gatherGen struct {
	rng  *rand.Rand
	args []string
}

func (g *gatherGen) n(k int) int { return g.rng.IntN(k) }

func gPick[T any](g *gatherGen, xs []T) T { return xs[g.n(len(xs))] }

// col picks a column of o, of one of kinds when given.
func (g *gatherGen) col(o gOcc, kinds ...string) (gCol, bool) {
	var cs []gCol
	for _, c := range o.cols() {
		if len(kinds) == 0 || contains(kinds, c.kind) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return gCol{}, false
	}
	return gPick(g, cs), true
}

// value is a literal for c, sometimes a parameter ($n, its text value).
func (g *gatherGen) value(c gCol) string {
	v := gPick(g, c.vals)
	if g.n(6) == 0 {
		raw := v
		if strings.HasPrefix(raw, "'") {
			raw = strings.ReplaceAll(raw[1:len(raw)-1], "''", "'")
		}
		g.args = append(g.args, raw)
		return "$" + strconv.Itoa(len(g.args))
	}
	return v
}

// atom is a condition on occurrence o alone (pushable when it is
// preserved), or, when others are given, sometimes one the shards cannot
// apply (two occurrences, a function, a subquery).
func (g *gatherGen) atom(o gOcc, others []gOcc) string {
	if g.n(5) == 0 {
		return g.unpushable(o, others)
	}
	c, _ := g.col(o)
	r := o.ref(c)
	switch g.n(12) {
	case 0:
		return r + " IS NULL"
	case 1:
		return r + " IS NOT NULL"
	case 2, 3:
		if c.kind == "bool" {
			return []string{r, "NOT " + r, r + " = " + g.value(c), r + " <> true"}[g.n(4)]
		}
		return r + " " + gPick(g, []string{"=", "<>", "<", ">", "<=", ">="}) + " " + g.value(c)
	case 4:
		var vs []string
		for k := 1 + g.n(3); k > 0; k-- {
			vs = append(vs, g.value(c))
		}
		if g.n(4) == 0 {
			vs = append(vs, "NULL")
		}
		not := ""
		if g.n(3) == 0 {
			not = "NOT "
		}
		return r + " " + not + "IN (" + strings.Join(vs, ", ") + ")"
	case 5:
		if c.kind == "bool" {
			return r + " IS NOT NULL"
		}
		a, b := g.value(c), g.value(c)
		not := ""
		if g.n(3) == 0 {
			not = "NOT "
		}
		return r + " " + not + "BETWEEN " + a + " AND " + b
	case 6:
		if tc, ok := g.col(o, "text"); ok {
			pat := gPick(g, []string{"'%a%'", "'b%'", "'_%'", "'%'", "''", "'%é%'", "'P%'", "'%-1'"})
			op := gPick(g, []string{"LIKE", "NOT LIKE", "ILIKE", "~~", "!~~", "~~*"})
			if g.n(6) == 0 {
				g.args = append(g.args, strings.Trim(pat, "'"))
				pat = "$" + strconv.Itoa(len(g.args))
			}
			return o.ref(tc) + " " + op + " " + pat
		}
		return r + " IS NULL"
	case 7:
		// Casts.
		switch c.kind {
		case "int", "num":
			return r + "::text " + gPick(g, []string{"=", "<>", "<", ">"}) + " " + g.value(gCol{vals: []string{"'1'", "'10'", "'5'", "'2'"}})
		case "ts":
			return r + "::date " + gPick(g, []string{"<", ">=", "="}) + " " + gPick(g, gDateVals) + "::date"
		default:
			return r + "::text IS NOT NULL"
		}
	case 8:
		if nc, ok := g.col(o, "int", "num"); ok {
			// Two columns of one occurrence.
			nc2, _ := g.col(o, "int", "num")
			return o.ref(nc) + " " + gPick(g, []string{"<", ">", "=", "<>"}) + " " + o.ref(nc2)
		}
		return r + " IS NOT NULL"
	default:
		if c.kind == "bool" {
			return r
		}
		return r + " " + gPick(g, []string{"=", "<>", "<", ">", "<=", ">="}) + " " + g.value(c)
	}
}

// unpushable is a condition the shards must not apply.
func (g *gatherGen) unpushable(o gOcc, others []gOcc) string {
	c, _ := g.col(o)
	r := o.ref(c)
	switch g.n(7) {
	case 0, 1:
		if len(others) > 0 {
			p := gPick(g, others)
			if pc, ok := g.col(p, c.kind); ok {
				return r + " " + gPick(g, []string{"=", "<>", "<", ">", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"}) + " " + p.ref(pc)
			}
			return "(" + r + " IS NULL) = (" + p.ref(gPick(g, p.cols())) + " IS NULL)"
		}
		return r + " IS DISTINCT FROM " + g.value(c)
	case 2:
		if tc, ok := g.col(o, "text"); ok {
			return "lower(" + o.ref(tc) + ") " + gPick(g, []string{"=", "<", ">"}) + " " + gPick(g, tc.vals)
		}
		return "coalesce(" + r + "::text, 'x') <> 'y'"
	case 3:
		if nc, ok := g.col(o, "int", "num"); ok {
			return o.ref(nc) + " " + gPick(g, []string{">", "<", ">="}) + " (SELECT avg(x." + nc.name + ") FROM " + o.table + " x)"
		}
		return r + " IS NOT NULL"
	case 4:
		if c.kind == "bool" {
			return r + " IS " + gPick(g, []string{"TRUE", "NOT TRUE", "FALSE", "UNKNOWN"})
		}
		return r + "::text = ANY (ARRAY[" + gPick(g, c.vals) + "::text, " + gPick(g, c.vals) + "::text])"
	case 5:
		return "coalesce(" + r + "::text, '') " + gPick(g, []string{"=", "<>", "<"}) + " ''"
	default:
		return "CASE WHEN " + r + " IS NULL THEN true ELSE " + r + "::text > '3' END"
	}
}

// where is a top-level AND of random terms over the occurrences.
func (g *gatherGen) where(occs []gOcc, min int) []string {
	var terms []string
	for k := min + g.n(4); k > 0; k-- {
		o := gPick(g, occs)
		var others []gOcc
		for _, x := range occs {
			if x.name != o.name {
				others = append(others, x)
			}
		}
		switch g.n(8) {
		case 0, 1:
			// An OR, over one occurrence or two.
			p := gPick(g, occs)
			terms = append(terms, "("+g.atom(o, others)+" OR "+g.atom(p, others)+")")
		case 2:
			terms = append(terms, "NOT ("+g.atom(o, others)+")")
		case 3:
			terms = append(terms, "NOT ("+g.atom(o, others)+" AND "+g.atom(o, others)+")")
		default:
			terms = append(terms, g.atom(o, others))
		}
	}
	return terms
}

// aggregate is a deterministic aggregate over the occurrences.
func (g *gatherGen) aggregate(occs []gOcc) string {
	o := gPick(g, occs)
	c, _ := g.col(o)
	nc, _ := g.col(o, "int", "num")
	switch g.n(9) {
	case 0, 1:
		return "count(*)"
	case 2:
		return "count(" + o.ref(c) + ")"
	case 3:
		return "count(DISTINCT " + o.ref(c) + ")"
	case 4, 5:
		return "sum(" + o.ref(nc) + ")"
	case 6:
		if c.kind == "bool" {
			return "bool_or(" + o.ref(c) + ")"
		}
		return "min(" + o.ref(c) + ")"
	case 7:
		if c.kind == "bool" {
			return "bool_and(" + o.ref(c) + ")"
		}
		return "max(" + o.ref(c) + ")"
	default:
		return "count(*) FILTER (WHERE " + g.atom(o, nil) + ")"
	}
}

// body writes SELECT ... FROM from WHERE ... with a random select list
// over occs; extra are WHERE terms the shape needs. It returns the text
// and whether the rows are in a total order.
func (g *gatherGen) body(occs []gOcc, from string, extra []string, forceGroup bool) (string, bool) {
	var items, groups []string
	shape := g.n(3)
	if forceGroup {
		shape = 1
	}
	rollup := ""
	switch shape {
	case 0: // aggregates only
		for k := 1 + g.n(3); k > 0; k-- {
			items = append(items, g.aggregate(occs))
		}
	case 1: // grouped
		for k := 1 + g.n(2); k > 0; k-- {
			o := gPick(g, occs)
			c, _ := g.col(o)
			if r := o.ref(c); !contains(groups, r) {
				groups = append(groups, r)
			}
		}
		items = append(items, groups...)
		for k := 1 + g.n(2); k > 0; k-- {
			items = append(items, g.aggregate(occs))
		}
		if forceGroup || g.n(4) == 0 {
			rollup = gPick(g, []string{"ROLLUP", "CUBE", "GROUPING SETS"})
			if g.n(3) == 0 {
				items = append(items, "grouping("+groups[0]+")")
			}
		}
	default: // plain rows
		for k := 1 + g.n(3); k > 0; k-- {
			o := gPick(g, occs)
			c, _ := g.col(o)
			items = append(items, o.ref(c))
		}
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	if shape == 2 && g.n(4) == 0 {
		b.WriteString("DISTINCT ")
	}
	for i, it := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s AS c%d", it, i+1)
	}
	b.WriteString(" FROM " + from)
	terms := append(extra, g.where(occs, 0)...)
	if len(terms) > 0 {
		b.WriteString(" WHERE " + strings.Join(terms, " AND "))
	}
	if len(groups) > 0 {
		switch rollup {
		case "":
			b.WriteString(" GROUP BY " + strings.Join(groups, ", "))
		case "GROUPING SETS":
			b.WriteString(" GROUP BY GROUPING SETS ((" + strings.Join(groups, ", ") + "), (" + groups[0] + "), ())")
		default:
			b.WriteString(" GROUP BY " + rollup + " (" + strings.Join(groups, ", ") + ")")
		}
		if g.n(4) == 0 {
			b.WriteString(" HAVING count(*) > " + strconv.Itoa(g.n(3)))
		}
	}
	ordered := shape != 0 && g.n(3) > 0
	var order strings.Builder
	if ordered {
		var keys []string
		for i := range items {
			k := strconv.Itoa(i + 1)
			if g.n(2) == 0 {
				k += " DESC"
			}
			if g.n(2) == 0 {
				k += gPick(g, []string{" NULLS FIRST", " NULLS LAST"})
			}
			keys = append(keys, k)
		}
		order.WriteString(" ORDER BY " + strings.Join(keys, ", "))
		if g.n(2) == 0 {
			fmt.Fprintf(&order, " LIMIT %d", 1+g.n(25))
			if g.n(3) == 0 {
				fmt.Fprintf(&order, " OFFSET %d", g.n(10))
			}
		}
	}
	if ordered && rollup != "" && mentionsAny(strings.Join(terms, " "), groups) {
		// Postgres before 18 sorts a grouping-set column that WHERE
		// equates to a constant (or another column) as if it were that
		// constant, so the NULLs of the rolled-up rows land anywhere:
		// WHERE a = 2 GROUP BY CUBE (a, b) ORDER BY a NULLS LAST puts
		// NULL rows first. The proxy sorts them right and the oracle
		// wrong (seed 31, query 151); such a query is compared unordered.
		ordered = false
	} else {
		b.WriteString(order.String())
	}
	return b.String(), ordered
}

// mentionsAny reports whether text names any of the column references.
func mentionsAny(text string, refs []string) bool {
	for _, r := range refs {
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(r) + `\b`).MatchString(text) {
			return true
		}
	}
	return false
}

// gJoin is a join of two FROM items not on their shard keys.
type gJoin struct {
	a, b gOcc
	on   string
}

var gJoins = []gJoin{
	{gOcc{table: "orders", name: "o"}, gOcc{table: "customers", name: "c"}, "c.customer_id = o.qty"},
	{gOcc{table: "orders", name: "o"}, gOcc{table: "order_items", name: "i"}, "i.order_id = o.order_id"},
	{gOcc{table: "customers", name: "c"}, gOcc{table: "orders", name: "o"}, "o.order_id = c.customer_id"},
	{gOcc{table: "orders", name: "o"}, gOcc{table: "events", name: "e"}, "e.customer_id = o.customer_id"},
	{gOcc{table: "customers", name: "c"}, gOcc{table: "events", name: "e"}, "e.seq = c.customer_id"},
	{gOcc{table: "orders", name: "a"}, gOcc{table: "orders", name: "b"}, "b.order_id = a.qty"},
	{gOcc{table: "customers", name: "c"}, gOcc{table: "order_items", name: "i"}, "i.order_id = c.customer_id AND i.line = 1"},
	{gOcc{table: "events", name: "e"}, gOcc{table: "customers", name: "c"}, "c.customer_id = e.seq"},
}

func (g *gatherGen) joinType() string {
	return []string{"JOIN", "JOIN", "LEFT JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"}[g.n(6)]
}

func (g *gatherGen) query() (string, bool) {
	switch r := g.n(20); {
	case r < 9: // two or three FROM items joined off their keys
		j := gPick(g, gJoins)
		occs := []gOcc{j.a, j.b}
		var from string
		var extra []string
		comma := g.n(8) == 0
		if comma {
			from = j.a.table + " " + j.a.name + ", " + j.b.table + " " + j.b.name
			extra = []string{j.on}
		} else {
			from = j.a.table + " " + j.a.name + " " + g.joinType() + " " + j.b.table + " " + j.b.name + " ON " + j.on
		}
		if !comma && g.n(3) == 0 {
			// A third: the reference table, or another sharded one.
			switch third := g.n(3); {
			case third == 0 && (j.a.table == "orders" || j.b.table == "orders"):
				o := j.a
				if o.table != "orders" {
					o = j.b
				}
				from += " " + g.joinType() + " products p ON p.product_id = " + o.name + ".qty"
				occs = append(occs, gOcc{table: "products", name: "p"})
			case third == 1 && j.a.name != "e" && j.b.name != "e":
				from += " " + g.joinType() + " events e ON e.seq = " + j.a.name + "." + gTables[j.a.table][0].name
				occs = append(occs, gOcc{table: "events", name: "e"})
			default:
				if j.a.name != "i" && j.b.name != "i" && (j.a.table == "orders" || j.b.table == "orders") {
					o := j.a
					if o.table != "orders" {
						o = j.b
					}
					from += " " + g.joinType() + " order_items i ON i.order_id = " + o.name + ".order_id"
					occs = append(occs, gOcc{table: "order_items", name: "i"})
				}
			}
		}
		if g.n(6) == 0 {
			// Joins nested on the right: both inner tables nullable together.
			if len(occs) == 2 && j.a.table == "customers" && j.b.table == "orders" {
				from = "customers c " + g.joinType() + " (orders o JOIN order_items i ON i.order_id = o.order_id AND i.qty > 1) ON o.order_id = c.customer_id"
				occs = append(occs, gOcc{table: "order_items", name: "i"})
			}
		}
		return g.body(occs, from, extra, false)
	case r < 13: // one table, with what the merge cannot do
		t := gPick(g, []string{"orders", "customers", "order_items", "events"})
		o := gOcc{table: t, name: t}
		from := t
		switch g.n(3) {
		case 0:
			o.bare = true
		case 1:
			o.name = "x"
			from = t + " x"
		}
		var extra []string
		forceGroup := false
		nc, _ := g.col(o, "int", "num")
		switch g.n(5) {
		case 0:
			extra = append(extra, o.ref(nc)+" "+gPick(g, []string{">", "<=", ">="})+" (SELECT avg("+nc.name+") FROM "+t+")")
		case 1:
			c, _ := g.col(o)
			extra = append(extra, o.ref(c)+" IN (SELECT "+c.name+" FROM "+t+" GROUP BY "+c.name+" HAVING count(*) > "+strconv.Itoa(1+g.n(20))+")")
		case 2:
			extra = append(extra, o.ref(nc)+" = (SELECT max("+nc.name+") FROM "+t+" WHERE "+nc.name+" < "+gPick(g, nc.vals)+")")
		case 3:
			extra = append(extra, "EXISTS (SELECT 1 FROM products p WHERE p.product_id = "+o.ref(nc)+" AND p.price > (SELECT avg(price) FROM products))",
				o.ref(nc)+" > (SELECT min("+nc.name+") FROM "+t+")")
		default:
			forceGroup = true
		}
		return g.body([]gOcc{o}, from, extra, forceGroup)
	case r < 16: // a subquery reading another table, with its own pushable terms
		outer := gPick(g, []gOcc{{table: "orders", name: "o"}, {table: "customers", name: "c"}})
		inner := gPick(g, []gOcc{{table: "events", name: "e"}, {table: "order_items", name: "i"}, {table: "orders", name: "o2"}})
		var corr string
		if inner.table == "order_items" {
			corr = "i.order_id = " + outer.name + "." + gTables[outer.table][0].name
		} else {
			corr = inner.name + ".customer_id = " + outer.name + ".customer_id"
		}
		terms := append([]string{corr}, g.where([]gOcc{inner}, 1)...)
		var sub string
		switch g.n(4) {
		case 0:
			sub = "EXISTS (SELECT 1 FROM " + inner.table + " " + inner.name + " WHERE " + strings.Join(terms, " AND ") + ")"
		case 1:
			sub = "NOT EXISTS (SELECT 1 FROM " + inner.table + " " + inner.name + " WHERE " + strings.Join(terms, " AND ") + ")"
		case 2:
			sub = outer.name + ".customer_id IN (SELECT " + inner.name + ".customer_id FROM " + inner.table + " " + inner.name + " WHERE " + strings.Join(terms[1:], " AND ") + ")"
		default:
			nc, _ := g.col(inner, "int", "num")
			sub = "coalesce((SELECT sum(" + inner.ref(nc) + ") FROM " + inner.table + " " + inner.name + " WHERE " + strings.Join(terms, " AND ") + "), 0) > " + strconv.Itoa(g.n(200))
		}
		return g.body([]gOcc{outer}, outer.table+" "+outer.name, []string{sub}, false)
	case r < 18: // a set operation of two single-table SELECTs, columns unqualified
		kind := gPick(g, []string{"int", "text", "num"})
		arm := func() string {
			var t string
			var c gCol
			for {
				t = gPick(g, []string{"orders", "customers", "order_items", "events"})
				var ok bool
				if c, ok = g.col(gOcc{table: t}, kind); ok {
					break
				}
			}
			o := gOcc{table: t, name: t, bare: true}
			s := "SELECT " + c.name + " AS c1 FROM " + t
			if terms := g.where([]gOcc{o}, 1); len(terms) > 0 {
				s += " WHERE " + strings.Join(terms, " AND ")
			}
			return s
		}
		sql := arm() + " " + gPick(g, []string{"UNION", "UNION ALL", "INTERSECT", "EXCEPT", "INTERSECT ALL", "EXCEPT ALL"}) + " " + arm()
		if g.n(2) == 0 {
			return "SELECT count(*) AS n, count(DISTINCT c1) AS d FROM (" + sql + ") u", false
		}
		return sql, false
	default: // a CTE or subquery in FROM, joined off the keys
		inner := gOcc{table: "orders", name: "s"}
		cond := g.where([]gOcc{{table: "orders", name: "orders", bare: g.n(2) == 0}}, 1)
		body := "SELECT * FROM orders WHERE " + strings.Join(cond, " AND ")
		c := gOcc{table: "customers", name: "c"}
		if g.n(2) == 0 {
			return g.body([]gOcc{inner, c}, "("+body+") s "+g.joinType()+" customers c ON c.customer_id = s.qty", nil, false)
		}
		sql, ordered := g.body([]gOcc{inner, c}, "s "+g.joinType()+" customers c ON c.customer_id = s.qty", nil, false)
		return "WITH s AS " + gPick(g, []string{"", "MATERIALIZED "}) + "(" + body + ") " + sql, ordered
	}
}

// genGatherQueries returns n SELECTs from seed, with the protocol each
// runs in.
func genGatherQueries(seed uint64, n int) []randQuery {
	rng := rand.New(rand.NewPCG(seed, 11))
	out := make([]randQuery, 0, n)
	for i := 0; i < n; i++ {
		g := &gatherGen{rng: rng}
		sql, ordered := g.query()
		q := randQuery{sqlQuery: sqlQuery{sql: sql, line: i + 1, ordered: ordered, args: g.args}}
		q.mode = pickMode(rng, len(g.args) > 0)
		out = append(out, q)
	}
	return out
}

func TestDifferentialGatherRandom(t *testing.T) {
	n, seed := diffGatherDefault, uint64(20261201)
	if v, err := strconv.Atoi(os.Getenv("DIFF_GATHER_N")); err == nil {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("DIFF_GATHER_SEED"), 10, 64); err == nil {
		seed = v
	}
	queries := genGatherQueries(seed, n)
	if path := os.Getenv("DIFF_GATHER_DUMP"); path != "" {
		// The generated statements, one a line, to check their plans
		// (shardproxy route); nothing runs.
		var b strings.Builder
		for _, q := range queries {
			b.WriteString(strings.ReplaceAll(q.sql, "\n", " ") + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skipf("wrote %d statements to %s", len(queries), path)
	}
	schema := readSQLFile(t, diffDir+"schema.sql")
	data := genDiffData()
	oracle := startOracle(t, "gather", schema, data)
	// Oracle answers do not depend on the strategy: computed once.
	oracleCache := map[int]qresult{}
	for _, st := range diffStrategies {
		if st.name != "hash" && st.name != "range" {
			continue
		}
		t.Run(st.name, func(t *testing.T) {
			_, pc := startDiffProxy(t, st, schema, data)
			var matched, refused, invalid int
			for _, rq := range queries {
				q := rq.sqlQuery
				want, ok := oracleCache[q.line]
				if !ok {
					want = runQuery(oracle, rq.mode, q)
					oracleCache[q.line] = want
				}
				if want.err != nil {
					invalid++ // the generator wrote something Postgres rejects
					if os.Getenv("DIFF_GATHER_INVALID") != "" {
						t.Logf("oracle rejects query %d: %v\n%s", q.line, want.err, q.sql)
					}
					continue
				}
				got := runQuery(pc.get(t), rq.mode, q)
				var pgErr *pgconn.PgError
				switch {
				case got.err == nil:
					if d := diffResults(want, got, q.ordered); d != "" {
						t.Errorf("query %d (%s %s %q): proxy differs from oracle (WRONG RESULT): %s\n%s", q.line, st.name, rq.mode, q.args, d, q.sql)
						continue
					}
					matched++
				case errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "":
					refused++
					t.Logf("query %d (%s) refused: %s\n%s", q.line, rq.mode, pgErr.Message, q.sql)
					pc.checkUsable(t)
				default:
					t.Errorf("query %d (%s %s %q): proxy error %s; oracle answered %d rows\n%s", q.line, st.name, rq.mode, q.args, describeErr(got.err), len(want.rows), q.sql)
					pc.checkUsable(t)
				}
			}
			t.Logf("%s: %d random gathered queries (seed %d): %d equal the oracle, %d refused with 0A000, %d not valid SQL", st.name, n, seed, matched, refused, invalid)
			if matched < n/2 {
				t.Errorf("only %d of %d random gathered queries answered: the generator or the proxy refuses too much", matched, n)
			}
		})
	}
}

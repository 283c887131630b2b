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

// Random differential queries: the hand-written queries.sql tests what we
// thought of; these test combinations nobody wrote down. Each generated
// SELECT over the suite's tables (schema.sql) must, through the proxy,
// either equal the oracle's result or be refused with 0A000 and a hint.
// Anything else (a different result, another error) is a bug. The seed
// is fixed, so a failure reproduces; DIFF_RANDOM=N runs N queries per
// strategy instead of the default, DIFF_SEED=S another sequence.

// refusalShape masks the parts of a refusal message that vary by query.
var refusalShape = regexp.MustCompile(`[a-z_]+\(\)|\b[a-z]\d?\.[a-z_]+|\d+`)

// diffRandomDefault is how many queries make test runs per strategy.
const diffRandomDefault = 300

// randCol is a column the generator may use, with what it can do with it.
type randCol struct {
	name    string
	numeric bool // sum/avg apply
	text    bool
	boolean bool
}

type randTable struct {
	name  string
	key   string
	key2  []string // key values as SQL literals, for point and IN conditions
	cols  []randCol
	alias string
}

var randTables = []randTable{
	{name: "orders", key: "customer_id", alias: "o", key2: []string{"7", "150", "390", "12", "260", "1"}, cols: []randCol{
		{name: "order_id", numeric: true}, {name: "customer_id", numeric: true}, {name: "status", text: true},
		{name: "total", numeric: true}, {name: "qty", numeric: true}, {name: "discount", numeric: true},
		{name: "created_at"}, {name: "shipped", boolean: true}, {name: "note", text: true}, {name: "ship_date"},
	}},
	{name: "customers", key: "customer_id", alias: "c", key2: []string{"7", "150", "390", "12", "260", "400"}, cols: []randCol{
		{name: "customer_id", numeric: true}, {name: "name", text: true}, {name: "country", text: true},
		{name: "credit", numeric: true}, {name: "vip", boolean: true}, {name: "signup"}, {name: "region_id", numeric: true},
	}},
	{name: "order_items", key: "customer_id", alias: "i", key2: []string{"7", "150", "390", "12"}, cols: []randCol{
		{name: "order_id", numeric: true}, {name: "line", numeric: true}, {name: "product_id", numeric: true},
		{name: "qty", numeric: true}, {name: "price", numeric: true},
	}},
	{name: "events", key: "stream", alias: "e", key2: []string{"'acct-1'", "'日本-3'", "'zz-9'", "'Box-2'", "'émile-4'"}, cols: []randCol{
		{name: "stream", text: true}, {name: "seq", numeric: true}, {name: "customer_id", numeric: true},
		{name: "kind", text: true}, {name: "amount", numeric: true}, {name: "at"},
	}},
}

// genRandomQueries returns n SELECTs from seed. Every query whose rows it
// limits orders them by all its output columns, so that the rows kept are
// the same on any correct server (ties are identical rows).
func genRandomQueries(seed uint64, n int) []randQuery {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]randQuery, 0, n)
	for i := 0; i < n; i++ {
		g := &randGen{rng: rng}
		var sql string
		var ordered bool
		if rng.IntN(10) == 0 {
			sql, ordered = g.union()
		} else {
			sql, ordered = g.selectStmt()
		}
		q := randQuery{sqlQuery: sqlQuery{sql: sql, line: i + 1, ordered: ordered, args: g.args}}
		q.mode = pickMode(rng, len(g.args) > 0)
		out = append(out, q)
	}
	return out
}

// pickMode picks the protocol a generated query runs in: merged values
// must come out right in binary too, and a key given as a parameter must
// route as a literal does.
func pickMode(rng *rand.Rand, withArgs bool) string {
	switch {
	case withArgs && rng.IntN(2) == 0:
		return "prepared"
	case withArgs:
		return "extended"
	case rng.IntN(3) == 0:
		return "binary"
	}
	return "simple"
}

// randQuery is a generated query and the protocol it runs in.
type randQuery struct {
	sqlQuery
	mode string
}

// randGen writes one statement; args collects its parameters' values.
type randGen struct {
	rng  *rand.Rand
	args []string
}

// param returns $n for a new parameter whose value is lit (a literal of
// the generator's, unquoted for the text protocol).
func (g *randGen) param(lit string) string {
	g.args = append(g.args, strings.Trim(lit, "'"))
	return "$" + strconv.Itoa(len(g.args))
}

// pick returns a random column of cs that ok accepts; ok must accept a
// column of every table (each has a numeric one).
func (g *randGen) pick(cs []randCol, ok func(randCol) bool) randCol {
	for {
		if c := cs[g.rng.IntN(len(cs))]; ok(c) {
			return c
		}
	}
}

// union is two plain SELECTs of one table, combined.
func (g *randGen) union() (string, bool) {
	t := randTables[g.rng.IntN(len(randTables))]
	op := []string{"UNION ALL", "UNION", "INTERSECT", "EXCEPT", "INTERSECT ALL", "EXCEPT ALL"}[g.rng.IntN(6)]
	// The key column (INTERSECT and EXCEPT are then exact per shard), or
	// another with it, or another alone (refused for those two).
	out := t.alias + "." + t.key + " AS k"
	switch c := t.cols[g.rng.IntN(len(t.cols))]; g.rng.IntN(3) {
	case 0:
		out += ", " + t.alias + "." + c.name
	case 1:
		out = t.alias + "." + c.name + " AS k"
	}
	arm := func() string {
		return "SELECT " + out + " FROM " + t.name + " " + t.alias + " WHERE " +
			randCondition(g, t, func(c randCol) string { return t.alias + "." + c.name }, g.pick)
	}
	sql := arm() + " " + op + " " + arm()
	if g.rng.IntN(2) == 0 {
		if strings.Contains(out, ",") {
			return sql + " ORDER BY 1, 2 LIMIT " + strconv.Itoa(1+g.rng.IntN(15)), true
		}
		return sql + " ORDER BY 1 LIMIT " + strconv.Itoa(1+g.rng.IntN(15)), true
	}
	return sql, false
}

func (g *randGen) selectStmt() (string, bool) {
	rng := g.rng
	t := randTables[rng.IntN(len(randTables))]
	pick := g.pick
	all := func(randCol) bool { return true }
	col := func(c randCol) string { return t.alias + "." + c.name }

	name := t.name
	if name == "order_items" && rng.IntN(3) == 0 {
		// One of its partitions (schema.sql), routed as order_items.
		name = [...]string{"order_items_first", "order_items_rest"}[rng.IntN(2)]
	}
	from := name + " " + t.alias
	with := ""
	switch rng.IntN(10) {
	case 0: // the table through a subquery in FROM
		from = "(SELECT * FROM " + name + " WHERE " + t.key + " IS NOT NULL) " + t.alias
	case 1: // ... or through a CTE
		with = "WITH w AS (SELECT * FROM " + name + ") "
		from = "w " + t.alias
	}
	// A join that stays on one shard per row: colocated on the key, or
	// with the reference table.
	joined := ""
	switch r := rng.IntN(8); {
	case r == 0 && t.name == "orders":
		from += " JOIN order_items i2 ON i2.customer_id = o.customer_id AND i2.order_id = o.order_id"
		joined = "i2.qty"
	case r == 1 && t.name == "customers":
		from += " LEFT JOIN orders o2 ON o2.customer_id = c.customer_id"
		joined = "o2.total"
	case r == 2 && t.name == "order_items":
		from += " JOIN products p ON p.product_id = i.product_id"
		joined = "p.price"
	}

	// The select list: grouped columns and aggregates, or plain columns.
	var items, groups []string
	aggregate := rng.IntN(3) > 0
	if aggregate {
		for g := rng.IntN(3); g > 0; g-- {
			c := pick(t.cols, all)
			expr := col(c)
			switch {
			case c.text && rng.IntN(4) == 0:
				expr = "lower(" + expr + ")"
			case c.numeric && rng.IntN(5) == 0:
				expr = "(" + expr + " % 3)"
			case c.name == "created_at" && rng.IntN(2) == 0:
				expr = "date_trunc('month', " + expr + ")"
			}
			if !contains(groups, expr) {
				groups = append(groups, expr)
			}
		}
		items = append(items, groups...)
		for a := 1 + rng.IntN(3); a > 0; a-- {
			items = append(items, randAggregate(rng, t, col, joined))
			if rng.IntN(12) == 0 {
				// An ordered-set or order-sensitive aggregate, a window, or a
				// user-defined aggregate.
				// Their input order is given, so the result is one value.
				c := col(pick(t.cols, all))
				items[len(items)-1] = []string{
					"string_agg(" + c + "::text, ',' ORDER BY " + c + "::text)",
					"array_agg(" + c + " ORDER BY " + c + ")",
					"stddev(" + col(pick(t.cols, func(c randCol) bool { return c.numeric })) + ")",
					"count(*) OVER ()",
					"sum_of(" + col(pick(t.cols, func(c randCol) bool { return c.numeric })) + "::numeric)", // user-defined (schema.sql)
				}[rng.IntN(5)]
			}
		}
	} else {
		for k := 1 + rng.IntN(3); k > 0; k-- {
			c := pick(t.cols, all)
			switch rng.IntN(8) {
			case 0:
				items = append(items, "CASE WHEN "+col(c)+" IS NULL THEN 'none' ELSE 'some' END")
			case 1:
				items = append(items, col(c)+"::text")
			case 3:
				// Arrays: ordered, grouped and sent in binary element by
				// element, dimensions kept.
				if rng.IntN(2) == 0 {
					items = append(items, "ARRAY["+col(c)+", NULL]")
				} else {
					items = append(items, "ARRAY[["+col(c)+"], ["+col(c)+"]]")
				}
			case 2:
				if c.numeric {
					items = append(items, "coalesce("+col(c)+", -1)")
					break
				}
				fallthrough
			default:
				items = append(items, col(c))
			}
		}
		if joined != "" && rng.IntN(2) == 0 {
			items = append(items, joined)
		}
	}

	var b strings.Builder
	b.WriteString(with + "SELECT ")
	distinct := !aggregate && rng.IntN(5) == 0
	distinctOn := false
	if distinct {
		if rng.IntN(3) == 0 {
			b.WriteString("DISTINCT ON (1) ")
			distinctOn = true
		} else {
			b.WriteString("DISTINCT ")
		}
	}
	for i, it := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s AS c%d", it, i+1)
	}
	b.WriteString(" FROM " + from)

	var conds []string
	for w := rng.IntN(3); w > 0; w-- {
		conds = append(conds, randCondition(g, t, col, pick))
	}
	if len(conds) > 0 {
		b.WriteString(" WHERE " + strings.Join(conds, " AND "))
	}
	if len(groups) > 0 {
		b.WriteString(" GROUP BY " + strings.Join(groups, ", "))
	}
	if aggregate && rng.IntN(4) == 0 {
		switch rng.IntN(3) {
		case 0:
			b.WriteString(" HAVING count(*) > " + strconv.Itoa(rng.IntN(3)))
		case 1:
			b.WriteString(" HAVING count(*) % 2 = " + strconv.Itoa(rng.IntN(2)))
		default:
			// Postgres evaluates this one over the merged aggregates.
			b.WriteString(" HAVING " + randAggregate(rng, t, col, joined) + " > " + randAggregate(rng, t, col, joined) + " OR count(*) > 3")
		}
	}
	ordered := rng.IntN(2) == 0 || distinctOn // DISTINCT ON keeps the first row of its ORDER BY
	if ordered {
		var keys []string
		for i := range items {
			k := strconv.Itoa(i + 1)
			if rng.IntN(2) == 0 {
				k += " DESC"
			}
			switch rng.IntN(3) {
			case 0:
				k += " NULLS FIRST"
			case 1:
				k += " NULLS LAST"
			}
			keys = append(keys, k)
		}
		b.WriteString(" ORDER BY " + strings.Join(keys, ", "))
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&b, " LIMIT %d", 1+rng.IntN(20))
			if rng.IntN(3) == 0 {
				fmt.Fprintf(&b, " OFFSET %d", rng.IntN(10))
			}
		}
	}
	return b.String(), ordered
}

func randAggregate(rng *rand.Rand, t randTable, col func(randCol) string, joined string) string {
	numeric := func(c randCol) bool { return c.numeric }
	pickNum := func() string {
		if joined != "" && rng.IntN(3) == 0 {
			return joined
		}
		for {
			if c := t.cols[rng.IntN(len(t.cols))]; numeric(c) {
				return col(c)
			}
		}
	}
	anyCol := func() string { return col(t.cols[rng.IntN(len(t.cols))]) }
	switch rng.IntN(14) {
	case 0:
		return "count(*)"
	case 1:
		return "count(" + anyCol() + ")"
	case 2:
		return "count(DISTINCT " + anyCol() + ")"
	case 3:
		return "sum(" + pickNum() + ")"
	case 4:
		return "avg(" + pickNum() + ")"
	case 5:
		return "min(" + anyCol() + ")"
	case 6:
		return "max(" + anyCol() + ")"
	case 7:
		return "count(*) FILTER (WHERE " + pickNum() + " > 5)"
	case 8:
		for _, c := range t.cols {
			if c.boolean {
				return "bool_and(" + col(c) + ")"
			}
		}
		return "sum(DISTINCT " + pickNum() + ")"
	case 9:
		return "sum(" + pickNum() + ") FILTER (WHERE " + pickNum() + " IS NOT NULL)"
	case 10:
		return "round(avg(" + pickNum() + ")::numeric, 2)"
	case 11:
		return "coalesce(sum(" + pickNum() + "), 0) + count(*)"
	case 12:
		return "sum(" + pickNum() + ") / nullif(count(*), 0)"
	default:
		return "max(" + pickNum() + ") - min(" + pickNum() + ")"
	}
}

func randCondition(g *randGen, t randTable, col func(randCol) string, pick func([]randCol, func(randCol) bool) randCol) string {
	rng := g.rng
	key := t.alias + "." + t.key
	switch rng.IntN(14) {
	case 0:
		return key + " = " + t.key2[rng.IntN(len(t.key2))]
	case 11:
		// A semi-join on the key with a colocated table.
		if t.key == "customer_id" && t.name != "customers" {
			return key + " IN (SELECT cx.customer_id FROM customers cx WHERE cx.vip)"
		}
		return key + " IS NOT NULL"
	case 12:
		if t.name == "orders" {
			return "NOT EXISTS (SELECT 1 FROM order_items x WHERE x.customer_id = o.customer_id AND x.order_id = o.order_id AND x.qty > 3)"
		}
		return "NOT (" + key + " IS NULL)"
	case 13:
		a, b := t.key2[rng.IntN(len(t.key2))], t.key2[rng.IntN(len(t.key2))]
		return key + " IN (" + g.param(a) + ", " + g.param(b) + ")"
	case 9:
		return key + " = " + g.param(t.key2[rng.IntN(len(t.key2))])
	case 10:
		// A subquery correlated on the key reads the row's own shard.
		c := pick(t.cols, func(c randCol) bool { return c.numeric })
		return col(c) + " >= (SELECT avg(x." + c.name + ") FROM " + t.name + " x WHERE x." + t.key + " = " + key + ")"
	case 1:
		a, b := t.key2[rng.IntN(len(t.key2))], t.key2[rng.IntN(len(t.key2))]
		return key + " IN (" + a + ", " + b + ")"
	case 2:
		if t.key == "stream" {
			return key + " >= 'f'"
		}
		return key + " BETWEEN 100 AND 250"
	case 3:
		return col(pick(t.cols, func(randCol) bool { return true })) + " IS NULL"
	case 4:
		return col(pick(t.cols, func(randCol) bool { return true })) + " IS NOT NULL"
	case 5:
		return col(pick(t.cols, func(c randCol) bool { return c.numeric })) + " > " + strconv.Itoa(rng.IntN(300))
	case 6:
		c := pick(t.cols, func(c randCol) bool { return c.text || c.numeric })
		if c.text {
			return col(c) + " < 'm'"
		}
		return col(c) + " % 2 = 0"
	case 7:
		// A subquery on the reference table: every shard has its rows.
		return "EXISTS (SELECT 1 FROM products px WHERE px.product_id = " + strconv.Itoa(1+rng.IntN(60)) + ")"
	default:
		return "NOT (" + col(pick(t.cols, func(c randCol) bool { return c.numeric })) + " < 10)"
	}
}

// runRandomDifferential runs the generated queries through pc and on the
// oracle: each must match or be refused with 0A000 and a hint. With -v
// it counts the refusals by message; DIFF_SHOW=text also logs each
// refused query whose message contains text.
func runRandomDifferential(t *testing.T, oracle *pgconn.PgConn, pc *proxyConn) {
	n, seed := diffRandomDefault, uint64(20261126)
	if v, err := strconv.Atoi(os.Getenv("DIFF_RANDOM")); err == nil {
		n = v
	}
	if v, err := strconv.ParseUint(os.Getenv("DIFF_SEED"), 10, 64); err == nil {
		seed = v
	}
	var matched, refused, invalid int
	why := map[string]int{} // refusal messages, numbers and names masked
	for _, rq := range genRandomQueries(seed, n) {
		q := rq.sqlQuery
		want := runQuery(oracle, rq.mode, q)
		if want.err != nil {
			invalid++ // the generator wrote something Postgres rejects
			continue
		}
		got := runQuery(pc.get(t), rq.mode, q)
		var pgErr *pgconn.PgError
		switch {
		case got.err == nil:
			if d := diffResults(want, got, q.ordered); d != "" {
				t.Errorf("query %d (%s %v): proxy differs from oracle (WRONG RESULT): %s\n%s", q.line, rq.mode, q.args, d, q.sql)
				continue
			}
			matched++
		case errors.As(got.err, &pgErr) && pgErr.Code == "0A000" && pgErr.Hint != "":
			refused++
			if sh := os.Getenv("DIFF_SHOW"); sh != "" && strings.Contains(pgErr.Message, sh) {
				t.Logf("SHOW %s\n%s", pgErr.Message, q.sql)
			}
			why[strings.Join(strings.Fields(refusalShape.ReplaceAllString(pgErr.Message, "#")), " ")]++
			pc.checkUsable(t)
		default:
			t.Errorf("query %d (%s %v): proxy error %s; oracle answered %d rows\n%s", q.line, rq.mode, q.args, describeErr(got.err), len(want.rows), q.sql)
			pc.checkUsable(t)
		}
	}
	t.Logf("%d random queries (seed %d): %d equal the oracle, %d refused with 0A000, %d not valid SQL", n, seed, matched, refused, invalid)
	if testing.Verbose() {
		for msg, k := range why {
			t.Logf("refused %4d× %s", k, msg)
		}
	}
	if matched < n/2 {
		t.Errorf("only %d of %d random queries answered: the generator or the proxy refuses too much", matched, n)
	}
}

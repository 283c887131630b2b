package router

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A function (or procedure, or DO block) whose body reads a sharded
// table runs wherever the statement calling it goes, and there it sees
// that shard's rows only: SELECT * FROM orders_of(7) would go to the
// default shard and return the rows of customer 7 only if they live
// there, with no error. The router cannot see into a body in general
// (PL/pgSQL, dynamic SQL), so it reads the body's words: a body that
// names a sharded table, a view over one, or another such function is
// taken to read sharded data, and a statement that calls it is refused
// unless a shard hint says where to run it. A body that writes a
// reference table is refused the same way: run on one shard, it would
// change that shard's copy only.
//
// The words are a conservative reading: a name in a comment or a string
// counts too (dynamic SQL often spells its table in a string), and a
// table built from pieces at run time is not seen.

// body is what the router reads of a function body or DO block: its
// distinct identifiers (unquoted ones folded to lower case, quoted ones
// as written), and the tables it names as a writing command's target
// (INSERT INTO t, UPDATE t, DELETE FROM t, MERGE INTO t, TRUNCATE t,
// COPY t), as "rel" or "schema.rel".
type body struct {
	words  map[string]bool
	writes map[string]bool
	// volatile: a C function Postgres calls volatile, whose body cannot
	// be read (replicas.go).
	volatile bool
}

// bodyToken is a word of a body, or a '.' between two.
type bodyToken struct {
	s      string
	quoted bool
	dot    bool
}

// readBody reads src. Strings are read through: dynamic SQL spells its
// statements in them.
func readBody(src string) body {
	var toks []bodyToken
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '"':
			end := strings.IndexByte(src[i+1:], '"')
			if end < 0 {
				end = len(src) - i - 1
			}
			toks = append(toks, bodyToken{s: src[i+1 : i+1+end], quoted: true})
			i += end + 2
		case isWordByte(c) && (c < '0' || c > '9'):
			j := i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			toks = append(toks, bodyToken{s: strings.ToLower(src[i:j])})
			i = j
		case c == '.':
			toks = append(toks, bodyToken{dot: true})
			i++
		default:
			i++
		}
	}
	b := body{words: map[string]bool{}, writes: map[string]bool{}}
	keyword := func(i int, kw string) bool {
		return i < len(toks) && !toks[i].quoted && !toks[i].dot && toks[i].s == kw
	}
	// target records the table name at toks[i], after an optional ONLY.
	target := func(i int) {
		if keyword(i, "only") {
			i++
		}
		if i >= len(toks) || toks[i].dot {
			return
		}
		name := toks[i].s
		if i+2 < len(toks) && toks[i+1].dot && !toks[i+2].dot {
			name += "." + toks[i+2].s
		}
		b.writes[name] = true
	}
	for i, t := range toks {
		if t.dot {
			continue
		}
		b.words[t.s] = true
		if t.quoted {
			continue
		}
		switch t.s {
		case "insert", "merge":
			if keyword(i+1, "into") {
				target(i + 2)
			}
		case "delete":
			if keyword(i+1, "from") {
				target(i + 2)
			}
		case "update", "copy":
			target(i + 1)
		case "truncate":
			if keyword(i+1, "table") {
				i++
			}
			target(i + 1)
		}
	}
	return b
}

// merge adds o's words and writes to b's (overloads of one name).
func (b body) merge(o body) body {
	out := body{words: maps.Clone(b.words), writes: maps.Clone(b.writes), volatile: b.volatile || o.volatile}
	maps.Copy(out.words, o.words)
	maps.Copy(out.writes, o.writes)
	return out
}

// isWordByte: '$' is not one, although Postgres allows it inside an
// identifier, so that a dollar-quoted body's delimiter ($$SELECT, t$$)
// is not read as part of its first and last words; a$b reads as a and
// b, which can only find more names, not fewer.
func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// FunctionDef is one function or procedure a shard's catalog defines:
// its name (pg_proc.proname) and body (prosrc, or the whole definition
// for a SQL-standard body; "" for a C function). Volatile: a C function
// Postgres calls volatile, whose value is taken to differ between shards.
type FunctionDef struct {
	Name, Body string
	Volatile   bool
}

// touches tells what body b does that must not be done on one shard
// alone ("" if nothing): it names a sharded table or a child of one, a
// view over one (facts.views), or a function already found to touch one
// (funcs), or it writes a reference table.
func (r *Router) touches(b body, facts *catalog, funcs map[string]string) string {
	for _, w := range slices.Sorted(maps.Keys(b.writes)) {
		if t := r.writeTarget(facts, w); t != nil && t.ref {
			return "writes reference table " + t.name
		}
	}
	rels := r.shardedRels
	if facts != nil && facts.shardedRels != nil {
		rels = facts.shardedRels
	}
	// The body's words are few, the tables and children many: look the
	// words up, and name the first in order, so that a message is the
	// same from run to run.
	if w := firstIn(b.words, rels); w != "" {
		return "reads sharded table " + rels[w]
	}
	views := facts.viewTables()
	if v := firstIn(b.words, views); v != "" {
		return fmt.Sprintf("reads view %s over sharded table %s", v, views[v])
	}
	if f := firstIn(b.words, funcs); f != "" {
		return fmt.Sprintf("calls %s(), which %s", f, funcs[f])
	}
	return ""
}

// firstIn is the least of words that names a key of m, or "".
func firstIn[V any](words map[string]bool, m map[string]V) string {
	best := ""
	for w := range words {
		if _, ok := m[w]; ok && (best == "" || w < best) {
			best = w
		}
	}
	return best
}

// shardedRelNames maps the relation name of every sharded table of
// tables (by "schema.rel") to its name; where two schemas share a
// relation name, the first key in order wins, so that messages are
// stable.
func shardedRelNames(tables map[string]*tableInfo, into map[string]string) {
	for _, key := range slices.Sorted(maps.Keys(tables)) {
		t := tables[key]
		_, rel, _ := strings.Cut(key, ".")
		if _, seen := into[rel]; !t.ref && !seen {
			into[rel] = t.name
		}
	}
}

// writeTarget is the mapped table (or child of one) that a body's write
// target w ("rel" or "schema.rel", as readBody gives it) names under the
// default search_path, or nil.
func (r *Router) writeTarget(facts *catalog, w string) *tableInfo {
	schema, rel, qualified := strings.Cut(w, ".")
	if !qualified {
		schema, rel = "", w
	}
	_, t, _ := r.table(facts, schema, rel)
	return t
}

// shardedFunctions finds, among functions (name -> the words of its
// bodies), those that touch sharded data directly or through one
// another, with what they touch.
func (r *Router) shardedFunctions(functions map[string]body, facts *catalog) map[string]string {
	return findThroughCalls(functions, func(_ string, b body, found map[string]string) string {
		return r.touches(b, facts, found)
	})
}

// findThroughCalls finds the functions for which why gives a reason,
// given those found so far (found): a function that calls a found one
// may be found in turn, so it repeats until nothing more is (calls may
// be mutual). Names go in order, so that reasons are the same from run
// to run.
func findThroughCalls(functions map[string]body, why func(name string, b body, found map[string]string) string) map[string]string {
	found := map[string]string{}
	names := slices.Sorted(maps.Keys(functions))
	for changed := true; changed; {
		changed = false
		for _, name := range names {
			if found[name] != "" {
				continue
			}
			if reason := why(name, functions[name], found); reason != "" {
				found[name] = reason
				changed = true
			}
		}
	}
	return found
}

// functionRefusal is the error for statement n (its text is text) when
// it calls a function that touches sharded data (facts.funcs), or is a
// DO block that does; nil otherwise.
func (r *Router) functionRefusal(n *pg.Node, text string, facts *catalog) *pgconn.PgError {
	if do := n.GetDoStmt(); do != nil {
		if why := r.touches(readBody(text), facts, facts.functions()); why != "" {
			return pgError(codeFeatureNotSupport, "DO block "+why+"; shardproxy cannot tell which shards it needs",
				"write its statements as statements of their own, which shardproxy routes (in a transaction to keep them atomic), or run it on one shard with a /* shard_key: table = value */ or /* shard: name */ comment")
		}
		return nil
	}
	funcs := facts.functions()
	if len(funcs) == 0 {
		return nil
	}
	var name string
	check := func(f *pg.FuncCall) {
		if names := stringItems(f.GetFuncname()); name == "" && len(names) > 0 && funcs[names[len(names)-1]] != "" {
			name = names[len(names)-1]
		}
	}
	if c := n.GetCallStmt(); c != nil {
		check(c.Funccall)
	}
	walk(n, func(c *pg.Node) bool {
		if f := c.GetFuncCall(); f != nil {
			check(f)
		}
		return name == ""
	})
	if name == "" {
		return nil
	}
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("function %s() %s; shardproxy cannot tell which shards it needs", name, funcs[name]),
		"run it where its rows live with a /* shard_key: table = value */ or /* shard: name */ comment, or write the function's query in the statement")
}

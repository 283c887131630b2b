package router

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/strategies"
)

// A multi-row INSERT ... VALUES whose rows belong to several shards runs
// as one INSERT per shard holding only that shard's rows (PEERS: PgDog
// #259 broadcast the whole statement instead). The statement text is cut
// once per distinct text, from pg_query's deparse of the statement: the
// head (everything before the first row), every row, and the tail (ON
// CONFLICT, RETURNING). An execution only decides which rows go where and
// joins the pieces.
//
// Multi-row INSERT VALUES coerces every row to the target columns on its
// own (transformInsertStmt), so a row means the same in any subset of the
// rows; per shard, the rows keep their relative order, and so do their
// RETURNING rows.

// InsertSplit is how one execution of a split INSERT runs (Route.Split).
type InsertSplit struct {
	Parts     []SplitPart // one per shard, in Route.Shards order
	Rows      int         // VALUES rows of the statement
	Returning bool        // the statement has RETURNING: rows come back per VALUES row
	// RepeatedParams: some $n occurs more than once in the statement. Its
	// type is then inferred from its first use, which may be in another
	// shard's rows: send each part the whole statement's parameter types.
	RepeatedParams bool
}

// SplitPart is the statement one shard runs.
type SplitPart struct {
	Shard string
	// SQL holes carry the statement's $n: the client's bind parameters
	// (extended protocol), or the literals the normaliser replaced (simple
	// protocol; render with QueryPart.Lits).
	SQL Template
	// Params are the distinct $n that SQL references, ascending. An
	// extended-protocol shard statement must reference only its own
	// parameters (Postgres refuses a parameter it cannot type), so it is
	// sent as ParamSQL with $Params[i] renumbered $i+1.
	Params []int
	Rows   []int // 0-based VALUES row numbers, in the shard's order
}

// ParamSQL renders the part with its parameters renumbered $1..$k in the
// order of Params.
func (p *SplitPart) ParamSQL() string {
	return p.SQL.Render(func(n int) string {
		lo, hi := 0, len(p.Params)
		for lo < hi { // Params is sorted
			m := (lo + hi) / 2
			if p.Params[m] < n {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return "$" + strconv.Itoa(lo+1)
	})
}

// String prints one line per part for SHOW ROUTE and `shardproxy route`:
// the shard, its VALUES rows (1-based) and its statement ($n as analysed).
func (s *InsertSplit) String() string {
	var b strings.Builder
	for i, p := range s.Parts {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "Insert %s rows ", p.Shard)
		for j, r := range p.Rows {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(r + 1))
		}
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(p.SQL.Render(func(k int) string { return "$" + strconv.Itoa(k) })))
	}
	return b.String()
}

// insertSplit is the cached, per-text part of a split: the statement cut
// into pieces around its VALUES rows.
type insertSplit struct {
	use       int        // index of the target table in Statement.uses
	head      Template   // "INSERT INTO t (a, b) VALUES "
	rows      []Template // "($1, $2)", one per VALUES row
	tail      Template   // " ON CONFLICT ... RETURNING ..."
	returning bool
	repeated  bool // some $n occurs twice (see InsertSplit.RepeatedParams)
}

// markerParam stands for the rows while the head and tail are cut out of
// the deparsed text; no client can send that many parameters.
const markerParam = 1<<31 - 1

// buildInsertSplit prepares a multi-row INSERT ... VALUES into a sharded
// table for splitting. nil: the statement cannot be split exactly (Route
// then refuses it when its rows span shards). It restores ins before
// returning.
func buildInsertSplit(st *Statement, ins *pg.InsertStmt, version int32) *insertSplit {
	sel := ins.SelectStmt.GetSelectStmt()
	if sel == nil || len(sel.ValuesLists) < 2 || isSetOp(sel) || len(sel.FromClause) > 0 ||
		sel.WithClause != nil || len(sel.SortClause) > 0 || sel.LimitCount != nil || sel.LimitOffset != nil {
		return nil
	}
	// A WITH clause would run once per shard instead of once.
	if ins.WithClause != nil {
		return nil
	}
	// Only the target may be sharded; other tables (subqueries in the
	// rows, ON CONFLICT) must be reference tables, on every shard.
	target := -1
	for i := range st.uses {
		u := &st.uses[i]
		switch {
		case u.sharded() && u.insert && u.write && target < 0:
			target = i
		case u.info == nil || !u.info.ref:
			return nil
		}
	}
	if target < 0 {
		return nil
	}
	stmt := &pg.Node{Node: &pg.Node_InsertStmt{InsertStmt: ins}}
	deparse := func() (string, error) {
		return pg.Deparse(&pg.ParseResult{Version: version, Stmts: []*pg.RawStmt{{Stmt: stmt}}})
	}
	full, err := deparse()
	if err != nil {
		return nil
	}
	rows := sel.ValuesLists
	sel.ValuesLists = []*pg.Node{pg.MakeListNode([]*pg.Node{pg.MakeParamRefNode(markerParam, 0)})}
	marked, err := deparse()
	sel.ValuesLists = rows
	if err != nil {
		return nil
	}
	// The shards run the deparsed text: it must parse back into the same
	// statement, or a deparser slip would silently change it.
	back, err := pg.Parse(full)
	if err != nil || len(back.Stmts) != 1 || !exprEqual(back.Stmts[0].Stmt, stmt) {
		return nil
	}
	head, tail, ok := cutMarker(marked)
	if !ok || len(full) < len(head)+len(tail) || full[:len(head)] != head || full[len(full)-len(tail):] != tail {
		return nil
	}
	texts, ok := splitRows(full[len(head) : len(full)-len(tail)])
	if !ok || len(texts) != len(rows) {
		return nil
	}
	sp := &insertSplit{use: target, head: splitTemplate(head), tail: splitTemplate(tail),
		rows: make([]Template, len(texts)), returning: len(ins.ReturningList) > 0}
	for i, t := range texts {
		sp.rows[i] = splitTemplate(t)
	}
	all := splitTemplate(full).Params
	sp.repeated = len(distinctParams(all)) != len(all)
	return sp
}

// cutMarker splits the deparsed text with the marker row "($marker)" into
// what comes before and after that row. The marker must be exactly one
// parameter hole, not text inside a literal.
func cutMarker(marked string) (head, tail string, ok bool) {
	t := splitTemplate(marked)
	at := -1
	for i, n := range t.Params {
		if n == markerParam {
			if at >= 0 {
				return "", "", false
			}
			at = i
		}
	}
	if at < 0 {
		return "", "", false
	}
	for i := 0; i < at; i++ {
		head += t.Pieces[i] + "$" + strconv.Itoa(t.Params[i])
	}
	before := t.Pieces[at]
	after := t.Pieces[at+1]
	if len(before) == 0 || before[len(before)-1] != '(' || len(after) == 0 || after[0] != ')' {
		return "", "", false
	}
	head += before[:len(before)-1]
	tail = after[1:]
	for i := at + 1; i < len(t.Params); i++ {
		tail += "$" + strconv.Itoa(t.Params[i]) + t.Pieces[i+1]
	}
	return head, tail, true
}

// splitRows cuts deparsed "(a, b), (c, d)" into its parenthesised rows.
// Commas at parenthesis depth 0 separate rows; quotes are skipped.
func splitRows(s string) ([]string, bool) {
	var rows []string
	depth, start := 0, 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'':
			backslash := i > 0 && (s[i-1] == 'e' || s[i-1] == 'E') && (i < 2 || !isIdentCont(s[i-2]))
			i = skipQuoted(s, i+1, '\'', backslash)
			continue
		case c == '"':
			i = skipQuoted(s, i+1, '"', false)
			continue
		case c == '$':
			if end, ok := dollarQuote(s, i); ok {
				i = end
				continue
			}
		case isIdentStart(c):
			for i < len(s) && isIdentCont(s[i]) {
				i++
			}
			continue
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, false
			}
		case c == ',' && depth == 0:
			rows = append(rows, s[start:i])
			start = i + 1
		}
		i++
	}
	if depth != 0 {
		return nil, false
	}
	rows = append(rows, s[start:])
	for i, r := range rows {
		r = trimSpace(r)
		if len(r) < 2 || r[0] != '(' || r[len(r)-1] != ')' {
			return nil, false
		}
		rows[i] = r
	}
	return rows, true
}

// routeSplit places every VALUES row of u (the statement's only sharded
// table) on its shard and builds one INSERT per shard. why is the route
// reason so far.
func (r *Router) routeSplit(ctx context.Context, st *Statement, u *tableUse, args *Args, why []byte) (Route, error) {
	sp := st.split
	vals := u.vals
	if u.rows != nil {
		var err error
		if vals, err = r.insertKeys(ctx, u, args); err != nil {
			return Route{}, err
		}
	}
	if len(vals) != len(sp.rows) {
		return Route{}, pgError(codeInternal, fmt.Sprintf("INSERT has %d rows but %d keys", len(sp.rows), len(vals)), "")
	}
	strat := u.info.strat
	var ct columnType
	shardOf := make([]uint8, len(vals))
	counts := make([]int, len(r.single))
	var mask uint64
	for j, v := range vals {
		k, state, err := r.bindColumnKey(ctx, u, v, args, &ct)
		switch {
		case state == boundUnsure:
			return Route{}, unsureKeyError(u, v, err)
		case err != nil:
			return Route{}, err
		case state == boundNull:
			return Route{}, &pgconn.PgError{Severity: "ERROR", Code: codeNotNullViolation,
				Message: fmt.Sprintf("null value in shard key column %q", u.info.key), TableName: u.info.name, ColumnName: u.info.key}
		case state == boundFree:
			// locate would have reported it; never place a row by guess.
			return Route{}, pgError(codeFeatureNotSupport,
				fmt.Sprintf("shard key %s.%s of INSERT row %d is not a %s", u.name, u.info.key, j+1, strat.KeyType()),
				"send the key as a value of the key's type")
		}
		shard, err := strat.Locate(ctx, k, strategies.Write)
		if err != nil {
			return Route{}, asPgError(err)
		}
		i, ok := r.shardIdx[shard]
		if !ok {
			return Route{}, pgError(codeInternal, fmt.Sprintf("strategy %s placed a key on unknown shard %q", strat.Name(), shard), "")
		}
		shardOf[j] = uint8(i)
		counts[i]++
		mask |= 1 << i
	}
	if bits.OnesCount64(mask) == 1 { // locate and this pass disagree: trust this one
		return Route{Kind: RouteSingle, Shards: r.single[bits.TrailingZeros64(mask)], Reason: string(why)}, nil
	}
	split := &InsertSplit{Parts: make([]SplitPart, 0, bits.OnesCount64(mask)), Rows: len(vals), Returning: sp.returning,
		RepeatedParams: sp.repeated}
	partOf := make([]int, len(r.single))
	for i := range r.single {
		if counts[i] > 0 {
			partOf[i] = len(split.Parts)
			split.Parts = append(split.Parts, SplitPart{Shard: r.single[i][0], Rows: make([]int, 0, counts[i])})
		}
	}
	for j, i := range shardOf {
		p := &split.Parts[partOf[i]]
		p.Rows = append(p.Rows, j)
	}
	for i := range split.Parts {
		p := &split.Parts[i]
		p.SQL = sp.join(p.Rows)
		p.Params = distinctParams(p.SQL.Params)
	}
	why = append(why, " (rows split per shard)"...)
	return Route{Kind: RouteMulti, Shards: r.names(mask), Merge: MergeSplitInsert, Reason: string(why), Split: split}, nil
}

// join builds the statement with only the given rows.
func (sp *insertSplit) join(rows []int) Template {
	n := len(sp.head.Params) + len(sp.tail.Params)
	for _, j := range rows {
		n += len(sp.rows[j].Params)
	}
	t := Template{Pieces: make([]string, 0, n+1), Params: make([]int, 0, n)}
	// Pieces of consecutive templates meet in one piece: pending is the
	// text after the last hole so far (rows without holes pile up in it).
	var pending []byte
	add := func(part Template, sep string) {
		pending = append(pending, sep...)
		pending = append(pending, part.Pieces[0]...)
		for i, p := range part.Params {
			t.Pieces = append(t.Pieces, string(pending))
			t.Params = append(t.Params, p)
			pending = append(pending[:0], part.Pieces[i+1]...)
		}
	}
	add(sp.head, "")
	for i, j := range rows {
		sep := ""
		if i > 0 {
			sep = ", "
		}
		add(sp.rows[j], sep)
	}
	add(sp.tail, "")
	t.Pieces = append(t.Pieces, string(pending))
	return t
}

// distinctParams returns the distinct numbers of ps, ascending.
func distinctParams(ps []int) []int {
	if len(ps) == 0 {
		return nil
	}
	out := make([]int, 0, len(ps))
	seen := make(map[int]bool, len(ps))
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

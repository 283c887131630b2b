package router

import (
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The executor runs a ScatterPlan's merge nodes over the shards' row
// streams. Every node is a pull iterator (next returns the following row,
// valid until the next call, nil at the end), so rows stream from the
// shards to emit: MergeSort holds one row per shard, Limit stops pulling
// once it has enough, and only Aggregate, Sort and Distinct without ON
// keep rows, charged against one memory budget per Execute.

// Source is one shard's result rows in TEXT format (nil value = NULL). The
// row is valid only until the next Next on the same Source (it aliases the
// connection's read buffer): copy what you keep.
type Source interface {
	Next() ([][]byte, error) // nil, nil at end
}

// ParamFunc returns the text of $n of the analysed statement (null=true
// for NULL).
type ParamFunc func(n int) (text []byte, null bool, err error)

// ExecOptions tune one Execute.
type ExecOptions struct {
	// Budget is the bytes of rows, groups and distinct sets the merge may
	// keep in memory; 0 = DefaultMergeBudget.
	Budget int64
	// Evaluate runs the plan's Evaluate nodes (expressions over
	// aggregates) on a server of the route; BoundParams is how many
	// parameters the client bound (the evaluation's own come after).
	Evaluate    Evaluator
	BoundParams int
	// CollatedText: the shards' database collation does not order text
	// by its bytes, so the proxy must not order text, varchar or char
	// values itself (Postgres does, in Evaluate).
	CollatedText bool
	// CollatedColumns: some column of the shards' tables (or a domain)
	// has a collation of its own, which its values lose when the proxy
	// orders them or hands them to Evaluate.
	CollatedColumns bool
	// NondeterministicColumns: some of those collations is
	// nondeterministic, so text values of different bytes may be equal:
	// the proxy then groups and deduplicates no text but under COLLATE "C".
	NondeterministicColumns bool
	// PlainColumns[i]: column i of the shards' rows is, on every shard,
	// a table column without a collation of its own (the shards'
	// RowDescriptions name it), so CollatedColumns and
	// NondeterministicColumns do not concern its values. nil: none is
	// known to be.
	PlainColumns []bool
	// Nondeterministic: the shards' databases have a nondeterministic
	// collation, which a statement's COLLATE clause may name: the proxy
	// then groups and deduplicates no text under a COLLATE clause other
	// than "C" (a deterministic collation's equal values are equal bytes).
	Nondeterministic bool
	// RoundedFloats: the shards print real and double precision values
	// rounded (the session's extra_float_digits is below 1), so the proxy
	// must not compute with, compare or evaluate them: Postgres does so
	// on the exact values and rounds only what it prints.
	RoundedFloats bool
}

// DefaultMergeBudget is the memory budget of a merge when
// ExecOptions.Budget is 0.
const DefaultMergeBudget = 64 << 20

// Memory charged per retained row and value on top of the values' bytes
// (slice headers, map entries): an estimate that keeps the budget honest
// for narrow rows.
const (
	rowOverhead   = 64
	valueOverhead = 24
	accOverhead   = 160
)

// CheckFields reports whether two shards' RowDescriptions agree: the same
// number of columns with the same names and type OIDs.
func CheckFields(a, b []pgproto3.FieldDescription) error {
	if len(a) != len(b) {
		return fieldsDisagree(fmt.Sprintf("one shard returned %d columns, another %d", len(a), len(b)))
	}
	for i := range a {
		if string(a[i].Name) != string(b[i].Name) || a[i].DataTypeOID != b[i].DataTypeOID {
			return fieldsDisagree(fmt.Sprintf("column %d is %q (type OID %d) on one shard and %q (type OID %d) on another",
				i+1, a[i].Name, a[i].DataTypeOID, b[i].Name, b[i].DataTypeOID))
		}
	}
	return nil
}

func fieldsDisagree(detail string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: codeInternal,
		Message: "shards disagree on result columns", Detail: detail,
		Hint: "the table's definition differs between shards; make the schemas identical"}
}

// OutputFields returns the RowDescription fields the client must see,
// given the fields of one shard's result for the Scatter SQL: the hidden
// columns dropped, and the finished type of the aggregates whose result
// type differs from their partials' (avg: numeric or float8;
// count(DISTINCT): bigint). Every field is in text format.
func (p *ScatterPlan) OutputFields(shard []pgproto3.FieldDescription) ([]pgproto3.FieldDescription, error) {
	if len(shard) < p.Hidden {
		return nil, planShapeError(fmt.Sprintf("the shard query returned %d columns, fewer than the plan's %d hidden ones", len(shard), p.Hidden))
	}
	vis := len(shard) - p.Hidden
	out := slices.Clone(shard[:vis])
	for i := range out {
		out[i].Format = 0
	}
	var err error
	walkPlan(p.Root, func(n Node) {
		a, ok := n.(*Aggregate)
		if !ok {
			return
		}
		for _, s := range a.Aggs {
			i, rerr := resolveCol(s.Col, len(shard), p.Hidden)
			if rerr != nil {
				err = rerr
				return
			}
			if i >= vis {
				continue
			}
			switch s.Func {
			case AggAvg:
				if c := typeOf(shard[i].DataTypeOID).cls; c == clsFloat4 || c == clsFloat8 {
					setType(&out[i], oidFloat8, 8)
				} else {
					setType(&out[i], oidNumeric, -1)
				}
			case AggCount, AggCountDistinct:
				setType(&out[i], oidInt8, 8)
			}
		}
	})
	return out, err
}

func setType(f *pgproto3.FieldDescription, oid uint32, size int16) {
	f.DataTypeOID, f.DataTypeSize, f.TypeModifier = oid, size, -1
	f.TableOID, f.TableAttributeNumber = 0, 0
}

func walkPlan(n Node, f func(Node)) {
	if n == nil {
		return
	}
	f(n)
	for _, c := range n.Children() {
		walkPlan(c, f)
	}
}

func planShapeError(detail string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: codeInternal,
		Message: "shardproxy cannot merge the shards' results", Detail: detail}
}

func resolveCol(c ColRef, width, hidden int) (int, error) {
	i := c.Index
	if c.Hidden {
		if i >= hidden {
			return 0, planShapeError(fmt.Sprintf("hidden column %d of %d", i, hidden))
		}
		i += width - hidden
	} else if i >= width-hidden {
		return 0, planShapeError(fmt.Sprintf("visible column %d of %d", i, width-hidden))
	}
	if i < 0 || i >= width {
		return 0, planShapeError(fmt.Sprintf("column %s out of range", c))
	}
	return i, nil
}

// Execute runs the plan's merge nodes over the sources (one per shard, in
// the order of the route's shards) and calls emit for every output row
// (visible columns only, text format; emit must not keep the slice). It
// returns the number of rows emitted, for the "SELECT n" tag. fields are
// one shard's RowDescription for the Scatter SQL. A ctx error is returned
// as is; the caller drains or cancels the shards after any return.
func (p *ScatterPlan) Execute(ctx context.Context, fields []pgproto3.FieldDescription, srcs []Source, param ParamFunc, opts ExecOptions, emit func(row [][]byte) error) (int64, error) {
	rows, err := p.Open(ctx, fields, srcs, param, opts)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		row, err := rows.Next()
		if err != nil {
			return n, err
		}
		if row == nil {
			return n, nil
		}
		if err := emit(row); err != nil {
			return n, err
		}
		n++
	}
}

// Rows is a plan being executed, row by row (Open).
type Rows struct {
	ctx  context.Context
	root rowIter
	vis  int
}

// Open starts the plan's merge nodes over the sources, as Execute does,
// and returns its rows to be pulled one at a time: a SQL cursor across
// shards merges as FETCH asks. Nothing runs until the first Next; a
// source's Next is called only from within Rows.Next.
func (p *ScatterPlan) Open(ctx context.Context, fields []pgproto3.FieldDescription, srcs []Source, param ParamFunc, opts ExecOptions) (*Rows, error) {
	if len(fields) < p.Hidden {
		return nil, planShapeError(fmt.Sprintf("the shard query returned %d columns, fewer than the plan's %d hidden ones", len(fields), p.Hidden))
	}
	ex := &executor{ctx: ctx, width: len(fields), hidden: p.Hidden, srcs: srcs, param: param,
		budget: opts.Budget, eval: opts.Evaluate, evalParams: opts.BoundParams,
		collatedColumns: opts.CollatedColumns,
		collatedText:    opts.CollatedText, ndColumns: opts.NondeterministicColumns, nondeterministic: opts.Nondeterministic,
		plainCols:     opts.PlainColumns,
		roundedFloats: opts.RoundedFloats}
	if ex.budget <= 0 {
		ex.budget = DefaultMergeBudget
	}
	ex.colls = make([]Collation, len(fields))
	for i := range ex.colls {
		ref := ColRef{Index: i}
		if vis := len(fields) - p.Hidden; i >= vis {
			ref = ColRef{Hidden: true, Index: i - vis}
		}
		c, ok := p.Collations[ref]
		switch {
		case ok:
			ex.colls[i] = c
		case p.CollatedFrom:
			ex.colls[i] = CollationExplicit
		}
	}
	types := make([]valType, len(fields))
	for i, f := range fields {
		if f.Format != 0 {
			// Every comparison here reads Postgres' text output.
			return nil, planShapeError(fmt.Sprintf("column %q of the shard result is in binary format; the merge reads text", f.Name))
		}
		types[i] = typeOf(f.DataTypeOID)
	}
	root, _, err := ex.build(p.Root, types)
	if err != nil {
		return nil, err
	}
	return &Rows{ctx: ctx, root: root, vis: len(fields) - p.Hidden}, nil
}

// Next returns the next output row (visible columns only, text format;
// valid until the next call), or nil at the end.
func (r *Rows) Next() ([][]byte, error) {
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	row, err := r.root.next()
	if err != nil || row == nil {
		return nil, err
	}
	return row[:r.vis], nil
}

// executor is the state of one Execute.
type executor struct {
	ctx              context.Context
	width, hidden    int
	srcs             []Source
	param            ParamFunc
	budget, used     int64
	ticks            uint
	eval             Evaluator
	evalParams       int
	collatedColumns  bool
	collatedText     bool        // ExecOptions.CollatedText
	ndColumns        bool        // ExecOptions.NondeterministicColumns
	nondeterministic bool        // ExecOptions.Nondeterministic
	colls            []Collation // per column of the shards' rows, what its COLLATE clauses say
	plainCols        []bool      // ExecOptions.PlainColumns
	roundedFloats    bool        // ExecOptions.RoundedFloats
}

// orderable checks that the proxy may order values of type t, column idx
// of the rows, itself: a type it compares exactly and, for text, a
// bytewise collation (the database's, or bytewise set by the statement:
// bytewise, or the column's COLLATE "C").
func (ex *executor) orderable(t valType, idx int, use string, bytewise bool) error {
	if err := ex.comparable(t, use); err != nil {
		return err
	}
	if bytewise || !collatable(t) && !explicitlyCollatable(t) {
		return nil
	}
	switch ex.colls[idx] {
	case CollationBytes:
		return nil
	case CollationExplicit:
		return errExplicitCollation(use, t, "orders")
	}
	if collatable(t) && (ex.collatedText || ex.collatedColumns && !ex.plain(idx)) {
		return pgError(codeFeatureNotSupport,
			fmt.Sprintf("cannot %s values of type %s across shards under the database's collations", use, t.name()),
			`shardproxy orders text across shards by its bytes; write COLLATE "C" in the ORDER BY, or add a condition on the shard key so the statement targets one shard`)
	}
	return nil
}

// plain tells whether column idx is a table column without a collation
// of its own (ExecOptions.PlainColumns).
func (ex *executor) plain(idx int) bool { return idx < len(ex.plainCols) && ex.plainCols[idx] }

// equatable checks that the proxy may compare values of type t, column
// idx of the rows, for equality itself (group and distinct keys, HAVING
// =): under a deterministic collation equal text is equal bytes, under a
// nondeterministic one ('a' = 'A' case-insensitively) it is not.
func (ex *executor) equatable(t valType, idx int, use string) error {
	if err := ex.comparable(t, use); err != nil {
		return err
	}
	if !collatable(t) && !explicitlyCollatable(t) {
		return nil
	}
	switch ex.colls[idx] {
	case CollationBytes:
		return nil
	case CollationExplicit:
		if ex.nondeterministic {
			return errExplicitCollation(use, t, "compares")
		}
		return nil
	}
	if collatable(t) && ex.ndColumns && !ex.plain(idx) {
		return pgError(codeFeatureNotSupport,
			fmt.Sprintf("cannot %s values of type %s across shards in a database whose columns have nondeterministic collations", use, t.name()),
			`shardproxy compares text across shards by its bytes, and a nondeterministic collation makes different text equal; write COLLATE "C", or add a condition on the shard key so the statement targets one shard`)
	}
	return nil
}

// errExplicitCollation refuses to compare values the statement put under
// a collation of its own (COLLATE "en-x-icu"), which the proxy does not
// compare as Postgres does.
func errExplicitCollation(use string, t valType, how string) error {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("cannot %s values of type %s across shards under the collation the statement names", use, t.name()),
		fmt.Sprintf(`shardproxy %s text across shards by its bytes; compare it without COLLATE or with COLLATE "C", or add a condition on the shard key so the statement targets one shard`, how))
}

// comparable checks that the proxy may compare values of type t for
// equality (group and distinct keys) and order.
func (ex *executor) comparable(t valType, use string) error {
	if !t.comparable() {
		return t.notComparable(use)
	}
	return ex.exactFloats(t, use)
}

// exactFloats refuses to use real and double precision values (and
// arrays of them) while the shards print them rounded: 1/3 on each of two
// shards sums to 0.666666666666666 from their text, where Postgres prints
// 0.666666666666667; two values that differ only past the printed digits
// would group together.
func (ex *executor) exactFloats(t valType, use string) error {
	if !ex.roundedFloats || !isFloat(t) {
		return nil
	}
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("cannot %s values of type %s across shards while extra_float_digits is below 1", use, t.name()),
		"the shards then print them rounded; SET extra_float_digits = 1 (the default), or add a condition on the shard key so the statement targets one shard")
}

// FloatType returns the name of type oid when it is real or double
// precision, or an array of them: the types whose text the session's
// extra_float_digits rounds (ExecOptions.RoundedFloats).
func FloatType(oid uint32) (name string, ok bool) {
	if t := typeOf(oid); isFloat(t) {
		return t.name(), true
	}
	return "", false
}

// isFloat tells whether t is real or double precision, or an array of them.
func isFloat(t valType) bool {
	if t.cls == clsFloat4 || t.cls == clsFloat8 {
		return true
	}
	e, ok := elementOf[t.oid]
	return ok && isFloat(typeOf(e))
}

// explicitlyCollatable tells whether values of type t follow a COLLATE
// clause although no database default applies to them: name (and arrays
// of it), whose default collation is "C".
func explicitlyCollatable(t valType) bool {
	if t.oid == oidName {
		return true
	}
	e, ok := elementOf[t.oid]
	return ok && e == oidName
}

// collatable tells whether values of type t are ordered by a collation
// (arrays: by their elements').
func collatable(t valType) bool {
	switch t.oid {
	case oidText, oidVarchar, oidBpchar:
		return true
	}
	e, ok := elementOf[t.oid]
	return ok && collatable(valType{oid: e})
}

// rowIter is a node being run: next returns the following row (valid
// until the next call) or nil at the end.
type rowIter interface {
	next() ([][]byte, error)
}

// charge counts n more bytes kept by node, failing with 53200 past the
// budget.
func (ex *executor) charge(n int64, node string) error {
	ex.used += n
	if ex.used > ex.budget {
		return &pgconn.PgError{Severity: "ERROR", Code: "53200",
			Message: fmt.Sprintf("cross-shard %s exceeded the merge memory budget of %d bytes", node, ex.budget),
			Hint:    "Add a condition on the shard key so that fewer rows are merged across shards, or raise the merge memory budget."}
	}
	return nil
}

// tick checks for cancellation every 256 rows of loops that consume
// input without emitting.
func (ex *executor) tick() error {
	ex.ticks++
	if ex.ticks&255 == 0 {
		return ex.ctx.Err()
	}
	return nil
}

func (ex *executor) col(c ColRef) (int, error) { return resolveCol(c, ex.width, ex.hidden) }

// build turns a plan node into an iterator; types are the column types of
// its input rows, and the returned ones those of its output rows.
func (ex *executor) build(n Node, types []valType) (rowIter, []valType, error) {
	switch n := n.(type) {
	case *Scatter:
		return &concatIter{ex: ex}, types, nil
	case *Concatenate:
		return &concatIter{ex: ex}, types, nil
	case *ExplainShards:
		return ex.newExplain(n, types)
	case *MergeSort:
		keys, err := ex.sortKeys(n.Keys, types)
		if err != nil {
			return nil, nil, err
		}
		return &mergeIter{ex: ex, h: mergeHeap{keys: keys}}, types, nil
	case *Aggregate:
		in, it, err := ex.build(n.Input, types)
		if err != nil {
			return nil, nil, err
		}
		return ex.newAggregate(n, in, it)
	case *Evaluate:
		in, it, err := ex.build(n.Input, types)
		if err != nil {
			return nil, nil, err
		}
		return ex.newEvaluate(n, in, it)
	case *Sort:
		in, it, err := ex.build(n.Input, types)
		if err != nil {
			return nil, nil, err
		}
		keys, err := ex.sortKeys(n.Keys, it)
		if err != nil {
			return nil, nil, err
		}
		return &sortIter{ex: ex, in: in, keys: keys}, it, nil
	case *Distinct:
		in, it, err := ex.build(n.Input, types)
		if err != nil {
			return nil, nil, err
		}
		return ex.newDistinct(n, in, it)
	case *Limit:
		in, it, err := ex.build(n.Input, types)
		if err != nil {
			return nil, nil, err
		}
		l := &limitIter{in: in, ex: ex, count: -1}
		if l.count, err = ex.limitValue(n.Count, "LIMIT", "2201W"); err != nil {
			return nil, nil, err
		}
		if l.offset, err = ex.limitValue(n.Offset, "OFFSET", "2201X"); err != nil {
			return nil, nil, err
		}
		if l.offset < 0 {
			l.offset = 0
		}
		return l, it, nil
	case *Project:
		return ex.build(n.Input, types)
	case nil:
		return nil, nil, planShapeError("empty plan")
	}
	return nil, nil, planShapeError(fmt.Sprintf("unknown plan node %T", n))
}

// value returns the text of a plan constant.
func (ex *executor) value(v *ValueRef) (text []byte, null bool, err error) {
	switch {
	case v.Null:
		return nil, true, nil
	case v.Param > 0:
		if ex.param == nil {
			return nil, false, planShapeError(fmt.Sprintf("no value for parameter $%d", v.Param))
		}
		return ex.param(v.Param)
	}
	return []byte(v.Text), false, nil
}

// limitValue reads LIMIT/OFFSET as Postgres does (a bigint; NULL = none
// = -1 here; negative is an error).
func (ex *executor) limitValue(v *ValueRef, what, negCode string) (int64, error) {
	if v == nil {
		return -1, nil
	}
	text, null, err := ex.value(v)
	if err != nil || null {
		return -1, err
	}
	n, err := parseBigint(text)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, pgError(negCode, what+" must not be negative", "")
	}
	return n, nil
}

// parseBigint is int8in: surrounding spaces and a sign allowed.
func parseBigint(text []byte) (int64, error) {
	s := string(text)
	t := trimSpace(s)
	if len(t) > 0 && t[0] == '+' {
		t = t[1:]
		if len(t) > 0 && (t[0] == '-' || t[0] == '+') {
			t = "x"
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, pgError("22003", `value "`+s+`" is out of range for type bigint`, "")
		}
		return 0, pgError("22P02", `invalid input syntax for type bigint: "`+s+`"`, "")
	}
	return n, nil
}

func trimSpace(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// sortKey is a SortKey resolved to a column index and type.
type sortKey struct {
	idx        int
	t          valType
	desc       bool
	nullsFirst bool
}

func (ex *executor) sortKeys(keys []SortKey, types []valType) ([]sortKey, error) {
	out := make([]sortKey, len(keys))
	for i, k := range keys {
		idx, err := ex.col(k.Col)
		if err != nil {
			return nil, err
		}
		t := types[idx]
		if err := ex.orderable(t, idx, "sort", k.Bytewise); err != nil {
			return nil, err
		}
		out[i] = sortKey{idx: idx, t: t, desc: k.Desc, nullsFirst: k.NullsFirst}
	}
	return out, nil
}

// compareRows orders two rows by keys; NULLs go first or last whatever
// the direction, as NULLS FIRST/LAST say.
func compareRows(keys []sortKey, a, b [][]byte) (int, error) {
	for _, k := range keys {
		va, vb := a[k.idx], b[k.idx]
		if va == nil || vb == nil {
			switch {
			case va == nil && vb == nil:
				continue
			case (va == nil) == k.nullsFirst:
				return -1, nil
			}
			return 1, nil
		}
		c, err := k.t.compare(va, vb)
		if err != nil {
			return 0, err
		}
		if c != 0 {
			if k.desc {
				c = -c
			}
			return c, nil
		}
	}
	return 0, nil
}

func (ex *executor) checkWidth(row [][]byte) error {
	if len(row) != ex.width {
		return planShapeError(fmt.Sprintf("a shard returned a row of %d columns, its RowDescription has %d", len(row), ex.width))
	}
	return nil
}

// concatIter streams the sources one after the other.
type concatIter struct {
	ex *executor
	i  int
}

func (c *concatIter) next() ([][]byte, error) {
	for c.i < len(c.ex.srcs) {
		row, err := c.ex.srcs[c.i].Next()
		if err != nil {
			return nil, err
		}
		if row != nil {
			return row, c.ex.checkWidth(row)
		}
		c.i++
	}
	return nil, nil
}

// mergeIter is the k-way merge of sources each sorted by the keys. The
// heap holds each source's current row (aliasing that source's buffer,
// which stays valid until that source's next Next); the top is the row
// last returned, and the next call advances only its source.
//
// The merge also checks that every shard's stream really is sorted the
// way the proxy compares: a column with a non-C collation (which the
// shards sort by and the proxy cannot) would otherwise interleave the
// shards wrongly without a sound. prev keeps a copy of the key values of
// the row last taken from the advancing source.
type mergeIter struct {
	ex      *executor
	h       mergeHeap
	started bool
	prev    mergeItem
	prevBuf []byte
}

type mergeItem struct {
	row [][]byte
	src int
	sc  []scalar // parsed sort keys of types compared as scalars, one parse per row
}

type mergeHeap struct {
	items []mergeItem
	keys  []sortKey
	err   error // first comparison error; checked after every heap operation
}

func (h *mergeHeap) Len() int      { return len(h.items) }
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(mergeItem)) }
func (h *mergeHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
func (h *mergeHeap) Less(i, j int) bool {
	a, b := &h.items[i], &h.items[j]
	c, err := h.cmp(a, b)
	if err != nil && h.err == nil {
		h.err = err
	}
	if c != 0 {
		return c < 0
	}
	return a.src < b.src // stable across shards
}

// cmp orders two items by the keys in output order (direction and NULLS
// FIRST/LAST applied).
func (h *mergeHeap) cmp(a, b *mergeItem) (int, error) {
	for k, key := range h.keys {
		va, vb := a.row[key.idx], b.row[key.idx]
		var c int
		switch {
		case va == nil && vb == nil:
			continue
		case va == nil || vb == nil:
			if (va == nil) == key.nullsFirst {
				return -1, nil
			}
			return 1, nil
		case key.t.parsed():
			c = a.sc[k].cmp(b.sc[k])
		default:
			var err error
			if c, err = key.t.compare(va, vb); err != nil {
				return 0, err
			}
		}
		if c != 0 {
			if key.desc {
				c = -c
			}
			return c, nil
		}
	}
	return 0, nil
}

// keep copies the key values of it (about to be overwritten by its
// source's next row) into m.prev.
func (m *mergeIter) keep(it *mergeItem) {
	if m.prev.row == nil {
		m.prev.row = make([][]byte, len(it.row))
		m.prev.sc = make([]scalar, len(m.h.keys))
	}
	if m.prevBuf == nil {
		m.prevBuf = make([]byte, 0, 64) // non-nil: an empty value must not read as NULL
	}
	m.prevBuf = m.prevBuf[:0]
	for _, key := range m.h.keys {
		if v := it.row[key.idx]; v != nil {
			m.prevBuf = append(m.prevBuf, v...)
		}
	}
	off := 0
	for k, key := range m.h.keys {
		v := it.row[key.idx]
		if v == nil {
			m.prev.row[key.idx] = nil
		} else {
			m.prev.row[key.idx] = m.prevBuf[off : off+len(v) : off+len(v)]
			off += len(v)
		}
		if it.sc != nil {
			m.prev.sc[k] = it.sc[k]
		}
	}
}

func errShardOrder(src int) error {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("cannot merge the shards' sorted results: shard %d returned rows in an order the proxy does not compare the same way", src+1),
		`sorting text across shards works only with the "C" collation; add COLLATE "C" to the ORDER BY, or a condition on the shard key`)
}

// setRow makes row the item's current row, parsing its scalar keys.
func (h *mergeHeap) setRow(it *mergeItem, row [][]byte) error {
	it.row = row
	for k, key := range h.keys {
		if !key.t.parsed() || row[key.idx] == nil {
			continue
		}
		if it.sc == nil {
			it.sc = make([]scalar, len(h.keys))
		}
		var err error
		if it.sc[k], err = key.t.scalar(row[key.idx]); err != nil {
			return err
		}
	}
	return nil
}

func (m *mergeIter) next() ([][]byte, error) {
	if !m.started {
		m.started = true
		for i, s := range m.ex.srcs {
			row, err := s.Next()
			if err != nil {
				return nil, err
			}
			if row != nil {
				if err := m.ex.checkWidth(row); err != nil {
					return nil, err
				}
				it := mergeItem{src: i}
				if err := m.h.setRow(&it, row); err != nil {
					return nil, err
				}
				m.h.items = append(m.h.items, it)
			}
		}
		heap.Init(&m.h)
	} else if len(m.h.items) > 0 {
		top := &m.h.items[0]
		m.keep(top)
		row, err := m.ex.srcs[top.src].Next()
		if err != nil {
			return nil, err
		}
		if row == nil {
			heap.Pop(&m.h)
		} else {
			if err := m.ex.checkWidth(row); err != nil {
				return nil, err
			}
			if err := m.h.setRow(top, row); err != nil {
				return nil, err
			}
			if c, err := m.h.cmp(&m.prev, top); err != nil {
				return nil, err
			} else if c > 0 {
				return nil, errShardOrder(top.src)
			}
			heap.Fix(&m.h, 0)
		}
	}
	if m.h.err != nil {
		return nil, m.h.err
	}
	if len(m.h.items) == 0 {
		return nil, nil
	}
	return m.h.items[0].row, nil
}

// copyRow copies a row into one allocation, keeping NULL (nil) apart from
// the empty string, and returns the bytes to charge for it.
func copyRow(row [][]byte) ([][]byte, int64) {
	n := 0
	for _, v := range row {
		n += len(v)
	}
	buf := make([]byte, n)
	out := make([][]byte, len(row))
	for i, v := range row {
		if v == nil {
			continue
		}
		out[i] = buf[:len(v):len(v)]
		copy(out[i], v)
		buf = buf[len(v):]
	}
	return out, int64(n + rowOverhead + valueOverhead*len(row))
}

// sortIter sorts its whole input in memory (budgeted).
type sortIter struct {
	ex     *executor
	in     rowIter
	keys   []sortKey
	rows   [][][]byte
	pos    int
	sorted bool
}

func (s *sortIter) next() ([][]byte, error) {
	if !s.sorted {
		s.sorted = true
		for {
			if err := s.ex.tick(); err != nil {
				return nil, err
			}
			row, err := s.in.next()
			if err != nil {
				return nil, err
			}
			if row == nil {
				break
			}
			c, size := copyRow(row)
			if err := s.ex.charge(size, "sort"); err != nil {
				return nil, err
			}
			s.rows = append(s.rows, c)
		}
		var err error
		slices.SortStableFunc(s.rows, func(a, b [][]byte) int {
			c, cerr := compareRows(s.keys, a, b)
			if cerr != nil && err == nil {
				err = cerr
			}
			return c
		})
		if err != nil {
			return nil, err
		}
	}
	if s.pos >= len(s.rows) {
		return nil, nil
	}
	row := s.rows[s.pos]
	s.rows[s.pos] = nil // let the emitted row go
	s.pos++
	return row, nil
}

// limitIter skips offset rows, then passes count (-1: all).
type limitIter struct {
	ex            *executor
	in            rowIter
	count, offset int64
	passed        int64
}

func (l *limitIter) next() ([][]byte, error) {
	if l.count >= 0 && l.passed >= l.count {
		return nil, nil // done: pull nothing more from the shards
	}
	for ; l.offset > 0; l.offset-- {
		if err := l.ex.tick(); err != nil {
			return nil, err
		}
		row, err := l.in.next()
		if row == nil || err != nil {
			return nil, err
		}
	}
	row, err := l.in.next()
	if row != nil {
		l.passed++
	}
	return row, err
}

// appendRowKey appends the equality key of the columns idx of row: NULL
// equals NULL (as GROUP BY and DISTINCT treat it), other values by type.
func appendRowKey(dst []byte, row [][]byte, idx []int, types []valType) ([]byte, error) {
	for _, i := range idx {
		v := row[i]
		if v == nil {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		mark := len(dst)
		dst = binary.AppendUvarint(dst, 0) // placeholder, one byte for short keys
		start := len(dst)
		var err error
		if dst, err = types[i].appendKey(dst, v); err != nil {
			return nil, err
		}
		if n := len(dst) - start; n < 128 {
			dst[mark] = byte(n)
		} else {
			// Re-encode the length in front of a long key.
			k := append([]byte(nil), dst[start:]...)
			dst = binary.AppendUvarint(dst[:mark], uint64(n))
			dst = append(dst, k...)
		}
	}
	return dst, nil
}

// distinctIter drops rows equal on the columns to an earlier one: with ON,
// the input is sorted by them, so the previous row's key suffices;
// without, a set of keys is kept (budgeted).
type distinctIter struct {
	ex    *executor
	in    rowIter
	idx   []int
	types []valType
	on    bool
	seen  map[string]struct{}
	prev  []byte
	have  bool
	key   []byte
}

func (ex *executor) newDistinct(n *Distinct, in rowIter, types []valType) (rowIter, []valType, error) {
	d := &distinctIter{ex: ex, in: in, types: types, on: n.On != nil}
	if n.On == nil {
		for i := 0; i < ex.width-ex.hidden; i++ {
			d.idx = append(d.idx, i)
		}
		d.seen = make(map[string]struct{})
	} else {
		for _, c := range n.On {
			i, err := ex.col(c)
			if err != nil {
				return nil, nil, err
			}
			d.idx = append(d.idx, i)
		}
	}
	for _, i := range d.idx {
		if err := ex.equatable(types[i], i, "compare (DISTINCT)"); err != nil {
			return nil, nil, err
		}
	}
	return d, types, nil
}

func (d *distinctIter) next() ([][]byte, error) {
	for {
		if err := d.ex.tick(); err != nil {
			return nil, err
		}
		row, err := d.in.next()
		if row == nil || err != nil {
			return nil, err
		}
		if d.key, err = appendRowKey(d.key[:0], row, d.idx, d.types); err != nil {
			return nil, err
		}
		if d.on {
			if d.have && string(d.prev) == string(d.key) {
				continue
			}
			d.prev, d.have = append(d.prev[:0], d.key...), true
			return row, nil
		}
		if _, dup := d.seen[string(d.key)]; dup {
			continue
		}
		if err := d.ex.charge(int64(len(d.key))+rowOverhead, "DISTINCT"); err != nil {
			return nil, err
		}
		d.seen[string(d.key)] = struct{}{}
		return row, nil
	}
}

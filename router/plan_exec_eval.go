package router

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Evaluator runs an Evaluate node's query on a Postgres server of the
// route (the proxy uses a shard connection the merge has finished
// reading) and returns its result in text format.
type Evaluator func(ctx context.Context, q EvalQuery) (fields []pgproto3.FieldDescription, rows [][][]byte, err error)

// EvalQuery is one query of an Evaluate node: Head + From(first) + Tail.
// The holes of Head and Tail are the statement's parameters, rendered as
// the Scatter SQL's are; From's parameters, numbered from first (the
// number after the client's own bound parameters), are Values, in text
// format, typed by OIDs.
type EvalQuery struct {
	Head, Tail Template
	From       func(first int) string
	OIDs       []uint32
	Values     [][]byte
}

// evaluateBatch is the most rows sent in one query; the parameters of a
// batch stay under Postgres' limit of 65535 per statement.
const evaluateBatch = 500

// batchRows is how many rows of args values one query may bind after
// params parameters of the statement's own.
func batchRows(params, args int) int {
	n := evaluateBatch
	if args > 0 && (65535-params)/args < n {
		n = (65535 - params) / args
	}
	return max(n, 1)
}

// valuesFrom is the FROM clause a batch-mode Evaluate's SQL runs over:
// rows rows of args parameters each, numbered from first, after an
// ordinal.
func valuesFrom(first, rows, args int) string {
	var b strings.Builder
	b.WriteString(" FROM (VALUES ")
	k := first
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		b.WriteString(strconv.Itoa(r + 1))
		for range args {
			b.WriteString(", $")
			b.WriteString(strconv.Itoa(k))
			k++
		}
		b.WriteByte(')')
	}
	b.WriteString(") AS ")
	writeEvalRel(&b, evalOrdinal, args)
	return b.String()
}

// wholeFrom is the FROM clause of a whole-mode evaluation: its arrays
// zipped into rows. An argument with a cast (arrays themselves, sent as
// text[] since an array of arrays would be two-dimensional) is cast back
// to its type.
func wholeFrom(first int, casts []string) string {
	var b strings.Builder
	cast := slices.ContainsFunc(casts, func(c string) bool { return c != "" })
	if cast {
		b.WriteString(" FROM (SELECT ")
		for a, c := range casts {
			if a > 0 {
				b.WriteString(", ")
			}
			b.WriteString("_sp_t" + strconv.Itoa(a))
			if c != "" {
				b.WriteString("::" + c)
			}
		}
	}
	b.WriteString(" FROM unnest(")
	for a := range casts {
		if a > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(first+a))
	}
	if cast {
		b.WriteString(") AS _sp_u(")
		for a := range casts {
			if a > 0 {
				b.WriteString(", ")
			}
			b.WriteString("_sp_t" + strconv.Itoa(a))
		}
		b.WriteByte(')')
	}
	b.WriteString(") AS ")
	writeEvalRel(&b, "", len(casts))
	return b.String()
}

// writeEvalRel writes the evaluation's relation with its column names:
// _sp_m(lead, _sp_a0, ...), lead first when there is one.
func writeEvalRel(b *strings.Builder, lead string, args int) {
	b.WriteString(evalRel + "(" + lead)
	for a := range args {
		if a > 0 || lead != "" {
			b.WriteString(", ")
		}
		b.WriteString(evalArg(a))
	}
	b.WriteByte(')')
}

const (
	evalRel     = "_sp_m"
	evalOrdinal = "_sp_n"
)

func evalArg(i int) string { return "_sp_a" + strconv.Itoa(i) }

type evalIter struct {
	ex       *executor
	in       rowIter
	n        *Evaluate
	args     []int
	oids     []uint32
	out      []int
	outTypes []uint32 // the placeholders' types, which the results must have

	batch   [][][]byte
	results [][][]byte
	charged int64
	pos     int
	done    bool
}

func (ex *executor) newEvaluate(n *Evaluate, in rowIter, types []valType) (rowIter, []valType, error) {
	if ex.eval == nil {
		return nil, nil, planShapeError("no server to evaluate expressions over aggregates on")
	}
	e := &evalIter{ex: ex, in: in, n: n}
	args, out := n.Args, n.Out
	if n.Gather {
		// The gathered rows in, the client's result out.
		if ex.roundedFloats {
			return nil, nil, pgError(codeFeatureNotSupport, "cannot gather rows across shards while extra_float_digits is below 1",
				"the shards then print real and double precision values rounded; SET extra_float_digits = 1 (the default), or add a condition on the shard key so the statement targets one shard")
		}
		args, out = nil, nil
		for i := range ex.width {
			if i < ex.width-ex.hidden {
				out = append(out, ColRef{Index: i})
			} else {
				args = append(args, ColRef{Hidden: true, Index: i - (ex.width - ex.hidden)})
			}
		}
	}
	if n.SetOp != "" {
		// Every column, the arm's number last; the visible ones come back.
		args, out = nil, nil
		for i := range ex.width {
			if i < ex.width-ex.hidden {
				out = append(out, ColRef{Index: i})
				args = append(args, ColRef{Index: i})
			} else {
				args = append(args, ColRef{Hidden: true, Index: i - (ex.width - ex.hidden)})
			}
		}
	}
	for _, c := range args {
		i, err := ex.col(c)
		if err != nil {
			return nil, nil, err
		}
		if err := ex.exactFloats(types[i], "evaluate expressions over"); err != nil {
			return nil, nil, err
		}
		if err := ex.evaluable(types[i], i); err != nil {
			return nil, nil, err
		}
		e.args = append(e.args, i)
		e.oids = append(e.oids, types[i].oid)
	}
	for _, c := range out {
		i, err := ex.col(c)
		if err != nil {
			return nil, nil, err
		}
		e.out = append(e.out, i)
		e.outTypes = append(e.outTypes, types[i].oid)
	}
	if n.Having {
		e.outTypes = append(e.outTypes, oidBool)
	}
	if n.Whole {
		return ex.newWhole(e, types)
	}
	return e, types, nil
}

// evaluable checks that a value of type t, column idx of the rows, keeps
// its meaning when bound as a parameter of an evaluation, where it has the
// database's default collation: not its column's, nor the one a COLLATE
// clause of the statement gave it.
func (ex *executor) evaluable(t valType, idx int) error {
	if !collatable(t) && !explicitlyCollatable(t) {
		return nil
	}
	switch ex.colls[idx] {
	case CollationExplicit:
		return refuse(fmt.Sprintf("evaluation over values of type %s under the collation the statement names", t.name()),
			`the value would reach the evaluation without its collation; compare it without COLLATE or with COLLATE "C", or add a condition on the shard key so the statement targets one shard`)
	case CollationBytes:
		if ex.collatedText && collatable(t) {
			return refuse(fmt.Sprintf(`evaluation over values of type %s under COLLATE "C" in a database whose collation is not "C"`, t.name()),
				"the value would reach the evaluation without its collation; add a condition on the shard key so the statement targets one shard")
		}
		return nil
	}
	if ex.collatedColumns && collatable(t) && !ex.plain(idx) {
		// Bound as a parameter, the value would be compared in the
		// database's default collation, not its column's.
		return refuse(fmt.Sprintf("evaluation over values of type %s in a database whose columns have collations of their own", t.name()),
			"add a condition on the shard key so the statement targets one shard")
	}
	return nil
}

// arrayOf are the array types of the built-in scalar types: how a
// whole-mode Evaluate types its arrays, and (elementOf) which arrays a
// gathered aggregate may hand to Postgres.
var arrayOf = map[uint32]uint32{
	16: 1000, 17: 1001, 18: 1002, 19: 1003, 21: 1005, 23: 1007, 20: 1016, 25: 1009, 1042: 1014,
	1043: 1015, 26: 1028, 700: 1021, 701: 1022, 790: 791, 1700: 1231, 1082: 1182, 1083: 1183,
	1266: 1270, 1114: 1115, 1184: 1185, 1186: 1187, 2950: 2951, 114: 199, 3802: 3807, 869: 1041,
	650: 651, 829: 1040,
}

// castName names the types of arrayOf in SQL, as a cast to their array
// type writes them (bpchar: "character" would mean character(1)).
var castName = map[uint32]string{
	16: "bool", 17: "bytea", 18: `"char"`, 19: "name", 21: "int2", 23: "int4", 20: "int8", 25: "text", 1042: "bpchar",
	1043: "varchar", 26: "oid", 700: "float4", 701: "float8", 790: "money", 1700: "numeric", 1082: "date", 1083: "time",
	1266: "timetz", 1114: "timestamp", 1184: "timestamptz", 1186: "interval", 2950: "uuid", 114: "json", 3802: "jsonb",
	869: "inet", 650: "cidr", 829: "macaddr",
}

// elementOf is the inverse of arrayOf.
var elementOf = func() map[uint32]uint32 {
	m := make(map[uint32]uint32, len(arrayOf))
	for e, a := range arrayOf {
		m[a] = e
	}
	return m
}()

// wholeIter runs a whole-mode Evaluate: all input rows in one query.
type wholeIter struct {
	*evalIter
	arrays  []uint32   // the arguments' array types
	casts   []string   // per argument, the type an element is cast to ("": none)
	pending [][][]byte // result rows not yet returned
	// signatures are the gathered tables' columns by tag (Gather).
	signatures map[string]string
	row        [][]byte
	started    bool
}

func (ex *executor) newWhole(e *evalIter, types []valType) (rowIter, []valType, error) {
	w := &wholeIter{evalIter: e}
	for k, oid := range e.oids {
		a, ok := arrayOf[oid]
		cast := ""
		if elem, isArray := elementOf[oid]; isArray && castName[elem] != "" {
			a, ok, cast = arrayOf[oidText], true, castName[elem]+"[]"
		}
		w.casts = append(w.casts, cast)
		if !ok {
			return nil, nil, refuse(fmt.Sprintf("window function or set operation over values of type %s", types[e.args[k]].name()),
				"select values of built-in scalar types only, or add a condition on the shard key so the statement targets one shard")
		}
		w.arrays = append(w.arrays, a)
	}
	return w, types, nil
}

func (w *wholeIter) next() ([][]byte, error) {
	if !w.started {
		w.started = true
		if err := w.run(); err != nil {
			return nil, err
		}
	}
	if len(w.pending) == 0 {
		return nil, nil
	}
	res := w.pending[0]
	w.pending[0] = nil
	w.pending = w.pending[1:]
	if w.row == nil {
		w.row = make([][]byte, w.ex.width)
	}
	clear(w.row)
	for j, i := range w.out {
		w.row[i] = res[j]
	}
	return w.row, nil
}

// run reads every input row into one array literal per argument and
// evaluates the query over them.
func (w *wholeIter) run() error {
	arrays := make([][]byte, len(w.args))
	for a := range arrays {
		arrays[a] = []byte{'{'}
	}
	n := 0
	for {
		if err := w.ex.tick(); err != nil {
			return err
		}
		row, err := w.in.next()
		if err != nil {
			return err
		}
		if row == nil {
			break
		}
		if w.n.Gather && len(row[w.args[0]]) > 0 && row[w.args[0]][0] == '-' {
			// A table's signature (gatherSignature), not a row.
			if err := w.sameTable(row[w.args[0]], row[w.args[1]]); err != nil {
				return err
			}
			continue
		}
		size := int64(0)
		for a, i := range w.args {
			before := len(arrays[a])
			if n > 0 {
				arrays[a] = append(arrays[a], ',')
			}
			arrays[a] = appendArrayElem(arrays[a], row[i])
			size += int64(len(arrays[a]) - before)
		}
		if err := w.ex.charge(size+rowOverhead, w.purpose()); err != nil {
			return err
		}
		n++
	}
	for a := range arrays {
		arrays[a] = append(arrays[a], '}')
	}
	args := len(w.args)
	q := EvalQuery{Head: w.n.SQL, Tail: w.n.Tail, OIDs: w.arrays, Values: arrays,
		From: func(first int) string { return wholeFrom(first, w.casts) }}
	if w.n.SetOp != "" {
		cols := make([]string, args-1)
		for a := range cols {
			cols[a] = evalArg(a)
		}
		text := strings.NewReplacer(setOpCols, strings.Join(cols, ", "), setOpTag, evalArg(args-1)).Replace(w.n.SetOp)
		q.Head = Template{Pieces: []string{"WITH " + evalRel + " AS (SELECT *"}}
		q.Tail = Template{Pieces: []string{") " + text}}
	}
	fields, out, err := w.ex.eval(w.ex.ctx, q)
	if err != nil {
		return err
	}
	if len(fields) != len(w.out) {
		return planShapeError(fmt.Sprintf("the evaluation query returned %d columns, not %d", len(fields), len(w.out)))
	}
	for j, oid := range w.outTypes {
		if got := fields[j].DataTypeOID; got != oid {
			return planShapeError(fmt.Sprintf("column %d evaluated to type OID %d where the shards described type OID %d", j+1, got, oid))
		}
	}
	for _, r := range out {
		if len(r) != len(fields) {
			return planShapeError("the evaluation query returned a short row")
		}
	}
	// The result is held too until the client has it.
	var size int64
	for _, r := range out {
		size += rowOverhead
		for _, v := range r {
			size += int64(len(v))
		}
	}
	if err := w.ex.charge(size, w.purpose()); err != nil {
		return err
	}
	w.pending = out
	return nil
}

// sameTable checks that every shard described gathered occurrence tag's
// table alike (the names and types of its columns, in order): a shard
// whose table differs would have its row text read as other columns.
func (w *wholeIter) sameTable(tag, signature []byte) error {
	if w.signatures == nil {
		w.signatures = map[string]string{}
	}
	first, seen := w.signatures[string(tag)]
	if !seen {
		w.signatures[string(tag)] = string(signature)
		return nil
	}
	if first != string(signature) {
		return refuse(fmt.Sprintf("the shards' tables differ (columns %s on one shard, %s on another)", first, signature),
			"give the table the same columns in the same order on every shard, or add a condition on the shard key so the statement targets one shard")
	}
	return nil
}

// purpose names what the rows are held for, in a 53200 error.
func (w *wholeIter) purpose() string {
	switch {
	case w.n.Gather:
		return "gathering of rows for one Postgres"
	case w.n.SetOp != "":
		return "evaluation of set operations"
	}
	return "evaluation of window functions"
}

// appendArrayElem appends v as an element of an array literal: NULL, or
// the text double-quoted with \ and " escaped, which every scalar type's
// input accepts.
func appendArrayElem(b, v []byte) []byte {
	if v == nil {
		return append(b, "NULL"...)
	}
	b = append(b, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

func (e *evalIter) next() ([][]byte, error) {
	for {
		for e.pos < len(e.batch) {
			row, res := e.batch[e.pos], e.results[e.pos]
			e.batch[e.pos], e.results[e.pos] = nil, nil
			e.pos++
			for j, i := range e.out {
				row[i] = res[1+j]
			}
			if e.n.Having {
				if v := res[len(res)-1]; len(v) != 1 || v[0] != 't' {
					continue
				}
			}
			return row, nil
		}
		if e.done {
			return nil, nil
		}
		if err := e.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads the next batch of input rows and evaluates it.
func (e *evalIter) fill() error {
	e.ex.used -= e.charged // the previous batch is gone
	e.charged = 0
	e.batch, e.results, e.pos = e.batch[:0], e.results[:0], 0
	limit := batchRows(e.ex.evalParams, len(e.args))
	for len(e.batch) < limit {
		row, err := e.in.next()
		if err != nil {
			return err
		}
		if row == nil {
			e.done = true
			break
		}
		kept, size := copyRow(row)
		e.charged += size
		if err := e.ex.charge(size, "evaluation of expressions over aggregates"); err != nil {
			return err
		}
		e.batch = append(e.batch, kept)
	}
	if len(e.batch) == 0 {
		return nil
	}
	q := EvalQuery{Head: e.n.SQL, OIDs: make([]uint32, 0, len(e.batch)*len(e.args)),
		Values: make([][]byte, 0, len(e.batch)*len(e.args))}
	for _, row := range e.batch {
		q.OIDs = append(q.OIDs, e.oids...)
		for _, i := range e.args {
			q.Values = append(q.Values, row[i])
		}
	}
	rows, args := len(e.batch), len(e.args)
	q.From = func(first int) string { return valuesFrom(first, rows, args) }
	fields, out, err := e.ex.eval(e.ex.ctx, q)
	if err != nil {
		return err
	}
	if len(fields) != 1+len(e.outTypes) {
		return planShapeError(fmt.Sprintf("the evaluation query returned %d columns, not %d", len(fields), 1+len(e.outTypes)))
	}
	for j, oid := range e.outTypes {
		if got := fields[1+j].DataTypeOID; got != oid {
			return planShapeError(fmt.Sprintf("expression %d over aggregates evaluated to type OID %d where the shards described type OID %d", j+1, got, oid))
		}
	}
	// One result row per input row, in order: a set-returning function
	// would return more (or fewer) and is refused rather than guessed at.
	ok := len(out) == len(e.batch)
	for r := 0; ok && r < len(out); r++ {
		ok = len(out[r]) == len(fields) && string(out[r][0]) == strconv.Itoa(r+1)
	}
	if !ok {
		return refuse("set-returning function in an expression over aggregates",
			"call the set-returning function in a query of its own, or "+"add a condition on the shard key so the statement targets one shard")
	}
	e.results = out
	return nil
}

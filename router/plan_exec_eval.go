package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Evaluator runs an Evaluate node's query on a Postgres server of the
// route (the proxy uses a shard connection the merge has finished
// reading). sql is the node's SQL, its holes the statement's parameters;
// the evaluator renders them as the Scatter SQL's are, appends
// EvaluateSQL(first, len(rows), len(oids)) with first the number after
// the statement's own bound parameters, and binds each row's values in
// text format, typed by oids. It returns the result in text format.
type Evaluator func(ctx context.Context, sql Template, oids []uint32, rows [][][]byte) (fields []pgproto3.FieldDescription, out [][][]byte, err error)

// evaluateBatch is the most rows sent in one query; the parameters of a
// batch stay under Postgres' limit of 65535 per statement.
const evaluateBatch = 500

// EvaluateBatchRows is how many rows of args values one query may bind
// after params parameters of the statement's own.
func EvaluateBatchRows(params, args int) int {
	n := evaluateBatch
	if args > 0 && (65535-params)/args < n {
		n = (65535 - params) / args
	}
	return max(n, 1)
}

// EvaluateSQL is the FROM clause an Evaluate node's SQL runs over: rows
// rows of args parameters each, numbered from first, after an ordinal.
func EvaluateSQL(first, rows, args int) string {
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
	b.WriteString(") AS " + evalRel + "(" + evalOrdinal)
	for a := range args {
		b.WriteString(", " + evalArg(a))
	}
	b.WriteByte(')')
	return b.String()
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
	for _, c := range n.Args {
		i, err := ex.col(c)
		if err != nil {
			return nil, nil, err
		}
		e.args = append(e.args, i)
		e.oids = append(e.oids, types[i].oid)
	}
	for _, c := range n.Out {
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
	return e, types, nil
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
	limit := EvaluateBatchRows(e.ex.evalParams, len(e.args))
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
	values := make([][][]byte, len(e.batch))
	for r, row := range e.batch {
		vals := make([][]byte, len(e.args))
		for a, i := range e.args {
			vals[a] = row[i]
		}
		values[r] = vals
	}
	fields, out, err := e.ex.eval(e.ex.ctx, e.n.SQL, e.oids, values)
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

package router

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// Aggregate re-aggregates the shards' partial aggregates: counts and sums
// are summed (in the partial's type, with Postgres' overflow errors), min
// and max kept by the column's type, avg divided at the end exactly as
// numeric_div (numeric) or float8_avg does, count(DISTINCT) counts the
// distinct values the shards grouped by.

type aggKind uint8

const (
	aggCount aggKind = iota
	aggSumInt
	aggSumNumeric
	aggSumFloat4
	aggSumFloat8
	aggMin
	aggMax
	aggBoolAnd
	aggBoolOr
	aggAvgNumeric
	aggAvgFloat
	aggCountDistinct
	aggGather
)

// aggRun is one AggSpec resolved against the input's columns.
type aggRun struct {
	kind     aggKind
	col      int
	cnt      int // avg: the partial count column
	t        valType
	distinct bool // count/sum/avg(DISTINCT): each value once per group (acc.set)
}

// acc is one aggregate's running state in one group.
type acc struct {
	seen bool // a non-NULL partial arrived
	n    int64
	num  numeric
	f    float64
	f4   float32
	b    bool
	best []byte
	set  map[string]struct{}
}

type aggGroup struct {
	row  [][]byte // the first input row of the group (copied)
	accs []acc
}

type aggIter struct {
	ex       *executor
	in       rowIter
	groupBy  []int
	inTypes  []valType
	outTypes []valType
	aggs     []aggRun
	having   *havingExpr

	groups map[string]*aggGroup
	list   []*aggGroup
	pos    int
	done   bool
	key    []byte
	out    [][]byte
	buf    []byte
	offs   []int
	tmp    big.Int // scratch for numeric sums
}

func (ex *executor) newAggregate(n *Aggregate, in rowIter, types []valType) (rowIter, []valType, error) {
	a := &aggIter{ex: ex, in: in, inTypes: types, groups: make(map[string]*aggGroup)}
	for _, c := range n.GroupBy {
		i, err := ex.col(c)
		if err != nil {
			return nil, nil, err
		}
		if err := ex.equatable(types[i], i, "group"); err != nil {
			return nil, nil, err
		}
		a.groupBy = append(a.groupBy, i)
	}
	a.outTypes = append([]valType(nil), types...)
	for _, s := range n.Aggs {
		r, err := ex.aggRun(s, types)
		if err != nil {
			return nil, nil, err
		}
		switch r.kind {
		case aggAvgNumeric:
			a.outTypes[r.col] = typeOf(oidNumeric)
		case aggAvgFloat:
			a.outTypes[r.col] = typeOf(oidFloat8)
		case aggCount, aggCountDistinct:
			a.outTypes[r.col] = typeOf(oidInt8)
		}
		a.aggs = append(a.aggs, r)
	}
	if n.Having != nil {
		h, err := ex.compileHaving(n.Having, a.outTypes)
		if err != nil {
			return nil, nil, err
		}
		a.having = h
	}
	return a, a.outTypes, nil
}

func (ex *executor) aggRun(s AggSpec, types []valType) (aggRun, error) {
	i, err := ex.col(s.Col)
	if err != nil {
		return aggRun{}, err
	}
	t := types[i]
	r := aggRun{col: i, t: t, distinct: s.Distinct}
	if s.Distinct {
		if err := ex.equatable(t, i, "compute a DISTINCT aggregate of"); err != nil {
			return aggRun{}, err
		}
	}
	cannot := func(what string) (aggRun, error) {
		return aggRun{}, pgError(codeFeatureNotSupport,
			fmt.Sprintf("cannot combine %s of type %s across shards", what, t.name()),
			"add a condition on the shard key so that the query runs on one shard, or cast the argument to numeric")
	}
	switch s.Func {
	case AggCount:
		if t.cls != clsInt {
			return cannot("count")
		}
		r.kind = aggCount
	case AggSum:
		switch {
		case t.oid == oidInt8:
			r.kind = aggSumInt
		case t.cls == clsNumeric:
			r.kind = aggSumNumeric
		case t.cls == clsFloat4 || t.cls == clsFloat8:
			if err := ex.exactFloats(t, "sum"); err != nil {
				return aggRun{}, err
			}
			r.kind = aggSumFloat8
			if t.cls == clsFloat4 {
				r.kind = aggSumFloat4
			}
		default:
			return cannot("sum")
		}
	case AggMin, AggMax:
		if err := ex.orderable(t, i, "compute min/max of", false); err != nil {
			return aggRun{}, err
		}
		r.kind = aggMin
		if s.Func == AggMax {
			r.kind = aggMax
		}
	case AggBoolAnd, AggBoolOr:
		if t.cls != clsBool {
			return cannot("bool_and/bool_or")
		}
		r.kind = aggBoolAnd
		if s.Func == AggBoolOr {
			r.kind = aggBoolOr
		}
	case AggAvg:
		c, err := ex.col(s.Count)
		if err != nil {
			return aggRun{}, err
		}
		if types[c].cls != clsInt {
			return aggRun{}, planShapeError("the partial count of avg is not an integer")
		}
		r.cnt = c
		switch t.cls {
		case clsInt, clsNumeric:
			r.kind = aggAvgNumeric
		case clsFloat8:
			if err := ex.exactFloats(t, "average"); err != nil {
				return aggRun{}, err
			}
			r.kind = aggAvgFloat
		case clsFloat4:
			// avg(float4) accumulates in float8; a float4 partial sum is
			// already rounded, so the result would differ from Postgres'.
			return aggRun{}, pgError(codeFeatureNotSupport,
				"cannot combine avg of type real across shards: the shards' partial sums are rounded to real",
				"write avg(x::double precision), which gives the same result as avg of a real column")
		default:
			return cannot("avg")
		}
	case AggCountDistinct:
		if err := ex.equatable(t, i, "count distinct"); err != nil {
			return aggRun{}, err
		}
		r.kind, r.distinct = aggCountDistinct, true
	case AggGather:
		if _, ok := elementOf[t.oid]; !ok {
			// unnest would expand a composite element into its columns.
			return aggRun{}, refuse(fmt.Sprintf("aggregate over values of type %s (array type OID %d) that needs all of its input", t.name(), t.oid),
				"aggregate a column of a built-in scalar type, or add a condition on the shard key so the statement targets one shard")
		}
		r.kind = aggGather
	default:
		return aggRun{}, planShapeError(fmt.Sprintf("unknown aggregate %s", s.Func))
	}
	return r, nil
}

func (a *aggIter) next() ([][]byte, error) {
	if !a.done {
		if err := a.consume(); err != nil {
			return nil, err
		}
		a.done = true
	}
	for a.pos < len(a.list) {
		g := a.list[a.pos]
		a.list[a.pos] = nil
		a.pos++
		row, err := a.finish(g)
		if err != nil {
			return nil, err
		}
		if a.having != nil {
			ok, err := a.having.eval(row)
			if err != nil {
				return nil, err
			}
			if ok != triTrue {
				continue
			}
		}
		return row, nil
	}
	return nil, nil
}

func (a *aggIter) consume() error {
	for {
		if err := a.ex.tick(); err != nil {
			return err
		}
		row, err := a.in.next()
		if err != nil {
			return err
		}
		if row == nil {
			break
		}
		if a.key, err = appendRowKey(a.key[:0], row, a.groupBy, a.inTypes); err != nil {
			return err
		}
		g := a.groups[string(a.key)]
		if g == nil {
			c, size := copyRow(row)
			g = &aggGroup{row: c, accs: make([]acc, len(a.aggs))}
			if err := a.ex.charge(size+int64(len(a.key))+int64(accOverhead*len(a.aggs)), "aggregate"); err != nil {
				return err
			}
			a.groups[string(a.key)] = g
			a.list = append(a.list, g)
		}
		for i := range a.aggs {
			if err := a.accumulate(&a.aggs[i], &g.accs[i], row); err != nil {
				return err
			}
		}
	}
	a.groups = nil // the list holds the groups now
	if len(a.list) == 0 && len(a.groupBy) == 0 {
		// No GROUP BY: one row even for no input (count 0, the rest NULL).
		a.list = append(a.list, &aggGroup{row: make([][]byte, a.ex.width), accs: make([]acc, len(a.aggs))})
	}
	return nil
}

// seenBefore tells whether value v (equal by type: 1.0 = 1.00) is in the
// group's set of distinct values, adding it (budgeted) if not.
func (a *aggIter) seenBefore(r *aggRun, s *acc, v []byte) (bool, error) {
	var err error
	if a.key, err = r.t.appendKey(a.key[:0], v); err != nil {
		return false, err
	}
	if s.set == nil {
		s.set = make(map[string]struct{})
	}
	if _, ok := s.set[string(a.key)]; ok {
		return true, nil
	}
	if err := a.ex.charge(int64(len(a.key))+valueOverhead+16, "aggregate"); err != nil {
		return false, err
	}
	s.set[string(a.key)] = struct{}{}
	return false, nil
}

var (
	errBigintRange = pgError("22003", "bigint out of range", "")
	errFloatRange  = pgError("22003", "value out of range: overflow", "")
)

func (a *aggIter) accumulate(r *aggRun, s *acc, row [][]byte) error {
	v := row[r.col]
	if r.distinct {
		if v == nil {
			return nil // a NULL x, or one its FILTER dropped: counted nowhere
		}
		if dup, err := a.seenBefore(r, s, v); dup || err != nil {
			return err
		}
	}
	switch r.kind {
	case aggAvgNumeric, aggAvgFloat:
		c := row[r.cnt]
		if c == nil {
			break
		}
		n, err := parseInt8Text(c, r.t)
		if err != nil {
			return err
		}
		if s.n, err = addInt8(s.n, n); err != nil {
			return err
		}
	}
	if v == nil {
		return nil
	}
	switch r.kind {
	case aggGather:
		// array_agg's text is {e1,e2,...} (lower bound 1, elements
		// quoted as needed): two arrays concatenate by their elements.
		if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
			return planShapeError(fmt.Sprintf("a gathered partial is not an array: %.20q", v))
		}
		if len(v) == 2 {
			return nil
		}
		if v[1] == '{' {
			// Gathered arrays: unnest would flatten them into their
			// elements rather than give back each array.
			return refuse("aggregate over array values", "add a condition on the shard key so the statement targets one shard")
		}
		if err := a.ex.charge(int64(len(v)), "aggregate"); err != nil {
			return err
		}
		if !s.seen {
			s.seen, s.best = true, append(make([]byte, 0, len(v)), v...)
			return nil
		}
		s.best = append(append(s.best[:len(s.best)-1], ','), v[1:]...)
		return nil
	case aggCount, aggSumInt:
		n, err := parseInt8Text(v, r.t)
		if err != nil {
			return err
		}
		if s.n, err = addInt8(s.n, n); err != nil {
			return err
		}
	case aggSumNumeric, aggAvgNumeric:
		if !s.seen {
			x, err := parseNumeric(v)
			if err != nil {
				return badValue(r.t, v)
			}
			s.num = x
		} else if err := s.num.addText(v, &a.tmp); err != nil {
			return badValue(r.t, v)
		}
	case aggSumFloat8, aggAvgFloat:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return badValue(r.t, v)
		}
		if !s.seen && r.kind == aggSumFloat8 {
			s.f = f // sum's state starts as the first value: sum(-0) is -0
			break
		}
		sum := s.f + f
		// float8pl / float8_accum: an infinite result from finite inputs
		// is an overflow error.
		if math.IsInf(sum, 0) && !math.IsInf(s.f, 0) && !math.IsInf(f, 0) {
			return errFloatRange
		}
		s.f = sum
	case aggSumFloat4:
		f, err := strconv.ParseFloat(string(v), 32)
		if err != nil {
			return badValue(r.t, v)
		}
		if !s.seen {
			s.f4 = float32(f)
			break
		}
		sum := s.f4 + float32(f)
		if math.IsInf(float64(sum), 0) && !math.IsInf(float64(s.f4), 0) && !math.IsInf(f, 0) {
			return errFloatRange
		}
		s.f4 = sum
	case aggMin, aggMax:
		if s.seen {
			c, err := r.t.compare(v, s.best)
			if err != nil {
				return err
			}
			if (r.kind == aggMin && c >= 0) || (r.kind == aggMax && c <= 0) {
				break
			}
		}
		if grow := len(v) - cap(s.best); grow > 0 {
			if err := a.ex.charge(int64(grow), "aggregate"); err != nil {
				return err
			}
		}
		s.best = append(s.best[:0], v...)
	case aggBoolAnd, aggBoolOr:
		t := len(v) == 1 && v[0] == 't'
		switch {
		case !s.seen:
			s.b = t
		case r.kind == aggBoolAnd:
			s.b = s.b && t
		default:
			s.b = s.b || t
		}
	}
	s.seen = true
	return nil
}

func addInt8(a, b int64) (int64, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, errBigintRange
	}
	return s, nil
}

// parseInt8Text reads int2/4/8 output text without allocating.
func parseInt8Text(v []byte, t valType) (int64, error) {
	neg := len(v) > 0 && v[0] == '-'
	d := v
	if neg {
		d = v[1:]
	}
	if len(d) == 0 || len(d) > 19 {
		return 0, badValue(t, v)
	}
	var u uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, badValue(t, v)
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, badValue(t, v)
		}
		return -int64(u), nil
	}
	if u > math.MaxInt64 {
		return 0, badValue(t, v)
	}
	return int64(u), nil
}

// finish renders a group's output row into a buffer reused across rows.
func (a *aggIter) finish(g *aggGroup) ([][]byte, error) {
	a.out = append(a.out[:0], g.row...)
	if a.buf == nil {
		// Never nil: an empty min(text) is a slice of it, and a nil
		// slice would go out as NULL.
		a.buf = make([]byte, 0, 64)
	}
	a.buf = a.buf[:0]
	a.offs = a.offs[:0]
	for i := range a.aggs {
		r, s := &a.aggs[i], &g.accs[i]
		start := len(a.buf)
		null := false
		switch r.kind {
		case aggCount, aggCountDistinct:
			n := s.n
			if r.kind == aggCountDistinct {
				n = int64(len(s.set))
			}
			a.buf = strconv.AppendInt(a.buf, n, 10)
		case aggSumInt:
			null = !s.seen
			a.buf = strconv.AppendInt(a.buf, s.n, 10)
		case aggSumNumeric:
			null = !s.seen
			a.buf = s.num.appendText(a.buf)
		case aggSumFloat8:
			null = !s.seen
			a.buf = appendFloat8(a.buf, s.f)
		case aggSumFloat4:
			null = !s.seen
			a.buf = appendFloat4(a.buf, s.f4)
		case aggMin, aggMax, aggGather:
			null = !s.seen
			a.buf = append(a.buf, s.best...)
		case aggBoolAnd, aggBoolOr:
			null = !s.seen
			if s.b {
				a.buf = append(a.buf, 't')
			} else {
				a.buf = append(a.buf, 'f')
			}
		case aggAvgNumeric:
			null = !s.seen || s.n == 0
			if !null {
				q := s.num.divInt(s.n)
				a.buf = q.appendText(a.buf)
			}
		case aggAvgFloat:
			null = !s.seen || s.n == 0
			if !null {
				a.buf = appendFloat8(a.buf, s.f/float64(s.n))
			}
		}
		if null {
			a.buf = a.buf[:start]
			a.offs = append(a.offs, -1, -1)
		} else {
			a.offs = append(a.offs, start, len(a.buf))
		}
	}
	for i := range a.aggs {
		if a.offs[2*i] < 0 {
			a.out[a.aggs[i].col] = nil
		} else {
			a.out[a.aggs[i].col] = a.buf[a.offs[2*i]:a.offs[2*i+1]:a.offs[2*i+1]]
		}
	}
	return a.out, nil
}

// tri is SQL's three-valued logic.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triNull
)

// havingExpr is an Expr resolved against the aggregate's output columns,
// its constant read once per Execute in the column's type.
type havingExpr struct {
	op   ExprOp
	args []*havingExpr
	cmp  string
	idx  int
	t    valType
	null bool    // the constant is NULL
	num  []byte  // int/numeric columns: the constant as numeric text
	f    float64 // float columns
	raw  []byte  // text-like and bool columns
	sc   scalar  // date/time, bytea, "char", oid
}

func (ex *executor) compileHaving(e *Expr, types []valType) (*havingExpr, error) {
	h := &havingExpr{op: e.Op, cmp: e.Cmp}
	for _, a := range e.Args {
		c, err := ex.compileHaving(a, types)
		if err != nil {
			return nil, err
		}
		h.args = append(h.args, c)
	}
	switch e.Op {
	case ExprAnd, ExprOr:
		return h, nil
	case ExprNot:
		if len(h.args) != 1 {
			return nil, planShapeError("NOT needs one argument")
		}
		return h, nil
	case ExprIsNull, ExprIsNotNull:
		i, err := ex.col(e.Col)
		h.idx = i
		return h, err
	case ExprCmp:
	default:
		return nil, planShapeError(fmt.Sprintf("unknown HAVING operation %d", e.Op))
	}
	switch e.Cmp {
	case "=", "<>", "<", "<=", ">", ">=":
	default:
		return nil, planShapeError("unknown comparison " + e.Cmp)
	}
	i, err := ex.col(e.Col)
	if err != nil {
		return nil, err
	}
	h.idx, h.t = i, types[i]
	ordered := e.Cmp != "=" && e.Cmp != "<>"
	check := ex.equatable
	if ordered {
		check = func(t valType, idx int, use string) error { return ex.orderable(t, idx, use, false) }
	}
	if err := check(h.t, i, "compare (HAVING)"); err != nil {
		return nil, err
	}
	text, null, err := ex.value(&e.Value)
	if err != nil {
		return nil, err
	}
	if h.null = null; null {
		return h, nil
	}
	switch h.t.cls {
	case clsInt, clsNumeric:
		n, err := parseNumeric(text)
		if err != nil {
			return nil, err
		}
		h.num = n.appendText(nil)
	case clsFloat4, clsFloat8:
		if h.f, err = strconv.ParseFloat(trimSpace(string(text)), 64); err != nil {
			return nil, pgError("22P02", fmt.Sprintf("invalid input syntax for type %s: %q", h.t.name(), text), "")
		}
	case clsText, clsBpchar:
		h.raw = text
	case clsBool:
		switch string(bytes.ToLower(bytes.TrimSpace(text))) {
		case "t", "true", "yes", "y", "on", "1":
			h.raw = []byte("t")
		case "f", "false", "no", "n", "off", "0":
			h.raw = []byte("f")
		default:
			return nil, pgError("22P02", fmt.Sprintf("invalid input syntax for type boolean: %q", text), "")
		}
	default:
		if h.sc, err = h.t.scalar(text); err != nil {
			return nil, pgError(codeFeatureNotSupport,
				fmt.Sprintf("cannot compare %s with the constant %q across shards", h.t.name(), text),
				"write the constant in ISO format with an explicit time zone offset")
		}
	}
	return h, nil
}

func (h *havingExpr) eval(row [][]byte) (tri, error) {
	switch h.op {
	case ExprAnd, ExprOr:
		res := triTrue
		if h.op == ExprOr {
			res = triFalse
		}
		for _, a := range h.args {
			v, err := a.eval(row)
			if err != nil {
				return 0, err
			}
			switch {
			case h.op == ExprAnd && v == triFalse:
				return triFalse, nil
			case h.op == ExprOr && v == triTrue:
				return triTrue, nil
			case v == triNull:
				res = triNull
			}
		}
		return res, nil
	case ExprNot:
		v, err := h.args[0].eval(row)
		if v == triNull || err != nil {
			return v, err
		}
		return 1 - v, nil
	case ExprIsNull:
		return boolTri(row[h.idx] == nil), nil
	case ExprIsNotNull:
		return boolTri(row[h.idx] != nil), nil
	}
	v := row[h.idx]
	if v == nil || h.null {
		return triNull, nil
	}
	var c int
	switch h.t.cls {
	case clsInt, clsNumeric:
		c = cmpNumericText(v, h.num)
	case clsFloat4, clsFloat8:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return 0, badValue(h.t, v)
		}
		c = cmpFloat(f, h.f)
	case clsText, clsBool:
		c = bytes.Compare(v, h.raw)
	case clsBpchar:
		c = bytes.Compare(bytes.TrimRight(v, " "), bytes.TrimRight(h.raw, " "))
	default:
		x, err := h.t.scalar(v)
		if err != nil {
			return 0, err
		}
		c = x.cmp(h.sc)
	}
	switch h.cmp {
	case "=":
		return boolTri(c == 0), nil
	case "<>":
		return boolTri(c != 0), nil
	case "<":
		return boolTri(c < 0), nil
	case "<=":
		return boolTri(c <= 0), nil
	case ">":
		return boolTri(c > 0), nil
	}
	return boolTri(c >= 0), nil
}

func boolTri(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

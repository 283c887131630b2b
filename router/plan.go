package router

// Plan primitives for SELECTs that read several shards (the Vitess model):
// every target shard runs the same rewritten query (a Scatter leaf), and
// the proxy merges their rows with the nodes above it. A plan is built
// once per statement text by the planner (plan_build.go), cached with the
// Statement, and run by the executor (plan_exec.go) over the shards'
// row streams.
//
// Column references (ColRef) always name a column of the *shard row*: the
// rewritten query returns the client's visible columns first, in the
// client's order, then Hidden extra columns (sort keys not in the select
// list, partial aggregates). Nodes that compute (Aggregate) write their
// results into the same positions, so every ColRef stays valid at every
// level of the tree. Visible column k (0-based) is ColRef{Index: k};
// hidden column j (0-based among the hidden ones) is
// ColRef{Hidden: true, Index: j}, resolved at run time as
// len(row)-Hidden+j because a select list with * has a width the planner
// cannot know.

// ScatterPlan is how one multi-shard SELECT runs.
type ScatterPlan struct {
	Root   Node
	Hidden int // columns appended after the visible ones in Scatter.SQL's result
	// Collations are the columns whose expressions say with a COLLATE
	// clause how their text compares; a column not in the map is
	// CollationImplied, or CollationExplicit when CollatedFrom.
	Collations map[ColRef]Collation
	// CollatedFrom: a FROM item or WITH query holds a COLLATE clause
	// (other than "C"), which a subquery's column may carry to any column
	// of the result.
	CollatedFrom bool
}

// Collation is what the statement's own COLLATE clauses say of how a
// result column's text compares. Postgres compares text under the
// collation an expression derives (an explicit COLLATE wins over the
// columns' implicit ones, and carries through functions and operators);
// the proxy compares bytes, which only "C" and "POSIX" (and a default
// collation that orders by bytes) agree with. A nondeterministic
// collation also makes different bytes equal.
type Collation uint8

const (
	// CollationImplied: no COLLATE clause decides; the database's
	// default and its columns' collations do (ExecOptions).
	CollationImplied Collation = iota
	// CollationBytes: the value is under COLLATE "C" or "POSIX" (min/max
	// and casts keep their argument's collation): it compares by bytes.
	CollationBytes
	// CollationExplicit: a COLLATE clause naming another collation may
	// decide how the value compares.
	CollationExplicit
)

// Scatter returns the plan's Scatter leaf, the statement the shards run
// (every plan has one, at the end of its first children).
func (p *ScatterPlan) Scatter() *Scatter {
	n := p.Root
	for n != nil {
		if sc, ok := n.(*Scatter); ok {
			return sc
		}
		ch := n.Children()
		if len(ch) == 0 {
			return nil
		}
		n = ch[0]
	}
	return nil
}

// Node is one step of a plan. Implementations: *Scatter, *Concatenate,
// *MergeSort, *Aggregate, *Evaluate, *Sort, *Distinct, *Limit, *Project.
type Node interface {
	// Children returns the inputs of the node (none for Scatter).
	Children() []Node
	// Describe is the one-line text of the node in SHOW ROUTE and
	// `shardproxy route` (without its children).
	Describe() string
}

// Template is SQL text with holes where the analysed statement had $n
// parameters: Pieces[0] $Params[0] Pieces[1] $Params[1] ... Pieces[len].
// The simple protocol renders the holes with the literal tokens the
// normaliser replaced (exactly as the client wrote them); the extended
// protocol renders them as "$n", to be bound with the client's values.
type Template struct {
	Pieces []string // len(Params)+1
	Params []int    // 1-based parameter numbers, in text order
}

// Render joins the pieces, filling hole n with fill(n).
func (t Template) Render(fill func(n int) string) string {
	if len(t.Params) == 0 {
		if len(t.Pieces) == 0 {
			return ""
		}
		return t.Pieces[0]
	}
	size := 0
	for _, p := range t.Pieces {
		size += len(p)
	}
	b := make([]byte, 0, size+8*len(t.Params))
	for i, n := range t.Params {
		b = append(b, t.Pieces[i]...)
		b = append(b, fill(n)...)
	}
	b = append(b, t.Pieces[len(t.Params)]...)
	return string(b)
}

// ColRef names a column of the shard row (see the package comment above).
type ColRef struct {
	Hidden bool
	Index  int
}

// ValueRef is a constant of the statement: a parameter ($n of the analysed
// text, which is either a client bind parameter or a literal the
// normaliser replaced), or a text constant the planner kept.
type ValueRef struct {
	Param int    // > 0: $Param
	Text  string // Param == 0 && !Null: this text
	Null  bool   // the SQL NULL (LIMIT NULL / LIMIT ALL)
}

// Scatter is the leaf: SQL runs on every target shard of the route.
type Scatter struct {
	SQL Template
}

// Concatenate streams the shards' rows one shard after the other.
type Concatenate struct {
	Input *Scatter
}

// SortKey is one ORDER BY item, with Postgres' defaults made explicit
// (NULLS LAST for ASC, NULLS FIRST for DESC).
type SortKey struct {
	Col        ColRef
	Desc       bool
	NullsFirst bool
	// Bytewise: the client wrote COLLATE "C" (or "POSIX"), so text sorts
	// by its bytes whatever the database's collation (bytewiseCollate).
	Bytewise bool
}

// MergeSort is a streaming k-way merge of shard streams that each shard
// already returns sorted by Keys (the shard query keeps the ORDER BY).
type MergeSort struct {
	Input *Scatter
	Keys  []SortKey
}

// AggFunc is an aggregate the executor can finish from per-shard partials.
type AggFunc int

const (
	AggCount         AggFunc = iota // partial count(...) per shard -> sum, int8
	AggSum                          // partial sum -> sum in the partial's type (int8, numeric, float4, float8)
	AggMin                          // partial min -> min by the column's type
	AggMax                          // partial max -> max
	AggBoolAnd                      // bool_and / every -> and
	AggBoolOr                       // bool_or -> or
	AggAvg                          // Col = partial sum, Count = partial count -> numeric (or float8) as Postgres' avg
	AggCountDistinct                // Col = the argument itself (the shard query also groups by it) -> count of distinct non-NULL values, int8
	AggGather                       // partial array_agg(x) -> the arrays concatenated (NULL when every partial is), for an Evaluate node
)

// AggSpec is one aggregate of the final result. The executor writes the
// final value into Col.
type AggSpec struct {
	Func  AggFunc
	Col   ColRef
	Count ColRef // AggAvg only
	// Distinct: sum(DISTINCT x) or avg(DISTINCT x). The shards also group
	// by x, so each row's partial is x itself (in sum's type, count 1);
	// the executor adds each value once per group.
	Distinct bool
}

// Aggregate groups all input rows by GroupBy (hash aggregation, memory
// budgeted) and finishes Aggs per group; with no GroupBy there is exactly
// one output row, as in Postgres (count = 0, the rest NULL, for no input).
// Having filters the finished groups. Every other column of an output row
// is taken from some input row of its group (they are functions of the
// group key, computed by the shards).
type Aggregate struct {
	Input   Node
	GroupBy []ColRef
	// DistinctCol is the argument of the AggCountDistinct aggregates (at
	// most one distinct argument per statement): the shards group by it
	// too, and the executor remembers its distinct values per group.
	Aggs   []AggSpec
	Having *Expr // nil: no HAVING
}

// Evaluate computes expressions over finished aggregates (round(avg(x), 2),
// sum(a) / count(*), HAVING sum(x) > 2 * min(y)) on a Postgres server of
// the route, so that they have exactly Postgres' semantics: the executor
// sends the values of Args, batch by batch, as typed parameters of
//
//	<SQL> FROM (VALUES (1, $a, $b, ...), (2, ...)) AS _sp_m(_sp_n, _sp_a0, _sp_a1, ...)
//
// (see valuesFrom), where SQL is "SELECT _sp_m._sp_n, e1, ..., en" and
// each ei reads the aggregates and group values as _sp_m._sp_aK. The
// result of ei replaces column Out[i] of its row; with Having, the last
// expression is the HAVING condition and a row is kept only when it is
// true. The shards put a placeholder of each expression's type at Out[i]
// (CASE WHEN false THEN e END), so the row's types are known before the
// first batch.
//
// In Whole mode (window functions) the query runs once over all input
// rows: SQL is its text before the FROM clause and Tail after it (WHERE,
// ORDER BY, ...), each Arg is bound as one array of all rows' values
// (unnest(...) AS _sp_m(_sp_a0, ...)), and every result row is an output
// row, its columns going to Out in order.
type Evaluate struct {
	Input  Node
	SQL    Template // holes are the statement's parameters
	Tail   Template // Whole mode only
	Args   []ColRef
	Out    []ColRef
	Having bool
	Whole  bool
	// SetOp (Whole mode, no SQL): the client's set operations over the
	// arms' rows, each arm "SELECT {cols} FROM _sp_m WHERE {tag} = i";
	// every input column is an argument, the last one the arm's number.
	SetOp string
	// Gather (Whole mode): SQL and Tail are the client's statement over
	// the gathered rows (plan_build_gather.go); the hidden columns are
	// the arguments, the visible ones the placeholders of its result.
	Gather bool
}

// Sort orders all rows of its input in memory (budgeted); used above
// Aggregate, whose output order is arbitrary.
type Sort struct {
	Input Node
	Keys  []SortKey
}

// Distinct drops rows equal (by type: 1.0 = 1.00) to an earlier row on
// On; On == nil means every visible column (SELECT DISTINCT). With On set
// (DISTINCT ON), the input is sorted by the ON columns first, so only the
// previous row need be remembered; without it a set is kept (budgeted).
type Distinct struct {
	Input Node
	On    []ColRef
}

// Limit skips Offset rows, then passes at most Count rows. A Count that
// is NULL (LIMIT ALL / LIMIT NULL) passes all; a NULL Offset skips none.
// A negative value is an error, as in Postgres (2201W / 2201X).
type Limit struct {
	Input  Node
	Count  *ValueRef // nil: no LIMIT
	Offset *ValueRef // nil: no OFFSET
}

// Project drops the hidden columns and gives the client the result
// Postgres would: the visible columns, with the type of an avg (numeric
// or float8) and count(DISTINCT) (int8) rather than their partials'.
type Project struct {
	Input Node
}

// ExprOp is the operation of a HAVING expression node.
type ExprOp int

const (
	ExprAnd       ExprOp = iota // all Args true
	ExprOr                      // any Arg true
	ExprNot                     // not Args[0]
	ExprCmp                     // Col Cmp Value, compared by Col's type; NULL on either side -> NULL
	ExprIsNull                  // Col IS NULL
	ExprIsNotNull               // Col IS NOT NULL
)

// Expr is a HAVING predicate over the finished row, with SQL three-valued
// logic (a NULL result filters the group out, as Postgres does).
type Expr struct {
	Op    ExprOp
	Args  []*Expr
	Cmp   string // ExprCmp: "=", "<>", "<", "<=", ">", ">="
	Col   ColRef
	Value ValueRef
}

func (n *Scatter) Children() []Node     { return nil }
func (n *Concatenate) Children() []Node { return []Node{n.Input} }
func (n *MergeSort) Children() []Node   { return []Node{n.Input} }
func (n *Aggregate) Children() []Node   { return []Node{n.Input} }
func (n *Evaluate) Children() []Node    { return []Node{n.Input} }
func (n *Sort) Children() []Node        { return []Node{n.Input} }
func (n *Distinct) Children() []Node    { return []Node{n.Input} }
func (n *Limit) Children() []Node       { return []Node{n.Input} }
func (n *Project) Children() []Node     { return []Node{n.Input} }

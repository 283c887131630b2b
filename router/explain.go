package router

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// EXPLAIN of a SELECT that spans shards. Postgres answers EXPLAIN with
// its plan for the statement; across shards the statement's plan is the
// proxy's (how it merges or gathers the shards' rows) over each shard's
// plan for what the shard runs. Concatenating the shards' own EXPLAIN
// output, unlabelled, would read as one server's plan, and FORMAT JSON
// would come back as several documents where a tool reads one. So the
// proxy explains, on every shard, the statement the shard would run for
// the SELECT (the merge's rewritten query, the gathering's arms, or the
// client's own when the rows are only concatenated), with the client's
// options, and answers one EXPLAIN result in the shape Postgres gives a
// custom scan node (as Citus does): the proxy's steps, then each shard's
// plan under its name. EXPLAIN ANALYZE runs the shards' statements only:
// the proxy's merge is described, not run. What the proxy would refuse to
// run it refuses to explain, with the same error.

// explainOptions are an EXPLAIN statement's options (analyze.go).
type explainOptions struct {
	list    string   // the options as written in EXPLAIN (...), "" for none
	format  string   // "text", "json", "yaml" or "xml"
	verbose bool     // VERBOSE: also show the shards' statement
	analyze bool     // ANALYZE: the statement runs
	text    Template // the whole EXPLAIN statement, for shards that run the client's own query
}

// explainOptionsOf reads an EXPLAIN statement's options.
func explainOptionsOf(ex *pg.ExplainStmt) explainOptions {
	o := explainOptions{format: "text"}
	var items []string
	for _, n := range ex.Options {
		d := n.GetDefElem()
		if d == nil {
			continue
		}
		name := strings.ToLower(d.Defname)
		item, value := name, ""
		switch a := d.Arg.GetNode().(type) {
		case *pg.Node_String_:
			value = a.String_.Sval
			item += " " + quoteLiteral(value)
		case *pg.Node_Integer:
			value = strconv.Itoa(int(a.Integer.Ival))
			item += " " + value
		case *pg.Node_Float:
			value = a.Float.Fval
			item += " " + value
		case *pg.Node_Boolean:
			value = strconv.FormatBool(a.Boolean.Boolval)
			item += " " + value
		}
		switch name {
		case "format":
			o.format = strings.ToLower(value)
		case "verbose":
			o.verbose = value == "" || optionTrue(value)
		case "analyze":
			o.analyze = value == "" || optionTrue(value)
		}
		items = append(items, item)
	}
	if len(items) > 0 {
		o.list = "(" + strings.Join(items, ", ") + ")"
	}
	return o
}

// optionTrue reads an EXPLAIN boolean option's value as Postgres does
// (defGetBoolean: true, false, on, off, 1, 0).
func optionTrue(v string) bool {
	switch strings.ToLower(v) {
	case "true", "on", "1":
		return true
	}
	return false
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ExplainShards answers EXPLAIN of a SELECT across shards: Input runs
// EXPLAIN of each shard's statement; the output is one EXPLAIN result
// with the proxy's steps and each shard's plan, labelled (explain.go).
type ExplainShards struct {
	Input      *Scatter
	Shards     []string  // the route's shards, in the order of the sources
	Steps      []string  // the proxy's plan, one node per line, indented by depth
	ShardQuery *Template // what the shards run (nil when it is the client's own query)
	Format     string    // "text" or "json"
	Verbose    bool      // show ShardQuery
}

func (n *ExplainShards) Children() []Node { return []Node{n.Input} }
func (n *ExplainShards) Describe() string {
	var steps []string
	for _, s := range n.Steps {
		steps = append(steps, strings.TrimSpace(s))
	}
	return "Explain on shards " + strings.Join(n.Shards, ", ") + " in " + n.Format + " format, merge: " + strings.Join(steps, " < ")
}

// explainShards turns the route of an EXPLAIN across shards into the plan
// that explains it: that of a SELECT, and that of a write without ANALYZE,
// which changes nothing. EXPLAIN ANALYZE of a write runs the write, which
// the proxy does as for the write itself (the fanout, whose merger labels
// each shard's lines under Route.Explain): in TEXT format only, the one
// whose shards' outputs join into one document line by line.
func explainShards(st *Statement, rt Route) (Route, error) {
	o := st.explain
	if rt.Merge != MergePlan && rt.Merge != MergeConcat {
		return rt, nil // a reference table's write: one shard's answer
	}
	if (st.Kind != KindSelect || st.MayWrite) && o.analyze {
		if o.format != "text" {
			return Route{}, pgError(codeFeatureNotSupport,
				fmt.Sprintf("EXPLAIN ANALYZE (FORMAT %s) of a write across shards is not supported", strings.ToUpper(o.format)),
				"use FORMAT TEXT, or EXPLAIN without ANALYZE (which shardproxy answers with each shard's plan under the proxy's), or add a condition on the shard key")
		}
		rt.Explain = explainHeader(rt.Shards, []string{writeStep})
		return rt, nil
	}
	if o.format != "text" && o.format != "json" {
		return Route{}, pgError(codeFeatureNotSupport,
			fmt.Sprintf("EXPLAIN (FORMAT %s) of a statement across shards is not supported", strings.ToUpper(o.format)),
			"use FORMAT TEXT or FORMAT JSON, which shardproxy answers with each shard's plan under the proxy's; or add a condition on the shard key (or a /* shard: name */ comment) to see one shard's plan")
	}
	n := &ExplainShards{Shards: rt.Shards, Format: o.format, Verbose: o.verbose}
	switch {
	case rt.Merge == MergePlan && rt.Plan != nil:
		sc := rt.Plan.Scatter()
		if sc == nil {
			return Route{}, planShapeError("the plan has no shard query")
		}
		head := "EXPLAIN "
		if o.list != "" {
			head += o.list + " "
		}
		pieces := slices.Clone(sc.SQL.Pieces)
		if len(pieces) == 0 {
			pieces = []string{""}
		}
		pieces[0] = head + pieces[0]
		n.Input = &Scatter{SQL: Template{Pieces: pieces, Params: sc.SQL.Params}}
		n.ShardQuery = &sc.SQL
		var walk func(p Node, depth int)
		walk = func(p Node, depth int) {
			if _, leaf := p.(*Scatter); leaf {
				return
			}
			n.Steps = append(n.Steps, strings.Repeat("  ", depth)+p.Describe())
			for _, c := range p.Children() {
				walk(c, depth+1)
			}
		}
		walk(rt.Plan.Root, 0)
	default: // the shards run the client's own statement
		n.Input = &Scatter{SQL: o.text}
		n.Steps = []string{"Concatenate"}
		if st.Kind != KindSelect {
			n.Steps = []string{writeStep}
		}
	}
	rt.Merge, rt.Plan = MergePlan, &ScatterPlan{Root: n}
	return rt, nil
}

// explainIter emits an ExplainShards result: for TEXT, one line per row,
// streamed shard by shard; for JSON, the one document built once every
// shard's has been read.
type explainIter struct {
	ex   *executor
	n    *ExplainShards
	rows [][]byte // lines before the next shard's (header, or a shard's label)
	src  int      // next source to read; len(srcs): done
	open bool     // a source is being read (TEXT)
	out  [][]byte // the row returned
	done bool
}

func (ex *executor) newExplain(n *ExplainShards, types []valType) (rowIter, []valType, error) {
	if ex.width != 1 || ex.hidden != 0 {
		return nil, nil, planShapeError(fmt.Sprintf("EXPLAIN on a shard returned %d columns, not 1", ex.width))
	}
	if len(ex.srcs) != len(n.Shards) {
		return nil, nil, planShapeError(fmt.Sprintf("%d shard results for %d shards", len(ex.srcs), len(n.Shards)))
	}
	it := &explainIter{ex: ex, n: n, out: make([][]byte, 1)}
	for _, l := range explainHeader(n.Shards, n.Steps) {
		it.rows = append(it.rows, []byte(l))
	}
	if n.Verbose && n.ShardQuery != nil {
		it.rows = append(it.rows, []byte("  Shard Query: "+ex.renderParams(*n.ShardQuery)))
	}
	return it, types, nil
}

// writeStep is the proxy's step for a write across shards.
const writeStep = "Sum of the shards' row counts"

// explainHeader is the TEXT form's custom scan node: the shards and the
// proxy's steps. Each shard's plan follows it, under ShardLabel and
// indented by ShardIndent.
func explainHeader(shards, steps []string) []string {
	h := []string{"Custom Scan (shardproxy)", "  Shards: " + strings.Join(shards, ", ")}
	for i, s := range steps {
		label := "  Merge: "
		if i > 0 {
			label = "         "
		}
		h = append(h, label+s)
	}
	return h
}

// ShardLabel is the TEXT line that starts shard's plan in an EXPLAIN
// across shards; the plan's own lines follow indented by ShardIndent.
func ShardLabel(shard string) string { return "  ->  Shard " + shard }

// ShardIndent prefixes the lines of a shard's plan under its ShardLabel.
const ShardIndent = "        "

// renderParams fills t's holes with the statement's parameter values as
// SQL literals, for showing what ran; a value it cannot read as text (a
// binary one of a type the proxy does not know) stays $n.
func (ex *executor) renderParams(t Template) string {
	return t.Render(func(n int) string {
		if ex.param != nil {
			if v, null, err := ex.param(n); err == nil && null {
				return "NULL"
			} else if err == nil {
				return quoteLiteral(string(v))
			}
		}
		return "$" + strconv.Itoa(n)
	})
}

func (it *explainIter) next() ([][]byte, error) {
	if it.n.Format == "json" {
		if it.done {
			return nil, nil
		}
		it.done = true
		doc, err := it.json()
		if err != nil {
			return nil, err
		}
		it.out[0] = doc
		return it.out, nil
	}
	for {
		if len(it.rows) > 0 {
			it.out[0] = it.rows[0]
			it.rows = it.rows[1:]
			return it.out, nil
		}
		if it.open {
			row, err := it.ex.srcs[it.src].Next()
			if err != nil {
				return nil, err
			}
			if row != nil {
				if err := it.ex.checkWidth(row); err != nil {
					return nil, err
				}
				it.out[0] = append(append(it.out[0][:0:0], ShardIndent...), row[0]...)
				return it.out, nil
			}
			it.open = false
			it.src++
		}
		if it.src == len(it.ex.srcs) {
			return nil, nil
		}
		it.open = true
		it.rows = append(it.rows, []byte(ShardLabel(it.n.Shards[it.src])))
	}
}

// json reads every shard's EXPLAIN (FORMAT JSON) document and builds one:
// a custom scan node with the proxy's steps whose Plans are the shards'
// plans, each with its shard's name and the shard's totals (Planning
// Time, Execution Time, Triggers, ...).
func (it *explainIter) json() ([]byte, error) {
	type node struct {
		NodeType      string            `json:"Node Type"`
		Provider      string            `json:"Custom Plan Provider"`
		ParallelAware bool              `json:"Parallel Aware"`
		Shards        []string          `json:"Shards"`
		Merge         []string          `json:"Merge"`
		ShardQuery    string            `json:"Shard Query,omitempty"`
		Plans         []json.RawMessage `json:"Plans"`
	}
	root := node{NodeType: "Custom Scan", Provider: "shardproxy", Shards: it.n.Shards, Merge: it.n.Steps}
	if it.n.Verbose && it.n.ShardQuery != nil {
		root.ShardQuery = it.ex.renderParams(*it.n.ShardQuery)
	}
	for i, src := range it.ex.srcs {
		var doc []byte
		for {
			row, err := src.Next()
			if err != nil {
				return nil, err
			}
			if row == nil {
				break
			}
			if err := it.ex.checkWidth(row); err != nil {
				return nil, err
			}
			if doc != nil {
				return nil, planShapeError("EXPLAIN (FORMAT JSON) on shard " + it.n.Shards[i] + " returned more than one row")
			}
			doc = bytes.Clone(row[0])
			if err := it.ex.charge(int64(len(doc))+rowOverhead, "EXPLAIN"); err != nil {
				return nil, err
			}
		}
		var top []map[string]json.RawMessage
		if err := json.Unmarshal(doc, &top); err != nil || len(top) != 1 || len(top[0]["Plan"]) == 0 {
			return nil, planShapeError("EXPLAIN (FORMAT JSON) on shard " + it.n.Shards[i] + " did not return one plan")
		}
		plan := bytes.TrimSpace(top[0]["Plan"])
		if len(plan) < 2 || plan[0] != '{' {
			return nil, planShapeError("EXPLAIN (FORMAT JSON) on shard " + it.n.Shards[i] + " returned a plan that is not an object")
		}
		name, _ := json.Marshal(it.n.Shards[i])
		child := append([]byte(`{"Shard": `), name...)
		keys := make([]string, 0, len(top[0]))
		for k := range top[0] {
			if k != "Plan" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			kj, _ := json.Marshal(k)
			child = append(append(append(append(child, ", "...), kj...), ": "...), top[0][k]...)
		}
		if body := bytes.TrimSpace(plan[1:]); len(body) > 0 && body[0] != '}' {
			child = append(child, ", "...)
		}
		child = append(child, plan[1:]...)
		root.Plans = append(root.Plans, child)
	}
	return json.MarshalIndent([]struct {
		Plan node `json:"Plan"`
	}{{Plan: root}}, "", "  ")
}

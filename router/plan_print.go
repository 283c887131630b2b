package router

import (
	"fmt"
	"strconv"
	"strings"
)

// String prints the plan as an indented tree, one node per line.
func (p *ScatterPlan) String() string {
	var b strings.Builder
	var walk func(n Node, depth int)
	walk = func(n Node, depth int) {
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString(n.Describe())
		b.WriteByte('\n')
		for _, c := range n.Children() {
			walk(c, depth+1)
		}
	}
	if p != nil && p.Root != nil {
		walk(p.Root, 0)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (c ColRef) String() string {
	if c.Hidden {
		return "h" + strconv.Itoa(c.Index)
	}
	return "c" + strconv.Itoa(c.Index)
}

func (v *ValueRef) String() string {
	switch {
	case v == nil:
		return "-"
	case v.Null:
		return "NULL"
	case v.Param > 0:
		return "$" + strconv.Itoa(v.Param)
	}
	return strconv.Quote(v.Text)
}

func (k SortKey) String() string {
	s := k.Col.String()
	if k.Desc {
		s += " DESC"
	}
	if k.NullsFirst != k.Desc {
		if k.NullsFirst {
			s += " NULLS FIRST"
		} else {
			s += " NULLS LAST"
		}
	}
	return s
}

func joinStrings[T fmt.Stringer](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = x.String()
	}
	return strings.Join(parts, ", ")
}

var aggFuncNames = [...]string{"count", "sum", "min", "max", "bool_and", "bool_or", "avg", "count_distinct", "gather"}

func (f AggFunc) String() string {
	if f >= 0 && int(f) < len(aggFuncNames) {
		return aggFuncNames[f]
	}
	return fmt.Sprintf("AggFunc(%d)", int(f))
}

func (a AggSpec) String() string {
	distinct := ""
	if a.Distinct {
		distinct = "DISTINCT "
	}
	if a.Func == AggAvg {
		return fmt.Sprintf("avg(%s%s/%s)", distinct, a.Col, a.Count)
	}
	return fmt.Sprintf("%s(%s%s)", a.Func, distinct, a.Col)
}

func (e *Expr) String() string {
	switch e.Op {
	case ExprAnd, ExprOr:
		op := " AND "
		if e.Op == ExprOr {
			op = " OR "
		}
		parts := make([]string, len(e.Args))
		for i, a := range e.Args {
			parts[i] = a.String()
		}
		return "(" + strings.Join(parts, op) + ")"
	case ExprNot:
		return "NOT " + e.Args[0].String()
	case ExprIsNull:
		return e.Col.String() + " IS NULL"
	case ExprIsNotNull:
		return e.Col.String() + " IS NOT NULL"
	}
	return e.Col.String() + " " + e.Cmp + " " + e.Value.String()
}

func (n *Scatter) Describe() string {
	return "Scatter " + strconv.Quote(dollars(n.SQL))
}
func (n *Concatenate) Describe() string { return "Concatenate" }
func (n *MergeSort) Describe() string   { return "MergeSort " + joinStrings(n.Keys) }
func (n *Aggregate) Describe() string {
	s := "Aggregate"
	if len(n.GroupBy) > 0 {
		s += " group by " + joinStrings(n.GroupBy)
	}
	if len(n.Aggs) > 0 {
		s += " finish " + joinStrings(n.Aggs)
	}
	if n.Having != nil {
		s += " having " + n.Having.String()
	}
	return s
}
func (n *Evaluate) Describe() string {
	switch {
	case n.Gather:
		return "Evaluate the statement over gathered rows " + strconv.Quote(dollars(n.SQL)+" FROM unnest(...) "+dollars(n.Tail))
	case n.SetOp != "":
		return "Evaluate set operations " + strconv.Quote(n.SetOp)
	case n.Whole:
		return "Evaluate whole " + strconv.Quote(dollars(n.SQL)+" FROM unnest(...) "+dollars(n.Tail)) +
			" args " + joinStrings(n.Args) + " into " + joinStrings(n.Out)
	}
	s := "Evaluate " + strconv.Quote(dollars(n.SQL)) + " args " + joinStrings(n.Args) + " into " + joinStrings(n.Out)
	if n.Having {
		s += " having last"
	}
	return s
}

// dollars renders a template with its holes as $n.
func dollars(t Template) string {
	return t.Render(func(k int) string { return "$" + strconv.Itoa(k) })
}

func (n *Sort) Describe() string { return "Sort " + joinStrings(n.Keys) }
func (n *Distinct) Describe() string {
	if n.On == nil {
		return "Distinct"
	}
	return "Distinct on " + joinStrings(n.On)
}
func (n *Limit) Describe() string {
	return "Limit count " + n.Count.String() + " offset " + n.Offset.String()
}
func (n *Project) Describe() string { return "Project visible columns" }

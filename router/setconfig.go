package router

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// set_config(name, value, false) makes a session setting, as SET does.
// Under transaction pooling it would stay on the pooled backend (see
// pooling.go), so it is refused, except as a statement of its own in one
// of two shapes, which the proxy carries from backend to backend as it
// carries SET:
//
//	SELECT [pg_catalog.]set_config('name', 'value', false)
//	SELECT [pg_catalog.]set_config(name, 'value', false)
//	  FROM [pg_catalog.]pg_settings WHERE name = 'name'
//
// Every plain pg_dump, and so every restore script, starts with the first
// (an empty search_path); pg_dump itself also sends the second, for a
// setting older servers do not have.
//
// Such a setting cannot always be replayed as SET: for a list setting,
// SET search_path = '' is the list of one empty name, where
// set_config('search_path', '', false) sets the empty list. So its value
// is carried as set_config's own (SetValue marked by configMark), and
// replayed through set_config (SetStatement).

// configMark starts a SetValue that is set_config's value rather than
// SQL text; configMarkIfExists, one to set only where the setting exists
// (the pg_settings shape).
const (
	configMark         = "\x00"
	configMarkIfExists = "\x01"
)

// sessionConfig is a statement in one of the two shapes above.
type sessionConfig struct {
	name, value callArg
	ifExists    bool // the pg_settings shape
}

// sessionConfigOf returns n's shape, or nil.
func sessionConfigOf(n *pg.Node) *sessionConfig {
	sel := n.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || sel.Op != pg.SetOperation_SETOP_NONE ||
		sel.WithClause != nil || len(sel.DistinctClause) > 0 || sel.IntoClause != nil ||
		len(sel.GroupClause) > 0 || sel.HavingClause != nil || len(sel.WindowClause) > 0 ||
		len(sel.SortClause) > 0 || sel.LimitCount != nil || sel.LimitOffset != nil ||
		len(sel.LockingClause) > 0 || len(sel.ValuesLists) > 0 {
		return nil
	}
	f := sel.TargetList[0].GetResTarget().GetVal().GetFuncCall()
	if f == nil || !catalogName(stringItems(f.Funcname), "set_config") || len(f.Args) != 3 ||
		f.AggOrder != nil || f.AggFilter != nil || f.Over != nil || f.AggStar || f.AggDistinct || f.FuncVariadic {
		return nil
	}
	if b, ok := f.Args[2].GetAConst().GetVal().(*pg.A_Const_Boolval); !ok || b.Boolval.Boolval {
		return nil // is_local: only the keyword false is read (see localSetConfig)
	}
	sc := &sessionConfig{value: argOf(f.Args[1])}
	if sc.value == (callArg{}) && !emptyString(f.Args[1]) {
		return nil
	}
	switch {
	case len(sel.FromClause) == 0 && sel.WhereClause == nil:
		sc.name = argOf(f.Args[0])
	case len(sel.FromClause) == 1 && isPgSettings(sel.FromClause[0]) && isColumn(f.Args[0], "name"):
		// ... FROM pg_settings WHERE name = 'x'
		e := sel.WhereClause.GetAExpr()
		if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || !slices.Equal(stringItems(e.Name), []string{"="}) ||
			!isColumn(e.Lexpr, "name") {
			return nil
		}
		sc.name, sc.ifExists = argOf(e.Rexpr), true
	default:
		return nil
	}
	if sc.name == (callArg{}) {
		return nil
	}
	return sc
}

// catalogName reports whether names is name, or pg_catalog.name.
func catalogName(names []string, name string) bool {
	switch len(names) {
	case 1:
		return strings.EqualFold(names[0], name)
	case 2:
		return strings.EqualFold(names[0], "pg_catalog") && strings.EqualFold(names[1], name)
	}
	return false
}

// isPgSettings reports a FROM item that is pg_settings, unaliased.
func isPgSettings(n *pg.Node) bool {
	rv := n.GetRangeVar()
	if rv == nil || rv.Alias != nil || rv.Catalogname != "" || !rv.Inh {
		return false
	}
	return catalogName(append(nonEmpty(rv.Schemaname), rv.Relname), "pg_settings")
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// isColumn reports a reference to column col, bare or as pg_settings.col.
func isColumn(n *pg.Node, col string) bool {
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	names := stringItems(cr.Fields)
	if len(names) != len(cr.Fields) {
		return false // a star
	}
	switch len(names) {
	case 1:
		return strings.EqualFold(names[0], col)
	case 2:
		return strings.EqualFold(names[0], "pg_settings") && strings.EqualFold(names[1], col)
	}
	return false
}

// emptyString reports an empty string constant (argOf cannot tell it
// from an expression).
func emptyString(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	s, ok := n.GetAConst().GetVal().(*pg.A_Const_Sval)
	return ok && s.Sval.Sval == ""
}

// IsSessionConfig reports a statement that only makes a session setting
// with set_config(name, value, false) (setconfig.go). The proxy runs it
// as a simple-protocol statement of its own (SessionConfig), and refuses
// it elsewhere.
func (st *Statement) IsSessionConfig() bool { return st.sessionConfig != nil }

// SessionConfig returns, for a statement IsSessionConfig reports, the
// SET it amounts to with the statement's literals params (QueryPart.Args):
// a KindSet statement for the session's bookkeeping, whose SetValue is
// set_config's value (see SetStatement). Settings the proxy refuses to
// SET are refused here too.
func (st *Statement) SessionConfig(params [][]byte) (*Statement, error) {
	sc := st.sessionConfig
	name, ok := sc.name.value(params)
	value, vok := sc.value.value(params)
	if sc.value.param == 0 && sc.value.text == "" {
		value, vok = "", true // the constant ''
	}
	if !ok || !vok {
		return nil, pgError(codeFeatureNotSupport, "set_config(..., false) with a computed name or value is not supported by shardproxy",
			"write the name and the value as string constants, or use SET, which shardproxy carries to every connection the session uses")
	}
	name = strings.ToLower(strings.TrimSpace(name))
	switch {
	case name == HintParameter:
		return nil, pgError(codeFeatureNotSupport, "set_config('"+HintParameter+"', ...) is not supported",
			"use SET "+HintParameter+" = 'shard'")
	case strings.HasPrefix(name, "transaction_"):
		return nil, pgError(codeFeatureNotSupport, "set_config('"+name+"', ..., false) is not supported by shardproxy",
			"use SET TRANSACTION, or BEGIN with the transaction's options")
	case name == "client_encoding" && !ClientEncodingOK(value):
		return nil, ClientEncodingError(value)
	case name == "standard_conforming_strings" && !StandardStringsOK(value):
		return nil, StandardStringsError()
	}
	mark := configMark
	if sc.ifExists {
		mark = configMarkIfExists
	}
	return &Statement{Kind: KindSet, SetName: name, SetValue: mark + value, Tag: "SELECT 1"}, nil
}

// ConfigStatement returns, for a recorded value v (a SetValue) that
// set_config made, the statement that gives a backend session setting
// name that value: set_config again; ok is false for any other value,
// which SET replays.
func ConfigStatement(name, v string) (stmt string, ok bool) {
	switch {
	case strings.HasPrefix(v, configMark):
		return "SELECT pg_catalog.set_config(" + quoteString(name) + ", " + quoteString(v[1:]) + ", false)", true
	case strings.HasPrefix(v, configMarkIfExists):
		return "SELECT pg_catalog.set_config(name, " + quoteString(v[1:]) +
			", false) FROM pg_catalog.pg_settings WHERE name = " + quoteString(name), true
	}
	return "", false
}

// ConfigReset returns, for a recorded value v that pg_dump's form of
// set_config made (set only where the setting exists), the statement that
// resets setting name only where it exists, as RESET would: RESET of a
// setting the server does not know fails. ok is false for any other
// value, which RESET resets.
func ConfigReset(name, v string) (stmt string, ok bool) {
	if !strings.HasPrefix(v, configMarkIfExists) {
		return "", false
	}
	return "SELECT pg_catalog.set_config(name, reset_val, false) FROM pg_catalog.pg_settings WHERE name = " + quoteString(name), true
}

// SettingSQL returns recorded value v (a SetValue) as SQL text, as SET
// would take it: set_config's value as a string literal.
func SettingSQL(v string) string {
	if strings.HasPrefix(v, configMark) || strings.HasPrefix(v, configMarkIfExists) {
		return quoteString(v[1:])
	}
	return v
}

func quoteString(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

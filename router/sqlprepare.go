package router

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// SQL-level PREPARE and EXECUTE. On one server, PREPARE leaves a
// statement on the session's backend, which transaction pooling hands to
// other clients. The proxy keeps it in the client's session instead: PREPARE
// is checked on a shard (which also gives its parameters' types), and
// EXECUTE name(args) runs the statement's text with each $n replaced by
// its argument cast to the parameter's type, routed as any statement. So a
// prepared statement lives as long as the client's session, across its
// transactions and shards, as it would on one server, and EXECUTE of a
// keyed statement goes to the key's shard.
//
// EXECUTE's arguments must be constants: a $n that the statement uses
// twice, or not at all, would evaluate an expression twice or not at all.
// Names in the statement are looked up when it runs, not when it was
// prepared: the proxy refuses EXECUTE once the session's search_path has
// changed since PREPARE, where Postgres would keep PREPARE's.

// SQLPrepared is a statement prepared by SQL PREPARE.
type SQLPrepared struct {
	Name string
	// Types are the parameters' types, schema-qualified (set by the proxy
	// from the shard's pg_prepared_statements, see CheckQuery).
	Types []string
	rest  string     // the PREPARE text after the name: types, AS, statement
	head  int        // characters in the PREPARE text before rest
	body  string     // the statement
	refs  []paramRef // its parameter references, in text order
	// selects: the statement is a SELECT (or VALUES, TABLE), which
	// CREATE TABLE ... AS EXECUTE requires.
	selects bool
}

// paramRef is one $n in a prepared statement's text.
type paramRef struct {
	at, end int // byte offsets in the statement's text
	n       int // 1-based parameter number
}

// checkName names the statement while CheckQuery prepares it on a shard.
const checkName = "shardproxy_check_prepare"

// ParsePrepare reads a PREPARE statement.
func ParsePrepare(text string) (*SQLPrepared, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, syntaxError(err)
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetPrepareStmt() == nil {
		return nil, pgError(codeSyntaxError, "not a PREPARE statement", "")
	}
	name := tree.Stmts[0].Stmt.GetPrepareStmt().Name
	toks, err := codeTokens(text)
	if err != nil {
		return nil, err
	}
	// PREPARE name [ ( type [, ...] ) ] AS statement: the name is the
	// second token; the statement follows the first AS outside parentheses.
	if len(toks) < 4 {
		return nil, pgError(codeSyntaxError, "not a PREPARE statement", "")
	}
	p := &SQLPrepared{Name: name, rest: strings.TrimRight(text[toks[1].End:], " \t\r\n;"),
		head: utf8.RuneCountInString(text[:toks[1].End])}
	depth := 0
	for _, t := range toks[2:] {
		switch t.Token {
		case pg.Token_ASCII_40:
			depth++
		case pg.Token_ASCII_41:
			depth--
		case pg.Token_AS:
			if depth == 0 && p.body == "" {
				p.body = strings.TrimSpace(strings.TrimRight(text[t.End:], " \t\r\n;"))
			}
		}
	}
	if p.body == "" {
		return nil, pgError(codeSyntaxError, "PREPARE without AS", "")
	}
	body, err := pg.Parse(p.body)
	if err != nil {
		return nil, syntaxError(err)
	}
	p.selects = body.Stmts[0].Stmt.GetSelectStmt() != nil
	walk(body.Stmts[0].Stmt, func(n *pg.Node) bool {
		if r := n.GetParamRef(); r != nil {
			at := int(r.Location)
			p.refs = append(p.refs, paramRef{at: at, end: at + 1 + len(strconv.Itoa(int(r.Number))), n: int(r.Number)})
		}
		return true
	})
	slices.SortFunc(p.refs, func(a, b paramRef) int { return a.at - b.at })
	return p, nil
}

// codeTokens returns text's tokens without its comments.
func codeTokens(text string) ([]*pg.ScanToken, error) {
	toks, err := pg.Scan(text)
	if err != nil {
		return nil, syntaxError(err)
	}
	return slices.DeleteFunc(toks.Tokens, func(t *pg.ScanToken) bool {
		return t.Token == pg.Token_SQL_COMMENT || t.Token == pg.Token_C_COMMENT
	}), nil
}

// CheckQuery is the Query the proxy runs on a shard to check the
// statement as Postgres' PREPARE does, and to learn its parameters'
// types: the one row of its second statement is them, comma-separated
// and schema-qualified (Types). It leaves nothing prepared.
func (p *SQLPrepared) CheckQuery() string {
	return "PREPARE " + checkName + p.rest + ";" +
		"SELECT pg_catalog.array_to_string(ARRAY(" +
		"SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)" +
		" FROM pg_catalog.unnest(s.parameter_types) WITH ORDINALITY AS p(oid, i)" +
		" JOIN pg_catalog.pg_type t ON t.oid = p.oid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace" +
		" ORDER BY p.i), ',') FROM pg_catalog.pg_prepared_statements s WHERE s.name = '" + checkName + "';" +
		"DEALLOCATE " + checkName
}

// CheckError moves the position of an error CheckQuery's PREPARE reported
// to the client's PREPARE text.
func (p *SQLPrepared) CheckError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Position > 0 {
		moved := *pe
		moved.Position += int32(p.head - utf8.RuneCountInString("PREPARE "+checkName))
		if moved.Position < 1 {
			moved.Position = 0
		}
		return &moved
	}
	return err
}

// SetTypes records the parameter types CheckQuery's row gave.
func (p *SQLPrepared) SetTypes(row string) {
	p.Types = nil
	if row != "" {
		p.Types = strings.Split(row, ",")
	}
}

// ExecArg is one argument of EXECUTE: its text, and its position in the
// EXECUTE text (1-based, in characters, as Postgres' error positions).
type ExecArg struct {
	Text string
	Pos  int
}

// SQLExecute is an EXECUTE statement, or EXPLAIN of one.
type SQLExecute struct {
	Name   string    // the prepared statement's
	Args   []ExecArg // its arguments
	Prefix string    // what precedes EXECUTE: "EXPLAIN (...) ", "CREATE TABLE t AS ", or ""
	Suffix string    // what follows the EXECUTE clause: CREATE TABLE AS's " WITH NO DATA"
	// Into: the statement is CREATE TABLE ... AS EXECUTE, whose prepared
	// statement must be a SELECT. NoData: it says WITH NO DATA, which
	// Postgres then answers with the tag SELECT 0.
	Into, NoData bool
}

// ParseExecute reads an EXECUTE statement, CREATE TABLE ... AS EXECUTE,
// or EXPLAIN [options] of either.
func ParseExecute(text string) (*SQLExecute, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, syntaxError(err)
	}
	var ex *pg.ExecuteStmt
	into, noData := false, false
	if len(tree.Stmts) == 1 {
		n := tree.Stmts[0].Stmt
		if e := n.GetExplainStmt(); e != nil {
			n = e.Query
		}
		if c := n.GetCreateTableAsStmt(); c != nil && c.Objtype == pg.ObjectType_OBJECT_TABLE {
			n, into, noData = c.Query, true, c.Into.GetSkipData()
		}
		ex = n.GetExecuteStmt()
	}
	if ex == nil {
		return nil, pgError(codeSyntaxError, "not an EXECUTE statement", "")
	}
	for _, a := range ex.Params {
		if !constantArg(a) {
			return nil, pgError(codeFeatureNotSupport,
				"EXECUTE with an argument that is not a constant is not supported by shardproxy",
				"write each argument as a constant (a literal, possibly cast), or use a protocol-level prepared statement with parameters")
		}
	}
	toks, err := codeTokens(text)
	if err != nil {
		return nil, err
	}
	out := &SQLExecute{Name: ex.Name, Into: into, NoData: noData}
	// The EXECUTE clause starts at the EXECUTE keyword that begins the
	// statement, follows EXPLAIN's options (which hold no EXECUTE), or
	// follows CREATE TABLE's AS (the table may be named execute).
	at := -1
	for i, t := range toks {
		if t.Token == pg.Token_EXECUTE && (!into || i > 0 && toks[i-1].Token == pg.Token_AS) {
			at = i
			break
		}
	}
	if at < 0 || at+1 >= len(toks) {
		return nil, pgError(codeSyntaxError, "could not read EXECUTE", "")
	}
	out.Prefix, toks = text[:toks[at].Start], toks[at:]
	if into {
		// What follows the clause: WITH [NO] DATA.
		end := int(toks[1].End) // the statement's name
		if g, ok := firstGroup(toks); ok && len(ex.Params) > 0 {
			end = g.to + 1 // its closing parenthesis
		}
		out.Suffix = strings.TrimRight(text[end:], " \t\r\n;")
	}
	if len(ex.Params) == 0 {
		return out, nil
	}
	// EXECUTE name ( arg [, ...] ): split at the commas between the
	// outermost parentheses.
	var args []ExecArg
	if g, ok := firstGroup(toks); ok {
		for _, it := range g.items() {
			a := text[it.start:it.end]
			lead := len(a) - len(strings.TrimLeft(a, " \t\r\n"))
			args = append(args, ExecArg{Text: strings.TrimSpace(a), Pos: utf8.RuneCountInString(text[:it.start+lead]) + 1})
		}
	}
	if len(args) != len(ex.Params) {
		return nil, pgError(codeSyntaxError, "could not read the arguments of EXECUTE", "")
	}
	out.Args = args
	return out, nil
}

// constantArg reports an EXECUTE argument that evaluates to the same value
// however often it is evaluated: a literal, NULL, a cast of one, or a
// negated number.
func constantArg(n *pg.Node) bool {
	switch {
	case n.GetAConst() != nil:
		return true
	case n.GetTypeCast() != nil:
		return constantArg(n.GetTypeCast().Arg)
	case n.GetAExpr() != nil:
		e := n.GetAExpr()
		return e.Kind == pg.A_Expr_Kind_AEXPR_OP && e.Lexpr == nil && len(e.Name) == 1 &&
			e.Name[0].GetString_().GetSval() == "-" && e.Rexpr.GetAConst() != nil
	}
	return false
}

// Bind returns the statement's text with each $n replaced by args[n-1]
// cast to the parameter's type; Postgres' error when the count is wrong.
// pos moves an error position in that text to the EXECUTE text: into the
// argument it falls in, or none (0) elsewhere, since the client never sent
// the rest.
func (p *SQLPrepared) Bind(ex *SQLExecute) (text string, pos func(int32) int32, err error) {
	args := ex.Args
	if len(args) != len(p.Types) {
		e := pgError(codeSyntaxError, fmt.Sprintf("wrong number of parameters for prepared statement %q", p.Name), "")
		e.Detail = fmt.Sprintf("Expected %d parameters but got %d.", len(p.Types), len(args))
		return "", nil, e
	}
	type span struct{ at, n, pos int } // characters at..at+n of text are the argument at pos
	var spans []span
	var b strings.Builder
	chars, last := 0, 0
	write := func(s string) {
		b.WriteString(s)
		chars += utf8.RuneCountInString(s)
	}
	if ex.Into && !p.selects {
		return "", nil, pgError("42809", "prepared statement is not a SELECT", "")
	}
	write(ex.Prefix)
	if ex.Into {
		write("(") // so that the SELECT's own clauses end before the suffix
	}
	for _, r := range p.refs {
		if r.n < 1 || r.n > len(args) {
			return "", nil, pgError("42P02", fmt.Sprintf("there is no parameter $%d", r.n), "")
		}
		a := args[r.n-1]
		write(p.body[last:r.at])
		write("(CAST(")
		spans = append(spans, span{at: chars + 1, n: utf8.RuneCountInString(a.Text), pos: a.Pos})
		write(a.Text)
		write(" AS " + p.Types[r.n-1] + "))")
		last = r.end
	}
	write(p.body[last:])
	if ex.Into {
		write(")")
	}
	write(ex.Suffix)
	return b.String(), func(q int32) int32 {
		for _, s := range spans {
			if int(q) >= s.at && int(q) < s.at+s.n {
				return int32(s.pos + int(q) - s.at)
			}
		}
		return 0
	}, nil
}

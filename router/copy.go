package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/strategies"
)

// COPY across shards (see the Postgres docs, "COPY", and the protocol's
// "COPY Operations"). The proxy splits a COPY FROM STDIN into rows and sends
// each row to the shard its key names; a COPY TO STDOUT is concatenated. The
// router says how the statement is written (CopySpec) and where a row's key
// places it (CopyPlacer); splitting the byte stream is the proxy's job.

// CopyFormat is a COPY data format.
type CopyFormat int

const (
	CopyText CopyFormat = iota
	CopyCSV
	CopyBinary
)

// CopySpec is one COPY statement as the proxy needs it.
type CopySpec struct {
	From    bool   // COPY ... FROM
	Stdio   bool   // FROM STDIN / TO STDOUT (not a server file or PROGRAM)
	Query   bool   // COPY (query) TO
	Table   string // as written; "" for COPY (query)
	Columns []string
	Format  CopyFormat
	// Delimiter, Quote and Escape are single bytes, as Postgres requires.
	Delimiter, Quote, Escape byte
	Null                     string
	Header                   bool
	// ForceNotNull and ForceNull name the CSV columns whose NULL marker
	// reads as a value (FORCE_NOT_NULL) or whose quoted marker reads as
	// NULL (FORCE_NULL).
	ForceNotNull, ForceNull []string
	// ForceQuote names the CSV columns whose values COPY TO always
	// quotes ("*": all).
	ForceQuote []string
	// QueryText is COPY (query) TO's query as written.
	QueryText string
	// NoHeaderSQL is the statement without its HEADER option: what a shard
	// runs when it must not read or write a header line.
	NoHeaderSQL string

	schema, rel string
}

// CopiesQuery tells whether the statement is COPY (query) TO: its rows
// may need the merge a SELECT gets (the proxy plans the query alone).
func (st *Statement) CopiesQuery() bool { return st.copyQuery }

// ParseCopy reads a COPY statement's original text (with its literals:
// options are literals, and the shards must see them as written). Errors
// are *pgconn.PgError. An option Postgres accepts but the proxy cannot
// honour across shards is refused (0A000) with the spec read so far, so
// that a COPY FROM STDIN can be refused as Postgres fails one: in its data
// (proxy/copy.go, refuseCopyIn).
func ParseCopy(text string) (*CopySpec, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, syntaxError(err)
	}
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetCopyStmt() == nil {
		return nil, pgError(codeInternal, "ParseCopy: not one COPY statement", "")
	}
	c := tree.Stmts[0].Stmt.GetCopyStmt()
	sp := &CopySpec{From: c.IsFrom, Stdio: c.Filename == "" && !c.IsProgram, Query: c.Query != nil,
		Delimiter: '\t', Null: `\N`, Quote: '"'}
	if c.Relation != nil {
		sp.schema, sp.rel = c.Relation.Schemaname, c.Relation.Relname
		sp.Table = c.Relation.Relname
		if sp.schema != "" {
			sp.Table = sp.schema + "." + sp.rel
		}
	}
	sp.Columns = stringItems(c.Attlist)
	var delim, quote, escape, null *string
	kept := c.Options[:0:0]
	for _, o := range c.Options {
		d := o.GetDefElem()
		if d == nil {
			kept = append(kept, o)
			continue
		}
		arg := defString(d)
		switch d.Defname {
		case "format":
			switch strings.ToLower(arg) {
			case "text":
				sp.Format = CopyText
			case "csv":
				sp.Format = CopyCSV
			case "binary":
				sp.Format = CopyBinary
			default:
				return nil, pgError("22023", fmt.Sprintf("COPY format %q not recognized", arg), "")
			}
		case "header":
			if strings.EqualFold(arg, "match") {
				return sp, pgError(codeFeatureNotSupport, "COPY HEADER MATCH is not supported across shards",
					"use HEADER true (the header line is skipped) or no header")
			}
			sp.Header = d.Arg == nil || parseBool(arg)
			continue // dropped from NoHeaderSQL
		case "delimiter":
			delim = &arg
		case "quote":
			quote = &arg
		case "escape":
			escape = &arg
		case "null":
			null = &arg
		case "force_not_null":
			sp.ForceNotNull = defList(d)
		case "force_null":
			sp.ForceNull = defList(d)
		case "force_quote":
			sp.ForceQuote = defList(d)
		case "encoding":
			if n := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(arg)); n != "utf8" && n != "sqlascii" {
				return sp, pgError(codeFeatureNotSupport, fmt.Sprintf("COPY ENCODING %q is not supported across shards", arg),
					"send the data in UTF8 (shardproxy splits rows by their bytes)")
			}
		}
		kept = append(kept, o)
	}
	if sp.Format == CopyCSV {
		sp.Delimiter, sp.Null = ',', ""
	}
	one := func(name string, v *string, dst *byte) error {
		if v == nil {
			return nil
		}
		if len(*v) != 1 {
			return pgError(codeFeatureNotSupport, fmt.Sprintf("COPY %s must be a single one-byte character", name), "")
		}
		*dst = (*v)[0]
		return nil
	}
	if err := one("delimiter", delim, &sp.Delimiter); err != nil {
		return nil, err
	}
	if err := one("quote", quote, &sp.Quote); err != nil {
		return nil, err
	}
	sp.Escape = sp.Quote
	if err := one("escape", escape, &sp.Escape); err != nil {
		return nil, err
	}
	if null != nil {
		sp.Null = *null
	}
	if sp.Query {
		if sp.QueryText, err = parenthesized(text, int(tree.Stmts[0].StmtLocation)); err != nil {
			return nil, err
		}
	}
	c.Options = kept
	if sp.NoHeaderSQL, err = pg.Deparse(tree); err != nil {
		return nil, pgError(codeInternal, "rendering COPY without its header: "+err.Error(), "")
	}
	return sp, nil
}

// parenthesized returns the text inside the first parenthesis of the
// statement at loc in text, and its match: COPY (query)'s query.
func parenthesized(text string, loc int) (string, error) {
	stmt := text[loc:]
	toks, err := pg.Scan(stmt)
	if err != nil {
		return "", syntaxError(err)
	}
	if g, ok := firstGroup(toks.Tokens); ok {
		return stmt[g.from:g.to], nil
	}
	return "", pgError(codeSyntaxError, "COPY without a parenthesized query", "")
}

// parenGroup is the first outermost parenthesized group of a statement:
// the byte span inside its parentheses, and the offsets of the commas at
// its top level (between its items).
type parenGroup struct {
	from, to int
	commas   []scanSpan
}

// scanSpan is a token's byte span.
type scanSpan struct{ start, end int }

// items returns the group's comma-separated items as byte spans.
func (g parenGroup) items() []scanSpan {
	var out []scanSpan
	from := g.from
	for _, c := range g.commas {
		out = append(out, scanSpan{from, c.start})
		from = c.end
	}
	return append(out, scanSpan{from, g.to})
}

// firstGroup finds the first outermost parenthesized group in toks (ok is
// false when no parenthesis closes).
func firstGroup(toks []*pg.ScanToken) (g parenGroup, ok bool) {
	depth := 0
	for _, t := range toks {
		switch t.Token {
		case pg.Token_ASCII_40:
			if depth == 0 {
				g.from = int(t.End)
			}
			depth++
		case pg.Token_ASCII_41:
			if depth--; depth == 0 {
				g.to = int(t.Start)
				return g, true
			}
		case pg.Token_ASCII_44:
			if depth == 1 {
				g.commas = append(g.commas, scanSpan{int(t.Start), int(t.End)})
			}
		}
	}
	return parenGroup{}, false
}

// defString is an option's argument as text ("" when it has none).
func defString(d *pg.DefElem) string {
	if d.Arg == nil {
		return ""
	}
	switch a := d.Arg.Node.(type) {
	case *pg.Node_String_:
		return a.String_.Sval
	case *pg.Node_Integer:
		return strconv.Itoa(int(a.Integer.Ival))
	case *pg.Node_Boolean:
		return strconv.FormatBool(a.Boolean.Boolval)
	case *pg.Node_Float:
		return a.Float.Fval
	}
	return ""
}

func defList(d *pg.DefElem) []string {
	if d.Arg == nil {
		return nil
	}
	if d.Arg.GetAStar() != nil {
		return []string{"*"}
	}
	if l := d.Arg.GetList(); l != nil {
		return stringItems(l.Items)
	}
	return nil
}

// parseBool reads a boolean option as Postgres' defGetBoolean does.
func parseBool(s string) bool {
	switch strings.ToLower(s) {
	case "", "true", "on", "1", "t", "yes", "y":
		return true
	}
	return false
}

// CopyPlacer places the rows of one COPY FROM into a sharded table.
type CopyPlacer struct {
	r      *Router
	u      tableUse
	args   Args
	ct     columnType
	keyPos int
	ncols  int
}

// CopyPlacer returns the placer for sp's table, or nil when the table is
// not sharded (a reference table, or one not in the shard map). args
// supplies Columns (needed without a column list), TimeZone and ColumnType.
func (r *Router) CopyPlacer(ctx context.Context, sp *CopySpec, args Args) (*CopyPlacer, error) {
	facts := r.facts.Load()
	if args.CustomSearchPath {
		if err := r.unqualified(facts, sp.schema, sp.rel); err != nil {
			return nil, err
		}
	}
	home, info, perr := r.table(facts, sp.schema, sp.rel)
	if perr != nil {
		return nil, perr
	}
	if info == nil || info.ref {
		return nil, nil
	}
	p := &CopyPlacer{r: r, u: tableUse{name: sp.Table, schema: sp.schema, home: home, rel: sp.rel, info: info, write: true, insert: true}, args: args}
	cols := sp.Columns
	if len(cols) == 0 {
		if args.Columns == nil {
			return nil, pgError(codeFeatureNotSupport, fmt.Sprintf("COPY into sharded table %s needs a column list", sp.Table),
				"name the columns in COPY "+sp.Table+" (...) FROM STDIN")
		}
		var err error
		if cols, err = args.Columns(ctx, sp.schema, sp.rel); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) || ctx.Err() != nil {
				return nil, err
			}
			return nil, pgError(codeInternal, fmt.Sprintf("looking up the columns of %s: %v", sp.Table, err), "")
		}
	}
	p.ncols = len(cols)
	p.keyPos = slices.Index(cols, info.key)
	if p.keyPos < 0 {
		if len(sp.Columns) > 0 {
			return nil, pgError(codeFeatureNotSupport,
				fmt.Sprintf("COPY into sharded table %s does not set shard key column %s", sp.Table, info.key),
				fmt.Sprintf("include %s in the column list and the data", info.key))
		}
		return nil, &pgconn.PgError{Severity: "ERROR", Code: codeUndefinedColumn,
			Message:   fmt.Sprintf("shard key column %q does not exist in table %s", info.key, sp.Table),
			Hint:      "the shard map names a key column the table does not have; fix the table or the config",
			TableName: sp.rel, ColumnName: info.key}
	}
	return p, nil
}

// KeyColumn is the position of the shard key among the copied columns.
func (p *CopyPlacer) KeyColumn() int { return p.keyPos }

// Columns is the number of copied columns.
func (p *CopyPlacer) Columns() int { return p.ncols }

// Key is the key column's name.
func (p *CopyPlacer) Key() string { return p.u.info.key }

// Place returns the shard of a row whose key field holds val: decoded
// text (binary false) or the type's binary send format. null is a NULL
// key, which no shard can hold. Placement is an INSERT's: a directory
// strategy places a new key by its fallback.
func (p *CopyPlacer) Place(ctx context.Context, val []byte, null, binary bool) (string, error) {
	p.args.Params = [][]byte{val}
	if null {
		p.args.Params[0] = nil
	}
	p.args.Formats = formatText
	if binary {
		p.args.Formats = formatBinary
	}
	u := &p.u
	v := valueRef{param: 1}
	k, state, err := p.r.bindColumnKey(ctx, u, v, &p.args, &p.ct)
	switch {
	case state == boundUnsure:
		return "", unsureKeyError(u, v, err)
	case err != nil:
		return "", err
	case state == boundNull:
		return "", &pgconn.PgError{Severity: "ERROR", Code: codeNotNullViolation,
			Message: fmt.Sprintf("null value in shard key column %q", u.info.key), TableName: u.info.name, ColumnName: u.info.key}
	case state == boundFree:
		return "", pgError("22P02", fmt.Sprintf("invalid input syntax for type %s: %q", u.info.strat.KeyType(), val), "")
	}
	shard, err := u.info.strat.Locate(ctx, k, strategies.Write)
	if err != nil {
		return "", asPgError(err)
	}
	return shard, nil
}

var (
	formatText   = []int16{0}
	formatBinary = []int16{1}
)

package router

import (
	"errors"
	"math"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// SQL cursors: DECLARE, FETCH, MOVE and CLOSE. A cursor lives on the
// shard its DECLARE ran on, and FETCH names no table, so the session
// routes FETCH, MOVE and CLOSE by the cursor's name (it remembers where
// each was declared). A cursor whose query spans shards is declared on
// every shard and its rows merged by the proxy as FETCH asks for them.

// Cursor option bits of DECLARE (CURSOR_OPT_* in parsenodes.h).
const (
	CursorBinary = 0x0001
	CursorScroll = 0x0002
	// CursorNoScroll is an explicit NO SCROLL.
	CursorNoScroll = 0x0004
)

// FetchAll is a FETCH count that means ALL (FETCH_ALL, LONG_MAX).
const FetchAll = math.MaxInt64

// CursorStmt is a DECLARE, FETCH, MOVE or CLOSE statement.
type CursorStmt struct {
	// Op is 'D' for DECLARE, 'F' for FETCH and MOVE, 'C' for CLOSE.
	Op byte
	// Name is the cursor's name as Postgres folds it; "" for CLOSE ALL.
	Name string
	// Options are DECLARE's CURSOR_OPT_* bits.
	Options int32
	// Query is DECLARE's query, as written in the statement's text.
	Query string
	// Move: MOVE rather than FETCH. Forward: the direction is FORWARD
	// (or NEXT, or a bare count) with Count rows, FetchAll for ALL; a
	// negative count moves backward. Any other direction (BACKWARD,
	// PRIOR, FIRST, LAST, ABSOLUTE, RELATIVE) leaves Forward false.
	Move     bool
	Forward  bool
	Backward bool // BACKWARD or PRIOR
	Count    int64
}

// ConcatPlan is the plan of a SELECT across shards whose rows concatenate
// exactly (Route.Merge MergeConcat): sql runs on every shard, and their
// rows follow one another. A cursor over such a SELECT runs it.
func ConcatPlan(sql string) *ScatterPlan {
	return &ScatterPlan{Root: &Concatenate{Input: &Scatter{SQL: Template{Pieces: []string{sql}}}}}
}

// Cursor tells whether the statement is DECLARE ('D'), FETCH or MOVE
// ('F'), CLOSE ('C') or none of them (0); ParseCursor reads it whole.
func (st *Statement) Cursor() byte { return st.cursorOp }

// CurrentOf is the cursor an UPDATE or DELETE ... WHERE CURRENT OF names
// ("" for any other statement): it runs where that cursor is.
func (st *Statement) CurrentOf() string { return st.currentOf }

// ParseCursor reads a DECLARE, FETCH, MOVE or CLOSE statement from its
// text as the client sent it (not normalised: FETCH's count and
// DECLARE's query are taken from it). It is not cached: these statements
// are rare next to the rows they move.
func ParseCursor(text string) (*CursorStmt, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, syntaxError(err)
	}
	if len(tree.Stmts) != 1 {
		return nil, pgError(codeSyntaxError, "expected one cursor statement", "")
	}
	raw := tree.Stmts[0]
	switch x := raw.Stmt.Node.(type) {
	case *pg.Node_DeclareCursorStmt:
		d := x.DeclareCursorStmt
		c := &CursorStmt{Op: 'D', Name: d.Portalname, Options: d.Options}
		c.Query, err = declaredQuery(text, int(raw.StmtLocation), int(raw.StmtLen))
		if err != nil {
			return nil, err
		}
		return c, nil
	case *pg.Node_FetchStmt:
		f := x.FetchStmt
		return &CursorStmt{Op: 'F', Name: f.Portalname, Move: f.Ismove,
			Forward: f.Direction == pg.FetchDirection_FETCH_FORWARD, Backward: f.Direction == pg.FetchDirection_FETCH_BACKWARD,
			Count: f.HowMany}, nil
	case *pg.Node_ClosePortalStmt:
		return &CursorStmt{Op: 'C', Name: x.ClosePortalStmt.Portalname}, nil
	}
	return nil, pgError(codeInternal, "shardproxy: not a cursor statement", "")
}

// declaredQuery returns the query of DECLARE name ... CURSOR ... FOR
// query: the text after the first FOR keyword that follows CURSOR (a
// quoted name or option cannot be a keyword token).
func declaredQuery(text string, loc, n int) (string, error) {
	stmt := text[loc:]
	if n > 0 && n <= len(stmt) {
		stmt = stmt[:n]
	}
	toks, err := pg.Scan(stmt)
	if err != nil {
		return "", syntaxError(err)
	}
	cursor := false
	for _, t := range toks.Tokens {
		switch {
		case t.Token == pg.Token_CURSOR:
			cursor = true
		case cursor && t.Token == pg.Token_FOR:
			return stmt[t.End:], nil
		}
	}
	return "", pgError(codeSyntaxError, "DECLARE without FOR query", "")
}

const msgCursorAcrossShards = "DECLARE CURSOR across shards"

// CursorAcrossShards tells whether err is Route's answer for a DECLARE
// whose query spans shards: the session then plans the query on its own
// (ParseCursor's Query) and declares a merged cursor.
// A DECLARE through a view over sharded tables is refused the same way:
// its query, planned on its own, reads the view as its query.
func CursorAcrossShards(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeFeatureNotSupport &&
		(pe.Message == msgCursorAcrossShards || strings.HasPrefix(pe.Message, msgCursorThroughView))
}

const msgCursorThroughView = "DECLARE CURSOR through view "

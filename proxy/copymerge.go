package proxy

import (
	"bytes"
	"context"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// COPY (query) TO STDOUT whose query needs merging across shards (ORDER
// BY, aggregates, DISTINCT, LIMIT, windows ...): the query runs as the
// merged SELECT it is (runPlan), and the proxy writes its rows as COPY
// data, formatted as Postgres' COPY TO formats them (copyto.c,
// CopyAttributeOutText and CopyAttributeOutCSV) from the text the merge
// holds. A query whose rows concatenate exactly still goes to the shards
// as COPY (copy.go). Binary format is refused.

// copyMerged serves a COPY (query) TO STDOUT whose query needs merging.
// done is false when it does not (or is not such a COPY): the usual
// route serves or refuses it.
func (s *session) copyMerged(ctx context.Context, st *router.Statement, text string, args [][]byte) (done, failed bool, err error) {
	sp, perr := router.ParseCopy(text)
	if perr != nil || sp.From || !sp.Stdio || !sp.Query {
		return false, false, nil
	}
	rt := s.runtime()
	parts, perr := rt.Router.ParseQuery(sp.QueryText)
	if perr != nil || len(parts) != 1 || parts[0].Stmt.Kind != router.KindSelect {
		return false, false, nil
	}
	p := parts[0]
	route, rerr := rt.Router.Route(ctx, p.Stmt, s.routeArgs(p.Args))
	if rerr != nil {
		return false, false, nil
	}
	if route.Merge != router.MergePlan {
		// The COPY's own route serves it, unless it read the query
		// otherwise: through a view over sharded tables, which only the
		// query planned alone reads as its query. Its rows then come from
		// its one shard, or concatenate.
		if _, ownErr := rt.Router.Route(ctx, st, s.routeArgs(args)); ownErr == nil {
			return false, false, nil
		}
		switch {
		case len(route.Shards) == 1:
			failed, err := s.execRoute(ctx, st, text, router.Route{Kind: router.RouteSingle, Shards: route.Shards})
			return true, failed, err
		case route.Merge != router.MergeConcat:
			return false, false, nil
		}
	}
	plan, sql := shardQuery(route, sp.QueryText, p.Lits)
	route.Plan = plan
	if sp.Format == router.CopyBinary {
		return true, true, s.sendError(errNotSupported("use FORMAT text or csv",
			"COPY of a query merged across shards in binary format is not supported"))
	}
	sink := &copySink{s: s, sp: sp}
	failed, err = s.runPlan(ctx, p.Stmt, route, planSend{query: sql, bind: func(c *pool.Conn) {
		c.Send(&pgproto3.Parse{Query: sql})
		c.Send(&pgproto3.Bind{})
		c.Send(&pgproto3.Describe{ObjectType: 'P'})
	}}, planInputs{param: literalParams(p.Args), lits: p.Lits, sink: sink}, nil, false)
	return true, failed, err
}

// copySink writes a merged result as COPY TO STDOUT data.
type copySink struct {
	s     *session
	sp    *router.CopySpec
	force []bool // FORCE_QUOTE per column
	line  []byte
	data  pgproto3.CopyData
}

func (k *copySink) begin(out []pgproto3.FieldDescription) error {
	k.force = make([]bool, len(out))
	for i, f := range out {
		k.force[i] = slices.Contains(k.sp.ForceQuote, "*") || slices.Contains(k.sp.ForceQuote, string(f.Name))
	}
	if err := k.s.send(&pgproto3.CopyOutResponse{OverallFormat: 0, ColumnFormatCodes: make([]uint16, len(out))}); err != nil {
		return err
	}
	if !k.sp.Header {
		return nil
	}
	names := make([][]byte, len(out))
	for i, f := range out {
		names[i] = f.Name
	}
	return k.write(names, true)
}

func (k *copySink) row(values [][]byte) error { return k.write(values, false) }

func (k *copySink) end(n int64) error {
	if err := k.s.send(&pgproto3.CopyDone{}); err != nil {
		return err
	}
	return k.s.send(&pgproto3.CommandComplete{CommandTag: []byte("COPY " + strconv.FormatInt(n, 10))})
}

// write sends one line; header: the column names (never NULL, never
// forced).
func (k *copySink) write(values [][]byte, header bool) error {
	b := k.line[:0]
	for i, v := range values {
		if i > 0 {
			b = append(b, k.sp.Delimiter)
		}
		switch {
		case v == nil && !header:
			b = append(b, k.sp.Null...)
		case k.sp.Format == router.CopyCSV:
			b = appendCSV(b, v, k.sp, !header && k.force[i], len(values) == 1)
		default:
			b = appendCopyText(b, v, k.sp.Delimiter)
		}
	}
	b = append(b, '\n')
	k.line = b
	k.data.Data = b
	return k.s.send(&k.data)
}

// appendCopyText escapes v as COPY's text format does
// (CopyAttributeOutText): backslash and the delimiter get a backslash,
// and so do \b \f \n \r \t \v as letters; other control characters pass.
func appendCopyText(b, v []byte, delim byte) []byte {
	for _, c := range v {
		switch {
		case c < 0x20:
			if l := controlLetter(c); l != 0 {
				b = append(b, '\\', l)
			} else if c == delim {
				b = append(b, '\\', c)
			} else {
				b = append(b, c)
			}
		case c == '\\' || c == delim:
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

func controlLetter(c byte) byte {
	switch c {
	case '\b':
		return 'b'
	case '\f':
		return 'f'
	case '\n':
		return 'n'
	case '\r':
		return 'r'
	case '\t':
		return 't'
	case '\v':
		return 'v'
	}
	return 0
}

// appendCSV writes v as COPY's CSV format does (CopyAttributeOutCSV):
// quoted when forced, when it equals the NULL marker, when it holds the
// delimiter, the quote, a newline or a carriage return, and when it is
// "\." alone on its line; inside quotes, the quote and escape characters
// get the escape character.
func appendCSV(b, v []byte, sp *router.CopySpec, force, single bool) []byte {
	quote := force || string(v) == sp.Null ||
		bytes.IndexByte(v, sp.Delimiter) >= 0 || bytes.IndexByte(v, sp.Quote) >= 0 ||
		bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0 ||
		single && string(v) == `\.`
	if !quote {
		return append(b, v...)
	}
	b = append(b, sp.Quote)
	for _, c := range v {
		if c == sp.Quote || c == sp.Escape {
			b = append(b, sp.Escape)
		}
		b = append(b, c)
	}
	return append(b, sp.Quote)
}

package router

import (
	"cmp"
	"fmt"
	"strings"
)

// Size functions (pg_total_relation_size('orders') and friends) measure
// the table on the server that runs them. Each shard holds part of a
// sharded table, so any one shard's answer is a part of the size one
// Postgres holding every row would give, with nothing to say so. A call
// naming a sharded table by a constant (or a bound text parameter) is
// refused, the hint naming the shards to ask one by one; with a shard
// hint the client asked for one shard's part, and gets it. A reference
// table is whole on every shard and an unmapped one lives on the default
// shard: their sizes are what one server would say. An index is known by
// the shards' catalogs (within a health check interval of its creation),
// and sized as its table. A table named by oid (a catalog scan's c.oid,
// as psql's \dt+ does) is not recognised: like the catalogs themselves,
// it is the default shard's view.

// relationSizeFuncs take a regclass first and return bytes on this server.
var relationSizeFuncs = map[string]bool{
	"pg_relation_size": true, "pg_table_size": true,
	"pg_indexes_size": true, "pg_total_relation_size": true,
}

// sizeCall is a size function called on a table named by a constant or a
// parameter (callArg).
type sizeCall struct {
	fn  string
	arg callArg
}

// shardedSizeError refuses the first of calls that names a sharded table.
func (r *Router) shardedSizeError(st *Statement, args *Args) error {
	for _, c := range st.sizeCalls {
		if c.arg.param > 0 && binaryParam(args.Formats, c.arg.param) {
			continue // an oid: which table it is, only a catalog knows
		}
		name, ok := c.arg.value(args.Params)
		if !ok {
			continue
		}
		schema, rel, ok := regclassName(name)
		if !ok {
			continue // Postgres reports the malformed name
		}
		what := "sharded table "
		_, info, err := r.table(st.facts, schema, rel)
		if err == nil && info == nil {
			if info = r.indexedTable(st.facts, schema, rel); info != nil {
				what = "an index of sharded table "
			}
		}
		if err != nil || info == nil || info.ref {
			continue
		}
		shards := r.joinNames(r.stratMask[info.strat.Name()])
		return pgError(codeFeatureNotSupport,
			fmt.Sprintf("%s(%s) would measure one shard's part of %s%s", c.fn, quoteLiteral(name), what, info.name),
			fmt.Sprintf("its rows are on %s; ask each shard with a hint, /* shard: NAME */ SELECT %s(%s), and add the sizes",
				shards, c.fn, quoteLiteral(name)))
	}
	return nil
}

// indexedTable is the mapped table (or child's table) that index
// schema.rel belongs to (indexTableKey), or nil.
func (r *Router) indexedTable(facts *catalog, schema, rel string) *tableInfo {
	t := r.indexTableKey(facts, schema, rel)
	if t == "" {
		return nil
	}
	return cmp.Or(r.tables[t], facts.child(t))
}

// binaryParam reports whether parameter $n (1-based) is bound in binary.
func binaryParam(formats []int16, n int) bool {
	switch {
	case len(formats) == 0:
		return false
	case len(formats) == 1:
		return formats[0] == 1
	case n <= len(formats):
		return formats[n-1] == 1
	}
	return false
}

// regclassName reads a regclass literal the way Postgres does
// (stringToQualifiedNameList): dot-separated names, unquoted ones folded
// to lower case, "quoted" ones kept as written with "" for a quote. It
// returns the schema ("" when unqualified) and the relation; ok is false
// for what Postgres would reject or resolve elsewhere (a database
// qualifier, an empty part, an unterminated quote).
func regclassName(s string) (schema, rel string, ok bool) {
	var parts []string
	s = strings.TrimSpace(s)
	for {
		var part strings.Builder
		if strings.HasPrefix(s, `"`) {
			s = s[1:]
			for {
				i := strings.IndexByte(s, '"')
				if i < 0 {
					return "", "", false
				}
				part.WriteString(s[:i])
				s = s[i+1:]
				if !strings.HasPrefix(s, `"`) {
					break
				}
				part.WriteByte('"')
				s = s[1:]
			}
			if part.Len() == 0 {
				return "", "", false
			}
		} else {
			i := strings.IndexAny(s, `."`)
			if i < 0 {
				i = len(s)
			}
			word := strings.TrimSpace(s[:i])
			if word == "" || strings.ContainsAny(word, " \t\n") {
				return "", "", false
			}
			part.WriteString(downcaseIdent(word))
			s = s[i:]
		}
		parts = append(parts, part.String())
		s = strings.TrimSpace(s)
		if s == "" {
			break
		}
		if s[0] != '.' {
			return "", "", false
		}
		s = strings.TrimSpace(s[1:])
	}
	switch len(parts) {
	case 1:
		return "", parts[0], true
	case 2:
		return parts[0], parts[1], true
	}
	return "", "", false
}

// downcaseIdent folds an unquoted identifier as Postgres does in UTF-8
// (downcase_identifier): ASCII letters only.
func downcaseIdent(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

package router

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A sharded table's sequence has a copy on every shard, each counting on
// its own (sequences.go). Reading the relation on one shard, as the
// default shard answers an unmapped name, gave that copy's last_value
// as the sequence's, with nothing to say so: pg_dump, which reads
// SELECT last_value, is_called FROM public.orders_id_seq and writes it
// back with setval(), restored every shard's copy to the default
// shard's position, behind ids other shards had given out.
//
// The plain read, columns of the sequence from it alone, is answered by
// the copy furthest along: it runs on every shard of the table as
// ... ORDER BY last_value DESC, is_called DESC LIMIT 1, merged as any
// such query. setval() of that row then puts every copy past every id
// any shard gave (setval.go). Any other read of such a sequence (a join,
// an expression, a WHERE) is refused: no one copy is the sequence.

// sequenceColumns are the columns of a sequence relation.
var sequenceColumns = map[string]bool{"last_value": true, "log_cnt": true, "is_called": true}

// shardedSequence is the sharded table owning sequence rv, or nil.
func (r *Router) shardedSequence(facts *catalog, rv *pg.RangeVar) *tableInfo {
	if info, _ := r.sequenceOwner(facts, rv.Schemaname, rv.Relname); info != nil && !info.ref {
		return info
	}
	return nil
}

// sequenceRead recognises SELECT cols FROM seq (the plain read above) of
// a sharded table's sequence, and rewrites it in place to take the copy
// furthest along. It returns the sequence's RangeVar and its table, for
// addUse to read the sequence as that table; nil when s is not such a
// read.
func (r *Router) sequenceRead(facts *catalog, s *pg.SelectStmt) (*pg.RangeVar, *tableInfo) {
	if s == nil || len(s.FromClause) != 1 || s.WhereClause != nil || len(s.GroupClause) > 0 || s.HavingClause != nil ||
		len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil || len(s.DistinctClause) > 0 ||
		len(s.WindowClause) > 0 || s.WithClause != nil || s.Op != pg.SetOperation_SETOP_NONE ||
		s.IntoClause != nil || len(s.LockingClause) > 0 || len(s.TargetList) == 0 {
		return nil, nil
	}
	rv := s.FromClause[0].GetRangeVar()
	if rv == nil || !rv.Inh {
		return nil, nil
	}
	info := r.shardedSequence(facts, rv)
	if info == nil {
		return nil, nil
	}
	for _, t := range s.TargetList {
		ref := t.GetResTarget().GetVal().GetColumnRef()
		if ref == nil {
			return nil, nil
		}
		last := ref.Fields[len(ref.Fields)-1]
		if last.GetAStar() == nil && !sequenceColumns[last.GetString_().GetSval()] {
			return nil, nil
		}
	}
	col := func(name string) *pg.Node {
		return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(name)}, -1)
	}
	if rv.Alias != nil {
		col = func(name string) *pg.Node {
			return pg.MakeColumnRefNode([]*pg.Node{pg.MakeStrNode(rv.Alias.Aliasname), pg.MakeStrNode(name)}, -1)
		}
	}
	s.SortClause = []*pg.Node{
		pg.MakeSortByNode(col("last_value"), pg.SortByDir_SORTBY_DESC, pg.SortByNulls_SORTBY_NULLS_DEFAULT, -1),
		pg.MakeSortByNode(col("is_called"), pg.SortByDir_SORTBY_DESC, pg.SortByNulls_SORTBY_NULLS_DEFAULT, -1),
	}
	s.LimitCount = pg.MakeAConstIntNode(1, -1)
	s.LimitOption = pg.LimitOption_LIMIT_OPTION_COUNT
	return rv, info
}

// sequenceReadRefusal is the 0A000 for any other read of sequence name,
// which sharded table owns.
func sequenceReadRefusal(name string, owner *tableInfo) *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("reading sequence %s of sharded table %s: every shard has its own copy of it", name, owner.name),
		fmt.Sprintf("SELECT last_value, is_called FROM %s alone reads the copy furthest along; /* shard: NAME */ reads one shard's copy", name))
}

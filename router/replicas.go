package router

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// A write to a reference table runs on every shard's copy, and each copy
// evaluates the statement on its own. Whatever the statement computes
// from something other than its text and the copy's rows then differs
// from copy to copy, and the copies part with no error: random(),
// gen_random_uuid(), now() (each shard's transaction starts at its own
// moment), a sequence (each copy has its own), ctid (each copy lays its
// rows out its own way), LIMIT without ORDER BY (each copy finds its own
// first rows). A later read of the table then answers from whichever
// copy it reaches. Such a write is refused (0A000) unless a shard hint
// takes responsibility for it; the same value written as a constant or
// a parameter is the same on every copy. Column defaults count too: an
// INSERT that leaves created_at to DEFAULT now(), or an id to its serial
// sequence, is refused the same way (defaults.go). So is a row lock of
// a reference table that leaves out the default shard's copy, and a
// write through a view over one (it would reach one copy).
//
// So do aggregates and window functions whose result depends on the
// order rows are read in (string_agg, row_number() OVER ()) without an
// ORDER BY. Not seen: a bare parameter ($1, not a literal) whose value is
// 'now' and whose type Postgres infers as a date or time, UPDATE ... FROM
// with several matches per row (Postgres takes any one), and an ORDER BY
// whose ties the copies may break differently.

// divergentCalls are the built-in functions whose value differs from one
// shard to another within one statement: random values, sequences, the
// clock and the transaction's start, and facts of the server itself.
var divergentCalls = map[string]bool{
	"random": true, "random_normal": true, "setseed": true, "gen_random_uuid": true,
	"uuid_generate_v1": true, "uuid_generate_v1mc": true, "uuid_generate_v4": true, // uuid-ossp
	"gen_random_bytes": true, "gen_salt": true, // pgcrypto
	"nextval": true, "currval": true, "lastval": true, "setval": true,
	"now": true, "transaction_timestamp": true, "statement_timestamp": true,
	"clock_timestamp": true, "timeofday": true,
	"pg_postmaster_start_time": true, "pg_conf_load_time": true,
	"pg_backend_pid": true, "inet_server_addr": true, "inet_server_port": true,
	"inet_client_port": true,
	"txid_current":     true, "txid_current_if_assigned": true, "txid_current_snapshot": true,
	"pg_current_xact_id": true, "pg_current_xact_id_if_assigned": true, "pg_current_snapshot": true,
	"pg_current_wal_lsn": true, "pg_current_wal_insert_lsn": true, "pg_current_wal_flush_lsn": true,
	"pg_database_size": true, "pg_relation_size": true, "pg_table_size": true,
	"pg_total_relation_size": true, "pg_indexes_size": true, "pg_tablespace_size": true,
	"pg_xact_commit_timestamp": true, "pg_last_committed_xact": true,
	"age": true, "mxid_age": true, // age(xid), age(timestamp): against now
}

// orderedAggregates build their result in the order they read rows,
// which each copy may do in its own order; orderedWindows number or pick
// rows by their order in the window.
var orderedAggregates = map[string]bool{"array_agg": true, "string_agg": true, "json_agg": true, "jsonb_agg": true,
	"json_object_agg": true, "jsonb_object_agg": true, "xmlagg": true}

var orderedWindows = map[string]bool{"row_number": true, "ntile": true, "first_value": true, "last_value": true,
	"nth_value": true, "lag": true, "lead": true}

// divergentWords are the words of a function body that call one of them:
// the calls, and the SQL keywords for the transaction's time (age is
// left out: as a word it is more often a column).
var divergentWords = func() map[string]bool {
	w := maps.Clone(divergentCalls)
	delete(w, "age")
	for _, k := range []string{"current_timestamp", "current_date", "current_time", "localtime", "localtimestamp"} {
		w[k] = true
	}
	return w
}()

// timeKeywords are the SQL value functions that read the transaction's
// start.
var timeKeywords = map[pg.SQLValueFunctionOp]string{
	pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:        "CURRENT_DATE",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME:        "CURRENT_TIME",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:      "CURRENT_TIME",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP:   "CURRENT_TIMESTAMP",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "CURRENT_TIMESTAMP",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIME:           "LOCALTIME",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:         "LOCALTIME",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:      "LOCALTIMESTAMP",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:    "LOCALTIMESTAMP",
}

// timeInputs are the date/time input strings that mean the moment they
// are read ('now'::timestamptz is read by each copy at its own).
var timeInputs = map[string]bool{"now": true, "today": true, "tomorrow": true, "yesterday": true}

var timeTypes = map[string]bool{"date": true, "time": true, "timetz": true, "timestamp": true, "timestamptz": true}

// systemColumns differ between copies of a row: its place (ctid), the
// transactions that wrote it, and the table's OID on that shard.
var systemColumns = map[string]bool{"ctid": true, "xmin": true, "xmax": true, "cmin": true, "cmax": true, "tableoid": true}

// divergentFunctions finds, among functions (name -> the words of its
// bodies), those whose value may differ between shards: a C function
// Postgres calls volatile, or a body that calls a divergentCalls
// function or another such function; each with what it calls.
func divergentFunctions(functions map[string]body) map[string]string {
	return findThroughCalls(functions, func(name string, b body, found map[string]string) string {
		if b.volatile {
			return "is volatile"
		}
		if w := firstIn(b.words, divergentWords); w != "" {
			return "calls " + w
		}
		if f := firstIn(b.words, found); f != "" && f != name {
			return fmt.Sprintf("calls %s(), which %s", f, found[f])
		}
		return ""
	})
}

// replicaRisk is what makes a write to a reference table differ between
// its copies, and how to write it so that it does not.
type replicaRisk struct{ what, hint string }

const hintComputeOnce = "compute the value once (in the application, or SELECT it first) and write it as a constant or parameter, so that every copy gets the same"

// timeParams are the parameters of a write to a reference table whose
// value Route checks for 'now' and the like (timeParamRefusal).
type timeParams struct {
	cast []int // cast to a date/time type
	// bare: not cast, so that Postgres infers their type from where they
	// stand, a date/time column among others. Checked only when they are
	// the statement's own literals (Args.Literals): a bound value may be
	// any text, such as a product named "Today", and the proxy does not
	// know the type Postgres gave it.
	bare []int
}

func (p *timeParams) note(list *[]int, n int32) {
	if !slices.Contains(*list, int(n)) {
		*list = append(*list, int(n))
	}
}

// divergence finds the first thing in n whose value each shard computes
// on its own (funcs: user functions that do, divergentFunctions). For a
// statement (params not nil) it also refuses a bare string literal that
// a date/time type reads as a moment ('now', 'today'...), which Postgres
// gives that type when it lands in such a column, and notes in params
// the parameters Route checks for such values.
func divergence(n *pg.Node, funcs map[string]string, params *timeParams) *replicaRisk {
	var risk *replicaRisk
	walk(n, func(c *pg.Node) bool {
		descend := true
		switch x := c.Node.(type) {
		case *pg.Node_FuncCall:
			names := stringItems(x.FuncCall.Funcname)
			if len(names) == 0 {
				break
			}
			name := strings.ToLower(names[len(names)-1])
			builtin := len(names) == 1 || names[0] == "pg_catalog"
			switch {
			case builtin && orderedAggregates[name] && x.FuncCall.Over == nil && len(x.FuncCall.AggOrder) == 0:
				risk = &replicaRisk{name + "() without ORDER BY", "order the aggregate's input: " + name + "(... ORDER BY a unique key)"}
			case builtin && orderedWindows[name] && x.FuncCall.Over != nil && len(x.FuncCall.Over.OrderClause) == 0:
				risk = &replicaRisk{name + "() over a window without ORDER BY", "order the window by a unique key"}
			case builtin && divergentCalls[name] && (name != "age" || len(x.FuncCall.Args) == 1):
				risk = &replicaRisk{name + "()", hintComputeOnce}
			case names[0] != "pg_catalog" && funcs[name] != "":
				risk = &replicaRisk{fmt.Sprintf("%s(), which %s,", name, funcs[name]), hintComputeOnce}
			}

		case *pg.Node_SqlvalueFunction:
			if k := timeKeywords[x.SqlvalueFunction.Op]; k != "" {
				risk = &replicaRisk{k, hintComputeOnce}
			}
		case *pg.Node_TypeCast:
			tc := x.TypeCast
			names := stringItems(tc.GetTypeName().GetNames())
			if len(names) == 0 || !timeTypes[names[len(names)-1]] {
				// 'now'::text is the word: its constant is not bare.
				descend = tc.Arg.GetParamRef() == nil && tc.Arg.GetAConst() == nil
				break
			}
			if p := tc.Arg.GetParamRef(); p != nil && params != nil {
				params.note(&params.cast, p.Number)
				descend = false
			}
			if s := tc.Arg.GetAConst().GetSval(); s != nil && timeInputs[strings.ToLower(strings.TrimSpace(s.Sval))] {
				risk = &replicaRisk{fmt.Sprintf("'%s'::%s", s.Sval, names[len(names)-1]), hintComputeOnce}
			}
		case *pg.Node_ParamRef:
			if params != nil {
				params.note(&params.bare, x.ParamRef.Number)
			}
		case *pg.Node_AConst:
			if s := x.AConst.GetSval(); s != nil && params != nil && timeInputs[strings.ToLower(strings.TrimSpace(s.Sval))] {
				risk = bareTimeRisk(s.Sval)
			}
		case *pg.Node_ColumnRef:
			if f := x.ColumnRef.Fields; len(f) > 0 {
				if s := f[len(f)-1].GetString_(); s != nil && systemColumns[s.Sval] {
					risk = &replicaRisk{"system column " + s.Sval, "identify rows by the table's key"}
				}
			}
		case *pg.Node_RangeTableSample:
			risk = &replicaRisk{"TABLESAMPLE", "select the rows first, and write them by key"}
		case *pg.Node_SelectStmt:
			s := x.SelectStmt
			if (s.LimitCount != nil || s.LimitOffset != nil) && len(s.SortClause) == 0 {
				risk = &replicaRisk{"LIMIT or OFFSET without ORDER BY", "order by a unique key, or select the keys first and write by key"}
			}
		}
		return risk == nil && descend
	})
	return risk
}

// bareTimeRisk is the refusal of string v ('now', 'today'...) written
// without a cast: in a date or time column each copy reads it as its own
// moment.
func bareTimeRisk(v string) *replicaRisk {
	return &replicaRisk{fmt.Sprintf("'%s' without a cast, which a date or time column reads as the moment each copy stores it,", v),
		hintComputeOnce + "; if it is a word, not a date, cast it: '" + v + "'::text"}
}

// replicaRefusal is the error for statement st (n) when it writes a
// reference table in a way that makes the table's copies differ; nil
// otherwise. It also sets st.times.
func (r *Router) replicaRefusal(st *Statement, n *pg.Node) *pgconn.PgError {
	table := ""
	for _, u := range st.uses {
		if u.write && u.info != nil && u.info.ref {
			table = u.info.name
			break
		}
	}
	if table == "" || !executes(n) {
		return nil
	}
	if st.Kind == KindDDL {
		return r.addColumnRefusal(n, st.facts, table)
	}
	risk := r.defaultsRisk(n, st.facts)
	if risk == nil {
		// The statement's own RETURNING list only shapes what the client
		// is sent (one copy's rows).
		ret := returningList(n)
		if ret != nil {
			saved := *ret
			*ret = nil
			defer func() { *ret = saved }()
		}
		risk = divergence(n, st.facts.divergentFuncs(), &st.times)
	}
	if risk == nil {
		return nil
	}
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("%s in a write to reference table %s would make its copies on the shards differ", risk.what, table),
		risk.hint)
}

// RefLock is an advisory lock a write to a reference table takes on every
// copy before it runs (ReferenceLocks).
type RefLock struct {
	Key       int64 // pg_advisory_xact_lock key of one reference table
	Exclusive bool  // the statement writes the table (else it only reads it)
}

// ReferenceLocks returns the locks a statement that writes reference
// tables takes on each copy, in key order, before it runs there: an
// exclusive one per table it writes, a shared one per reference table it
// only reads. Its copies run one shard after the other, each with its own
// snapshot; without the locks, a second write committed between two of
// them is seen by the later copies only (UPDATE products SET price =
// price + 1 missed a product another write inserted on s0, and updated it
// on s1), and the copies differ for good. With them, writes of a
// reference table take its copies in one order, as Citus serializes
// writes to reference tables. nil when it writes none.
func (st *Statement) ReferenceLocks() []RefLock {
	writes := false
	for _, u := range st.uses {
		writes = writes || u.write && u.info != nil && u.info.ref
	}
	if !writes {
		return nil
	}
	var locks []RefLock
	for _, u := range st.uses {
		if u.info == nil || !u.info.ref {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte("shardproxy reference table "))
		h.Write([]byte(u.info.name))
		key := int64(h.Sum64())
		i := slices.IndexFunc(locks, func(l RefLock) bool { return l.Key == key })
		if i < 0 {
			locks = append(locks, RefLock{Key: key})
			i = len(locks) - 1
		}
		locks[i].Exclusive = locks[i].Exclusive || u.write
	}
	slices.SortFunc(locks, func(a, b RefLock) int { return cmp.Compare(a.Key, b.Key) })
	return locks
}

// returningList is the RETURNING list of write statement n, or nil.
func returningList(n *pg.Node) *[]*pg.Node {
	switch x := n.Node.(type) {
	case *pg.Node_InsertStmt:
		return &x.InsertStmt.ReturningList
	case *pg.Node_UpdateStmt:
		return &x.UpdateStmt.ReturningList
	case *pg.Node_DeleteStmt:
		return &x.DeleteStmt.ReturningList
	case *pg.Node_MergeStmt:
		return &x.MergeStmt.ReturningList
	}
	return nil
}

// timeParamRefusal refuses a parameter value that a reference write
// casts to a date/time type and that means the moment it is read
// ('now', 'today'...): each copy would read it at its own.
func timeParamRefusal(st *Statement, args *Args) error {
	value := func(p int) string {
		if p < 1 || p > len(args.Params) || paramFormat(args.Formats, p-1) != 0 {
			return ""
		}
		return string(args.Params[p-1])
	}
	for _, p := range st.times.cast {
		if v := strings.ToLower(strings.TrimSpace(value(p))); timeInputs[v] {
			return pgError(codeFeatureNotSupport,
				fmt.Sprintf("'%s' as a date or time in a write to a reference table would make its copies on the shards differ", v),
				hintComputeOnce)
		}
	}
	if !args.Literals {
		return nil
	}
	for _, p := range st.times.bare {
		if v := value(p); timeInputs[strings.ToLower(strings.TrimSpace(v))] {
			risk := bareTimeRisk(v)
			return pgError(codeFeatureNotSupport,
				fmt.Sprintf("%s in a write to a reference table would make its copies on the shards differ", risk.what), risk.hint)
		}
	}
	return nil
}

// executes tells whether statement n runs what it names: EXPLAIN without
// ANALYZE only plans it, and writes nothing.
func executes(n *pg.Node) bool {
	ex := n.GetExplainStmt()
	if ex == nil {
		return true
	}
	for _, o := range ex.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "analyze" {
			var v string
			switch {
			case d.Arg == nil:
				return true
			case d.Arg.GetBoolean() != nil:
				return d.Arg.GetBoolean().Boolval
			case d.Arg.GetString_() != nil:
				v = d.Arg.GetString_().Sval
			case d.Arg.GetAConst() != nil:
				v, _ = constText(d.Arg.GetAConst())
			}
			v = strings.ToLower(v)
			return v != "false" && v != "off" && v != "0" && v != "no"
		}
	}
	return false
}

// A reference table's rows have one copy per shard, and a row lock
// (SELECT ... FOR UPDATE or FOR SHARE) takes the copy on the shard the
// statement runs on. Two transactions that lock the same product through
// customers on two shards would lock two copies, both go on, and the
// second's UPDATE would overwrite the first's with no error: a lost
// update that one Postgres prevents. Every lock of a reference table's
// rows must therefore include one shard's copy, the default shard's,
// where a statement reading only reference tables runs (and which a
// write to the table locks too). A locking read that would lock a
// reference table elsewhere only is refused.

// lockedReference is a reference table whose rows statement n locks
// (FOR UPDATE/SHARE without OF covers every table of its FROM, also in
// subqueries; OF names tables or aliases), "" if none.
func lockedReference(n *pg.Node, st *Statement) string {
	refs := map[string]string{} // relation name or alias -> table
	for _, u := range st.uses {
		if u.info != nil && u.info.ref {
			refs[u.rel] = u.info.name
			if u.alias != "" {
				refs[u.alias] = u.info.name
			}
		}
	}
	if len(refs) == 0 {
		return ""
	}
	found := ""
	ref := func(rv *pg.RangeVar) {
		if rv != nil && found == "" {
			found = refs[rv.Relname]
		}
	}
	walk(n, func(c *pg.Node) bool {
		sel := c.GetSelectStmt()
		if sel == nil {
			return found == ""
		}
		for _, lc := range sel.LockingClause {
			l := lc.GetLockingClause()
			if len(l.GetLockedRels()) > 0 {
				for _, rel := range l.LockedRels {
					ref(rel.GetRangeVar())
				}
				continue
			}
			for _, f := range sel.FromClause {
				walk(f, func(x *pg.Node) bool {
					ref(x.GetRangeVar())
					return found == ""
				})
			}
		}
		return found == ""
	})
	return found
}

func lockedReferenceError(table string, shards []string) error {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("FOR UPDATE/SHARE would lock reference table %s on shard %s only, where other shards' statements do not see the lock", table, strings.Join(shards, ", ")),
		fmt.Sprintf("lock %s in a statement of its own (it then runs on the default shard, which every lock of it includes), or name only sharded tables in FOR UPDATE OF", table))
}

package router

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shardproxy/shardproxy/strategies"
)

// valueRef is where a shard-key value comes from: a $n parameter or a
// constant in the text.
type valueRef struct {
	param int    // 1-based $n; 0 for a constant
	text  string // constant's text
	null  bool   // constant NULL
	neg   bool   // unary minus applied
	expr  bool   // neither: an expression or DEFAULT (INSERT rows only)
	// casts are the types the value is cast to, innermost first (last
	// name part; "[]" appended for arrays). Only timestamp keys use them:
	// a cast decides how Postgres reads and converts the text.
	casts []string
}

// tableUse is one occurrence of a table in a statement.
type tableUse struct {
	name   string     // as written: rel or schema.rel
	schema string     // "" when unqualified
	home   string     // the schema the name is read in (see Router.table)
	rel    string     // relation name
	alias  string     // FROM alias, "" if none
	info   *tableInfo // nil: not in the shard map (lives on default_shard)
	write  bool       // target of INSERT/UPDATE/DELETE/COPY FROM
	fires  int        // the trigger events (triggerInsert...) that write fires
	insert bool       // vals are the key of each VALUES row
	keyed  bool       // vals constrains the key
	vals   []valueRef // the key is one of these
	// rows: INSERT ... VALUES without a column list: every row's items by
	// position, since the key's position is only known at Route time.
	rows [][]valueRef
	// topWhere: keyed by the top-level WHERE of a SELECT/UPDATE/DELETE, so
	// no row of this table means no row of the result.
	topWhere bool
}

func (u *tableUse) sharded() bool { return u.info != nil && !u.info.ref }

// refName is how columns qualify this occurrence: the alias, else the name.
func (u *tableUse) refName() string {
	if u.alias != "" {
		return u.alias
	}
	return u.rel
}

// scope is one query level's FROM items and the join conditions that
// filter some of them.
type scope struct {
	uses  []int
	quals []qual
	from  []*pg.Node // the level's FROM clause (SELECT levels only)
	// derived are the shard-key columns that subqueries in FROM pass
	// through (derivedKeys): s.customer_id is the key of the table use
	// it is read from, so equating it joins on the key.
	derived []derivedKey
}

// derivedKey is output column col of the FROM subquery alias (the view
// a subquery was inlined from, too), which is the shard key of use.
type derivedKey struct {
	alias, col string
	use        int
}

// names tells whether n names d's column, as col or alias.col.
func (d *derivedKey) names(n *pg.Node) bool {
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	names := stringItems(cr.Fields)
	if len(names) != len(cr.Fields) || len(names) == 0 || names[len(names)-1] != d.col {
		return false
	}
	q := names[:len(names)-1]
	return len(q) == 0 || len(q) == 1 && d.alias != "" && q[0] == d.alias
}

// isStar tells whether n is * or t.* in a select list.
func isStar(n *pg.Node) bool {
	cr := n.GetColumnRef()
	return cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// qual is a condition that filters only the rows of targets (an outer
// join's ON clause filters its nullable side only).
type qual struct {
	expr    *pg.Node
	targets []int
}

type analyzer struct {
	r          *Router
	st         *Statement
	text       string
	version    int32                          // of the parse tree, for Deparse
	ctes       map[string]*pg.CommonTableExpr // this statement's CTEs by name
	inlining   map[*pg.CommonTableExpr]bool   // CTEs whose body cteItem is analysing
	recursive  map[*pg.CommonTableExpr]bool   // CTEs of a WITH RECURSIVE (the raw parse tree does not say)
	inKey      int                            // see selectStmt: set for the subquery of key IN (...) only
	setArm     bool                           // see selectStmt: set for an arm of INTERSECT or EXCEPT only
	derivedSel bool                           // see selectStmt: set for a subquery in FROM only
	// starKeys: the key columns a FROM subquery's * or t.* passes out.
	starKeys map[*pg.SelectStmt][]derivedKey
	// viaDerived: the outer levels and aliases through which a use's key
	// was read as a derived column (nonNullKey checks them too).
	viaDerived map[int][]derivedVia
	outKeys    map[*pg.SelectStmt][]int  // such an arm's select list: the key use of each column, or -1
	sharded    int                       // sharded table occurrences seen so far
	scopes     []*scope                  // enclosing query levels, innermost last
	viewOf     map[*pg.SelectStmt]string // the queries of views read as subqueries (inlineViews)
	parent     map[int]int
	// INSERT ... SELECT into a sharded table: the SELECT level (judged by
	// insertSelectRefusal rather than as a result to merge), the target
	// column that is the shard key, and the table occurrence of that
	// level whose key the SELECT puts there (-1: none).
	insertSel    *pg.SelectStmt
	insertKeyPos int
	insertSrc    int
	// seqRead: the statement is the plain read of a sharded table's
	// sequence, rewritten to read the copy furthest along; addUse reads
	// the sequence as seqTable (sequence_read.go).
	seqRead  *pg.RangeVar
	seqTable *tableInfo
}

// analyze parses text (one statement) and describes it. Errors are
// pg_query's syntax errors.
func (r *Router) analyze(text, hint string, numParams int) (*Statement, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, err
	}
	if len(tree.Stmts) != 1 {
		return nil, fmt.Errorf("expected one statement, found %d", len(tree.Stmts))
	}
	st := &Statement{NumParams: numParams, hint: hint, facts: r.facts.Load()}
	stmt := tree.Stmts[0].Stmt
	st.readsText = needsOriginalText(stmt)
	var viewOf map[*pg.SelectStmt]string // the queries of views read as subqueries
	if sel := stmt.GetSelectStmt(); sel != nil && sel.IntoClause == nil && len(st.facts.viewDefs()) > 0 {
		var ok bool
		viewOf = map[*pg.SelectStmt]string{}
		if st.inlinedViews, ok = inlineViews(stmt, st.facts, viewOf, 0); !ok {
			st.err = pgError(codeFeatureNotSupport, "views nested too deeply to read across shards", "query the tables the views read")
		}
	}
	a := &analyzer{r: r, st: st, text: text, version: tree.Version, inKey: -1, viewOf: viewOf}
	a.seqRead, a.seqTable = r.sequenceRead(st.facts, stmt.GetSelectStmt())
	a.top(stmt)
	r.checkCatalogFacts(st, stmt, text)
	st.lockedRef = lockedReference(stmt, st)
	st.ctid = refersCtid(stmt)
	st.NoTxBlock = noTxBlock(stmt)
	st.anyCopy = readsCopiesOnly(st, stmt)
	if st.err == nil {
		var err *pgconn.PgError
		if st.Kind == KindDDL {
			err = r.uniqueRefusal(stmt, st.facts)
			if err == nil {
				err = r.serialRefusal(stmt, st.facts)
			}
		} else {
			err = r.conflictRefusal(stmt, st.facts)
		}
		if err != nil {
			st.err = err
		}
	}
	if st.err == nil || st.hint != "" { // a refused statement makes nothing
		r.learnFromDDL(stmt, text, st.facts)
		st.Learns = st.Kind == KindDDL
	}
	pf := analyzePooling(tree.Stmts[0].Stmt)
	st.sessionState, st.LocalConfig, st.setConfigs = pf.refusal, pf.localConfig, pf.setConfigs
	st.SessionSequence = pf.sessionSequence
	st.sizeCalls = pf.sizeCalls
	st.setvals, st.serverCall = pf.setvals, pf.serverCall
	if st.defaultCall == "" {
		st.defaultCall = pf.defaultCall
	}
	st.sessionConfig = pf.sessionConfig
	st.snapshotID = st.snapshotID || pf.exportsSnapshot
	if len(st.uses) == 0 {
		st.TxnScoped = pf.advisory || pf.localConfig || pf.xact
		st.advisoryLock = pf.advisory
		// A session setting made with set_config(..., false) is the
		// session's: it must run where the session is, and be recorded.
		st.Aside = !pf.advisory && !pf.xact && pf.sessionConfig == nil && runsAside(tree.Stmts[0].Stmt)
	}
	if st.Kind == KindSelect {
		st.MayWrite = mayWrite(tree.Stmts[0].Stmt, st.facts.writingFuncs())
	}
	st.HidesSettings = hidesSettings(tree.Stmts[0].Stmt, st.facts.settingFuncs())
	query := tree.Stmts[0].Stmt // EXPLAIN's query is planned as the query would be (explain.go)
	if ex := query.GetExplainStmt(); ex != nil {
		query = ex.Query
	}
	if sel := query.GetSelectStmt(); sel != nil && st.Kind == KindSelect && st.err == nil && a.sharded > 0 {
		var orig *pg.Node
		if r.gatherable(st, query) {
			orig = proto.Clone(query).(*pg.Node)
		}
		// The planner rewrites the tree in place: nothing else holds it.
		st.plan, st.planErr = buildPlan(st, sel, tree.Version)
		// Kept only where Route may refuse (routeTables); a statement that
		// concatenates or merges exactly never needs it.
		if orig != nil && (st.planErr != nil || st.unjoined != "" || st.inexact != "" || len(st.maybeOuterAggs) > 0) {
			st.gather = &gatherState{orig: orig, version: tree.Version}
		}
	}
	if ins := tree.Stmts[0].Stmt.GetInsertStmt(); ins != nil && st.err == nil && a.sharded > 0 {
		st.split = buildInsertSplit(st, ins, tree.Version)
	}
	seen := map[string]bool{}
	for _, u := range st.uses {
		if !seen[u.name] {
			seen[u.name] = true
			st.Tables = append(st.Tables, u.name)
		}
	}
	return st, nil
}

// ddlNodes are the oneof names (pg_query.proto) of schema-changing statements.
var ddlNodes = map[protoreflect.Name]bool{
	"create_stmt": true, "alter_table_stmt": true, "drop_stmt": true, "truncate_stmt": true,
	"comment_stmt": true, "index_stmt": true, "create_schema_stmt": true, "view_stmt": true,
	"create_table_as_stmt": true, "create_seq_stmt": true, "alter_seq_stmt": true,
	"create_function_stmt": true, "alter_function_stmt": true, "create_extension_stmt": true,
	"alter_extension_stmt": true, "rename_stmt": true, "composite_type_stmt": true,
	"create_enum_stmt": true, "alter_enum_stmt": true, "create_domain_stmt": true,
	"alter_domain_stmt": true, "grant_stmt": true, "alter_default_privileges_stmt": true,
	"create_trig_stmt": true, "rule_stmt": true, "create_policy_stmt": true,
	"alter_policy_stmt": true, "alter_object_schema_stmt": true, "alter_owner_stmt": true,
	"create_stats_stmt": true, "create_range_stmt": true, "define_stmt": true,
	"create_cast_stmt": true, "alter_type_stmt": true, "alter_collation_stmt": true,
	"create_event_trig_stmt": true, "create_foreign_table_stmt": true,
	// Roles and database settings: every shard's server must have the
	// role the next GRANT names, and ALTER ROLE/DATABASE ... SET changes
	// how every shard's sessions run (a search_path on s0 alone would
	// make two shards read different tables).
	"create_role_stmt": true, "alter_role_stmt": true, "alter_role_set_stmt": true,
	"drop_role_stmt": true, "grant_role_stmt": true, "alter_database_set_stmt": true,
	"alter_database_stmt": true, "reassign_owned_stmt": true, "drop_owned_stmt": true,
	// Objects every shard's tables may use, or that belong to tables on
	// every shard: made on one shard only, they would be missing on the
	// others (a later broadcast then fails), or differ between shards.
	"alter_stats_stmt": true, "create_op_class_stmt": true, "create_op_family_stmt": true,
	"alter_op_family_stmt": true, "alter_operator_stmt": true, "create_am_stmt": true,
	"create_conversion_stmt": true, "create_transform_stmt": true, "alter_tsdictionary_stmt": true,
	"alter_tsconfiguration_stmt": true, "create_foreign_server_stmt": true, "alter_foreign_server_stmt": true,
	"create_user_mapping_stmt": true, "alter_user_mapping_stmt": true, "drop_user_mapping_stmt": true,
	"create_fdw_stmt": true, "alter_fdw_stmt": true, "import_foreign_schema_stmt": true,
	"create_publication_stmt": true, "alter_event_trig_stmt": true, "alter_extension_contents_stmt": true,
	"sec_label_stmt": true, "alter_table_move_all_stmt": true,
}

// serverWideNodes are maintenance statements that, naming no table, act
// on the whole server or database: VACUUM, ANALYZE, CHECKPOINT, ALTER
// SYSTEM, REINDEX DATABASE/SYSTEM, CLUSTER. They run on every shard (one
// shard would leave the others unvacuumed, or configured otherwise).
var serverWideNodes = map[protoreflect.Name]bool{
	"vacuum_stmt": true, "check_point_stmt": true, "alter_system_stmt": true,
	"reindex_stmt": true, "cluster_stmt": true,
}

func nodeName(n *pg.Node) protoreflect.Name {
	m := n.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); fd != nil {
		return fd.Name()
	}
	return ""
}

func (a *analyzer) top(n *pg.Node) {
	st := a.st
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		st.Kind = KindSelect
		if x.SelectStmt.IntoClause != nil {
			st.Kind = KindDDL // SELECT INTO creates a table
			st.createAs = true
		}
		a.selectStmt(x.SelectStmt, true)
	case *pg.Node_CreateTableAsStmt:
		if x.CreateTableAsStmt.Query.GetExecuteStmt() != nil {
			// CREATE TABLE ... AS EXECUTE: the proxy binds the session's
			// prepared statement into it (sqlprepare.go).
			st.Kind, st.SQLExecute = KindPrepare, true
			break
		}
		st.Kind = KindDDL
		st.createAs = true
		a.a2(x.CreateTableAsStmt.Query)
	case *pg.Node_DeclareCursorStmt:
		// A cursor reads like its query; FETCH then needs that one shard.
		st.Kind = KindOther
		st.cursor, st.cursorOp = true, 'D'
		if x.DeclareCursorStmt.Options&cursorOptHold == 0 {
			st.BlockOnly, st.BlockOnlyFails = "DECLARE CURSOR", true
		}
		a.selectStmt(x.DeclareCursorStmt.Query.GetSelectStmt(), true)
	case *pg.Node_FetchStmt:
		st.Kind, st.other, st.cursorOp = KindOther, true, 'F'
	case *pg.Node_ClosePortalStmt:
		st.Kind, st.other, st.cursorOp = KindOther, true, 'C'
	case *pg.Node_InsertStmt:
		st.Kind, st.Returning = KindInsert, len(x.InsertStmt.ReturningList) > 0
		a.insert(x.InsertStmt)
	case *pg.Node_UpdateStmt:
		st.Kind, st.Returning = KindUpdate, len(x.UpdateStmt.ReturningList) > 0
		a.update(x.UpdateStmt, true)
	case *pg.Node_DeleteStmt:
		st.Kind, st.Returning = KindDelete, len(x.DeleteStmt.ReturningList) > 0
		a.delete(x.DeleteStmt, true)
	case *pg.Node_ExplainStmt:
		a.top(x.ExplainStmt.Query)
		st.Explain = true
		st.explain = explainOptionsOf(x.ExplainStmt)
		st.explain.text = splitTemplate(a.text)
	case *pg.Node_TransactionStmt:
		st.Kind = transactionKind(x.TransactionStmt.Kind)
		if st.Kind == KindBegin {
			st.Tag = "BEGIN"
			if x.TransactionStmt.Kind == pg.TransactionStmtKind_TRANS_STMT_START {
				st.Tag = "START TRANSACTION"
			}
		}
		switch x.TransactionStmt.Kind {
		case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
			st.Savepoint = 'S'
		case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
			st.Savepoint = 'R'
		case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
			st.Savepoint = 'B'
		case pg.TransactionStmtKind_TRANS_STMT_PREPARE:
			st.TwoPhase = 'P'
		case pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
			st.TwoPhase = 'C'
		case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			st.TwoPhase = 'R'
		}
		st.SavepointName, st.GID = x.TransactionStmt.SavepointName, x.TransactionStmt.Gid
	case *pg.Node_VariableSetStmt:
		a.set(x.VariableSetStmt)
		if k := x.VariableSetStmt.Kind; k == pg.VariableSetKind_VAR_RESET || k == pg.VariableSetKind_VAR_RESET_ALL {
			st.Tag = "RESET" // SetTag: Postgres' tag for RESET
		}
	case *pg.Node_ConstraintsSetStmt:
		// Like SET LOCAL: it lasts for the transaction, on every shard
		// of it (and on those that join later, by replay).
		st.Kind, st.SetName, st.SetLocal, st.Tag = KindSet, "constraints", true, "SET CONSTRAINTS"
		st.BlockOnly = "SET CONSTRAINTS"
	case *pg.Node_VariableShowStmt:
		st.Kind = KindShow
		st.SetName = strings.ToLower(x.VariableShowStmt.Name)
	case *pg.Node_CopyStmt:
		st.Kind = KindCopy
		a.copy(x.CopyStmt)
	case *pg.Node_PrepareStmt:
		st.Kind = KindPrepare
	case *pg.Node_ExecuteStmt:
		st.Kind, st.SQLExecute = KindPrepare, true
	case *pg.Node_DeallocateStmt:
		st.Kind = KindPrepare
		st.Deallocate, st.DeallocateAll = x.DeallocateStmt.Name, x.DeallocateStmt.Isall || x.DeallocateStmt.Name == ""
	case *pg.Node_ListenStmt, *pg.Node_UnlistenStmt, *pg.Node_NotifyStmt:
		st.Kind = KindListen
		if n.GetNotifyStmt() != nil {
			st.defaultCall = "pg_notify" // NOTIFY is pg_notify()
		}
	case *pg.Node_DropStmt:
		st.Kind = KindDDL
		a.dropNames(x.DropStmt)
		if x.DropStmt.RemoveType == pg.ObjectType_OBJECT_INDEX {
			a.ownedNames(false, x.DropStmt.Objects...)
		}
		a.collectTables(n)
	case *pg.Node_CommentStmt:
		st.Kind = KindDDL
		switch x.CommentStmt.Objtype {
		case pg.ObjectType_OBJECT_INDEX:
			a.ownedNames(false, x.CommentStmt.Object)
		case pg.ObjectType_OBJECT_SEQUENCE:
			a.ownedNames(true, x.CommentStmt.Object)
		case pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_TABCONSTRAINT, pg.ObjectType_OBJECT_POLICY, pg.ObjectType_OBJECT_RULE:
			if names := stringItems(x.CommentStmt.Object.GetList().GetItems()); len(names) > 1 {
				a.addName(names[:len(names)-1]) // ON [schema.]table: where the table is
			}
		}
		if x.CommentStmt.Objtype == pg.ObjectType_OBJECT_TABLE || x.CommentStmt.Objtype == pg.ObjectType_OBJECT_COLUMN {
			if l := x.CommentStmt.Object.GetList(); l != nil {
				names := stringItems(l.Items)
				if x.CommentStmt.Objtype == pg.ObjectType_OBJECT_COLUMN && len(names) > 1 {
					names = names[:len(names)-1]
				}
				a.addName(names)
			}
		}
	case *pg.Node_DiscardStmt:
		st.Kind = KindOther
		st.other = true
		st.DiscardAll = x.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL
	case *pg.Node_MergeStmt:
		st.Kind = KindOther
		st.other = true
		a.collectTables(n)
		a.merge(x.MergeStmt)
	case *pg.Node_ViewStmt:
		st.Kind = KindDDL
		a.collectTables(n)
		a.view(x.ViewStmt)
	default:
		if ddlNodes[nodeName(n)] {
			st.Kind = KindDDL
		} else {
			st.Kind = KindOther
			st.other = true
		}
		// An index's, a type's or a sequence's RangeVar is not a table
		// (indexes.go, sequences.go).
		if !a.indexTarget(n) && !a.sequenceTarget(n) {
			a.collectTables(n)
		}
		a.mappedTableDDL(n)
		st.serverWide = len(st.uses) == 0 && serverWideNodes[nodeName(n)]
		if n.GetLockStmt() != nil {
			st.BlockOnly, st.BlockOnlyFails = "LOCK TABLE", true
		}
	}
}

func transactionKind(k pg.TransactionStmtKind) Kind {
	switch k {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		return KindBegin
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		return KindCommit
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return KindRollback
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT, pg.TransactionStmtKind_TRANS_STMT_RELEASE,
		pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return KindSavepoint
	}
	return KindPrepareTransaction
}

// set fills the SET fields. The value is kept as the client wrote it
// (the text from the first argument on), so the proxy can replay it.
func (a *analyzer) set(v *pg.VariableSetStmt) {
	st := a.st
	name := strings.ToLower(v.Name)
	if name == HintParameter {
		switch v.Kind {
		case pg.VariableSetKind_VAR_SET_VALUE:
			st.Kind = KindShardHintSet
			if len(v.Args) > 0 {
				if c := v.Args[0].GetAConst(); c != nil {
					st.HintShard, _ = constText(c)
				}
			}
		default:
			st.Kind = KindShardHintReset
		}
		return
	}
	st.Kind = KindSet
	st.SetName = name
	st.SetLocal = v.IsLocal
	if v.IsLocal && v.Kind != pg.VariableSetKind_VAR_SET_MULTI {
		st.BlockOnly = "SET LOCAL"
	}
	switch v.Kind {
	case pg.VariableSetKind_VAR_SET_VALUE:
		if len(v.Args) > 0 {
			if loc := nodeLocation(v.Args[0]); loc >= 0 && loc < len(a.text) {
				st.SetValue = strings.TrimRight(a.text[loc:], " \t\r\n;")
			}
			// Settings the proxy refuses (encoding.go): SET client_encoding
			// (and SET NAMES) other than UTF-8, standard_conforming_strings off.
			if c := v.Args[0].GetAConst(); c != nil {
				val, ok := constText(c)
				switch {
				case ok && name == "client_encoding" && !ClientEncodingOK(val):
					st.err = ClientEncodingError(val)
				case ok && name == "standard_conforming_strings" && !StandardStringsOK(val):
					st.err = StandardStringsError()
				}
			}
		}
	case pg.VariableSetKind_VAR_SET_DEFAULT:
		st.SetValue = "DEFAULT"
	case pg.VariableSetKind_VAR_SET_CURRENT:
		st.SetValue = "FROM CURRENT"
	case pg.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION ... lasts for the transaction; SET SESSION
		// CHARACTERISTICS AS TRANSACTION ... for the session.
		if name == "session characteristics" {
			sessionCharacteristics(st, v.Args)
			return
		}
		st.SetLocal = strings.HasPrefix(name, "transaction")
		if st.SetLocal {
			st.BlockOnly = "SET TRANSACTION"
		}
		lower := strings.ToLower(a.text)
		if i := strings.LastIndex(lower, "transaction"); i >= 0 {
			st.SetValue = strings.TrimSpace(strings.TrimRight(a.text[i+len("transaction"):], " \t\r\n;"))
		}
		st.snapshotID = name == "transaction snapshot"
	}
}

// sessionCharacteristics reads SET SESSION CHARACTERISTICS AS TRANSACTION
// mode as the setting it sets (default_transaction_isolation, _read_only
// or _deferrable), which the proxy carries to every backend like any SET.
// Several modes in one statement would be several settings: refused.
func sessionCharacteristics(st *Statement, modes []*pg.Node) {
	refuse := func() {
		st.err = pgError(codeFeatureNotSupport,
			"SET SESSION CHARACTERISTICS with several transaction modes is not supported by shardproxy",
			"set one mode per statement, or SET default_transaction_isolation, default_transaction_read_only and default_transaction_deferrable")
	}
	if len(modes) != 1 || modes[0].GetDefElem() == nil {
		refuse()
		return
	}
	d := modes[0].GetDefElem()
	c := d.Arg.GetAConst()
	if c == nil {
		refuse()
		return
	}
	v, _ := constText(c)
	switch d.Defname {
	case "transaction_isolation":
		st.SetValue = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case "transaction_read_only", "transaction_deferrable":
		st.SetValue = "off"
		if v == "1" || v == "true" {
			st.SetValue = "on"
		}
	default:
		refuse()
		return
	}
	st.SetName = "default_" + d.Defname
}

// nodeLocation returns the "location" field of n's message, or -1.
func nodeLocation(n *pg.Node) int {
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return -1
	}
	inner := m.Get(fd).Message()
	if lf := inner.Descriptor().Fields().ByName("location"); lf != nil {
		return int(inner.Get(lf).Int())
	}
	return -1
}

func (a *analyzer) copy(c *pg.CopyStmt) {
	if c.Query != nil {
		a.st.copyQuery = !c.IsFrom
		a.a2(c.Query)
		return
	}
	// COPY FROM into a sharded table routes to every shard of its
	// strategy; the proxy splits the rows by key (proxy/copy.go).
	if i := a.addUse(c.Relation, c.IsFrom); i >= 0 && c.IsFrom {
		a.st.uses[i].fires = triggerInsert
	}
}

// a2 analyses a nested data statement (CTE body, COPY query, EXPLAIN).
func (a *analyzer) a2(n *pg.Node) {
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		a.selectStmt(x.SelectStmt, false)
	case *pg.Node_InsertStmt:
		a.insert(x.InsertStmt)
	case *pg.Node_UpdateStmt:
		a.update(x.UpdateStmt, false)
	case *pg.Node_DeleteStmt:
		a.delete(x.DeleteStmt, false)
	default:
		a.exprs(n, nil)
	}
}

// addUse records a table occurrence and returns its index, or -1 when
// the name is a CTE of this statement.
func (a *analyzer) addUse(rv *pg.RangeVar, write bool) int {
	if rv == nil {
		return -1
	}
	if rv.Schemaname == "" && a.ctes[rv.Relname] != nil {
		return -1
	}
	u := tableUse{schema: rv.Schemaname, rel: rv.Relname, name: rv.Relname, write: write}
	if rv.Schemaname != "" {
		u.name = rv.Schemaname + "." + rv.Relname
	}
	if rv.Alias != nil {
		u.alias = rv.Alias.Aliasname
	}
	var err *pgconn.PgError
	u.home, u.info, err = a.r.table(a.st.facts, rv.Schemaname, rv.Relname)
	if err != nil && a.st.err == nil {
		a.st.err = err
	}
	if u.info == nil && err == nil && a.readsRows() {
		if rv == a.seqRead {
			u.info = a.seqTable
		} else if owner := a.r.shardedSequence(a.st.facts, rv); owner != nil && a.st.err == nil {
			a.st.err = sequenceReadRefusal(u.name, owner)
		}
	}
	if table := a.st.facts.referenceView(rv.Relname); u.info == nil && table != "" && write && a.writesRows() {
		a.fail(fmt.Sprintf("%s through view %s, which reads reference table %s, would change the default shard's copy only", a.verb(), u.name, table),
			fmt.Sprintf("write %s itself: shardproxy writes every shard's copy", table))
	}
	if table := a.st.facts.shardedView(rv.Relname); u.info == nil && table != "" && a.readsRows() {
		// Not inlined (inlineViews): read on the default shard alone,
		// the view would give that shard's part of the answer.
		switch {
		case a.st.Kind != KindSelect || a.st.Explain:
			a.fail(fmt.Sprintf("%s through view %s, which reads sharded table %s, is not supported", a.verb(), u.name, table),
				fmt.Sprintf("use %s itself, or one shard's part with /* shard: name */", table))
		default:
			a.fail(fmt.Sprintf("view %s reads sharded table %s, and shardproxy cannot read it as its query here", u.name, table),
				fmt.Sprintf("a definition with * is read from the shards' catalogs within health_check_interval (or list its columns in CREATE VIEW); a materialized view, or a view outside public read without its schema, is not read across shards; query %s itself, or one shard's part with /* shard: name */", table))
		}
	}
	if u.sharded() {
		a.sharded++
		if a.st.noKey == "" {
			a.st.noKey = u.info.name + "." + u.info.key
		}
	}
	a.st.uses = append(a.st.uses, u)
	return len(a.st.uses) - 1
}

func stringItems(items []*pg.Node) []string {
	var out []string
	for _, it := range items {
		if s := it.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

func (a *analyzer) addName(names []string) {
	a.addUse(rangeVarOf(names), true) // (addUse ignores nil)
}

// dropNames records the tables of DROP TABLE/VIEW/... (their names are
// lists of strings, not RangeVars), and of DROP TRIGGER/RULE/POLICY ...
// ON table, which go where their table is.
func (a *analyzer) dropNames(d *pg.DropStmt) {
	onTable := false
	switch d.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE:
	case pg.ObjectType_OBJECT_SEQUENCE:
		a.ownedNames(true, d.Objects...) // where its owner is (sequences.go)
		return
	case pg.ObjectType_OBJECT_TRIGGER, pg.ObjectType_OBJECT_RULE, pg.ObjectType_OBJECT_POLICY:
		onTable = true
	default:
		return
	}
	for _, o := range d.Objects {
		if l := o.GetList(); l != nil {
			names := stringItems(l.Items)
			if onTable && len(names) > 0 {
				names = names[:len(names)-1] // [schema.]table.name
			}
			a.addName(names)
		}
	}
}

// view notes what CREATE VIEW v, just analysed (collectTables), does to
// the views the router refuses: v reads a sharded table when one of the
// other relations its query names is sharded or such a view.
func (a *analyzer) view(v *pg.ViewStmt) {
	if v.View == nil {
		return
	}
	refTable := ""
	for _, u := range a.st.uses {
		if u.schema == v.View.Schemaname && u.rel == v.View.Relname {
			continue // the view itself
		}
		table := ""
		switch {
		case u.sharded():
			table = u.info.name
		case u.info == nil:
			table = a.st.facts.shardedView(u.rel)
			refTable = cmp.Or(refTable, a.st.facts.referenceView(u.rel))
		default:
			refTable = cmp.Or(refTable, u.info.name)
		}
		if table != "" {
			def := a.viewDef(v)
			a.st.CatalogAfter = def == nil
			a.r.viewCreated(v.View.Relname, createdView{table: table, def: def})
			return
		}
	}
	if refTable != "" {
		a.r.viewCreated(v.View.Relname, createdView{refTable: refTable})
		return
	}
	if v.Replace {
		a.r.viewDropped(v.View.Relname)
	}
}

// viewDef is CREATE VIEW v's definition for inlineViews, or nil. A query
// with * is left to the shards' catalogs (their definitions list the
// columns * meant at creation; the table may gain columns later).
//
// The text analysed may have its literals lifted out as $n (simple Query
// normalisation): such a definition is not the view's, and none is kept
// (the original text is analysed next; see usableNormalised).
func (a *analyzer) viewDef(v *pg.ViewStmt) *viewDef {
	unusable := false
	walk(v.Query, func(n *pg.Node) bool {
		unusable = unusable || n.GetAStar() != nil || n.GetParamRef() != nil
		return !unusable
	})
	if unusable {
		return nil
	}
	sql, err := pg.Deparse(&pg.ParseResult{Version: a.version, Stmts: []*pg.RawStmt{{Stmt: v.Query}}})
	if err != nil {
		return nil
	}
	var cols []string
	for _, c := range v.Aliases {
		if s := c.GetString_(); s != nil {
			cols = append(cols, s.Sval)
		}
	}
	return &viewDef{schema: v.View.Schemaname, sql: sql, cols: cols}
}

// readsRows tells whether the statement reads or writes rows of the
// relations it names, as opposed to DDL on them.
// verb names the statement for messages about a view it goes through.
func (a *analyzer) verb() string {
	switch {
	case a.st.Explain:
		return "EXPLAIN"
	case a.st.cursor:
		return "DECLARE CURSOR"
	}
	return map[Kind]string{KindInsert: "INSERT", KindUpdate: "UPDATE", KindDelete: "DELETE", KindCopy: "COPY"}[a.st.Kind]
}

// writesRows: the statement writes rows (its write target is one).
func (a *analyzer) writesRows() bool {
	switch a.st.Kind {
	case KindInsert, KindUpdate, KindDelete, KindCopy:
		return true
	}
	return false
}

func (a *analyzer) readsRows() bool {
	switch a.st.Kind {
	case KindSelect, KindInsert, KindUpdate, KindDelete, KindCopy:
		return true
	}
	return a.st.cursor
}

// collectTables records every RangeVar below n (utility statements).
func (a *analyzer) collectTables(n *pg.Node) {
	walk(n, func(c *pg.Node) bool {
		if rv := c.GetRangeVar(); rv != nil {
			a.addUse(rv, true)
		}
		// A table a foreign key references, or that LIKE copies columns
		// from, does not decide where the DDL goes: the table it makes or
		// changes does (CREATE TABLE x (LIKE orders) made the unmapped x
		// on every shard, where only the default shard's copy is used).
		if con := c.GetConstraint(); con != nil && con.Pktable != nil {
			return false
		}
		return c.GetTableLikeClause() == nil
	})
}

// with registers CTE names and analyses their bodies.
func (a *analyzer) with(w *pg.WithClause) {
	if w == nil {
		return
	}
	for _, c := range w.Ctes {
		if cte := c.GetCommonTableExpr(); cte != nil {
			if a.ctes == nil {
				a.ctes = map[string]*pg.CommonTableExpr{}
			}
			// A CTE's body sees its own name only WITH RECURSIVE: in
			// `WITH orders AS (SELECT * FROM orders)` the inner name is
			// the table.
			if w.Recursive {
				a.ctes[cte.Ctename] = cte
				if a.recursive == nil {
					a.recursive = map[*pg.CommonTableExpr]bool{}
				}
				a.recursive[cte] = true
			}
			a.a2(cte.Ctequery)
			a.ctes[cte.Ctename] = cte
		}
	}
}

// level describes the constructs of one SELECT level that concatenating
// per-shard results cannot reproduce.
func (a *analyzer) selectStmt(s *pg.SelectStmt, top bool) {
	if s == nil {
		return
	}
	before := a.sharded
	levelFirst := len(a.st.uses)
	inKey := a.inKey // key IN (this subquery): the enclosing row's key use
	a.inKey = -1
	setArm := a.setArm // an arm of INTERSECT or EXCEPT: record its output keys
	a.setArm = false
	derivedSel := a.derivedSel // a subquery in FROM: likewise
	a.derivedSel = false
	innerKey := -1 // this level's key column that IN compares with inKey
	a.with(s.WithClause)
	construct := ""
	note := func(c string) {
		if construct == "" {
			construct = c
		}
	}
	if isSetOp(s) {
		l0 := a.sharded
		a.setArm = s.Op != pg.SetOperation_SETOP_UNION
		a.selectStmt(s.Larg, false)
		l1 := a.sharded
		a.setArm = s.Op != pg.SetOperation_SETOP_UNION
		a.selectStmt(s.Rarg, false)
		switch {
		case s.Op != pg.SetOperation_SETOP_UNION && a.colocatedArms(s):
			// Every row's count in either arm is known on its key's
			// shard, and different shards return different rows.
		case s.Op != pg.SetOperation_SETOP_UNION:
			note(strings.TrimPrefix(s.Op.String(), "SETOP_"))
		case !s.All:
			note("UNION")
		case l1 == l0 || a.sharded == l1:
			// Every shard would return the unsharded arm's rows.
			note("UNION ALL with an arm that reads no sharded table")
		}
	} else {
		for _, row := range s.ValuesLists {
			a.exprs(row, nil)
		}
		first := len(a.st.uses)
		sc := scope{from: s.FromClause}
		for _, f := range s.FromClause {
			a.fromItem(f, &sc)
		}
		a.pushScope(&sc, s.WhereClause, top)
		if setArm || derivedSel {
			keys := make([]int, len(s.TargetList))
			for i, t := range s.TargetList {
				keys[i] = a.nonNullKey(a.resolveKey(t.GetResTarget().GetVal()))
			}
			if a.outKeys == nil {
				a.outKeys = map[*pg.SelectStmt][]int{}
			}
			a.outKeys[s] = keys
			if derivedSel {
				a.recordStarKeys(s, &sc)
			}
		}
		if inKey >= 0 && len(s.TargetList) == 1 {
			// A NULL in the set (a key from an outer join's nullable side)
			// makes NOT IN NULL on the shards that have one only.
			innerKey = a.nonNullKey(a.resolveKey(s.TargetList[0].GetResTarget().GetVal()))
		}
		a.exprs(s.WhereClause, nil)
		for _, t := range s.TargetList {
			a.exprs(t, note)
		}
		a.exprs(s.HavingClause, note)
		for _, g := range s.GroupClause {
			a.exprs(g, nil)
		}
		for _, o := range s.SortClause {
			a.exprs(o, note)
		}
		if s == a.insertSel {
			a.insertSrc = a.insertSource(s, &sc)
		}
		a.popScope(first)
		if len(s.GroupClause) > 0 {
			note("GROUP BY")
		}
		if s.HavingClause != nil {
			note("HAVING")
		}
		if len(s.DistinctClause) > 0 {
			note("DISTINCT")
		}
	}
	if isSetOp(s) {
		for _, o := range s.SortClause {
			a.exprs(o, note)
		}
	}
	a.exprs(s.LimitCount, nil)
	a.exprs(s.LimitOffset, nil)
	if len(s.SortClause) > 0 {
		note("ORDER BY")
	}
	if s.LimitCount != nil {
		note("LIMIT")
	}
	if s.LimitOffset != nil {
		note("OFFSET")
	}
	if len(s.LockingClause) > 0 {
		note("FOR UPDATE")
	}
	if s == a.insertSel {
		// Its rows are inserted, not returned: insertSelectRefusal
		// decides which of its constructs stay exact per shard.
		construct = ""
	}
	if !top && a.st.outerAgg == "" && !isSetOp(s) {
		var maybe []maybeOuterAgg
		a.st.outerAgg, maybe = a.st.outerAggregate(s, a.ctes)
		a.st.maybeOuterAggs = append(a.st.maybeOuterAggs, maybe...)
	}
	if inKey >= 0 && innerKey >= 0 {
		// key IN (SELECT key FROM ...) of one strategy: whether a row's
		// key is in the set depends only on the rows with that key, which
		// live on the row's shard. A plain DISTINCT changes no set; a
		// LIMIT, aggregate or the like needs every shard's rows (and
		// would otherwise pass as correlated on the key below).
		plain, _ := distinctKind(s)
		if construct == "DISTINCT" && plain && len(s.SortClause) == 0 && s.LimitCount == nil && s.LimitOffset == nil {
			construct = ""
		}
		if construct == "" {
			a.union(inKey, innerKey)
		}
	}
	if construct != "" && !top && a.correlatedOnKey(levelFirst) {
		// A subquery that reads only rows with the enclosing row's shard
		// key runs whole on that row's shard: its aggregate, LIMIT or
		// DISTINCT sees every row it would see on one server.
		construct = ""
	}
	if construct != "" && a.st.inexact == "" && (top || a.sharded > before) {
		a.st.inexact = construct
	}
	if construct != "" && !top && a.sharded > before && a.st.nestedInexact == "" {
		a.st.nestedInexact, a.st.nestedIn = construct, "a subquery"
		if view := a.viewOf[s]; view != "" {
			a.st.nestedIn = "view " + view
		}
	}
}

// cteItem records a FROM item that names a CTE of the statement as the
// subquery it stands for. The CTE's body was analysed where it is defined,
// outside this level; its tables meet this level's rows here, so they must
// be joined to them by equal shard keys like a subquery's (popScope).
// Without this, WITH s AS (SELECT ... FROM customers WHERE customer_id =
// 150) SELECT ... FROM customers c, s WHERE c.customer_id = 7 ran on both
// customers' shards, each finding one of them, and returned nothing.
// Recursive CTEs are left as they were (a body naming itself).
func (a *analyzer) cteItem(rv *pg.RangeVar, sc *scope) []int {
	cte := a.ctes[rv.Relname]
	if rv.Schemaname != "" || cte == nil || a.recursive[cte] || a.inlining[cte] {
		return nil
	}
	if cte.Ctequery.GetSelectStmt() == nil {
		return nil // INSERT/UPDATE/DELETE ... RETURNING: judged where defined
	}
	alias := &pg.Alias{Aliasname: rv.Relname, Colnames: cte.Aliascolnames}
	if rv.Alias != nil {
		alias = &pg.Alias{Aliasname: rv.Alias.Aliasname, Colnames: rv.Alias.Colnames}
		if len(alias.Colnames) == 0 {
			alias.Colnames = cte.Aliascolnames
		}
	}
	// Inside its body, its own name is the table it may shadow
	// (WITH orders AS (SELECT * FROM orders)), as are the names of the
	// CTEs defined after it.
	saved := a.ctes
	a.ctes = map[string]*pg.CommonTableExpr{}
	for name, c := range saved {
		if c.Location < cte.Location {
			a.ctes[name] = c
		}
	}
	if a.inlining == nil {
		a.inlining = map[*pg.CommonTableExpr]bool{}
	}
	a.inlining[cte] = true
	uses := a.fromItem(&pg.Node{Node: &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{
		Subquery: cte.Ctequery, Alias: alias}}}, sc)
	delete(a.inlining, cte)
	a.ctes = saved
	return uses
}

// fromItem records one FROM item; it returns the uses below it.
func (a *analyzer) fromItem(n *pg.Node, sc *scope) []int {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		if i := a.addUse(x.RangeVar, false); i >= 0 {
			sc.uses = append(sc.uses, i)
			return []int{i}
		}
		return a.cteItem(x.RangeVar, sc)
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		d0 := len(sc.derived)
		l := a.fromItem(j.Larg, sc)
		d1 := len(sc.derived)
		r := a.fromItem(j.Rarg, sc)
		keyed := func(uses []int, derived []derivedKey, col string) (out []int) {
			for _, i := range uses {
				if a.isKeyName(i, col) {
					out = append(out, i)
				}
			}
			for _, d := range derived {
				if d.col == col {
					out = append(out, d.use)
				}
			}
			return out
		}
		for _, c := range stringItems(j.UsingClause) {
			for _, li := range keyed(l, sc.derived[d0:d1], c) {
				for _, ri := range keyed(r, sc.derived[d1:], c) {
					a.union(li, ri)
				}
			}
		}
		if j.Quals != nil {
			var targets []int
			switch j.Jointype {
			case pg.JoinType_JOIN_INNER:
				targets = append(append(targets, l...), r...)
			case pg.JoinType_JOIN_LEFT:
				targets = r
			case pg.JoinType_JOIN_RIGHT:
				targets = l
			}
			sc.quals = append(sc.quals, qual{expr: j.Quals, targets: targets})
			a.exprs(j.Quals, nil)
		}
		return append(l, r...)
	case *pg.Node_RangeSubselect:
		if sel := x.RangeSubselect.Subquery.GetSelectStmt(); sel != nil {
			a.derivedSel = true
			a.selectStmt(sel, false)
			a.derivedSel = false
			a.derivedKeys(x.RangeSubselect, sel, sc)
		}
	case *pg.Node_RangeTableSample:
		// t TABLESAMPLE method (args) [REPEATABLE (seed)]: the table is a
		// FROM item like any other (each shard samples its own rows, and
		// the union of per-shard samples at p% is a p% sample of all).
		ts := x.RangeTableSample
		for _, e := range ts.Args {
			a.exprs(e, nil)
		}
		a.exprs(ts.Repeatable, nil)
		return a.fromItem(ts.Relation, sc)
	default:
		a.exprs(n, nil)
	}
	return nil
}

// exprs walks an expression: nested SELECTs are analysed as levels of
// their own, and when note is set, aggregates and window functions of
// this level are reported to it.
func (a *analyzer) exprs(n *pg.Node, note func(string)) {
	if n == nil {
		return
	}
	walk(n, func(c *pg.Node) bool {
		switch x := c.Node.(type) {
		case *pg.Node_SelectStmt:
			a.selectStmt(x.SelectStmt, false)
			return false
		case *pg.Node_SubLink:
			sl := x.SubLink
			if sl.SubLinkType != pg.SubLinkType_ANY_SUBLINK || sl.Subselect.GetSelectStmt() == nil {
				return true
			}
			if op := stringItems(sl.OperName); len(op) > 1 || len(op) == 1 && op[0] != "=" {
				return true
			}
			a.exprs(sl.Testexpr, note)
			a.inKey = a.nonNullKey(a.resolveKey(sl.Testexpr))
			a.selectStmt(sl.Subselect.GetSelectStmt(), false)
			a.inKey = -1
			return false
		case *pg.Node_FuncCall:
			if note != nil {
				if what := a.st.aggregateOrWindow(x.FuncCall); what != "" {
					note(what)
				}
			}
		case *pg.Node_RangeVar:
			a.addUse(x.RangeVar, false)
		}
		return true
	})
}

func (a *analyzer) insert(ins *pg.InsertStmt) {
	a.with(ins.WithClause)
	i := a.addUse(ins.Relation, true)
	if i >= 0 {
		a.st.uses[i].fires = triggerInsert
		if ins.OnConflictClause != nil {
			a.st.uses[i].fires |= triggerUpdate
		}
	}
	sel := ins.SelectStmt.GetSelectStmt()
	keyPos := -1
	if i >= 0 && a.st.uses[i].sharded() {
		for p, c := range ins.Cols {
			if rt := c.GetResTarget(); rt != nil && rt.Name == a.st.uses[i].info.key && len(rt.Indirection) == 0 {
				keyPos = p
			}
		}
	}
	if sel != nil && len(sel.ValuesLists) > 0 && !isSetOp(sel) && len(sel.FromClause) == 0 {
		for _, row := range sel.ValuesLists {
			a.exprs(row, nil)
		}
	} else {
		outer := a.insertSel
		a.insertSel, a.insertKeyPos, a.insertSrc = nil, keyPos, -1
		if keyPos >= 0 {
			a.insertSel = sel
		}
		a.selectStmt(sel, false)
		a.insertSel = outer
	}
	if ins.OnConflictClause != nil {
		if i >= 0 && a.st.uses[i].sharded() {
			a.conflictSetsKey(i, ins.OnConflictClause.TargetList)
		}
		for _, t := range ins.OnConflictClause.TargetList {
			a.exprs(t, nil)
		}
		a.exprs(ins.OnConflictClause.WhereClause, nil)
	}
	for _, t := range ins.ReturningList {
		a.exprs(t, nil)
	}
	if i < 0 || !a.st.uses[i].sharded() {
		return
	}
	u := &a.st.uses[i]
	isValues := sel != nil && len(sel.ValuesLists) > 0 && len(sel.FromClause) == 0
	switch {
	case sel == nil: // DEFAULT VALUES
		a.fail(fmt.Sprintf("INSERT ... DEFAULT VALUES into sharded table %s cannot be routed", u.name),
			fmt.Sprintf("the shard key %s needs a value: INSERT INTO %s (%s, ...) VALUES (...)", u.info.key, u.name, u.info.key))
		return
	case len(ins.Cols) > 0 && keyPos < 0:
		if a.st.err == nil {
			a.st.err = errNoKeyColumn(u, fmt.Sprintf("include %s in the column list and the values", u.info.key))
		}
		return
	case !isValues:
		a.insertSelect(ins, sel, u, keyPos)
		return
	}
	if len(ins.Cols) == 0 {
		u.insert, u.keyed = true, true
		u.rows = make([][]valueRef, len(sel.ValuesLists))
		for r, row := range sel.ValuesLists {
			items := row.GetList().GetItems()
			refs := make([]valueRef, len(items))
			for p, it := range items {
				v, ok := value(it)
				v.expr = !ok // fine unless it is the key (Route checks)
				refs[p] = v
			}
			u.rows[r] = refs
		}
		return
	}
	u.insert, u.keyed = true, true
	for _, row := range sel.ValuesLists {
		items := row.GetList().GetItems()
		var v valueRef
		ok := keyPos < len(items)
		if ok {
			v, ok = value(items[keyPos])
		}
		if !ok {
			if a.st.err == nil {
				a.st.err = errKeyNotValue(u)
			}
			return
		}
		u.vals = append(u.vals, v)
	}
}

// insertSelect checks INSERT INTO t (..., key, ...) SELECT ... into
// sharded table u. It runs on every shard of its source, each shard
// inserting the rows it reads (as Citus does for colocated INSERT ...
// SELECT), which is exact only when every row is inserted on the shard it
// is read from: the SELECT must put, at the key's position, the shard key
// column of one of its own tables sharded by u's strategy, and nothing in
// that level may depend on rows of other shards (LIMIT, window functions,
// set operations...). Subqueries are judged as in any statement.
func (a *analyzer) insertSelect(ins *pg.InsertStmt, sel *pg.SelectStmt, u *tableUse, keyPos int) {
	hint := fmt.Sprintf("select the shard key of a table sharded like %s (strategy %s) as its %s, or use INSERT ... VALUES",
		u.name, u.info.strat.Name(), u.info.key)
	if len(ins.Cols) == 0 {
		a.fail(fmt.Sprintf("INSERT ... SELECT into sharded table %s needs a column list", u.name),
			fmt.Sprintf("name the columns, %s among them, in INSERT INTO %s (...) SELECT ...", u.info.key, u.name))
		return
	}
	if isSetOp(sel) {
		a.fail(fmt.Sprintf("INSERT ... SELECT into sharded table %s with %s", u.name, strings.TrimPrefix(sel.Op.String(), "SETOP_")),
			"insert the rows of each arm with a statement of its own")
		return
	}
	for _, g := range sel.GroupClause {
		if g.GetGroupingSet() != nil {
			// Their total rows put NULL in the key column.
			a.fail(fmt.Sprintf("INSERT ... SELECT into sharded table %s with GROUPING SETS, ROLLUP or CUBE", u.name), hint)
			return
		}
	}
	if keyPos < len(sel.TargetList) {
		if v, ok := value(sel.TargetList[keyPos].GetResTarget().GetVal()); ok {
			// A constant or parameter key, as in INSERT ... SELECT $1, $2
			// WHERE NOT EXISTS (...): its rows go to the key's shard,
			// which must be the only shard the statement reads, or every
			// shard would insert them.
			a.st.insertSelect = true
			a.st.insertSpan = pgError(codeFeatureNotSupport,
				fmt.Sprintf("INSERT ... SELECT into sharded table %s with a constant shard key reads other shards", u.name),
				fmt.Sprintf("every shard it reads would insert the rows; read only %s's shard (a condition on the shard key), or use INSERT ... VALUES", u.info.key))
			u.insert, u.keyed, u.vals = true, true, []valueRef{v}
			return
		}
	}
	if a.insertSrc < 0 {
		a.fail(fmt.Sprintf("INSERT ... SELECT into sharded table %s must take %s from the shard key of a table sharded the same way", u.name, u.info.key), hint)
		return
	}
	src := &a.st.uses[a.insertSrc]
	if src.info.strat.Name() != u.info.strat.Name() {
		a.fail(fmt.Sprintf("INSERT ... SELECT into sharded table %s reads its shard key from %s, which is sharded by another strategy (%s, not %s)",
			u.name, src.name, src.info.strat.Name(), u.info.strat.Name()), hint)
		return
	}
	// The target's rows are where the source's are.
	a.st.insertSelect = true
	if why := insertSelectRefusal(sel); why != "" {
		// Exact on one shard; Route refuses it across shards.
		a.st.insertSpan = pgError(codeFeatureNotSupport,
			fmt.Sprintf("INSERT ... SELECT into sharded table %s with %s across shards", u.name, why),
			"each shard would apply it to its own rows only; "+keyHint(a.st))
	}
	u.keyed, u.vals = src.keyed, append([]valueRef(nil), src.vals...)
}

// insertSource returns the table occurrence of SELECT level s (scope sc)
// whose shard key is, unchanged, the select-list item at insertKeyPos, or
// -1. A cast could change the value (text to varchar(3)), so none is
// allowed.
func (a *analyzer) insertSource(s *pg.SelectStmt, sc *scope) int {
	if a.insertKeyPos >= len(s.TargetList) {
		return -1
	}
	rt := s.TargetList[a.insertKeyPos].GetResTarget()
	if rt == nil || rt.Val.GetColumnRef() == nil {
		return -1
	}
	i := a.resolveKey(rt.Val)
	if i < 0 || !slices.Contains(sc.uses, i) || !a.st.uses[i].sharded() {
		return -1
	}
	// On the nullable side of an outer join the key may be NULL, a row
	// no shard owns (INSERT ... VALUES refuses it with 23502).
	for _, f := range s.FromClause {
		if nullableSide(f, a.st.uses[i].refName(), false) {
			return -1
		}
	}
	return i
}

// outerAggregate returns the name of an aggregate written in query level
// s (not in its subqueries) whose arguments refer only to enclosing
// levels' tables, or "". Postgres computes such an aggregate over the
// enclosing query's rows (an aggregate belongs to the level of its
// innermost argument column: SELECT (SELECT max(o.total)) FROM orders o
// returns one row), so that query aggregates although its own select list
// shows no aggregate. An unqualified column belongs to this level when one
// of its FROM items has it: the columns of subqueries, CTEs and functions
// are read from their text (fromItems), a table's only the catalog knows.
// An aggregate whose columns may all be outer is returned among the
// maybes, for Route to look the tables' columns up.
func (st *Statement) outerAggregate(s *pg.SelectStmt, ctes map[string]*pg.CommonTableExpr) (string, []maybeOuterAgg) {
	from := newFromItems(s.FromClause, ctes)
	found := ""
	var maybe []maybeOuterAgg
	check := func(f *pg.FuncCall) {
		var refs int
		var inner bool
		var unqualified []string
		parts := append(append([]*pg.Node{f.AggFilter}, f.Args...), f.AggOrder...)
		for _, part := range parts {
			walk(part, func(x *pg.Node) bool {
				if x.GetSelectStmt() != nil {
					return false
				}
				cr := x.GetColumnRef()
				if cr == nil {
					return true
				}
				refs++
				switch {
				case len(cr.Fields) >= 2:
					inner = inner || from.names[cr.Fields[len(cr.Fields)-2].GetString_().GetSval()]
				case len(s.FromClause) > 0:
					col := cr.Fields[0].GetString_()
					switch {
					case col == nil: // *
						inner = true
					case from.cols[col.Sval]:
						inner = true
					case len(from.rels) > 0 || from.unknown:
						unqualified = append(unqualified, col.Sval)
					}
				}
				return true
			})
		}
		switch {
		case refs == 0 || inner:
		case len(unqualified) == 0:
			if found == "" {
				found = funcName(f)
			}
		default:
			maybe = append(maybe, maybeOuterAgg{agg: funcName(f), cols: unqualified, rels: from.rels, unknown: from.unknown})
		}
	}
	level := append(append(append([]*pg.Node{s.WhereClause, s.HavingClause}, s.TargetList...), s.SortClause...), s.GroupClause...)
	level = append(level, s.FromClause...) // join conditions
	for _, n := range level {
		walk(n, func(c *pg.Node) bool {
			if c.GetSelectStmt() != nil {
				return false // another level
			}
			if f := c.GetFuncCall(); f != nil && st.isAggregate(f) {
				check(f)
				return false // an aggregate's arguments hold no aggregate
			}
			return true
		})
	}
	return found, maybe
}

// maybeOuterAgg is an aggregate in a subquery whose arguments refer to
// enclosing levels or to unqualified columns cols: it aggregates the
// outer query when none of rels (the subquery's FROM tables) has them.
// unknown: a FROM item's columns could not be told from the text either,
// so a column no table has is refused rather than guessed.
type maybeOuterAgg struct {
	agg     string
	cols    []string
	rels    []tableName
	unknown bool
}

// tableName is a table whose columns the catalog gives; its first renamed
// columns are known under other names (FROM orders o(a, b)).
type tableName struct {
	schema, rel string
	renamed     int
}

// fromItems is what a query level's FROM clause tells about the columns
// it can name: the names that qualify them, the columns of its items that
// are not tables (read from their text), its tables, whose columns only
// the catalog knows, and whether some item's columns are unknown (a star
// over one, or a function that may return a row).
type fromItems struct {
	names   map[string]bool
	cols    map[string]bool
	rels    []tableName
	unknown bool
	depth   int // of nested subqueries and CTEs followed to get here
}

func newFromItems(from []*pg.Node, ctes map[string]*pg.CommonTableExpr) *fromItems {
	return newFromItemsDepth(from, ctes, 0)
}

// maxColumnsDepth bounds how deep subqueries and CTEs are followed to name
// columns (a CTE whose star reads itself would otherwise never end).
const maxColumnsDepth = 8

func newFromItemsDepth(from []*pg.Node, ctes map[string]*pg.CommonTableExpr, depth int) *fromItems {
	fi := &fromItems{names: map[string]bool{}, cols: map[string]bool{}, depth: depth}
	for _, n := range from {
		fi.add(n, ctes)
	}
	return fi
}

func (fi *fromItems) add(n *pg.Node, ctes map[string]*pg.CommonTableExpr) {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		fi.names[refNameOf(rv)] = true
		var renamed []string
		if rv.Alias != nil {
			renamed = stringItems(rv.Alias.Colnames)
		}
		if cte := ctes[rv.Relname]; rv.Schemaname == "" && cte != nil {
			fi.addColumns(cteColumns(cte, ctes, fi.depth+1), renamed)
			return
		}
		fi.addColumns(nil, renamed)
		fi.rels = append(fi.rels, tableName{rv.Schemaname, rv.Relname, len(renamed)})
	case *pg.Node_RangeTableSample:
		fi.add(x.RangeTableSample.Relation, ctes)
	case *pg.Node_RangeSubselect:
		var renamed []string
		if a := x.RangeSubselect.Alias; a != nil {
			fi.names[a.Aliasname] = true
			renamed = stringItems(a.Colnames)
		}
		fi.addColumns(selectColumns(x.RangeSubselect.Subquery.GetSelectStmt(), ctes, fi.depth+1), renamed)
	case *pg.Node_RangeFunction:
		rf := x.RangeFunction
		var alias string
		var renamed []string
		if rf.Alias != nil {
			alias, renamed = rf.Alias.Aliasname, stringItems(rf.Alias.Colnames)
			fi.names[alias] = true
		}
		for _, fl := range rf.Functions {
			for _, it := range fl.GetList().GetItems() {
				if f := it.GetFuncCall(); f != nil {
					fi.names[funcName(f)] = true
				}
			}
		}
		fi.addColumns(functionColumns(rf, alias), renamed)
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		if j.Alias != nil {
			fi.names[j.Alias.Aliasname] = true
			if len(j.Alias.Colnames) > 0 {
				fi.unknown = true // renames the join's columns in an order not worth following
			}
		}
		fi.add(j.Larg, ctes)
		fi.add(j.Rarg, ctes)
	default:
		fi.unknown = true
	}
}

// addColumns records the columns of a FROM item that is not a table (cols
// from its text, nil when unknown), whose first columns an alias may
// rename. A table passes nil cols: its renamed columns are added here, the
// rest come from the catalog.
func (fi *fromItems) addColumns(cols *itemColumns, renamed []string) {
	for _, c := range renamed {
		fi.cols[c] = true
	}
	if cols == nil {
		return
	}
	for i, c := range cols.names {
		if i >= len(renamed) && c != "" {
			fi.cols[c] = true
		}
	}
	for _, t := range cols.rels {
		if len(renamed) > 0 {
			fi.unknown = true // which of the star's columns were renamed is the catalog's
		}
		fi.rels = append(fi.rels, t)
	}
	fi.unknown = fi.unknown || cols.unknown
}

// itemColumns are the columns a subquery, CTE or function gives its FROM
// clause, as far as its text tells: names in order ("" for a column no
// unqualified reference can name, such as ?column?), the tables a star
// expands to, and unknown when some are neither.
type itemColumns struct {
	names   []string
	rels    []tableName
	unknown bool
}

var unknownColumns = &itemColumns{unknown: true}

// selectColumns returns the output columns of s as Postgres names them
// (FigureColname), for the cases that matter to column resolution.
func selectColumns(s *pg.SelectStmt, ctes map[string]*pg.CommonTableExpr, depth int) *itemColumns {
	if s != nil && s.WithClause != nil {
		ctes = maps.Clone(ctes)
		if ctes == nil {
			ctes = map[string]*pg.CommonTableExpr{}
		}
		for _, c := range s.WithClause.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				ctes[cte.Ctename] = cte
			}
		}
	}
	switch {
	case s == nil || depth > maxColumnsDepth:
		return unknownColumns
	case isSetOp(s):
		return selectColumns(s.Larg, ctes, depth+1) // a set operation's columns are named by its first arm
	case len(s.ValuesLists) > 0:
		cols := &itemColumns{}
		for i := range s.ValuesLists[0].GetList().GetItems() {
			cols.names = append(cols.names, fmt.Sprintf("column%d", i+1))
		}
		return cols
	}
	cols := &itemColumns{}
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return unknownColumns
		}
		if rt.Name != "" {
			cols.names = append(cols.names, rt.Name)
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
			if len(cr.Fields) > 1 {
				return unknownColumns // t.*: one item's columns
			}
			star := newFromItemsDepth(s.FromClause, ctes, depth)
			for c := range star.cols {
				cols.names = append(cols.names, c) // order does not matter without a rename
			}
			cols.rels = append(cols.rels, star.rels...)
			cols.unknown = cols.unknown || star.unknown || len(s.FromClause) == 0
			continue
		}
		cols.names = append(cols.names, figureColname(rt.Val))
	}
	return cols
}

// figureColname names an unnamed select-list expression as Postgres does,
// for the expressions a reference can name; "" for ?column?.
func figureColname(n *pg.Node) string {
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		return x.ColumnRef.Fields[len(x.ColumnRef.Fields)-1].GetString_().GetSval()
	case *pg.Node_FuncCall:
		return funcName(x.FuncCall)
	case *pg.Node_TypeCast:
		if name := figureColname(x.TypeCast.Arg); name != "" {
			return name
		}
		if names := stringItems(x.TypeCast.TypeName.GetNames()); len(names) > 0 {
			return names[len(names)-1] // '1'::integer names its column int4, as here
		}
	case *pg.Node_CoalesceExpr:
		return "coalesce"
	case *pg.Node_CaseExpr:
		return "case"
	case *pg.Node_AArrayExpr:
		return "array"
	case *pg.Node_RowExpr:
		return "row"
	case *pg.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_LEAST {
			return "least"
		}
		return "greatest"
	}
	return ""
}

// cteColumns returns a CTE's columns: its column list, or its query's.
func cteColumns(cte *pg.CommonTableExpr, ctes map[string]*pg.CommonTableExpr, depth int) *itemColumns {
	s := cte.Ctequery.GetSelectStmt()
	if s == nil {
		return unknownColumns // INSERT/UPDATE/DELETE ... RETURNING
	}
	cols := selectColumns(s, ctes, depth)
	if alias := stringItems(cte.Aliascolnames); len(alias) > 0 {
		renamed := *cols
		renamed.names = append(append([]string(nil), alias...), cols.names[min(len(alias), len(cols.names)):]...)
		if len(cols.rels) > 0 {
			renamed.unknown = true
		}
		return &renamed
	}
	return cols
}

// scalarSetFunctions return one column of a base type, named after the
// function or its alias; other functions in FROM may return a row type
// whose columns only the catalog knows.
var scalarSetFunctions = map[string]bool{
	"generate_series": true, "generate_subscripts": true, "unnest": true,
	"regexp_split_to_table": true, "string_to_table": true, "jsonb_array_elements_text": true,
	"json_array_elements_text": true, "jsonb_object_keys": true, "json_object_keys": true,
}

// functionColumns returns the columns of a function in FROM.
func functionColumns(rf *pg.RangeFunction, alias string) *itemColumns {
	cols := &itemColumns{}
	if len(rf.Coldeflist) > 0 {
		for _, c := range rf.Coldeflist {
			cols.names = append(cols.names, c.GetColumnDef().GetColname())
		}
	} else {
		var fns []*pg.FuncCall
		for _, fl := range rf.Functions {
			items := fl.GetList().GetItems()
			if len(items) == 0 || items[0].GetFuncCall() == nil || len(items) > 1 && len(items[1].GetList().GetItems()) > 0 {
				return unknownColumns
			}
			fns = append(fns, items[0].GetFuncCall())
		}
		for _, f := range fns {
			if !scalarSetFunctions[funcName(f)] || funcName(f) == "unnest" && len(f.Args) != 1 {
				return unknownColumns
			}
			name := funcName(f)
			if alias != "" && len(fns) == 1 {
				name = alias
			}
			cols.names = append(cols.names, name)
		}
	}
	if rf.Ordinality {
		cols.names = append(cols.names, "ordinality")
	}
	return cols
}

// correlatedOnKey tells whether the query level whose table occurrences
// start at first (nested levels included) reads sharded tables only
// through occurrences joined by equal shard keys (pushScope's unions) to
// a sharded table of an enclosing level, as in
//
//	WHERE total > (SELECT avg(total) FROM orders i WHERE i.customer_id = o.customer_id)
//
// Every row it reads then has the enclosing row's key and lives on that
// row's shard. Called after the level's popScope, so a.scopes holds the
// enclosing levels only.
func (a *analyzer) correlatedOnKey(first int) bool {
	found := false
	for i := first; i < len(a.st.uses); i++ {
		if !a.st.uses[i].sharded() {
			continue
		}
		outer := false
		for _, sc := range a.scopes {
			for _, j := range sc.uses {
				if j < first && a.st.uses[j].sharded() && a.find(j) == a.find(i) {
					outer = true
				}
			}
		}
		if !outer {
			return false
		}
		found = true
	}
	return found
}

// nullableSide reports whether the FROM item n holds the table referred to
// as name on the nullable side of an outer join (nullable: n itself is).
func nullableSide(n *pg.Node, name string, nullable bool) bool {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		return nullable && refNameOf(x.RangeVar) == name
	case *pg.Node_RangeSubselect:
		return nullable && x.RangeSubselect.Alias != nil && x.RangeSubselect.Alias.Aliasname == name
	case *pg.Node_RangeTableSample:
		return nullableSide(x.RangeTableSample.Relation, name, nullable)
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		t := j.Jointype
		return nullableSide(j.Larg, name, nullable || t == pg.JoinType_JOIN_RIGHT || t == pg.JoinType_JOIN_FULL) ||
			nullableSide(j.Rarg, name, nullable || t == pg.JoinType_JOIN_LEFT || t == pg.JoinType_JOIN_FULL)
	}
	return false
}

// insertSelectRefusal names what in an INSERT's SELECT level (not a set
// operation) would differ when each shard runs it over its own rows only,
// or returns "". GROUP BY, aggregates, HAVING and DISTINCT are exact: the
// key is a plain column of the select list, so every group and every
// distinct row has one key value, whose rows are all on one shard.
func insertSelectRefusal(sel *pg.SelectStmt) string {
	switch {
	case sel.LimitCount != nil || sel.LimitOffset != nil:
		return "LIMIT or OFFSET"
	case len(sel.DistinctClause) > 0 && sel.DistinctClause[0].GetNode() != nil:
		return "DISTINCT ON"
	case len(sel.WindowClause) > 0:
		return "a WINDOW clause"
	}
	window := ""
	for _, list := range [][]*pg.Node{sel.TargetList, sel.SortClause, {sel.HavingClause}} {
		for _, n := range list {
			if n == nil {
				continue
			}
			walk(n, func(c *pg.Node) bool {
				if c.GetSelectStmt() != nil {
					return false // another level
				}
				if f := c.GetFuncCall(); f != nil && f.Over != nil && window == "" {
					window = "window function " + funcName(f) + "()"
				}
				return true
			})
		}
	}
	return window
}

// errNoKeyColumn refuses an INSERT whose rows give no value for u's key.
func errNoKeyColumn(u *tableUse, hint string) *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("INSERT into sharded table %s does not set shard key column %s", u.name, u.info.key), hint)
}

// isSetOp tells whether s is UNION, INTERSECT or EXCEPT of its arms.
func isSetOp(s *pg.SelectStmt) bool {
	return s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED
}

func errKeyNotValue(u *tableUse) *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("shard key %s.%s in INSERT must be a constant or a parameter", u.name, u.info.key),
		"compute the key in the application and send it as a value")
}

func (a *analyzer) fail(msg, hint string) {
	if a.st.err == nil {
		a.st.err = pgError(codeFeatureNotSupport, msg, hint)
	}
}

// merge judges MERGE m, whose tables collectTables recorded. It was
// routed as maintenance of its tables: to every shard, where
// WHEN NOT MATCHED THEN INSERT put the row on each. MERGE inserts,
// updates and deletes its target by a join with its source, which the
// router does not split by key:
//   - into a sharded table it is refused (INSERT ... ON CONFLICT, or
//     UPDATE and DELETE, route by key);
//   - into a reference table it runs on every copy, and may read
//     reference tables only (each copy must see the same source);
//   - into an unmapped table it runs on the default shard, and may not
//     read sharded tables (it would see that shard's part of them).
func (a *analyzer) merge(m *pg.MergeStmt) {
	if m.Relation == nil {
		return
	}
	home, target, _ := a.r.table(a.st.facts, m.Relation.Schemaname, m.Relation.Relname)
	fires := 0 // the trigger events its actions fire
	for _, w := range m.MergeWhenClauses {
		switch w.GetMergeWhenClause().GetCommandType() {
		case pg.CmdType_CMD_INSERT:
			fires |= triggerInsert
		case pg.CmdType_CMD_UPDATE:
			fires |= triggerUpdate
		case pg.CmdType_CMD_DELETE:
			fires |= triggerDelete
		}
	}
	targetSeen := false
	for j := range a.st.uses {
		u := &a.st.uses[j]
		if !targetSeen && u.home == home && u.rel == m.Relation.Relname {
			u.fires, targetSeen = fires, true
			continue
		}
		u.write = false // a source
		switch {
		case target != nil && !target.ref:
		case u.sharded() || a.st.facts.shardedView(u.rel) != "":
			a.fail(fmt.Sprintf("MERGE into %s reads sharded table %s, whose rows are spread over the shards", m.Relation.Relname, cmp.Or(a.st.facts.shardedView(u.rel), u.name)),
				"MERGE from reference or unmapped tables only, or write the rows with INSERT ... ON CONFLICT")
		case target != nil && (u.info == nil || !u.info.ref):
			a.fail(fmt.Sprintf("MERGE into reference table %s reads table %s, which is not on every shard", target.name, u.name),
				"MERGE into a reference table from reference tables only")
		}
	}
	switch {
	case target != nil && !target.ref:
		a.fail(fmt.Sprintf("MERGE into sharded table %s is not supported", target.name),
			fmt.Sprintf("use INSERT ... ON CONFLICT, or UPDATE and DELETE by key; or run it on one key's shard with /* shard_key: %s = value */", target.name))
	case target == nil:
		a.st.onDefault = true
	}
}

// readsCopiesOnly tells whether statement n is a plain SELECT of
// reference tables alone, which every shard's copy answers alike: no
// row lock (it must take the default shard's copy), and no function but
// built-in aggregates (a function may write, or read an unmapped table,
// which lives on the default shard).
func readsCopiesOnly(st *Statement, n *pg.Node) bool {
	if st.Kind != KindSelect || st.Explain || st.cursor || len(st.uses) == 0 {
		return false
	}
	for _, u := range st.uses {
		if u.info == nil || !u.info.ref {
			return false
		}
	}
	plain := true
	walk(n, func(c *pg.Node) bool {
		if sel := c.GetSelectStmt(); sel != nil && (len(sel.LockingClause) > 0 || sel.IntoClause != nil) {
			plain = false
		}
		if f := c.GetFuncCall(); f != nil && (!builtinAggregates[funcName(f)] || len(stringItems(f.Funcname)) > 1) {
			plain = false
		}
		return plain
	})
	return plain
}

// noTxBlock tells whether DDL statement n cannot run in a transaction
// block (Statement.NoTxBlock).
func noTxBlock(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_IndexStmt:
		return x.IndexStmt.Concurrent
	case *pg.Node_DropStmt:
		return x.DropStmt.Concurrent
	case *pg.Node_AlterTableStmt:
		for _, cmd := range x.AlterTableStmt.Cmds {
			if cmd.GetAlterTableCmd().GetDef().GetPartitionCmd().GetConcurrent() {
				return true
			}
		}
	}
	return false
}

// conflictSetsKey reads ON CONFLICT DO UPDATE SET of use i, a sharded
// table: setting its key would move the row to another shard's key while
// it stays on this one. EXCLUDED.key is the key being inserted, the
// row's own (ORMs write every column); a value is checked by Route, as
// UPDATE's; anything else is refused.
func (a *analyzer) conflictSetsKey(i int, targets []*pg.Node) {
	key := a.st.uses[i].info.key
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 {
			continue
		}
		if rt.Name != key {
			continue
		}
		if f := rt.Val.GetColumnRef().GetFields(); len(f) == 2 && f[0].GetString_().GetSval() == "excluded" && f[1].GetString_().GetSval() == key {
			continue
		}
		v, ok := value(rt.Val) // (a, key) = (...) is a MultiAssignRef: not a value
		if !ok {
			a.fail(fmt.Sprintf("ON CONFLICT DO UPDATE setting the shard key column %s is not supported", key),
				"leave the key as inserted (SET "+key+" = EXCLUDED."+key+"), or delete the row and insert it again with the new key")
			continue
		}
		if a.st.setKey == nil {
			a.st.setKey = map[int]valueRef{}
		}
		a.st.setKey[i] = v
	}
}

func (a *analyzer) update(up *pg.UpdateStmt, top bool) {
	if c := up.WhereClause.GetCurrentOfExpr(); c != nil && top {
		a.st.currentOf = c.CursorName
	}
	a.with(up.WithClause)
	first := len(a.st.uses)
	var sc scope
	i := a.addUse(up.Relation, true)
	if i >= 0 {
		a.st.uses[i].fires = triggerUpdate
		sc.uses = append(sc.uses, i)
	}
	for _, f := range up.FromClause {
		a.fromItem(f, &sc)
	}
	a.pushScope(&sc, up.WhereClause, top)
	defer a.popScope(first)
	a.exprs(up.WhereClause, nil)
	for _, t := range up.TargetList {
		a.exprs(t, nil)
		rt := t.GetResTarget()
		if i < 0 || rt == nil || !a.st.uses[i].sharded() || rt.Name != a.st.uses[i].info.key {
			continue
		}
		// Setting the key to a value on the same shard is harmless
		// (ORMs write every column); Route checks that shard.
		v, ok := value(rt.Val)
		if !ok {
			a.fail(fmt.Sprintf("updating the shard key column %s is not supported", rt.Name),
				"delete the row and insert it again with the new key")
			continue
		}
		if a.st.setKey == nil {
			a.st.setKey = map[int]valueRef{}
		}
		a.st.setKey[i] = v
	}
	for _, t := range up.ReturningList {
		a.exprs(t, nil)
	}
}

func (a *analyzer) delete(d *pg.DeleteStmt, top bool) {
	if c := d.WhereClause.GetCurrentOfExpr(); c != nil && top {
		a.st.currentOf = c.CursorName
	}
	a.with(d.WithClause)
	first := len(a.st.uses)
	var sc scope
	if i := a.addUse(d.Relation, true); i >= 0 {
		a.st.uses[i].fires = triggerDelete
		sc.uses = append(sc.uses, i)
	}
	for _, f := range d.UsingClause {
		a.fromItem(f, &sc)
	}
	a.pushScope(&sc, d.WhereClause, top)
	defer a.popScope(first)
	a.exprs(d.WhereClause, nil)
	for _, t := range d.ReturningList {
		a.exprs(t, nil)
	}
}

// constrain finds, for every sharded table of the level, the tightest key
// constraint among the WHERE clause and the join conditions that filter
// it. Conditions are conjuncts, so any one of them bounds the rows.
func (a *analyzer) constrain(sc *scope, where *pg.Node, top bool) {
	for _, i := range sc.uses {
		u := &a.st.uses[i]
		if !u.sharded() {
			continue
		}
		consider := func(e *pg.Node) bool {
			if vals, ok := cons(e, func(n *pg.Node) bool { return a.isKey(n, u, sc) }); ok && (!u.keyed || len(vals) < len(u.vals)) {
				u.vals, u.keyed = vals, true
				return true
			}
			return false
		}
		if where != nil && consider(where) {
			u.topWhere = top
		}
		for _, q := range sc.quals {
			for _, t := range q.targets {
				if t == i {
					consider(q.expr)
				}
			}
		}
	}
	// A key a FROM subquery passes out (derivedKeys) bounds its table's
	// rows too: WHERE s.customer_id = 7 keeps only the subquery's rows
	// read from rows with key 7.
	for k := range sc.derived {
		d := &sc.derived[k]
		u := &a.st.uses[d.use]
		if where == nil || !u.sharded() {
			continue
		}
		kt := u.info.strat.KeyType()
		vals, ok := cons(where, func(n *pg.Node) bool { return d.names(uncastKey(n, kt)) })
		if ok && (!u.keyed || len(vals) < len(u.vals)) {
			u.vals, u.keyed, u.topWhere = vals, true, top
		}
	}
}

// cons returns the values the key (the expressions isKey accepts) must
// take for e to be true; ok is false when e does not pin the key to a
// list of values.
func cons(e *pg.Node, isKey func(*pg.Node) bool) ([]valueRef, bool) {
	switch x := e.Node.(type) {
	case *pg.Node_BoolExpr:
		switch x.BoolExpr.Boolop {
		case pg.BoolExprType_AND_EXPR:
			var best []valueRef
			found := false
			for _, arg := range x.BoolExpr.Args {
				if v, ok := cons(arg, isKey); ok && (!found || len(v) < len(best)) {
					best, found = v, true
				}
			}
			return best, found
		case pg.BoolExprType_OR_EXPR:
			var all []valueRef
			for _, arg := range x.BoolExpr.Args {
				v, ok := cons(arg, isKey)
				if !ok {
					return nil, false // one side leaves the key free
				}
				all = append(all, v...)
			}
			return all, true
		}
	case *pg.Node_AExpr:
		ex := x.AExpr
		if opName(ex.Name) != "=" {
			return nil, false
		}
		switch ex.Kind {
		case pg.A_Expr_Kind_AEXPR_OP:
			if isKey(ex.Lexpr) {
				if v, ok := value(ex.Rexpr); ok {
					return []valueRef{v}, true
				}
			}
			if isKey(ex.Rexpr) {
				if v, ok := value(ex.Lexpr); ok {
					return []valueRef{v}, true
				}
			}
		case pg.A_Expr_Kind_AEXPR_IN:
			if isKey(ex.Lexpr) {
				return values(ex.Rexpr.GetList().GetItems())
			}
		case pg.A_Expr_Kind_AEXPR_OP_ANY:
			// key = ANY(ARRAY[1, 2]); key = ANY($1) leaves the key free.
			if arr := ex.Rexpr.GetAArrayExpr(); arr != nil && isKey(ex.Lexpr) {
				return values(arr.Elements)
			}
		}
	}
	return nil, false
}

func values(items []*pg.Node) ([]valueRef, bool) {
	if len(items) == 0 {
		return nil, false
	}
	out := make([]valueRef, 0, len(items))
	for _, it := range items {
		v, ok := value(it)
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}

func opName(name []*pg.Node) string {
	if len(name) == 0 {
		return ""
	}
	if s := name[len(name)-1].GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

// isKey tells whether n is u's shard-key column (possibly qualified, or
// cast to a type of the key's own family, which keeps equality intact).
func (a *analyzer) isKey(n *pg.Node, u *tableUse, sc *scope) bool {
	cast := n.GetTypeCast()
	n = uncastKey(n, u.info.strat.KeyType())
	if n == nil && a.st.lossyCast == "" && len(cast.TypeName.GetNames()) > 0 && a.isKey(cast.Arg, u, sc) {
		// Noted for the refusal of a join that this cast leaves without
		// equal keys: it is not obvious why.
		types := stringItems(cast.TypeName.GetNames())
		a.st.lossyCast = strings.Join(stringItems(cast.Arg.GetColumnRef().GetFields()), ".") + "::" + types[len(types)-1]
	}
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	names := stringItems(cr.Fields)
	if len(names) != len(cr.Fields) || len(names) == 0 || names[len(names)-1] != u.info.key {
		return false
	}
	switch q := names[:len(names)-1]; len(q) {
	case 0:
		return true
	case 1:
		return q[0] == u.refName()
	case 2:
		return u.alias == "" && q[0] == u.home && q[1] == u.rel
	}
	return false
}

// uncastKey returns what n casts within key type kt's family (such a
// cast keeps the key's equalities), or n; nil for a cast out of it.
func uncastKey(n *pg.Node, kt strategies.KeyType) *pg.Node {
	if tc := n.GetTypeCast(); tc != nil {
		if !sameFamily(tc.TypeName, kt) {
			return nil
		}
		return tc.Arg
	}
	return n
}

// sameFamily tells whether a cast of a key of type kt to t keeps every
// key's value: not with a type modifier (key::varchar(4) makes 'acct-1'
// and 'acct-2' one value, 'acct').
func sameFamily(t *pg.TypeName, kt strategies.KeyType) bool {
	names := stringItems(t.GetNames())
	if len(names) == 0 || len(t.GetArrayBounds()) > 0 || len(t.GetTypmods()) > 0 {
		return false
	}
	named, ok := keyTypeNamed(names[len(names)-1])
	// A cast to a timestamp type does not narrow the route: between
	// timestamp and timestamptz it converts in the session's TimeZone, and
	// equality no longer pins the stored value.
	return ok && named == kt && named != strategies.KeyTimestamp && named != strategies.KeyTimestampTZ
}

// value reads a constant or parameter (through casts and unary minus).
// A cast that may change the value is not read through: one with a type
// modifier ('acct-10'::varchar(6) is 'acct-1', '1500'::varchar(3)::int8 is
// 150, a timestamp(0) is rounded) or to a blank-padded type ('Box-2
// '::bpchar compares as 'Box-2' with text). Postgres compares or stores the
// converted value, which the strategies would not see; the predicate then
// does not narrow the route, and such a key in INSERT VALUES is refused.
func value(n *pg.Node) (valueRef, bool) {
	if n == nil {
		return valueRef{}, false
	}
	switch x := n.Node.(type) {
	case *pg.Node_ParamRef:
		return valueRef{param: int(x.ParamRef.Number)}, x.ParamRef.Number > 0
	case *pg.Node_AConst:
		if x.AConst.Isnull {
			return valueRef{null: true}, true
		}
		t, ok := constText(x.AConst)
		return valueRef{text: t}, ok
	case *pg.Node_TypeCast:
		v, ok := value(x.TypeCast.Arg)
		name := "?"
		if names := stringItems(x.TypeCast.TypeName.GetNames()); len(names) > 0 {
			name = names[len(names)-1]
		}
		if len(x.TypeCast.TypeName.GetTypmods()) > 0 || name == "bpchar" || name == "char" {
			return valueRef{}, false
		}
		if len(x.TypeCast.TypeName.GetArrayBounds()) > 0 {
			name += "[]"
		}
		v.casts = append(v.casts, name)
		return v, ok
	case *pg.Node_AExpr:
		ex := x.AExpr
		if ex.Kind == pg.A_Expr_Kind_AEXPR_OP && ex.Lexpr == nil && opName(ex.Name) == "-" {
			v, ok := value(ex.Rexpr)
			v.neg = !v.neg
			return v, ok && !v.null
		}
	}
	return valueRef{}, false
}

func constText(c *pg.A_Const) (string, bool) {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return strconv.FormatInt(int64(v.Ival.Ival), 10), true
	case *pg.A_Const_Fval:
		return v.Fval.Fval, true
	case *pg.A_Const_Sval:
		return v.Sval.Sval, true
	case *pg.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.Boolval), true
	}
	return "", false
}

// walk calls fn on every Node below (and including) n, depth first;
// fn returns false to skip a node's children. It uses protobuf
// reflection: slow, but it only runs on plan-cache misses.
func walk(n *pg.Node, fn func(*pg.Node) bool) {
	if n == nil || !fn(n) {
		return
	}
	walkMessage(n.ProtoReflect(), fn)
}

func walkMessage(m protoreflect.Message, fn func(*pg.Node) bool) {
	// In declared order (Range's is unspecified), so that "the first
	// aggregate" of a refusal's message and every walk-built list are the
	// same from run to run.
	fields := m.Descriptor().Fields()
	for k := 0; k < fields.Len(); k++ {
		fd := fields.Get(k)
		if fd.Kind() != protoreflect.MessageKind || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		visit := func(mv protoreflect.Message) {
			switch x := mv.Interface().(type) {
			case *pg.Node:
				walk(x, fn)
			case *pg.RangeVar:
				// Statements hold most tables as plain RangeVar fields,
				// not Nodes; show them to fn like any other node.
				if fn(&pg.Node{Node: &pg.Node_RangeVar{RangeVar: x}}) {
					walkMessage(mv, fn)
				}
			default:
				walkMessage(mv, fn)
			}
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message())
			}
		} else if !fd.IsMap() {
			visit(v.Message())
		}
	}
}

// pushScope enters a query level: it finds the key constraints of the
// level's tables and the shard-key equalities that join them, and makes
// the level visible to correlated subqueries.
func (a *analyzer) pushScope(sc *scope, where *pg.Node, top bool) {
	a.constrain(sc, where, top)
	a.scopes = append(a.scopes, sc)
	var conj []*pg.Node
	conj = conjuncts(where, conj)
	for _, q := range sc.quals {
		conj = conjuncts(q.expr, conj)
	}
	for _, c := range conj {
		ex := c.GetAExpr()
		if ex == nil || ex.Kind != pg.A_Expr_Kind_AEXPR_OP || opName(ex.Name) != "=" {
			continue
		}
		if l, r := a.resolveKey(ex.Lexpr), a.resolveKey(ex.Rexpr); l >= 0 && r >= 0 {
			a.union(l, r)
		} else if l, r := a.castKeys(ex.Lexpr, ex.Rexpr); l >= 0 && r >= 0 {
			a.union(l, r)
		}
	}
}

// castKeys returns the uses whose shard keys l and r cast alike to a
// type that keeps distinct keys distinct: a.id::text = b.id::text over
// integer keys equates the keys themselves (an integer has one text
// form), where token::int over text keys does not ('7' and '007'). Only
// for a join's equality: a constant compared with id::text is no key
// value ('abc' is no integer, and must match nothing, not fail).
func (a *analyzer) castKeys(l, r *pg.Node) (int, int) {
	lc, rc := l.GetTypeCast(), r.GetTypeCast()
	if lc == nil || rc == nil {
		return -1, -1
	}
	lt, rt := castTarget(lc.TypeName), castTarget(rc.TypeName)
	li, ri := a.resolveKey(lc.Arg), a.resolveKey(rc.Arg)
	if lt == "" || lt != rt || li < 0 || ri < 0 {
		return -1, -1
	}
	kt := a.st.uses[li].info.strat.KeyType()
	if a.st.uses[ri].info.strat.KeyType() != kt || !keepsKeysApart(kt, lt) {
		return -1, -1
	}
	return li, ri
}

// castTarget is the type a cast names, when it has no type modifier or
// array bounds (varchar(2) truncates: '12' and '13' both become '1').
func castTarget(t *pg.TypeName) string {
	names := stringItems(t.GetNames())
	if len(names) == 0 || len(t.GetTypmods()) > 0 || len(t.GetArrayBounds()) > 0 {
		return ""
	}
	return names[len(names)-1]
}

// keepsKeysApart tells whether casting keys of type kt to target maps
// distinct keys to distinct values.
func keepsKeysApart(kt strategies.KeyType, target string) bool {
	switch target {
	case "text", "varchar":
		return kt == strategies.KeyInt || kt == strategies.KeyUUID
	case "numeric":
		return kt == strategies.KeyInt
	}
	return false
}

// popScope leaves a level. Concatenating per-shard results is only exact
// when rows that meet in the level live on one shard: every sharded table
// of the level (subqueries included) must be joined to the others by
// equal shard keys of one strategy. The first violation is kept for Route,
// which refuses it when the statement spans shards.
func (a *analyzer) popScope(first int) {
	a.scopes = a.scopes[:len(a.scopes)-1]
	if a.st.unjoined != "" {
		return
	}
	root := -1
	for i := first; i < len(a.st.uses); i++ {
		if !a.st.uses[i].sharded() {
			continue
		}
		if root < 0 {
			root = i
			continue
		}
		if a.find(i) != a.find(root) {
			u, v := &a.st.uses[root], &a.st.uses[i]
			a.st.unjoined = fmt.Sprintf("%s and %s", u.name, v.name)
			if u.name == v.name {
				// A self-join, or a subquery over the outer query's table.
				a.st.unjoined = fmt.Sprintf("%s with itself (a self-join or a subquery)", u.name)
			}
			a.st.unjoinedStrategies = u.info.strat.Name() != v.info.strat.Name()
			return
		}
	}
}

func conjuncts(e *pg.Node, out []*pg.Node) []*pg.Node {
	if e == nil {
		return out
	}
	if b := e.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		for _, arg := range b.Args {
			out = conjuncts(arg, out)
		}
		return out
	}
	return append(out, e)
}

// resolveKey returns the use whose shard key column n names, or -1.
// Unqualified names are looked up in the innermost level only (an outer
// match might be a column of an inner table we know nothing about);
// qualified names bind to the innermost level that has the qualifier.
func (a *analyzer) resolveKey(n *pg.Node) int {
	if n == nil {
		return -1
	}
	if tc := n.GetTypeCast(); tc != nil {
		// Only a cast within the key's type family keeps equal values
		// apart: '007' and '7' are two text keys, on two shards, but one
		// integer.
		i := a.resolveKey(tc.Arg)
		if i < 0 || !sameFamily(tc.TypeName, a.st.uses[i].info.strat.KeyType()) {
			return -1
		}
		return i
	}
	cr := n.GetColumnRef()
	if cr == nil || len(a.scopes) == 0 {
		return -1
	}
	names := stringItems(cr.Fields)
	if len(names) != len(cr.Fields) || len(names) == 0 || len(names) > 3 {
		return -1
	}
	col, q := names[len(names)-1], names[:len(names)-1]
	if len(q) == 0 {
		sc := a.scopes[len(a.scopes)-1]
		for _, i := range sc.uses {
			if a.isKeyName(i, col) {
				return i
			}
		}
		for _, d := range sc.derived {
			if d.col == col {
				return d.use
			}
		}
		return -1
	}
	for s := len(a.scopes) - 1; s >= 0; s-- {
		for _, i := range a.scopes[s].uses {
			u := &a.st.uses[i]
			match := len(q) == 1 && q[0] == u.refName()
			if len(q) == 2 {
				match = u.alias == "" && q[0] == u.home && q[1] == u.rel
			}
			if match {
				if a.isKeyName(i, col) {
					return i
				}
				return -1
			}
		}
		for _, d := range a.scopes[s].derived {
			if len(q) == 1 && q[0] == d.alias && d.col == col {
				return d.use
			}
		}
	}
	return -1
}

// derivedKeys records in sc the output columns of FROM subquery rs
// (SELECT sel, just analysed with its output keys) that are a shard key
// read straight from a table of it, not from an outer join's nullable
// side. Only a plain subquery passes keys through: one that groups,
// dedupes, limits or aggregates combines rows (and is refused across
// shards anyway, unless correlated on the key).
func (a *analyzer) derivedKeys(rs *pg.RangeSubselect, sel *pg.SelectStmt, sc *scope) {
	keys := a.outKeys[sel]
	if keys == nil || isSetOp(sel) || len(sel.GroupClause) > 0 || len(sel.DistinctClause) > 0 || sel.HavingClause != nil ||
		sel.LimitCount != nil || sel.LimitOffset != nil || len(sel.WindowClause) > 0 || len(sel.ValuesLists) > 0 {
		return
	}
	for _, t := range sel.TargetList {
		if findFunc(t, func(f *pg.FuncCall) bool { return a.st.aggregateOrWindow(f) != "" }) != nil {
			return
		}
	}
	alias := ""
	var colnames []string
	if rs.Alias != nil {
		alias, colnames = rs.Alias.Aliasname, stringItems(rs.Alias.Colnames)
	}
	add := func(col string, use int) {
		sc.derived = append(sc.derived, derivedKey{alias: alias, col: col, use: use})
		if a.viaDerived == nil {
			a.viaDerived = map[int][]derivedVia{}
		}
		a.viaDerived[use] = append(a.viaDerived[use], derivedVia{sc: sc, alias: alias})
	}
	if len(colnames) > 0 {
		// Column aliases rename by position: after a *, positions need
		// the tables' columns, which the router does not have.
		for _, t := range sel.TargetList {
			if isStar(t.GetResTarget().GetVal()) {
				return
			}
		}
	}
	for _, d := range a.starKeys[sel] {
		add(d.col, d.use)
	}
	for i, t := range sel.TargetList {
		if i >= len(keys) || keys[i] < 0 {
			continue
		}
		rt := t.GetResTarget()
		name := rt.GetName()
		if name == "" {
			if cr := rt.GetVal().GetColumnRef(); cr != nil {
				if f := stringItems(cr.Fields); len(f) == len(cr.Fields) && len(f) > 0 {
					name = f[len(f)-1]
				}
			}
		}
		if i < len(colnames) {
			name = colnames[i]
		}
		if name == "" {
			continue
		}
		add(name, keys[i])
	}
}

// recordStarKeys notes, for FROM subquery s (its level sc still in
// scope), the shard keys its * and t.* pass out under their own names:
// those of its sharded tables and of its own FROM subqueries, not from
// an outer join's nullable side.
func (a *analyzer) recordStarKeys(s *pg.SelectStmt, sc *scope) {
	for _, t := range s.TargetList {
		val := t.GetResTarget().GetVal()
		if !isStar(val) {
			continue
		}
		q := stringItems(val.GetColumnRef().Fields)
		if len(q) > 1 {
			continue
		}
		for _, i := range sc.uses {
			u := &a.st.uses[i]
			if u.sharded() && (len(q) == 0 || q[0] == u.refName()) && a.nonNullKey(i) >= 0 {
				a.addStarKey(s, derivedKey{col: u.info.key, use: i})
			}
		}
		for _, d := range sc.derived {
			if (len(q) == 0 || q[0] == d.alias) && a.nonNullKey(d.use) >= 0 {
				a.addStarKey(s, derivedKey{col: d.col, use: d.use})
			}
		}
	}
}

func (a *analyzer) addStarKey(s *pg.SelectStmt, d derivedKey) {
	if a.starKeys == nil {
		a.starKeys = map[*pg.SelectStmt][]derivedKey{}
	}
	a.starKeys[s] = append(a.starKeys[s], d)
}

// derivedVia is a FROM subquery, by alias in its level's scope, that
// passes a use's key out.
type derivedVia struct {
	sc    *scope
	alias string
}

// colocatedArms tells whether the INTERSECT or EXCEPT s has two plain
// arms whose select lists have, at one position, the shard key of tables
// of one strategy (not from an outer join's nullable side). A result row
// then carries its key: its every occurrence in either arm is computed on
// that key's shard, so each shard's INTERSECT or EXCEPT (ALL or not) is
// exact for its rows, and no two shards return the same row.
func (a *analyzer) colocatedArms(s *pg.SelectStmt) bool {
	if isSetOp(s.Larg) || isSetOp(s.Rarg) {
		return false
	}
	l, r := a.outKeys[s.Larg], a.outKeys[s.Rarg]
	for k := 0; k < min(len(l), len(r)); k++ {
		if l[k] >= 0 && r[k] >= 0 && a.st.uses[l[k]].info.strat.Name() == a.st.uses[r[k]].info.strat.Name() {
			return true
		}
	}
	return false
}

// nonNullKey returns use i (-1 stays -1), or -1 when its table is on the
// nullable side of an outer join of its level: a NULL key's IN result
// depends on whether the subquery's set is empty, which one shard cannot
// tell (NULL NOT IN (empty set) is true, NOT IN (1) is NULL).
func (a *analyzer) nonNullKey(i int) int {
	if i < 0 {
		return -1
	}
	for _, sc := range a.scopes {
		if !slices.Contains(sc.uses, i) {
			continue
		}
		for _, f := range sc.from {
			if nullableSide(f, a.st.uses[i].refName(), false) {
				return -1
			}
		}
	}
	// Read through a FROM subquery: it may sit on the nullable side of
	// its level's outer join (no alias: cannot tell, so not a key).
	for _, v := range a.viaDerived[i] {
		if v.alias == "" {
			return -1
		}
		for _, f := range v.sc.from {
			if nullableSide(f, v.alias, false) {
				return -1
			}
		}
	}
	return i
}

func (a *analyzer) isKeyName(i int, col string) bool {
	u := &a.st.uses[i]
	return u.sharded() && u.info.key == col
}

// union joins the components of two uses sharded by the same strategy:
// equal keys of one strategy live on one shard.
func (a *analyzer) union(i, j int) {
	ui, uj := &a.st.uses[i], &a.st.uses[j]
	if ui.info.strat.Name() != uj.info.strat.Name() {
		return
	}
	if a.parent == nil {
		a.parent = map[int]int{}
	}
	a.parent[a.find(i)] = a.find(j)
}

func (a *analyzer) find(i int) int {
	for {
		p, ok := a.parent[i]
		if !ok || p == i {
			return i
		}
		i = p
	}
}

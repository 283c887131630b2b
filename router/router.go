package router

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/strategies"
)

// Kind classifies a statement for the proxy.
type Kind int

const (
	KindEmpty              Kind = iota // empty query / only comments
	KindSelect                         // SELECT, VALUES, TABLE; EXPLAIN <select>
	KindInsert                         // INSERT
	KindUpdate                         // UPDATE
	KindDelete                         // DELETE
	KindDDL                            // CREATE/ALTER/DROP/TRUNCATE/COMMENT/CREATE INDEX ...
	KindBegin                          // BEGIN / START TRANSACTION (any options)
	KindCommit                         // COMMIT / END
	KindRollback                       // ROLLBACK / ABORT (not ROLLBACK TO SAVEPOINT)
	KindSavepoint                      // SAVEPOINT, RELEASE, ROLLBACK TO
	KindPrepareTransaction             // PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED
	KindSet                            // SET / SET LOCAL / RESET / RESET ALL of a session parameter
	KindShardHintSet                   // SET shardproxy.shard = 's1'
	KindShardHintReset                 // RESET shardproxy.shard / SET shardproxy.shard TO DEFAULT
	KindShow                           // SHOW x
	KindCopy                           // COPY
	KindPrepare                        // SQL-level PREPARE / EXECUTE / DEALLOCATE
	KindListen                         // LISTEN / UNLISTEN / NOTIFY
	KindOther                          // VACUUM, ANALYZE, DO, CALL, LOCK, ...
)

var kindNames = [...]string{"Empty", "Select", "Insert", "Update", "Delete", "DDL", "Begin", "Commit",
	"Rollback", "Savepoint", "PrepareTransaction", "Set", "ShardHintSet", "ShardHintReset", "Show",
	"Copy", "Prepare", "Listen", "Other"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// HintParameter is the session parameter that pins statements to a shard.
const HintParameter = "shardproxy.shard"

// GatherParameter is the session parameter that turns gathered
// statements off (plan_build_gather.go): SET shardproxy.gather = off.
const GatherParameter = "shardproxy.gather"

// Statement is the cached, immutable analysis of one statement's text.
// Share it freely; never modify it.
type Statement struct {
	Kind      Kind
	NumParams int    // highest $n in the analysed text
	SetName   string // KindSet: lower-cased parameter name ("" for RESET ALL); KindShow: its parameter
	SetValue  string // KindSet: value as SQL text after '=' / TO; "" for RESET
	SetLocal  bool   // SET LOCAL / SET TRANSACTION: lasts until transaction end
	// Tag is the command tag Postgres answers a statement the proxy may
	// answer itself with: "START TRANSACTION" or "BEGIN" for KindBegin,
	// "SET CONSTRAINTS" for that KindSet (SetTag).
	Tag       string
	HintShard string   // KindShardHintSet: the shard name (checked by Route)
	Tables    []string // tables referenced, as written (schema.table when qualified)
	Explain   bool     // EXPLAIN <statement>: Kind is the inner statement's
	// TxnScoped: the statement reads no table and calls a function that
	// acts on its transaction (pg_advisory_xact_lock, set_config(..., true),
	// txid_current): inside BEGIN it must run in the transaction itself.
	TxnScoped bool
	// Aside: the statement reads no table and changes nothing (a SELECT
	// or SHOW calling only built-ins that neither write nor act on the
	// session or transaction; set_config(..., true) apart, see aside.go):
	// inside BEGIN, before any shard holds the transaction, it may run
	// beside it without pinning it to the default shard.
	Aside bool
	// MayWrite: a SELECT that acts beyond its result (writes.go): it
	// locks rows (FOR UPDATE), creates a table (INTO), takes an advisory
	// lock, or calls a function that writes (a user function whose body
	// writes or calls one, a C function declared volatile, nextval() and
	// the like). What it does belongs to its transaction, as a write's
	// does: a pipeline or a multi-statement Query must not end that
	// transaction on its shard to move on to another.
	MayWrite bool
	// Returning: an INSERT, UPDATE or DELETE with RETURNING, which
	// returns rows.
	Returning bool
	// HidesSettings: the statement may change a session setting where
	// the proxy cannot see it (a DO block, CALL, a user function whose
	// body may run SET or set_config: pooling.go). Its backend must be
	// reset before its next use.
	HidesSettings bool
	// NoTxBlock: DDL that cannot run in a transaction block (CREATE or
	// DROP INDEX CONCURRENTLY, DETACH PARTITION CONCURRENTLY); other
	// DDL sent to several shards runs in a transaction on each, committed
	// together, so that a shard that refuses it leaves the others as they
	// were.
	NoTxBlock bool
	// SessionSequence: the statement calls currval() or lastval(), which
	// read what nextval() last gave in the backend's session. Under
	// transaction pooling only the statement's own transaction is this
	// client's on that backend (the proxy refuses them outside one).
	SessionSequence bool
	// Deallocate names the statement of a SQL DEALLOCATE (KindPrepare);
	// DeallocateAll is DEALLOCATE ALL. DiscardAll is DISCARD ALL (KindOther).
	// SQLExecute: the KindPrepare statement is EXECUTE (sqlprepare.go).
	Deallocate    string
	DeallocateAll bool
	SQLExecute    bool
	DiscardAll    bool
	// Savepoint is KindSavepoint's verb: 'S' SAVEPOINT, 'R' RELEASE,
	// 'B' ROLLBACK TO; SavepointName its savepoint, as Postgres folds it.
	Savepoint     byte
	SavepointName string
	// TwoPhase is KindPrepareTransaction's verb: 'P' PREPARE TRANSACTION,
	// 'C' COMMIT PREPARED, 'R' ROLLBACK PREPARED; GID its transaction
	// identifier. COMMIT and ROLLBACK PREPARED must reach the shard where
	// the gid is prepared, which only the shards know (Route leaves them
	// to the proxy unless hinted: FinishesPrepared).
	TwoPhase byte
	GID      string
	// LocalConfig: the statement calls set_config(..., true). Its setting
	// lives on one shard's backend and is not replayed on shards that join
	// the transaction later, as SET LOCAL is; the session refuses those.
	LocalConfig bool
	// Learns: analysing the DDL told the router what it creates, drops or
	// renames (learnFromDDL, analyzer.view), before the shards ran it.
	// The session that runs it calls Router.LearningOpened, and
	// LearningClosed when its transaction ends (see learning).
	// CatalogAfter: what it creates is known from the shards' catalogs
	// only (a view over a sharded table whose query uses *, whose columns
	// the catalog spells out): the session reads them once its
	// transaction has ended.
	Learns       bool
	CatalogAfter bool
	// BlockOnly is the name Postgres gives the statement when it runs
	// outside a transaction block, in "%s can only be used in transaction
	// blocks" (xact.c, CheckTransactionBlock): a WARNING for SET LOCAL,
	// SET TRANSACTION and SET CONSTRAINTS, an ERROR (BlockOnlyFails) for
	// LOCK TABLE and DECLARE CURSOR without HOLD. A pipeline's own
	// transaction is no block; a multi-statement Query's is.
	BlockOnly      string
	BlockOnlyFails bool

	hint      string   // /* shard: x */ in the text
	facts     *catalog // what the router knew of the shards' catalogs when analysed
	readsText bool     // CREATE VIEW/FUNCTION/RULE, DO (see usableNormalised)
	// inlinedViews are views read as their query (inlineViews) whose
	// names had no schema: refused under a custom search_path.
	inlinedViews []string
	// shadowedAggs are built-in aggregate names called unqualified that
	// a user's aggregate also has (catalog.shadows): refused in a merge
	// under a custom search_path.
	shadowedAggs []string
	uses         []tableUse // every table occurrence
	// times: the parameters a write to a reference table casts to a
	// date/time type or uses bare (timeParamRefusal).
	times timeParams
	err   *pgconn.PgError // statement that can never be routed (unless hinted)
	// snapshotID: the statement exports or imports a snapshot identifier
	// (pg_export_snapshot(), SET TRANSACTION SNAPSHOT), which names one
	// server's snapshot.
	snapshotID bool
	// sessionConfig: the statement makes a session setting with
	// set_config(..., false), carried like SET (setconfig.go).
	sessionConfig *sessionConfig
	// sessionState refuses, hinted or not, a statement that would leave
	// state on a pooled backend (sessionStateError).
	sessionState *pgconn.PgError
	// setConfigs are the set_config(name, value, true) calls, whose name
	// and value may be parameters (the simple protocol's literals are):
	// Route refuses a client_encoding it does not serve, as SET LOCAL.
	setConfigs []setConfigCall
	// sizeCalls are the size functions called on a table named by a
	// constant or parameter: Route refuses a sharded one (sizes.go).
	sizeCalls []sizeCall
	// setvals are the sequences setval() is called on, by a constant or
	// parameter: Route places the statement where they are (setval.go).
	setvals []callArg
	// serverCall is a function acting on the whole server that the
	// statement calls, e.g. pg_reload_conf (server_calls.go).
	serverCall string
	// unknownOwned: the statement names an index or sequence no catalog
	// has shown as a table's; it goes to every shard (indexes.go,
	// sequences.go).
	unknownOwned bool
	// advisoryLock: a statement reading no table takes an advisory
	// transaction lock; it goes to the default shard, so that every
	// client's locks live on one server and exclude each other.
	advisoryLock bool
	// defaultCall: NOTIFY ("pg_notify"), or a call of a function of
	// defaultShardCalls; it goes to the default shard (default_calls.go).
	defaultCall string
	inexact     string // construct that concatenation cannot answer ("ORDER BY", ...)
	// nestedInexact is such a construct in a subquery (or UNION arm) that
	// reads sharded tables: the planner merges only the top level.
	nestedInexact string
	nestedIn      string // where: "a subquery", or "view v" for a view read as its query
	// lossyCast is a shard key cast out of its type family (token::int),
	// which equates no keys: named when a join is refused for it.
	lossyCast string
	// plan merges the shards' rows of a SELECT that spans shards (nil:
	// concatenation is exact); planErr is why it cannot be merged exactly.
	plan    *ScatterPlan
	planErr *pgconn.PgError
	// gather plans the statement as one Postgres over the rows of its
	// sharded tables, for when the merge refuses it (plan_build_gather.go).
	gather *gatherState
	// explain is an EXPLAIN's options (explain.go).
	explain explainOptions
	// unjoined names two sharded tables of one query level that are not
	// joined on equal shard keys: their rows may meet across shards.
	unjoined           string
	unjoinedStrategies bool   // ... and they use different strategies
	noKey              string // "table.key" of a sharded table, for hints
	other              bool   // KindOther: maintenance on tables broadcasts
	serverWide         bool   // KindOther naming no table that acts on the server (serverWideNodes)
	lockedRef          string // a reference table whose rows the statement locks (lockedReference)
	ctid               bool   // the statement reads a ctid column (ctid.go)
	onDefault          bool   // MERGE into an unmapped table: the default shard, whatever it reads
	anyCopy            bool   // a plain read that any copy of reference tables answers (readsCopiesOnly)
	// createAs: CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW:
	// the new table gets the rows one shard sees.
	createAs  bool
	cursor    bool             // DECLARE CURSOR: routed like its query, one shard only
	cursorOp  byte             // Cursor()
	copyQuery bool             // CopiesQuery()
	currentOf string           // CurrentOf()
	setKey    map[int]valueRef // UPDATE use index -> new key value
	// split cuts a multi-row INSERT ... VALUES into a sharded table into
	// per-row pieces, for when its rows span shards (nil: refused then).
	split *insertSplit
	// insertSelect: INSERT ... SELECT whose rows each stay on the shard
	// they are read from (analyzer.insertSelect); it runs on every shard
	// of its source, like an UPDATE.
	insertSelect bool
	// insertSpan refuses an INSERT ... SELECT that is exact on one shard
	// only (LIMIT or a window function in its SELECT, a constant key) when
	// it spans shards.
	insertSpan *pgconn.PgError
	// outerAgg: an aggregate of an enclosing query written inside a
	// subquery (analyzer.outerAggregate); its query aggregates across
	// shards, which the plan cannot see.
	outerAgg string
	// maybeOuterAggs: aggregates in subqueries that are the outer query's
	// when their unqualified columns are not their FROM tables' (Route
	// asks the catalog, for multi-shard routes only).
	maybeOuterAggs []maybeOuterAgg
}

// TouchesTables tells whether the statement names a table (or a view or
// child of one): SELECT now() and SHOW do not.
func (st *Statement) TouchesTables() bool { return len(st.uses) > 0 }

// SetsCharacteristic reports SET TRANSACTION of the isolation level,
// access mode or deferrability (not SNAPSHOT): what AND CHAIN carries
// to the next transaction.
func (st *Statement) SetsCharacteristic() bool {
	return st.BlockOnly == "SET TRANSACTION" && !st.snapshotID
}

// Stale tells whether st was analysed with other facts of the shards'
// catalogs than r knows now (views, partitions, functions, indexes ...
// learnt since): it may read a name otherwise now, and must be analysed
// again (Prepare).
func (r *Router) Stale(st *Statement) bool { return st.facts != r.facts.Load() }

// SetTag is the command tag of a KindSet statement.
func (st *Statement) SetTag() string {
	if st.Tag != "" {
		return st.Tag
	}
	return "SET"
}

// Plan returns how the statement's rows merge when it reads several
// shards: nil and nil when concatenating them is exact (or the statement
// is not a SELECT of sharded tables), or the 0A000 error Route returns
// for a multi-shard route. The plan is shared and immutable.
func (st *Statement) Plan() (*ScatterPlan, error) {
	if st.planErr != nil {
		return nil, st.planErr
	}
	return st.plan, nil
}

// QueryPart is one statement of a simple-protocol Query message.
type QueryPart struct {
	Stmt *Statement // analysis of the literal-normalised text (cached)
	Text string     // this statement's original text, exactly as sent
	Args [][]byte   // text values of the literals normalisation replaced: $1, $2 ... (bind as Args.Params)
	// Lits are the same literals as the client wrote them ($k is
	// Lits[k-1], quotes and E prefix included): the fill for rendering a
	// plan's Template as simple-protocol text. Slices of the Query string.
	// Set only when the statement has a Plan or may split (keeping the
	// single-shard path free of the allocation); Router.Literals(Text) gives them for
	// any statement.
	Lits []string
}

// Router analyses and routes statements for one shard map. It is safe for
// concurrent use.
type Router struct {
	cfg         *config.Config
	tables      map[string]*tableInfo // "schema.rel" -> table
	relNames    map[string]bool       // the rel part of every key of tables
	shardedRels map[string]string     // rel part -> name, of the sharded tables (functions.go)
	logins      []string              // the shards' login users, sorted, distinct ("$user")
	loginSchema bool                  // a mapped table is in a schema named in logins
	shardIdx    map[string]int
	single      [][]string // single[i] = []string{shard i}, shared read-only
	allMask     uint64
	defaultIdx  int
	stratType   map[string]string // strategy name -> config type, for reasons
	stratMask   map[string]uint64
	cache       *planCache
	scanners    sync.Pool
	emptyStmt   *Statement

	// facts: what the shards' catalogs define that changes how a
	// statement reads (catalog.go); learn orders the writers.
	facts atomic.Pointer[catalog]
	learn learning
}

type tableInfo struct {
	name  string // as configured
	key   string
	ref   bool
	strat strategies.Strategy
}

// New builds a router for cfg. strats are the strategies built from cfg
// (strategies.Build), keyed by name.
func New(cfg *config.Config, strats map[string]strategies.Strategy) (*Router, error) {
	if len(cfg.Shards) == 0 {
		return nil, errors.New("router: no shards configured")
	}
	if len(cfg.Shards) > 64 {
		return nil, fmt.Errorf("router: %d shards configured, at most 64 are supported", len(cfg.Shards))
	}
	r := &Router{
		cfg:       cfg,
		tables:    make(map[string]*tableInfo, len(cfg.Tables)),
		relNames:  make(map[string]bool, len(cfg.Tables)),
		shardIdx:  make(map[string]int, len(cfg.Shards)),
		stratType: make(map[string]string),
		stratMask: make(map[string]uint64),
		cache:     newPlanCache(cfg.PlanCacheSize),
		emptyStmt: &Statement{Kind: KindEmpty},
	}
	r.cache.facts = &r.facts
	r.learn.txns = new(learnTxns)
	r.scanners.New = func() any { return new(scanner) }
	for i, s := range cfg.Shards {
		r.shardIdx[s.Name] = i
		r.single = append(r.single, []string{s.Name})
		r.allMask |= 1 << i
	}
	r.defaultIdx = 0
	if cfg.DefaultShard != "" {
		i, ok := r.shardIdx[cfg.DefaultShard]
		if !ok {
			return nil, fmt.Errorf("router: default shard %q is not a configured shard", cfg.DefaultShard)
		}
		r.defaultIdx = i
	}
	for _, s := range cfg.Strategies {
		r.stratType[s.Name] = s.Type
	}
	for name, s := range strats {
		var m uint64
		for _, sh := range s.Shards() {
			i, ok := r.shardIdx[sh]
			if !ok {
				return nil, fmt.Errorf("router: strategy %q places keys on unknown shard %q", name, sh)
			}
			m |= 1 << i
		}
		r.stratMask[name] = m
	}
	for _, t := range cfg.Tables {
		// pg_query folds unquoted column names to lower case; so do we.
		key := strings.ToLower(t.Key)
		if strings.HasPrefix(t.Key, `"`) {
			key = unquote(t.Key)
		}
		info := &tableInfo{name: t.Name, key: key, ref: t.Reference}
		if !t.Reference {
			s, ok := strats[t.Strategy]
			if !ok {
				return nil, fmt.Errorf("router: table %q uses strategy %q, which was not built", t.Name, t.Strategy)
			}
			info.strat = s
		}
		schema, rel := splitTableName(t.Name)
		r.tables[schema+"."+rel] = info
		r.relNames[rel] = true
	}
	r.shardedRels = map[string]string{}
	shardedRelNames(r.tables, r.shardedRels)
	for _, s := range cfg.Shards {
		if u := loginUser(s.DSN); u != "" && !slices.Contains(r.logins, u) {
			r.logins = append(r.logins, u)
		}
	}
	slices.Sort(r.logins)
	for key := range r.tables {
		schema, _, _ := strings.Cut(key, ".")
		r.loginSchema = r.loginSchema || slices.Contains(r.logins, schema)
	}
	return r, nil
}

// MapsLoginSchema tells whether the map has a table in a schema named
// after the shards' login user, which "$user" in search_path finds first
// (see table): search_path public alone then resolves unqualified names
// differently from the default.
func (r *Router) MapsLoginSchema() bool { return r.loginSchema }

// loginUser is the role a shard's DSN logs in as, "" if it does not parse
// (the config checked it; a test's map may have no DSN).
func loginUser(dsn string) string {
	if dsn == "" {
		return ""
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return cfg.User
}

// table returns the mapped table (nil: not in the map) that a name in a
// statement means under the default search_path, "$user", public, and
// the schema it is read in. A qualified name is what it says. An
// unqualified one is, as the shards resolve it, the table in the schema
// named after their login user when the map has one there (a mapped
// table exists, so does its schema, and Postgres looks there first);
// otherwise public's. When the shards log in as different users "$user"
// differs between them, and such a name is refused. Other search_paths
// are the session's business (Args.CustomSearchPath, unqualified).
// Partitions and inheritance children of mapped tables (facts.children)
// count as mapped, routed as the table they descend from.
func (r *Router) table(facts *catalog, schema, rel string) (string, *tableInfo, *pgconn.PgError) {
	get := func(key string) *tableInfo { return cmp.Or(r.tables[key], facts.child(key)) }
	if schema != "" {
		return schema, get(schema + "." + rel), nil
	}
	for _, u := range r.logins {
		if t := get(u + "." + rel); t != nil {
			if len(r.logins) > 1 {
				return "", nil, pgError(codeFeatureNotSupport,
					fmt.Sprintf("table name %q is not schema-qualified, the map has %s, and the shards log in as different users (%s)",
						rel, t.name, strings.Join(r.logins, ", ")),
					fmt.Sprintf("\"$user\" in search_path names another schema on each; write the schema (%s)", t.name))
			}
			return u, t, nil
		}
	}
	return "public", get("public." + rel), nil
}

// splitTableName splits a configured name ("orders", "app.orders",
// `"Orders"`) into its schema (public when unqualified) and relation,
// unquoted: the lookup key of tables is "schema.rel".
func splitTableName(name string) (schema, rel string) {
	schema, rel = "public", name
	inQuote := false
	for i := 0; i < len(name); i++ {
		switch {
		case name[i] == '"':
			inQuote = !inQuote
		case name[i] == '.' && !inQuote:
			schema, rel = name[:i], name[i+1:]
		}
	}
	return unquote(schema), unquote(rel)
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

// ParseQuery splits a simple Query string into statements and analyses
// each one. The empty string yields one KindEmpty part. A syntax error
// anywhere fails the whole string, as in Postgres.
func (r *Router) ParseQuery(sql string) ([]QueryPart, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, errNULInQuery
	}
	s := r.scanners.Get().(*scanner)
	defer r.scanners.Put(s)
	s.scan(sql, true)

	// One backing array for every literal value and one for the slices:
	// a value is never longer than its token.
	nargs, nbytes := 0, 0
	for i := range s.segs {
		for _, e := range s.segs[i].edits {
			if e.kind != editComment {
				nargs++
				nbytes += e.end - e.start
			}
		}
	}
	var vals []byte
	var args [][]byte
	var lits []string // allocated on first use: most statements have no plan
	if nargs > 0 {
		vals = make([]byte, 0, nbytes)
		args = make([][]byte, 0, nargs)
	}
	parts := make([]QueryPart, len(s.segs))
	for i := range s.segs {
		seg := &s.segs[i]
		parts[i].Text = sql[seg.start:seg.end]
		if seg.empty {
			parts[i].Stmt = r.emptyStmt
			continue
		}
		from := len(args)
		vals, args = s.normalize(sql, seg, vals, args)
		st, normalised, err := r.segmentStatement(sql, seg, s.norm, len(args)-from)
		if err != nil {
			// Our split or normalisation may be what failed (BEGIN ATOMIC
			// bodies hold top-level semicolons); Postgres' own parser over
			// the whole string decides, and reports the error position.
			return r.parseWhole(sql)
		}
		parts[i].Stmt = st
		if normalised && len(args) > from {
			parts[i].Args = args[from:len(args):len(args)]
		}
		if normalised && len(args) > from && (st.plan != nil || st.split != nil || st.gather != nil || st.Explain) {
			if lits == nil {
				lits = make([]string, 0, nargs)
			}
			lfrom := len(lits)
			lits = appendLits(lits, sql, seg)
			parts[i].Lits = lits[lfrom:len(lits):len(lits)]
		}
	}
	return parts, nil
}

// appendLits appends the source tokens of the literals normalize turned
// into $1, $2 ... (the same edits, in the same order).
func appendLits(lits []string, sql string, seg *segment) []string {
	if seg.maxParam > 0 {
		return lits
	}
	for _, e := range seg.edits {
		if e.start >= seg.bodyEnd {
			break
		}
		if e.kind != editComment {
			lits = append(lits, sql[e.start:e.end])
		}
	}
	return lits
}

// Literals returns the literal tokens of one statement's text as the
// normaliser would number them ($k is the k-th), exactly as written; nil
// when the text has none or has $n parameters of its own (its literals
// are then not normalised).
func (r *Router) Literals(sql string) []string {
	s := r.scanners.Get().(*scanner)
	defer r.scanners.Put(s)
	s.scan(sql, true)
	var lits []string
	for i := range s.segs {
		if s.segs[i].maxParam > 0 {
			return nil
		}
		lits = appendLits(lits, sql, &s.segs[i])
	}
	return lits
}

// segmentStatement returns the analysis of the normalised text norm, or
// when that does not parse, of the segment's original text (normalised is
// then false and the literal values are not used).
func (r *Router) segmentStatement(sql string, seg *segment, norm []byte, nlits int) (*Statement, bool, error) {
	e, ok := r.cache.get(norm)
	switch {
	case ok && e.st != nil && usableNormalised(e.st, nlits):
		return e.st, true, nil
	case !ok:
		key := string(norm)
		st, err := r.analyze(key, seg.hint, seg.maxParam+nlits)
		if err != nil && nlits == 0 {
			return nil, false, err // the original text is the same text
		}
		r.cache.put(key, st) // nil: "does not parse, use the original"
		if err == nil && usableNormalised(st, nlits) {
			return st, true, nil
		}
	}
	orig := sql[seg.bodyStart:seg.bodyEnd]
	if seg.hint != "" {
		orig = "/*shard:" + seg.hint + "*/ " + orig
	}
	if e, ok := r.cache.get([]byte(orig)); ok && e.st != nil {
		return e.st, false, nil
	}
	st, err := r.analyze(orig, seg.hint, seg.maxParam)
	if err != nil {
		return nil, false, err
	}
	r.cache.put(orig, st)
	return st, false, nil
}

// usableNormalised: SET keeps its value as text, CREATE VIEW its query
// (viewDef), and CREATE FUNCTION, CREATE RULE and DO are read for the
// words of their bodies (functions.go, triggers.go), and the two-phase
// statements their gid (Statement.GID; a gid lifted out as $1 does not
// even parse), so one whose literals were lifted out must be analysed
// from the original text.
func usableNormalised(st *Statement, nlits int) bool {
	return nlits == 0 || (st.Kind != KindSet && st.Kind != KindShardHintSet && st.Kind != KindPrepareTransaction && !st.readsText)
}

// parseWhole is the slow path when a segment does not parse: pg_query
// parses the whole string, and either reports the syntax error (its
// position is then relative to the whole string, as Postgres reports it)
// or splits the statements itself.
func (r *Router) parseWhole(sql string) ([]QueryPart, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, syntaxError(err)
	}
	if len(tree.Stmts) == 0 {
		return []QueryPart{{Stmt: r.emptyStmt, Text: sql}}, nil
	}
	parts := make([]QueryPart, len(tree.Stmts))
	for i, raw := range tree.Stmts {
		start, end := stmtBounds(sql, raw)
		text := strings.TrimSpace(sql[start:end])
		st, err := r.analyze(text, firstHint(text), maxParam(text))
		if err != nil {
			return nil, syntaxError(err)
		}
		parts[i].Stmt = st
		textStart := start
		if i == 0 {
			textStart = 0
		}
		textEnd := len(sql)
		if i+1 < len(tree.Stmts) {
			textEnd, _ = stmtBounds(sql, tree.Stmts[i+1])
		}
		parts[i].Text = sql[textStart:textEnd]
	}
	return parts, nil
}

// stmtBounds returns the byte range of a raw statement (StmtLen 0 means
// "to the end of the string").
func stmtBounds(sql string, raw *pg.RawStmt) (int, int) {
	start := min(max(int(raw.StmtLocation), 0), len(sql))
	end := len(sql)
	if raw.StmtLen > 0 {
		end = min(start+int(raw.StmtLen), len(sql))
	}
	return start, end
}

// firstHint and maxParam rescan a single statement's text (slow path only).
func firstHint(text string) string {
	var s scanner
	s.scan(text, false)
	for _, seg := range s.segs {
		if seg.hint != "" {
			return seg.hint
		}
	}
	return ""
}

func maxParam(text string) int {
	var s scanner
	s.scan(text, false)
	m := 0
	for _, seg := range s.segs {
		m = max(m, seg.maxParam)
	}
	return m
}

// Prepare analyses the text of an extended-protocol Parse message. Its
// literals stay in the text (Bind supplies only the $n values).
func (r *Router) Prepare(sql string) (*Statement, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return nil, errNULInQuery
	}
	s := r.scanners.Get().(*scanner)
	defer r.scanners.Put(s)
	s.scan(sql, false)
	if len(s.segs) > 1 {
		// Trust Postgres' parser on how many statements there are.
		tree, err := pg.Parse(sql)
		if err != nil {
			return nil, syntaxError(err)
		}
		if len(tree.Stmts) > 1 {
			return nil, pgError(codeSyntaxError, "cannot insert multiple commands into a prepared statement", "")
		}
		text := strings.TrimSpace(sql)
		return r.analyzeCached(text, firstHint(text), maxParam(text), sql)
	}
	seg := &s.segs[0]
	if seg.empty {
		return r.emptyStmt, nil
	}
	s.normalize(sql, seg, nil, nil)
	if e, ok := r.cache.get(s.norm); ok && e.st != nil {
		return e.st, nil
	}
	return r.analyzeCached(string(s.norm), seg.hint, seg.maxParam, sql)
}

// analyzeCached analyses text and caches it; on a syntax error the whole
// original sql is parsed again so that the error position is the client's.
func (r *Router) analyzeCached(text, hint string, numParams int, sql string) (*Statement, error) {
	st, err := r.analyze(text, hint, numParams)
	if err != nil {
		if _, err2 := pg.Parse(sql); err2 != nil {
			return nil, syntaxError(err2)
		}
		return nil, syntaxError(err)
	}
	r.cache.put(text, st)
	return st, nil
}

const (
	codeSyntaxError       = "42601"
	codeFeatureNotSupport = "0A000"
	codeUndefinedObject   = "42704"
	codeUndefinedColumn   = "42703"
	codeNotNullViolation  = "23502"
	codeOutOfRange        = "22003"
	codeInternal          = "XX000"
)

// pgCode is err's SQLSTATE, "" when it is not a Postgres error.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func pgError(code, msg, hint string) *pgconn.PgError {
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg, Hint: hint}
}

// errNULInQuery: the protocol ends a query string at its first NUL byte,
// so the proxy's message reader never passes one on; text that holds one
// (a caller other than the wire) cannot be SQL, and the literal around it
// could not be sent to a shard.
var errNULInQuery = pgError(codeSyntaxError, "query text contains a NUL byte", "")

// syntaxError converts a pg_query error into the client's 42601.
// pg_query's cursor position counts characters from 1, like Postgres'.
func syntaxError(err error) error {
	var pe *parser.Error
	if errors.As(err, &pe) {
		return &pgconn.PgError{Severity: "ERROR", Code: codeSyntaxError, Message: pe.Message, Position: int32(pe.Cursorpos)}
	}
	return pgError(codeSyntaxError, err.Error(), "")
}

// CacheLen reports the number of cached plans (for metrics and tests).
func (r *Router) CacheLen() int { return r.cache.len() }

// CacheStats reports plan-cache lookups that found a plan (hits) and that
// did not (misses) since New. A reload brings a new Router and new counts.
func (r *Router) CacheStats() (hits, misses uint64) {
	return r.cache.hits.Load(), r.cache.misses.Load()
}

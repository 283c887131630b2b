package router

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/strategies"
)

// Args are the values of one execution of a statement.
type Args struct {
	Params  [][]byte // bind values (nil = NULL)
	Formats []int16  // Bind format codes: none = all text, one = for all, else per parameter
	// ParamOIDs are the parameter types the client declared at Parse
	// (0 or missing: Postgres infers it, the key column's own type).
	ParamOIDs    []uint32
	SessionShard string // from SET shardproxy.shard, "" if none
	// MergeOnly keeps the merge planner's refusals instead of gathering
	// the rows (plan_build_gather.go): SET shardproxy.gather = off
	// (GatherParameter), and the router's tests of that planner.
	MergeOnly bool
	// Literals: Params are the statement's own literals, which the
	// simple protocol's plan cache lifted out of its text (QueryPart.Args),
	// not values bound to its parameters.
	Literals bool

	// Columns returns the column names of table schema.rel in attnum
	// order, dropped columns excluded; schema is "" when the statement did
	// not qualify the name (resolve it by the session's search_path). It
	// is called for an INSERT into a sharded table without a column list,
	// where the key's position is not in the text (nil: such an INSERT is
	// refused, 0A000), and for a multi-shard SELECT with an aggregate in a
	// subquery over unqualified columns (checkOuterAggs). Errors that are
	// *pgconn.PgError reach the client as they are.
	Columns func(ctx context.Context, schema, rel string) ([]string, error)

	// TimeZone is the session's TimeZone; nil when unknown (or not a zone
	// Go can load). A timestamptz key written without a UTC offset is a
	// wall clock in this zone; without it such a key reads on every shard
	// of its strategy and an INSERT is refused (0A000).
	TimeZone *time.Location
	// CustomSearchPath: the session's search_path is not the default
	// ("$user", public), so an unqualified table name may resolve to
	// another schema than public on the shards. Statements that name a
	// mapped table (in any schema) without a schema are then refused.
	CustomSearchPath bool
	// ColumnType returns the type of column col of table schema.rel as
	// format_type names it (e.g. "timestamp without time zone"). It is
	// only called for a timestamp shard key whose value Postgres would
	// store differently as timestamp and as timestamptz (an offset in the
	// text, or a session TimeZone other than UTC). nil: the column has the
	// strategy's key type. An error leaves the type unknown: the key then
	// routes only where both readings agree.
	ColumnType func(ctx context.Context, schema, rel, col string) (string, error)
}

// RouteKind says how the target shards were chosen.
type RouteKind int

const (
	RouteSingle    RouteKind = iota // key found, one shard
	RouteMulti                      // several keys on several shards
	RouteAll                        // no key: every shard of the table's strategy
	RouteBroadcast                  // DDL, reference-table writes: every shard, identical results
	RouteDefault                    // only unsharded or reference tables: default_shard
	RouteAny                        // no table at all: any one shard will do
	RouteHint                       // /* shard: s1 */ comment or session hint
	RouteNone                       // key has no owner (directory read miss): read nothing
)

var routeKindNames = [...]string{"Single", "Multi", "All", "Broadcast", "Default", "Any", "Hint", "None"}

func (k RouteKind) String() string {
	if k >= 0 && int(k) < len(routeKindNames) {
		return routeKindNames[k]
	}
	return fmt.Sprintf("RouteKind(%d)", int(k))
}

// MergeKind says how the results of several shards become one.
type MergeKind int

const (
	MergeNone        MergeKind = iota // single shard, nothing to merge
	MergeConcat                       // rows concatenated (only when that is exact)
	MergeSumTag                       // command tags summed, RETURNING rows concatenated
	MergeFirst                        // broadcast: reply with one shard's result
	MergePlan                         // SELECT across shards merged by Route.Plan
	MergeSplitInsert                  // INSERT rows split per shard (Route.Split): tags summed, RETURNING rows in VALUES order
)

var mergeKindNames = [...]string{"None", "Concat", "SumTag", "First", "Plan", "SplitInsert"}

func (k MergeKind) String() string {
	if k >= 0 && int(k) < len(mergeKindNames) {
		return mergeKindNames[k]
	}
	return fmt.Sprintf("MergeKind(%d)", int(k))
}

// Route is where one execution of a statement goes.
type Route struct {
	Kind   RouteKind
	Shards []string // targets in config order; shared, never modify
	Merge  MergeKind
	Reason string       // one line for SHOW ROUTE and logs
	Plan   *ScatterPlan // MergePlan: how the shards' rows merge (shared, immutable)
	Split  *InsertSplit // MergeSplitInsert: each shard's statement and rows
	// AnyCopy: a plain read of reference tables alone, which any shard's
	// copy answers exactly (Shards names the default shard): inside a
	// transaction the proxy reads the copy of the shard it is on rather
	// than bring another shard in.
	AnyCopy bool
	// Explain: EXPLAIN ANALYZE of a write across shards, which runs as
	// the write does (MergeConcat), its shards' plans labelled under these
	// header lines (explain.go).
	Explain []string
}

// Route binds args and decides the target shards. Errors are
// *pgconn.PgError: 0A000 for statements shardproxy cannot answer exactly,
// 22P02 and friends for bad key values, 42704 for unknown hinted shards.
func (r *Router) Route(ctx context.Context, st *Statement, args Args) (Route, error) {
	if st.snapshotID && len(r.shardIdx) > 1 && args.SessionShard == "" && st.hint == "" {
		return Route{}, pgError(codeFeatureNotSupport,
			"snapshot identifiers (pg_export_snapshot, SET TRANSACTION SNAPSHOT) are not supported across shards",
			"an identifier names one shard's snapshot; run pg_dump without -j through shardproxy (its REPEATABLE READ READ ONLY transaction reads every shard from one snapshot), or set "+HintParameter+" to work on one shard")
	}
	switch st.Kind {
	case KindSet:
		if st.err != nil {
			return Route{}, st.err // a refused client_encoding
		}
		return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
	case KindListen:
		if st.defaultCall == "" { // NOTIFY goes on: a hint, else the default shard (default_calls.go)
			return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
		}
	case KindPrepareTransaction:
		if !st.FinishesPrepared() {
			// PREPARE TRANSACTION ends the transaction where it runs.
			return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
		}
		// A hint names the shard (a gid reused on several shards needs
		// one); else the proxy asks the shards where the gid is prepared.
		if rt, ok, err := r.hintRoute(ctx, st, args); ok {
			return rt, err
		}
		return Route{Kind: RouteAny, Reason: PreparedReason}, nil
	case KindEmpty, KindBegin, KindCommit, KindRollback, KindSavepoint,
		KindShardHintReset, KindShow, KindPrepare:
		return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
	case KindShardHintSet:
		if _, ok := r.shardIdx[st.HintShard]; !ok {
			return Route{}, unknownShard(st.HintShard)
		}
		return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
	}
	if st.sessionState != nil {
		return Route{}, st.sessionState
	}
	if err := setConfigError(st.setConfigs, args.Params); err != nil {
		return Route{}, err
	}
	if rt, ok, err := r.hintRoute(ctx, st, args); ok {
		return rt, err
	}
	if st.err != nil {
		return Route{}, st.err
	}
	if err := r.shardedSizeError(st, &args); err != nil {
		return Route{}, err
	}
	if rt, ok, err := r.setvalRoute(st, &args); ok || err != nil {
		return rt, err
	}
	if rt, ok := r.serverCallRoute(st); ok {
		return rt, nil
	}
	if err := timeParamRefusal(st, &args); err != nil {
		return Route{}, err
	}
	if args.CustomSearchPath {
		for _, u := range st.uses {
			if err := r.unqualified(st.facts, u.schema, u.rel); err != nil {
				return Route{}, err
			}
		}
		if len(st.inlinedViews) > 0 {
			return Route{}, pgError(codeFeatureNotSupport,
				fmt.Sprintf("view name %q is not schema-qualified, and the session's search_path is not the default", st.inlinedViews[0]),
				"shardproxy reads an unqualified view name as public's; write the schema, or keep search_path at its default")
		}
	}
	rt, err := r.routeTables(ctx, st, &args)
	if err == nil && st.lockedRef != "" && !slices.Contains(rt.Shards, r.cfg.DefaultShard) {
		return Route{}, lockedReferenceError(st.lockedRef, rt.Shards)
	}
	if err == nil && st.ctid && len(rt.Shards) > 1 {
		return Route{}, ctidRefusal(rt.Shards)
	}
	if err == nil && st.Explain && len(rt.Shards) > 1 {
		return explainShards(st, rt)
	}
	return rt, err
}

// unqualified refuses an unqualified name of a table the map has (in any
// schema) under a session search_path other than the default. The router
// reads an unqualified name as public's; the shards resolve it through
// the search_path, perhaps to another schema's table: with app.items
// sharded and search_path app, "items" would go to the default shard only,
// reads seeing part of the rows and inserts placed there.
func (r *Router) unqualified(facts *catalog, schema, rel string) error {
	if schema != "" || !r.relNames[rel] && (facts == nil || !facts.childRels[rel]) {
		return nil
	}
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("table name %q is not schema-qualified, and the session's search_path is not the default", rel),
		"shardproxy reads an unqualified table name as public's; write the schema (schema."+rel+"), or keep search_path at its default")
}

// keyHinted routes a statement with a /* shard_key: table = value */
// comment to the shard that holds value as a key of sharded table table
// (or a child of one): a statement the router cannot route by itself,
// such as a call of a function that reads the key's rows, runs where that
// key lives without the client knowing shard names. value is the key's
// text, optionally in single quotes.
func (r *Router) keyHinted(ctx context.Context, facts *catalog, table, value string) (Route, error) {
	why := "/* shard_key: " + table + " = " + value + " */ comment"
	schema, rel := hintTableName(table)
	_, info, perr := r.table(facts, schema, rel)
	if perr != nil {
		return Route{}, perr
	}
	if info == nil || info.ref {
		return Route{}, pgError(codeUndefinedObject, fmt.Sprintf("%s names %s, which is not a sharded table of the shard map", why, table), "")
	}
	if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
		value = strings.ReplaceAll(value[1:len(value)-1], "''", "'")
	}
	k, err := strategies.ParseKey(info.strat.KeyType(), value)
	if err != nil {
		return Route{}, err
	}
	shard, err := info.strat.Locate(ctx, k, strategies.Read)
	if errors.Is(err, strategies.ErrNoOwner) {
		return Route{}, pgError(codeFeatureNotSupport, fmt.Sprintf("%s: no shard holds key %s of %s yet", why, value, info.name),
			"insert the key's row through shardproxy first, or name the shard: /* shard: name */")
	}
	if err != nil {
		return Route{}, err
	}
	return r.hinted(shard, why)
}

// hintTableName reads a table name as SQL does: [schema.]rel, each part
// folded to lower case unless double-quoted; schema is "" when absent.
func hintTableName(s string) (schema, rel string) {
	inQuote, dot := false, -1
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == '.' && !inQuote && dot < 0:
			dot = i
		}
	}
	part := func(p string) string {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, `"`) {
			return unquote(p)
		}
		return strings.ToLower(p)
	}
	if dot < 0 {
		return "", part(s)
	}
	return part(s[:dot]), part(s[dot+1:])
}

func unknownShard(name string) error {
	return pgError(codeUndefinedObject, fmt.Sprintf("shard %q does not exist", name), "")
}

// PreparedReason is the Reason of an unhinted COMMIT or ROLLBACK PREPARED:
// its shard is found when it runs, by asking every shard's
// pg_prepared_xacts (the proxy keeps no record of its own, see
// Statement.TwoPhase).
const PreparedReason = "COMMIT/ROLLBACK PREPARED -> the shard where its gid is prepared (looked up when it runs)"

// FinishesPrepared reports COMMIT PREPARED and ROLLBACK PREPARED.
func (st *Statement) FinishesPrepared() bool { return st.TwoPhase == 'C' || st.TwoPhase == 'R' }

// hintRoute is the route a shard hint gives: the statement's
// /* shard: ... */ comment, else the session's SET shardproxy.shard.
// ok is false when there is no hint.
func (r *Router) hintRoute(ctx context.Context, st *Statement, args Args) (rt Route, ok bool, err error) {
	if table, value, isKey := strings.Cut(st.hint, "="); isKey {
		rt, err = r.keyHinted(ctx, st.facts, table, value)
		return rt, true, err
	} else if st.hint != "" {
		rt, err = r.hinted(st.hint, "/* shard: "+st.hint+" */ comment")
		return rt, true, err
	}
	if args.SessionShard != "" {
		rt, err = r.hinted(args.SessionShard, "SET "+HintParameter+" = "+args.SessionShard)
		return rt, true, err
	}
	return Route{}, false, nil
}

func (r *Router) hinted(shard, why string) (Route, error) {
	i, ok := r.shardIdx[shard]
	if !ok {
		return Route{}, unknownShard(shard)
	}
	return Route{Kind: RouteHint, Shards: r.single[i], Reason: why + " -> " + shard}, nil
}

func (r *Router) routeTables(ctx context.Context, st *Statement, args *Args) (Route, error) {
	var sharded, refs, unlisted int
	var writeRef, firstUnlisted *tableUse
	for i := range st.uses {
		u := &st.uses[i]
		switch {
		case u.sharded():
			sharded++
		case u.info != nil:
			refs++
			if u.write && writeRef == nil {
				writeRef = u
			}
		default:
			unlisted++
			if firstUnlisted == nil {
				firstUnlisted = u
			}
		}
	}
	if st.createAs {
		for i := range st.uses {
			if u := &st.uses[i]; u.sharded() {
				return Route{}, pgError(codeFeatureNotSupport,
					fmt.Sprintf("CREATE TABLE AS or SELECT INTO reading sharded table %s is not supported", u.name),
					"create the table with CREATE TABLE, then fill it with INSERT ... SELECT per shard key")
			}
		}
		return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
			Reason: "CREATE TABLE AS without sharded tables -> default shard " + r.cfg.Shards[r.defaultIdx].Name}, nil
	}
	if st.Kind == KindDDL || st.other {
		// A view over sharded or reference tables exists on every shard
		// (its CREATE VIEW named them): so must its DROP, ALTER and
		// COMMENT go.
		for i := range st.uses {
			if u := &st.uses[i]; u.info == nil && (st.facts.shardedView(u.rel) != "" || st.facts.referenceView(u.rel) != "") {
				unlisted--
				sharded++
			}
		}
		return r.routeUtility(st, sharded+refs, unlisted), nil
	}
	if writeRef != nil {
		for i := range st.uses {
			if u := &st.uses[i]; u.info == nil || !u.info.ref {
				return Route{}, pgError(codeFeatureNotSupport,
					fmt.Sprintf("statement writes reference table %s and reads table %s, which is not on every shard", writeRef.name, u.name),
					"write reference tables with statements that read only reference tables")
			}
		}
		return r.broadcast(writeRef.name + ": write to reference table"), nil
	}
	if sharded == 0 {
		if refs+unlisted == 0 {
			if st.advisoryLock {
				return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
					Reason: "advisory lock -> default shard " + r.cfg.Shards[r.defaultIdx].Name + " (one lock space for every client)"}, nil
			}
			if st.defaultCall != "" {
				return r.defaultCallRoute(st.defaultCall), nil
			}
			return Route{Kind: RouteAny, Reason: "no table -> any shard"}, nil
		}
		why := st.uses[0].name + ": reference table"
		if firstUnlisted != nil {
			why = firstUnlisted.name + ": not in the shard map"
		}
		return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx], Reason: why + " -> default shard " + r.cfg.Shards[r.defaultIdx].Name,
			AnyCopy: firstUnlisted == nil && st.anyCopy && st.defaultCall == ""}, nil
	}
	if st.defaultCall != "" {
		return Route{}, defaultCallRefusal(st.defaultCall)
	}

	// Locate every sharded table occurrence; the statement goes to the
	// union of their shards.
	var reason [160]byte
	why := reason[:0]
	var total uint64
	anyAll := false
	var firstStrat, ownerless *tableUse
	for i := range st.uses {
		u := &st.uses[i]
		if !u.sharded() {
			continue
		}
		if firstStrat == nil {
			firstStrat = u
		}
		if len(why) > 0 {
			why = append(why, "; "...)
		}
		mask, all, w, err := r.locate(ctx, u, args, why)
		if err != nil {
			return Route{}, err
		}
		why = w
		if u.insert && bits.OnesCount64(mask) > 1 && st.split != nil && &st.uses[st.split.use] == u {
			return r.routeSplit(ctx, st, u, args, why)
		}
		if u.insert && bits.OnesCount64(mask) > 1 && (len(u.vals) == 1 || len(u.rows) == 1) {
			// One row, on no one shard: a key Postgres converts first
			// (414.5 into an integer key is rounded).
			return Route{}, pgError(codeFeatureNotSupport,
				fmt.Sprintf("the shard key %s.%s of the INSERT's row is not a value of the key's type, so its shard is not known", u.name, u.info.key),
				"send the key as a value of its type, computed in the application")
		}
		if u.insert && bits.OnesCount64(mask) > 1 {
			return Route{}, pgError(codeFeatureNotSupport, "multi-row INSERT spans shards "+r.joinNames(mask),
				"insert rows for different shard keys in separate statements")
		}
		if mask == 0 && !all && ownerless == nil {
			ownerless = u
		}
		total |= mask
		anyAll = anyAll || all
	}
	if total == 0 {
		// No shard holds the keys. Reading nothing is only right when no
		// row of this one table means no row at all (not for count(*),
		// NOT EXISTS or an outer join); otherwise any shard of the
		// strategy answers correctly, since none holds the keys.
		if len(st.uses) == 1 && ownerless.topWhere && st.inexact == "" && !st.Explain &&
			(st.Kind == KindSelect || st.Kind == KindUpdate || st.Kind == KindDelete) {
			return Route{Kind: RouteNone, Reason: string(why)}, nil
		}
		m := r.stratMask[ownerless.info.strat.Name()]
		total = m & -m
		why = append(why, " (any shard of "...)
		why = append(why, ownerless.info.strat.Name()...)
		why = append(why, " answers)"...)
	}
	if err := r.checkKeyUpdate(ctx, st, args, total); err != nil {
		return Route{}, err
	}
	if unlisted > 0 && total != 1<<r.defaultIdx {
		return Route{}, pgError(codeFeatureNotSupport,
			fmt.Sprintf("statement joins table %s on the default shard with sharded table %s on %s",
				firstUnlisted.name, firstStrat.name, r.shardsPhrase(total)),
			"move the table into the shard map (as a reference table or colocated with "+firstStrat.name+")")
	}
	if bits.OnesCount64(total) == 1 {
		return Route{Kind: RouteSingle, Shards: r.single[bits.TrailingZeros64(total)], Reason: string(why)}, nil
	}

	rt := Route{Kind: RouteMulti, Shards: r.names(total), Reason: string(why)}
	if anyAll {
		rt.Kind = RouteAll
	}
	keyHint := fmt.Sprintf("add a condition on the shard key (%s) so the statement targets one shard", st.noKey)
	// What the merge refuses, one Postgres may answer over the gathered
	// rows (plan_build_gather.go).
	gather := func(refusal error) (Route, error) {
		if st.cursor {
			// The session plans the cursor's query itself (CursorAcrossShards),
			// which may be gathered.
			return Route{}, pgError(codeFeatureNotSupport, msgCursorAcrossShards, keyHint)
		}
		if g := r.gathered(st); g != nil && !args.MergeOnly {
			rt.Merge, rt.Plan = MergePlan, g
			return rt, nil
		}
		return Route{}, refusal
	}
	if st.unjoined != "" {
		msg := fmt.Sprintf("statement joins %s across shards without equating their shard keys", st.unjoined)
		if st.unjoinedStrategies {
			msg = fmt.Sprintf("statement joins %s, which are sharded by different strategies, across shards", st.unjoined)
		}
		hint := "join the tables on their shard keys, or " + keyHint
		if st.lossyCast != "" {
			hint = fmt.Sprintf("%s casts a shard key out of its type, and keys equal after such a cast can live on different shards ('7' and '007' are one integer, two text keys); join on the keys as they are, or %s",
				st.lossyCast, keyHint)
		}
		return gather(pgError(codeFeatureNotSupport, msg, hint))
	}
	if st.plan != nil || st.planErr == nil && st.Kind == KindSelect {
		if err := r.checkOuterAggs(ctx, st, args, keyHint); err != nil {
			return gather(err)
		}
	}
	switch {
	case st.cursor:
		// The session declares it on every shard and merges (CursorAcrossShards).
		return Route{}, pgError(codeFeatureNotSupport, msgCursorAcrossShards, keyHint)
	case st.Kind == KindInsert && !st.insertSelect:
		return Route{}, pgError(codeFeatureNotSupport,
			"INSERT reads sharded tables on shards "+r.joinNames(total), keyHint)
	case st.insertSpan != nil:
		return Route{}, st.insertSpan
	case st.Explain && (st.Kind != KindSelect || st.MayWrite):
		// EXPLAIN of a write: the shards run the client's statement
		// (explainShards explains it so, or with ANALYZE lets it run as
		// the write runs, labelling the shards' plans).
		rt.Merge = MergeConcat
	case st.planErr != nil:
		return gather(st.planErr)
	case st.plan != nil && args.CustomSearchPath && len(st.shadowedAggs) > 0:
		// Merged as Postgres' own, it could be a user's of the same name
		// in a schema the session's search_path puts before pg_catalog.
		name := st.shadowedAggs[0]
		return Route{}, pgError(codeFeatureNotSupport,
			fmt.Sprintf("aggregate %s() across shards under a search_path other than the default: a user-defined aggregate is also named %s", name, name),
			"write pg_catalog."+name+"() for Postgres' own, or the schema of the user's")
	case st.plan != nil:
		rt.Merge, rt.Plan = MergePlan, st.plan
	case st.inexact != "":
		return gather(pgError(codeFeatureNotSupport, st.inexact+" across shards", keyHint))
	case st.Kind == KindUpdate || st.Kind == KindDelete || st.Kind == KindInsert:
		rt.Merge = MergeSumTag
	default:
		rt.Merge = MergeConcat
	}
	return rt, nil
}

// routeUtility places DDL and maintenance statements: every shard when
// they touch a sharded or reference table (each shard holds a copy of its
// schema), else the default shard; table-less DDL (CREATE FUNCTION,
// CREATE EXTENSION, CREATE ROLE ...) and server-wide maintenance (VACUUM,
// CHECKPOINT, ALTER SYSTEM) go everywhere, other statements anywhere.
func (r *Router) routeUtility(st *Statement, shardedOrRef, unlisted int) Route {
	switch {
	case st.onDefault:
		return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
			Reason: st.Tables[0] + ": not in the shard map -> default shard " + r.cfg.Shards[r.defaultIdx].Name}
	case shardedOrRef > 0:
		what := "DDL"
		if st.Kind != KindDDL {
			what = "utility statement"
		}
		return r.broadcast(st.Tables[0] + ": " + what + " on a table in the shard map")
	case st.unknownOwned:
		return r.broadcast("an index or sequence no table owns, or that the shards' catalogs have not shown yet")
	case unlisted > 0:
		return Route{Kind: RouteDefault, Shards: r.single[r.defaultIdx],
			Reason: st.Tables[0] + ": not in the shard map -> default shard " + r.cfg.Shards[r.defaultIdx].Name}
	case st.Kind == KindDDL:
		return r.broadcast("DDL without a table")
	case st.serverWide:
		return r.broadcast("server-wide maintenance")
	}
	return Route{Kind: RouteAny, Reason: "no table -> any shard"}
}

func (r *Router) broadcast(why string) Route {
	return Route{Kind: RouteBroadcast, Shards: r.names(r.allMask), Merge: MergeFirst, Reason: why + " -> every shard"}
}

// checkKeyUpdate allows `UPDATE t SET key = v` only when v lives on the
// single shard the statement already goes to.
func (r *Router) checkKeyUpdate(ctx context.Context, st *Statement, args *Args, total uint64) error {
	for i, v := range st.setKey {
		u := &st.uses[i]
		refuse := pgError(codeFeatureNotSupport,
			fmt.Sprintf("updating the shard key column %s is not supported", u.info.key),
			"delete the row and insert it again with the new key")
		if bits.OnesCount64(total) != 1 {
			return refuse
		}
		var ct columnType
		k, state, err := r.bindColumnKey(ctx, u, v, args, &ct)
		if err != nil || state != bound {
			return refuse
		}
		shard, err := u.info.strat.Locate(ctx, k, strategies.Write)
		if err != nil || r.shardIdx[shard] != bits.TrailingZeros64(total) {
			return refuse
		}
	}
	return nil
}

// locate returns the shards u can touch; all is set when the key is free.
// It appends u's part of the route reason to why.
func (r *Router) locate(ctx context.Context, u *tableUse, args *Args, why []byte) (mask uint64, all bool, _ []byte, _ error) {
	strat := u.info.strat
	why = append(why, u.info.name...)
	if !u.keyed {
		why = append(why, ": no shard key in WHERE -> all shards of "...)
		why = append(why, strat.Name()...)
		return r.stratMask[strat.Name()], true, why, nil
	}
	vals := u.vals
	if u.rows != nil {
		var err error
		if vals, err = r.insertKeys(ctx, u, args); err != nil {
			return 0, false, why, err
		}
	}
	why = append(why, '.')
	why = append(why, u.info.key...)
	if len(vals) == 1 {
		why = append(why, " = "...)
	} else {
		why = append(why, " IN ("...)
	}
	intent := strategies.Read
	if u.insert {
		intent = strategies.Write
	}
	kt := strat.KeyType()
	var ct columnType // looked up once, and only if needed
	for j, v := range vals {
		if j > 0 {
			why = append(why, ", "...)
		}
		k, state, err := r.bindColumnKey(ctx, u, v, args, &ct)
		if state == bound && !u.insert && kt == strategies.KeyInt && pgCode(err) == codeOutOfRange {
			// `id = 9223372036854775808` compares as numeric in Postgres:
			// no row, and no error. Written '9223372036854775808', or as a
			// parameter, it is an int8 out of range: the shards say 22003,
			// as one Postgres would. Either way no shard is the answer.
			state, err = boundFree, nil
		}
		if err != nil && state != boundUnsure {
			return 0, false, why, err
		}
		switch state {
		case boundUnsure:
			if u.insert {
				return 0, false, why, unsureKeyError(u, v, err)
			}
			why = append(why, "? ("...)
			why = append(why, unsureReason(err)...)
			why = append(why, ") -> all shards of "...)
			why = append(why, strat.Name()...)
			return r.stratMask[strat.Name()], true, why, nil
		case boundNull:
			if u.insert {
				return 0, false, why, &pgconn.PgError{Severity: "ERROR", Code: codeNotNullViolation,
					Message: fmt.Sprintf("null value in shard key column %q", u.info.key), TableName: u.info.name, ColumnName: u.info.key}
			}
			why = append(why, "NULL"...) // matches no row
			continue
		case boundFree:
			why = append(why, "? (not a "...)
			why = append(why, kt.String()...)
			why = append(why, ") -> all shards of "...)
			why = append(why, strat.Name()...)
			return r.stratMask[strat.Name()], true, why, nil
		}
		why = appendKey(why, k)
		shard, err := strat.Locate(ctx, k, intent)
		if errors.Is(err, strategies.ErrNoOwner) && !u.insert {
			continue
		}
		if err != nil {
			return 0, false, why, asPgError(err)
		}
		i, ok := r.shardIdx[shard]
		if !ok {
			return 0, false, why, pgError(codeInternal, fmt.Sprintf("strategy %s placed a key on unknown shard %q", strat.Name(), shard), "")
		}
		mask |= 1 << i
	}
	if len(vals) > 1 {
		why = append(why, ')')
	}
	why = append(why, " -> "...)
	why = append(why, r.stratType[strat.Name()]...)
	why = append(why, ' ')
	why = append(why, strat.Name()...)
	why = append(why, " -> "...)
	if mask == 0 {
		why = append(why, "no owner, read nothing"...)
	}
	for i := range r.single {
		if mask&(1<<i) != 0 {
			if why[len(why)-1] != ' ' {
				why = append(why, ", "...)
			}
			why = append(why, r.single[i][0]...)
		}
	}
	return mask, false, why, nil
}

// checkOuterAggs refuses a multi-shard statement with an aggregate in a
// subquery whose unqualified columns none of the subquery's FROM items
// has: Postgres resolves them outward, and the aggregate is the outer
// query's (see outerAggregate). It refuses too when a FROM item's columns
// are unknown (m.unknown) and no table has the column: guessing could be
// silently wrong, and qualifying the column settles it. Without a catalog
// lookup (Columns nil, or it fails) the columns are taken as the
// subquery's own.
func (r *Router) checkOuterAggs(ctx context.Context, st *Statement, args *Args, keyHint string) error {
	if len(st.maybeOuterAggs) == 0 || args.Columns == nil {
		return nil
	}
	for _, m := range st.maybeOuterAggs {
		outer := true
		for _, t := range m.rels {
			cols, err := args.Columns(ctx, t.schema, t.rel)
			if err != nil {
				return nil // the shards report a missing table
			}
			cols = cols[min(t.renamed, len(cols)):] // FROM t AS a(x, y) hides t's first names
			for _, c := range m.cols {
				if slices.Contains(cols, c) {
					outer = false
				}
			}
		}
		switch {
		case !outer:
		case m.unknown:
			return refuse(fmt.Sprintf("aggregate %s() over unqualified columns in a subquery", m.agg),
				fmt.Sprintf("shardproxy cannot tell whether %s belongs to the subquery or to the outer query (an aggregate of the outer query aggregates its rows); qualify it with its table or alias, or %s",
					strings.Join(m.cols, ", "), keyHint))
		default:
			return outerAggError(m.agg, keyHint)
		}
	}
	return nil
}

// insertKeys picks the shard key of every VALUES row of an INSERT without
// a column list. The key's position depends on the table's current columns
// (ALTER TABLE moves it), so it is looked up per execution and never
// stored in the cached Statement.
func (r *Router) insertKeys(ctx context.Context, u *tableUse, args *Args) ([]valueRef, error) {
	if args.Columns == nil {
		return nil, pgError(codeFeatureNotSupport,
			fmt.Sprintf("INSERT into sharded table %s needs a column list", u.name),
			fmt.Sprintf("name the columns in INSERT INTO %s (...) so shardproxy can find the shard key", u.name))
	}
	cols, err := args.Columns(ctx, u.schema, u.rel)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, pgError(codeInternal, fmt.Sprintf("looking up the columns of %s: %v", u.name, err), "")
	}
	pos := slices.Index(cols, u.info.key)
	if pos < 0 {
		return nil, &pgconn.PgError{Severity: "ERROR", Code: codeUndefinedColumn,
			Message:   fmt.Sprintf("shard key column %q does not exist in table %s", u.info.key, u.name),
			Hint:      "the shard map names a key column the table does not have; fix the table or the config",
			TableName: u.rel, ColumnName: u.info.key}
	}
	vals := make([]valueRef, len(u.rows))
	for i, row := range u.rows {
		switch {
		case pos >= len(row):
			// Postgres fills missing trailing columns with their defaults.
			return nil, errNoKeyColumn(u, fmt.Sprintf("give every row a value for %s (column %d), or name the columns", u.info.key, pos+1))
		case row[pos].expr:
			return nil, errKeyNotValue(u)
		}
		vals[i] = row[pos]
	}
	return vals, nil
}

func appendKey(b []byte, k strategies.Key) []byte {
	if k.Type == strategies.KeyInt {
		return strconv.AppendInt(b, k.Int, 10)
	}
	b = append(b, '\'')
	b = append(b, k.String()...)
	return append(b, '\'')
}

// asPgError keeps errors that already carry a SQLSTATE (a directory
// lookup that failed with 08006, say) and marks the rest internal.
func asPgError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return err
	}
	return pgError(codeInternal, "locating shard key: "+err.Error(), "")
}

const (
	bound     = iota
	boundNull // NULL: matches no row (reads), violates the key (INSERT)
	boundFree // cannot narrow the route: the statement reads everywhere
	// boundUnsure: only Postgres can tell the value (a timestamp that
	// depends on an unknown TimeZone, 'now'): reads go everywhere, an
	// INSERT is refused. The error says why.
	boundUnsure
)

// bindKey turns a value reference into a key of type kt.
func bindKey(v valueRef, kt strategies.KeyType, args *Args) (strategies.Key, int, error) {
	text := v.text
	if v.param > 0 {
		if v.param > len(args.Params) {
			return strategies.Key{}, boundFree, nil // Postgres will complain about the missing value
		}
		p := args.Params[v.param-1]
		if p == nil {
			return strategies.Key{}, boundNull, nil
		}
		binary := paramFormat(args.Formats, v.param-1) == 1
		oid := paramOID(args.ParamOIDs, v.param-1)
		if binary && oid == 0 && len(v.casts) > 0 && !castKeyType(kt, v.casts[0]) {
			// A parameter the client did not type takes the type of the
			// cast it is written with ($1::numeric is a numeric): its bytes
			// are that type's, not the key's (a numeric's ten bytes are not
			// an int8; a zero numeric's eight would read as one).
			return strategies.Key{}, boundFree, nil
		}
		if oid != 0 && !keyParamType(kt, oid, binary) {
			// Postgres converts it to the key's type first (a float8
			// 150.0, a timestamp read in the session's TimeZone, a
			// bpchar without its trailing blanks): a value the
			// strategies would not see, so it does not narrow the route.
			return strategies.Key{}, boundFree, nil
		}
		if binary {
			if v.neg {
				return strategies.Key{}, boundFree, nil
			}
			k, err := strategies.DecodeBinaryKey(kt, p)
			return k, bound, err
		}
		if kt == strategies.KeyInt {
			if n, ok := parseIntFast(p, v.neg); ok {
				return strategies.Key{Type: strategies.KeyInt, Int: n}, bound, nil
			}
		}
		text = string(p)
	} else if v.null {
		return strategies.Key{}, boundNull, nil
	}
	if v.neg {
		if t, ok := strings.CutPrefix(text, "-"); ok {
			text = t
		} else {
			text = "-" + text
		}
	}
	k, err := strategies.ParseKey(kt, text)
	if err != nil && kt == strategies.KeyInt && strings.ContainsAny(text, ".eE") {
		// `id = 1.5` compares as numeric in Postgres: no error, and no
		// single shard either.
		return strategies.Key{}, boundFree, nil
	}
	if err != nil {
		return strategies.Key{}, bound, err
	}
	return k, bound, nil
}

// paramOID is parameter i's declared type, 0 when not declared.
func paramOID(oids []uint32, i int) uint32 {
	if i < len(oids) {
		return oids[i]
	}
	return 0
}

// keyParamType tells whether a parameter declared as type oid carries a
// key of type kt as it is: in binary, only the key type's own types (a
// float8's 8 bytes are no int8); in text, any type but the blank-padded
// ones, whose text the strategies would read with its trailing blanks.
func keyParamType(kt strategies.KeyType, oid uint32, binary bool) bool {
	if !binary {
		return oid != oidBpchar && oid != oidChar
	}
	switch kt {
	case strategies.KeyInt:
		return oid == oidInt8 || oid == oidInt4 || oid == oidInt2
	case strategies.KeyText:
		return oid == oidText || oid == oidVarchar
	case strategies.KeyUUID:
		return oid == oidUUID
	case strategies.KeyTimestamp:
		return oid == oidTimestamp
	case strategies.KeyTimestampTZ:
		return oid == oidTimestamptz
	}
	return false
}

// castKeyType tells whether a binary parameter cast to type name (the
// innermost cast of valueRef.casts) is sent as a key of type kt is.
func castKeyType(kt strategies.KeyType, name string) bool {
	t, ok := keyTypeNamed(name)
	return ok && t == kt
}

// keyTypeNamed is the key type whose values type name holds (int4 and
// bigint hold KeyInt's).
func keyTypeNamed(name string) (strategies.KeyType, bool) {
	switch name {
	case "int2", "int4", "int8", "smallint", "integer", "bigint":
		return strategies.KeyInt, true
	case "text", "varchar":
		return strategies.KeyText, true
	case "uuid":
		return strategies.KeyUUID, true
	case "timestamp":
		return strategies.KeyTimestamp, true
	case "timestamptz":
		return strategies.KeyTimestampTZ, true
	}
	return 0, false
}

// paramFormat applies the Bind message's format-code rules.
func paramFormat(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

// parseIntFast parses plain decimal digits (the common case) without
// allocating; anything else goes through strategies.ParseKey.
func parseIntFast(b []byte, neg bool) (int64, bool) {
	if len(b) > 0 && b[0] == '-' {
		neg = !neg
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (r *Router) names(mask uint64) []string {
	if bits.OnesCount64(mask) == 1 {
		return r.single[bits.TrailingZeros64(mask)]
	}
	out := make([]string, 0, bits.OnesCount64(mask))
	for i := range r.single {
		if mask&(1<<i) != 0 {
			out = append(out, r.single[i][0])
		}
	}
	return out
}

func (r *Router) joinNames(mask uint64) string { return strings.Join(r.names(mask), ", ") }

func (r *Router) shardsPhrase(mask uint64) string {
	if bits.OnesCount64(mask) == 1 {
		return "shard " + r.joinNames(mask)
	}
	return "shards " + r.joinNames(mask)
}

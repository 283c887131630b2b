package router

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Under transaction pooling a backend serves one client for one
// transaction and then the next client. Anything a statement leaves on
// its backend beyond the transaction — a session advisory lock, a
// temporary table, a session setting made by a function, the seed of
// random() (setseed), a cursor WITH HOLD — would be
// handed to whichever client comes next, and be missing for this
// client's next transaction. PgBouncer lets such statements through and
// documents the breakage; we refuse them, naming the transaction-scoped
// form that works. (SET, PREPARE and LISTEN are handled elsewhere: SET is
// carried from backend to backend, the other two are refused by kind.)

// cursorOptHold is CURSOR_OPT_HOLD (parsenodes.h): DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// sessionAdvisoryLocks are the functions whose locks outlive the
// transaction (the _xact_ variants end with it).
var sessionAdvisoryLocks = map[string]bool{
	"pg_advisory_lock": true, "pg_advisory_lock_shared": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_advisory_unlock": true, "pg_advisory_unlock_shared": true, "pg_advisory_unlock_all": true,
}

// poolingFacts is what one walk over a statement learns about the state
// it would leave on its backend or in its transaction.
type poolingFacts struct {
	refusal                     *pgconn.PgError // sessionStateError's answer
	advisory, localConfig, xact bool            // txn-scoped functions called (see below)
	sessionSequence             bool            // currval() or lastval() called
	setConfigs                  []setConfigCall
	sessionConfig               *sessionConfig // the statement is set_config(..., false) alone (setconfig.go)
	exportsSnapshot             bool           // pg_export_snapshot() called
	sizeCalls                   []sizeCall     // size functions of a named table (sizes.go)
	setvals                     []callArg      // setval()'s sequence, named by a constant or parameter (setval.go)
	serverCall                  string         // a function of everyServerCalls called (server_calls.go)
	defaultCall                 string         // a function of defaultShardCalls called (default_calls.go)
}

// analyzePooling walks n once for sessionStateError's refusals and the
// transaction-scoped functions it calls.
func analyzePooling(n *pg.Node) poolingFacts {
	var pf poolingFacts
	pf.refusal = sessionStateError(n)
	pf.sessionConfig = sessionConfigOf(n) // carried like SET (setconfig.go)
	walk(n, func(c *pg.Node) bool {
		if rv := c.GetRangeVar(); rv != nil && preparedStatementsView(rv) && pf.refusal == nil {
			pf.refusal = errPreparedStatementsView()
		}
		f := c.GetFuncCall()
		if f == nil {
			return true
		}
		switch name := funcName(f); {
		case name == "pg_prepared_statement" && pf.refusal == nil:
			pf.refusal = errPreparedStatementsView()
		case sessionAdvisoryLocks[name] && pf.refusal == nil:
			pf.refusal = pgError(codeFeatureNotSupport,
				"session-level advisory locks ("+name+") are not supported under transaction pooling",
				"the lock would stay on a pooled shard connection that other clients use next; use pg_advisory_xact_lock or pg_try_advisory_xact_lock inside a transaction")
		case name == "set_config":
			if pf.sessionConfig == nil { // (a session setting, carried: not a local one)
				pf.localConfig = true
				if len(f.Args) == 3 {
					pf.setConfigs = append(pf.setConfigs, setConfigCall{name: argOf(f.Args[0]), value: argOf(f.Args[1])})
				}
			}
			// Routing refuses even the carried shapes: the proxy serves
			// them before routing (setconfig.go), and only there.
			if !localSetConfig(f) && pf.refusal == nil {
				pf.refusal = pgError(codeFeatureNotSupport,
					"set_config(..., false) is not supported under transaction pooling",
					"the setting would stay on a pooled shard connection that other clients use next; use SET, which shardproxy carries to every connection the session uses (as it does SELECT set_config('name', 'value', false) sent as a simple query of its own), or set_config(name, value, true) inside a transaction")
			}
		case name == "setseed" && pf.refusal == nil:
			// Inside a transaction block too: the seed would outlive it
			// there just the same, and reach only one shard's random().
			pf.refusal = pgError(codeFeatureNotSupport,
				"setseed() is not supported under transaction pooling",
				"the seed would stay on a pooled shard connection that other clients use next, and this session's next random() may run on another connection or shard; for a repeatable order or sample use a hash of a key (ORDER BY md5(id::text || 'seed')) or TABLESAMPLE ... REPEATABLE (seed)")
		case advisoryXactLocks[name]:
			pf.advisory = true
		case name == "pg_export_snapshot":
			pf.exportsSnapshot = true
		case relationSizeFuncs[name] && len(f.Args) > 0:
			if a := argOf(f.Args[0]); a.param > 0 || a.text != "" {
				pf.sizeCalls = append(pf.sizeCalls, sizeCall{fn: name, arg: a})
			}
		case xactIDFuncs[name]:
			pf.xact = true
		case name == "currval" || name == "lastval":
			pf.sessionSequence, pf.xact = true, true
		case defaultShardCalls[name] != "":
			pf.defaultCall = name
		case everyServerCalls[name]:
			pf.serverCall = name
		case name == "nextval" || name == "setval":
			pf.xact = true // in the transaction, so that its currval() reads it
			if name == "setval" && len(f.Args) >= 2 {
				if a := argOf(f.Args[0]); a.param > 0 || a.text != "" {
					pf.setvals = append(pf.setvals, a)
				}
			}
		}
		return true
	})
	return pf
}

// Code the router cannot follow may change a session setting: a DO
// block, a procedure or a function that runs SET, RESET or
// set_config(..., false), or builds such a statement in dynamic SQL.
// Unlike SET, such a change cannot follow the client to its next backend
// (the proxy does not see it), and it must not stay on the pooled one for
// the next client. Statement.HidesSettings marks a statement that may
// make one; the proxy resets its backend (RESET ALL, then the session's
// settings) before the backend's next use. Every DO block and CALL is
// taken to; so is a statement that calls a user function whose body says
// one of settingWords, or calls such a function. UPDATE ... SET counts
// too: a false alarm costs only that reset.

// settingWords are the words of a body that may change a setting.
var settingWords = map[string]bool{"set": true, "reset": true, "set_config": true, "execute": true}

// settingFunctions finds, among functions (name -> the words of its
// bodies), those that may change a session setting, each with why.
func settingFunctions(functions map[string]body) map[string]string {
	return findThroughCalls(functions, func(name string, b body, found map[string]string) string {
		return saysOrCalls(name, b, found, settingWords)
	})
}

// hidesSettings reports whether n may change a session setting the
// proxy cannot see (Statement.HidesSettings); setting are the user
// functions that may.
func hidesSettings(n *pg.Node, setting map[string]string) bool {
	if n.GetDoStmt() != nil || n.GetCallStmt() != nil {
		return true
	}
	found := false
	walk(n, func(c *pg.Node) bool {
		if f := c.GetFuncCall(); f != nil && setting[funcName(f)] != "" {
			found = true
		}
		return !found
	})
	return found
}

// sessionStateError returns the 0A000 for a statement that creates a
// temporary relation or a cursor WITH HOLD, or nil; analyzePooling adds
// the refusals found in its function calls.
func sessionStateError(n *pg.Node) *pgconn.PgError {
	if what := tempRelation(n); what != "" {
		return pgError(codeFeatureNotSupport,
			"temporary "+what+" are not supported under transaction pooling",
			"it would stay on a pooled shard connection that other clients use next; create it with ON COMMIT DROP inside BEGIN ... COMMIT, or use a regular one")
	}
	if dc := n.GetDeclareCursorStmt(); dc != nil && dc.Options&cursorOptHold != 0 {
		return pgError(codeFeatureNotSupport,
			"cursors WITH HOLD are not supported under transaction pooling",
			"the cursor would stay on a pooled shard connection that other clients use next; declare it without WITH HOLD inside BEGIN ... COMMIT")
	}
	return nil
}

// preparedStatementsView reports whether rv names pg_prepared_statements.
// A pooled backend's view lists the copies of statements that every
// client's statements share there (proxy/extended.go), named sp_..., with
// other clients' texts, while the client's own live in the proxy: what
// Postgres would list for the session is nowhere on a shard.
func preparedStatementsView(rv *pg.RangeVar) bool {
	return rv.Relname == "pg_prepared_statements" && (rv.Schemaname == "" || rv.Schemaname == "pg_catalog")
}

func errPreparedStatementsView() *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		"pg_prepared_statements is not supported under transaction pooling",
		"shardproxy keeps each session's prepared statements itself; a shard connection's pg_prepared_statements lists the statements all clients share there, not this session's")
}

// tempRelation names what a CREATE TEMP ... or SELECT ... INTO TEMP
// creates that outlives its transaction ("tables", "views", "sequences"),
// or "" if it creates none. ON COMMIT DROP tables end with the
// transaction and are fine.
func tempRelation(n *pg.Node) string {
	temp := func(rv *pg.RangeVar) bool { return rv != nil && rv.Relpersistence == "t" }
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		if temp(x.CreateStmt.Relation) && x.CreateStmt.Oncommit != pg.OnCommitAction_ONCOMMIT_DROP {
			return "tables"
		}
	case *pg.Node_CreateTableAsStmt:
		if into := x.CreateTableAsStmt.Into; into != nil && temp(into.Rel) && into.OnCommit != pg.OnCommitAction_ONCOMMIT_DROP {
			return "tables"
		}
	case *pg.Node_SelectStmt:
		if into := x.SelectStmt.IntoClause; into != nil && temp(into.Rel) && into.OnCommit != pg.OnCommitAction_ONCOMMIT_DROP {
			return "tables"
		}
	case *pg.Node_ViewStmt:
		if temp(x.ViewStmt.View) {
			return "views"
		}
	case *pg.Node_CreateSeqStmt:
		if temp(x.CreateSeqStmt.Sequence) {
			return "sequences"
		}
	case *pg.Node_ExplainStmt:
		return tempRelation(x.ExplainStmt.Query) // EXPLAIN ANALYZE runs it
	}
	return ""
}

// localSetConfig reports whether set_config's is_local argument is the
// keyword true: only then does the setting end with the transaction. A
// string such as 'on' is not looked at: the simple protocol's literal
// normalisation turns it into a parameter, and the answer must not
// depend on the protocol.
func localSetConfig(f *pg.FuncCall) bool {
	if len(f.Args) != 3 {
		return false
	}
	arg := f.Args[2]
	if tc := arg.GetTypeCast(); tc != nil {
		arg = tc.Arg
	}
	b, ok := arg.GetAConst().GetVal().(*pg.A_Const_Boolval)
	return ok && b.Boolval.Boolval
}

// Functions that act on the transaction they run in. Before a transaction
// has a shard, the simple protocol answers a statement that reads no table
// outside it (session.runEphemeral); these must run inside it instead, so
// Statement.TxnScoped marks them.
var (
	advisoryXactLocks = map[string]bool{
		"pg_advisory_xact_lock": true, "pg_advisory_xact_lock_shared": true,
		"pg_try_advisory_xact_lock": true, "pg_try_advisory_xact_lock_shared": true,
	}
	xactIDFuncs = map[string]bool{
		"txid_current": true, "txid_current_if_assigned": true,
		"pg_current_xact_id": true, "pg_current_xact_id_if_assigned": true,
	}
)

// setConfigCall is a set_config call's name and value arguments.
type setConfigCall struct{ name, value callArg }

// callArg is a function argument known before execution: a string
// constant, or parameter $param (0: neither, an expression).
type callArg struct {
	text  string
	param int
}

func argOf(n *pg.Node) callArg {
	for tc := n.GetTypeCast(); tc != nil; tc = n.GetTypeCast() {
		n = tc.Arg
	}
	if s, ok := n.GetAConst().GetVal().(*pg.A_Const_Sval); ok {
		return callArg{text: s.Sval.Sval}
	}
	if p := n.GetParamRef(); p != nil {
		return callArg{param: int(p.Number)}
	}
	return callArg{}
}

// value is the argument's text with params bound (params[i] is $i+1, text
// or binary: a text value's bytes are the same), and whether it is known.
func (a callArg) value(params [][]byte) (string, bool) {
	switch {
	case a.param == 0:
		return a.text, a.text != ""
	case a.param <= len(params) && params[a.param-1] != nil:
		return string(params[a.param-1]), true
	}
	return "", false
}

// setConfigError refuses set_config('client_encoding', v, true) for a v
// the proxy does not serve, or whose value it cannot see, as it refuses
// SET LOCAL client_encoding: keys would be read in the wrong encoding.
func setConfigError(calls []setConfigCall, params [][]byte) error {
	for _, c := range calls {
		name, ok := c.name.value(params)
		if ok && strings.EqualFold(strings.TrimSpace(name), "standard_conforming_strings") {
			if v, ok := c.value.value(params); !ok || !StandardStringsOK(v) {
				return StandardStringsError()
			}
			continue
		}
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "client_encoding") {
			continue
		}
		v, ok := c.value.value(params)
		if !ok {
			return pgError(codeFeatureNotSupport,
				"set_config('client_encoding', ...) with a computed value is not supported by shardproxy",
				"shardproxy reads shard keys and table names as UTF-8; use client_encoding UTF8 and convert in the client")
		}
		if !ClientEncodingOK(v) {
			return ClientEncodingError(v)
		}
	}
	return nil
}

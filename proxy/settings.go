package proxy

import (
	"strconv"
	"strings"

	"github.com/shardproxy/shardproxy/router"
)

// Session settings that change how Postgres reads SQL or prints values,
// which the router and the merge must follow or refuse: extra_float_digits
// (the merge computes with the shards' text) and search_path (the router
// reads unqualified names as public's). client_encoding and
// standard_conforming_strings are refused outright (router/encoding.go).

// roundedFloats reports whether the session's extra_float_digits is below
// 1, so that Postgres (the shards) prints real and double precision values
// rounded to 6 and 15 significant digits (fewer below 0): values the proxy
// must not compute with (router.ExecOptions.RoundedFloats).
func (s *session) roundedFloats() bool {
	if s.tx.roundedFloats {
		return true // SET LOCAL in this transaction (txn.roundedFloats)
	}
	v, ok := s.params["extra_float_digits"]
	return ok && !exactFloatDigits(router.SettingSQL(v))
}

// exactFloatDigits reports whether extra_float_digits set to v (SQL text)
// makes Postgres print floats exactly: 1 or more, or DEFAULT (1 since
// Postgres 12). Anything it cannot read counts as rounded.
func exactFloatDigits(v string) bool {
	v = strings.TrimSpace(unquoteLiteral(v))
	if strings.EqualFold(v, "DEFAULT") {
		return true
	}
	n, err := strconv.Atoi(v)
	return err == nil && n >= 1
}

// mergeOnly reports SET shardproxy.gather = off: the session wants the
// merge's refusals rather than gathered statements (router.Args.MergeOnly).
// The shards keep the setting too (a placeholder setting, as Postgres
// keeps any name with a dot), which makes SHOW, RESET and a transaction's
// rollback work as for any setting; the proxy reads the session's value,
// and a SET LOCAL to off holds to the transaction's end (txn.mergeOnly).
func (s *session) mergeOnly() bool {
	if s.tx.mergeOnly {
		return true // SET LOCAL in this transaction
	}
	v, ok := s.params[router.GatherParameter]
	return ok && gatherOff(router.SettingSQL(v))
}

// gatherOff reads a value of shardproxy.gather as Postgres reads a
// boolean setting: off, false, no, 0 and their prefixes turn it off.
func gatherOff(v string) bool {
	switch strings.ToLower(settingText(v)) {
	case "off", "false", "no", "0", "of", "f", "n", "fa", "fal", "fals":
		return true
	}
	return false
}

// customSearchPath reports whether the session's search_path (set, at
// startup, or SET LOCAL in the open transaction) may differ from the
// default, under which the router reads unqualified names as public's.
func (s *session) customSearchPath() bool {
	if s.tx.customSearchPath {
		return true
	}
	v, ok := s.params["search_path"]
	return ok && !defaultSearchPath(router.SettingSQL(v), s.runtime().Router.MapsLoginSchema())
}

// defaultSearchPath reports whether search_path value v (SQL text)
// resolves unqualified names as the router does (router.Router's table):
// the default, "$user", public, or just public when the map has no table
// in a schema named after the shards' login user (loginSchema; "$user"
// would find it, public alone does not). It runs for every routed
// statement of a session that set search_path, so it reads v in place.
func defaultSearchPath(v string, loginSchema bool) bool {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "DEFAULT") {
		return true
	}
	first, rest, two := strings.Cut(v, ",")
	if !two {
		return !loginSchema && schemaIs(first, "public")
	}
	return schemaIs(first, "$user") && schemaIs(rest, "public")
}

// schemaIs reports whether one search_path item (quoted, or a bare
// identifier folded to lower case) names schema want.
func schemaIs(item, want string) bool {
	item = strings.TrimSpace(item)
	if len(item) >= 2 && (item[0] == '\'' || item[0] == '"') && item[len(item)-1] == item[0] {
		return item[1:len(item)-1] == want
	}
	return strings.EqualFold(item, want)
}

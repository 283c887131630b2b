package proxy

import (
	"context"
	"errors"
	"strings"
	"time"
	_ "time/tzdata" // zone names must resolve without the host's tzdata, as in Postgres

	"github.com/shardproxy/shardproxy/router"
)

// Timestamp shard keys route by the value Postgres stores, which depends
// on the session's TimeZone (a timestamptz written without an offset is a
// wall clock there) and on the key column's type (router.Args TimeZone and
// ColumnType).

// sessionTimeZone caches the *time.Location of the session's TimeZone
// setting; it is recomputed only when the setting's text changes.
type sessionTimeZone struct {
	setting string
	loc     *time.Location
	valid   bool
}

// timeZone returns the session's TimeZone as a location: the client's
// setting (startup parameter or SET), else the server's. nil when it is
// unknown, or a value Go cannot load (Postgres' POSIX strings, offsets,
// abbreviations): the router then treats such keys as unknown, which is
// safe (reads everywhere, INSERT refused).
func (s *session) timeZone() *time.Location {
	setting, ok := s.params["timezone"]
	if ok {
		setting = settingText(router.SettingSQL(setting))
	} else if m := s.srv.serverParams.Load(); m != nil {
		setting, ok = (*m)["TimeZone"] // ParameterStatus: already plain text
	}
	if !ok {
		return nil
	}
	if !s.tz.valid || s.tz.setting != setting {
		s.tz = sessionTimeZone{setting: setting, loc: loadTimeZone(setting), valid: true}
	}
	return s.tz.loc
}

// settingText turns a SET value as the client wrote it into the text
// Postgres stores: a string literal unquoted, a quoted identifier
// unquoted, a bare identifier lower-cased. Anything else (a number, an
// INTERVAL, E'...') is returned as it is and will not load.
func settingText(v string) string {
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		return unquoteLiteral(v)
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		return strings.ReplaceAll(v[1:len(v)-1], `""`, `"`)
	case isBareWord(v):
		return strings.ToLower(v)
	}
	return v
}

func isBareWord(v string) bool {
	for i, r := range v {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return v != ""
}

// loadTimeZone maps a Postgres TimeZone value to a location, or nil.
// Postgres matches zone names case-insensitively, Go does not: names
// written in another case than the tz database's load only for UTC/GMT.
func loadTimeZone(name string) *time.Location {
	switch strings.ToLower(name) {
	case "", "local", "localtime":
		return nil // Go's meaning (the proxy host's zone) is not Postgres'
	case "utc", "gmt", "etc/utc", "etc/gmt", "zulu", "universal":
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil
	}
	return loc
}

// columnTypeSQL returns the type of one live column as format_type names
// it, through a domain to its base type. $1 is a quoted table name, $2 the
// column name.
const columnTypeSQL = `SELECT pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, NULL) ` +
	`FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid ` +
	`WHERE a.attrelid = $1::pg_catalog.regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`

// keyColumnType is the session's router.Args.ColumnType resolver. It
// shares the runtime's column cache (and its invalidation on DDL) under
// keys that cannot collide with tableColumns' (identifiers hold no NUL).
func (s *session) keyColumnType(ctx context.Context, schema, rel, col string) (string, error) {
	rt := s.runtime()
	name := quoteIdentAlways(rel)
	if schema != "" {
		name = quoteIdentAlways(schema) + "." + name
	}
	key := "\x00type\x00" + name + "\x00" + col
	if schema == "" {
		key += "\x00" + s.params["search_path"]
	}
	cached, gen, ok := rt.columns.get(key)
	if ok && len(cached) == 1 {
		return cached[0], nil
	}
	rows, err := s.queryCatalog(ctx, columnTypeSQL, name, col)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 {
		return "", errors.New("column " + col + " of " + name + " not found")
	}
	rt.columns.put(key, gen, rows)
	return rows[0], nil
}

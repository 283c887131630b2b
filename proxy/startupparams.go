package proxy

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardproxy/shardproxy/router"
)

// sessionParams turns a startup message's parameters into the session's
// settings, as SQL text for SET (see session.params). Settings come as
// parameters of their own (pgx RuntimeParams, JDBC) and in "options", the
// command-line switches libpq sends for PGOPTIONS: "-c name=value" and
// "--name=value" are settings, as in Postgres; its other switches are
// refused rather than ignored. Errors are FATAL, as Postgres makes them.
func sessionParams(startup map[string]string) (map[string]string, error) {
	raw := make(map[string]string, len(startup))
	for k, v := range startup {
		switch k {
		case "user", "database", "options", "replication":
			continue
		}
		raw[strings.ToLower(k)] = v
	}
	if err := parseOptions(startup["options"], raw); err != nil {
		return nil, err
	}
	params := make(map[string]string, len(raw))
	for name, v := range raw {
		if name == "client_encoding" && !router.ClientEncodingOK(v) {
			return nil, fatal(router.ClientEncodingError(v))
		}
		if name == "standard_conforming_strings" && !router.StandardStringsOK(v) {
			return nil, fatal(router.StandardStringsError())
		}
		sql, err := setValueSQL(name, v)
		if err != nil {
			return nil, err
		}
		params[name] = sql
	}
	return params, nil
}

// parseOptions adds the settings in an options string to params. The
// string is split as Postgres' pg_split_opts does: on whitespace, with a
// backslash taking the next character literally. Later settings win.
func parseOptions(options string, params map[string]string) error {
	var args []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(options); i++ {
		c := options[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if in {
				args, in = append(args, cur.String()), false
				cur.Reset()
			}
		case c == '\\' && i+1 < len(options):
			i++
			cur.WriteByte(options[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		args = append(args, cur.String())
	}
	for i := 0; i < len(args); i++ {
		var setting, flag string
		switch a := args[i]; {
		case a == "-c":
			if i+1 == len(args) {
				return fatal(pgError("42601", "option requires an argument -- 'c' in the options startup parameter"))
			}
			i++
			setting, flag = args[i], "-c "
		case strings.HasPrefix(a, "-c"):
			setting, flag = a[2:], "-c "
		case strings.HasPrefix(a, "--"):
			setting, flag = a[2:], "--"
		default:
			e := pgError("0A000", "shardproxy does not support %q in the options startup parameter", a)
			e.Hint = "only settings are supported there: -c name=value or --name=value"
			return fatal(e)
		}
		name, value, ok := strings.Cut(setting, "=")
		if !ok {
			return fatal(pgError("42601", "%s%s requires a value", flag, setting))
		}
		// As Postgres' ParseLongOption: dashes in the name are underscores.
		params[strings.ToLower(strings.ReplaceAll(name, "-", "_"))] = value
	}
	return nil
}

// listQuoteParams are the settings whose value is a list of identifiers
// (GUC_LIST_QUOTE in Postgres' guc tables). In SET each element is a
// separate argument: SET search_path = 'a,b' names one schema "a,b".
var listQuoteParams = map[string]bool{
	"search_path": true, "temp_tablespaces": true,
	"local_preload_libraries": true, "session_preload_libraries": true, "shared_preload_libraries": true,
}

// setValueSQL renders a setting's value as given at startup (the text a
// configuration file would hold) as the value part of a SET statement.
func setValueSQL(name, value string) (string, error) {
	if !listQuoteParams[name] {
		return quoteLiteral(value), nil
	}
	elems, ok := splitIdentifiers(value)
	if !ok {
		e := pgError("22023", "invalid value for parameter %q: %q", name, value)
		e.Detail = "List syntax is invalid."
		return "", fatal(e)
	}
	if len(elems) == 0 {
		return "''", nil // no element: SET cannot say it; one empty name matches nothing
	}
	for i, el := range elems {
		elems[i] = quoteLiteral(el)
	}
	return strings.Join(elems, ", "), nil
}

// splitIdentifiers splits a comma-separated list of identifiers as
// Postgres' SplitIdentifierString does: double quotes keep a name as
// written ("" is a quote), names without them are folded to lower case,
// whitespace around names is ignored. ok is false for invalid syntax.
func splitIdentifiers(s string) (elems []string, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return nil, true
	}
	for {
		var name strings.Builder
		if s[i] == '"' {
			i++
			for {
				if i == len(s) {
					return nil, false // unterminated quote
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						name.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				name.WriteByte(s[i])
				i++
			}
		} else {
			start := i
			for i < len(s) && s[i] != ',' && !isSpace(s[i]) && s[i] != '"' {
				i++
			}
			if i == start {
				return nil, false // empty unquoted name
			}
			name.WriteString(asciiLower(s[start:i])) // as downcase_identifier in a UTF-8 database
		}
		elems = append(elems, name.String())
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return elems, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return nil, false // trailing comma
		}
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func fatal(e *pgconn.PgError) *pgconn.PgError {
	e.Severity = "FATAL"
	return e
}

// checkedParams remembers startup settings (name=value as SQL) a shard
// accepted, so that only a setting not seen before costs a round trip at
// connect. It stops growing at maxCheckedParams (settings beyond are
// checked at every connect).
type checkedParams struct {
	mu sync.Mutex
	ok map[string]bool
}

const maxCheckedParams = 4096

// checkStartupParams has a backend of the default shard take the
// session's startup settings that are not known good yet, as Postgres
// takes them at connect: a bad value or an unknown name then fails the
// connection with Postgres' own error (made FATAL), instead of being
// dropped, with a log line, at every transaction that follows. A shard
// that cannot be reached does not stop the client: it learns of the
// shard when it uses it, and the settings are checked at its next
// connect.
func (s *session) checkStartupParams(ctx context.Context) error {
	cp := &s.srv.checked
	cp.mu.Lock()
	unknown := false
	for k, v := range s.params {
		if k != "application_name" && !cp.ok[k+"="+v] {
			unknown = true
			break
		}
	}
	cp.mu.Unlock()
	if !unknown {
		return nil
	}
	shard := s.runtime().Config.DefaultShard
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		s.log.Debug("startup settings not checked: shard unavailable", "shard", shard, "err", err)
		return nil
	}
	var failure error
	if n > 0 {
		if err := c.Flush(); err != nil {
			s.putBack(c, false)
			return nil
		}
	}
	// One reply per setting, each its own Query (acquire): all of them
	// must be read, or the next client of this backend reads the rest
	// as its own statement's answer.
	for ; n > 0; n-- {
		_, err := readResult(c)
		if err != nil && !isPgErr(err) {
			s.putBack(c, false) // the backend broke, not the settings
			return nil
		}
		if failure == nil {
			failure = err
		}
	}
	if failure != nil {
		c.SessionParams = nil // some SETs may have run: reset it for its next client
		s.putBack(c, true)
		var pe *pgconn.PgError
		if errors.As(failure, &pe) {
			e := *pe
			return fatal(&e)
		}
		return failure
	}
	s.putBack(c, true)
	cp.mu.Lock()
	if cp.ok == nil {
		cp.ok = make(map[string]bool)
	}
	for k, v := range s.params {
		if k != "application_name" && len(cp.ok) < maxCheckedParams {
			cp.ok[k+"="+v] = true
		}
	}
	cp.mu.Unlock()
	return nil
}

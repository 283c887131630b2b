package router

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The proxy reads statements as UTF-8: shard keys are hashed and compared,
// and table names matched against the map, byte for byte. Postgres
// converts a client's text from its client_encoding first, so under
// LATIN1 a key 'é' (one byte) would be hashed to another shard than the
// same key from a UTF-8 client (two bytes), and be found by neither.
// Client encodings whose bytes are UTF-8's are therefore the only ones
// served: UTF8 (alias UNICODE), and SQL_ASCII, where Postgres converts
// nothing (psql sends it in the C locale).

// ClientEncodingOK reports whether a client_encoding value is served,
// after Postgres' own name cleaning (case and punctuation are ignored:
// "utf-8" is UTF8).
func ClientEncodingOK(name string) bool {
	clean := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			clean = append(clean, c)
		case c >= 'A' && c <= 'Z':
			clean = append(clean, c+'a'-'A')
		}
	}
	switch string(clean) {
	case "utf8", "unicode", "sqlascii":
		return true
	}
	return false
}

// SetError is the refusal of a SET of a client_encoding the proxy does
// not serve, or nil. Check it before a SET is answered or replayed
// without routing (SET LOCAL before a transaction has a shard).
func (st *Statement) SetError() error {
	if st.Kind != KindSet || st.err == nil {
		return nil
	}
	return st.err
}

// ClientEncodingError is the refusal of client_encoding value name.
func ClientEncodingError(name string) *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		"client_encoding "+name+" is not supported by shardproxy",
		"shardproxy reads shard keys and table names as UTF-8; use client_encoding UTF8 and convert in the client")
}

// The proxy reads string literals as Postgres does with
// standard_conforming_strings on, the default since 9.1: a backslash in
// '...' is an ordinary character. With it off, Postgres reads 'a\\b' as
// a\b while the proxy would hash a\\b, and place the row on the shard
// of another key, where a lookup by parameter never finds it. Turning it
// off is refused; E'...' strings give escapes either way.

// StandardStringsOK reports whether standard_conforming_strings may be
// set to v: anything Postgres would not read as off (an invalid value is
// left for Postgres to reject).
func StandardStringsOK(v string) bool {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(v), "'")) {
	case "off", "of", "false", "fals", "fal", "fa", "f", "no", "n", "0":
		return false
	}
	return true
}

// StandardStringsError is the refusal of standard_conforming_strings off.
func StandardStringsError() *pgconn.PgError {
	return pgError(codeFeatureNotSupport,
		"standard_conforming_strings off is not supported by shardproxy",
		`shardproxy reads string literals as standard SQL, as Postgres does by default, to find shard keys in them; keep it on and write E'...' for backslash escapes`)
}

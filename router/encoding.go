package router

import "github.com/jackc/pgx/v5/pgconn"

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

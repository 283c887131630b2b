package strategies

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardproxy/shardproxy/config"
)

// SQLSTATEs of the errors this package returns to clients.
const (
	codeInvalidText      = "22P02" // invalid_text_representation
	codeOutOfRange       = "22003" // numeric_value_out_of_range
	codeInvalidBinary    = "22P03" // invalid_binary_representation
	codeCheckViolation   = "23514" // check_violation: Postgres' "no partition of relation found for row"
	codeDatatypeMismatch = "42804" // datatype_mismatch
)

// pgEpochUnix is the origin of Postgres' binary timestamps, in Unix seconds.
const pgEpochUnix = 946684800 // 2000-01-01 00:00:00 UTC

// KeyTypeOf maps a config key_type (canonical or alias) to a KeyType.
func KeyTypeOf(configKeyType string) (KeyType, error) {
	switch strings.ToLower(configKeyType) {
	case config.KeyInt, "bigint", "integer", "int2", "int4", "int8", "smallint":
		return KeyInt, nil
	case config.KeyText, "varchar":
		return KeyText, nil
	case config.KeyUUID:
		return KeyUUID, nil
	case config.KeyTimestamp, "timestamp without time zone":
		return KeyTimestamp, nil
	case config.KeyTimestampTZ, "timestamp with time zone":
		return KeyTimestampTZ, nil
	}
	return 0, fmt.Errorf("unknown key type %q (want int, text, uuid, timestamp or timestamptz)", configKeyType)
}

// String names the type as Postgres does in its error messages.
func (t KeyType) String() string {
	switch t {
	case KeyInt:
		return "bigint"
	case KeyText:
		return "text"
	case KeyUUID:
		return "uuid"
	case KeyTimestamp:
		return "timestamp without time zone"
	case KeyTimestampTZ:
		return "timestamp with time zone"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// String returns the canonical text of k: decimal integers, the text
// itself, lower-case hyphenated uuids, RFC 3339 UTC timestamps. Directory
// tables and consistent hashing key on this form, so it must never change.
func (k Key) String() string {
	switch k.Type {
	case KeyInt:
		return strconv.FormatInt(k.Int, 10)
	case KeyText:
		return k.Text
	case KeyUUID:
		var b [36]byte
		hex.Encode(b[0:8], k.UUID[0:4])
		b[8] = '-'
		hex.Encode(b[9:13], k.UUID[4:6])
		b[13] = '-'
		hex.Encode(b[14:18], k.UUID[6:8])
		b[18] = '-'
		hex.Encode(b[19:23], k.UUID[8:10])
		b[23] = '-'
		hex.Encode(b[24:36], k.UUID[10:16])
		return string(b[:])
	case KeyTimestamp, KeyTimestampTZ:
		return k.Time.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("<invalid key type %d>", int(k.Type))
}

// ParseKey parses the text form of a key: an SQL literal's text or a
// text-format bind parameter. Errors are *pgconn.PgError worded like the
// matching Postgres input function's, or ErrNeedTimeZone/ErrVolatileKey
// (see ParseKeyIn). It is ParseKeyIn without a session TimeZone.
func ParseKey(t KeyType, s string) (Key, error) {
	return ParseKeyIn(t, s, nil)
}

// ParseKeyIn is ParseKey for a session whose TimeZone is loc (nil:
// unknown). It reads timestamps as Postgres' input functions do: a
// timestamp (without time zone) drops any offset in the text; a timestamptz
// without an offset is a wall clock in loc, and without loc the instant is
// unknown (ErrNeedTimeZone). 'infinity' and '-infinity' are the extreme
// keys, 'epoch' is 1970-01-01; 'now', 'today' and the like are
// ErrVolatileKey: the value is only known when Postgres evaluates it.
func ParseKeyIn(t KeyType, s string, loc *time.Location) (Key, error) {
	switch t {
	case KeyInt:
		return parseInt(s)
	case KeyText:
		return Key{Type: KeyText, Text: s}, nil
	case KeyUUID:
		return parseUUID(s)
	case KeyTimestamp, KeyTimestampTZ:
		return parseTimestampKey(t, s, loc)
	}
	return Key{}, fmt.Errorf("unknown key type %d", int(t))
}

func invalidText(t KeyType, s string) error {
	return &pgconn.PgError{
		Severity: "ERROR",
		Code:     codeInvalidText,
		Message:  fmt.Sprintf("invalid input syntax for type %s: %q", t, s),
	}
}

// parseInt follows Postgres' int8in: surrounding whitespace and a sign are
// allowed, nothing else (Postgres 15 has no hex or underscores).
func parseInt(s string) (Key, error) {
	trimmed := strings.Trim(s, " \t\n\r\v\f")
	digits := strings.TrimPrefix(strings.TrimPrefix(trimmed, "-"), "+")
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" || len(trimmed)-len(digits) > 1 {
		return Key{}, invalidText(KeyInt, s)
	}
	v, err := strconv.ParseInt(trimmed, 10, 64)
	if err != nil {
		// Only overflow is left; Postgres reports it as 22003, not 22P02.
		return Key{}, &pgconn.PgError{
			Severity: "ERROR",
			Code:     codeOutOfRange,
			Message:  fmt.Sprintf("value %q is out of range for type bigint", s),
		}
	}
	return Key{Type: KeyInt, Int: v}, nil
}

// parseUUID ports Postgres' string_to_uuid: optional braces, 32 hex digits,
// an optional hyphen after any group of four digits.
func parseUUID(s string) (Key, error) {
	k := Key{Type: KeyUUID}
	src := s
	braces := strings.HasPrefix(src, "{")
	if braces {
		src = src[1:]
	}
	for i := 0; i < 16; i++ {
		if len(src) < 2 {
			return Key{}, invalidText(KeyUUID, s)
		}
		hi, ok1 := unhex(src[0])
		lo, ok2 := unhex(src[1])
		if !ok1 || !ok2 {
			return Key{}, invalidText(KeyUUID, s)
		}
		k.UUID[i] = hi<<4 | lo
		src = src[2:]
		if len(src) > 0 && src[0] == '-' && i%2 == 1 && i < 15 {
			src = src[1:]
		}
	}
	if braces {
		if !strings.HasPrefix(src, "}") {
			return Key{}, invalidText(KeyUUID, s)
		}
		src = src[1:]
	}
	if src != "" {
		return Key{}, invalidText(KeyUUID, s)
	}
	return k, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodeBinaryKey decodes a binary-format bind parameter (Postgres' send
// format): big-endian int2/int4/int8 told apart by length, 16 uuid bytes,
// raw text bytes, int64 microseconds since 2000-01-01 UTC for timestamps.
func DecodeBinaryKey(t KeyType, b []byte) (Key, error) {
	switch t {
	case KeyInt:
		switch len(b) {
		case 2:
			return Key{Type: KeyInt, Int: int64(int16(binary.BigEndian.Uint16(b)))}, nil
		case 4:
			return Key{Type: KeyInt, Int: int64(int32(binary.BigEndian.Uint32(b)))}, nil
		case 8:
			return Key{Type: KeyInt, Int: int64(binary.BigEndian.Uint64(b))}, nil
		}
	case KeyText:
		return Key{Type: KeyText, Text: string(b)}, nil
	case KeyUUID:
		if len(b) == 16 {
			k := Key{Type: KeyUUID}
			copy(k.UUID[:], b)
			return k, nil
		}
	case KeyTimestamp, KeyTimestampTZ:
		// timestamptz sends the instant, timestamp its wall clock as if
		// in UTC: both are what Key.Time holds.
		if len(b) == 8 {
			return Key{Type: t, Time: pgMicros(int64(binary.BigEndian.Uint64(b)))}, nil
		}
	default:
		return Key{}, fmt.Errorf("unknown key type %d", int(t))
	}
	return Key{}, &pgconn.PgError{
		Severity: "ERROR",
		Code:     codeInvalidBinary,
		Message:  fmt.Sprintf("incorrect binary data format for type %s: %d bytes", t, len(b)),
	}
}

// checkKeyType rejects a key of the wrong type: a router bug, but one that
// must fail loudly rather than route by a zero value.
func checkKeyType(strategy string, want KeyType, k Key) error {
	if k.Type == want || isTimestamp(want) && isTimestamp(k.Type) {
		return nil
	}
	return &pgconn.PgError{
		Severity: "ERROR",
		Code:     codeDatatypeMismatch,
		Message:  fmt.Sprintf("shard key of strategy %q must be of type %s, got %s", strategy, want, k.Type),
	}
}

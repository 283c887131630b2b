package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// keyTypeNames maps every accepted key_type spelling to its canonical form.
var keyTypeNames = map[string]string{
	"int": KeyInt, "bigint": KeyInt, "integer": KeyInt, "smallint": KeyInt,
	"int2": KeyInt, "int4": KeyInt, "int8": KeyInt,
	"text": KeyText, "varchar": KeyText,
	"uuid":      KeyUUID,
	"timestamp": KeyTimestamp, "timestamp without time zone": KeyTimestamp,
	"timestamptz": KeyTimestampTZ, "timestamp with time zone": KeyTimestampTZ,
}

// isTimestamp tells whether a canonical key type is one of the timestamps.
func isTimestamp(keyType string) bool {
	return keyType == KeyTimestamp || keyType == KeyTimestampTZ
}

// timestampLayouts are tried in order by ParseTimestamp. Go accepts a
// fractional second after the seconds field even when the layout has none.
// The first zonedLayouts of them carry a zone.
var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z07", // Postgres' own output: "2024-01-01 00:00:00+00"
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

const zonedLayouts = 3

// ParseTimestamp parses the timestamp forms accepted as range bounds:
// RFC 3339, Postgres' text output ("2006-01-02 15:04:05+00") and plain
// dates. Values without a zone are taken as UTC. The result is in UTC.
func ParseTimestamp(s string) (time.Time, error) {
	t, _, err := parseTimestamp(s)
	return t, err
}

// parseTimestamp is ParseTimestamp that also tells whether s had a zone.
func parseTimestamp(s string) (t time.Time, zoned bool, err error) {
	for i, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), i < zonedLayouts, nil
		}
	}
	return time.Time{}, false, fmt.Errorf("%q is not a timestamp (want e.g. 2006-01-02, 2006-01-02 15:04:05 or RFC 3339)", s)
}

// wallClockLayout is the canonical form of a timestamp (without time zone)
// bound: RFC 3339 with nanoseconds, minus the zone.
const wallClockLayout = "2006-01-02T15:04:05.999999999"

// canonicalBound parses a range bound as keyType and returns the form
// stored in Range.Upper: decimal for int, RFC 3339 (nanoseconds, UTC) for
// timestamptz, the same without the zone for timestamp (a wall clock: a
// bound with an offset is an error, since Postgres would drop the offset
// silently and the bound would not mean what it says), lower-case
// hyphenated for uuid, unchanged for text. Canonical
// strings let the strategies package parse bounds with one standard
// function each, and make bound comparison exact.
func canonicalBound(keyType, s string) (string, error) {
	switch keyType {
	case KeyInt:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%q is not a 64-bit integer", s)
		}
		return strconv.FormatInt(i, 10), nil
	case KeyTimestamp:
		t, zoned, err := parseTimestamp(s)
		if err != nil {
			return "", err
		}
		if zoned {
			return "", fmt.Errorf("%q has a time zone offset, but key_type timestamp (without time zone) is a wall-clock time: drop the offset, or use key_type timestamptz", s)
		}
		return t.Format(wallClockLayout), nil
	case KeyTimestampTZ:
		t, err := ParseTimestamp(s)
		if err != nil {
			return "", err
		}
		return t.Format(time.RFC3339Nano), nil
	case KeyUUID:
		return canonicalUUID(s)
	default:
		return s, nil
	}
}

// compareBounds orders two canonical bounds of keyType the way Postgres
// orders the values: numerically, by instant, or bytewise (text in the C
// collation; uuid bytes, which the canonical hex form preserves).
func compareBounds(keyType, a, b string) int {
	switch keyType {
	case KeyInt:
		x, _ := strconv.ParseInt(a, 10, 64)
		y, _ := strconv.ParseInt(b, 10, 64)
		return cmpInt(x, y)
	case KeyTimestamp:
		x, _ := time.Parse(wallClockLayout, a)
		y, _ := time.Parse(wallClockLayout, b)
		return x.Compare(y)
	case KeyTimestampTZ:
		x, _ := time.Parse(time.RFC3339Nano, a)
		y, _ := time.Parse(time.RFC3339Nano, b)
		return x.Compare(y)
	default:
		return strings.Compare(a, b)
	}
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// canonicalUUID accepts 32 hex digits with optional hyphens and optional
// braces, as Postgres' uuid_in does.
func canonicalUUID(s string) (string, error) {
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	t = strings.ReplaceAll(t, "-", "")
	var b [16]byte
	if len(t) != 32 {
		return "", fmt.Errorf("%q is not a uuid", s)
	}
	if _, err := hex.Decode(b[:], []byte(t)); err != nil {
		return "", fmt.Errorf("%q is not a uuid", s)
	}
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// normalizeTableName folds a table name the way Postgres folds an SQL
// identifier: unquoted parts are lower-cased, double-quoted parts keep their
// case (and lose the quotes). At most one schema qualifier is allowed.
func normalizeTableName(s string) (string, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return "", err
	}
	if len(parts) > 2 {
		return "", errors.New("at most one schema qualifier (schema.table) is allowed")
	}
	return strings.Join(parts, "."), nil
}

// normalizeColumn folds a single identifier (a shard-key column).
func normalizeColumn(s string) (string, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return "", err
	}
	if len(parts) != 1 {
		return "", errors.New("must be a column name, not a qualified name")
	}
	return parts[0], nil
}

func splitIdent(s string) ([]string, error) {
	var parts []string
	for i := 0; ; {
		var part string
		if i < len(s) && s[i] == '"' {
			// Quoted identifier: "" stands for one quote character.
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, errors.New("unterminated quoted identifier")
				}
				if s[j] == '"' {
					if j+1 < len(s) && s[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			part = b.String()
			if part == "" {
				return nil, errors.New("zero-length quoted identifier")
			}
			if strings.Contains(part, ".") {
				// Would be indistinguishable from schema.table in Table.Name.
				return nil, errors.New(`quoted identifiers containing "." are not supported`)
			}
			i = j + 1
		} else {
			j := i
			for j < len(s) && isIdentByte(s[j], j == i) {
				j++
			}
			if j == i {
				return nil, errors.New("not an identifier (quote it with \"...\" to use other characters)")
			}
			part = strings.ToLower(s[i:j])
			i = j
		}
		parts = append(parts, part)
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, errors.New("not an identifier (quote it with \"...\" to use other characters)")
		}
		i++
	}
}

func isIdentByte(c byte, first bool) bool {
	switch {
	case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c >= 0x80:
		return true
	case '0' <= c && c <= '9', c == '$':
		return !first
	}
	return false
}

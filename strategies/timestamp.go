package strategies

import (
	"errors"
	"math"
	"strings"
	"time"
)

// ErrNeedTimeZone is returned for a timestamptz key written without a UTC
// offset, or a conversion between timestamp and timestamptz, when the
// session's TimeZone is unknown: Postgres would read the wall clock in that
// zone, so the instant, and the shard, cannot be told.
var ErrNeedTimeZone = errors.New("the session's TimeZone is needed to read this timestamp")

// ErrVolatileKey is returned for 'now', 'today', 'tomorrow' and
// 'yesterday': their value is only known when Postgres evaluates them.
var ErrVolatileKey = errors.New("the timestamp is volatile ('now', 'today', ...)")

// Postgres' infinity and -infinity, as its binary format decodes them.
var (
	timeInfinity    = pgMicros(math.MaxInt64)
	timeNegInfinity = pgMicros(math.MinInt64)
)

// pgMicros converts Postgres' binary timestamp (microseconds since
// 2000-01-01) to a Time in UTC. It splits before adding the epoch so that
// +-infinity (MaxInt64/MinInt64) cannot overflow.
func pgMicros(us int64) time.Time {
	return time.Unix(pgEpochUnix+us/1e6, (us%1e6)*1e3).UTC()
}

// zonedLayouts carry a UTC offset ("Z" included), plainLayouts do not. Go
// accepts a fractional second after the seconds field even when the layout
// has none.
var (
	zonedLayouts = []string{
		time.RFC3339,
		"2006-01-02T15:04:05Z07",
		"2006-01-02T15:04:05Z0700",
		"2006-01-02 15:04:05Z07:00",
		"2006-01-02 15:04:05Z07", // Postgres' own output: "2024-01-01 00:00:00+00"
		"2006-01-02 15:04:05Z0700",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04Z07",
		"2006-01-02 15:04Z07:00",
		"2006-01-02 15:04Z07",
	}
	plainLayouts = []string{
		"2006-01-02T15:04:05",
		"2006-01-02 15:04:05",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"2006-01-02",
	}
)

// parseTimestampKey reads s as Postgres' timestamp_in (t == KeyTimestamp)
// or timestamptz_in (KeyTimestampTZ) would in a session whose TimeZone is
// loc; see ParseKeyIn.
func parseTimestampKey(t KeyType, s string, loc *time.Location) (Key, error) {
	trimmed := strings.TrimSpace(s)
	switch strings.ToLower(trimmed) {
	case "infinity", "+infinity":
		return Key{Type: t, Time: timeInfinity}, nil
	case "-infinity":
		return Key{Type: t, Time: timeNegInfinity}, nil
	case "epoch":
		return Key{Type: t, Time: time.Unix(0, 0).UTC()}, nil
	case "now", "today", "tomorrow", "yesterday":
		return Key{}, ErrVolatileKey
	}
	for _, layout := range zonedLayouts {
		if ts, err := time.Parse(layout, trimmed); err == nil {
			if t == KeyTimestamp {
				ts = wallClock(ts) // timestamp_in ignores the offset
			}
			return Key{Type: t, Time: ts.UTC().Round(time.Microsecond)}, nil
		}
	}
	for _, layout := range plainLayouts {
		ts, err := time.Parse(layout, trimmed) // a wall clock, in UTC
		if err != nil {
			continue
		}
		if t == KeyTimestampTZ {
			if loc == nil {
				return Key{}, ErrNeedTimeZone
			}
			ts = inZone(ts, loc)
		}
		return Key{Type: t, Time: ts.Round(time.Microsecond)}, nil
	}
	return Key{}, invalidText(t, s)
}

// ConvertKey converts a timestamp key to type t as Postgres' casts between
// timestamp and timestamptz do in a session whose TimeZone is loc: the wall
// clock is read in loc, or the instant shown in loc. Without loc such a
// conversion is ErrNeedTimeZone. Other keys, and keys already of type t,
// are returned as they are; infinities stay infinite.
func ConvertKey(k Key, t KeyType, loc *time.Location) (Key, error) {
	if k.Type == t || !isTimestamp(k.Type) || !isTimestamp(t) {
		return k, nil
	}
	if k.Time.Equal(timeInfinity) || k.Time.Equal(timeNegInfinity) {
		return Key{Type: t, Time: k.Time}, nil
	}
	if loc == nil {
		return Key{}, ErrNeedTimeZone
	}
	if t == KeyTimestampTZ {
		return Key{Type: t, Time: inZone(k.Time, loc)}, nil
	}
	return Key{Type: t, Time: wallClock(k.Time.In(loc))}, nil
}

// wallClock returns ts's wall clock read as UTC.
func wallClock(ts time.Time) time.Time {
	return time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), ts.Second(), ts.Nanosecond(), time.UTC)
}

// inZone reads the wall clock of wall (a Time in UTC) in loc and returns
// that instant in UTC. A wall clock in a DST gap or overlap gets the
// smaller of the two UTC offsets, as in Postgres (the offset before a
// spring-forward, after a fall-back; see "Handling of Invalid or Ambiguous
// Timestamps" in its manual). Go's time.Date leaves that choice open.
func inZone(wall time.Time, loc *time.Location) time.Time {
	u := wall.Unix()
	offsetAt := func(sec int64) int64 {
		_, off := time.Unix(sec, 0).In(loc).Zone()
		return int64(off)
	}
	// The offsets in effect around the wall clock; a zone changes its
	// offset at most once within a day.
	candidates := [3]int64{offsetAt(u - 86400), offsetAt(u), offsetAt(u + 86400)}
	best, bestValid := candidates[0], false
	for _, off := range candidates {
		valid := offsetAt(u-off) == off // the wall clock exists with this offset
		switch {
		case valid && (!bestValid || off < best):
			best, bestValid = off, true
		case !valid && !bestValid && off < best:
			best = off // a gap: no offset is valid
		}
	}
	return time.Unix(u-best, int64(wall.Nanosecond())).UTC()
}

func isTimestamp(t KeyType) bool { return t == KeyTimestamp || t == KeyTimestampTZ }

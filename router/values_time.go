package router

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"strconv"
)

// Date and time texts as Postgres prints them with DateStyle ISO:
//
//	date         2024-01-05, 0044-03-15 BC, 10000-01-01, infinity, -infinity
//	timestamp    2024-01-05 12:34:56.123456 (fraction optional), " BC" suffix
//	timestamptz  the same with an offset: +00, -03:30, +05:53:28 (LMT)
//	time         12:34:56.123456, 24:00:00
//
// They are read into ordered int64s (days or microseconds since
// 2000-01-01 of the proleptic Gregorian calendar; infinities at the ends).
// A timestamptz is read as the instant it names (local time minus offset),
// which is what timestamptz_cmp compares.

var errDateTime = errors.New("bad date/time text")

const usPerDay = 86400 * 1000000

func parseDate(v []byte) (int64, error) {
	switch string(v) {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	d, rest, err := readDate(v)
	if err != nil {
		return 0, err
	}
	rest, bc := cutBC(rest)
	if len(rest) != 0 {
		return 0, errDateTime
	}
	return bcDays(d, bc), nil
}

func parseTime(v []byte) (int64, error) {
	us, rest, err := readClock(v)
	if err != nil || len(rest) != 0 {
		return 0, errDateTime
	}
	return us, nil
}

// parseTimestamp reads timestamp (tz=false) or timestamptz text; a bare
// date means midnight.
func parseTimestamp(v []byte, tz bool) (int64, error) {
	switch string(v) {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	d, rest, err := readDate(v)
	if err != nil {
		return 0, err
	}
	var us int64
	if len(rest) > 0 && (rest[0] == ' ' || rest[0] == 'T') && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9' {
		us, rest, err = readClock(rest[1:])
		if err != nil {
			return 0, err
		}
	} else if tz {
		return 0, errDateTime // no time, so no offset: the zone is unknown here
	}
	var off int64
	if tz {
		off, rest, err = readOffset(rest)
		if err != nil {
			return 0, err
		}
	}
	rest, bc := cutBC(rest)
	if len(rest) != 0 {
		return 0, errDateTime
	}
	return bcDays(d, bc)*usPerDay + us - off, nil
}

// readDate reads Y...Y-MM-DD and returns days from the civil date with
// year as written (BC applied later by bcDays).
func readDate(v []byte) (date [3]int64, rest []byte, err error) {
	y, v, ok := readNum(v, 1, 9)
	if !ok || len(v) < 1 || v[0] != '-' {
		return date, nil, errDateTime
	}
	m, v, ok := readNum(v[1:], 2, 2)
	if !ok || len(v) < 1 || v[0] != '-' {
		return date, nil, errDateTime
	}
	d, v, ok := readNum(v[1:], 2, 2)
	if !ok || m < 1 || m > 12 || d < 1 || d > 31 {
		return date, nil, errDateTime
	}
	return [3]int64{y, m, d}, v, nil
}

func readClock(v []byte) (us int64, rest []byte, err error) {
	h, v, ok := readNum(v, 2, 2)
	if !ok || len(v) < 1 || v[0] != ':' {
		return 0, nil, errDateTime
	}
	mi, v, ok := readNum(v[1:], 2, 2)
	if !ok {
		return 0, nil, errDateTime
	}
	var s int64
	if len(v) > 0 && v[0] == ':' {
		if s, v, ok = readNum(v[1:], 2, 2); !ok {
			return 0, nil, errDateTime
		}
	}
	var frac int64
	if len(v) > 0 && v[0] == '.' {
		v = v[1:]
		n := 0
		for n < len(v) && v[n] >= '0' && v[n] <= '9' {
			if n < 6 {
				frac = frac*10 + int64(v[n]-'0')
			}
			n++
		}
		if n == 0 || n > 6 {
			return 0, nil, errDateTime // Postgres prints at most microseconds
		}
		for i := n; i < 6; i++ {
			frac *= 10
		}
		v = v[n:]
	}
	return ((h*60+mi)*60+s)*1000000 + frac, v, nil
}

// readOffset reads +HH[:MM[:SS]] and returns it in microseconds.
func readOffset(v []byte) (int64, []byte, error) {
	if len(v) < 3 || (v[0] != '+' && v[0] != '-') {
		return 0, nil, errDateTime
	}
	sign := int64(1)
	if v[0] == '-' {
		sign = -1
	}
	h, v, ok := readNum(v[1:], 2, 2)
	if !ok {
		return 0, nil, errDateTime
	}
	var m, s int64
	if len(v) > 0 && v[0] == ':' {
		if m, v, ok = readNum(v[1:], 2, 2); !ok {
			return 0, nil, errDateTime
		}
		if len(v) > 0 && v[0] == ':' {
			if s, v, ok = readNum(v[1:], 2, 2); !ok {
				return 0, nil, errDateTime
			}
		}
	}
	return sign * ((h*60+m)*60 + s) * 1000000, v, nil
}

func readNum(v []byte, minLen, maxLen int) (int64, []byte, bool) {
	var n int64
	i := 0
	for i < len(v) && i < maxLen && v[i] >= '0' && v[i] <= '9' {
		n = n*10 + int64(v[i]-'0')
		i++
	}
	return n, v[i:], i >= minLen
}

func cutBC(v []byte) ([]byte, bool) {
	if len(v) >= 3 && string(v[len(v)-3:]) == " BC" {
		return v[:len(v)-3], true
	}
	return v, false
}

// bcDays converts a civil date to a day number; year Y BC is the
// astronomical year 1-Y (there is no year 0 in the text).
func bcDays(d [3]int64, bc bool) int64 {
	y := d[0]
	if bc {
		y = 1 - y
	}
	return daysFromCivil(y, d[1], d[2]) - pgEpochDays
}

// pgEpochDays is 2000-01-01, Postgres' epoch: microseconds counted from
// it fit int64 over the whole timestamp range (4713 BC .. 294276 AD).
var pgEpochDays = daysFromCivil(2000, 1, 1)

// daysFromCivil is Howard Hinnant's days_from_civil (proleptic Gregorian).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv64(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe
}

func floorDiv64(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// intervalKey reads interval_out text (IntervalStyle postgres: "1 year
// 2 mons -3 days +04:05:06.5") and returns 16 bytes that order and
// compare as interval_cmp does: the span months*30 days + days, in
// microseconds, plus the time, as a 128-bit integer (so '1 mon' = '30
// days' and '1 day' = '24:00:00', as in Postgres).
func intervalKey(v []byte) ([]byte, error) {
	var months, days, us int64
	f := bytes.Fields(v)
	for i := 0; i < len(f); i++ {
		tok := f[i]
		if bytes.IndexByte(tok, ':') >= 0 {
			neg := tok[0] == '-'
			if tok[0] == '-' || tok[0] == '+' {
				tok = tok[1:]
			}
			h, rest, ok := readNum(tok, 1, 10) // interval hours stay below 2^63 µs
			if !ok || len(rest) == 0 || rest[0] != ':' {
				return nil, errDateTime
			}
			t, rest, err := readClock(append([]byte("00"), rest...))
			if err != nil || len(rest) != 0 {
				return nil, errDateTime
			}
			t += h * 3600 * 1000000
			if neg {
				t = -t
			}
			us += t
			continue
		}
		n, err := strconv.ParseInt(string(tok), 10, 64)
		if err != nil || i+1 >= len(f) {
			return nil, errDateTime
		}
		i++
		switch string(f[i]) {
		case "year", "years":
			months += n * 12
		case "mon", "mons":
			months += n
		case "day", "days":
			days += n
		default:
			return nil, errDateTime
		}
	}
	span := new(big.Int).SetInt64(months*30 + days)
	span.Mul(span, big.NewInt(usPerDay))
	span.Add(span, big.NewInt(us))
	span.Add(span, intervalOffset) // non-negative, so bytes order as numbers
	return span.FillBytes(make([]byte, 16)), nil
}

var intervalOffset = new(big.Int).Lsh(big.NewInt(1), 127)

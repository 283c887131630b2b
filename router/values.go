package router

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Values reach the merge as the text Postgres prints for them (text
// format results; shards initdb'd with C collation, DateStyle ISO, the
// same TimeZone). valType knows, per type OID, how to order two such
// texts and how to reduce one to an equality key exactly as the type's
// btree operators do: 1.0 = 1.00 for numeric, -0 = 0 and NaN = NaN for
// floats, trailing spaces ignored for bpchar, '1 mon' = '30 days' for
// interval (IntervalStyle postgres); arrays of these types element by
// element (values_array.go). Types without such rules
// here cannot be sort, group, distinct or min/max keys (0A000); they may
// still pass through untouched.

// Type OIDs (pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOid         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidMoney       = 790
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidTimetz      = 1266
	oidNumeric     = 1700
	oidUUID        = 2950
)

type typeClass uint8

const (
	clsOther typeClass = iota // not comparable here
	clsInt                    // int2/int4/int8: canonical decimal text
	clsOid                    // unsigned 32-bit
	clsNumeric
	clsFloat4
	clsFloat8
	clsText // text/varchar/name/uuid: bytewise (C collation; uuid prints lowercase hex)
	clsBpchar
	clsBool
	clsDate
	clsTime
	clsTimestamp
	clsTimestamptz
	clsBytea
	clsChar
	clsInterval
	clsArray // an array of a type above (values_array.go)
)

// valType is the merge's view of one column type.
type valType struct {
	oid  uint32
	cls  typeClass
	elem uint32 // clsArray: the element type
}

var typeNames = map[uint32]string{
	oidBool: "boolean", oidBytea: "bytea", oidChar: `"char"`, oidName: "name",
	oidInt8: "bigint", oidInt2: "smallint", oidInt4: "integer", oidText: "text",
	oidOid: "oid", oidFloat4: "real", oidFloat8: "double precision",
	oidMoney: "money", oidBpchar: "character", oidVarchar: "character varying",
	oidDate: "date", oidTime: "time without time zone",
	oidTimestamp: "timestamp without time zone", oidTimestamptz: "timestamp with time zone",
	oidInterval: "interval", oidTimetz: "time with time zone", oidNumeric: "numeric",
	oidUUID: "uuid",
}

func typeOf(oid uint32) valType {
	t := valType{oid: oid}
	switch oid {
	case oidInt2, oidInt4, oidInt8:
		t.cls = clsInt
	case oidOid:
		t.cls = clsOid
	case oidNumeric:
		t.cls = clsNumeric
	case oidFloat4:
		t.cls = clsFloat4
	case oidFloat8:
		t.cls = clsFloat8
	case oidText, oidVarchar, oidName, oidUUID:
		t.cls = clsText
	case oidBpchar:
		t.cls = clsBpchar
	case oidBool:
		t.cls = clsBool
	case oidDate:
		t.cls = clsDate
	case oidTime:
		t.cls = clsTime
	case oidTimestamp:
		t.cls = clsTimestamp
	case oidTimestamptz:
		t.cls = clsTimestamptz
	case oidBytea:
		t.cls = clsBytea
	case oidChar:
		t.cls = clsChar
	case oidInterval:
		t.cls = clsInterval
	default:
		if e, ok := elementOf[oid]; ok && typeOf(e).comparable() {
			t.cls, t.elem = clsArray, e
		}
	}
	return t
}

func (t valType) name() string {
	if n, ok := typeNames[t.oid]; ok {
		return n
	}
	if n, ok := typeNames[elementOf[t.oid]]; ok {
		return n + "[]"
	}
	return "with OID " + strconv.FormatUint(uint64(t.oid), 10)
}

func (t valType) comparable() bool { return t.cls != clsOther }

// parsed reports whether compare parses the values (into a scalar), so
// that a caller comparing one value many times should parse it once.
func (t valType) parsed() bool {
	switch t.cls {
	case clsOther, clsInt, clsText, clsBpchar, clsNumeric, clsBool, clsArray:
		return false
	}
	return true
}

// notComparable is the 0A000 for a key column of a type the merge cannot
// order or compare exactly.
func (t valType) notComparable(use string) error {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("cannot %s values of type %s across shards", use, t.name()),
		"shardproxy compares only built-in scalar types exactly when merging shards; add a condition on the shard key so that the query runs on one shard, or cast the column to text or numeric")
}

// badValue is a shard's text for a value the merge cannot read. For the
// date/time types that is a session DateStyle or IntervalStyle other than
// Postgres' defaults: refused (0A000) rather than guessed at, since
// "01/02/2024" means different days under MDY and DMY.
func badValue(t valType, v []byte) error {
	return pgError(codeFeatureNotSupport,
		fmt.Sprintf("cannot merge %s value %q across shards in this session's output style", t.name(), v),
		"SET DateStyle = ISO and IntervalStyle = postgres for statements that sort, group or aggregate date/time values across shards, or add a condition on the shard key")
}

// compare orders two non-NULL values of type t: <0, 0, >0.
func (t valType) compare(a, b []byte) (int, error) {
	switch t.cls {
	case clsInt:
		return cmpIntText(a, b), nil
	case clsText:
		return bytes.Compare(a, b), nil
	case clsBpchar:
		return bytes.Compare(bytes.TrimRight(a, " "), bytes.TrimRight(b, " ")), nil
	case clsNumeric:
		return cmpNumericText(a, b), nil
	case clsBool:
		return bytes.Compare(a, b), nil // "f" < "t"
	case clsArray:
		return t.compareArrays(a, b)
	}
	x, err := t.scalar(a)
	if err != nil {
		return 0, err
	}
	y, err := t.scalar(b)
	if err != nil {
		return 0, err
	}
	return x.cmp(y), nil
}

// scalar is a parsed value of a type compared by number or bytes.
type scalar struct {
	i int64
	f float64
	b []byte
}

func (x scalar) cmp(y scalar) int {
	switch {
	case x.b != nil || y.b != nil:
		return bytes.Compare(x.b, y.b)
	case x.i != y.i:
		if x.i < y.i {
			return -1
		}
		return 1
	}
	return cmpFloat(x.f, y.f)
}

// cmpFloat is float8_cmp_internal: NaN equals NaN and sorts above
// everything; -0 equals 0.
func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (t valType) scalar(v []byte) (scalar, error) {
	var s scalar
	var err error
	switch t.cls {
	case clsOid:
		var u uint64
		u, err = strconv.ParseUint(string(v), 10, 32)
		s.i = int64(u)
	case clsFloat4, clsFloat8:
		s.f, err = strconv.ParseFloat(string(v), 64)
	case clsDate:
		s.i, err = parseDate(v)
	case clsTime:
		s.i, err = parseTime(v)
	case clsTimestamp:
		s.i, err = parseTimestamp(v, false)
	case clsTimestamptz:
		s.i, err = parseTimestamp(v, true)
	case clsBytea:
		s.b, err = decodeBytea(v)
		if s.b == nil {
			s.b = []byte{}
		}
	case clsChar:
		s.b, err = decodeChar(v)
	case clsInterval:
		s.b, err = intervalKey(v)
	default:
		return s, t.notComparable("compare")
	}
	if err != nil {
		return s, badValue(t, v)
	}
	return s, nil
}

// appendKey appends an equality key of a non-NULL value: two values are
// equal by the type's = operator iff their keys are equal.
func (t valType) appendKey(dst, v []byte) ([]byte, error) {
	switch t.cls {
	case clsInt, clsText, clsBool:
		return append(dst, v...), nil // the output text is canonical
	case clsBpchar:
		return append(dst, bytes.TrimRight(v, " ")...), nil
	case clsNumeric:
		return append(dst, numericKey(v)...), nil
	case clsArray:
		return t.appendArrayKey(dst, v)
	case clsFloat4, clsFloat8:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return dst, badValue(t, v)
		}
		switch {
		case math.IsNaN(f):
			return append(dst, "NaN"...), nil
		case f == 0:
			return append(dst, '0'), nil
		}
		return append(dst, v...), nil
	}
	s, err := t.scalar(v)
	if err != nil {
		return dst, err
	}
	if s.b != nil {
		return append(dst, s.b...), nil
	}
	return strconv.AppendInt(dst, s.i, 10), nil
}

// cmpIntText orders canonical integer texts (no '+', no leading zeros,
// as int2/4/8out print them) without parsing.
func cmpIntText(a, b []byte) int {
	an := len(a) > 0 && a[0] == '-'
	bn := len(b) > 0 && b[0] == '-'
	if an != bn {
		if an {
			return -1
		}
		return 1
	}
	c := 0
	switch {
	case len(a) < len(b):
		c = -1
	case len(a) > len(b):
		c = 1
	default:
		c = bytes.Compare(a, b)
	}
	if an {
		return -c
	}
	return c
}

// numericParts splits numeric_out text: rank (-1 -Infinity, 0 finite, 1
// Infinity, 2 NaN), sign, integer digits without leading zeros and
// fraction digits without trailing zeros.
func numericParts(v []byte) (rank int, neg bool, ip, fp []byte) {
	switch string(v) {
	case "NaN":
		return 2, false, nil, nil
	case "Infinity":
		return 1, false, nil, nil
	case "-Infinity":
		return -1, false, nil, nil
	}
	if len(v) > 0 && v[0] == '-' {
		neg = true
		v = v[1:]
	}
	ip = v
	if i := bytes.IndexByte(v, '.'); i >= 0 {
		ip, fp = v[:i], bytes.TrimRight(v[i+1:], "0")
	}
	ip = bytes.TrimLeft(ip, "0")
	if len(ip) == 0 && len(fp) == 0 {
		neg = false // zero
	}
	return 0, neg, ip, fp
}

// cmpNumericText is cmp_numerics on numeric_out texts: NaN above
// Infinity above every finite value above -Infinity; 1.0 = 1.00.
func cmpNumericText(a, b []byte) int {
	ra, na, ia, fa := numericParts(a)
	rb, nb, ib, fb := numericParts(b)
	if ra != rb || ra != 0 {
		return cmpInt(ra, rb)
	}
	if na != nb {
		if na {
			return -1
		}
		return 1
	}
	c := cmpInt(len(ia), len(ib))
	if c == 0 {
		c = bytes.Compare(ia, ib)
	}
	if c == 0 {
		c = bytes.Compare(fa, fb)
	}
	if na {
		return -c
	}
	return c
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// numericKey is the canonical text of a numeric_out value (trailing
// fraction zeros dropped).
func numericKey(v []byte) []byte {
	if bytes.IndexByte(v, '.') < 0 {
		return v
	}
	v = bytes.TrimRight(v, "0")
	v = bytes.TrimSuffix(v, []byte("."))
	if string(v) == "-0" {
		return []byte("0")
	}
	return v
}

// decodeBytea reads byteaout text: hex ("\x0a1b") or escape format.
func decodeBytea(v []byte) ([]byte, error) {
	if bytes.HasPrefix(v, []byte(`\x`)) {
		out := make([]byte, hex.DecodedLen(len(v)-2))
		_, err := hex.Decode(out, v[2:])
		return out, err
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		switch {
		case i+1 < len(v) && v[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(v):
			o, err := strconv.ParseUint(string(v[i+1:i+4]), 8, 8)
			if err != nil {
				return nil, err
			}
			out = append(out, byte(o))
			i += 3
		default:
			return nil, fmt.Errorf("bad bytea escape")
		}
	}
	return out, nil
}

// decodeChar reads charout text: "" for \0, \ooo for bytes >= 128, else
// the byte itself.
func decodeChar(v []byte) ([]byte, error) {
	switch {
	case len(v) == 0:
		return []byte{0}, nil
	case len(v) == 4 && v[0] == '\\':
		o, err := strconv.ParseUint(string(v[1:]), 8, 8)
		return []byte{byte(o)}, err
	case len(v) == 1:
		return v, nil
	}
	return nil, fmt.Errorf("bad char")
}

// appendFloat8 prints f as float8out does with extra_float_digits > 0
// (Postgres 12+): the shortest text that reads back exactly, in fixed
// notation for decimal exponents -4..14 and exponential otherwise
// (src/common/d2s.c).
func appendFloat8(dst []byte, f float64) []byte {
	return appendFloat(dst, f, 64, 15)
}

// appendFloat4 is float4out: the same with float4 precision and fixed
// notation for exponents -4..5 (src/common/f2s.c).
func appendFloat4(dst []byte, f float32) []byte {
	return appendFloat(dst, float64(f), 32, 6)
}

func appendFloat(dst []byte, f float64, bits, fixedBelow int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0"...)
		}
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	digits, exp := shortestDigits(f, bits)
	if exp >= -4 && exp < fixedBelow {
		if exp < 0 {
			dst = append(dst, "0."...)
			for i := -1; i > exp; i-- {
				dst = append(dst, '0')
			}
			return append(dst, digits...)
		}
		if len(digits) <= exp+1 {
			dst = append(dst, digits...)
			for i := len(digits); i <= exp; i++ {
				dst = append(dst, '0')
			}
			return dst
		}
		dst = append(dst, digits[:exp+1]...)
		dst = append(dst, '.')
		return append(dst, digits[exp+1:]...)
	}
	dst = append(dst, digits[0])
	if len(digits) > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	if exp < 0 {
		dst = append(dst, '-')
		exp = -exp
	} else {
		dst = append(dst, '+')
	}
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}

// shortestDigits returns the significant digits (no trailing zeros) and
// the decimal exponent of the first one of the shortest decimal that
// reads back as f > 0, as Postgres' Ryu finds it. Postgres accepts only
// decimals strictly inside f's rounding interval (acceptBounds = false in
// d2s.c/f2s.c), Go's strconv also one exactly on a bound when f's
// mantissa is even; in that rare case the next candidates are searched.
func shortestDigits(f float64, bits int) (string, int) {
	s := strconv.FormatFloat(f, 'e', -1, bits)
	digits, exp := splitE(s)
	if !onBound(digits, exp, f, bits) {
		return digits, exp
	}
	exact := new(big.Rat).SetFloat64(f)
	for n := len(digits); n <= 17; n++ {
		d, e := splitE(strconv.FormatFloat(f, 'e', n-1, bits))
		m, _ := new(big.Int).SetString(d+strings.Repeat("0", n-len(d)), 10)
		var best *big.Rat
		var bestD string
		var bestE int
		var bestDist big.Rat
		for _, delta := range []int64{0, 1, -1} {
			c := new(big.Int).Add(m, big.NewInt(delta))
			cd, ce := normDigits(c.String(), e+len(c.String())-n)
			if cd == "" {
				continue
			}
			r := decimalRat(cd, ce)
			var back float64
			if bits == 32 {
				g, _ := r.Float32()
				back = float64(g)
			} else {
				back, _ = r.Float64()
			}
			if back != f || onBound(cd, ce, f, bits) {
				continue
			}
			var dist big.Rat
			dist.Sub(r, exact)
			dist.Abs(&dist)
			if best == nil || dist.Cmp(&bestDist) < 0 {
				best, bestD, bestE = r, cd, ce
				bestDist.Set(&dist)
			}
		}
		if best != nil {
			return bestD, bestE
		}
	}
	return digits, exp
}

// splitE splits strconv's 'e' format ("d.ddde+xx") into digits without
// trailing zeros and the exponent.
func splitE(s string) (string, int) {
	i := strings.IndexByte(s, 'e')
	exp, _ := strconv.Atoi(s[i+1:])
	return normDigits(strings.Replace(s[:i], ".", "", 1), exp)
}

func normDigits(d string, exp int) (string, int) {
	d = strings.TrimRight(d, "0")
	return d, exp
}

// decimalRat is 0.d1d2d3... * 10^(exp+1).
func decimalRat(digits string, exp int) *big.Rat {
	r, _ := new(big.Rat).SetString(digits + "e" + strconv.Itoa(exp-len(digits)+1))
	return r
}

// onBound reports whether the decimal lies exactly halfway between f and
// one of its neighbours.
func onBound(digits string, exp int, f float64, bits int) bool {
	r := decimalRat(digits, exp)
	var up, down float64
	if bits == 32 {
		up = float64(math.Nextafter32(float32(f), float32(math.Inf(1))))
		down = float64(math.Nextafter32(float32(f), 0))
	} else {
		up, down = math.Nextafter(f, math.Inf(1)), math.Nextafter(f, 0)
	}
	x := new(big.Rat).SetFloat64(f)
	for _, n := range []float64{up, down} {
		if math.IsInf(n, 0) {
			continue
		}
		mid := new(big.Rat).Add(x, new(big.Rat).SetFloat64(n))
		mid.Quo(mid, big.NewRat(2, 1))
		if mid.Cmp(r) == 0 {
			return true
		}
	}
	return false
}

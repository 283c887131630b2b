package proxy

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/router"
)

// Merged results are computed on the text Postgres prints; a client that
// asked for binary results gets each value converted here, and must get
// the bytes Postgres' own send function would have written — a value
// that cannot be converted exactly is refused (0A000), never altered.

// formatCode applies a Bind message's format-code rules, the same for
// its parameters and its results: none means text, one applies to all,
// otherwise one per column.
func formatCode(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return pgtype.TextFormatCode
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return pgtype.TextFormatCode
}

// toResultFormats turns the executor's text values into the binary format
// the client asked for, column by column. enums are the shards' enum
// types (pool.Conn.Enums).
func (s *session) toResultFormats(fields []pgproto3.FieldDescription, values [][]byte, enums map[uint32]uint32) ([][]byte, error) {
	if s.types == nil {
		s.types = pgtype.NewMap()
	}
	out := make([][]byte, len(values))
	for i, v := range values {
		if v == nil || i >= len(fields) || fields[i].Format != pgtype.BinaryFormatCode {
			out[i] = v
			continue
		}
		b, err := binaryValue(s.types, enums, fields[i].DataTypeOID, v)
		if err != nil {
			return nil, errNotSupported("request text results for this column",
				"cannot send column %q (type OID %d) of a merged result in binary format: %v", fields[i].Name, fields[i].DataTypeOID, err)
		}
		out[i] = b
	}
	return out, nil
}

// binaryValue converts v, a value of type oid in text format, to binary.
// Only types whose conversion is known to be exact are converted (each
// is checked against Postgres in TestMergedBinaryResults); others are
// an error, which the client sees as 0A000. Values go through pgx's
// codecs in a Go type that holds all of the type's values (pgtype.Date
// and the timestamps keep ±infinity); arrays are encoded here, element
// by element, so that their dimensions and lower bounds stay as they
// were and every element is converted as exactly as a scalar. An enum
// (enums, read from the shard's catalog) is sent as its label.
func binaryValue(m *pgtype.Map, enums map[uint32]uint32, oid uint32, v []byte) ([]byte, error) {
	switch oid {
	case pgtype.JSONOID:
		// json's binary form is its text; decoding it into Go values
		// would reorder keys and round big numbers.
		return v, nil
	case pgtype.JSONBOID:
		return append([]byte{1}, v...), nil // version 1, then the text
	case pgtype.Float4OID, pgtype.Float8OID:
		return floatBinary(oid, v)
	case pgtype.NumericOID:
		return numericBinary(v)
	case pgtype.DateOID:
		return convert[pgtype.Date](m, oid, v)
	case pgtype.TimestampOID:
		return convert[pgtype.Timestamp](m, oid, v)
	case pgtype.TimestamptzOID:
		return convert[pgtype.Timestamptz](m, oid, v)
	case pgtype.CIDROID:
		// pgx writes a cidr as an inet: the same bytes but the is_cidr flag.
		b, err := convert[any](m, pgtype.InetOID, v)
		if err == nil && len(b) > 2 {
			b[2] = 1
		}
		return b, err
	}
	if elem, ok := router.ArrayElement(oid); ok {
		return arrayBinary(m, enums, elem, v)
	}
	if elem, ok := enums[oid]; ok {
		if elem == 0 {
			return v, nil // enum_send: the label
		}
		return arrayBinary(m, enums, elem, v)
	}
	if exactBinary[oid] {
		return convert[any](m, oid, v)
	}
	return nil, fmt.Errorf("shardproxy does not convert this type to binary")
}

// exactBinary are the types pgx's codecs convert from text to binary as
// Postgres' send functions write them. Not here (refused): money (its
// text depends on lc_monetary), timetz, ranges, int2vector, oidvector,
// and the types pgx does not know (it would send their text) except the
// shards' enums, whose binary form is their text.
var exactBinary = map[uint32]bool{
	pgtype.BoolOID: true, pgtype.ByteaOID: true, pgtype.QCharOID: true, pgtype.NameOID: true, pgtype.Int8OID: true,
	pgtype.Int2OID: true, pgtype.Int4OID: true, pgtype.TextOID: true, pgtype.OIDOID: true, pgtype.PointOID: true,
	pgtype.InetOID: true, pgtype.BPCharOID: true, pgtype.VarcharOID: true, pgtype.TimeOID: true, pgtype.IntervalOID: true,
	pgtype.BitOID: true, pgtype.VarbitOID: true, pgtype.UUIDOID: true, pgtype.MacaddrOID: true,
	pgtype.TSVectorOID: true,
}

// arrayBinary is array_send of an array of elem given in text: number
// of dimensions, whether a NULL is present, the element type, each
// dimension's length and lower bound, then each element's length (-1
// for NULL) and binary value.
func arrayBinary(m *pgtype.Map, enums map[uint32]uint32, elem uint32, v []byte) ([]byte, error) {
	a, err := router.ParseArray(v)
	if err != nil {
		return nil, err
	}
	hasNull := uint32(0)
	for _, e := range a.Elems {
		if e == nil {
			hasNull = 1
		}
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 12+8*len(a.Dims)+8*len(a.Elems)), uint32(len(a.Dims)))
	b = binary.BigEndian.AppendUint32(b, hasNull)
	b = binary.BigEndian.AppendUint32(b, elem)
	for d := range a.Dims {
		b = binary.BigEndian.AppendUint32(b, uint32(a.Dims[d]))
		b = binary.BigEndian.AppendUint32(b, uint32(int32(a.LBounds[d])))
	}
	for _, e := range a.Elems {
		if e == nil {
			b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // -1
			continue
		}
		eb, err := binaryValue(m, enums, elem, e)
		if err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(eb)))
		b = append(b, eb...)
	}
	return b, nil
}

// convert scans text into a T and encodes that in binary. The buffer is
// non-nil: Encode returns it unchanged for an empty value (”), and a
// nil slice would go out as NULL.
func convert[T any](m *pgtype.Map, oid uint32, v []byte) ([]byte, error) {
	var x T
	if err := m.Scan(oid, pgtype.TextFormatCode, v, &x); err != nil {
		return nil, err
	}
	return m.Encode(oid, pgtype.BinaryFormatCode, x, []byte{})
}

// floatBinary is float4send/float8send of a float's text: IEEE 754 bits,
// NaN as the C library's NAN (Go's math.NaN has another payload).
func floatBinary(oid uint32, v []byte) ([]byte, error) {
	if oid == pgtype.Float4OID {
		f, err := strconv.ParseFloat(string(v), 32)
		if err != nil {
			return nil, err
		}
		bits := math.Float32bits(float32(f))
		if f != f {
			bits = 0x7fc00000
		}
		return binary.BigEndian.AppendUint32(make([]byte, 0, 4), bits), nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return nil, err
	}
	bits := math.Float64bits(f)
	if f != f {
		bits = 0x7ff8000000000000
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), bits), nil
}

// numericBinary is numeric_send of a numeric's text as numeric_out writes
// it ([-]digits[.digits], NaN, Infinity, -Infinity): the number of
// base-10000 digits, the weight of the first, the sign, the display scale
// (the digits after the point), then the digits, without leading or
// trailing zero digits, as Postgres stores every numeric (weight 0 for
// zero). pgx's encoder keeps zero digits (80.0800000000000000 went out
// with five digits, 10000 with two): the same value, other bytes.
func numericBinary(v []byte) ([]byte, error) {
	b := make([]byte, 8, 16)
	switch string(v) {
	case "NaN":
		binary.BigEndian.PutUint16(b[4:], 0xC000)
		return b, nil
	case "Infinity", "-Infinity":
		// The display scale is what Postgres reads from the special
		// value's header bits (NUMERIC_DSCALE of a short header): 32.
		sign := uint16(0xD000)
		if v[0] == '-' {
			sign = 0xF000
		}
		binary.BigEndian.PutUint16(b[4:], sign)
		binary.BigEndian.PutUint16(b[6:], 32)
		return b, nil
	}
	text := string(v)
	neg := strings.HasPrefix(text, "-")
	text = strings.TrimPrefix(text, "-")
	whole, frac, _ := strings.Cut(text, ".")
	if whole == "" || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" ||
		len(frac) > math.MaxInt16 {
		return nil, fmt.Errorf("not a numeric as Postgres prints it: %q", v)
	}
	dscale := len(frac)
	// Align on the point: whole digits padded on the left, fraction
	// digits on the right, to groups of four.
	whole = strings.Repeat("0", (4-len(whole)%4)%4) + whole
	frac += strings.Repeat("0", (4-len(frac)%4)%4)
	all := whole + frac
	digits := make([]uint16, 0, len(all)/4)
	for i := 0; i < len(all); i += 4 {
		d, _ := strconv.Atoi(all[i : i+4])
		digits = append(digits, uint16(d))
	}
	weight := len(whole)/4 - 1
	for len(digits) > 0 && digits[0] == 0 {
		digits, weight = digits[1:], weight-1
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if len(digits) > math.MaxUint16 || weight > math.MaxInt16 || weight < math.MinInt16 {
		return nil, fmt.Errorf("numeric out of range: %q", v)
	}
	sign := uint16(0)
	if len(digits) == 0 {
		weight = 0 // zero: positive, weight 0
	} else if neg {
		sign = 0x4000
	}
	binary.BigEndian.PutUint16(b[0:], uint16(len(digits)))
	binary.BigEndian.PutUint16(b[2:], uint16(int16(weight)))
	binary.BigEndian.PutUint16(b[4:], sign)
	binary.BigEndian.PutUint16(b[6:], uint16(dscale))
	for _, d := range digits {
		b = binary.BigEndian.AppendUint16(b, d)
	}
	return b, nil
}

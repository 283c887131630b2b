package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// A merged statement's plan evaluates some of the client's parameters in
// the proxy (LIMIT $1, HAVING sum(x) > $2: router.ParamFunc), as text. A
// parameter sent in binary is converted by its type: the one the client
// gave in Parse or, if it gave none (OID 0, as pgx and libpq send), the
// one Postgres inferred, which a Describe of the statement reports
// (ParameterDescription). The proxy used to guess from the length alone
// (eight bytes: an int8), which read a numeric 0.00 as 2 and a pgx
// numeric 0 as 281470681743360.

// mergedParamOIDs returns the parameter types to decode ps's binary
// parameters in mb by: the client's, or Postgres' when the client left a
// binary one untyped, learnt from the statement's Describe or by
// describing it on a borrowed backend of the default shard.
func (s *session) mergedParamOIDs(ctx context.Context, ps *prepared, mb *multiBind) ([]uint32, error) {
	untyped := false
	for i, v := range mb.params {
		if v != nil && formatCode(mb.formats, i) == pgtype.BinaryFormatCode && (i >= len(ps.paramOIDs) || ps.paramOIDs[i] == 0) {
			untyped = true
			break
		}
	}
	if !untyped {
		return ps.paramOIDs, nil
	}
	if ps.paramTypes == nil {
		_, params, failure, err := s.describeWithParams(ctx, s.runtime().Config.DefaultShard, ps.query, ps.paramOIDs)
		if err != nil {
			return nil, err
		}
		if failure != nil {
			return ps.paramOIDs, nil // the statement fails on its shards too, with this error
		}
		ps.paramTypes = params
	}
	return ps.paramTypes, nil
}

// binaryParamText converts binary parameter $n of type oid to text, for
// the plan's evaluation in the proxy; a type it does not convert is
// refused (0A000), never guessed.
func binaryParamText(n int, oid uint32, v []byte) ([]byte, error) {
	size := map[uint32]int{pgtype.Int8OID: 8, pgtype.Int4OID: 4, pgtype.Int2OID: 2}[oid]
	switch {
	case size != 0 && len(v) != size:
		return nil, pgError("22P03", "incorrect binary data format in bind parameter %d", n)
	case oid == pgtype.Int8OID:
		return strconv.AppendInt(nil, int64(binary.BigEndian.Uint64(v)), 10), nil
	case oid == pgtype.Int4OID:
		return strconv.AppendInt(nil, int64(int32(binary.BigEndian.Uint32(v))), 10), nil
	case oid == pgtype.Int2OID:
		return strconv.AppendInt(nil, int64(int16(binary.BigEndian.Uint16(v))), 10), nil
	case oid == pgtype.NumericOID:
		t, err := numericText(v)
		if err != nil {
			return nil, pgError("22P03", "incorrect binary data format in bind parameter %d", n)
		}
		return t, nil
	}
	return nil, errNotSupported("send this parameter in text format",
		"cannot evaluate binary parameter $%d (type OID %d) of a merged statement", n, oid)
}

// numericText is numeric_recv then numeric_out: the text of a binary
// numeric, its digits beyond the display scale truncated as numeric_recv
// truncates them.
func numericText(b []byte) ([]byte, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("numeric of %d bytes", len(b))
	}
	ndigits := int(binary.BigEndian.Uint16(b[0:]))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*ndigits || dscale > 0x3FFF {
		return nil, fmt.Errorf("malformed numeric")
	}
	switch sign {
	case 0xC000:
		return []byte("NaN"), nil
	case 0xD000:
		return []byte("Infinity"), nil
	case 0xF000:
		return []byte("-Infinity"), nil
	case 0, 0x4000:
	default:
		return nil, fmt.Errorf("invalid numeric sign %#x", sign)
	}
	digits := make([]int, ndigits)
	for i := range digits {
		digits[i] = int(binary.BigEndian.Uint16(b[8+2*i:]))
		if digits[i] >= 10000 {
			return nil, fmt.Errorf("invalid numeric digit %d", digits[i])
		}
	}
	digit := func(i int) int { // the base-10000 digit of weight weight-i
		if i >= 0 && i < ndigits {
			return digits[i]
		}
		return 0
	}
	var out strings.Builder
	if weight < 0 {
		out.WriteByte('0')
	} else {
		for i := 0; i <= weight; i++ {
			if i == 0 {
				out.WriteString(strconv.Itoa(digit(i)))
			} else {
				fmt.Fprintf(&out, "%04d", digit(i))
			}
		}
	}
	if dscale > 0 {
		var frac strings.Builder
		for i := weight + 1; frac.Len() < dscale; i++ {
			fmt.Fprintf(&frac, "%04d", digit(i))
		}
		out.WriteByte('.')
		out.WriteString(frac.String()[:dscale])
	}
	text := out.String()
	if sign == 0x4000 && strings.Trim(text, "0.") != "" {
		text = "-" + text // (a zero is positive)
	}
	return []byte(text), nil
}

package router

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Arrays of the comparable scalar types are compared as Postgres'
// btree operators for anyarray compare them (array_cmp): element by
// element, a NULL element equal to a NULL and above any value; when one
// array's elements are a prefix of the other's, the one with fewer
// elements first; then by number of dimensions, each dimension's
// length, each lower bound. array_agg results are the common case: a
// sorted, grouped or DISTINCT array_agg across shards is one such value.

// ArrayText is an array value as array_out prints it, parsed.
type ArrayText struct {
	Dims    []int    // each dimension's length; none for an empty array
	LBounds []int    // each dimension's lower bound
	Elems   [][]byte // the elements' texts in storage order; nil is NULL
}

// ArrayElement returns the element type of the array type oid, for the
// built-in scalar types.
func ArrayElement(oid uint32) (uint32, bool) {
	e, ok := elementOf[oid]
	return e, ok
}

// ParseArray reads array_out's text: an optional dimension decoration
// ("[0:2]={...}", printed when a lower bound is not 1), then nested
// braces with comma-separated elements, each either unquoted (NULL, or
// text without special characters) or double-quoted with \ escapes.
func ParseArray(v []byte) (ArrayText, error) {
	var a ArrayText
	bad := func(what string) (ArrayText, error) {
		return ArrayText{}, fmt.Errorf("malformed array %q: %s", v, what)
	}
	i := 0
	for i < len(v) && v[i] == '[' {
		end := bytes.IndexByte(v[i:], ']')
		if end < 0 {
			return bad("unterminated dimension")
		}
		lo, _, ok := bytes.Cut(v[i+1:i+end], []byte{':'})
		if !ok {
			return bad("dimension without ':'")
		}
		lb, err := strconv.Atoi(string(lo))
		if err != nil {
			return bad("lower bound")
		}
		a.LBounds = append(a.LBounds, lb)
		i += end + 1
	}
	if len(a.LBounds) > 0 {
		if i >= len(v) || v[i] != '=' {
			return bad("dimensions without '='")
		}
		i++
	}
	// count[d] is the number of items in the first brace of depth d+1;
	// closed[d] tells that brace has ended (later braces of that depth
	// have the same length in an array Postgres printed).
	var count []int
	var closed []bool
	depth := 0
	for i < len(v) {
		switch c := v[i]; {
		case c == '{':
			if depth > 0 && !closed[depth-1] {
				count[depth-1]++
			}
			depth++
			if len(count) < depth {
				count, closed = append(count, 0), append(closed, false)
			}
			i++
		case c == '}' && depth > 0:
			closed[depth-1] = true
			depth--
			i++
		case depth == 0:
			return bad("text outside the braces")
		default:
			e, n, err := arrayElem(v[i:])
			if err != nil {
				return bad(err.Error())
			}
			if !closed[depth-1] {
				count[depth-1]++
			}
			a.Elems = append(a.Elems, e)
			i += n
		}
		if i < len(v) && v[i] == ',' && depth > 0 {
			i++
		}
	}
	if depth != 0 {
		return bad("unbalanced braces")
	}
	if len(a.Elems) == 0 {
		return ArrayText{}, nil // '{}': no dimensions at all
	}
	a.Dims = count
	if len(a.LBounds) == 0 {
		a.LBounds = make([]int, len(a.Dims))
		for d := range a.LBounds {
			a.LBounds[d] = 1
		}
	}
	if len(a.LBounds) != len(a.Dims) {
		return bad("decoration and braces disagree on the dimensions")
	}
	return a, nil
}

// arrayElem reads one element at the start of v: its text (nil for an
// unquoted NULL) and the number of bytes it took.
func arrayElem(v []byte) ([]byte, int, error) {
	if v[0] != '"' {
		end := bytes.IndexAny(v, ",}")
		if end <= 0 {
			return nil, 0, fmt.Errorf("empty or unterminated element")
		}
		if e := v[:end]; !bytes.EqualFold(e, []byte("NULL")) {
			return e, end, nil
		}
		return nil, end, nil
	}
	if end := bytes.IndexAny(v[1:], `"\`); end >= 0 && v[1+end] == '"' {
		return v[1 : 1+end : 1+end], end + 2, nil // no escapes: the text as it is
	}
	e := []byte{} // non-nil: "" is an empty string, not NULL
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
			if i == len(v) {
				return nil, 0, fmt.Errorf("unterminated escape")
			}
			e = append(e, v[i])
		case '"':
			return e, i + 1, nil
		default:
			e = append(e, v[i])
		}
	}
	return nil, 0, fmt.Errorf("unterminated quoted element")
}

// arrayScan reads an array text's elements one at a time, in storage
// order, without building the whole ArrayText: a sort compares arrays
// mostly by their first elements.
type arrayScan struct {
	v   []byte
	i   int
	err error
}

func newArrayScan(v []byte) arrayScan {
	if len(v) > 0 && v[0] == '[' { // dimension decoration: elements follow '='
		if eq := bytes.IndexByte(v, '='); eq >= 0 {
			return arrayScan{v: v, i: eq + 1}
		}
	}
	return arrayScan{v: v}
}

// next returns the next element (nil for NULL), or ok false at the end.
func (s *arrayScan) next() (e []byte, ok bool) {
	for s.i < len(s.v) {
		switch s.v[s.i] {
		case '{', '}', ',':
			s.i++
			continue
		}
		e, n, err := arrayElem(s.v[s.i:])
		if err != nil {
			s.err = err
			return nil, false
		}
		s.i += n
		return e, true
	}
	return nil, false
}

// compareArrays is array_cmp over two array texts of type t.
func (t valType) compareArrays(a, b []byte) (int, error) {
	et := typeOf(t.elem)
	sa, sb := newArrayScan(a), newArrayScan(b)
	for {
		ea, oka := sa.next()
		eb, okb := sb.next()
		if !oka || !okb {
			break
		}
		switch {
		case ea == nil && eb == nil:
			continue
		case ea == nil:
			return 1, nil
		case eb == nil:
			return -1, nil
		}
		c, err := et.compare(ea, eb)
		if err != nil || c != 0 {
			return c, err
		}
	}
	// Equal up to the shorter one's end (rare in a sort): the counts,
	// dimensions and bounds decide.
	x, err := ParseArray(a)
	if err != nil || sa.err != nil {
		return 0, badValue(t, a)
	}
	y, err := ParseArray(b)
	if err != nil || sb.err != nil {
		return 0, badValue(t, b)
	}
	if c := cmpInt(len(x.Elems), len(y.Elems)); c != 0 {
		return c, nil
	}
	if c := cmpInt(len(x.Dims), len(y.Dims)); c != 0 {
		return c, nil
	}
	for d := range x.Dims {
		if c := cmpInt(x.Dims[d], y.Dims[d]); c != 0 {
			return c, nil
		}
	}
	for d := range x.LBounds {
		if c := cmpInt(x.LBounds[d], y.LBounds[d]); c != 0 {
			return c, nil
		}
	}
	return 0, nil
}

// appendArrayKey appends an equality key of an array text: equal keys
// for arrays that array_eq calls equal (same dimensions and bounds,
// elements equal by their type's = operator, NULL matching NULL).
func (t valType) appendArrayKey(dst, v []byte) ([]byte, error) {
	x, err := ParseArray(v)
	if err != nil {
		return dst, badValue(t, v)
	}
	dst = binary.AppendUvarint(dst, uint64(len(x.Dims)))
	for d := range x.Dims {
		dst = binary.AppendVarint(binary.AppendUvarint(dst, uint64(x.Dims[d])), int64(x.LBounds[d]))
	}
	et := typeOf(t.elem)
	var k []byte
	for _, e := range x.Elems {
		if e == nil {
			dst = append(dst, 0)
			continue
		}
		if k, err = et.appendKey(k[:0], e); err != nil {
			return dst, err
		}
		dst = append(binary.AppendUvarint(append(dst, 1), uint64(len(k))), k...)
	}
	return dst, nil
}

package router

import (
	"math/big"
	"strconv"
	"strings"
)

// numeric is a Postgres numeric value: arbitrary precision decimal with a
// display scale (dscale), plus the special values NaN, Infinity and
// -Infinity (Postgres 14+). The merge re-aggregates partial sums and
// averages with it, so its arithmetic and its text must be Postgres' own
// (src/backend/utils/adt/numeric.c): sums keep the largest input dscale,
// avg is numeric_div with select_div_scale and round-half-away-from-zero.
type numeric struct {
	kind  numKind
	v     big.Int // value * 10^scale (finite only)
	scale int     // dscale, >= 0
}

type numKind uint8

const (
	numFinite numKind = iota
	numNaN
	numPInf
	numNInf
)

var bigTen = big.NewInt(10)

// pow10 returns 10^n (n >= 0); small powers are cached.
func pow10(n int) *big.Int {
	if n < len(pow10Cache) {
		return pow10Cache[n]
	}
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

var pow10Cache = func() []*big.Int {
	c := make([]*big.Int, 64)
	c[0] = big.NewInt(1)
	for i := 1; i < len(c); i++ {
		c[i] = new(big.Int).Mul(c[i-1], bigTen)
	}
	return c
}()

// parseNumeric reads numeric input text as numeric_in does: optional
// spaces and sign, digits with an optional point, an optional exponent
// (which lowers the dscale, never below 0), or NaN/Infinity spelled in any
// case.
func parseNumeric(s []byte) (numeric, error) {
	var n numeric
	t := strings.TrimSpace(string(s))
	switch strings.ToLower(t) {
	case "nan":
		n.kind = numNaN
		return n, nil
	case "infinity", "+infinity", "inf", "+inf":
		n.kind = numPInf
		return n, nil
	case "-infinity", "-inf":
		n.kind = numNInf
		return n, nil
	}
	bad := func() (numeric, error) {
		return numeric{}, pgError("22P02", `invalid input syntax for type numeric: "`+string(s)+`"`, "")
	}
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	mant, exp := t, 0
	if i := strings.IndexAny(t, "eE"); i >= 0 {
		e, err := strconv.Atoi(t[i+1:])
		if err != nil || e > 1000 || e < -1000 {
			return bad()
		}
		mant, exp = t[:i], e
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" && frac == "" {
		return bad()
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return bad()
		}
	}
	if _, ok := n.v.SetString("0"+intPart+frac, 10); !ok {
		return bad()
	}
	scale := len(frac) - exp
	if scale < 0 {
		n.v.Mul(&n.v, pow10(-scale))
		scale = 0
	}
	n.scale = scale
	if neg {
		n.v.Neg(&n.v)
	}
	return n, nil
}

func numericFromInt(i int64) numeric {
	var n numeric
	n.v.SetInt64(i)
	return n
}

// rescale raises the dscale to s (s >= n.scale), keeping the value.
func (n *numeric) rescale(s int) {
	if s > n.scale {
		n.v.Mul(&n.v, pow10(s-n.scale))
		n.scale = s
	}
}

// add sets n = n + o, as numeric_add: NaN absorbs, +Inf + -Inf is NaN,
// the dscale is the larger one.
func (n *numeric) add(o *numeric) {
	if n.kind != numFinite || o.kind != numFinite {
		switch {
		case n.kind == numNaN || o.kind == numNaN:
			n.kind = numNaN
		case n.kind == numFinite:
			n.kind = o.kind
		case o.kind == numFinite || o.kind == n.kind:
		default: // opposite infinities
			n.kind = numNaN
		}
		return
	}
	if o.scale > n.scale {
		n.rescale(o.scale)
	}
	if o.scale == n.scale {
		n.v.Add(&n.v, &o.v)
		return
	}
	var t big.Int
	t.Mul(&o.v, pow10(n.scale-o.scale))
	n.v.Add(&n.v, &t)
}

// weightFirst returns the weight and first base-10000 digit of a finite
// nonzero value, as Postgres' NumericVar holds it (digits aligned on the
// decimal point, DEC_DIGITS = 4); (0, 0) for zero, as select_div_scale
// uses.
func (n *numeric) weightFirst() (weight int, first int64) {
	if n.v.Sign() == 0 {
		return 0, 0
	}
	var abs big.Int
	abs.Abs(&n.v)
	e := len(abs.Text(10)) - 1 - n.scale // decimal exponent of the leading digit
	weight = floorDiv(e, 4)
	shift := n.scale + 4*weight // first = floor(abs / 10^shift)
	if shift >= 0 {
		abs.Quo(&abs, pow10(shift))
	} else {
		abs.Mul(&abs, pow10(-shift))
	}
	return weight, abs.Int64()
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Postgres' numeric.c constants used by select_div_scale.
const (
	numericMinSigDigits    = 16
	numericDecDigits       = 4
	numericMaxDisplayScale = 1000
)

// selectDivScale is select_div_scale: at least 16 significant digits,
// never fewer fractional digits than either input shows.
func selectDivScale(a, b *numeric) int {
	w1, f1 := a.weightFirst()
	w2, f2 := b.weightFirst()
	qweight := w1 - w2
	if f1 <= f2 {
		qweight--
	}
	r := numericMinSigDigits - qweight*numericDecDigits
	r = max(r, a.scale, b.scale, 0)
	return min(r, numericMaxDisplayScale)
}

// divInt returns a / count as numeric_div(a, count::numeric) computes it
// (count > 0): exact quotient rounded half away from zero at the scale
// select_div_scale picks.
func (n *numeric) divInt(count int64) numeric {
	var q numeric
	if n.kind != numFinite {
		q.kind = n.kind // ±Inf / positive = ±Inf; NaN stays NaN
		return q
	}
	c := numericFromInt(count)
	rscale := selectDivScale(n, &c)
	// q = n.v * 10^(rscale - n.scale) / count, rounded.
	var num, den big.Int
	num.Set(&n.v)
	den.SetInt64(count)
	if d := rscale - n.scale; d >= 0 {
		num.Mul(&num, pow10(d))
	} else {
		den.Mul(&den, pow10(-d))
	}
	var r big.Int
	q.v.QuoRem(&num, &den, &r) // truncated toward zero
	r.Abs(&r)
	r.Lsh(&r, 1)
	if r.CmpAbs(&den) >= 0 {
		if num.Sign() < 0 {
			q.v.Sub(&q.v, big.NewInt(1))
		} else {
			q.v.Add(&q.v, big.NewInt(1))
		}
	}
	q.scale = rscale
	return q
}

// appendText appends the value as numeric_out prints it.
func (n *numeric) appendText(dst []byte) []byte {
	switch n.kind {
	case numNaN:
		return append(dst, "NaN"...)
	case numPInf:
		return append(dst, "Infinity"...)
	case numNInf:
		return append(dst, "-Infinity"...)
	}
	if n.v.Sign() < 0 {
		dst = append(dst, '-')
	}
	var abs big.Int
	abs.Abs(&n.v)
	digits := abs.Text(10)
	if n.scale == 0 {
		return append(dst, digits...)
	}
	if len(digits) <= n.scale {
		digits = strings.Repeat("0", n.scale-len(digits)+1) + digits
	}
	k := len(digits) - n.scale
	dst = append(dst, digits[:k]...)
	dst = append(dst, '.')
	return append(dst, digits[k:]...)
}

func (n *numeric) String() string { return string(n.appendText(nil)) }

// addText adds numeric_out text v to n (n already holds a value). Texts of
// up to 18 digits, the common case, are added without allocating; others
// go through parseNumeric.
func (n *numeric) addText(v []byte, tmp *big.Int) error {
	if m, scale, ok := smallNumeric(v); ok && n.kind == numFinite {
		if scale > n.scale {
			n.rescale(scale)
		}
		tmp.SetInt64(m)
		if scale < n.scale {
			tmp.Mul(tmp, pow10(n.scale-scale))
		}
		n.v.Add(&n.v, tmp)
		return nil
	}
	x, err := parseNumeric(v)
	if err != nil {
		return err
	}
	n.add(&x)
	return nil
}

// smallNumeric reads [-]digits[.digits] of at most 18 digits as an
// unscaled int64 and its scale.
func smallNumeric(v []byte) (m int64, scale int, ok bool) {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	digits, point := 0, -1
	for i, c := range v {
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + int64(c-'0')
			digits++
		case c == '.' && point < 0:
			point = i
		default:
			return 0, 0, false
		}
	}
	if digits == 0 || digits > 18 {
		return 0, 0, false
	}
	if point >= 0 {
		scale = len(v) - point - 1
	}
	if neg {
		m = -m
	}
	return m, scale, true
}

package router

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/strategies"
)

// Timestamp keys route by the value Postgres stores, which depends on the
// column's type and on the session's TimeZone, not only on the text:
// timestamp drops an offset in the text; timestamptz reads a text without
// an offset in the session's TimeZone; a cast between the two converts in
// that zone. A strategy of either timestamp type compares keys of both
// (strategies.Key), so what matters here is the key column's own type,
// which the shard map does not say: it is looked up (Args.ColumnType) when
// the two readings of a value differ.

// errCastUnknown: the value is cast to a type other than timestamp or
// timestamptz (date, for one, truncates), which the router does not
// evaluate.
var errCastUnknown = errors.New("the value is cast to a type shardproxy does not evaluate")

// errColumnTypeUnknown: the key column's type could not be looked up, and
// the value reads differently as timestamp and as timestamptz.
var errColumnTypeUnknown = errors.New("the key column's type is unknown")

// columnType is the looked-up type of one table use's key column.
type columnType struct {
	done  bool
	kt    strategies.KeyType
	known bool
}

// bindColumnKey binds v as a value of u's key column. For timestamp keys
// ct caches the column's type across the values of one route.
func (r *Router) bindColumnKey(ctx context.Context, u *tableUse, v valueRef, args *Args, ct *columnType) (strategies.Key, int, error) {
	kt := u.info.strat.KeyType()
	if !isTimestamp(kt) {
		return bindKey(v, kt, args)
	}
	if args.ColumnType == nil {
		return bindTimestamp(v, kt, args)
	}
	if !ct.done {
		// Most values read the same either way (a UTC session, an
		// offset of +00, any binary parameter, 'now'): no lookup needed.
		if k, state, err, same := bindEitherWay(v, args); same {
			return k, state, err
		}
		name, err := args.ColumnType(ctx, u.schema, u.rel, u.info.key)
		if err != nil && ctx.Err() != nil {
			return strategies.Key{}, bound, ctx.Err()
		}
		ct.done = true
		if t, terr := strategies.KeyTypeOf(name); err == nil && terr == nil && isTimestamp(t) {
			ct.kt, ct.known = t, true
		}
	}
	if !ct.known {
		if k, state, err, same := bindEitherWay(v, args); same || err != nil && state == bound {
			return k, state, err // one key, or bad input either way
		}
		return strategies.Key{}, boundUnsure, errColumnTypeUnknown
	}
	return bindTimestamp(v, ct.kt, args)
}

// bindEitherWay binds v as stored in a timestamp and in a timestamptz
// column; same reports that both give one key, or fail alike.
func bindEitherWay(v valueRef, args *Args) (k strategies.Key, state int, err error, same bool) {
	k1, s1, err1 := bindTimestamp(v, strategies.KeyTimestamp, args)
	k2, s2, err2 := bindTimestamp(v, strategies.KeyTimestampTZ, args)
	switch {
	case s1 != s2:
		return k2, s2, err2, false
	case err1 == nil && err2 == nil:
		return k2, s2, nil, k1.Time.Equal(k2.Time)
	case s1 == boundUnsure:
		return k2, s2, err2, err1 == err2 // the same sentinel: 'now', a cast
	case err1 != nil && err2 != nil:
		return k2, s2, err2, false // bad input: the column's type words the error
	}
	return k2, s2, err2, false
}

// bindTimestamp binds v as a value stored in a column of type col: read as
// its innermost cast's type (else col), then converted through the outer
// casts and to col, as Postgres would.
func bindTimestamp(v valueRef, col strategies.KeyType, args *Args) (strategies.Key, int, error) {
	src := col
	convs := make([]strategies.KeyType, 0, len(v.casts)+1)
	for i, name := range v.casts {
		t, err := strategies.KeyTypeOf(name)
		if err != nil || !isTimestamp(t) {
			return strategies.Key{}, boundUnsure, errCastUnknown
		}
		if i == 0 {
			src = t
		} else {
			convs = append(convs, t)
		}
	}
	convs = append(convs, col)
	var k strategies.Key
	var err error
	switch {
	case v.neg:
		return strategies.Key{}, boundFree, nil // Postgres rejects it
	case v.param > 0:
		if v.param > len(args.Params) {
			return strategies.Key{}, boundFree, nil // Postgres will complain about the missing value
		}
		p := args.Params[v.param-1]
		if p == nil {
			return strategies.Key{}, boundNull, nil
		}
		if oid := paramOID(args.ParamOIDs, v.param-1); oid != 0 {
			// Declared at Parse, its type is read first and converted
			// through every cast (a timestamp parameter for a
			// timestamptz key is read in the session's TimeZone).
			var declared strategies.KeyType
			switch oid {
			case oidTimestamp:
				declared = strategies.KeyTimestamp
			case oidTimestamptz:
				declared = strategies.KeyTimestampTZ
			default:
				return strategies.Key{}, boundFree, nil // converted by Postgres from a type the router does not read
			}
			if len(v.casts) > 0 {
				convs = append([]strategies.KeyType{src}, convs...)
			}
			src = declared
		}
		if paramFormat(args.Formats, v.param-1) == 1 {
			k, err = strategies.DecodeBinaryKey(src, p)
		} else {
			k, err = strategies.ParseKeyIn(src, string(p), args.TimeZone)
		}
	case v.null:
		return strategies.Key{}, boundNull, nil
	default:
		k, err = strategies.ParseKeyIn(src, v.text, args.TimeZone)
	}
	for _, t := range convs {
		if err != nil {
			break
		}
		k, err = strategies.ConvertKey(k, t, args.TimeZone)
	}
	switch {
	case errors.Is(err, strategies.ErrNeedTimeZone), errors.Is(err, strategies.ErrVolatileKey):
		return strategies.Key{}, boundUnsure, err
	case err != nil:
		return strategies.Key{}, bound, err
	}
	return k, bound, nil
}

// unsureReason is the route reason's words for a boundUnsure error.
func unsureReason(err error) string {
	switch {
	case errors.Is(err, strategies.ErrNeedTimeZone):
		return "depends on the session TimeZone"
	case errors.Is(err, strategies.ErrVolatileKey):
		return "volatile"
	case errors.Is(err, errCastUnknown):
		return "cast"
	}
	return "column type unknown"
}

// unsureKeyError refuses an INSERT whose key only Postgres can evaluate:
// placing the row by a guess could put it where reads never look.
func unsureKeyError(u *tableUse, v valueRef, err error) error {
	what := fmt.Sprintf("the value of shard key column %s", u.info.key)
	if v.param == 0 && !v.null {
		what = fmt.Sprintf("shard key %s = '%s'", u.info.key, v.text)
	}
	var hint string
	switch {
	case errors.Is(err, strategies.ErrNeedTimeZone):
		hint = "write the timestamp with a UTC offset (e.g. '2024-12-31 22:00:00+00'), or SET TimeZone to a zone name such as 'UTC' or 'Europe/Berlin'"
	case errors.Is(err, strategies.ErrVolatileKey):
		hint = "send the timestamp value (e.g. computed by the application) instead of 'now', 'today', 'tomorrow' or 'yesterday'"
	case errors.Is(err, errCastUnknown):
		hint = "send the value as a plain timestamp literal or parameter, without casting it to another type"
	default:
		hint = "write the timestamp with a +00 offset, or make sure the table exists on the default shard"
	}
	return &pgconn.PgError{Severity: "ERROR", Code: codeFeatureNotSupport,
		Message: fmt.Sprintf("cannot route INSERT into %s: %s (%s)", u.name, what, err),
		Hint:    hint, TableName: u.rel, ColumnName: u.info.key}
}

func isTimestamp(t strategies.KeyType) bool {
	return t == strategies.KeyTimestamp || t == strategies.KeyTimestampTZ
}

package router

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
)

// newTimestampRouter shards events by a timestamptz range split at
// 2025-01-01 UTC: s0 below, s1 from there on.
func newTimestampRouter(t *testing.T) *Router {
	t.Helper()
	cfg := &config.Config{
		Shards: []config.Shard{{Name: "s0"}, {Name: "s1"}},
		Strategies: []config.Strategy{{Name: "by_time", Type: config.StrategyRange, KeyType: config.KeyTimestampTZ,
			Ranges: []config.Range{{Upper: "2025-01-01T00:00:00Z", Shard: "s0"}, {Unbounded: true, Shard: "s1"}}}},
		Tables: []config.Table{
			{Name: "ev_tz", Key: "at", Strategy: "by_time"},   // a timestamptz column
			{Name: "ev", Key: "at", Strategy: "by_time"},      // a timestamp column
			{Name: "ev_gone", Key: "at", Strategy: "by_time"}, // not in the catalog
		},
		DefaultShard:  "s0",
		PlanCacheSize: 100,
	}
	return routerFor(t, cfg)
}

// fakeColumnTypes is an Args.ColumnType resolver; it counts its calls.
type fakeColumnTypes struct{ calls int }

func (f *fakeColumnTypes) resolve(_ context.Context, _, rel, col string) (string, error) {
	f.calls++
	switch rel + "." + col {
	case "ev_tz.at":
		return "timestamp with time zone", nil
	case "ev.at":
		return "timestamp without time zone", nil
	}
	return "", &pgconn.PgError{Severity: "ERROR", Code: "42P01", Message: `relation "` + rel + `" does not exist`}
}

func TestRouteTimestampKeys(t *testing.T) {
	r := newTimestampRouter(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"s0", "s1"}
	cases := []struct {
		name    string
		sql     string
		params  []string // nil: simple protocol
		tz      *time.Location
		noTypes bool // no ColumnType resolver
		kind    RouteKind
		shards  []string
		code    string // expected SQLSTATE instead of a route
		hint    string // part of the error's hint
		lookups int    // ColumnType calls
	}{
		// 22:00 in New York is stored as 03:00 UTC the next day.
		{name: "timestamptz literal in session zone", sql: "INSERT INTO ev_tz (at) VALUES ('2024-12-31 22:00:00')", tz: ny, kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		{name: "timestamptz literal with offset", sql: "INSERT INTO ev_tz (at) VALUES ('2024-12-31 22:00:00+00')", tz: ny, kind: RouteSingle, shards: []string{"s0"}},
		{name: "timestamptz text param in session zone", sql: "INSERT INTO ev_tz (at) VALUES ($1)", params: []string{"2024-12-31 22:00:00"}, tz: ny, kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		{name: "timestamptz read in session zone", sql: "SELECT * FROM ev_tz WHERE at = '2024-12-31 22:00'", tz: ny, kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		// A timestamp column drops the offset.
		{name: "timestamp negative offset dropped", sql: "INSERT INTO ev (at) VALUES ('2024-12-31 23:30:00-02')", tz: time.UTC, kind: RouteSingle, shards: []string{"s0"}, lookups: 1},
		{name: "timestamp positive offset dropped", sql: "INSERT INTO ev (at) VALUES ('2025-01-01 00:30:00+09')", tz: time.UTC, kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		{name: "timestamp ignores session zone", sql: "INSERT INTO ev (at) VALUES ('2024-12-31 22:00:00')", tz: ny, kind: RouteSingle, shards: []string{"s0"}, lookups: 1},
		{name: "IN list looks up once", sql: "SELECT * FROM ev WHERE at IN ('2024-12-31 23:30-02', '2025-01-01 00:30+09')", tz: time.UTC, kind: RouteMulti, shards: both, lookups: 1},
		// Casts: read as the cast's type, then converted to the column's.
		{name: "timestamptz cast into timestamp column", sql: "INSERT INTO ev (at) VALUES ('2024-12-31 23:30:00-02'::timestamptz)", tz: time.UTC, kind: RouteSingle, shards: []string{"s1"}},
		{name: "timestamptz cast converts in session zone", sql: "INSERT INTO ev (at) VALUES (timestamptz '2024-12-31 22:00:00')", tz: ny, kind: RouteSingle, shards: []string{"s0"}, lookups: 1},
		{name: "timestamp cast into timestamptz column", sql: "INSERT INTO ev_tz (at) VALUES ('2024-12-31 22:00:00+05'::timestamp)", tz: ny, kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		{name: "date cast read scatters", sql: "SELECT * FROM ev WHERE at = '2024-12-31 23:30'::date", tz: time.UTC, kind: RouteAll, shards: both},
		{name: "date cast insert refused", sql: "INSERT INTO ev (at) VALUES ('2024-12-31 23:30'::date)", tz: time.UTC, code: "0A000", hint: "without casting"},
		{name: "column cast does not narrow", sql: "SELECT * FROM ev WHERE at::timestamptz = '2024-12-31 23:30+00'", tz: time.UTC, kind: RouteAll, shards: both},
		// Unknown TimeZone: reads scatter, writes are refused.
		{name: "no zone: read scatters", sql: "SELECT * FROM ev_tz WHERE at = '2024-12-31 22:00'", kind: RouteAll, shards: both, lookups: 1},
		{name: "no zone: update scatters", sql: "UPDATE ev_tz SET note = 'x' WHERE at = '2024-12-31 22:00'", kind: RouteAll, shards: both, lookups: 1},
		{name: "no zone: insert refused", sql: "INSERT INTO ev_tz (at) VALUES ('2024-12-31 22:00')", code: "0A000", hint: "UTC offset", lookups: 1},
		{name: "no zone: offset routes", sql: "INSERT INTO ev_tz (at) VALUES ('2024-12-31 22:00+00')", kind: RouteSingle, shards: []string{"s0"}},
		{name: "no zone: timestamp column routes", sql: "INSERT INTO ev (at) VALUES ('2025-01-01 00:30')", kind: RouteSingle, shards: []string{"s1"}, lookups: 1},
		// Special values.
		{name: "infinity", sql: "INSERT INTO ev_tz (at) VALUES ('infinity')", kind: RouteSingle, shards: []string{"s1"}},
		{name: "-infinity", sql: "INSERT INTO ev (at) VALUES ('-infinity')", kind: RouteSingle, shards: []string{"s0"}},
		{name: "epoch", sql: "SELECT * FROM ev_tz WHERE at = 'epoch'", kind: RouteSingle, shards: []string{"s0"}},
		{name: "now: read scatters", sql: "SELECT * FROM ev_tz WHERE at = 'now'", tz: ny, kind: RouteAll, shards: both},
		{name: "now: insert refused", sql: "INSERT INTO ev_tz (at) VALUES ('now')", tz: ny, code: "0A000", hint: "send the timestamp value"},
		{name: "today param: insert refused", sql: "INSERT INTO ev (at) VALUES ($1)", params: []string{"today"}, tz: ny, code: "0A000", hint: "send the timestamp value"},
		{name: "bad text", sql: "INSERT INTO ev_tz (at) VALUES ('soon')", tz: ny, code: "22P02", lookups: 1},
		// The column's type cannot be looked up: only agreeing readings route.
		{name: "unknown column type: agreeing readings route", sql: "INSERT INTO ev_gone (at) VALUES ('2025-01-01 00:30+00')", tz: ny, kind: RouteSingle, shards: []string{"s1"}},
		{name: "unknown column type: insert refused", sql: "INSERT INTO ev_gone (at) VALUES ('2025-01-01 00:30+09')", tz: time.UTC, code: "0A000", lookups: 1},
		{name: "unknown column type: read scatters", sql: "SELECT * FROM ev_gone WHERE at = '2025-01-01 00:30+09'", tz: time.UTC, kind: RouteAll, shards: both, lookups: 1},
		{name: "unknown column type: bad text", sql: "INSERT INTO ev_gone (at) VALUES ('soon')", tz: time.UTC, code: "22P02", lookups: 1},
		// Without a resolver (shardproxy route) the column has the strategy's type.
		{name: "no resolver: strategy type", sql: "INSERT INTO ev (at) VALUES ('2024-12-31 23:30:00-02')", tz: time.UTC, noTypes: true, kind: RouteSingle, shards: []string{"s1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			types := &fakeColumnTypes{}
			args := Args{TimeZone: tc.tz, ColumnType: types.resolve}
			if tc.noTypes {
				args.ColumnType = nil
			}
			_, rt, err := routeWith(r, tc.sql, tc.params, args)
			if tc.code != "" {
				if err == nil {
					t.Fatalf("routed %s, want error %s", formatRoute(rt, nil), tc.code)
				}
				if pe := asPg(t, err); pe.Code != tc.code || !strings.Contains(pe.Hint, tc.hint) {
					t.Fatalf("error %s %q (hint %q), want %s with hint containing %q", pe.Code, pe.Message, pe.Hint, tc.code, tc.hint)
				}
			} else {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if rt.Kind != tc.kind || !slices.Equal(rt.Shards, tc.shards) {
					t.Fatalf("route %s, want %s %v", formatRoute(rt, nil), tc.kind, tc.shards)
				}
			}
			if types.calls != tc.lookups {
				t.Errorf("%d column type lookups, want %d", types.calls, tc.lookups)
			}
		})
	}
}

// A binary parameter is the stored value itself (microseconds since 2000,
// UTC for timestamptz, wall clock for timestamp): no zone, no lookup.
func TestRouteTimestampBinaryParam(t *testing.T) {
	r := newTimestampRouter(t)
	st, err := r.Prepare("INSERT INTO ev_tz (at) VALUES ($1)")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC), "s0"},
		{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "s1"},
	} {
		t.Run(tc.at.String(), func(t *testing.T) {
			us := tc.at.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
			types := &fakeColumnTypes{}
			rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{binary.BigEndian.AppendUint64(nil, uint64(us))},
				Formats: []int16{1}, ColumnType: types.resolve})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rt.Shards, []string{tc.want}) || types.calls != 0 {
				t.Errorf("route %s with %d lookups, want %s and none", formatRoute(rt, nil), types.calls, tc.want)
			}
		})
	}
}

package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const timeZoneBody = `
strategies:
  by_time: {type: range, key_type: timestamptz, ranges: [{upper: "2025-01-01", shard: s0}, {shard: s1}]}
tables:
  tz_events: {key: at, strategy: by_time}
default_shard: s0
`

// TestTimeZoneRouting covers where the session's TimeZone comes from
// (startup packet, SET, unknown) and what happens when the proxy cannot
// tell a key's value: reads go everywhere, INSERTs are refused.
func TestTimeZoneRouting(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 2, Body: timeZoneBody})
	ctx := context.Background()
	admin := f.Connect(t)
	if _, err := admin.Exec(ctx, "CREATE TABLE tz_events (at timestamptz, note text)"); err != nil {
		t.Fatal(err)
	}
	// Rows placed by absolute instants, so that no zone is involved.
	for _, ins := range []string{
		"INSERT INTO tz_events VALUES ('2024-12-31 22:00:00-05', 'ny-eve')", // 03:00 UTC: s1
		"INSERT INTO tz_events VALUES ('2024-12-31 22:00:00+00', 'utc-eve')",
		"INSERT INTO tz_events VALUES ('infinity', 'inf')",
		"INSERT INTO tz_events VALUES ('-infinity', 'ninf')",
	} {
		if _, err := admin.Exec(ctx, ins, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", ins, err)
		}
	}
	where := func(t *testing.T, note string) string {
		t.Helper()
		for _, sh := range f.Config.ShardNames() {
			var n int
			if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM tz_events WHERE note = $1", note).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return sh
			}
		}
		return ""
	}
	for note, want := range map[string]string{"ny-eve": "s1", "utc-eve": "s0", "inf": "s1", "ninf": "s0"} {
		if got := where(t, note); got != want {
			t.Errorf("row %s is on %q, want %s", note, got, want)
		}
	}

	t.Run("startup parameter", func(t *testing.T) {
		c, err := pgx.Connect(ctx, f.DSN()+"&timezone=America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "INSERT INTO tz_events VALUES ('2024-12-31 21:00:00', 'startup')", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if got := where(t, "startup"); got != "s1" {
			t.Errorf("row is on %q, want s1 (02:00 UTC)", got)
		}
		var note string
		if err := c.QueryRow(ctx, "SELECT note FROM tz_events WHERE at = '2024-12-31 22:00:00'", pgx.QueryExecModeSimpleProtocol).Scan(&note); err != nil || note != "ny-eve" {
			t.Errorf("read in New York: %q, %v; want ny-eve", note, err)
		}
	})

	// A POSIX zone Go cannot load: the instant of a literal without an
	// offset is unknown to the proxy (Postgres knows it).
	t.Run("unknown zone", func(t *testing.T) {
		c := f.Connect(t)
		if _, err := c.Exec(ctx, "SET TimeZone = '<-05>+5'"); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			var note string
			if err := c.QueryRow(ctx, "SELECT note FROM tz_events WHERE at = $1", mode, "2024-12-31 22:00:00").Scan(&note); err != nil || note != "ny-eve" {
				t.Errorf("%v: read scattered: %q, %v; want ny-eve", mode, note, err)
			}
			_, err := c.Exec(ctx, "INSERT INTO tz_events VALUES ($1, 'refused')", mode, "2024-12-31 22:00:00")
			if pe := tzPgError(err); pe == nil || pe.Code != "0A000" || !strings.Contains(pe.Hint, "UTC offset") {
				t.Errorf("%v: INSERT without offset: %v, want 0A000 with a hint", mode, err)
			}
		}
		if _, err := c.Exec(ctx, "INSERT INTO tz_events VALUES ('2024-12-31 22:00:00-05', 'offset')"); err != nil {
			t.Fatalf("INSERT with offset: %v", err)
		}
		if got := where(t, "offset"); got != "s1" {
			t.Errorf("row is on %q, want s1", got)
		}
	})

	t.Run("volatile values", func(t *testing.T) {
		c := f.Connect(t)
		_, err := c.Exec(ctx, "INSERT INTO tz_events VALUES ('now', 'now')", pgx.QueryExecModeSimpleProtocol)
		if pe := tzPgError(err); pe == nil || pe.Code != "0A000" || !strings.Contains(pe.Hint, "send the timestamp value") {
			t.Errorf("INSERT 'now': %v, want 0A000", err)
		}
		// 'now' reads every shard (no row matches); 'infinity' only s1.
		for q, want := range map[string]string{"at = 'now'": "", "at = 'infinity'": "inf", "at = '-infinity'": "ninf"} {
			var notes []string
			rows, err := c.Query(ctx, "SELECT note FROM tz_events WHERE "+q, pgx.QueryExecModeSimpleProtocol)
			if err == nil {
				notes, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err != nil || strings.Join(notes, ",") != want {
				t.Errorf("WHERE %s: %q, %v; want %q", q, notes, err, want)
			}
		}
	})
}

func tzPgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

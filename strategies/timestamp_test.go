package strategies

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/config"
)

func TestParseKeyInTimestamps(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(y int, mo time.Month, d, h, mi int) time.Time { return time.Date(y, mo, d, h, mi, 0, 0, time.UTC) }
	tests := []struct {
		name    string
		t       KeyType
		in      string
		loc     *time.Location
		want    time.Time
		wantErr error
	}{
		// Postgres stores '2024-12-31 22:00' in New York as 03:00 UTC.
		{"timestamptz naive in session zone", KeyTimestampTZ, "2024-12-31 22:00:00", ny, utc(2025, 1, 1, 3, 0), nil},
		{"timestamptz offset beats session zone", KeyTimestampTZ, "2024-12-31 22:00:00+00", ny, utc(2024, 12, 31, 22, 0), nil},
		{"timestamptz +hhmm offset", KeyTimestampTZ, "2024-12-31T22:00:00+0530", nil, utc(2024, 12, 31, 16, 30), nil},
		{"timestamptz date in session zone", KeyTimestampTZ, "2025-01-01", ny, utc(2025, 1, 1, 5, 0), nil},
		{"timestamptz naive without zone", KeyTimestampTZ, "2024-12-31 22:00", nil, time.Time{}, ErrNeedTimeZone},
		// timestamp_in drops the offset: stored as 23:30.
		{"timestamp drops negative offset", KeyTimestamp, "2024-12-31 23:30:00-02", nil, utc(2024, 12, 31, 23, 30), nil},
		{"timestamp drops positive offset", KeyTimestamp, "2025-01-01 00:30:00+09", ny, utc(2025, 1, 1, 0, 30), nil},
		{"timestamp ignores session zone", KeyTimestamp, "2025-01-01 00:30", ny, utc(2025, 1, 1, 0, 30), nil},
		// DST, as in Postgres' manual (B.2): both get UTC-5.
		{"spring-forward gap", KeyTimestampTZ, "2018-03-11 02:30", ny, utc(2018, 3, 11, 7, 30), nil},
		{"fall-back overlap", KeyTimestampTZ, "2018-11-04 01:30", ny, utc(2018, 11, 4, 6, 30), nil},
		{"summer", KeyTimestampTZ, "2018-07-01 12:00", ny, utc(2018, 7, 1, 16, 0), nil},
		{"epoch", KeyTimestampTZ, "EPOCH", nil, utc(1970, 1, 1, 0, 0), nil},
		{"infinity", KeyTimestamp, "infinity", nil, timeInfinity, nil},
		{"+infinity", KeyTimestampTZ, "+infinity", nil, timeInfinity, nil},
		{"-infinity", KeyTimestampTZ, "-infinity", nil, timeNegInfinity, nil},
		{"now", KeyTimestampTZ, "now", ny, time.Time{}, ErrVolatileKey},
		{"today", KeyTimestamp, " Today", nil, time.Time{}, ErrVolatileKey},
		{"tomorrow", KeyTimestamp, "tomorrow", nil, time.Time{}, ErrVolatileKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyIn(tc.t, tc.in, tc.loc)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParseKeyIn(%q) = %v, %v; want %v", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tc.t || !got.Time.Equal(tc.want) || got.Time.Location() != time.UTC {
				t.Errorf("ParseKeyIn(%q) = %v %v, want %v %v (UTC)", tc.in, got.Type, got.Time, tc.t, tc.want)
			}
		})
	}
}

// Text and binary infinities must be the same key, or a range would place
// them differently.
func TestTimestampInfinityMatchesBinary(t *testing.T) {
	for _, tc := range []struct {
		text string
		us   int64
	}{{"infinity", math.MaxInt64}, {"-infinity", math.MinInt64}} {
		t.Run(tc.text, func(t *testing.T) {
			bin, err := DecodeBinaryKey(KeyTimestampTZ, binary.BigEndian.AppendUint64(nil, uint64(tc.us)))
			if err != nil {
				t.Fatal(err)
			}
			txt, err := ParseKey(KeyTimestampTZ, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !bin.Time.Equal(txt.Time) || bin.Type != KeyTimestampTZ {
				t.Errorf("binary %v %v, text %v", bin.Type, bin.Time, txt.Time)
			}
		})
	}
}

func TestConvertKey(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	wall := Key{Type: KeyTimestamp, Time: time.Date(2024, 12, 31, 22, 0, 0, 0, time.UTC)}
	instant := Key{Type: KeyTimestampTZ, Time: time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC)}
	tests := []struct {
		name    string
		k       Key
		to      KeyType
		loc     *time.Location
		want    Key
		wantErr error
	}{
		{"timestamp to timestamptz", wall, KeyTimestampTZ, ny, instant, nil},
		{"timestamptz to timestamp", instant, KeyTimestamp, ny, wall, nil},
		{"same type needs no zone", wall, KeyTimestamp, nil, wall, nil},
		{"infinity needs no zone", Key{Type: KeyTimestamp, Time: timeInfinity}, KeyTimestampTZ, nil, Key{Type: KeyTimestampTZ, Time: timeInfinity}, nil},
		{"conversion needs a zone", wall, KeyTimestampTZ, nil, Key{}, ErrNeedTimeZone},
		{"other types pass", Key{Type: KeyInt, Int: 5}, KeyTimestampTZ, nil, Key{Type: KeyInt, Int: 5}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ConvertKey(tc.k, tc.to, tc.loc)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got.Type != tc.want.Type || !got.Time.Equal(tc.want.Time) || got.Int != tc.want.Int {
				t.Errorf("got %v %v, want %v %v", got.Type, got, tc.want.Type, tc.want)
			}
		})
	}
}

// A timestamp column may sit under a timestamptz strategy: its wall clock
// is compared with the bounds as if in UTC, whatever the session's zone.
func TestRangeLocatesEitherTimestampType(t *testing.T) {
	r, err := newRange("r", KeyTimestampTZ, []config.Range{{Upper: "2025-01-01T00:00:00Z", Shard: "s0"}, {Unbounded: true, Shard: "s1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k    Key
		want string
	}{
		{Key{Type: KeyTimestamp, Time: time.Date(2024, 12, 31, 23, 30, 0, 0, time.UTC)}, "s0"},
		{Key{Type: KeyTimestampTZ, Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, "s1"},
	} {
		t.Run(tc.k.Type.String(), func(t *testing.T) {
			got, err := r.Locate(context.Background(), tc.k, Read)
			if err != nil || got != tc.want {
				t.Errorf("Locate(%v) = %q, %v; want %q", tc.k, got, err, tc.want)
			}
		})
	}
	if _, err := r.Locate(context.Background(), Key{Type: KeyInt, Int: 1}, Read); err == nil {
		t.Error("an int key was located by a timestamp strategy")
	}
}

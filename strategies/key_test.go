package strategies

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseKey(t *testing.T) {
	uuid := Key{Type: KeyUUID, UUID: [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}}
	tests := []struct {
		name string
		t    KeyType
		in   string
		want Key
		code string // SQLSTATE of the expected error, "" for success
		msg  string
	}{
		{"int", KeyInt, "42", Key{Type: KeyInt, Int: 42}, "", ""},
		{"negative int", KeyInt, "-7", Key{Type: KeyInt, Int: -7}, "", ""},
		{"plus and spaces", KeyInt, " +8\n", Key{Type: KeyInt, Int: 8}, "", ""},
		{"min int64", KeyInt, "-9223372036854775808", Key{Type: KeyInt, Int: math.MinInt64}, "", ""},
		{"not a number", KeyInt, "abc", Key{}, "22P02", `invalid input syntax for type bigint: "abc"`},
		{"empty int", KeyInt, "", Key{}, "22P02", `invalid input syntax for type bigint: ""`},
		{"two signs", KeyInt, "--1", Key{}, "22P02", `invalid input syntax for type bigint: "--1"`},
		{"decimal", KeyInt, "1.5", Key{}, "22P02", `invalid input syntax for type bigint: "1.5"`},
		{"overflow", KeyInt, "9223372036854775808", Key{}, "22003", `value "9223372036854775808" is out of range for type bigint`},
		{"text", KeyText, "abc", Key{Type: KeyText, Text: "abc"}, "", ""},
		{"empty text", KeyText, "", Key{Type: KeyText}, "", ""},
		{"uuid", KeyUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", uuid, "", ""},
		{"uuid upper braces", KeyUUID, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", uuid, "", ""},
		{"uuid no hyphens", KeyUUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11", uuid, "", ""},
		{"uuid odd hyphens", KeyUUID, "a0ee-bc99-9c0b4ef8-bb6d-6bb9-bd38-0a11", uuid, "", ""},
		{"uuid short", KeyUUID, "a0eebc99", Key{}, "22P02", `invalid input syntax for type uuid: "a0eebc99"`},
		{"uuid trailing hyphen", KeyUUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11-", Key{}, "22P02", `invalid input syntax for type uuid: "a0eebc999c0b4ef8bb6d6bb9bd380a11-"`},
		{"timestamp with zone", KeyTimestamp, "2024-01-02 03:04:05+00", Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, "", ""},
		{"timestamptz offset", KeyTimestampTZ, "2024-01-02 05:04:05.25+02:00", Key{Type: KeyTimestampTZ, Time: time.Date(2024, 1, 2, 3, 4, 5, 250e6, time.UTC)}, "", ""},
		{"timestamp ignores offset", KeyTimestamp, "2024-01-02 05:04:05.25+02:00", Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 5, 4, 5, 250e6, time.UTC)}, "", ""},
		{"timestamp naive is UTC", KeyTimestamp, "2024-01-02 03:04:05", Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, "", ""},
		{"rfc3339", KeyTimestamp, "2024-01-02T03:04:05Z", Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, "", ""},
		{"date", KeyTimestamp, "2024-01-02", Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}, "", ""},
		{"bad timestamptz", KeyTimestampTZ, "soon", Key{}, "22P02", `invalid input syntax for type timestamp with time zone: "soon"`},
		{"bad timestamp", KeyTimestamp, "2024-13-01", Key{}, "22P02", `invalid input syntax for type timestamp without time zone: "2024-13-01"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.t, tc.in)
			if tc.code != "" {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) {
					t.Fatalf("ParseKey(%q) error = %v, want a *pgconn.PgError", tc.in, err)
				}
				if pgErr.Code != tc.code || pgErr.Message != tc.msg {
					t.Fatalf("ParseKey(%q) error = %s %q, want %s %q", tc.in, pgErr.Code, pgErr.Message, tc.code, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey(%q): %v", tc.in, err)
			}
			if !keysEqual(got, tc.want) {
				t.Fatalf("ParseKey(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func keysEqual(a, b Key) bool {
	return a.Type == b.Type && a.Int == b.Int && a.Text == b.Text && a.UUID == b.UUID && a.Time.Equal(b.Time)
}

func TestKeyStringRoundTrips(t *testing.T) {
	tests := []struct {
		t    KeyType
		in   string
		want string
	}{
		{KeyInt, "-0042", "-42"},
		{KeyText, "héllo", "héllo"},
		{KeyUUID, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{KeyTimestampTZ, "2024-01-02 05:04:05.123456+02", "2024-01-02T03:04:05.123456Z"},
		{KeyTimestamp, "2024-01-02 05:04:05.123456+02", "2024-01-02T05:04:05.123456Z"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			k, err := ParseKey(tc.t, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			again, err := ParseKey(tc.t, k.String())
			if err != nil || !keysEqual(again, k) {
				t.Fatalf("ParseKey(String()) = %+v, %v; want %+v", again, err, k)
			}
		})
	}
}

func TestDecodeBinaryKey(t *testing.T) {
	tests := []struct {
		name string
		t    KeyType
		in   []byte
		want Key
		fail bool
	}{
		{"int2", KeyInt, []byte{0xff, 0xfe}, Key{Type: KeyInt, Int: -2}, false},
		{"int4", KeyInt, []byte{0, 0, 1, 0}, Key{Type: KeyInt, Int: 256}, false},
		{"int8", KeyInt, []byte{0x80, 0, 0, 0, 0, 0, 0, 0}, Key{Type: KeyInt, Int: math.MinInt64}, false},
		{"int3", KeyInt, []byte{1, 2, 3}, Key{}, true},
		{"text", KeyText, []byte("漢字"), Key{Type: KeyText, Text: "漢字"}, false},
		{"uuid", KeyUUID, make([]byte, 16), Key{Type: KeyUUID}, false},
		{"short uuid", KeyUUID, make([]byte, 15), Key{}, true},
		// 2024-01-02 03:04:05.000001 UTC is 757479845000001 µs after 2000-01-01.
		{"timestamp", KeyTimestamp, []byte{0x00, 0x02, 0xb0, 0xec, 0x85, 0x15, 0xf3, 0x41}, Key{Type: KeyTimestamp, Time: time.Date(2024, 1, 2, 3, 4, 5, 1000, time.UTC)}, false},
		{"timestamp before 2000", KeyTimestamp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Key{Type: KeyTimestamp, Time: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeBinaryKey(tc.t, tc.in)
			if tc.fail {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "22P03" {
					t.Fatalf("DecodeBinaryKey(%x) error = %v, want SQLSTATE 22P03", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !keysEqual(got, tc.want) {
				t.Fatalf("DecodeBinaryKey(%x) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestKeyTypeOf(t *testing.T) {
	tests := map[string]KeyType{"int": KeyInt, "bigint": KeyInt, "text": KeyText, "uuid": KeyUUID, "timestamp": KeyTimestamp, "timestamptz": KeyTimestampTZ,
		"timestamp without time zone": KeyTimestamp, "Timestamp With Time Zone": KeyTimestampTZ}
	for in, want := range tests {
		if got, err := KeyTypeOf(in); err != nil || got != want {
			t.Errorf("KeyTypeOf(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := KeyTypeOf("float"); err == nil {
		t.Error("KeyTypeOf(float) succeeded")
	}
}

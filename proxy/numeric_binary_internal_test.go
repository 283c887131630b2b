package proxy

import (
	"encoding/hex"
	"strings"
	"testing"
)

// TestNumericBinary: numeric_send's bytes for numeric_out's text, as
// Postgres 15 sends them (SELECT v::numeric in binary); pgx's encoder kept
// zero base-10000 digits (80.0800000000000000, 10000, 0.00000001) and gave
// zero weight -1. TestMergedBinaryResults checks more values against a
// server.
func TestNumericBinary(t *testing.T) {
	for text, want := range map[string]string{
		"NaN":                   "00 00 00 00 c0 00 00 00",
		"Infinity":              "00 00 00 00 d0 00 00 20",
		"-Infinity":             "00 00 00 00 f0 00 00 20",
		"0":                     "00 00 00 00 00 00 00 00",
		"0.000":                 "00 00 00 00 00 00 00 03",
		"10000":                 "00 01 00 01 00 00 00 00 00 01",
		"0.00000001":            "00 01 ff fe 00 00 00 08 00 01",
		"80.0800000000000000":   "00 02 00 00 00 00 00 10 00 50 03 20",
		"-12345678.90000000":    "00 03 00 01 40 00 00 08 04 d2 16 2e 23 28",
		"100000000000000000000": "00 01 00 05 00 00 00 00 00 01",
		"0.0015":                "00 01 ff ff 00 00 00 04 00 0f",
		"100000000":             "00 01 00 02 00 00 00 00 00 01",
	} {
		got, err := numericBinary([]byte(text))
		if err != nil {
			t.Errorf("%s: %v", text, err)
			continue
		}
		if w, _ := hex.DecodeString(strings.ReplaceAll(want, " ", "")); string(got) != string(w) {
			t.Errorf("%s: % x, Postgres sends %s", text, got, want)
		}
	}
	for _, bad := range []string{"", "-", "1e5", "1.2.3", " 1", "+1", "0x10"} {
		if _, err := numericBinary([]byte(bad)); err == nil {
			t.Errorf("%q: converted, want an error", bad)
		}
	}
}

// TestNumericText: numericText reads what numeric_send writes (each value
// of TestNumericBinary back to its text), truncates digits beyond the
// display scale as numeric_recv does, and reads a zero as positive.
func TestNumericText(t *testing.T) {
	for _, text := range []string{"NaN", "Infinity", "-Infinity", "0", "0.000", "10000", "0.00000001",
		"80.0800000000000000", "-12345678.90000000", "100000000000000000000", "0.0015", "100000000", "-7", "1.5", "9999.9999"} {
		b, err := numericBinary([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := numericText(b); err != nil || string(got) != text {
			t.Errorf("%s: read back as %q (%v)", text, got, err)
		}
	}
	for name, c := range map[string]struct {
		hex, want string
	}{
		"pgx's zero (weight -1)":         {"0000ffff00000000", "0"},
		"zero with scale 300":            {"000000000000012c", "0." + strings.Repeat("0", 300)},
		"negative zero":                  {"0000000040000002", "0.00"},
		"1.23456 with scale 2":           {"0003000000000002000108fc1770", "1.23"},
		"-0.0001 with scale 2":           {"0001ffff40000002 0001", "0.00"},
		"leading zero digits, 0.0000007": {"0002ffff000000070000 001e", "0.0000003"},
	} {
		b, _ := hex.DecodeString(strings.ReplaceAll(c.hex, " ", ""))
		if got, err := numericText(b); err != nil || string(got) != c.want {
			t.Errorf("%s: %q (%v), want %q", name, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "00010000000000", "0001000000000000ffff", "0000000012340000"} {
		b, _ := hex.DecodeString(bad)
		if got, err := numericText(b); err == nil {
			t.Errorf("% x: read as %q, want an error", b, got)
		}
	}
}

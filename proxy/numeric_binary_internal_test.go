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

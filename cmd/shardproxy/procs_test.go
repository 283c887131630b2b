package main

import "testing"

func TestProxyProcs(t *testing.T) {
	for _, tc := range []struct {
		env         string
		found, want int
		fromEnv     bool
	}{
		{"", 1, 1, false},
		{"", 2, 1, false},
		{"", 3, 1, false},
		{"", 4, 2, false},
		{"", 16, 8, false},
		{"2", 2, 2, true}, // the runtime applied GOMAXPROCS=2 already
		{"5", 5, 5, true},
	} {
		n, fromEnv := proxyProcs(tc.env, tc.found)
		if n != tc.want || fromEnv != tc.fromEnv {
			t.Errorf("proxyProcs(%q, %d) = %d, %t; want %d, %t", tc.env, tc.found, n, fromEnv, tc.want, tc.fromEnv)
		}
	}
}

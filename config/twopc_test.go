package config

import (
	"strings"
	"testing"
	"time"
)

func TestTwoPhaseCommitKeys(t *testing.T) {
	const meta = "metadata: {dsn: \"postgres://h:5432/meta\"}\n"
	tests := []struct {
		name, yaml string
		grace      time.Duration
		err        string // substring of the error; "" = valid
	}{
		{name: "default grace", yaml: meta + "two_phase_commit: true\n", grace: DefaultTwoPhaseGrace},
		{name: "grace", yaml: meta + "two_phase_commit: true\ntwo_phase_commit_grace: 1500ms\n", grace: 1500 * time.Millisecond},
		{name: "bad grace", yaml: meta + "two_phase_commit: true\ntwo_phase_commit_grace: soon\n", err: "two_phase_commit_grace"},
		{name: "no metadata", yaml: "two_phase_commit: true\n", err: "needs metadata.dsn"},
		{name: "off without metadata", yaml: "two_phase_commit: false\n", grace: DefaultTwoPhaseGrace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tc.yaml), "t.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.TwoPhaseGrace(); got != tc.grace {
				t.Fatalf("grace %v, want %v", got, tc.grace)
			}
		})
	}
}

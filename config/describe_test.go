package config

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDescribeGolden(t *testing.T) {
	for _, name := range []string{"design", "example"} {
		t.Run(name, func(t *testing.T) {
			c, err := Load("../testdata/config/" + name + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := Describe(c)
			golden := "../testdata/config/" + name + ".describe.golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Describe differs from %s (run with -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestDescribeHidesPasswords(t *testing.T) {
	src := `users: [{name: app, password: hunter1}]
metadata: {dsn: "host=m password='hunter 2' dbname=meta"}
shards:
  - {name: s0, dsn: "postgres://u:hunter3@h/a?sslpassword=hunter4"}
  - {name: s1, dsn: "host=h dbname=b password=hunter5"}
`
	c, err := Parse([]byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	out := Describe(c)
	if strings.Contains(out, "hunter") {
		t.Errorf("password in Describe output:\n%s", out)
	}
	for _, want := range []string{"postgres://u:xxxxx@h/a?sslpassword=xxxxx", "host=h dbname=b password=xxxxx", "host=m password=xxxxx dbname=meta"} {
		if !strings.Contains(out, want) {
			t.Errorf("Describe output lacks %q:\n%s", want, out)
		}
	}
}

func TestMaskDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u@h:5432/db", "postgres://u@h:5432/db"},
		{"postgres://u:p%40ss@h/db", "postgres://u:xxxxx@h/db"},
		{"postgresql://u:pw@h/db?password=pw2&sslmode=disable", "postgresql://u:xxxxx@h/db?password=xxxxx&sslmode=disable"},
		{"host=h password=pw user=u", "host=h password=xxxxx user=u"},
		{"host=h password = 'a b\\' c' user=u", "host=h password=xxxxx user=u"},
		{"postgres://u:pw@h:bad port/db", "postgres://u:xxxxx@h:bad port/db"}, // unparsable URL
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := MaskDSN(tt.in); got != tt.want {
				t.Errorf("MaskDSN(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIntervals(t *testing.T) {
	tests := []struct {
		name   string
		ranges []Range
		want   []string
	}{
		{"unbounded last", []Range{{Upper: "10", Shard: "a"}, {Upper: "20", Shard: "b"}, {Unbounded: true, Shard: "c"}},
			[]string{"(-inf, 10) -> a", "[10, 20) -> b", "[20, +inf) -> c"}},
		{"single unbounded", []Range{{Unbounded: true, Shard: "a"}}, []string{"(-inf, +inf) -> a"}},
		{"bounded last", []Range{{Upper: "10", Shard: "a"}},
			[]string{"(-inf, 10) -> a", "[10, +inf) -> no shard (error)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Intervals(tt.ranges); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNormalizeTableName(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"orders", "orders", ""},
		{"Orders", "orders", ""},
		{`"Orders"`, "Orders", ""},
		{`Sales."Orders"`, "sales.Orders", ""},
		{`"a""b"`, `a"b`, ""},
		{"t$1_x", "t$1_x", ""},
		{"1t", "", `not an identifier (quote it with "..." to use other characters)`},
		{"a.", "", `not an identifier (quote it with "..." to use other characters)`},
		{`""`, "", "zero-length quoted identifier"},
		{`"a.b"`, "", `quoted identifiers containing "." are not supported`},
		{"a.b.c", "", "at most one schema qualifier (schema.table) is allowed"},
		{`"x"y`, "", `not an identifier (quote it with "..." to use other characters)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeTableName(tt.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got != tt.want || gotErr != tt.err {
				t.Errorf("normalizeTableName(%q) = %q, %q; want %q, %q", tt.in, got, gotErr, tt.want, tt.err)
			}
		})
	}
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2024-03-01", "2024-03-01T00:00:00Z"},
		{"2024-03-01 10:00:00", "2024-03-01T10:00:00Z"},
		{"2024-03-01 10:00:00.25+01", "2024-03-01T09:00:00.25Z"},
		{"2024-03-01T10:00:00-02:00", "2024-03-01T12:00:00Z"},
		{"2024-03-01T10:00:00", "2024-03-01T10:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ts, err := ParseTimestamp(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := ts.Format("2006-01-02T15:04:05.999999999Z07:00"); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

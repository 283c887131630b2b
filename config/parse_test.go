package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// base is a valid prefix (lines 1-4) that error cases build on, so that
// each case shows only the lines it is about, starting at line 5.
const base = `users: [{name: app, password: pw}]
shards:
  - {name: s0, dsn: "postgres://h:5432/a"}
  - {name: s1, dsn: "postgres://h:5432/b"}
`

func TestParseDesignExample(t *testing.T) {
	c, err := Load("../testdata/config/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:          "../testdata/config/design.yaml",
		Listen:        "127.0.0.1:6432",
		MetricsListen: "127.0.0.1:9187",
		AdminDatabase: "shardproxy",
		TLS:           &TLS{Cert: "../testdata/config/server.crt", Key: "../testdata/config/server.key", ClientTLS: ClientTLSAllow},
		Users: []User{
			{Name: "app", Password: "secret"},
			{Name: "admin", Password: "secret", Admin: true},
		},
		Metadata:       Metadata{DSN: "postgres://postgres@127.0.0.1:5433/shardproxy_meta"},
		Pool:           Pool{Size: 20, AcquireTimeoutMillis: 5000},
		TwoPhaseCommit: true,
		Shards: []Shard{
			{Name: "s0", DSN: "postgres://postgres@127.0.0.1:5433/app"},
			{Name: "s1", DSN: "postgres://postgres@127.0.0.1:5434/app"},
		},
		Strategies: []Strategy{
			{Name: "by_customer", Type: StrategyHash, KeyType: KeyInt, Shards: []string{"s0", "s1"}, Line: 15},
			{Name: "by_id", Type: StrategyRange, KeyType: KeyInt, Ranges: []Range{
				{Upper: "1000", Shard: "s0"}, {Unbounded: true, Shard: "s1"},
			}, Line: 16},
			{Name: "ring", Type: StrategyConsistent, KeyType: KeyInt, Shards: []string{"s0", "s1"}, Partitions: 271, Line: 19},
			{Name: "by_tenant", Type: StrategyDirectory, KeyType: KeyInt, Table: "tenant_directory", Fallback: "by_customer", Line: 20},
		},
		Tables: []Table{
			{Name: "orders", Key: "customer_id", Strategy: "by_customer", Line: 22},
			{Name: "order_items", Key: "customer_id", Strategy: "by_customer", Line: 23},
			{Name: "products", Reference: true, Line: 24},
		},
		DefaultShard:  "s0",
		PlanCacheSize: 10000,
		MergeMemory:   64 << 20,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%#v\nwant\n%#v", c, want)
	}
}

func TestParseExampleFile(t *testing.T) {
	if _, err := Load("../testdata/config/example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(base), "")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:        "127.0.0.1:6432",
		AdminDatabase: "shardproxy",
		Users:         []User{{Name: "app", Password: "pw"}},
		Pool:          Pool{Size: 20, AcquireTimeoutMillis: 5000},
		Shards:        []Shard{{Name: "s0", DSN: "postgres://h:5432/a"}, {Name: "s1", DSN: "postgres://h:5432/b"}},
		DefaultShard:  "s0",
		PlanCacheSize: 10000,
		MergeMemory:   64 << 20,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%#v\nwant\n%#v", c, want)
	}
}

// TestParseResolves checks defaults, aliases and normalisation on valid maps.
func TestParseResolves(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // appended to base
		check func(t *testing.T, c *Config)
	}{
		{"settings", `listen: ":7000"
metrics_listen: "[::1]:9000"
admin_database: admin
pool: {size: 3, acquire_timeout: 1.5s}
plan_cache_size: 0
merge_memory: 512kB
two_phase_commit: false
default_shard: s1
metadata: {dsn: "host=m dbname=meta"}
`, func(t *testing.T, c *Config) {
			got := []any{c.Listen, c.MetricsListen, c.AdminDatabase, c.Pool, c.PlanCacheSize, c.MergeMemory, c.TwoPhaseCommit, c.DefaultShard, c.Metadata.DSN}
			want := []any{":7000", "[::1]:9000", "admin", Pool{Size: 3, AcquireTimeoutMillis: 1500}, 0, int64(512 << 10), false, "s1", "host=m dbname=meta"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"key type aliases", `strategies:
  a: {type: hash, key_type: BIGINT, shards: [s0]}
  b: {type: hash, key_type: varchar, shards: [s0]}
  c: {type: consistent, key_type: uuid, shards: [s1, s0]}
  d: {type: range, key_type: timestamptz, ranges: [{upper: 2024-01-01, shard: s0}, {shard: s1}]}
  e: {type: hash, key_type: int2, shards: [s0]}
  f: {type: range, key_type: timestamp, ranges: [{upper: 2024-01-01, shard: s0}, {shard: s1}]}
  g: {type: range, key_type: Timestamp Without Time Zone, ranges: [{upper: 2024-01-01, shard: s0}, {shard: s1}]}
  h: {type: range, key_type: timestamp with time zone, ranges: [{upper: 2024-01-01, shard: s0}, {shard: s1}]}
`, func(t *testing.T, c *Config) {
			var got []string
			for _, s := range c.Strategies {
				got = append(got, s.KeyType)
			}
			want := []string{KeyInt, KeyText, KeyUUID, KeyTimestampTZ, KeyInt, KeyTimestamp, KeyTimestamp, KeyTimestampTZ}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("key types %v, want %v", got, want)
			}
		}},
		{"canonical bounds", `strategies:
  i: {type: range, ranges: [{upper: -5, shard: s0}, {upper: 0x10, shard: s1}, {upper: 1000, shard: s0}]}
  j: {type: range, key_type: integer, ranges: [{upper: "-5", shard: s0}, {upper: "+0010", shard: s1}]}
  t: {type: range, key_type: timestamptz, ranges: [{upper: "2024-01-01", shard: s0}, {upper: "2024-01-01 12:30:00+02", shard: s1}, {upper: "2024-06-01T00:00:00.5Z", shard: s0}]}
  w: {type: range, key_type: timestamp, ranges: [{upper: "2024-01-01", shard: s0}, {upper: "2024-01-01 12:30:00", shard: s1}, {upper: "2024-06-01T00:00:00.5", shard: s0}]}
  u: {type: range, key_type: uuid, ranges: [{upper: "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", shard: s0}, {shard: s1}]}
  x: {type: range, key_type: text, ranges: [{upper: B, shard: s0}, {upper: a, shard: s1}, {upper: ~, shard: s0}]}
`, func(t *testing.T, c *Config) {
			var got []string
			for _, s := range c.Strategies {
				for _, r := range s.Ranges {
					got = append(got, r.Upper)
				}
			}
			want := []string{"-5", "16", "1000", "-5", "10",
				"2024-01-01T00:00:00Z", "2024-01-01T10:30:00Z", "2024-06-01T00:00:00.5Z",
				"2024-01-01T00:00:00", "2024-01-01T12:30:00", "2024-06-01T00:00:00.5",
				"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "",
				"B", "a", ""}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("bounds %q, want %q", got, want)
			}
			if s := c.StrategyByName("i"); s.KeyType != KeyInt || s.Ranges[2].Unbounded {
				t.Errorf("strategy i: %+v", s)
			}
		}},
		{"directory takes fallback key type, fallback may come later", `metadata: {dsn: "postgres://m/meta"}
strategies:
  d: {type: directory, table: Dir, fallback: h}
  h: {type: hash, key_type: text, shards: [s0, s1]}
`, func(t *testing.T, c *Config) {
			d := c.StrategyByName("d")
			if d.KeyType != KeyText || d.Table != "dir" || d.Fallback != "h" || d.Line != 7 {
				t.Errorf("directory %+v", d)
			}
		}},
		{"table names fold like SQL identifiers", `strategies:
  h: {type: hash, shards: [s0]}
tables:
  Orders: {key: Customer_ID, strategy: h}
  '"MixedCase"': {key: '"Id"', strategy: h}
  Sales.Invoices: {reference: true}
  sales."Q""uote": {reference: true}
`, func(t *testing.T, c *Config) {
			var got []string
			for _, tb := range c.Tables {
				got = append(got, tb.Name+"/"+tb.Key)
			}
			want := []string{"orders/customer_id", "MixedCase/Id", "sales.invoices/", `sales.Q"uote/`}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("tables %q, want %q", got, want)
			}
			if c.TableByName("orders").Line != 8 {
				t.Errorf("orders line %d", c.TableByName("orders").Line)
			}
		}},
		{"anchors and aliases", `strategies:
  a: {type: hash, shards: &both [s0, s1]}
  b: {type: consistent, shards: *both}
`, func(t *testing.T, c *Config) {
			if got := c.StrategyByName("b").Shards; !reflect.DeepEqual(got, []string{"s0", "s1"}) {
				t.Errorf("aliased shards %v", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.yaml), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		noBase bool // yaml is the whole file, lines start at 1
		yaml   string
		want   []string
	}{
		{"syntax", true, "shards: [\n", []string{"t.yaml:1: did not find expected node content"}},
		{"empty", true, "# nothing\n", []string{"t.yaml: empty configuration (at least shards and users are required)"}},
		{"not a mapping", true, "- a\n", []string{"t.yaml:1:1: expected a mapping, got a list"}},
		{"no shards no users", true, "listen: 127.0.0.1:1\n", []string{
			"t.yaml:1:1: users: at least one user is required",
			"t.yaml:1:1: shards: at least one shard is required",
		}},
		{"empty lists", true, "users: []\nshards: []\n", []string{
			"t.yaml:1:8: users: at least one user is required",
			"t.yaml:2:9: shards: at least one shard is required",
		}},
		{"unknown keys with suggestion", false, "default_shrad: s0\nfoo: 1\npool: {sise: 3}\n", []string{
			`t.yaml:5:1: unknown key "default_shrad" (did you mean "default_shard"?)`,
			`t.yaml:6:1: unknown key "foo"`,
			`t.yaml:7:8: pool: unknown key "sise" (did you mean "size"?)`,
		}},
		{"duplicate top-level key", false, "listen: a:1\nlisten: b:2\n", []string{
			`t.yaml:6:1: duplicate key "listen" (first at line 5)`,
		}},
		{"scalar types", false, "two_phase_commit: yes please\nplan_cache_size: many\nlisten: [a]\n", []string{
			`t.yaml:5:19: two_phase_commit: expected true or false, got "yes please"`,
			`t.yaml:6:18: plan_cache_size: expected an integer, got "many"`,
			`t.yaml:7:9: listen: expected a string, got a list`,
		}},
		{"merge memory", false, "merge_memory: 64 MiB\nplan_cache_size: 1\n", []string{
			`t.yaml:5:15: merge_memory: invalid byte count "64 MiB" (want e.g. 67108864 or "64MB"; units B, kB, MB, GB, TB)`,
		}},
		{"merge memory too small", false, "merge_memory: 1kB\n", []string{
			`t.yaml:5:15: merge_memory: must be at least 64kB`,
		}},
		{"listen addresses", false, "listen: localhost\nmetrics_listen: 'h:99999'\n", []string{
			`t.yaml:5:9: listen: "localhost" is not host:port (e.g. 127.0.0.1:6432)`,
			`t.yaml:6:17: metrics_listen: "h:99999" is not host:port (e.g. 127.0.0.1:6432)`,
		}},
		{"pool", false, "pool: {size: 0, acquire_timeout: 5}\nplan_cache_size: -1\nadmin_database: ''\n", []string{
			`t.yaml:5:14: pool.size: must be at least 1`,
			`t.yaml:5:34: pool.acquire_timeout: invalid duration "5" (want e.g. "5s" or "500ms")`,
			`t.yaml:6:18: plan_cache_size: must not be negative`,
			`t.yaml:7:17: admin_database: must not be empty`,
		}},
		{"users", true, `users:
  - {name: app, password: x}
  - {name: app, password: y}
  - {password: z}
  - {name: nopw}
  - {name: x, password: y, admin: maybe}
shards: [{name: s0, dsn: "postgres://h/a"}]
`, []string{
			`t.yaml:3:12: users[1].name: duplicate user "app" (first at line 2)`,
			`t.yaml:4:5: users[2]: name is required`,
			`t.yaml:5:5: users[3]: password is required`,
			`t.yaml:6:35: users[4].admin: expected true or false, got "maybe"`,
		}},
		{"shards", true, `users: [{name: app, password: x}]
shards:
  - {name: s0, dsn: "postgres://u:hunter2@h:xx/db"}
  - {name: s0, dsn: "host=h password=hunter3 port=abc"}
  - {name: s2, dsn: "postgres://u:pw@h:5432/db"}
  - {name: s3, dsn: "postgres://u:other@h:5432/db?sslmode=disable"}
  - {dsn: "postgres://h/x"}
  - {name: s5}
  - {name: s6, dsn: "postgres://u:hun%zzter@h/db"}
`, []string{
			`t.yaml:3:21: shards[0].dsn: invalid dsn: invalid port`,
			`t.yaml:4:12: shards[1].name: duplicate shard "s0" (first at line 3)`,
			`t.yaml:4:21: shards[1].dsn: invalid dsn: invalid port`,
			`t.yaml:6:21: shards[3].dsn: same database as shard "s2"`,
			`t.yaml:7:5: shards[4]: name is required`,
			`t.yaml:8:5: shards[5]: dsn is required`,
			`t.yaml:9:21: shards[6].dsn: invalid dsn: failed to parse as URL (invalid percent-encoded token in password)`,
		}},
		{"metadata", false, "metadata: {dsn: \"host=m port=x password=hunter9\", user: x}\n", []string{
			`t.yaml:5:17: metadata.dsn: invalid dsn: invalid port`,
			`t.yaml:5:51: metadata: unknown key "user"`,
		}},
		{"empty password", true, "users: [{name: a, password: ''}]\nshards: [{name: s0, dsn: 'postgres://h/a'}]\n", []string{
			`t.yaml:1:9: users[0]: password is required`,
		}},
		{"default shard", false, "default_shard: s7\n", []string{`t.yaml:5:16: default_shard: unknown shard "s7"`}},
		{"tls", false, "tls: {cert: ../testdata/config/server.crt}\n", []string{`t.yaml:5:6: tls: cert and key must be given together`}},
		{"tls client_tls", false, "tls: {cert: ../testdata/config/server.crt, key: ../testdata/config/server.key, client_tls: always}\n", []string{
			`t.yaml:5:92: tls.client_tls: "always" is not one of allow, require_nonlocal, require`,
		}},
		{"tls client_tls without cert", false, "tls: {client_tls: require}\n", []string{`t.yaml:5:6: tls: client_tls require needs cert and key`}},
		{"tls files", false, "tls: {cert: /nonexistent.crt, key: /nonexistent.key}\n", []string{
			`t.yaml:5:13: tls.cert: cannot read /nonexistent.crt: no such file or directory`,
			`t.yaml:5:36: tls.key: cannot read /nonexistent.key: no such file or directory`,
		}},
		{"strategy types", false, `strategies:
  a: {shards: [s0]}
  b: {type: zz}
  c: {type: hash, shards: [s0], partitions: 3}
  d: {type: hash, key_type: money, shards: [s0]}
  e: {type: consistent, key_type: timestamp, shards: [s0]}
  f: [type, hash]
  a: {type: hash, shards: [s0]}
`, []string{
			`t.yaml:6:3: strategies.a: type is required (hash, range, consistent or directory)`,
			`t.yaml:7:13: strategies.b.type: unknown strategy type "zz" (want hash, range, consistent or directory)`,
			`t.yaml:8:33: strategies.c: unknown key "partitions"`,
			`t.yaml:9:29: strategies.d.key_type: unknown key_type "money" (want int, text, uuid, timestamp or timestamptz)`,
			`t.yaml:10:35: strategies.e.key_type: timestamp keys are supported by range (and directory) strategies only`,
			`t.yaml:11:6: strategies.f: expected a mapping, got a list`,
			`t.yaml:12:3: strategies: duplicate strategy "a" (first at line 6)`,
		}},
		{"hash and consistent shards", false, `strategies:
  h: {type: hash, shards: [s0, s0, s9]}
  c: {type: consistent, shards: [], partitions: 0}
  n: {type: hash}
`, []string{
			`t.yaml:6:32: strategies.h.shards[1]: shard "s0" listed twice`,
			`t.yaml:6:36: strategies.h.shards[2]: unknown shard "s9"`,
			`t.yaml:7:33: strategies.c.shards: at least one shard is required`,
			`t.yaml:7:49: strategies.c.partitions: must be at least 1`,
			`t.yaml:8:3: strategies.n.shards: at least one shard is required`,
		}},
		{"range", false, `strategies:
  a: {type: range, ranges: [{upper: a, shard: s0}, {upper: b, shard: s1}]}
  b:
    type: range
    key_type: int
    ranges: [{upper: 10, shard: s0}, {shard: s1}, {upper: 5, shard: s1}, {upper: x, shard: s1}, {upper: 10, shard: s9}]
  c: {type: range}
  d: {type: range, ranges: []}
  e: {type: range, ranges: [{upper: [1], shard: s0}, {upper: 1}]}
  f: {type: range, key_type: text, ranges: [{upper: b, shard: s0}, {upper: b, shard: s1}]}
  g: {type: range, key_type: timestamp, ranges: [{upper: 2024-02-01, shard: s0}, {upper: "2024-01-31 23:00:00", shard: s1}, {upper: soon, shard: s0}]}
  u: {type: range, key_type: uuid, ranges: [{upper: not-a-uuid, shard: s0}]}
  w: {type: range, key_type: timestamp, ranges: [{upper: "2024-01-01 00:00:00+02", shard: s0}, {upper: "2024-02-01T00:00:00Z", shard: s1}]}
`, []string{
			`t.yaml:6:3: strategies.a: key_type required when bounds are not integers`,
			`t.yaml:10:38: strategies.b.ranges[1]: only the last range may be unbounded (upper: null)`,
			`t.yaml:10:59: strategies.b.ranges[2].upper: bound 5 must be greater than the previous bound 10 (ranges ascend)`,
			`t.yaml:10:82: strategies.b.ranges[3].upper: "x" is not a 64-bit integer`,
			`t.yaml:10:116: strategies.b.ranges[4].shard: unknown shard "s9"`,
			`t.yaml:11:3: strategies.c: range strategy needs ranges`,
			`t.yaml:12:28: strategies.d.ranges: range strategy needs at least one range`,
			`t.yaml:13:37: strategies.e.ranges[0].upper: expected a scalar bound or null, got a list`,
			`t.yaml:13:54: strategies.e.ranges[1]: shard is required`,
			`t.yaml:14:76: strategies.f.ranges[1].upper: bound b must be greater than the previous bound b (ranges ascend)`,
			`t.yaml:15:90: strategies.g.ranges[1].upper: bound 2024-01-31T23:00:00 must be greater than the previous bound 2024-02-01T00:00:00 (ranges ascend)`,
			`t.yaml:15:133: strategies.g.ranges[2].upper: "soon" is not a timestamp (want e.g. 2006-01-02, 2006-01-02 15:04:05 or RFC 3339)`,
			`t.yaml:16:53: strategies.u.ranges[0].upper: "not-a-uuid" is not a uuid`,
			`t.yaml:17:58: strategies.w.ranges[0].upper: "2024-01-01 00:00:00+02" has a time zone offset, but key_type timestamp (without time zone) is a wall-clock time: drop the offset, or use key_type timestamptz`,
			`t.yaml:17:104: strategies.w.ranges[1].upper: "2024-02-01T00:00:00Z" has a time zone offset, but key_type timestamp (without time zone) is a wall-clock time: drop the offset, or use key_type timestamptz`,
		}},
		{"directory", false, `strategies:
  d: {type: directory, fallback: d2, table: x}
  d2: {type: directory, fallback: h, table: y}
  d3: {type: directory}
  d4: {type: directory, fallback: nope, table: z}
  d5: {type: directory, fallback: h, table: z, key_type: text}
  d6: {type: directory, fallback: h, table: z, key_type: money}
  h: {type: hash, shards: [s0]}
`, []string{
			`t.yaml:6:3: strategies.d: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:6:34: strategies.d.fallback: "d2" is a directory strategy; the fallback must place keys by hash, range or consistent`,
			`t.yaml:7:3: strategies.d2: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:8:3: strategies.d3: directory strategy needs table (the lookup table in the metadata database)`,
			`t.yaml:8:3: strategies.d3: directory strategy needs fallback (the strategy that places new keys)`,
			`t.yaml:8:3: strategies.d3: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:9:3: strategies.d4: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:9:35: strategies.d4.fallback: unknown strategy "nope"`,
			`t.yaml:10:3: strategies.d5: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:10:58: strategies.d5.key_type: text differs from fallback "h"'s key_type int`,
			`t.yaml:11:3: strategies.d6: directory strategy needs metadata.dsn (the directory lives in the metadata database)`,
			`t.yaml:11:58: strategies.d6.key_type: unknown key_type "money" (want int, text, uuid, timestamp or timestamptz)`,
		}},
		{"tables", false, `strategies:
  h: {type: hash, shards: [s0]}
  broken: {type: zz}
tables:
  Orders: {key: id}
  orders: {key: id, strategy: h}
  '"Mixed"': {strategy: nope, key: a}
  x: {reference: true, key: a}
  y: {}
  "a b": {reference: true}
  z: {strategy: h}
  w: {key: a.b, strategy: broken}
  v: ~
  a.b.c: {reference: true}
  '"unterminated': {reference: true}
`, []string{
			`t.yaml:7:18: strategies.broken.type: unknown strategy type "zz" (want hash, range, consistent or directory)`,
			`t.yaml:9:3: tables.Orders: key needs a strategy`,
			`t.yaml:10:3: tables.orders: duplicate table orders (first at line 9)`,
			`t.yaml:11:25: tables."Mixed".strategy: unknown strategy "nope"`,
			`t.yaml:12:3: tables.x: a reference table has no key or strategy`,
			`t.yaml:13:3: tables.y: needs key and strategy, or reference: true`,
			`t.yaml:14:3: tables.a b: invalid table name: not an identifier (quote it with "..." to use other characters)`,
			`t.yaml:15:3: tables.z: strategy h needs a key column`,
			`t.yaml:16:12: tables.w.key: invalid column "a.b": must be a column name, not a qualified name`,
			`t.yaml:17:6: tables.v: expected a mapping, got null`,
			`t.yaml:18:3: tables.a.b.c: invalid table name: at most one schema qualifier (schema.table) is allowed`,
			`t.yaml:19:3: tables."unterminated: invalid table name: unterminated quoted identifier`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.yaml
			if !tt.noBase {
				src = base + src
			}
			c, err := Parse([]byte(src), "t.yaml")
			if c != nil {
				t.Errorf("got a config despite errors")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T), want *ValidationError", err, err)
			}
			got := strings.Split(ve.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if strings.Contains(err.Error(), "hunter") {
				t.Errorf("password leaked into %q", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/shardproxy.yaml")
	var ve *ValidationError
	if err == nil || errors.As(err, &ve) {
		t.Fatalf("err = %v, want a plain read error", err)
	}
}

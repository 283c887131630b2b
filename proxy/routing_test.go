package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/strategies"
)

// routingBody shards one table per strategy and key type over three shards.
// Range strategies have a bounded last range, so that keys past it exist.
const routingBody = `
strategies:
  h_int:  {type: hash, key_type: int, shards: [s0, s1, s2]}
  h_text: {type: hash, key_type: text, shards: [s0, s1, s2]}
  h_uuid: {type: hash, key_type: uuid, shards: [s0, s1, s2]}
  r_int:  {type: range, key_type: int, ranges: [{upper: 100, shard: s0}, {upper: 200, shard: s1}, {upper: 300, shard: s2}]}
  r_text: {type: range, key_type: text, ranges: [{upper: h, shard: s0}, {upper: p, shard: s1}, {upper: "{", shard: s2}]}
  r_ts:   {type: range, key_type: timestamptz, ranges: [{upper: "2024-01-01", shard: s0}, {upper: "2025-01-01", shard: s1}, {upper: "2026-01-01", shard: s2}]}
  c_int:  {type: consistent, key_type: int, shards: [s0, s1, s2]}
  c_text: {type: consistent, key_type: text, shards: [s0, s1, s2]}
  d_int:  {type: directory, table: dir_int, fallback: h_int}
  d_text: {type: directory, table: dir_text, fallback: c_text}
tables:
  h_int8:   {key: k, strategy: h_int}
  h_int4:   {key: k, strategy: h_int}
  h_int2:   {key: k, strategy: h_int}
  h_text:   {key: k, strategy: h_text}
  h_uuid:   {key: k, strategy: h_uuid}
  r_int:    {key: k, strategy: r_int}
  r_text:   {key: k, strategy: r_text}
  r_tstz:   {key: k, strategy: r_ts}
  r_ts:     {key: k, strategy: r_ts}
  c_int:    {key: k, strategy: c_int}
  c_text:   {key: k, strategy: c_text}
  d_int:    {key: k, strategy: d_int}
  d_text:   {key: k, strategy: d_text}
default_shard: s0
`

// keyForms is one shard-key value in every form a client can send it.
type keyForms struct {
	lit   string // SQL literal for the simple protocol
	text  []byte // text-format bind parameter
	bin   []byte // binary-format bind parameter
	goVal any    // what an application passes to pgx
	key   strategies.Key
}

// keyColumn describes how to make keys for one column type.
type keyColumn struct {
	sqlType string
	oid     uint32 // of the binary parameter
	make    func(i int) keyForms
}

func intKey(n int64, width int) keyForms {
	s := strconv.FormatInt(n, 10)
	bin := make([]byte, width)
	switch width {
	case 2:
		binary.BigEndian.PutUint16(bin, uint16(n))
	case 4:
		binary.BigEndian.PutUint32(bin, uint32(n))
	default:
		binary.BigEndian.PutUint64(bin, uint64(n))
	}
	// Literal spellings vary; casts on constants must not hide the key.
	lit := s
	switch {
	case n%3 == 0:
		lit = "'" + s + "'::bigint"
	case n%5 == 0:
		lit = "CAST(' " + s + " ' AS int8)"
	case n < 0 && n%2 == 0:
		lit = "(" + s + ")"
	}
	return keyForms{lit: lit, text: []byte(s), bin: bin, goVal: n, key: strategies.Key{Type: strategies.KeyInt, Int: n}}
}

// textKey spells the literal in one of Postgres' string forms (form % 5):
// plain, dollar-quoted, E” with hex escapes, U&” with unicode escapes,
// and ::varchar cast. The router must see the same text Postgres stores.
func textKey(s string, form int) keyForms {
	lit := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	switch form % 5 {
	case 1:
		lit = "$q$" + s + "$q$"
	case 2:
		var b strings.Builder
		b.WriteString("E'")
		for _, c := range []byte(s) {
			fmt.Fprintf(&b, "\\x%02x", c)
		}
		lit = b.String() + "'"
	case 3:
		var b strings.Builder
		b.WriteString("U&'")
		for _, r := range s {
			fmt.Fprintf(&b, "\\+%06x", r)
		}
		lit = b.String() + "'"
	case 4:
		lit += "::varchar"
	}
	return keyForms{lit: lit, text: []byte(s), bin: []byte(s), goVal: s, key: strategies.Key{Type: strategies.KeyText, Text: s}}
}

// wideWord adds quotes, backslashes and non-ASCII text to some keys.
func wideWord(i int) string {
	switch i % 7 {
	case 1:
		return "o'" + wordKey(i)
	case 2:
		return `back\slash` + wordKey(i)
	case 3:
		return "ñandú-" + wordKey(i)
	case 4:
		return "日本" + wordKey(i)
	}
	return wordKey(i)
}

func uuidKey(i int) keyForms {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], uint64(i)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(u[8:], uint64(i)*0xc2b2ae3d27d4eb4f+1)
	k := strategies.Key{Type: strategies.KeyUUID, UUID: u}
	s := k.String()
	lit := "'" + s + "'"
	if i%2 == 0 {
		lit = "'" + strings.ToUpper(s) + "'::uuid"
	}
	return keyForms{lit: lit, text: []byte(s), bin: u[:], goVal: pgtype.UUID{Bytes: u, Valid: true}, key: k}
}

func tsKey(t time.Time, zone bool) keyForms {
	t = t.UTC()
	s := t.Format("2006-01-02 15:04:05.999999")
	if zone {
		s += "+00"
	}
	us := t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	bin := binary.BigEndian.AppendUint64(nil, uint64(us))
	return keyForms{lit: "'" + s + "'", text: []byte(s), bin: bin, goVal: t,
		key: strategies.Key{Type: strategies.KeyTimestamp, Time: t}}
}

var (
	tsKeyBase  = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	keyLetters = "abcdefghijklmnopqrstuvwxyz"
)

func wordKey(i int) string {
	return string(keyLetters[(i*7)%26]) + string(keyLetters[(i*11)%26]) + strconv.Itoa(i)
}

var (
	ktInt8 = keyColumn{"bigint", 20, func(i int) keyForms { return intKey(int64(i*7919-500_000)*1_000_003, 8) }}
	ktInt4 = keyColumn{"integer", 23, func(i int) keyForms { return intKey(int64(i*104729-10_000_000), 4) }}
	ktInt2 = keyColumn{"smallint", 21, func(i int) keyForms { return intKey(int64(i*97-15_000), 2) }}
	ktText = keyColumn{"text", 25, func(i int) keyForms { return textKey(wideWord(i), i) }}
	ktUUID = keyColumn{"uuid", 2950, uuidKey}
	// Range tables use keys inside the bounds.
	ktRangeInt = keyColumn{"bigint", 20, func(i int) keyForms { return intKey(int64(i%300), 8) }}
	// Bytewise below the "{" bound: plain lower-case words.
	ktRangeText = keyColumn{"text", 25, func(i int) keyForms { return textKey(wordKey(i), i) }}
	ktRangeTSTZ = keyColumn{"timestamptz", 1184, func(i int) keyForms {
		return tsKey(tsKeyBase.Add(time.Duration(i)*(73*time.Hour)+time.Duration(i)*time.Microsecond), true)
	}}
	ktRangeTS = keyColumn{"timestamp", 1114, func(i int) keyForms {
		return tsKey(tsKeyBase.Add(time.Duration(i)*(73*time.Hour)+time.Second), false)
	}}
)

// insertModes are the ways a client sends a keyed INSERT; key i uses mode i%4.
var insertModes = []string{"simple literal", "extended text", "extended binary", "pgx default"}

func insertVia(ctx context.Context, c *pgx.Conn, mode int, table string, kt keyColumn, k keyForms, v string) error {
	sql := "INSERT INTO " + table + " (k, v) VALUES ($1, $2)"
	switch mode {
	case 0:
		_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (k, v) VALUES (%s, '%s')", table, k.lit, strings.ReplaceAll(v, "'", "''")), pgx.QueryExecModeSimpleProtocol)
		return err
	case 1:
		return c.PgConn().ExecParams(ctx, sql, [][]byte{k.text, []byte(v)}, nil, nil, nil).Read().Err
	case 2:
		return c.PgConn().ExecParams(ctx, sql, [][]byte{k.bin, []byte(v)}, []uint32{kt.oid, 25}, []int16{1, 0}, nil).Read().Err
	default:
		_, err := c.Exec(ctx, sql, k.goVal, v)
		return err
	}
}

// keyString renders a value read from a shard as its strategies.Key string.
func keyString(t *testing.T, v any) string {
	t.Helper()
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case string:
		return v
	case [16]byte:
		return strategies.Key{Type: strategies.KeyUUID, UUID: v}.String()
	case time.Time:
		return strategies.Key{Type: strategies.KeyTimestamp, Time: v.UTC()}.String()
	}
	t.Fatalf("unexpected key value %T %v", v, v)
	return ""
}

// placement reads table on every shard directly: key string -> shards holding it.
func placement(t *testing.T, f *fixture, table string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	for _, sh := range f.Config.ShardNames() {
		rows, err := f.Direct(t, sh).Query(ctx, "SELECT k FROM "+table)
		if err != nil {
			t.Fatalf("%s on %s: %v", table, sh, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			ks := keyString(t, vals[0])
			out[ks] = append(out[ks], sh)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// buildStrategies builds the test's own strategies from the fixture's
// config, the expectation every placement is checked against.
func buildStrategies(t *testing.T, f *fixture) map[string]strategies.Strategy {
	t.Helper()
	ctx := context.Background()
	dir, err := strategies.OpenDirectory(ctx, f.Config.Metadata.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dir.Close)
	strats, err := strategies.Build(ctx, f.Config, dir)
	if err != nil {
		t.Fatal(err)
	}
	return strats
}

// TestRoutingPlacement inserts a few hundred keys per strategy and key type
// through the proxy, in the simple and extended protocols with text and
// binary parameters, and checks that each row is on exactly the shard the
// strategy names and that a point SELECT through the proxy finds it.
func TestRoutingPlacement(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: routingBody})
	ctx := context.Background()
	strats := buildStrategies(t, f)
	c := f.Connect(t)

	// Directory placement made by hand in the metadata database: these keys
	// must land where the directory says, not where the fallback would.
	assigned := map[string]map[string]string{"d_int": {}, "d_text": {}} // table -> key -> shard
	meta, err := f.Meta.Connect(ctx, f.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(ctx)
	for table, kt := range map[string]keyColumn{"d_int": ktInt8, "d_text": ktText} {
		fallback := strats[f.Config.StrategyByName(f.Config.TableByName(table).Strategy).Fallback]
		for i := 0; i < 300; i += 10 {
			k := kt.make(i).key
			natural, err := fallback.Locate(ctx, k, strategies.Write)
			if err != nil {
				t.Fatal(err)
			}
			names := f.Config.ShardNames()
			other := names[(slices.Index(names, natural)+1)%len(names)]
			dirTable := "dir_" + strings.TrimPrefix(table, "d_")
			if _, err := meta.Exec(ctx, "INSERT INTO "+dirTable+" (key, shard) VALUES ($1, $2)", k.String(), other); err != nil {
				t.Fatal(err)
			}
			assigned[table][k.String()] = other
		}
	}

	cases := []struct {
		table string
		kt    keyColumn
	}{
		{"h_int8", ktInt8}, {"h_int4", ktInt4}, {"h_int2", ktInt2}, {"h_text", ktText}, {"h_uuid", ktUUID},
		{"r_int", ktRangeInt}, {"r_text", ktRangeText}, {"r_tstz", ktRangeTSTZ}, {"r_ts", ktRangeTS},
		{"c_int", ktInt8}, {"c_text", ktText},
		{"d_int", ktInt8}, {"d_text", ktText},
	}
	const n = 300
	for _, tc := range cases {
		t.Run(tc.table, func(t *testing.T) {
			if _, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (k %s PRIMARY KEY, v text)", tc.table, tc.kt.sqlType)); err != nil {
				t.Fatal(err)
			}
			strat := strats[f.Config.TableByName(tc.table).Strategy]
			want := map[string]string{}
			for i := 0; i < n; i++ {
				k := tc.kt.make(i)
				if _, dup := want[k.key.String()]; dup {
					continue
				}
				if err := insertVia(ctx, c, i%4, tc.table, tc.kt, k, "v"+k.key.String()); err != nil {
					t.Fatalf("insert %s via %s: %v", k.key, insertModes[i%4], err)
				}
				shard, ok := assigned[tc.table][k.key.String()]
				if !ok {
					// Locate(Read) on a directory answers what was recorded,
					// so ask the fallback for keys nobody placed by hand.
					s := strat
					if fb := f.Config.StrategyByName(strat.Name()).Fallback; fb != "" {
						s = strats[fb]
					}
					if shard, err = s.Locate(ctx, k.key, strategies.Write); err != nil {
						t.Fatal(err)
					}
				}
				want[k.key.String()] = shard
			}
			got := placement(t, f, tc.table)
			if len(got) != len(want) {
				t.Errorf("shards hold %d distinct keys, want %d", len(got), len(want))
			}
			perShard := map[string]int{}
			for ks, shard := range want {
				if !slices.Equal(got[ks], []string{shard}) {
					t.Errorf("key %s is on %v, want [%s]", ks, got[ks], shard)
				}
				perShard[shard]++
			}
			if len(perShard) < 2 {
				t.Errorf("all keys on one shard (%v): the test keys do not exercise routing", perShard)
			}
			if recorded := assigned[tc.table]; recorded != nil {
				// The proxy recorded what it placed; our store reads the same.
				for ks, shard := range want {
					k, err := strategies.ParseKey(strat.KeyType(), ks)
					if err != nil {
						t.Fatal(err)
					}
					if got, err := strat.Locate(ctx, k, strategies.Read); err != nil || got != shard {
						t.Errorf("directory has key %s on %q (%v), want %s", ks, got, err, shard)
					}
				}
			}

			// Point reads through the proxy, every other key alternating protocols.
			sel := "SELECT v FROM " + tc.table + " WHERE k = $1"
			for i := 0; i < n; i += 2 {
				k := tc.kt.make(i)
				var v string
				var err error
				if i%4 == 0 {
					err = c.QueryRow(ctx, "SELECT v FROM "+tc.table+" WHERE k = "+k.lit, pgx.QueryExecModeSimpleProtocol).Scan(&v)
				} else {
					err = c.QueryRow(ctx, sel, k.goVal).Scan(&v)
				}
				if err != nil || v != "v"+k.key.String() {
					t.Fatalf("SELECT key %s: %q, %v", k.key, v, err)
				}
			}
		})
	}

	t.Run("range key outside every range", func(t *testing.T) {
		for _, tc := range []struct{ table, lit string }{
			{"r_int", "300"}, {"r_int", "'1000'::bigint"}, {"r_text", "'~x'"}, {"r_tstz", "'2026-01-01 00:00:00+00'"},
		} {
			_, err := c.Exec(ctx, "INSERT INTO "+tc.table+" (k, v) VALUES ("+tc.lit+", 'out')", pgx.QueryExecModeSimpleProtocol)
			if sqlState(err) != "23514" {
				t.Errorf("%s key %s: err %v, want SQLSTATE 23514", tc.table, tc.lit, err)
			}
			_, err = c.Exec(ctx, "INSERT INTO "+tc.table+" (k, v) VALUES ($1, 'out')", strings.Trim(strings.TrimSuffix(tc.lit, "::bigint"), "'"))
			if sqlState(err) != "23514" {
				t.Errorf("%s key %s (extended): err %v, want SQLSTATE 23514", tc.table, tc.lit, err)
			}
			for _, sh := range f.Config.ShardNames() {
				var cnt int
				if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM "+tc.table+" WHERE v = 'out'").Scan(&cnt); err != nil || cnt != 0 {
					t.Errorf("%s on %s: %d rows from a rejected insert (%v)", tc.table, sh, cnt, err)
				}
			}
		}
	})

	t.Run("directory read of unknown key", func(t *testing.T) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
			rows, err := c.Query(ctx, "SELECT k, v FROM d_int WHERE k = $1", mode, int64(-42))
			if err != nil {
				t.Fatalf("mode %v: %v", mode, err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil || n != 0 {
				t.Errorf("mode %v: %d rows, err %v; want no rows and no error", mode, n, err)
			}
			if fd := rows.FieldDescriptions(); len(fd) != 2 {
				t.Errorf("mode %v: %d columns described, want 2", mode, len(fd))
			}
		}
		tag, err := c.Exec(ctx, "UPDATE d_text SET v = 'x' WHERE k = 'never-inserted'", pgx.QueryExecModeSimpleProtocol)
		if err != nil || tag.String() != "UPDATE 0" {
			t.Errorf("UPDATE of unknown key: %q, %v; want UPDATE 0", tag, err)
		}
		// The read must not have placed the key.
		var cnt int
		if err := meta.QueryRow(ctx, "SELECT count(*) FROM dir_int WHERE key = '-42'").Scan(&cnt); err != nil || cnt != 0 {
			t.Errorf("directory holds %d entries for a key only read (%v)", cnt, err)
		}
	})
}

const statementsBody = `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  orders:     {key: customer_id, strategy: by_customer}
  '"Orders"': {key: id, strategy: by_customer}
  products:   {reference: true}
default_shard: s0
`

// TestRoutingStatements covers the statement shapes the router must get
// right (or refuse with a clear error) on a three-shard hash table.
func TestRoutingStatements(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: statementsBody})
	ctx := context.Background()
	strats := buildStrategies(t, f)
	c := f.Connect(t)
	simple := pgx.QueryExecModeSimpleProtocol
	for _, ddl := range []string{
		"CREATE TABLE orders (customer_id bigint PRIMARY KEY, note text)",
		`CREATE TABLE "Orders" (id bigint PRIMARY KEY, note text)`,
		"CREATE TABLE products (id int PRIMARY KEY, name text)",
	} {
		if _, err := c.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	shardOf := func(id int64) string {
		s, err := strats["by_customer"].Locate(ctx, strategies.Key{Type: strategies.KeyInt, Int: id}, strategies.Write)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// on[s] lists customer ids in 1..30 that hash to shard s.
	on := map[string][]int64{}
	for id := int64(1); id <= 30; id++ {
		if _, err := c.Exec(ctx, "INSERT INTO orders (customer_id, note) VALUES ($1, 'n')", id); err != nil {
			t.Fatal(err)
		}
		on[shardOf(id)] = append(on[shardOf(id)], id)
	}
	for _, s := range f.Config.ShardNames() {
		if len(on[s]) < 2 {
			t.Fatalf("shard %s owns %d of customers 1..30; the test needs two", s, len(on[s]))
		}
	}
	a, b, d := on["s0"][0], on["s1"][0], on["s2"][0]

	// countOn counts rows matching where on one shard directly.
	countOn := func(t *testing.T, shard, table, where string) int {
		t.Helper()
		var n int
		if err := f.Direct(t, shard).QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// ids runs a query and returns the first column of every row, sorted.
	ids := func(t *testing.T, sql string, args ...any) ([]int64, error) {
		t.Helper()
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		slices.Sort(out)
		return out, err
	}
	wantCode := func(t *testing.T, err error, code string) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code {
			t.Fatalf("err %v, want SQLSTATE %s", err, code)
		}
		if code == "0A000" && pgErr.Hint == "" {
			t.Errorf("0A000 without a hint: %q", pgErr.Message)
		}
	}

	t.Run("schema-qualified and quoted names", func(t *testing.T) {
		for _, id := range []int64{101, 102, 103, 104} {
			if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO public.orders (customer_id, note) VALUES (%d, 'q')`, id), simple); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, `INSERT INTO "public"."Orders" ("id", note) VALUES ($1, 'Q')`, id); err != nil {
				t.Fatal(err)
			}
			for _, s := range f.Config.ShardNames() {
				want := 0
				if s == shardOf(id) {
					want = 1
				}
				w := fmt.Sprintf("customer_id = %d", id)
				if got := countOn(t, s, "orders", w); got != want {
					t.Errorf("orders %d on %s: %d rows, want %d", id, s, got, want)
				}
				w = fmt.Sprintf("id = %d", id)
				if got := countOn(t, s, `"Orders"`, w); got != want {
					t.Errorf(`"Orders" %d on %s: %d rows, want %d`, id, s, got, want)
				}
			}
			var note string
			if err := c.QueryRow(ctx, `SELECT o.note FROM "public"."orders" o WHERE o."customer_id" = $1`, id).Scan(&note); err != nil || note != "q" {
				t.Errorf("read back %d: %q, %v", id, note, err)
			}
		}
	})

	t.Run("casts on constants", func(t *testing.T) {
		for _, sql := range []string{
			fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id = '%d'::bigint", b),
			fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id = CAST('%d' AS int8)", b),
			fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id = %d::int4", b),
			fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id = '%d'", b),
		} {
			for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
				got, err := ids(t, sql, mode)
				if err != nil || !slices.Equal(got, []int64{b}) {
					t.Errorf("%s (%v): %v, %v; want [%d]", sql, mode, got, err, b)
				}
			}
		}
	})

	t.Run("IN list spanning shards", func(t *testing.T) {
		want := []int64{a, b, d}
		slices.Sort(want)
		sql := fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id IN (%d, %d, %d)", a, b, d)
		got, err := ids(t, sql, simple)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("simple: %v, %v; want %v", got, err, want)
		}
		got, err = ids(t, "SELECT customer_id FROM orders WHERE customer_id IN ($1, $2, $3)", a, b, d)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("extended: %v, %v; want %v", got, err, want)
		}
	})

	t.Run("range predicate scans every shard", func(t *testing.T) {
		got, err := ids(t, "SELECT customer_id FROM orders WHERE customer_id >= 10 AND customer_id <= 30", simple)
		var want []int64
		for id := int64(10); id <= 30; id++ {
			want = append(want, id)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("got %v, %v; want %v", got, err, want)
		}
	})

	t.Run("keyless UPDATE and DELETE sum tags", func(t *testing.T) {
		for id := int64(201); id <= 207; id++ {
			if _, err := c.Exec(ctx, "INSERT INTO orders (customer_id, note) VALUES ($1, 'del')", id); err != nil {
				t.Fatal(err)
			}
		}
		// RETURNING rows of every shard are concatenated, tags summed.
		rows, err := c.Query(ctx, "UPDATE orders SET note = 'ret' WHERE note = 'del' RETURNING customer_id", simple)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []int64{201, 202, 203, 204, 205, 206, 207}) || rows.CommandTag().String() != "UPDATE 7" {
			t.Errorf("UPDATE RETURNING: %v, %q, %v; want 201..207, UPDATE 7", got, rows.CommandTag(), err)
		}
		for _, tc := range []struct{ sql, tag string }{
			{"UPDATE orders SET note = 'upd' WHERE note = 'ret'", "UPDATE 7"},
			{"DELETE FROM orders WHERE note = 'upd'", "DELETE 7"},
		} {
			tag, err := c.Exec(ctx, tc.sql, simple)
			if err != nil || tag.String() != tc.tag {
				t.Errorf("%s: %q, %v; want %q", tc.sql, tag, err, tc.tag)
			}
		}
		for _, s := range f.Config.ShardNames() {
			if n := countOn(t, s, "orders", "customer_id BETWEEN 201 AND 207"); n != 0 {
				t.Errorf("%s keeps %d deleted rows", s, n)
			}
		}
	})

	t.Run("DDL is broadcast", func(t *testing.T) {
		if _, err := c.Exec(ctx, "CREATE INDEX orders_note_idx ON orders (note)", simple); err != nil {
			t.Fatal(err)
		}
		for _, s := range f.Config.ShardNames() {
			if n := countOn(t, s, "pg_indexes", "indexname = 'orders_note_idx'"); n != 1 {
				t.Errorf("index missing on %s", s)
			}
		}
	})

	t.Run("reference table", func(t *testing.T) {
		tag, err := c.Exec(ctx, "INSERT INTO products (id, name) VALUES (1, 'p1'), (2, 'p2')", simple)
		if err != nil || tag.String() != "INSERT 0 2" {
			t.Fatalf("insert: %q, %v; want INSERT 0 2", tag, err)
		}
		if tag, err := c.Exec(ctx, "UPDATE products SET name = 'P2' WHERE id = $1", 2); err != nil || tag.String() != "UPDATE 1" {
			t.Fatalf("extended-protocol broadcast: %q, %v; want UPDATE 1", tag, err)
		}
		for _, s := range f.Config.ShardNames() {
			if n := countOn(t, s, "products", "true"); n != 2 {
				t.Errorf("%s holds %d products, want 2", s, n)
			}
			if n := countOn(t, s, "products", "name = 'P2'"); n != 1 {
				t.Errorf("%s missed the update", s)
			}
		}
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			got, err := ids(t, "SELECT id FROM products", mode)
			if err != nil || !slices.Equal(got, []int64{1, 2}) {
				t.Errorf("read (%v): %v, %v; want one copy [1 2]", mode, got, err)
			}
		}
	})

	t.Run("unlisted table lives on default_shard", func(t *testing.T) {
		if _, err := c.Exec(ctx, "CREATE TABLE notes (id int, body text)", simple); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "INSERT INTO notes VALUES ($1, 'hello')", 1); err != nil {
			t.Fatal(err)
		}
		if n := countOn(t, "s0", "notes", "true"); n != 1 {
			t.Errorf("default shard s0 holds %d notes, want 1", n)
		}
		for _, s := range []string{"s1", "s2"} {
			var reg *string
			if err := f.Direct(t, s).QueryRow(ctx, "SELECT to_regclass('notes')::text").Scan(&reg); err != nil || reg != nil {
				t.Errorf("table notes exists on %s (%v, %v)", s, reg, err)
			}
		}
	})

	t.Run("shard hints", func(t *testing.T) {
		// The comment wins over the key: a's owner is s0.
		if _, err := c.Exec(ctx, fmt.Sprintf("/* shard: s2 */ INSERT INTO orders (customer_id, note) VALUES (%d, 'hinted')", a+1000), simple); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "/* shard: s2 */ INSERT INTO orders (customer_id, note) VALUES ($1, 'hinted')", a+2000); err != nil {
			t.Fatal(err)
		}
		if n := countOn(t, "s2", "orders", "note = 'hinted'"); n != 2 {
			t.Errorf("s2 holds %d hinted rows, want 2", n)
		}
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			if _, err := c.Exec(ctx, "SET shardproxy.shard = 's2'", mode); err != nil {
				t.Fatal(err)
			}
			var n int
			// A keyless aggregate is fine on one hinted shard.
			if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'hinted'", mode).Scan(&n); err != nil || n != 2 {
				t.Errorf("hinted count (%v): %d, %v; want 2", mode, n, err)
			}
			if _, err := c.Exec(ctx, "RESET shardproxy.shard", mode); err != nil {
				t.Fatal(err)
			}
			// Without the hint the count spans every shard and is merged.
			var all int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE note = 'hinted'", mode).Scan(&all); err != nil || all != 2 {
				t.Errorf("keyless count after RESET (%v): %d, %v; want 2 (merged over every shard)", mode, all, err)
			}
		}
		// A hint set earlier in the same Query applies to what follows.
		res, err := c.PgConn().Exec(ctx, "SET shardproxy.shard = 's2'; SELECT count(*) FROM orders WHERE note = 'hinted'; RESET shardproxy.shard").ReadAll()
		if err != nil || len(res) != 3 || len(res[1].Rows) != 1 || string(res[1].Rows[0][0]) != "2" {
			t.Errorf("hint within one Query: %v, %v", res, err)
		}
		_, err = c.Exec(ctx, "SET shardproxy.shard = 's9'", simple)
		wantCode(t, err, "42704")
		_, err = c.Exec(ctx, "/* shard: s9 */ SELECT 1 FROM orders", simple)
		wantCode(t, err, "42704")
	})

	t.Run("multi-statement query routes each statement", func(t *testing.T) {
		sql := fmt.Sprintf("SELECT customer_id FROM orders WHERE customer_id = %d; SELECT customer_id FROM orders WHERE customer_id = %d; SELECT customer_id FROM orders WHERE customer_id = %d", a, b, d)
		res, err := c.PgConn().Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 3 {
			t.Fatalf("%d results, want 3", len(res))
		}
		for i, want := range []int64{a, b, d} {
			if len(res[i].Rows) != 1 || string(res[i].Rows[0][0]) != strconv.FormatInt(want, 10) {
				t.Errorf("statement %d: rows %q, want [%d]", i, res[i].Rows, want)
			}
		}
		// Writes of one shard key may share a Query.
		a2 := on["s0"][1]
		sql = fmt.Sprintf("UPDATE orders SET note = 'm1' WHERE customer_id = %d; UPDATE orders SET note = 'm1' WHERE customer_id = %d", a, a2)
		if _, err := c.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatal(err)
		}
		if n := countOn(t, "s0", "orders", "note = 'm1'"); n != 2 {
			t.Errorf("s0 has %d updated rows, want 2", n)
		}
	})

	t.Run("multi-row INSERT spanning shards is split", func(t *testing.T) {
		// Fresh keys owned by two different shards.
		p, q := int64(601), int64(602)
		for shardOf(q) == shardOf(p) {
			q++
		}
		if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO orders (customer_id, note) VALUES (%d, 'mr'), (%d, 'mr')", p, q), simple); err != nil {
			t.Fatal(err)
		}
		p2, q2 := p+1000, p+1001
		for shardOf(q2) == shardOf(p2) {
			q2++
		}
		if _, err := c.Exec(ctx, "INSERT INTO orders (customer_id, note) VALUES ($1, 'mr'), ($2, 'mr')", p2, q2); err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{p, q, p2, q2} {
			if n := countOn(t, shardOf(k), "orders", fmt.Sprintf("note = 'mr' AND customer_id = %d", k)); n != 1 {
				t.Errorf("%s holds %d rows of key %d, want 1", shardOf(k), n, k)
			}
		}
		total := 0
		for _, s := range f.Config.ShardNames() {
			total += countOn(t, s, "orders", "note = 'mr'")
		}
		if total != 4 {
			t.Errorf("%d rows inserted over all shards, want 4", total)
		}
		// Rows of one shard are fine.
		x, y := int64(701), int64(0)
		for id := x + 1; y == 0; id++ {
			if shardOf(id) == shardOf(x) {
				y = id
			}
		}
		if _, err := c.Exec(ctx, "INSERT INTO orders (customer_id, note) VALUES ($1, 'one'), ($2, 'one')", x, y); err != nil {
			t.Fatal(err)
		}
		if n := countOn(t, shardOf(x), "orders", "note = 'one'"); n != 2 {
			t.Errorf("%s holds %d rows, want 2", shardOf(x), n)
		}
	})

	t.Run("INSERT without a column list", func(t *testing.T) {
		for i, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
			id := int64(801 + i)
			if _, err := c.Exec(ctx, "INSERT INTO orders VALUES ($1, 'nocols')", mode, id); err != nil {
				t.Errorf("%v: %v", mode, err)
				continue
			}
			if n := countOn(t, shardOf(id), "orders", fmt.Sprintf("customer_id = %d", id)); n != 1 {
				t.Errorf("%v: row %d not on its shard %s", mode, id, shardOf(id))
			}
		}
	})

	t.Run("refused statements", func(t *testing.T) {
		// Merges that are not exact would be gathered; the session turns
		// that off (the gathered ones have their differential suite).
		if _, err := c.Exec(ctx, "SET shardproxy.gather = off"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := c.Exec(ctx, "RESET shardproxy.gather"); err != nil {
				t.Fatal(err)
			}
		}()
		for _, sql := range []string{
			fmt.Sprintf("UPDATE orders SET customer_id = 9999 WHERE customer_id = %d", a),
			"UPDATE orders SET customer_id = customer_id + 1",
			// Merges that are not exact (the differential suite covers the exact ones).
			"SELECT sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status)",
			"SELECT status, generate_series(1, count(*)::int) FROM orders GROUP BY status",
			"SELECT json_agg(o) FROM orders o",
		} {
			for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement} {
				_, err := c.Exec(ctx, sql, mode)
				t.Run(fmt.Sprintf("%s/%v", sql, mode), func(t *testing.T) { wantCode(t, err, "0A000") })
			}
		}
		// With the key, the same shapes run on one shard.
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE customer_id = $1", b).Scan(&n); err != nil || n != 1 {
			t.Errorf("keyed count: %d, %v", n, err)
		}
		if n := countOn(t, "s0", "orders", fmt.Sprintf("customer_id = %d", a)); n != 1 {
			t.Errorf("refused key update changed row %d", a)
		}
	})

	t.Run("syntax error keeps the connection usable", func(t *testing.T) {
		for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
			_, err := c.Exec(ctx, "SELEC customer_id FROM orders", mode)
			wantCode(t, err, "42601")
			got, err := ids(t, "SELECT customer_id FROM orders WHERE customer_id = $1", mode, b)
			if err != nil || !slices.Equal(got, []int64{b}) {
				t.Errorf("after syntax error (%v): %v, %v", mode, got, err)
			}
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SELECT FROM WHERE", simple)
		wantCode(t, err, "42601")
		_, err = tx.Exec(ctx, "SELECT 1", simple)
		wantCode(t, err, "25P02")
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := ids(t, "SELECT customer_id FROM orders WHERE customer_id = $1", d); err != nil || !slices.Equal(got, []int64{d}) {
			t.Errorf("after rollback: %v, %v", got, err)
		}
	})
}

// TestRoutingTimestampLiterals checks that a timestamp key routes by the
// value Postgres stores, which depends on the column type and the
// session's TimeZone, not only on the literal's text.
func TestRoutingTimestampLiterals(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 2, Body: `
strategies:
  by_time: {type: range, key_type: timestamptz, ranges: [{upper: "2025-01-01", shard: s0}, {shard: s1}]}
tables:
  events_tz: {key: at, strategy: by_time}
  events:    {key: at, strategy: by_time}
default_shard: s0
`})
	ctx := context.Background()
	c := f.Connect(t)
	for _, ddl := range []string{
		// No primary key: each value is inserted twice, once per protocol.
		"CREATE TABLE events_tz (at timestamptz, note text)",
		"CREATE TABLE events (at timestamp, note text)",
	} {
		if _, err := c.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, timeZone, table, value string
		want                         string // shard whose range holds the stored value
	}{
		// 22:00 in New York on Dec 31 is stored as 2025-01-01 03:00 UTC.
		{"timestamptz without offset, session in New York", "America/New_York", "events_tz", "2024-12-31 22:00:00", "s1"},
		{"timestamptz with offset", "America/New_York", "events_tz", "2024-12-31 22:00:00+00", "s0"},
		// A timestamp column ignores the offset: stored as 2024-12-31 23:30.
		{"timestamp with negative offset", "UTC", "events", "2024-12-31 23:30:00-02", "s0"},
		{"timestamp with positive offset", "UTC", "events", "2025-01-01 00:30:00+09", "s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Exec(ctx, "SET TimeZone = '"+tc.timeZone+"'"); err != nil {
				t.Fatal(err)
			}
			note := strings.ReplaceAll(tc.name, " ", "_")
			insert := "INSERT INTO " + tc.table + " (at, note) VALUES ('" + tc.value + "', '" + note + "-lit')"
			if _, err := c.Exec(ctx, insert, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			// The same value as a text-format parameter.
			if err := c.PgConn().ExecParams(ctx, "INSERT INTO "+tc.table+" (at, note) VALUES ($1, $2)",
				[][]byte{[]byte(tc.value), []byte(note + "-param")}, nil, nil, nil).Read().Err; err != nil {
				t.Fatal(err)
			}
			for _, sh := range f.Config.ShardNames() {
				var n int
				if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM "+tc.table+" WHERE note LIKE $1", note+"-%").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if (sh == tc.want) != (n > 0) {
					t.Errorf("%s holds %d of the rows; want them on %s", sh, n, tc.want)
				}
			}
		})
	}
}

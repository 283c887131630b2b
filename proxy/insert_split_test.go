package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/strategies"
)

// Multi-row INSERTs whose rows belong to different shards (PEERS: PgDog
// #259 broadcast them): every row lands once, on its shard (read on the
// shards directly), RETURNING rows come back in VALUES order, the tag
// counts every row, and a failure on any shard leaves nothing anywhere.

const splitBody = `
strategies:
  h: {type: hash, key_type: int, shards: [s0, s1, s2]}
  d: {type: directory, table: dir_sd, fallback: h}
tables:
  si: {key: id, strategy: h}
  sd: {key: id, strategy: d}
  sref: {reference: true}
default_shard: s0
`

func startSplitFixture(t *testing.T, top string) *copyFixture {
	t.Helper()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: splitBody, Top: top})
	c := f.Connect(t)
	for _, ddl := range []string{
		"CREATE TABLE si (id bigint NOT NULL UNIQUE, note text, qty int DEFAULT 7)",
		"CREATE TABLE sd (id bigint NOT NULL UNIQUE, note text)",
		"CREATE TABLE sref (k int PRIMARY KEY, label text)",
		"INSERT INTO sref VALUES (1, 'one')",
	} {
		mustExec(t, c, ddl)
	}
	return &copyFixture{fixture: f, c: c, strats: buildStrategies(t, f)}
}

// splitIDs are n keys spread over the shards, in a scrambled order.
func splitIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64((i*7919)%n + 1)
	}
	return ids
}

// literalInsert is INSERT INTO table (id, note) VALUES (id, 'n<id>'), ...
func literalInsert(table string, ids []int64, returning string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (id, note) VALUES ", table)
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, 'n%d')", id, id)
	}
	if returning != "" {
		b.WriteString(" RETURNING " + returning)
	}
	return b.String()
}

// paramInsert is the same with parameters: ($1, $2), ($3, $4) ...
func paramInsert(table string, ids []int64, returning string) (string, []any) {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (id, note) VALUES ", table)
	args := make([]any, 0, 2*len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d, $%d)", 2*i+1, 2*i+2)
		args = append(args, id, "n"+strconv.FormatInt(id, 10))
	}
	if returning != "" {
		b.WriteString(" RETURNING " + returning)
	}
	return b.String(), args
}

// returnedIDs runs an INSERT ... RETURNING id, note and checks the notes
// match the ids; it returns the ids in the order received and the tag.
func returnedIDs(t *testing.T, c *pgx.Conn, sql string, args ...any) ([]int64, string) {
	t.Helper()
	rows, err := c.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			t.Fatal(err)
		}
		if note != "n"+strconv.FormatInt(id, 10) {
			t.Fatalf("row %d came back with note %q", id, note)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%.200s: %v", sql, err)
	}
	return ids, rows.CommandTag().String()
}

// checkPlaced checks that table holds exactly ids, each on its shard, and
// that every shard got some.
func (f *copyFixture) checkPlaced(t *testing.T, table, strategy string, ids []int64) {
	t.Helper()
	got := f.placed(t, table, "id", strategy)
	if len(got) != len(ids) {
		t.Fatalf("%s holds %d rows, want %d", table, len(got), len(ids))
	}
	for _, id := range ids {
		k := strconv.FormatInt(id, 10)
		if note, ok := got[k]; !ok || note != "n"+k {
			t.Fatalf("%s row %s: note %q (present %v)", table, k, note, ok)
		}
	}
	for _, sh := range []string{"s0", "s1", "s2"} {
		if countOn(t, f.fixture, sh, "SELECT count(*) FROM "+table) == 0 {
			t.Fatalf("no row of %s on %s: the test does not span every shard", table, sh)
		}
	}
}

func TestInsertSplit(t *testing.T) {
	f := startSplitFixture(t, "")
	ctx := context.Background()
	truncate := func(t *testing.T) { mustExec(t, f.c, "TRUNCATE si, sd") }

	t.Run("simple protocol RETURNING in VALUES order", func(t *testing.T) {
		truncate(t)
		ids := splitIDs(30)
		got, tag := returnedIDs(t, f.c, literalInsert("si", ids, "id, note"), pgx.QueryExecModeSimpleProtocol)
		if !slices.Equal(got, ids) || tag != "INSERT 0 30" {
			t.Fatalf("returned %v (%s), want %v (INSERT 0 30)", got, tag, ids)
		}
		f.checkPlaced(t, "si", "h", ids)
	})

	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe}
	for _, mode := range modes {
		t.Run("params "+mode.String(), func(t *testing.T) {
			truncate(t)
			ids := splitIDs(12)
			sql, args := paramInsert("si", ids, "id, note")
			got, tag := returnedIDs(t, f.c, sql, append([]any{mode}, args...)...)
			if !slices.Equal(got, ids) || tag != "INSERT 0 12" {
				t.Fatalf("returned %v (%s), want %v (INSERT 0 12)", got, tag, ids)
			}
			f.checkPlaced(t, "si", "h", ids)

			// Literal and parameter rows mixed; a parameter used by rows on
			// two shards; RETURNING of a DEFAULT.
			truncate(t)
			rows, err := f.c.Query(ctx, "INSERT INTO si (id, note, qty) VALUES ($1, 'n1', DEFAULT), (2, $2, $3), (3, 'n3', $3), ($4, 'n4', 1) RETURNING id, qty",
				mode, 1, "n2", 5, 4)
			if err != nil {
				t.Fatal(err)
			}
			type idQty struct {
				ID  int64
				Qty int32
			}
			ret, err := pgx.CollectRows(rows, pgx.RowToStructByPos[idQty])
			if err != nil {
				t.Fatal(err)
			}
			if want := []idQty{{1, 7}, {2, 5}, {3, 5}, {4, 1}}; !slices.Equal(ret, want) {
				t.Fatalf("mixed rows returned %v, want %v", ret, want)
			}
			f.checkPlaced(t, "si", "h", []int64{1, 2, 3, 4})
		})
	}

	// A parameter no row uses, without a type: Postgres refuses the
	// statement, so the proxy must too (no shard's part would see it).
	t.Run("unused untyped parameter", func(t *testing.T) {
		truncate(t)
		sql := "INSERT INTO si (id, note) VALUES ($1, 'a'), ($3, 'b')"
		ids := splitIDs(30)
		var a, b int64 = ids[0], 0
		for _, id := range ids {
			if shardOf(t, f, "h", id) != shardOf(t, f, "h", a) {
				b = id
				break
			}
		}
		params := [][]byte{[]byte(strconv.FormatInt(a, 10)), []byte("x"), []byte(strconv.FormatInt(b, 10))}
		for _, c := range []*pgx.Conn{f.Direct(t, "s0"), f.c} {
			_, err := c.PgConn().ExecParams(ctx, sql, params, nil, nil, nil).Close()
			wantSQLState(t, err, "42P18")
		}
		// Typed, it is fine (as on Postgres).
		if _, err := f.c.PgConn().ExecParams(ctx, sql, params, []uint32{0, 25, 0}, nil, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if n := f.total(t, "si"); n != 2 {
			t.Fatalf("%d rows, want 2", n)
		}
	})

	// $2 is typed by the first row (text), on another shard than the row
	// that uses it again: alone, "$2 IS NULL" cannot type it (42P18).
	t.Run("parameter typed by another shard's row", func(t *testing.T) {
		sql := "INSERT INTO si (id, note, qty) VALUES ($1, $2, 1), ($3, 'n', CASE WHEN $2 IS NULL THEN 0 ELSE 4 END)"
		ids := splitIDs(30)
		a, b := ids[0], int64(0)
		for _, id := range ids {
			if shardOf(t, f, "h", id) != shardOf(t, f, "h", a) {
				b = id
				break
			}
		}
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
			truncate(t)
			if _, err := f.c.Exec(ctx, sql, mode, a, "four", b); err != nil {
				t.Fatalf("%v: %v", mode, err)
			}
			var qty int
			if err := f.c.QueryRow(ctx, "SELECT qty FROM si WHERE id = $1", b).Scan(&qty); err != nil || qty != 4 {
				t.Fatalf("%v: qty %d (%v), want 4", mode, qty, err)
			}
		}
		truncate(t)
		params := [][]byte{[]byte(strconv.FormatInt(a, 10)), []byte("four"), []byte(strconv.FormatInt(b, 10))}
		if _, err := f.c.PgConn().ExecParams(ctx, sql, params, nil, nil, nil).Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DEFAULT and a reference-table subquery", func(t *testing.T) {
		truncate(t)
		rows, err := f.c.Query(ctx, "INSERT INTO si (id, note, qty) VALUES (1, DEFAULT, 3), (2, (SELECT label FROM sref WHERE k = 1), DEFAULT), (3, 'c', DEFAULT) RETURNING id, coalesce(note, '-'), qty",
			pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			ID   int64
			Note string
			Qty  int32
		}
		ret, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			t.Fatal(err)
		}
		if want := []row{{1, "-", 3}, {2, "one", 7}, {3, "c", 7}}; !slices.Equal(ret, want) {
			t.Fatalf("returned %v, want %v", ret, want)
		}
	})

	t.Run("without a column list", func(t *testing.T) {
		truncate(t)
		tag, err := f.c.Exec(ctx, "INSERT INTO si VALUES (1, 'n1'), (2, 'n2', 3), (3, 'n3')")
		if err != nil || tag.String() != "INSERT 0 3" {
			t.Fatalf("%q, %v", tag, err)
		}
		f.checkPlaced(t, "si", "h", []int64{1, 2, 3})
	})

	// A unique violation on one shard: no shard keeps any row (the
	// violating shard is not the first one written).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run("unique violation leaves nothing "+mode.String(), func(t *testing.T) {
			truncate(t)
			ids := splitIDs(20)
			var dup int64
			for _, id := range ids {
				if shardOf(t, f, "h", id) == "s2" {
					dup = id
					break
				}
			}
			mustExec(t, f.c, "INSERT INTO si (id, note) VALUES ($1, 'old')", dup)
			sql, args := paramInsert("si", ids, "id, note")
			if mode == pgx.QueryExecModeSimpleProtocol {
				sql, args = literalInsert("si", ids, "id, note"), nil
			}
			_, err := f.c.Exec(ctx, sql, append([]any{mode}, args...)...)
			wantSQLState(t, err, "23505")
			for _, sh := range []string{"s0", "s1", "s2"} {
				want := 0
				if sh == "s2" {
					want = 1
				}
				if n := countOn(t, f.fixture, sh, "SELECT count(*) FROM si"); n != want {
					t.Fatalf("%s holds %d rows after the failed INSERT, want %d", sh, n, want)
				}
			}
		})
	}

	t.Run("1000 rows", func(t *testing.T) {
		truncate(t)
		ids := splitIDs(1000)
		got, tag := returnedIDs(t, f.c, literalInsert("si", ids, "id, note"), pgx.QueryExecModeSimpleProtocol)
		if !slices.Equal(got, ids) || tag != "INSERT 0 1000" {
			t.Fatalf("simple: %d rows returned in VALUES order: %v (%s)", len(got), slices.Equal(got, ids), tag)
		}
		f.checkPlaced(t, "si", "h", ids)
		truncate(t)
		sql, args := paramInsert("si", ids, "id, note")
		got, tag = returnedIDs(t, f.c, sql, args...)
		if !slices.Equal(got, ids) || tag != "INSERT 0 1000" {
			t.Fatalf("extended: %d rows returned in VALUES order: %v (%s)", len(got), slices.Equal(got, ids), tag)
		}
		f.checkPlaced(t, "si", "h", ids)
	})

	t.Run("ON CONFLICT DO NOTHING", func(t *testing.T) {
		truncate(t)
		ids := splitIDs(9)
		mustExec(t, f.c, literalInsert("si", ids[:4], ""))
		tag, err := f.c.Exec(ctx, literalInsert("si", ids, "")+" ON CONFLICT DO NOTHING")
		if err != nil || tag.String() != "INSERT 0 5" {
			t.Fatalf("%q, %v; want INSERT 0 5", tag, err)
		}
		f.checkPlaced(t, "si", "h", ids)

		// With RETURNING and no conflict, the rows come back in order.
		truncate(t)
		got, rtag := returnedIDs(t, f.c, strings.Replace(literalInsert("si", ids, "id, note"), " RETURNING", " ON CONFLICT DO NOTHING RETURNING", 1))
		if !slices.Equal(got, ids) || rtag != "INSERT 0 9" {
			t.Fatalf("returned %v (%s), want %v", got, rtag, ids)
		}
		// A skipped row leaves its RETURNING place unknown: refused, and
		// rolled back everywhere.
		truncate(t)
		mustExec(t, f.c, literalInsert("si", ids[:1], ""))
		_, err = f.c.Exec(ctx, strings.Replace(literalInsert("si", ids, "id, note"), " RETURNING", " ON CONFLICT DO NOTHING RETURNING", 1))
		wantSQLState(t, err, "0A000")
		if n := f.total(t, "si"); n != 1 {
			t.Fatalf("%d rows after the refused INSERT, want 1", n)
		}
	})

	t.Run("inside a transaction without two-phase commit", func(t *testing.T) {
		truncate(t)
		tx, err := f.c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, literalInsert("si", splitIDs(6), ""))
		wantSQLState(t, err, "0A000")
	})

	t.Run("directory places new keys", func(t *testing.T) {
		truncate(t)
		ids := splitIDs(12)
		// Keys 1..3 are placed where the fallback hash would not put them.
		placed := map[string]string{}
		for _, id := range ids[:3] {
			fb := shardOf(t, f, "h", id)
			other := map[string]string{"s0": "s1", "s1": "s2", "s2": "s0"}[fb]
			placed[strconv.FormatInt(id, 10)] = other
		}
		writeDirectory(t, f.fixture, map[string]map[string]string{"dir_sd": placed})
		got, tag := returnedIDs(t, f.c, literalInsert("sd", ids, "id, note"))
		if !slices.Equal(got, ids) || tag != "INSERT 0 12" {
			t.Fatalf("returned %v (%s), want %v", got, tag, ids)
		}
		f.checkPlaced(t, "sd", "d", ids)
		for k, sh := range placed {
			if n := countOn(t, f.fixture, sh, "SELECT count(*) FROM sd WHERE id = "+k); n != 1 {
				t.Fatalf("key %s, placed on %s by the directory, is not there", k, sh)
			}
		}
		meta, err := f.Meta.Connect(ctx, f.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer meta.Close(ctx)
		var n int
		if err := meta.QueryRow(ctx, "SELECT count(*) FROM dir_sd").Scan(&n); err != nil || n != len(ids) {
			t.Fatalf("directory holds %d keys (%v), want %d: every new key placed", n, err, len(ids))
		}
	})
}

// shardOf is the shard strategy places int key id on.
func shardOf(t *testing.T, f *copyFixture, strategy string, id int64) string {
	t.Helper()
	sh, err := f.strats[strategy].Locate(context.Background(), strategies.Key{Type: strategies.KeyInt, Int: id}, strategies.Write)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// TestInsertSplitTwoPhase: with two_phase_commit a split INSERT commits
// atomically outside a transaction, and inside BEGIN .. COMMIT runs on the
// transaction's backends: visible to the transaction, gone on ROLLBACK.
func TestInsertSplitTwoPhase(t *testing.T) {
	f := startSplitFixture(t, "two_phase_commit: true\n")
	ctx := context.Background()
	ids := splitIDs(15)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			mustExec(t, f.c, "TRUNCATE si")
			sql, args := paramInsert("si", ids, "id, note")
			if mode == pgx.QueryExecModeSimpleProtocol {
				sql, args = literalInsert("si", ids, "id, note"), nil
			}
			args = append([]any{mode}, args...)

			// Outside a transaction: two-phase commit.
			got, tag := returnedIDs(t, f.c, sql, args...)
			if !slices.Equal(got, ids) || tag != "INSERT 0 15" {
				t.Fatalf("returned %v (%s)", got, tag)
			}
			f.checkPlaced(t, "si", "h", ids)
			mustExec(t, f.c, "TRUNCATE si")

			// ROLLBACK leaves nothing.
			tx, err := f.c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = returnedIDs(t, tx.Conn(), sql, args...)
			if !slices.Equal(got, ids) {
				t.Fatalf("in a transaction: returned %v", got)
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM si").Scan(&n); err != nil || n != len(ids) {
				t.Fatalf("the transaction sees %d rows (%v), want %d", n, err, len(ids))
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if n := f.total(t, "si"); n != 0 {
				t.Fatalf("%d rows after ROLLBACK", n)
			}

			// A violation fails the transaction; nothing is committed.
			mustExec(t, f.c, "INSERT INTO si (id, note) VALUES ($1, 'old')", ids[len(ids)-1])
			tx, err = f.c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO si (id, note) VALUES (-1, 'x'), (-2, 'y')"); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, sql, args...)
			wantSQLState(t, err, "23505")
			if err := tx.Commit(ctx); err == nil || !strings.Contains(err.Error(), "rollback") {
				t.Fatalf("COMMIT of a failed transaction: %v, want it rolled back", err)
			}
			if n := f.total(t, "si"); n != 1 {
				t.Fatalf("%d rows after the failed transaction, want 1", n)
			}
			mustExec(t, f.c, "TRUNCATE si")

			// COMMIT keeps every row, each on its shard.
			tx, err = f.c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			f.checkPlaced(t, "si", "h", ids)
		})
	}
}

// TestInsertSplitMemory: RETURNING rows held for VALUES order count
// against merge_memory; past it the INSERT fails with 53200 and rolls
// back on every shard.
func TestInsertSplitMemory(t *testing.T) {
	f := startSplitFixture(t, "merge_memory: 64kB\n")
	ids := splitIDs(300)
	sql := literalInsert("si", ids, "id, note, repeat('x', 500)")
	_, err := f.c.Exec(context.Background(), sql)
	wantSQLState(t, err, "53200")
	if n := f.total(t, "si"); n != 0 {
		t.Fatalf("%d rows after the failed INSERT, want 0", n)
	}
	// Without the padding the same rows fit.
	got, tag := returnedIDs(t, f.c, literalInsert("si", ids, "id, note"))
	if !slices.Equal(got, ids) || tag != "INSERT 0 300" {
		t.Fatalf("returned %d rows (%s)", len(got), tag)
	}
}

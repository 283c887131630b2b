package router

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/strategies"
)

func TestParseCopy(t *testing.T) {
	tests := []struct {
		sql  string
		want CopySpec // schema/rel are not compared
		code string
	}{
		{sql: "COPY orders FROM STDIN", want: CopySpec{From: true, Stdio: true, Table: "orders", Delimiter: '\t', Null: `\N`, Quote: '"', Escape: '"',
			NoHeaderSQL: "COPY orders FROM STDIN"}},
		{sql: "copy app.audit (id, note) from stdin with (format csv, header, delimiter ';', null 'x', freeze on)",
			want: CopySpec{From: true, Stdio: true, Table: "app.audit", Columns: []string{"id", "note"}, Format: CopyCSV, Header: true,
				Delimiter: ';', Null: "x", Quote: '"', Escape: '"',
				NoHeaderSQL: "COPY app.audit(id, note) FROM STDIN WITH (FORMAT CSV, DELIMITER ';', NULL 'x', FREEZE on)"}},
		{sql: "COPY orders FROM STDIN CSV HEADER QUOTE '''' ESCAPE '\\' FORCE NOT NULL customer_id",
			want: CopySpec{From: true, Stdio: true, Table: "orders", Format: CopyCSV, Header: true, Delimiter: ',', Null: "",
				Quote: '\'', Escape: '\\', ForceNotNull: []string{"customer_id"},
				NoHeaderSQL: `COPY orders FROM STDIN WITH (FORMAT CSV, QUOTE '''', ESCAPE E'\\', FORCE_NOT_NULL (customer_id))`}},
		{sql: "COPY orders FROM STDIN (FORMAT csv, HEADER false)", want: CopySpec{From: true, Stdio: true, Table: "orders", Format: CopyCSV,
			Delimiter: ',', Quote: '"', Escape: '"', NoHeaderSQL: "COPY orders FROM STDIN CSV"}},
		{sql: "COPY orders FROM STDIN (FREEZE off)", want: CopySpec{From: true, Stdio: true, Table: "orders", Delimiter: '\t', Null: `\N`, Quote: '"', Escape: '"',
			NoHeaderSQL: "COPY orders FROM STDIN WITH (FREEZE off)"}},
		{sql: "COPY orders TO STDOUT (FORMAT binary)", want: CopySpec{Stdio: true, Table: "orders", Format: CopyBinary,
			Delimiter: '\t', Null: `\N`, Quote: '"', Escape: '"', NoHeaderSQL: "COPY orders TO STDOUT WITH (FORMAT BINARY)"}},
		{sql: "COPY (SELECT 1) TO STDOUT", want: CopySpec{Stdio: true, Query: true, Delimiter: '\t', Null: `\N`, Quote: '"', Escape: '"',
			QueryText: "SELECT 1", NoHeaderSQL: "COPY (SELECT 1) TO STDOUT"}},
		{sql: "COPY orders FROM '/tmp/x'", want: CopySpec{From: true, Table: "orders", Delimiter: '\t', Null: `\N`, Quote: '"', Escape: '"',
			NoHeaderSQL: "COPY orders FROM '/tmp/x'"}},
		{sql: "COPY orders FROM STDIN (DELIMITER '||')", code: "0A000"},
		{sql: "COPY orders FROM STDIN (FORMAT csv, HEADER match)", code: "0A000"},
		{sql: "COPY orders FROM STDIN (ENCODING 'latin1')", code: "0A000"},
		{sql: "COPY orders FROM STDIN (FORMAT xml)", code: "22023"},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			got, err := ParseCopy(tc.sql)
			if tc.code != "" {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != tc.code {
					t.Fatalf("err = %v, want SQLSTATE %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.schema, got.rel = "", ""
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestCopyPlacer(t *testing.T) {
	r, strats := newTestRouter(t)
	ctx := context.Background()
	cols := func(_ context.Context, schema, rel string) ([]string, error) {
		return []string{"id", "customer_id", "total"}, nil
	}
	byCustomer := keysOn(t, strats["by_customer"])
	t.Run("reference and unlisted tables are not split", func(t *testing.T) {
		for _, sql := range []string{"COPY products FROM STDIN", "COPY nowhere FROM STDIN"} {
			sp, _ := ParseCopy(sql)
			p, err := r.CopyPlacer(ctx, sp, Args{})
			if p != nil || err != nil {
				t.Fatalf("%s: placer %v, %v; want none", sql, p, err)
			}
		}
	})
	t.Run("key position from the table's columns", func(t *testing.T) {
		sp, _ := ParseCopy("COPY orders FROM STDIN")
		p, err := r.CopyPlacer(ctx, sp, Args{Columns: cols})
		if err != nil || p.KeyColumn() != 1 || p.Columns() != 3 {
			t.Fatalf("placer %+v, %v", p, err)
		}
		for shard, key := range byCustomer {
			got, err := p.Place(ctx, []byte(key), false, false)
			if err != nil || got != shard {
				t.Errorf("key %s: %s, %v; want %s", key, got, err, shard)
			}
		}
	})
	t.Run("binary keys", func(t *testing.T) {
		sp, _ := ParseCopy("COPY orders (customer_id) FROM STDIN (FORMAT binary)")
		p, err := r.CopyPlacer(ctx, sp, Args{})
		if err != nil {
			t.Fatal(err)
		}
		for shard, key := range byCustomer {
			k, _ := strategies.ParseKey(strategies.KeyInt, key)
			for _, b := range [][]byte{binary.BigEndian.AppendUint32(nil, uint32(k.Int)), binary.BigEndian.AppendUint64(nil, uint64(k.Int))} {
				got, err := p.Place(ctx, b, false, true)
				if err != nil || got != shard {
					t.Errorf("key %s (%d bytes): %s, %v; want %s", key, len(b), got, err, shard)
				}
			}
		}
	})
	t.Run("directory places new keys like INSERT", func(t *testing.T) {
		sp, _ := ParseCopy("COPY tenant_data (tenant) FROM STDIN")
		p, err := r.CopyPlacer(ctx, sp, Args{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := p.Place(ctx, []byte("acme"), false, false); err != nil || got != "s2" {
			t.Errorf("known key: %s, %v; want s2", got, err)
		}
		want, _ := strats["ring"].Locate(ctx, strategies.Key{Type: strategies.KeyText, Text: "newco"}, strategies.Write)
		if got, err := p.Place(ctx, []byte("newco"), false, false); err != nil || got != want {
			t.Errorf("new key: %s, %v; want the fallback's %s", got, err, want)
		}
	})
	errs := []struct {
		name, sql string
		args      Args
		val       string
		null      bool
		code      string
	}{
		{name: "NULL key", sql: "COPY orders (customer_id) FROM STDIN", null: true, code: "23502"},
		{name: "bad int", sql: "COPY orders (customer_id) FROM STDIN", val: "x1", code: "22P02"},
		{name: "fraction", sql: "COPY orders (customer_id) FROM STDIN", val: "1.5", code: "22P02"},
		{name: "key not copied", sql: "COPY orders (id) FROM STDIN", code: "0A000"},
		{name: "no column list, no resolver", sql: "COPY orders FROM STDIN", code: "0A000"},
		{name: "key column missing", sql: "COPY sessions FROM STDIN", args: Args{Columns: cols}, code: "42703"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			sp, _ := ParseCopy(tc.sql)
			p, err := r.CopyPlacer(ctx, sp, tc.args)
			if err == nil {
				_, err = p.Place(ctx, []byte(tc.val), tc.null, false)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("err = %v, want SQLSTATE %s", err, tc.code)
			}
		})
	}
}

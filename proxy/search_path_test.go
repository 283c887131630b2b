package proxy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSearchPathUnqualified: the router reads an unqualified table name
// as public's, the shards through the session's search_path. With
// app.items sharded and search_path app, "items" went to the default
// shard only: a count saw part of the rows and inserts all landed there.
// Under a search_path other than the default, statements that name a
// mapped table without its schema are refused (0A000 with a hint);
// qualified names and unmapped tables keep working.
func TestSearchPathUnqualified(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  app.items: {key: id, strategy: by_id}
default_shard: s0
`})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE SCHEMA app")
	mustExec(t, c, "CREATE TABLE app.items (id int PRIMARY KEY)")
	mustExec(t, c, "INSERT INTO app.items VALUES (1), (2), (3), (4), (5), (6), (7), (8)")
	if directCount(t, f, "s0", "app.items", "true") == 0 || directCount(t, f, "s1", "app.items", "true") == 0 {
		t.Fatal("want rows on both shards")
	}
	refused := func(what string, err error) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
			t.Errorf("%s: %v, want 0A000 with a hint", what, err)
		}
	}
	count := func(sql string) (int, error) {
		var n int
		err := c.QueryRow(ctx, sql).Scan(&n)
		return n, err
	}

	for _, path := range []string{"app", "app, public", `"$user", app`} {
		mustExec(t, c, "SET search_path = "+path)
		_, err := count("SELECT count(*) FROM items")
		refused("count under search_path "+path, err)
		_, err = c.Exec(ctx, "INSERT INTO items VALUES ($1)", 9)
		refused("insert under search_path "+path, err)
		_, err = c.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id"}, pgx.CopyFromRows([][]any{{10}, {11}}))
		refused("COPY under search_path "+path, err)
		if n, err := count("SELECT count(*) FROM app.items"); err != nil || n != 8 {
			t.Errorf("qualified count under search_path %s: %d, %v", path, n, err)
		}
	}
	// An unmapped table is the default shard's, wherever it resolves.
	mustExec(t, c, "CREATE TABLE notes (n int)")
	mustExec(t, c, "INSERT INTO notes VALUES (1)")
	if n, err := count("SELECT count(*) FROM notes"); err != nil || n != 1 {
		t.Errorf("unmapped table under search_path: %d, %v", n, err)
	}
	if directCount(t, f, "s0", "app.notes", "true") != 1 {
		t.Errorf("app.notes is not on the default shard")
	}

	// The default, and its spellings, route as before.
	for _, path := range []string{"DEFAULT", `"$user", public`, "public"} {
		mustExec(t, c, "SET search_path TO "+path)
		if n, err := count("SELECT count(*) FROM app.items"); err != nil || n != 8 {
			t.Errorf("qualified count under search_path %s: %d, %v", path, n, err)
		}
		_, err := count("SELECT count(*) FROM items") // public.items: no such table
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
			t.Errorf("unqualified count under search_path %s: %v, want 42P01 from Postgres", path, err)
		}
	}

	// SET LOCAL: for the transaction only.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = app"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "INSERT INTO items VALUES (12)")
	refused("insert after SET LOCAL search_path", err)
	tx.Rollback(ctx)
	if n, err := count("SELECT count(*) FROM app.items"); err != nil || n != 8 {
		t.Errorf("after the transaction: %d, %v", n, err)
	}

	// A search_path set at startup counts too.
	sc, err := f.ConnectWith(t, map[string]string{"search_path": "app"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	var n int
	refused("count with search_path app at startup", sc.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n))
}

// TestLoginUserSchema: under the default search_path, "$user", public,
// the shards look for an unqualified name first in the schema named
// after the user they log in as (here postgres). With postgres.items
// sharded, "items" is that table on every shard; the router read it as
// public.items, which the map does not have, so a count went to the
// default shard only and inserts all landed there. Now it reads the
// name as the shards do. search_path public alone skips "$user": there
// the unqualified name is refused, as under any other search_path.
func TestLoginUserSchema(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  postgres.items: {key: id, strategy: by_id}
default_shard: s0
`})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE SCHEMA postgres")
	mustExec(t, c, "CREATE TABLE postgres.items (id int PRIMARY KEY, v int)")
	mustExec(t, c, "INSERT INTO items (id) VALUES (1), (2), (3), (4), (5), (6), (7), (8)")
	on := func(id int) []string {
		var out []string
		for _, s := range []string{"s0", "s1"} {
			if directCount(t, f, s, "postgres.items", "id = $1", id) > 0 {
				out = append(out, s)
			}
		}
		return out
	}
	if directCount(t, f, "s0", "postgres.items", "true") == 0 || directCount(t, f, "s1", "postgres.items", "true") == 0 {
		t.Fatal("the unqualified INSERT did not spread the rows over both shards")
	}
	for id := 1; id <= 8; id++ {
		if got := on(id); len(got) != 1 {
			t.Errorf("id %d on %v", id, got)
		}
	}
	count := func(c *pgx.Conn, sql string) (int, error) {
		var n int
		err := c.QueryRow(ctx, sql).Scan(&n)
		return n, err
	}
	for _, q := range []string{"SELECT count(*) FROM items", "SELECT count(*) FROM postgres.items",
		"SELECT count(*) FROM items WHERE items.id > 0", "SELECT count(*) FROM items WHERE postgres.items.id > 0"} {
		if n, err := count(c, q); err != nil || n != 8 {
			t.Errorf("%s: %d, %v; want 8", q, n, err)
		}
	}
	mustExec(t, c, "UPDATE items SET v = 1 WHERE postgres.items.id = 3")
	if n, err := count(c, "SELECT count(*) FROM items WHERE id = 3 AND v = 1"); err != nil || n != 1 {
		t.Errorf("point select: %d, %v", n, err)
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id"}, pgx.CopyFromRows([][]any{{10}, {11}, {12}, {13}})); err != nil {
		t.Fatal(err)
	}
	for id := 10; id <= 13; id++ {
		if got := on(id); len(got) != 1 {
			t.Errorf("copied id %d on %v", id, got)
		}
	}

	// search_path public skips the login user's schema.
	mustExec(t, c, "SET search_path = public")
	_, err := count(c, "SELECT count(*) FROM items")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
		t.Errorf("count under search_path public: %v, want 0A000 with a hint", err)
	}
	mustExec(t, c, "RESET search_path")
	if n, err := count(c, "SELECT count(*) FROM items"); err != nil || n != 12 {
		t.Errorf("after RESET: %d, %v; want 12", n, err)
	}
}

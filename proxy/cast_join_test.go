package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestLossyCastJoin: text keys '7' and '007' hash to different shards
// but are one integer. The router read a.token::int = b.token::int as a
// join on the shard key, so each shard joined its own rows and the
// count missed every pair that spans shards. A cast out of the key's
// type family no longer counts as the key: the join is refused.
func TestLossyCastJoin(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_token: {type: hash, key_type: text, shards: [s0, s1]}
tables:
  tokens: {key: token, strategy: by_token}
default_shard: s0
`})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE tokens (token text PRIMARY KEY)")
	variants := []string{"7", "07", "007", "0007", "00007", "000007"}
	for _, v := range variants {
		mustExec(t, c, "INSERT INTO tokens VALUES ($1)", v)
	}
	on0 := directCount(t, f, "s0", "tokens", "true")
	if on0 == 0 || on0 == int64(len(variants)) {
		t.Fatalf("want the variants on both shards, s0 has %d of %d", on0, len(variants))
	}
	var n int64
	// The merge refuses it, naming the cast; gathered (one Postgres over
	// every shard's tokens) it counts what Postgres counts.
	_, err := c.Exec(ctx, "SET shardproxy.gather = off")
	if err != nil {
		t.Fatal(err)
	}
	err = c.QueryRow(ctx, "SELECT count(*) FROM tokens a JOIN tokens b ON a.token::int = b.token::int").Scan(&n)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Hint, "a.token::int4 casts a shard key out of its type") {
		t.Errorf("join on token::int, merge only: %d, %v; want 0A000 naming the cast", n, err)
	}
	mustExec(t, c, "RESET shardproxy.gather")
	if err := c.QueryRow(ctx, "SELECT count(*) FROM tokens a JOIN tokens b ON a.token::int = b.token::int").Scan(&n); err != nil || n != int64(len(variants)*len(variants)) {
		t.Errorf("join on token::int, gathered: %d, %v; want %d", n, err, len(variants)*len(variants))
	}
	// Within the family the key is still the key.
	if err := c.QueryRow(ctx, "SELECT count(*) FROM tokens a JOIN tokens b ON a.token::varchar = b.token").Scan(&n); err != nil || n != int64(len(variants)) {
		t.Errorf("join on token::varchar: %d, %v; want %d", n, err, len(variants))
	}
}

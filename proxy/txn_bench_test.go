package proxy_test

import (
	"context"
	"testing"
)

// BenchmarkTransaction measures a small read-write transaction through the
// proxy on one shard (plain COMMIT) and across two shards (two-phase
// commit with the decision logged in the metadata database).
func BenchmarkTransaction(b *testing.B) {
	f := startTxnFixture(b, twoPCBody)
	ctx := context.Background()
	c := f.Connect(b)
	upd := "UPDATE customers SET credit = credit + 1 WHERE customer_id = $1"
	for _, bc := range []struct {
		name string
		ids  []int64
	}{
		{"one-shard", []int64{f.a, f.a}},
		{"two-shards-2pc", []int64{f.a, f.b}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				tx, err := c.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for _, id := range bc.ids {
					if _, err := tx.Exec(ctx, upd, id); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

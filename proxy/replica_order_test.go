package proxy_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestConcurrentReferenceWrites: a write to a reference table runs on the
// copies one shard after the other, each with its own snapshot. A second
// write committed between them was seen by the later copies only:
// UPDATE products SET price = price + 1 ran on s0 before an INSERT of
// product 9 committed everywhere and on s1 after, so s1's copy of 9 got
// the extra 1 and s0's did not, for good (so did rows COPY brought in).
// Reference writes now queue
// behind each other on every copy (advisory locks in their transaction
// there, taken in shard order), so the copies take the writes in one
// order.
func TestConcurrentReferenceWrites(t *testing.T) {
	for _, tpc := range []bool{false, true} {
		t.Run(fmt.Sprintf("two_phase_commit=%v", tpc), func(t *testing.T) {
			body := defaultBody
			if tpc {
				body = twoPCBody
			}
			f := startFixture(t, fixtureOptions{Body: body})
			ctx := context.Background()
			c := f.Connect(t)
			mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, name text, price int NOT NULL)")
			mustExec(t, c, "INSERT INTO products SELECT g, 'p' || g, 0 FROM generate_series(1, 2000) g")

			const rounds = 150
			var wg sync.WaitGroup
			var failed atomic.Value
			wg.Add(3)
			go func() { // every price up by one, over and over
				defer wg.Done()
				c := f.Connect(t)
				for i := 0; i < rounds; i++ {
					if _, err := c.Exec(ctx, "UPDATE products SET price = price + 1 WHERE id > 0"); err != nil {
						failed.CompareAndSwap(nil, fmt.Errorf("update %d: %w", i, err))
						return
					}
				}
			}()
			go func() { // new products come and go
				defer wg.Done()
				c := f.Connect(t)
				for i := 0; i < rounds; i++ {
					id := 100000 + i
					if _, err := c.Exec(ctx, "INSERT INTO products VALUES ($1, 'new', 0)", id); err != nil {
						failed.CompareAndSwap(nil, fmt.Errorf("insert %d: %w", i, err))
						return
					}
					if i%2 == 1 {
						if _, err := c.Exec(ctx, "DELETE FROM products WHERE id = $1", id-1); err != nil {
							failed.CompareAndSwap(nil, fmt.Errorf("delete %d: %w", i, err))
							return
						}
					}
				}
			}()
			go func() { // and are copied in
				defer wg.Done()
				c := f.Connect(t)
				for i := 0; i < rounds/3; i++ {
					rows := [][]any{{int32(200000 + 2*i), "copied", int32(0)}, {int32(200001 + 2*i), "copied", int32(0)}}
					if _, err := c.CopyFrom(ctx, pgx.Identifier{"products"}, []string{"id", "name", "price"}, pgx.CopyFromRows(rows)); err != nil {
						failed.CompareAndSwap(nil, fmt.Errorf("copy %d: %w", i, err))
						return
					}
				}
			}()
			if tpc {
				wg.Add(1)
				go func() { // the transaction's own backends write the copies
					defer wg.Done()
					c := f.Connect(t)
					for i := 0; i < rounds/3; i++ {
						err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
							_, err := tx.Exec(ctx, "UPDATE products SET price = price + 10 WHERE id % 3 = 0")
							return err
						})
						if err != nil {
							failed.CompareAndSwap(nil, fmt.Errorf("transaction %d: %w", i, err))
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatal(err)
			}
			copyOf := func(shard string) (string, int) {
				var digest string
				var n int
				q := "SELECT md5(string_agg(t::text, ';' ORDER BY id)), count(*) FROM products t"
				if err := f.Direct(t, shard).QueryRow(ctx, q).Scan(&digest, &n); err != nil {
					t.Fatal(err)
				}
				return digest, n
			}
			d0, n0 := copyOf("s0")
			d1, n1 := copyOf("s1")
			if d0 != d1 {
				rows := func(shard string) string {
					var s string
					q := "SELECT string_agg(t::text, ' ' ORDER BY id) FROM products t WHERE id >= 100000 OR price <> (SELECT min(price) FROM products)"
					if err := f.Direct(t, shard).QueryRow(ctx, q).Scan(&s); err != nil {
						t.Fatal(err)
					}
					return s
				}
				t.Fatalf("the copies of products differ after concurrent writes (%d and %d rows)\ns0: %s\ns1: %s", n0, n1, rows("s0"), rows("s1"))
			}
		})
	}
}

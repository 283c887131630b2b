package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Handler takes effect of one message; it must be idempotent (messages are
// delivered at least once). An error leaves the message for a later pass.
type Handler func(ctx context.Context, m Message) error

// DeliverOnce delivers up to limit pending messages of outbox t on shard,
// oldest first, and marks the delivered ones. The rows stay locked (FOR
// UPDATE SKIP LOCKED) while their handlers run, so concurrent relays of the
// same shard share the work instead of racing; a relay that dies before
// its commit leaves them pending, and they are delivered again. Delivery
// stops at the first handler error, keeping the order of the rest.
func (t Table) DeliverOnce(ctx context.Context, pool *pgxpool.Pool, shard string, limit int, h Handler) (delivered int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, fmt.Sprintf(`/* shard: %s */ SELECT id, %s, message_id::text, type, payload FROM %s
			WHERE delivered_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, shard, t.KeyCol, t.Name), limit)
		if err != nil {
			return err
		}
		type row struct {
			id int64
			m  Message
		}
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.m.Key, &r.m.ID, &r.m.Type, &r.m.Payload); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var done []int64
		var herr error
		for _, r := range batch {
			if herr = h(ctx, r.m); herr != nil {
				break
			}
			done = append(done, r.id)
		}
		if len(done) > 0 {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`/* shard: %s */ UPDATE %s SET delivered_at = now() WHERE id = ANY($1)`,
				shard, t.Name), done); err != nil {
				return err
			}
		}
		delivered = len(done)
		if herr != nil && delivered == 0 {
			return herr
		}
		return nil
	})
	return delivered, err
}

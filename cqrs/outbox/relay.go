package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Handler takes effect of one message; it must be idempotent (messages are
// delivered at least once). An error leaves the message for a later pass.
type Handler func(ctx context.Context, m Message) error

// maxRetryDelay caps the backoff of a message whose handler keeps failing.
const maxRetryDelay = 5 * time.Second

// batchBudget bounds the handling time of one delivery transaction. The
// delivered marks commit with it, so a relay that dies mid-batch hands
// its whole batch to the next one; a batch longer than a relay's life
// would be handled again and again and never marked.
const batchBudget = 200 * time.Millisecond

// DeliverOnce delivers up to limit due messages of outbox t on shard,
// oldest first, and marks the delivered ones. The rows stay locked (FOR
// UPDATE SKIP LOCKED) while their handlers run, so concurrent relays of the
// same shard share the work instead of racing; a relay that dies before
// its commit leaves them pending, and they are delivered again. Handling
// stops after batchBudget, and the messages not reached stay pending.
//
// A message whose handler fails is retried later with exponential backoff
// and does not hold up the messages behind it: a participant that is down
// must not block, say, the cancellation that compensates for it. Delivery
// order is therefore not guaranteed, and handlers are written for that
// (dedup by message id, reservation tombstones).
func (t Table) DeliverOnce(ctx context.Context, pool *pgxpool.Pool, shard string, limit int, h Handler) (delivered int, err error) {
	var herrs []error
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		hint := "/* shard: " + shard + " */ "
		rows, err := tx.Query(ctx, fmt.Sprintf(hint+`SELECT id, %s, message_id::text, type, payload, attempts FROM %s
			WHERE delivered_at IS NULL AND next_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, t.KeyCol, t.Name), limit)
		if err != nil {
			return err
		}
		type row struct {
			id       int64
			m        Message
			attempts int
		}
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.m.Key, &r.m.ID, &r.m.Type, &r.m.Payload, &r.attempts); err != nil {
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
		start := time.Now()
		for _, r := range batch {
			if time.Since(start) > batchBudget {
				break // the rest stays pending, unlocked at commit
			}
			herr := h(ctx, r.m)
			if herr == nil {
				done = append(done, r.id)
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			herrs = append(herrs, fmt.Errorf("%s %s: %w", r.m.Type, r.m.ID, herr))
			delay := min(maxRetryDelay, 10*time.Millisecond<<min(r.attempts, 12))
			if _, err := tx.Exec(ctx, fmt.Sprintf(hint+`UPDATE %s SET attempts = attempts + 1, last_error = $2,
				next_at = now() + $3::interval WHERE id = $1`, t.Name), r.id, herr.Error(),
				fmt.Sprintf("%d milliseconds", delay.Milliseconds())); err != nil {
				return err
			}
		}
		if len(done) > 0 {
			if _, err := tx.Exec(ctx, fmt.Sprintf(hint+`UPDATE %s SET delivered_at = now() WHERE id = ANY($1)`, t.Name), done); err != nil {
				return err
			}
		}
		delivered = len(done)
		return nil
	})
	if err != nil {
		return delivered, err
	}
	return delivered, errors.Join(herrs...)
}

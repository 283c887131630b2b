package proxy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// The console's resharding commands without a running watcher or hook:
// SHOW RESHARD reports epoch 0 and nothing held; RESHARD needs the hook
// the serve command installs.
func TestAdminReshard(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	c := connectAdmin(t, f)
	rows := adminRows(t, c, "SHOW RESHARD")
	if r := rowWhere(rows, "item", "epoch"); r == nil || r["value"] != "0" {
		t.Errorf("SHOW RESHARD: %v, want epoch 0", rows)
	}
	if r := rowWhere(rows, "item", "held shards"); r == nil || r["value"] != "" {
		t.Errorf("SHOW RESHARD: %v, want nothing held", rows)
	}
	_, err := c.PgConn().Exec(context.Background(), "RESHARD STATUS").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Errorf("RESHARD without a hook: %v, want 0A000", err)
	}
}

package strategies

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// One Postgres server serves every integration test of the package; each
// test works in a database of its own. It starts on first use, so unit
// tests alone never start it.
var shared struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := pgtest.StopAll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// testDatabase returns a DSN for a fresh database named name on the shared server.
func testDatabase(t *testing.T, name string) (*pgtest.Server, string) {
	t.Helper()
	shared.once.Do(func() {
		shared.srv, shared.err = pgtest.Start(context.Background(), pgtest.Options{Name: "strategies"})
	})
	if shared.err != nil {
		t.Fatalf("start postgres: %v", shared.err)
	}
	if err := shared.srv.CreateDatabase(t.Context(), name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return shared.srv, shared.srv.DSN(name)
}

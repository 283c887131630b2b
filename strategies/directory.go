package strategies

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// notifyChannel carries directory invalidations between proxies. A payload
// is "table:key" (that key changed) or "table" (forget the whole table:
// TRUNCATE, or a key too long for a notification payload).
const notifyChannel = "shardproxy_directory"

const (
	defaultCacheEntries = 100_000
	// Notification payloads are limited to 8000 bytes; longer keys
	// invalidate their whole table instead.
	maxNotifyKeyBytesText = "7000"
	listenMinBackoff      = 100 * time.Millisecond
	listenMaxBackoff      = 5 * time.Second
	// directoryDDLLock serializes DDL of concurrently starting proxies
	// (CREATE TABLE IF NOT EXISTS and CREATE OR REPLACE race otherwise).
	directoryDDLLock = 0x73686172 // "shar"
)

// Directory table names are plain, optionally schema-qualified identifiers;
// ':' in particular would break the notification payload.
var directoryTableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// notifyFunctionSQL creates the trigger function shared by all directory
// tables; each table's trigger passes its configured name as argument.
// Only UPDATE, DELETE and TRUNCATE notify: an INSERT creates a key that no
// proxy can have cached (absent keys are never cached), so placing new keys,
// the hot path, costs no notification. Manual edits are caught too.
const notifyFunctionSQL = `
CREATE OR REPLACE FUNCTION shardproxy_directory_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' OR octet_length(OLD.key) > ` + maxNotifyKeyBytesText + ` THEN
		PERFORM pg_notify('` + notifyChannel + `', TG_ARGV[0]);
	ELSE
		PERFORM pg_notify('` + notifyChannel + `', TG_ARGV[0] || ':' || OLD.key);
	END IF;
	RETURN NULL;
END
$$`

// DirectoryStore is one proxy's connection to the directory tables in the
// metadata database, with a cache of key -> shard kept coherent across
// proxies by LISTEN/NOTIFY.
//
// Cache coherence: the cache is trusted only while the LISTEN connection is
// up; when it drops, the cache is cleared and bypassed until the listener
// has reconnected (notifications sent meanwhile are lost). A lookup records
// the invalidation generation before it queries and stores its answer only
// if no invalidation arrived meanwhile, so a notification that overtakes a
// slow lookup cannot leave a stale entry behind.
type DirectoryStore struct {
	pool       *pgxpool.Pool
	dsn        string
	logger     *slog.Logger
	maxEntries int

	mu        sync.Mutex
	cache     map[dirKey]string
	gen       uint64          // bumped by every invalidation
	listening bool            // the LISTEN connection is up
	ensured   map[string]bool // tables whose DDL ran in this process

	cancel context.CancelFunc // stops the listener goroutine
	done   chan struct{}      // closed when it has exited
}

type dirKey struct{ table, key string }

// OpenDirectory connects to the metadata database and starts listening for
// directory changes. Close releases both.
func OpenDirectory(ctx context.Context, dsn string, logger *slog.Logger) (*DirectoryStore, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	d := &DirectoryStore{
		pool:       pool,
		dsn:        dsn,
		logger:     logger.With("component", "directory"),
		maxEntries: defaultCacheEntries,
		cache:      map[dirKey]string{},
		ensured:    map[string]bool{},
		done:       make(chan struct{}),
	}
	// Listen before the first lookup so that no change can slip between
	// a cache fill and the start of listening.
	conn, err := d.connectListener(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	d.listening = true
	lctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.listen(lctx, conn)
	return d, nil
}

// Close stops the listener and closes the connections.
func (d *DirectoryStore) Close() {
	d.cancel()
	<-d.done
	d.pool.Close()
}

func (d *DirectoryStore) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return nil, fmt.Errorf("directory: listen connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("directory: LISTEN: %w", err)
	}
	return conn, nil
}

// listen is the goroutine owned by the store: it applies notifications,
// and reconnects with backoff when the connection drops. It exits when ctx
// (cancelled by Close) ends.
func (d *DirectoryStore) listen(ctx context.Context, conn *pgx.Conn) {
	defer close(d.done)
	backoff := listenMinBackoff
	for {
		if conn != nil {
			n, err := conn.WaitForNotification(ctx)
			if err == nil {
				d.invalidate(n.Payload)
				continue
			}
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil {
				return
			}
			d.setListening(false)
			d.logger.Warn("directory listen connection lost; cache disabled until reconnected", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		c, err := d.connectListener(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(2*backoff, listenMaxBackoff)
			d.logger.Warn("directory listen reconnect failed", "err", err, "retry_in", backoff)
			continue
		}
		conn, backoff = c, listenMinBackoff
		d.setListening(true)
		d.logger.Info("directory listen connection restored")
	}
}

// setListening clears the cache in both directions: entries may be stale
// from the moment notifications can be missed.
func (d *DirectoryStore) setListening(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.listening = up
	d.gen++
	clear(d.cache)
}

func (d *DirectoryStore) invalidate(payload string) {
	table, key, one := strings.Cut(payload, ":")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if one {
		delete(d.cache, dirKey{table, key})
		return
	}
	for k := range d.cache {
		if k.table == table {
			delete(d.cache, k)
		}
	}
}

// Forget drops every cached entry. A resharding cutover changes entries
// and announces the new epoch on another connection than the directory's
// notifications; forgetting everything when the epoch is applied means no
// route of the new epoch uses an entry read before the switch (lookups in
// flight do not fill: the generation moves on).
func (d *DirectoryStore) Forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	clear(d.cache)
}

// cached returns the cached shard, or the generation to pass to fill.
func (d *DirectoryStore) cached(k dirKey) (shard string, gen uint64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.listening {
		return "", d.gen, false
	}
	shard, ok = d.cache[k]
	return shard, d.gen, ok
}

func (d *DirectoryStore) fill(k dirKey, shard string, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.listening || d.gen != gen {
		return
	}
	if len(d.cache) >= d.maxEntries {
		// Evict about 1/16 of the entries, arbitrary ones (map order):
		// cheap, and a miss costs only one indexed lookup.
		n := d.maxEntries/16 + 1
		for e := range d.cache {
			delete(d.cache, e)
			if n--; n == 0 {
				break
			}
		}
	}
	d.cache[k] = shard
}

// ensureTable creates the directory table and its notify trigger if absent.
func (d *DirectoryStore) ensureTable(ctx context.Context, table string) error {
	if !directoryTableName.MatchString(table) {
		return fmt.Errorf("directory table %q: want a plain, optionally schema-qualified identifier", table)
	}
	d.mu.Lock()
	done := d.ensured[table]
	d.mu.Unlock()
	if done {
		return nil
	}
	ident := quoteTable(table)
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		stmts := []string{
			fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", directoryDDLLock),
			"CREATE TABLE IF NOT EXISTS " + ident + " (key text PRIMARY KEY, shard text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
			notifyFunctionSQL,
			"CREATE OR REPLACE TRIGGER shardproxy_notify AFTER UPDATE OR DELETE ON " + ident +
				" FOR EACH ROW EXECUTE FUNCTION shardproxy_directory_notify('" + table + "')",
			"CREATE OR REPLACE TRIGGER shardproxy_notify_truncate AFTER TRUNCATE ON " + ident +
				" FOR EACH STATEMENT EXECUTE FUNCTION shardproxy_directory_notify('" + table + "')",
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory table %q: %w", table, err)
	}
	d.mu.Lock()
	d.ensured[table] = true
	d.mu.Unlock()
	return nil
}

func quoteTable(table string) string {
	return pgx.Identifier(strings.Split(table, ".")).Sanitize()
}

// lookup reads the owner of key from the table, bypassing the cache.
func (d *DirectoryStore) lookup(ctx context.Context, table, key string) (shard string, found bool, err error) {
	err = d.pool.QueryRow(ctx, "SELECT shard FROM "+quoteTable(table)+" WHERE key = $1", key).Scan(&shard)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("directory %q: lookup: %w", table, err)
	}
	return shard, true, nil
}

// locate implements directory placement; place is called for an unknown key
// written for the first time.
func (d *DirectoryStore) locate(ctx context.Context, table string, k Key, intent Intent, place func() (string, error)) (string, error) {
	ck := dirKey{table, k.String()}
	shard, gen, ok := d.cached(ck)
	if ok {
		return shard, nil
	}
	shard, found, err := d.lookup(ctx, table, ck.key)
	if err != nil {
		return "", err
	}
	if found {
		d.fill(ck, shard, gen)
		return shard, nil
	}
	if intent != Write {
		return "", ErrNoOwner
	}
	placed, err := place()
	if err != nil {
		return "", err
	}
	// Another proxy may place the same key at the same moment: the
	// primary key picks one winner, and the loser adopts its answer.
	// ON CONFLICT waits for the competing insert to commit, so the
	// re-read sees it unless the key was deleted in between; then retry.
	insert := "INSERT INTO " + quoteTable(table) + " (key, shard) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING shard"
	for range 3 {
		err := d.pool.QueryRow(ctx, insert, ck.key, placed).Scan(&shard)
		if err == nil {
			d.fill(ck, shard, gen)
			return shard, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return "", fmt.Errorf("directory %q: place: %w", table, err)
		}
		if shard, found, err = d.lookup(ctx, table, ck.key); err != nil {
			return "", err
		}
		if found {
			d.fill(ck, shard, gen)
			return shard, nil
		}
	}
	return "", fmt.Errorf("directory %q: key %s keeps being deleted while being placed", table, ck.key)
}

// Assign records that key lives on shard, moving it if it was elsewhere.
// Every proxy's cache forgets the old answer when the change's notification
// arrives; this store's own cache forgets it at once.
func (d *DirectoryStore) Assign(ctx context.Context, table string, key Key, shard string) error {
	if err := d.ensureTable(ctx, table); err != nil {
		return err
	}
	ks := key.String()
	_, err := d.pool.Exec(ctx, "INSERT INTO "+quoteTable(table)+" (key, shard) VALUES ($1, $2)"+
		" ON CONFLICT (key) DO UPDATE SET shard = EXCLUDED.shard, updated_at = now()", ks, shard)
	if err != nil {
		return fmt.Errorf("directory %q: assign: %w", table, err)
	}
	d.invalidate(table + ":" + ks)
	return nil
}

// directoryStrategy places keys through a DirectoryStore table; unknown
// keys are placed by the fallback strategy on first write.
type directoryStrategy struct {
	name     string
	keyType  KeyType
	table    string
	fallback Strategy
	shards   []string
	dir      *DirectoryStore
}

func (s *directoryStrategy) Name() string     { return s.name }
func (s *directoryStrategy) KeyType() KeyType { return s.keyType }
func (s *directoryStrategy) Shards() []string { return s.shards }

func (s *directoryStrategy) Locate(ctx context.Context, k Key, intent Intent) (string, error) {
	if err := checkKeyType(s.name, s.keyType, k); err != nil {
		return "", err
	}
	return s.dir.locate(ctx, s.table, k, intent, func() (string, error) {
		return s.fallback.Locate(ctx, k, Write)
	})
}

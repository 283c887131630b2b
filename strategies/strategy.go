package strategies

import (
	"context"
	"errors"
	"time"
)

// KeyType is the SQL type family of a shard key.
type KeyType int

const (
	KeyInt         KeyType = iota + 1 // int2, int4, int8: hash alike in Postgres
	KeyText                           // text, varchar
	KeyUUID                           // uuid
	KeyTimestamp                      // timestamp without time zone: a wall clock (range only)
	KeyTimestampTZ                    // timestamp with time zone: an instant (range only)
)

// Key is one typed shard-key value.
type Key struct {
	Type KeyType
	Int  int64
	Text string
	UUID [16]byte
	// Time is in UTC: the instant for KeyTimestampTZ, the wall clock read
	// as UTC for KeyTimestamp. Both compare by Time, so a strategy of one
	// timestamp type locates keys of the other (a timestamp column under a
	// timestamptz strategy) without depending on a session's TimeZone.
	// Postgres' infinity and -infinity are the Times its binary format
	// decodes to (MaxInt64 and MinInt64 microseconds past 2000-01-01).
	Time time.Time
}

// Intent tells Locate whether the statement may create the key.
type Intent int

const (
	Read  Intent = iota // SELECT, UPDATE, DELETE: an unknown directory key has no owner
	Write               // INSERT: a directory places an unknown key by its fallback
)

// ErrNoOwner is returned by Locate when no shard holds the key (a directory
// read of a key that was never inserted). Callers must read nothing rather
// than guess a shard.
var ErrNoOwner = errors.New("no shard owns this key")

// Strategy maps a shard key to the shard that owns it.
// Implementations are safe for concurrent use.
type Strategy interface {
	Name() string
	KeyType() KeyType
	// Shards lists every shard this strategy can place keys on, without duplicates.
	Shards() []string
	// Locate returns the owning shard of k. k.Type must equal KeyType().
	Locate(ctx context.Context, k Key, intent Intent) (string, error)
}

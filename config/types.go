package config

import "time"

// Config is one validated shard map. Treat it as read-only.
type Config struct {
	Path           string     // file it was loaded from ("" when parsed from bytes)
	Listen         string     // client listener, default 127.0.0.1:6432
	MetricsListen  string     // /metrics, /healthz, /readyz; "" disables
	AdminDatabase  string     // database name that opens the admin console, default "shardproxy"
	TLS            *TLS       // nil: SSLRequest is answered 'N'
	Users          []User     // who may connect to the proxy
	Metadata       Metadata   // shared metadata database (directory, epochs, 2PC log)
	Pool           Pool       // backend pool settings
	TwoPhaseCommit bool       // cross-shard transactions allowed
	Shards         []Shard    // in YAML order; shard index = position
	Strategies     []Strategy // in YAML order
	Tables         []Table    // in YAML order
	DefaultShard   string     // unsharded tables live here; defaults to the first shard
	PlanCacheSize  int        // key plan_cache_size, default 10000 entries
	// ShutdownTimeoutMillis bounds the drain on SIGTERM (key shutdown_timeout,
	// Go duration string); 0 means DefaultShutdownTimeout. See ShutdownTimeout.
	ShutdownTimeoutMillis int
	// HealthCheckIntervalMillis is how often every shard is checked with
	// SELECT 1 (key health_check_interval, Go duration string); 0 means
	// DefaultHealthCheckInterval. See HealthCheckInterval.
	HealthCheckIntervalMillis int
	// TwoPhaseGraceMillis is how old a prepared transaction of shardproxy must
	// be before recovery resolves it (key two_phase_commit_grace, Go duration);
	// 0 means DefaultTwoPhaseGrace. See TwoPhaseGrace.
	TwoPhaseGraceMillis int
	// MergeMemory bounds the bytes one multi-shard statement may hold in
	// the proxy while merging (sorts above aggregates, GROUP BY groups,
	// DISTINCT sets); beyond it the statement fails with 53200. Key
	// merge_memory: bytes as an integer or with a unit ("64MB", "512kB",
	// "1GB", as Postgres writes memory settings). Default 64MB.
	MergeMemory int64
}

type TLS struct {
	Cert string
	Key  string
	// ClientTLS (key tls.client_tls) says which clients must use TLS: one
	// of the ClientTLS* constants, default ClientTLSAllow.
	ClientTLS string
}

// Values of tls.client_tls.
const (
	ClientTLSAllow           = "allow"            // TLS offered, plain text accepted
	ClientTLSRequireNonlocal = "require_nonlocal" // plain text only over loopback or a Unix socket
	ClientTLSRequire         = "require"          // every client must use TLS
)

type User struct {
	Name     string
	Password string // plain text, or an "md5..."/"SCRAM-SHA-256$..." verifier
	Admin    bool
}

type Metadata struct {
	DSN string
}

type Pool struct {
	Size int // backend connections per shard, default 20
	// AcquireTimeout bounds how long a transaction waits for a backend
	// (key pool.acquire_timeout, Go duration string, default "5s").
	AcquireTimeoutMillis int
}

type Shard struct {
	Name string
	DSN  string
}

// Strategy types.
const (
	StrategyHash       = "hash"
	StrategyRange      = "range"
	StrategyConsistent = "consistent"
	StrategyDirectory  = "directory"
)

// Key types (key_type in YAML). Integers of every width hash alike in
// Postgres (int2/int4/int8 share the integer_ops hash opfamily), so one
// "int" family covers smallint, integer and bigint.
const (
	KeyInt  = "int"  // aliases accepted: bigint, integer, int2, int4, int8, smallint
	KeyText = "text" // aliases: varchar
	KeyUUID = "uuid"

	// Timestamps: range strategies only. timestamp (alias "timestamp
	// without time zone") is a wall clock: its range bounds carry no
	// offset. timestamptz (alias "timestamp with time zone") is an
	// instant: a bound without an offset is read as UTC.
	KeyTimestamp   = "timestamp"
	KeyTimestampTZ = "timestamptz"
)

type Strategy struct {
	Name       string
	Type       string   // one of the Strategy* constants
	KeyType    string   // one of the Key* constants (canonical, aliases resolved)
	Shards     []string // hash, consistent
	Ranges     []Range  // range, sorted by Upper, last may be unbounded
	Partitions int      // consistent: partition count, default 271
	Table      string   // directory: lookup table name in the metadata database
	Fallback   string   // directory: strategy that places unknown keys
	Line       int      // YAML line of the strategy, for messages
}

// Range is a half-open interval: keys below Upper (and at or above the
// previous range's Upper) belong to Shard. Upper == "" with Unbounded set
// means +infinity. Upper is the bound's text form, parsed per KeyType by
// the strategies package.
type Range struct {
	Upper     string
	Unbounded bool
	Shard     string
}

type Table struct {
	Name      string // as written, lower-cased unless quoted; may be schema-qualified "s.t"
	Key       string // shard key column (empty for reference tables)
	Strategy  string // strategy name (empty for reference tables)
	Reference bool   // full copy on every shard
	Line      int
}

// DefaultTwoPhaseGrace leaves a live proxy's in-flight commits alone.
const DefaultTwoPhaseGrace = 30 * time.Second

// TwoPhaseGrace is how old a prepared transaction must be before recovery
// resolves it from the decision log.
func (c *Config) TwoPhaseGrace() time.Duration {
	if c.TwoPhaseGraceMillis == 0 {
		return DefaultTwoPhaseGrace
	}
	return time.Duration(c.TwoPhaseGraceMillis) * time.Millisecond
}

// ShutdownTimeout is how long a drain waits for open transactions.
func (c *Config) ShutdownTimeout() time.Duration {
	if c.ShutdownTimeoutMillis == 0 {
		return DefaultShutdownTimeout
	}
	return time.Duration(c.ShutdownTimeoutMillis) * time.Millisecond
}

// HealthCheckInterval is how often the shards are checked.
func (c *Config) HealthCheckInterval() time.Duration {
	if c.HealthCheckIntervalMillis == 0 {
		return DefaultHealthCheckInterval
	}
	return time.Duration(c.HealthCheckIntervalMillis) * time.Millisecond
}

// ShardIndex returns the position of the named shard, or -1.
func (c *Config) ShardIndex(name string) int {
	for i, s := range c.Shards {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// ShardNames returns shard names in YAML order.
func (c *Config) ShardNames() []string {
	names := make([]string, len(c.Shards))
	for i, s := range c.Shards {
		names[i] = s.Name
	}
	return names
}

// StrategyByName returns the named strategy, or nil.
func (c *Config) StrategyByName(name string) *Strategy {
	for i := range c.Strategies {
		if c.Strategies[i].Name == name {
			return &c.Strategies[i]
		}
	}
	return nil
}

// TableByName returns the table entry for name, or nil.
func (c *Config) TableByName(name string) *Table {
	for i := range c.Tables {
		if c.Tables[i].Name == name {
			return &c.Tables[i]
		}
	}
	return nil
}

// UserByName returns the named user, or nil.
func (c *Config) UserByName(name string) *User {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	return nil
}

package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"
)

var topKeys = []string{
	"listen", "metrics_listen", "admin_database", "tls", "users", "metadata", "pool",
	"two_phase_commit", "two_phase_commit_grace", "shards", "strategies", "tables", "default_shard", "plan_cache_size",
	"shutdown_timeout", "health_check_interval", "merge_memory",
}

// present reports whether an optional section was given; "key:" with no
// value (null) counts as absent.
func present(n *yaml.Node) bool {
	n = deref(n)
	return n != nil && n.ShortTag() != "!!null"
}

func (d *decoder) config(root *yaml.Node, path string) *Config {
	c := &Config{
		Path:          path,
		Listen:        DefaultListen,
		AdminDatabase: DefaultAdminDatabase,
		Pool:          Pool{Size: DefaultPoolSize, AcquireTimeoutMillis: int(DefaultAcquireTimeout / time.Millisecond)},
		PlanCacheSize: DefaultPlanCacheSize,
		MergeMemory:   DefaultMergeMemory,
	}
	f := d.fields(root, "", topKeys...)
	if f == nil {
		return c
	}
	if s, ok := d.str(f["listen"], "listen"); ok {
		d.checkAddr(f["listen"], "listen", s)
		c.Listen = s
	}
	if s, ok := d.str(f["metrics_listen"], "metrics_listen"); ok {
		if s != "" {
			d.checkAddr(f["metrics_listen"], "metrics_listen", s)
		}
		c.MetricsListen = s
	}
	if s, ok := d.str(f["admin_database"], "admin_database"); ok {
		if s == "" {
			d.errorf(f["admin_database"], "admin_database", "must not be empty")
		}
		c.AdminDatabase = s
	}
	if present(f["tls"]) {
		c.TLS = d.tls(f["tls"], path)
	}
	c.Users = d.users(f["users"], root)
	if present(f["metadata"]) {
		if m := d.fields(f["metadata"], "metadata", "dsn"); m != nil {
			if s, ok := d.str(m["dsn"], "metadata.dsn"); ok {
				d.checkDSN(m["dsn"], "metadata.dsn", s)
				c.Metadata.DSN = s
			}
		}
	}
	if present(f["pool"]) {
		d.pool(f["pool"], &c.Pool)
	}
	if b, ok := d.boolean(f["two_phase_commit"], "two_phase_commit"); ok {
		c.TwoPhaseCommit = b
		if b && c.Metadata.DSN == "" {
			d.errorf(f["two_phase_commit"], "two_phase_commit", "needs metadata.dsn: the commit decisions are logged in the metadata database")
		}
	}
	if s, ok := d.str(f["two_phase_commit_grace"], "two_phase_commit_grace"); ok {
		dur, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorf(f["two_phase_commit_grace"], "two_phase_commit_grace", "invalid duration %q (want e.g. \"30s\")", s)
		case dur < time.Millisecond:
			d.errorf(f["two_phase_commit_grace"], "two_phase_commit_grace", "must be at least 1ms")
		default:
			c.TwoPhaseGraceMillis = int(dur / time.Millisecond)
		}
	}
	if n, ok := d.integer(f["plan_cache_size"], "plan_cache_size"); ok {
		if n < 0 {
			d.errorf(f["plan_cache_size"], "plan_cache_size", "must not be negative")
		}
		c.PlanCacheSize = n
	}
	if n := f["merge_memory"]; present(n) {
		if b, ok := d.memory(n, "merge_memory"); ok {
			c.MergeMemory = b
		}
	}
	if s, ok := d.str(f["shutdown_timeout"], "shutdown_timeout"); ok {
		dur, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorf(f["shutdown_timeout"], "shutdown_timeout", "invalid duration %q (want e.g. \"30s\")", s)
		case dur < time.Millisecond:
			d.errorf(f["shutdown_timeout"], "shutdown_timeout", "must be at least 1ms")
		default:
			c.ShutdownTimeoutMillis = int(dur / time.Millisecond)
		}
	}
	if s, ok := d.str(f["health_check_interval"], "health_check_interval"); ok {
		dur, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorf(f["health_check_interval"], "health_check_interval", "invalid duration %q (want e.g. \"5s\")", s)
		case dur < 10*time.Millisecond:
			d.errorf(f["health_check_interval"], "health_check_interval", "must be at least 10ms")
		default:
			c.HealthCheckIntervalMillis = int(dur / time.Millisecond)
		}
	}
	c.Shards = d.shards(f["shards"], root)
	shards := map[string]bool{}
	for _, s := range c.Shards {
		shards[s.Name] = true
	}
	c.Strategies = d.strategies(f["strategies"], shards, c.Metadata.DSN != "")
	c.Tables = d.tables(f["tables"], c.Strategies)
	if s, ok := d.str(f["default_shard"], "default_shard"); ok {
		if !shards[s] {
			d.errorf(f["default_shard"], "default_shard", "unknown shard %q", s)
		}
		c.DefaultShard = s
	} else if len(c.Shards) > 0 {
		c.DefaultShard = c.Shards[0].Name
	}
	return c
}

func (d *decoder) checkAddr(n *yaml.Node, path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if p, perr := strconv.Atoi(port); perr != nil || p < 0 || p > 65535 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		d.errorf(n, path, "%q is not host:port (e.g. 127.0.0.1:6432)", addr)
	}
}

func (d *decoder) tls(n *yaml.Node, cfgPath string) *TLS {
	f := d.fields(n, "tls", "cert", "key", "client_tls")
	if f == nil {
		return nil
	}
	cert, _ := d.str(f["cert"], "tls.cert")
	key, _ := d.str(f["key"], "tls.key")
	mode := ClientTLSAllow
	if s, ok := d.str(f["client_tls"], "tls.client_tls"); ok {
		switch s {
		case ClientTLSAllow, ClientTLSRequireNonlocal, ClientTLSRequire:
			mode = s
		default:
			d.errorf(f["client_tls"], "tls.client_tls", "%q is not one of %s, %s, %s",
				s, ClientTLSAllow, ClientTLSRequireNonlocal, ClientTLSRequire)
		}
	}
	if cert == "" && key == "" {
		if mode != ClientTLSAllow {
			d.errorf(n, "tls", "client_tls %s needs cert and key", mode)
		}
		return nil
	}
	if cert == "" || key == "" {
		d.errorf(n, "tls", "cert and key must be given together")
		return nil
	}
	t := &TLS{Cert: resolveFile(cfgPath, cert), Key: resolveFile(cfgPath, key), ClientTLS: mode}
	for _, x := range []struct{ path, file string }{{"tls.cert", t.Cert}, {"tls.key", t.Key}} {
		if _, err := os.Stat(x.file); err != nil {
			d.errorf(f[strings.TrimPrefix(x.path, "tls.")], x.path, "cannot read %s: %v", x.file, errors.Unwrap(err))
		}
	}
	return t
}

// resolveFile makes a relative file name relative to the config file, so
// that the proxy finds its certificates whatever its working directory.
func resolveFile(cfgPath, name string) string {
	if filepath.IsAbs(name) || cfgPath == "" {
		return name
	}
	return filepath.Join(filepath.Dir(cfgPath), name)
}

func (d *decoder) users(n *yaml.Node, root *yaml.Node) []User {
	items, ok := d.list(n, "users")
	if !ok && n == nil {
		d.errorf(root, "users", "at least one user is required")
		return nil
	}
	if ok && len(items) == 0 {
		d.errorf(n, "users", "at least one user is required")
	}
	var users []User
	seen := map[string]int{}
	for i, item := range items {
		path := index("users", i)
		f := d.fields(item, path, "name", "password", "admin")
		if f == nil {
			continue
		}
		var u User
		u.Name, _ = d.str(f["name"], path+".name")
		switch first, dup := seen[u.Name]; {
		case u.Name == "":
			d.errorf(item, path, "name is required")
		case dup:
			d.errorf(f["name"], path+".name", "duplicate user %q (first at line %d)", u.Name, first)
		default:
			seen[u.Name] = deref(f["name"]).Line
		}
		// Every user authenticates: there is no trust mode to fall into by
		// forgetting a line.
		if pw, ok := d.str(f["password"], path+".password"); ok && pw != "" {
			u.Password = pw
		} else if f["password"] == nil || ok {
			d.errorf(item, path, "password is required")
		}
		u.Admin, _ = d.boolean(f["admin"], path+".admin")
		users = append(users, u)
	}
	return users
}

func (d *decoder) pool(n *yaml.Node, p *Pool) {
	f := d.fields(n, "pool", "size", "acquire_timeout")
	if f == nil {
		return
	}
	if size, ok := d.integer(f["size"], "pool.size"); ok {
		if size < 1 {
			d.errorf(f["size"], "pool.size", "must be at least 1")
		}
		p.Size = size
	}
	if s, ok := d.str(f["acquire_timeout"], "pool.acquire_timeout"); ok {
		dur, err := time.ParseDuration(s)
		switch {
		case err != nil:
			d.errorf(f["acquire_timeout"], "pool.acquire_timeout", "invalid duration %q (want e.g. \"5s\" or \"500ms\")", s)
		case dur < time.Millisecond:
			d.errorf(f["acquire_timeout"], "pool.acquire_timeout", "must be at least 1ms")
		default:
			p.AcquireTimeoutMillis = int(dur / time.Millisecond)
		}
	}
}

func (d *decoder) shards(n *yaml.Node, root *yaml.Node) []Shard {
	items, ok := d.list(n, "shards")
	if !ok && n == nil {
		d.errorf(root, "shards", "at least one shard is required")
		return nil
	}
	if ok && len(items) == 0 {
		d.errorf(n, "shards", "at least one shard is required")
	}
	var shards []Shard
	seenName := map[string]int{}
	seenDB := map[string]string{}
	for i, item := range items {
		path := index("shards", i)
		f := d.fields(item, path, "name", "dsn")
		if f == nil {
			continue
		}
		var s Shard
		s.Name, _ = d.str(f["name"], path+".name")
		switch first, dup := seenName[s.Name]; {
		case s.Name == "":
			d.errorf(item, path, "name is required")
		case dup:
			d.errorf(f["name"], path+".name", "duplicate shard %q (first at line %d)", s.Name, first)
		default:
			seenName[s.Name] = deref(f["name"]).Line
		}
		s.DSN, _ = d.str(f["dsn"], path+".dsn")
		if s.DSN == "" {
			d.errorf(item, path, "dsn is required")
		} else if pc := d.checkDSN(f["dsn"], path+".dsn", s.DSN); pc != nil {
			// Two shards on one database would make every scatter read
			// return each row twice: never silently wrong.
			db := fmt.Sprintf("%s:%d/%s", pc.Host, pc.Port, pc.Database)
			if other, dup := seenDB[db]; dup {
				d.errorf(f["dsn"], path+".dsn", "same database as shard %q", other)
			} else {
				seenDB[db] = s.Name
			}
		}
		shards = append(shards, s)
	}
	return shards
}

// checkDSN parses a connection string as pgx will, returning nil after
// reporting a problem. The message never contains the password.
func (d *decoder) checkDSN(n *yaml.Node, path, dsn string) *pgconn.Config {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		d.errorf(n, path, "invalid dsn: %s", dsnError(dsn, err))
		return nil
	}
	return pc
}

// dsnError renders a pgconn parse error without the connection string:
// pgx redacts passwords only on a best-effort basis for malformed input.
func dsnError(dsn string, err error) string {
	msg := err.Error()
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		if i := strings.Index(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = strings.ReplaceAll(msg, ue.Error(), ue.Err.Error())
	}
	for _, secret := range dsnSecrets(dsn) {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
	}
	return msg
}

var (
	// Greedy up to the last '@': over-masking is the safe side.
	urlPasswordRE = regexp.MustCompile(`^([a-z]+://[^:/@]*:)(.*)@`)
	kvPasswordRE  = regexp.MustCompile(`((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)`)
)

// dsnSecrets finds password-looking substrings even in a malformed DSN.
func dsnSecrets(dsn string) []string {
	var out []string
	if m := urlPasswordRE.FindStringSubmatch(dsn); m != nil && m[2] != "" {
		out = append(out, m[2])
		if u, err := url.PathUnescape(m[2]); err == nil && u != m[2] {
			out = append(out, u)
		}
	}
	for _, m := range kvPasswordRE.FindAllStringSubmatch(dsn, -1) {
		if v := strings.Trim(m[2], "'"); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// MaskDSN returns dsn with every password replaced by "xxxxx", for logs
// and for Describe.
func MaskDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	dsn = urlPasswordRE.ReplaceAllString(dsn, "${1}xxxxx@")
	return kvPasswordRE.ReplaceAllString(dsn, "${1}=xxxxx")
}

// memory reads a byte count: an integer, or a number with a Postgres
// memory unit (B, kB, MB, GB, TB; multiples of 1024). At least 64kB.
func (d *decoder) memory(n *yaml.Node, name string) (int64, bool) {
	n = deref(n)
	text := strings.TrimSpace(n.Value)
	if n.Kind != yaml.ScalarNode || text == "" {
		d.errorf(n, name, "must be a byte count such as 67108864 or \"64MB\"")
		return 0, false
	}
	num := strings.TrimRightFunc(text, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(text[len(num):])
	mult := map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[unit]
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || v > (1<<62)/mult {
		d.errorf(n, name, "invalid byte count %q (want e.g. 67108864 or \"64MB\"; units B, kB, MB, GB, TB)", text)
		return 0, false
	}
	if v*mult < 64<<10 {
		d.errorf(n, name, "must be at least 64kB")
		return 0, false
	}
	return v * mult, true
}

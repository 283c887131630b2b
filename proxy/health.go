package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// ShardHealth is the outcome of the last health check of one shard.
type ShardHealth struct {
	Name      string
	Addr      string        // host:port (or socket directory) from the shard's DSN
	Up        bool          // the last check ran its query successfully
	LastCheck time.Time     // zero: not checked yet
	Latency   time.Duration // of the last check, acquiring the connection included
	Err       string        // why the last check failed; "" when up
}

// maxCheckTimeout bounds one shard's check (acquire and query). A
// stopped or unreachable shard is marked down after this long; the checks
// of other shards run concurrently and are not held up by it.
const maxCheckTimeout = 2 * time.Second

// healthState holds the latest check of every shard by name. Shards that a
// reload removed stay in the map but are not reported (ShardHealth lists the
// shards of the current configuration).
type healthState struct {
	mu     sync.Mutex
	shards map[string]ShardHealth
}

// firstHealthCheck runs before Serve accepts the first client (at most
// maxCheckTimeout when a shard does not answer): /readyz is right from the
// start, and the first clients reuse the check's connections instead of
// opening a second one per shard at the same moment. A pool of two
// just-released connections would hand a client two dead backends in a
// row after a shard restart (see pool.Options.ProbeAfter).
func (s *Server) firstHealthCheck(ctx context.Context) {
	rt := s.Runtime()
	s.checkShards(ctx, rt, min(rt.Config.HealthCheckInterval(), maxCheckTimeout))
}

// checkHealth is the goroutine, one per Server, that checks every shard of
// the current configuration every HealthCheckInterval (the first check is
// firstHealthCheck's). It is started by Serve and exits when stop (closed
// by Shutdown) is closed, abandoning a check in progress.
func (s *Server) checkHealth(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		t := time.NewTimer(s.Runtime().Config.HealthCheckInterval())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rt := s.Runtime()
		s.checkShards(ctx, rt, min(rt.Config.HealthCheckInterval(), maxCheckTimeout))
	}
}

// checkShards checks every shard of rt concurrently and records the results.
func (s *Server) checkShards(ctx context.Context, rt *Runtime, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, sh := range rt.Config.Shards {
		p := rt.Pools.Get(sh.Name)
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := ShardHealth{Name: sh.Name, Addr: shardAddr(sh.DSN), LastCheck: time.Now()}
			cat, err := checkShard(ctx, p, timeout)
			h.Latency = time.Since(h.LastCheck)
			if ctx.Err() != nil {
				return // shutting down: the result means nothing
			}
			if cat != nil {
				s.learnCatalog(rt, sh.Name, h.LastCheck, cat)
			}
			s.health.mu.Lock()
			defer s.health.mu.Unlock()
			prev, seen := s.health.shards[sh.Name]
			switch {
			case err == nil:
				h.Up = true
			case errors.Is(err, errPoolBusy):
				// Every connection is serving clients, which is not a sign
				// of a dead shard: keep the previous verdict.
				h.Up = seen && prev.Up
				h.Err = err.Error()
			default:
				h.Err = err.Error()
			}
			if s.health.shards == nil {
				s.health.shards = make(map[string]ShardHealth)
			}
			if h.Up != prev.Up || !seen {
				if h.Up {
					s.log.Info("shard is up", "shard", h.Name)
				} else {
					s.log.Warn("shard is down", "shard", h.Name, "err", h.Err)
				}
			}
			s.health.shards[sh.Name] = h
		}()
	}
	wg.Wait()
	// DDL through the proxy forgets what it caches of tables' columns
	// (schemaChanged); DDL made on the shards directly is caught here, as
	// views and functions made there are: a key's position cached before
	// a column in front of it was dropped would place the next INSERT
	// without a column list, or COPY, by another column's value.
	// Pooled connections read their collation facts again before their
	// next merge (pool.Conn.CollatedColumns).
	s.forgetColumns(rt)
	rt.Pools.SchemaChanged()
	if cur := s.Runtime(); cur != nil && cur != rt {
		cur.Pools.SchemaChanged()
	}
}

var errPoolBusy = errors.New("every pooled connection is in use; check skipped")

// catalogQuery is the health check's query. It reads what the router
// must know of the shard's catalog (router.catalog), among objects made
// after initdb (OIDs from 16384): the names of aggregates, so that a call
// like mysum(x) across shards is merged; each view's (and materialized
// view's) dependencies on relations, so that a view over a sharded table
// is not read on the default shard alone; and the definitions of the
// plain views the proxy's login user owns, which a SELECT reads in the
// view's place (a view reads its tables with its owner's rights and row
// security; inlined, the query runs with the login user's, the same only
// for its own views); and the bodies of functions and procedures not
// written in C, whose words tell whether one touches sharded data
// (router/functions.go; a SQL-standard body has an empty prosrc and is
// read from its definition, without naming prosqlbody, which Postgres
// before 14 lacks); the partitions and inheritance children of
// tables, routed as the mapped table they descend from; the user
// triggers and rules (enabled ones), whose writes may not follow their
// rows (router/triggers.go); and the columns whose defaults call a
// function or read the time (or are identities), and whether a C
// function is volatile, which a write to a reference table must not
// leave each copy to compute (router/replicas.go; partitions are left
// out, as reference tables are not partitioned).
// What is created on the shards directly is known within one check
// interval; what is created through the proxy at once (router.analyze).
const catalogQuery = `SELECT
	(SELECT coalesce(json_agg(DISTINCT proname), '[]') FROM pg_proc WHERE prokind = 'a' AND oid >= 16384),
	(SELECT coalesce(json_agg(DISTINCT jsonb_build_array(vn.nspname, v.relname, tn.nspname, t.relname)), '[]')
		FROM pg_class v
		JOIN pg_namespace vn ON vn.oid = v.relnamespace
		JOIN pg_rewrite r ON r.ev_class = v.oid
		JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
			AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
		JOIN pg_class t ON t.oid = d.refobjid
		JOIN pg_namespace tn ON tn.oid = t.relnamespace
		WHERE v.relkind IN ('v', 'm') AND v.oid >= 16384),
	(SELECT coalesce(json_agg(json_build_array(n.nspname, v.relname, pg_get_viewdef(v.oid))), '[]')
		FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
		WHERE v.relkind = 'v' AND v.oid >= 16384 AND v.relowner = current_user::regrole),
	(SELECT coalesce(json_agg(json_build_array(p.proname,
			CASE WHEN l.lanname IN ('c', 'internal') THEN '' WHEN p.prosrc <> '' THEN p.prosrc ELSE pg_get_functiondef(p.oid) END,
			CASE WHEN l.lanname IN ('c', 'internal') AND p.provolatile = 'v' THEN 'v' ELSE '' END)), '[]')
		FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		WHERE p.prokind IN ('f', 'p') AND p.oid >= 16384),
	(SELECT coalesce(json_agg(json_build_array(cn.nspname, c.relname, pn.nspname, p.relname)), '[]')
		FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
		JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
		WHERE c.relkind IN ('r', 'p', 'f')),
	(SELECT coalesce(json_agg(json_build_array(nspname, relname, name, func, events::text, rule)), '[]') FROM (
		SELECT n.nspname, c.relname, t.tgname AS name, p.proname AS func, t.tgtype::int AS events, '' AS rule
		FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
		UNION ALL
		SELECT n.nspname, c.relname, r.rulename, '', CASE r.ev_type WHEN '2' THEN 16 WHEN '3' THEN 4 WHEN '4' THEN 8 END, pg_get_ruledef(r.oid)
		FROM pg_rewrite r
		JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE r.rulename <> '_RETURN' AND r.ev_type IN ('2', '3', '4') AND r.ev_enabled <> 'D' AND c.relkind IN ('r', 'p')) tr),
	(SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, a.attname,
			(SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid AND b.attnum > 0 AND b.attnum <= a.attnum AND NOT b.attisdropped)::text,
			coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text)), '[]')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid
		LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.oid >= 16384
			AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			AND (a.attidentity <> '' OR d.adbin::text ~ '\{(FUNCEXPR|SQLVALUEFUNCTION)')),
	(SELECT coalesce(json_agg(json_build_array(xn.nspname, x.relname, tn.nspname, t.relname)), '[]')
		FROM pg_index i
		JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace xn ON xn.oid = x.relnamespace
		JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
		WHERE t.oid >= 16384 AND t.relkind IN ('r', 'p')),
	(SELECT coalesce(json_agg(json_build_array(sn.nspname, q.relname, tn.nspname, t.relname)), '[]')
		FROM pg_depend d
		JOIN pg_class q ON q.oid = d.objid AND q.relkind = 'S' JOIN pg_namespace sn ON sn.oid = q.relnamespace
		JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
			AND d.deptype IN ('a', 'i') AND t.relkind IN ('r', 'p') AND t.oid >= 16384)`

// parseShardCatalog reads catalogQuery's row: one JSON array per column.
func parseShardCatalog(row [][]byte) (router.ShardCatalog, error) {
	var out router.ShardCatalog
	if len(row) != 9 {
		return out, fmt.Errorf("reading the shard's catalog: %d columns", len(row))
	}
	same := func(s string) (string, error) { return s, nil }
	return out, errors.Join(
		jsonColumn(row[0], "aggregates", &out.Aggregates, same),
		jsonColumn(row[1], "views", &out.Views, func(d [4]string) (router.ViewDep, error) {
			return router.ViewDep{ViewSchema: d[0], View: d[1], RefSchema: d[2], Ref: d[3]}, nil
		}),
		jsonColumn(row[2], "view definitions", &out.ViewDefs, func(d [3]string) (router.ViewDef, error) {
			return router.ViewDef{Schema: d[0], View: d[1], SQL: d[2]}, nil
		}),
		jsonColumn(row[3], "functions", &out.Functions, func(f [3]string) (router.FunctionDef, error) {
			return router.FunctionDef{Name: f[0], Body: f[1], Volatile: f[2] == "v"}, nil
		}),
		jsonColumn(row[4], "table inheritance", &out.Inherits, func(i [4]string) (router.Inherit, error) {
			return router.Inherit{ChildSchema: i[0], Child: i[1], ParentSchema: i[2], Parent: i[3]}, nil
		}),
		jsonColumn(row[5], "triggers", &out.Triggers, func(t [6]string) (router.Trigger, error) {
			events, err := strconv.Atoi(t[4])
			return router.Trigger{Schema: t[0], Table: t[1], Name: t[2], Function: t[3], Events: events, Rule: t[5]}, err
		}),
		jsonColumn(row[6], "column defaults", &out.Defaults, func(d [6]string) (router.ColumnDefault, error) {
			pos, err := strconv.Atoi(d[3])
			return router.ColumnDefault{Schema: d[0], Table: d[1], Column: d[2], Position: pos, Expr: d[4], Identity: d[5] != ""}, err
		}),
		jsonColumn(row[7], "indexes", &out.Indexes, owned),
		jsonColumn(row[8], "owned sequences", &out.Sequences, owned))
}

// owned reads [schema, name, table schema, table].
func owned(o [4]string) (router.Owned, error) {
	return router.Owned{Schema: o[0], Name: o[1], TableSchema: o[2], Table: o[3]}, nil
}

// jsonColumn decodes a JSON array of R into out, each element through conv.
func jsonColumn[R, T any](raw []byte, what string, out *[]T, conv func(R) (T, error)) error {
	var items []R
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("reading the shard's %s: %w", what, err)
	}
	for _, it := range items {
		v, err := conv(it)
		if err != nil {
			return fmt.Errorf("reading the shard's %s: %w", what, err)
		}
		*out = append(*out, v)
	}
	return nil
}

// checkShard runs catalogQuery on a connection borrowed from p for at
// most timeout. The connection goes back to the pool when the backend
// answered and is idle, and is discarded otherwise, so a check never
// holds one.
func checkShard(ctx context.Context, p *pool.Pool, timeout time.Duration) (*router.ShardCatalog, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.Acquire(ctx)
	if err != nil {
		st := p.Stats()
		if errors.Is(err, context.DeadlineExceeded) && st.Total > 0 && st.InUse == st.Total {
			return nil, errPoolBusy
		}
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		p.Discard(c)
		return nil, err
	}
	c.Send(&pgproto3.Query{String: catalogQuery})
	if err := c.Flush(); err != nil {
		p.Discard(c)
		return nil, err
	}
	var shardErr error
	var cat router.ShardCatalog
	for {
		msg, err := c.Receive()
		if err != nil {
			p.Discard(c)
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			var err error
			if cat, err = parseShardCatalog(m.Values); err != nil {
				shardErr = err
			}
		case *pgproto3.ErrorResponse:
			shardErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			if m.TxStatus == 'I' {
				p.Release(c) // clears the deadline
			} else {
				p.Discard(c)
			}
			if shardErr != nil {
				return nil, shardErr
			}
			return &cat, nil
		}
	}
}

// learnCatalog tells the router of rt, and of the current runtime if a
// reload replaced rt meanwhile, what a check begun at checked read of
// shard's catalog.
func (s *Server) learnCatalog(rt *Runtime, shard string, checked time.Time, cat *router.ShardCatalog) {
	rt.Router.CatalogChecked(shard, checked, *cat)
	if cur := s.Runtime(); cur != rt {
		cur.Router.CatalogChecked(shard, checked, *cat)
	}
}

// shardAddr is the host:port a DSN points at, for display; "" if it does
// not parse (it did when the pool was built, so never in practice).
func shardAddr(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// ShardHealth returns the last check of every shard of the current
// configuration, in configuration order. A shard not checked yet is down
// with a zero LastCheck.
func (s *Server) ShardHealth() []ShardHealth {
	rt := s.Runtime()
	if rt == nil || rt.Config == nil {
		return nil
	}
	out := make([]ShardHealth, 0, len(rt.Config.Shards))
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	for _, sh := range rt.Config.Shards {
		h, ok := s.health.shards[sh.Name]
		if !ok {
			h = ShardHealth{Name: sh.Name, Addr: shardAddr(sh.DSN), Err: "not checked yet"}
		}
		out = append(out, h)
	}
	return out
}

// Ready reports whether the proxy can serve every key: a configuration is
// loaded and the last health check of every shard succeeded. reason says
// why not.
func (s *Server) Ready() (ok bool, reason string) {
	if rt := s.Runtime(); rt == nil || rt.Config == nil {
		return false, "no configuration loaded"
	}
	for _, h := range s.ShardHealth() {
		if !h.Up {
			return false, "shard " + h.Name + " is down: " + h.Err
		}
	}
	return true, ""
}

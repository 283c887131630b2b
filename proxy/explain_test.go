package proxy_test

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestExplainAcrossShards: EXPLAIN of a SELECT across shards answers one
// EXPLAIN result, the proxy's steps over each shard's plan under the
// shard's name (router/explain.go), in every protocol. Each shard's part
// is exactly what that shard says when asked directly for the statement
// it runs; FORMAT JSON is one document whose Plans are the shards' plans;
// what the proxy refuses to run it refuses to explain.
func TestExplainAcrossShards(t *testing.T) {
	f, _, _ := scatterFixture(t, "")
	ctx := context.Background()
	c := f.Connect(t)
	shards := []string{"s0", "s1", "s2"}
	direct := map[string]*pgx.Conn{}
	for _, sh := range shards {
		direct[sh] = f.Direct(t, sh)
	}
	lines := func(t *testing.T, conn *pgx.Conn, mode pgx.QueryExecMode, sql string, args ...any) []string {
		t.Helper()
		rows, err := conn.Query(ctx, sql, append([]any{mode}, args...)...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return out
	}
	// sections splits the proxy's TEXT answer into its header and each
	// shard's lines, unindented, checking the labels' order.
	sections := func(t *testing.T, out []string) ([]string, map[string][]string) {
		t.Helper()
		if len(out) == 0 || out[0] != "Custom Scan (shardproxy)" || out[1] != "  Shards: s0, s1, s2" {
			t.Fatalf("header: %q", out)
		}
		var header []string
		parts := map[string][]string{}
		var order []string
		cur := ""
		for _, l := range out {
			if name, ok := strings.CutPrefix(l, "  ->  Shard "); ok {
				cur = name
				order = append(order, name)
				continue
			}
			if cur == "" {
				header = append(header, l)
				continue
			}
			body, ok := strings.CutPrefix(l, "        ")
			if !ok {
				t.Fatalf("shard %s line not indented: %q", cur, l)
			}
			parts[cur] = append(parts[cur], body)
		}
		if !reflect.DeepEqual(order, shards) {
			t.Fatalf("shard labels %v, want %v", order, shards)
		}
		return header, parts
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			// Rows only concatenated: every shard explains the client's query.
			q := "SELECT name FROM customers WHERE visits > $1"
			header, parts := sections(t, lines(t, c, mode, "EXPLAIN (COSTS OFF) "+q, 5))
			if !slices.Contains(header, "  Merge: Concatenate") {
				t.Errorf("header %q lacks the merge", header)
			}
			for _, sh := range shards {
				if want := lines(t, direct[sh], mode, "EXPLAIN (COSTS OFF) "+q, 5); !reflect.DeepEqual(parts[sh], want) {
					t.Errorf("shard %s: proxy shows %q, the shard says %q", sh, parts[sh], want)
				}
			}

			// Merged: the shards explain the partial query the merge reads,
			// which VERBOSE shows.
			out := lines(t, c, mode, "EXPLAIN (VERBOSE, COSTS OFF) SELECT region, avg(score) FROM customers WHERE visits > $1 GROUP BY region ORDER BY 2 DESC", 2)
			header, parts = sections(t, out)
			var shardQuery string
			for _, h := range header {
				if q, ok := strings.CutPrefix(h, "  Shard Query: "); ok {
					shardQuery = q
				}
			}
			if !strings.Contains(shardQuery, "sum(score)") || !strings.Contains(strings.Join(header, "\n"), "Aggregate group by") {
				t.Fatalf("header %q: want the merge's Aggregate and a shard query summing score", header)
			}
			for _, sh := range shards {
				want := lines(t, direct[sh], pgx.QueryExecModeSimpleProtocol, "EXPLAIN (VERBOSE, COSTS OFF) "+shardQuery)
				if !reflect.DeepEqual(parts[sh], want) {
					t.Errorf("shard %s: proxy shows %q, the shard says %q for %s", sh, parts[sh], want, shardQuery)
				}
			}

			// EXPLAIN ANALYZE runs every shard's part: their scans together
			// read every row once.
			out = lines(t, c, mode, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM customers")
			_, parts = sections(t, out)
			scanned := 0
			re := regexp.MustCompile(`Seq Scan on customers \(actual rows=(\d+) loops=1\)`)
			for _, sh := range shards {
				m := re.FindStringSubmatch(strings.Join(parts[sh], "\n"))
				if m == nil {
					t.Fatalf("shard %s: no scan in %q", sh, parts[sh])
				}
				n, _ := strconv.Atoi(m[1])
				scanned += n
			}
			if scanned != 300 {
				t.Errorf("the shards' scans read %d rows, want the 300 customers", scanned)
			}

			// FORMAT JSON: one document, a custom scan over the shards' plans.
			docs := lines(t, c, mode, "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT region, count(*) FROM customers GROUP BY region")
			if len(docs) != 1 {
				t.Fatalf("FORMAT JSON: %d rows, want 1", len(docs))
			}
			var doc []struct {
				Plan struct {
					NodeType string           `json:"Node Type"`
					Provider string           `json:"Custom Plan Provider"`
					Shards   []string         `json:"Shards"`
					Merge    []string         `json:"Merge"`
					Plans    []map[string]any `json:"Plans"`
				}
			}
			if err := json.Unmarshal([]byte(docs[0]), &doc); err != nil || len(doc) != 1 {
				t.Fatalf("FORMAT JSON: %v\n%s", err, docs[0])
			}
			p := doc[0].Plan
			if p.NodeType != "Custom Scan" || p.Provider != "shardproxy" || !reflect.DeepEqual(p.Shards, shards) || len(p.Merge) == 0 || len(p.Plans) != 3 {
				t.Fatalf("FORMAT JSON plan: %+v", p)
			}
			for i, sh := range shards {
				child := p.Plans[i]
				if child["Shard"] != sh {
					t.Errorf("plan %d is shard %v, want %s", i, child["Shard"], sh)
				}
				delete(child, "Shard")
				var own []map[string]any
				raw := lines(t, direct[sh], pgx.QueryExecModeSimpleProtocol, "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT region, count(*) FROM customers GROUP BY region")
				if err := json.Unmarshal([]byte(raw[0]), &own); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(child, own[0]["Plan"]) {
					t.Errorf("shard %s: proxy shows %v, the shard says %v", sh, child, own[0]["Plan"])
				}
			}
		})
	}

	// A write's EXPLAIN changes nothing, and shows each shard's plan;
	// EXPLAIN ANALYZE of a write runs it (here undone after), and is
	// refused in the formats the proxy does not join.
	var visits int
	if err := c.QueryRow(ctx, "SELECT sum(visits) FROM customers").Scan(&visits); err != nil {
		t.Fatal(err)
	}
	write := "UPDATE customers SET visits = visits + 1 WHERE region = 'north'"
	header, parts := sections(t, lines(t, c, pgx.QueryExecModeSimpleProtocol, "EXPLAIN (COSTS OFF) "+write))
	if !slices.Contains(header, "  Merge: Sum of the shards' row counts") {
		t.Errorf("write's header %q", header)
	}
	for _, sh := range shards {
		if want := lines(t, direct[sh], pgx.QueryExecModeSimpleProtocol, "EXPLAIN (COSTS OFF) "+write); !reflect.DeepEqual(parts[sh], want) {
			t.Errorf("write, shard %s: proxy shows %q, the shard says %q", sh, parts[sh], want)
		}
	}
	if _, err := c.Exec(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+write); sqlState(err) != "0A000" {
		t.Errorf("EXPLAIN ANALYZE (FORMAT JSON) of a write: %v, want 0A000", err)
	}
	header, parts = sections(t, lines(t, c, pgx.QueryExecModeSimpleProtocol, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+write))
	updated := 0
	for _, sh := range shards {
		m := regexp.MustCompile(`Seq Scan on customers \(actual rows=(\d+) loops=1\)`).FindStringSubmatch(strings.Join(parts[sh], "\n"))
		if len(parts[sh]) == 0 || !strings.HasPrefix(parts[sh][0], "Update on customers") || m == nil {
			t.Fatalf("EXPLAIN ANALYZE of a write, shard %s: %q", sh, parts[sh])
		}
		n, _ := strconv.Atoi(m[1])
		updated += n
	}
	if updated != 75 || !slices.Contains(header, "  Merge: Sum of the shards' row counts") {
		t.Errorf("EXPLAIN ANALYZE of a write: the shards updated %d rows, want 75; header %q", updated, header)
	}
	var ran int
	if err := c.QueryRow(ctx, "SELECT sum(visits) FROM customers").Scan(&ran); err != nil || ran != visits+75 {
		t.Errorf("after EXPLAIN ANALYZE of the write: sum %d (%v), want %d", ran, err, visits+75)
	}
	if _, err := c.Exec(ctx, "UPDATE customers SET visits = visits - 1 WHERE region = 'north'"); err != nil {
		t.Fatal(err)
	}
	var after int
	if err := c.QueryRow(ctx, "SELECT sum(visits) FROM customers").Scan(&after); err != nil || after != visits {
		t.Errorf("after the EXPLAINs: sum %d (%v), want %d", after, err, visits)
	}

	// One shard: that shard's own answer, untouched.
	one := lines(t, c, pgx.QueryExecModeSimpleProtocol, "EXPLAIN (COSTS OFF) SELECT * FROM customers WHERE customer_id = 7")
	if len(one) == 0 || strings.Contains(one[0], "shardproxy") {
		t.Errorf("single-shard EXPLAIN: %q", one)
	}
	// Gathered statements are explained as gathered; with gathering off,
	// EXPLAIN is refused as the statement is.
	gathered := "SELECT count(*) FROM customers WHERE visits > (SELECT avg(visits) FROM customers)"
	if out := lines(t, c, pgx.QueryExecModeSimpleProtocol, "EXPLAIN "+gathered); !strings.Contains(strings.Join(out, "\n"), "Evaluate the statement over gathered rows") {
		t.Errorf("EXPLAIN of a gathered statement: %q", out)
	}
	if _, err := c.Exec(ctx, "SET shardproxy.gather = off"); err != nil {
		t.Fatal(err)
	}
	_, stmtErr := c.Exec(ctx, gathered)
	_, explainErr := c.Exec(ctx, "EXPLAIN "+gathered)
	if sqlState(stmtErr) != "0A000" || sqlState(explainErr) != "0A000" {
		t.Errorf("gathering off: statement %v, EXPLAIN %v; want both 0A000", stmtErr, explainErr)
	}
	if _, err := c.Exec(ctx, "RESET shardproxy.gather"); err != nil {
		t.Fatal(err)
	}
	// Formats whose documents the proxy does not combine are refused.
	for _, format := range []string{"YAML", "XML"} {
		if _, err := c.Exec(ctx, "EXPLAIN (FORMAT "+format+") SELECT count(*) FROM customers"); sqlState(err) != "0A000" {
			t.Errorf("FORMAT %s: %v, want 0A000", format, err)
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 300 {
		t.Errorf("after the refusals: %d, %v", n, err)
	}
}

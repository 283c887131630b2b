package router

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCatalogChecked: one health check's report of a shard with
// many partitions (daily, a few years), functions, and tables whose
// columns default to now() or a sequence, as the router
// digests it every health_check_interval.
func BenchmarkCatalogChecked(b *testing.B) {
	r, _ := newTestRouter(b)
	var cat ShardCatalog
	for i := 0; i < 2000; i++ {
		cat.Inherits = append(cat.Inherits, Inherit{"public", fmt.Sprintf("orders_d%04d", i), "public", "orders"})
	}
	for i := 0; i < 300; i++ {
		cat.Functions = append(cat.Functions, FunctionDef{Name: fmt.Sprintf("f%d", i),
			Body: fmt.Sprintf("BEGIN UPDATE audit_log SET n = n + 1 WHERE id = %d; RETURN (SELECT count(*) FROM customers_view_%d); END", i, i)})
	}
	for i := 0; i < 500; i++ { // unmapped tables: not parsed
		cat.Defaults = append(cat.Defaults, ColumnDefault{Schema: "public", Table: fmt.Sprintf("t%d", i), Column: "id", Position: 1,
			Expr: fmt.Sprintf("nextval('t%d_id_seq'::regclass)", i)}, ColumnDefault{Schema: "public", Table: fmt.Sprintf("t%d", i), Column: "at", Position: 2, Expr: "now()"})
	}
	cat.Defaults = append(cat.Defaults, ColumnDefault{Schema: "public", Table: "products", Column: "at", Position: 2, Expr: "now()"},
		ColumnDefault{Schema: "public", Table: "products", Column: "code", Position: 3, Expr: "(gen_random_uuid())::text"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.CatalogChecked("s0", time.Now(), cat)
	}
}

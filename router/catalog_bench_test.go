package router

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCatalogChecked: one health check's report of a shard with
// many partitions (daily, a few years) and functions, as the router
// digests it every health_check_interval.
func BenchmarkCatalogChecked(b *testing.B) {
	r, _ := newTestRouter(b)
	var cat ShardCatalog
	for i := 0; i < 2000; i++ {
		cat.Inherits = append(cat.Inherits, Inherit{"public", fmt.Sprintf("orders_d%04d", i), "public", "orders"})
	}
	for i := 0; i < 300; i++ {
		cat.Functions = append(cat.Functions, FunctionDef{fmt.Sprintf("f%d", i),
			fmt.Sprintf("BEGIN UPDATE audit_log SET n = n + 1 WHERE id = %d; RETURN (SELECT count(*) FROM customers_view_%d); END", i, i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.CatalogChecked("s0", time.Now(), cat)
	}
}

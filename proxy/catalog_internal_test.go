package proxy

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/router"
)

// TestParseShardCatalog: catalogQuery's row decodes column by column,
// and a column that does not decode is an error naming it (the check
// then fails, rather than the router learning half a catalog).
func TestParseShardCatalog(t *testing.T) {
	row := [][]byte{
		[]byte(`["mysum"]`),
		[]byte(`[["public","v","public","orders"]]`),
		[]byte(`[["public","v"," SELECT 1;"]]`),
		[]byte(`[["f","SELECT 1",""],["uuid_generate_v4","","v"]]`),
		[]byte(`[["public","orders_2024","public","orders"]]`),
		[]byte(`[["public","orders","t","f","5",""],["public","orders","r","","4","CREATE RULE r ..."]]`),
		[]byte(`[["public","products","id","1","","a"],["public","products","at","3","now()",""]]`),
		[]byte(`[["public","orders_pkey","public","orders"]]`),
		[]byte(`[["public","orders_id_seq","public","orders"]]`),
	}
	cat, err := parseShardCatalog(row)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Aggregates) != 1 || cat.Views[0].Ref != "orders" || cat.ViewDefs[0].SQL != " SELECT 1;" ||
		cat.Functions[0] != (router.FunctionDef{Name: "f", Body: "SELECT 1"}) || cat.Inherits[0].Child != "orders_2024" ||
		cat.Triggers[0].Events != 5 || cat.Triggers[1].Rule != "CREATE RULE r ..." || !cat.Functions[1].Volatile ||
		cat.Defaults[0] != (router.ColumnDefault{Schema: "public", Table: "products", Column: "id", Position: 1, Identity: true}) ||
		cat.Defaults[1].Expr != "now()" || cat.Defaults[1].Position != 3 ||
		cat.Indexes[0] != (router.Owned{Schema: "public", Name: "orders_pkey", TableSchema: "public", Table: "orders"}) ||
		cat.Sequences[0].Name != "orders_id_seq" {
		t.Errorf("decoded %+v", cat)
	}
	for col, want := range map[int]string{3: "functions", 5: "triggers", 6: "column defaults", 7: "indexes", 8: "owned sequences"} {
		bad := append([][]byte(nil), row...)
		bad[col] = []byte(`[["x"`)
		if col == 5 {
			bad[col] = []byte(`[["public","orders","t","f","five",""]]`)
		}
		if _, err := parseShardCatalog(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad column %d: %v; want an error naming %s", col, err, want)
		}
	}
	if _, err := parseShardCatalog(row[:8]); err == nil {
		t.Error("8 columns decoded")
	}
}

package proxy_test

// The random pipeline differential: TestDifferentialPipelines' suite
// (same schema, data, strategies, oracle self-check and comparisons) run on
// scenarios drawn at random from the statements the fixed scenarios are
// made of: keyed writes and reads on customers 7, 12, 150, 260 and 390
// (two or three shards under every strategy), merged reads, keyless and
// reference-table writes, multi-row INSERTs across shards, deferred and
// immediate constraint violations, errors, BEGIN / COMMIT / ROLLBACK /
// SAVEPOINT / COMMIT AND CHAIN inside pipelines and as simple Queries
// between them, SET and SET LOCAL with date output that shows them. The
// fixed scenarios each test one thing someone thought of; these combine
// them in orders nobody wrote down.
//
// DIFF_PIPE_N=N runs N scenarios (default 40), DIFF_PIPE_SEED=S another
// sequence; DIFF_PIPE_SHOW=1 logs every round.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestDifferentialPipelinesRandom(t *testing.T) {
	seed, n := uint64(20261129), 40
	if v, err := strconv.ParseUint(os.Getenv("DIFF_PIPE_SEED"), 10, 64); err == nil {
		seed = v
	}
	if v, err := strconv.Atoi(os.Getenv("DIFF_PIPE_N")); err == nil && v > 0 {
		n = v
	}
	t.Logf("seed %d, %d scenarios (DIFF_PIPE_SEED, DIFF_PIPE_N)", seed, n)
	scenarios := randomPipelineScenarios(rand.New(rand.NewPCG(seed, 11)), n)
	runPipelineSuite(t, scenarios, n/3)
}

// pipeGen draws one scenario's statements. Each scenario has order ids
// and ledger entries of its own (orders from order0, ledger entries entry0
// and entry0+1), so scenarios do not collide with each other or the data.
type pipeGen struct {
	r      *rand.Rand
	tag    string
	order0 int
	next   int      // the next new order id
	orders [][2]int // (order id, customer) pairs added so far
	entry0 int
}

var pipeCustomers = []int{7, 12, 150, 260, 390}

func (g *pipeGen) customer() int { return pipeCustomers[g.r.IntN(len(pipeCustomers))] }

func (g *pipeGen) newOrder(cust int) int {
	o := g.next
	g.next++
	g.orders = append(g.orders, [2]int{o, cust})
	return o
}

// customerList is two or three distinct customers, as SQL.
func (g *pipeGen) customerList() string {
	perm := g.r.Perm(len(pipeCustomers))
	var ids []string
	for _, i := range perm[:2+g.r.IntN(2)] {
		ids = append(ids, strconv.Itoa(pipeCustomers[i]))
	}
	return strings.Join(ids, ", ")
}

// statement draws one statement of a pipeline.
func (g *pipeGen) statement() pipeStmt {
	s := pipeSQL
	switch k := g.r.IntN(100); {
	case k < 12:
		return pipeSetName(g.tag, g.customer())
	case k < 20:
		return s("UPDATE customers SET credit = coalesce(credit, 0) + $2 WHERE customer_id = $1 RETURNING customer_id, credit",
			g.customer(), fmt.Sprintf("%d.25", 1+g.r.IntN(9)))
	case k < 28:
		c := g.customer()
		return pipeAddOrder(g.newOrder(c), c)
	case k < 31:
		if len(g.orders) > 0 { // 23505 on (customer_id, order_id)
			o := g.orders[g.r.IntN(len(g.orders))]
			return pipeAddOrder(o[0], o[1])
		}
		return pipeDupCustomer(g.customer())
	case k < 33:
		return pipeDupCustomer(g.customer())
	case k < 35:
		return pipeOverdraw(g.customer())
	case k < 41:
		return pipeNames(g.customerList())
	case k < 46:
		return pipeOrdersIn(g.order0, g.order0+29)
	case k < 49:
		return s("SELECT sum(credit), count(*) FROM customers")
	case k < 51:
		return s(fmt.Sprintf("SELECT count(*) FROM customers WHERE name = '%s'", g.tag))
	case k < 54:
		return s(fmt.Sprintf("UPDATE orders SET qty = coalesce(qty, 0) + 1 WHERE order_id BETWEEN %d AND %d", g.order0, g.order0+29))
	case k < 56:
		if len(g.orders) > 0 {
			return s("DELETE FROM orders WHERE order_id = $1 RETURNING customer_id", g.orders[g.r.IntN(len(g.orders))][0])
		}
		return s("SELECT 1")
	case k < 59:
		var rows []string
		for range 2 + g.r.IntN(2) {
			c := g.customer()
			rows = append(rows, fmt.Sprintf("(%d, %d, 'multi')", g.newOrder(c), c))
		}
		return s("INSERT INTO orders (order_id, customer_id, status) VALUES " + strings.Join(rows, ", ") + " RETURNING order_id, customer_id")
	case k < 61:
		return s("UPDATE products SET price = price + 1 WHERE product_id = $1 RETURNING product_id, price", 1+g.r.IntN(10))
	case k < 65: // a second entry for a customer violates the deferred key at commit
		return s("INSERT INTO ledger (customer_id, entry, amount) VALUES ($1, $2, 1)", g.customer(), g.entry0+g.r.IntN(2))
	case k < 67:
		return s("SELECT 1/0")
	case k < 69:
		return s([]string{"SELECT 1", "SHOW DateStyle", "SELECT current_setting('DateStyle')", "SHOW TimeZone"}[g.r.IntN(4)])
	case k < 72:
		return s([]string{"SET DateStyle = 'German'", "SET LOCAL DateStyle = 'SQL, DMY'", "RESET DateStyle", "SET LOCAL DateStyle = 'Postgres, MDY'"}[g.r.IntN(4)])
	case k < 75:
		return s("SELECT signup, DATE '2024-03-05' AS d FROM customers WHERE customer_id = $1", g.customer())
	case k < 78:
		return s("INSERT INTO wallets (customer_id, wallet_id, label, balance) VALUES ($1, 7, 'pipe', $2) ON CONFLICT (customer_id, wallet_id) DO UPDATE SET balance = coalesce(wallets.balance, 0) + EXCLUDED.balance RETURNING customer_id, wallet_id, balance",
			g.customer(), "1.50")
	default:
		return s(g.control())
	}
}

// control is a transaction-control statement.
func (g *pipeGen) control() string {
	return []string{"BEGIN", "BEGIN", "COMMIT", "COMMIT", "ROLLBACK", "SAVEPOINT a", "SAVEPOINT a",
		"ROLLBACK TO SAVEPOINT a", "RELEASE SAVEPOINT a", "COMMIT AND CHAIN",
		"BEGIN ISOLATION LEVEL REPEATABLE READ"}[g.r.IntN(11)]
}

// query draws a round sent as a simple Query.
func (g *pipeGen) query() pipeRound {
	sql := g.control()
	switch g.r.IntN(4) {
	case 0:
		sql = "SELECT 1"
	case 1:
		sql = fmt.Sprintf("UPDATE customers SET name = '%s-q' WHERE customer_id = %d RETURNING customer_id, name", g.tag, g.customer())
	}
	return pipeRound{simple: true, stmts: []pipeStmt{pipeSQL(sql)}}
}

func randomPipelineScenarios(r *rand.Rand, n int) []pipeScenario {
	var out []pipeScenario
	for i := range n {
		g := &pipeGen{r: r, tag: fmt.Sprintf("rp%d", i), order0: 20000 + 30*i, entry0: 5000 + 2*i}
		g.next = g.order0
		sc := pipeScenario{name: fmt.Sprintf("random %d", i)}
		for range 1 + r.IntN(4) {
			if r.IntN(3) == 0 {
				sc.rounds = append(sc.rounds, g.query())
				continue
			}
			var round pipeRound
			for range 1 + r.IntN(6) {
				if len(g.orders) >= 25 {
					break // the scenario's order ids are used up
				}
				round.stmts = append(round.stmts, g.statement())
			}
			if len(round.stmts) == 0 {
				round.stmts = append(round.stmts, pipeSQL("SELECT 1"))
			}
			sc.rounds = append(sc.rounds, round)
		}
		out = append(out, sc)
	}
	return out
}

package pool

import (
	"fmt"

	"github.com/shardproxy/shardproxy/config"
)

// Cluster holds one Pool per shard. Its set of pools is fixed at
// NewCluster; a new shard map gets a new Cluster.
type Cluster struct {
	pools map[string]*Pool
	order []*Pool // shards in config order
}

// NewCluster returns a pool for each shard, all with the same options.
func NewCluster(shards []config.Shard, opts Options) (*Cluster, error) {
	cl := &Cluster{pools: make(map[string]*Pool, len(shards))}
	for _, s := range shards {
		if _, dup := cl.pools[s.Name]; dup {
			cl.Close()
			return nil, fmt.Errorf("pool: shard %q listed twice", s.Name)
		}
		p, err := New(s, opts)
		if err != nil {
			cl.Close()
			return nil, err
		}
		cl.pools[s.Name] = p
		cl.order = append(cl.order, p)
	}
	return cl, nil
}

// Get returns the named shard's pool, or nil.
func (cl *Cluster) Get(name string) *Pool { return cl.pools[name] }

// SchemaChanged tells every pool that the schema may have changed.
func (cl *Cluster) SchemaChanged() {
	for _, p := range cl.pools {
		p.SchemaChanged()
	}
}

// Close closes every pool.
func (cl *Cluster) Close() {
	for _, p := range cl.order {
		p.Close()
	}
}

// Stats returns each pool's stats by shard name.
func (cl *Cluster) Stats() map[string]Stats {
	m := make(map[string]Stats, len(cl.pools))
	for name, p := range cl.pools {
		m[name] = p.Stats()
	}
	return m
}

package strategies

import (
	"context"
	"strconv"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Parameters of the ring. They are part of the placement: changing any of
// them moves keys, so they are constants, not knobs.
const (
	defaultPartitions     = 271
	ringReplicationFactor = 20
	ringLoad              = 1.25
)

// consistentStrategy is bounded-load consistent hashing
// (github.com/buraksezer/consistent): a key hashes (xxhash of its canonical
// text) to one of a fixed number of partitions, and partitions are spread
// over the shards on a ring. Adding a shard moves about 1/N of the keys.
// Placement depends only on the shard names, their order and the partition
// count, so every proxy computes the same map.
type consistentStrategy struct {
	name       string
	keyType    KeyType
	shards     []string
	ring       *consistent.Consistent
	partitions uint64
}

type ringMember string

func (m ringMember) String() string { return string(m) }

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

func newConsistent(name string, t KeyType, shards []string, partitions int) *consistentStrategy {
	if partitions <= 0 {
		partitions = defaultPartitions
	}
	members := make([]consistent.Member, len(shards))
	for i, s := range shards {
		members[i] = ringMember(s)
	}
	ring := consistent.New(members, consistent.Config{
		Hasher:            xxhasher{},
		PartitionCount:    partitions,
		ReplicationFactor: ringReplicationFactor,
		Load:              ringLoad,
	})
	return &consistentStrategy{name: name, keyType: t, shards: shards, ring: ring, partitions: uint64(partitions)}
}

func (c *consistentStrategy) Name() string     { return c.name }
func (c *consistentStrategy) KeyType() KeyType { return c.keyType }
func (c *consistentStrategy) Shards() []string { return c.shards }

func (c *consistentStrategy) Locate(_ context.Context, k Key, _ Intent) (string, error) {
	if err := checkKeyType(c.name, c.keyType, k); err != nil {
		return "", err
	}
	// Same as ring.LocateKey(canonical text), without its allocations.
	var h uint64
	switch k.Type {
	case KeyText:
		h = xxhash.Sum64String(k.Text)
	case KeyInt:
		var buf [20]byte
		h = xxhash.Sum64(strconv.AppendInt(buf[:0], k.Int, 10))
	default:
		h = xxhash.Sum64String(k.String())
	}
	return c.ring.GetPartitionOwner(int(h % c.partitions)).String(), nil
}

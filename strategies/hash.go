package strategies

import "context"

// hashStrategy places a key on shards[partitionHash(k) % len(shards)]:
// exactly the partition Postgres picks for a table PARTITION BY HASH with
// partitions FOR VALUES WITH (MODULUS len(shards), REMAINDER i).
type hashStrategy struct {
	name    string
	keyType KeyType
	shards  []string
}

func newHash(name string, t KeyType, shards []string) *hashStrategy {
	return &hashStrategy{name: name, keyType: t, shards: shards}
}

func (h *hashStrategy) Name() string     { return h.name }
func (h *hashStrategy) KeyType() KeyType { return h.keyType }
func (h *hashStrategy) Shards() []string { return h.shards }

func (h *hashStrategy) Locate(_ context.Context, k Key, _ Intent) (string, error) {
	if err := checkKeyType(h.name, h.keyType, k); err != nil {
		return "", err
	}
	// partbounds.c takes the unsigned 64-bit row hash modulo the modulus.
	return h.shards[partitionHash(k)%uint64(len(h.shards))], nil
}

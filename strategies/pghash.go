package strategies

import "math/bits"

// This file ports the Postgres hash functions that hash partitioning uses,
// so that hash % N names the same partition Postgres would
// (FOR VALUES WITH (MODULUS N, REMAINDER i)). Sources, Postgres 15:
//   - src/common/hashfn.c: hash_bytes_extended, hash_bytes_uint32_extended
//     (Bob Jenkins' lookup3 with a 64-bit seed)
//   - src/backend/access/hash/hashfunc.c: hashint8extended, hashtextextended
//   - src/backend/utils/adt/uuid.c: uuid_hash_extended
//   - src/backend/partitioning/partbounds.c: compute_partition_hash_value
//   - src/include/common/hashfn.h: hash_combine64
// Postgres reads 32-bit words in native byte order; every supported server
// we target is little-endian, so words are read little-endian here. (A
// big-endian server would place keys differently; Postgres documents that
// hash partitions are not portable across architectures either.)

// hashPartitionSeed is HASH_PARTITION_SEED from partbounds.c.
const hashPartitionSeed uint64 = 0x7A5B22367996DCFD

func mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// seedState is the common prologue: the seed is hashed as a 12-byte chunk
// whose last four bytes are zero.
func seedState(length uint32, seed uint64) (uint32, uint32, uint32) {
	a := 0x9e3779b9 + length + 3923095
	b, c := a, a
	if seed != 0 {
		a += uint32(seed >> 32)
		b += uint32(seed)
		a, b, c = mix(a, b, c)
	}
	return a, b, c
}

// le32 reads a little-endian word from k at i, for string or []byte.
func le32[T string | []byte](k T, i int) uint32 {
	return uint32(k[i]) | uint32(k[i+1])<<8 | uint32(k[i+2])<<16 | uint32(k[i+3])<<24
}

// hashBytesExtended is hash_bytes_extended (hash_any_extended). Its aligned
// and unaligned paths agree on little-endian machines; this is the
// unaligned one, byte by byte.
func hashBytesExtended[T string | []byte](k T, seed uint64) uint64 {
	n := len(k)
	a, b, c := seedState(uint32(n), seed)
	i := 0
	for ; n >= 12; n -= 12 {
		a += le32(k, i)
		b += le32(k, i+4)
		c += le32(k, i+8)
		a, b, c = mix(a, b, c)
		i += 12
	}
	// The last 0..11 bytes. lookup3 reserves the lowest byte of c (for the
	// length), so c takes bytes 8..10 shifted up by one byte.
	switch n {
	case 11:
		c += uint32(k[i+10]) << 24
		fallthrough
	case 10:
		c += uint32(k[i+9]) << 16
		fallthrough
	case 9:
		c += uint32(k[i+8]) << 8
		fallthrough
	case 8:
		b += uint32(k[i+7]) << 24
		fallthrough
	case 7:
		b += uint32(k[i+6]) << 16
		fallthrough
	case 6:
		b += uint32(k[i+5]) << 8
		fallthrough
	case 5:
		b += uint32(k[i+4])
		fallthrough
	case 4:
		a += uint32(k[i+3]) << 24
		fallthrough
	case 3:
		a += uint32(k[i+2]) << 16
		fallthrough
	case 2:
		a += uint32(k[i+1]) << 8
		fallthrough
	case 1:
		a += uint32(k[i])
	}
	_, b, c = final(a, b, c)
	return uint64(b)<<32 | uint64(c)
}

// hashUint32Extended is hash_bytes_uint32_extended (hash_uint32_extended).
func hashUint32Extended(k uint32, seed uint64) uint64 {
	a, b, c := seedState(4, seed)
	a += k
	_, b, c = final(a, b, c)
	return uint64(b)<<32 | uint64(c)
}

// hashInt8Extended is hashint8extended. It folds the high half into the low
// half so that an int8 equal to an int4 hashes like it: int2, int4 and int8
// share one hash opfamily, which is why one KeyInt covers all three.
func hashInt8Extended(v int64, seed uint64) uint64 {
	lo := uint32(v)
	hi := uint32(uint64(v) >> 32)
	if v >= 0 {
		lo ^= hi
	} else {
		lo ^= ^hi
	}
	return hashUint32Extended(lo, seed)
}

// hashCombine64 is hash_combine64 from hashfn.h.
func hashCombine64(a, h uint64) uint64 {
	a ^= h + 0x49a0f4dd15e5a8e3 + (a << 54) + (a >> 7)
	return a
}

// partitionHash is compute_partition_hash_value for one non-null column:
// the column type's extended hash with HASH_PARTITION_SEED, combined into a
// zero row hash. Text hashes its raw bytes, which is what hashtextextended
// does under a deterministic collation (the default; C and libc collations
// are all deterministic).
func partitionHash(k Key) uint64 {
	var h uint64
	switch k.Type {
	case KeyInt:
		h = hashInt8Extended(k.Int, hashPartitionSeed)
	case KeyText:
		h = hashBytesExtended(k.Text, hashPartitionSeed)
	case KeyUUID:
		h = hashBytesExtended(k.UUID[:], hashPartitionSeed)
	}
	return hashCombine64(0, h)
}

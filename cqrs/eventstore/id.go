package eventstore

import (
	"crypto/rand"
	"crypto/sha1"
	"fmt"
	"strings"
)

// NewID returns a random (version 4) uuid.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return format(b)
}

// DeriveID returns a name-based (version 5 style) uuid of parts: the same
// decision taken twice (a redelivered message, a retried saga step) gets
// the same event or message id, which makes it idempotent downstream.
func DeriveID(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return format(b)
}

func format(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

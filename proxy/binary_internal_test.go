package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestBinaryEnum: an enum (a type the catalog says is one) goes out as its
// label, and an array of it as array_send writes one (the array layout is
// checked against Postgres in TestMergedBinaryResults).
func TestBinaryEnum(t *testing.T) {
	enums := map[uint32]uint32{16391: 0, 16390: 16391}
	m := pgtype.NewMap()
	if b, err := binaryValue(m, enums, 16391, []byte("ok")); err != nil || string(b) != "ok" {
		t.Errorf("enum: %q, %v", b, err)
	}
	want := []byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x40, 0x07, 0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 5, 'h', 'a', 'p', 'p', 'y', 0xff, 0xff, 0xff, 0xff}
	if b, err := binaryValue(m, enums, 16390, []byte("{happy,NULL}")); err != nil || !bytes.Equal(b, want) {
		t.Errorf("enum array: %q, %v; want %q", b, err, want)
	}
	if _, err := binaryValue(m, nil, 16391, []byte("ok")); err == nil {
		t.Error("a type not known as an enum was converted")
	}
}

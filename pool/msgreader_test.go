package pool

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestMsgReader checks that whole messages come out of msgReader exactly
// as they went in, however the stream is cut into reads, and that Decode
// gives what pgproto3 would.
func TestMsgReader(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3*minBuf+17) // larger than the buffer
	msgs := []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, Format: 0}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("700")}},
		&pgproto3.DataRow{Values: [][]byte{big, nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
		&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	var stream []byte
	var want [][]byte
	for _, m := range msgs {
		b, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, b...)
		want = append(want, b)
	}
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"one read", func() io.Reader { return bytes.NewReader(stream) }},
		{"byte by byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := newMsgReader(tc.r())
			var d decoder
			for i, w := range want {
				typ, raw, err := rd.next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if typ != w[0] || !bytes.Equal(raw, w) {
					t.Fatalf("message %d: got %q (%d bytes), want %q (%d bytes)", i, typ, len(raw), w[0], len(w))
				}
				msg, err := d.decode(raw)
				if err != nil {
					t.Fatalf("message %d: decode: %v", i, err)
				}
				again, err := msg.Encode(nil)
				if err != nil || !bytes.Equal(again, w) {
					t.Fatalf("message %d: decoded %#v re-encodes differently", i, msg)
				}
			}
			if n := rd.buffered(); n != 0 {
				t.Fatalf("buffered = %d after the last message, want 0", n)
			}
			if _, _, err := rd.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("at the end: err = %v, want io.ErrUnexpectedEOF", err)
			}
			if len(rd.buf) != minBuf {
				t.Fatalf("buffer of %d bytes kept after a large message, want %d", len(rd.buf), minBuf)
			}
		})
	}
}

func TestMsgReaderBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []byte
		want   func(error) bool
	}{
		{"cut in the header", []byte{'Z', 0, 0}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"cut in the body", []byte{'C', 0, 0, 0, 10, 'S', 'E'}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"length below 4", []byte{'Z', 0, 0, 0, 3, 'I'}, func(err error) bool { return err != nil }},
		{"length too large", []byte{'D', 0x7f, 0xff, 0xff, 0xff}, func(err error) bool {
			var e *pgproto3.ExceededMaxBodyLenErr
			return errors.As(err, &e)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := newMsgReader(bytes.NewReader(tc.stream)).next()
			if !tc.want(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("unknown type", func(t *testing.T) {
		var d decoder
		if _, err := d.decode([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}); err == nil {
			t.Fatal("decoded an authentication message on an established connection")
		}
	})
}

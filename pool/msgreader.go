package pool

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// msgReader reads whole backend messages (type byte, length, body) off a
// connection, in as few reads as possible, so that the proxy can forward a
// message as the bytes it arrived as (Conn.ReceiveRaw) and decode only the
// ones it must look into (Conn.Decode). It does what pgproto3.Frontend's
// reading does, minus the decoding.
//
// Memory: one buffer of minBuf bytes; a message larger than that gets a
// buffer of its own size, dropped again once the message is consumed.
type msgReader struct {
	r      io.Reader
	buf    []byte // buf[rp:wp] is read but not yet returned
	rp, wp int
	small  []byte // the minBuf-sized buffer, kept while buf is a large one
}

const (
	minBuf     = 8192           // Postgres' own send buffer size (pqcomm.c), as pgproto3 uses
	maxBodyLen = 0x3fffffff - 1 // PG_LARGE_MESSAGE_LIMIT, pgproto3.Frontend's limit too
)

func newMsgReader(r io.Reader) *msgReader {
	b := make([]byte, minBuf)
	return &msgReader{r: r, buf: b, small: b}
}

// buffered is how many bytes were read past the last returned message.
func (m *msgReader) buffered() int { return m.wp - m.rp }

// next returns the next message, header included. It is valid until the
// next call.
func (m *msgReader) next() (byte, []byte, error) {
	if m.rp == m.wp {
		// Empty: start over at the front, in the small buffer.
		m.buf, m.rp, m.wp = m.small, 0, 0
	}
	if err := m.fill(5); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	n := int(int32(binary.BigEndian.Uint32(m.buf[m.rp+1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("invalid message length: %d", n)
	}
	if body := n - 4; body > maxBodyLen {
		return 0, nil, &pgproto3.ExceededMaxBodyLenErr{MaxExpectedBodyLen: maxBodyLen, ActualBodyLen: body}
	}
	if err := m.fill(1 + n); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	msg := m.buf[m.rp : m.rp+1+n : m.rp+1+n]
	m.rp += 1 + n
	return msg[0], msg, nil
}

// fill makes n bytes available at buf[rp:].
func (m *msgReader) fill(n int) error {
	if m.wp-m.rp >= n {
		return nil
	}
	if len(m.buf)-m.rp < n {
		// Not enough room after rp: move the partial message to the
		// front, into a buffer big enough for all of it.
		dst := m.buf
		if len(dst) < n {
			dst = make([]byte, n)
		}
		m.wp = copy(dst, m.buf[m.rp:m.wp])
		m.buf, m.rp = dst, 0
	}
	got, err := io.ReadAtLeast(m.r, m.buf[m.wp:], n-(m.wp-m.rp))
	m.wp += got
	return err
}

// unexpectedEOF reports EOF as io.ErrUnexpectedEOF, as pgproto3.Frontend
// does: a backend never ends the stream cleanly between messages.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoder turns raw backend messages into pgproto3 values, one reused
// value per type as pgproto3.Frontend does.
type decoder struct {
	parseComplete        pgproto3.ParseComplete
	bindComplete         pgproto3.BindComplete
	closeComplete        pgproto3.CloseComplete
	notificationResponse pgproto3.NotificationResponse
	copyDone             pgproto3.CopyDone
	commandComplete      pgproto3.CommandComplete
	copyData             pgproto3.CopyData
	dataRow              pgproto3.DataRow
	errorResponse        pgproto3.ErrorResponse
	copyInResponse       pgproto3.CopyInResponse
	copyOutResponse      pgproto3.CopyOutResponse
	emptyQueryResponse   pgproto3.EmptyQueryResponse
	backendKeyData       pgproto3.BackendKeyData
	noData               pgproto3.NoData
	noticeResponse       pgproto3.NoticeResponse
	portalSuspended      pgproto3.PortalSuspended
	parameterStatus      pgproto3.ParameterStatus
	parameterDescription pgproto3.ParameterDescription
	rowDescription       pgproto3.RowDescription
	functionCallResponse pgproto3.FunctionCallResponse
	copyBothResponse     pgproto3.CopyBothResponse
	readyForQuery        pgproto3.ReadyForQuery
	negotiateProtocol    pgproto3.NegotiateProtocolVersion
}

func (d *decoder) decode(raw []byte) (pgproto3.BackendMessage, error) {
	var msg pgproto3.BackendMessage
	switch raw[0] {
	case '1':
		msg = &d.parseComplete
	case '2':
		msg = &d.bindComplete
	case '3':
		msg = &d.closeComplete
	case 'A':
		msg = &d.notificationResponse
	case 'c':
		msg = &d.copyDone
	case 'C':
		msg = &d.commandComplete
	case 'd':
		msg = &d.copyData
	case 'D':
		msg = &d.dataRow
	case 'E':
		msg = &d.errorResponse
	case 'G':
		msg = &d.copyInResponse
	case 'H':
		msg = &d.copyOutResponse
	case 'I':
		msg = &d.emptyQueryResponse
	case 'K':
		msg = &d.backendKeyData
	case 'n':
		msg = &d.noData
	case 'N':
		msg = &d.noticeResponse
	case 's':
		msg = &d.portalSuspended
	case 'S':
		msg = &d.parameterStatus
	case 't':
		msg = &d.parameterDescription
	case 'T':
		msg = &d.rowDescription
	case 'V':
		msg = &d.functionCallResponse
	case 'W':
		msg = &d.copyBothResponse
	case 'Z':
		msg = &d.readyForQuery
	case 'v':
		msg = &d.negotiateProtocol
	default:
		// 'R' (authentication) is over before a Conn exists.
		return nil, fmt.Errorf("unexpected backend message type %q", raw[0])
	}
	if err := msg.Decode(raw[5:]); err != nil {
		return nil, err
	}
	return msg, nil
}

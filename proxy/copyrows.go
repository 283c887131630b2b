package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/shardproxy/shardproxy/router"
)

// copySplitter cuts the data of a COPY FROM STDIN into rows and finds each
// row's shard-key field, following Postgres' own reader (copyfromparse.c):
// text rows end at an unescaped newline (LF, CR or CRLF) and a backslash
// escapes the next byte, even a newline; CSV rows end at a newline outside
// quotes; binary tuples are length-prefixed. CopyData messages split the
// stream anywhere, so an incomplete row waits in buf for the next message.
//
// Rows are handed on as the exact input bytes (terminator included), so
// every shard parses what the client sent; only the key field is decoded
// here, as Postgres would decode it.
type copySplitter struct {
	sp     *router.CopySpec
	keyPos int // key field among the row's fields
	keyCol string
	// forceNotNull / forceNull: CSV FORCE_NOT_NULL / FORCE_NULL name the key
	forceNotNull, forceNull bool

	buf     []byte // input not yet cut into rows
	scan    int    // buf[:scan] of the current row is scanned
	inQuote bool   // CSV: at buf[scan] we are inside quotes
	header  bool   // a header line is still to be skipped
	done    bool   // the end-of-data marker was seen: ignore the rest
	eol     string // the first row's line ending: "\n", "\r" or "\r\n"

	binHeader []byte // binary: the file header, once read
	key       []byte // decoded key of the current row (reused)
}

// maxCopyRow bounds one row held while it is incomplete: memory stays
// bounded whatever the client sends (Postgres itself caps a row near 1 GB).
const maxCopyRow = 256 << 20

// binarySignature opens every binary COPY stream.
var binarySignature = []byte("PGCOPY\n\xff\r\n\x00")

// binaryTrailer ends a binary COPY stream: a field count of -1.
var binaryTrailer = []byte{0xff, 0xff}

func newCopySplitter(sp *router.CopySpec, keyPos int, keyCol string) *copySplitter {
	s := &copySplitter{sp: sp, keyPos: keyPos, keyCol: keyCol, header: sp.Header && sp.Format != router.CopyBinary}
	for _, c := range sp.ForceNotNull {
		s.forceNotNull = s.forceNotNull || c == keyCol || c == "*"
	}
	for _, c := range sp.ForceNull {
		s.forceNull = s.forceNull || c == keyCol || c == "*"
	}
	return s
}

// rowFunc receives one complete row: its raw bytes (to forward) and its
// decoded key (valid until the next call) or null. binary says key is in
// the type's binary format.
type rowFunc func(raw, key []byte, null bool) error

func errCopyFormat(format string, args ...any) error {
	return pgError("22P04", format, args...)
}

// feed takes one CopyData payload and reports every row it completes.
func (s *copySplitter) feed(data []byte, row rowFunc) error {
	if s.done {
		return nil
	}
	s.buf = append(s.buf, data...)
	if err := s.cut(false, row); err != nil {
		return err
	}
	if len(s.buf) > maxCopyRow {
		return pgError("54000", "COPY row is longer than %d bytes; shardproxy holds a row whole to route it", maxCopyRow)
	}
	return nil
}

// finish reports the last row, which may lack its newline (CopyDone).
func (s *copySplitter) finish(row rowFunc) error {
	if s.done {
		return nil
	}
	if err := s.cut(true, row); err != nil {
		return err
	}
	switch {
	case s.sp.Format == router.CopyBinary:
		if len(s.buf) > 0 {
			return errCopyFormat("unexpected EOF in COPY data")
		}
	case s.inQuote:
		return errCopyFormat("unterminated CSV quoted field")
	case len(s.buf) > 0:
		last := s.buf
		s.buf = s.buf[:0]
		return s.line(last, last, row)
	}
	return nil
}

// cut reports every complete row in buf and keeps the incomplete rest.
func (s *copySplitter) cut(final bool, row rowFunc) error {
	var used int
	var err error
	if s.sp.Format == router.CopyBinary {
		used, err = s.cutBinary(row)
	} else {
		used, err = s.cutLines(final, row)
	}
	if err != nil {
		return err
	}
	if used > 0 {
		n := copy(s.buf, s.buf[used:])
		s.buf = s.buf[:n]
		s.scan = max(s.scan-used, 0)
	}
	return nil
}

// cutLines finds text/CSV row ends. It returns the bytes consumed.
func (s *copySplitter) cutLines(final bool, row rowFunc) (int, error) {
	b := s.buf
	start := 0
	csv := s.sp.Format == router.CopyCSV
	quote, esc := s.sp.Quote, s.sp.Escape
	i := s.scan
	for i < len(b) {
		c := b[i]
		switch {
		case !csv && c == '\\':
			if i+1 >= len(b) && !final {
				s.scan = i
				return start, nil
			}
			i += 2 // the escaped byte, whatever it is
			continue
		case csv && s.inQuote && c == esc && esc != quote:
			if i+1 >= len(b) && !final {
				s.scan = i
				return start, nil
			}
			if i+1 < len(b) && (b[i+1] == quote || b[i+1] == esc) {
				i += 2
				continue
			}
		case csv && c == quote:
			if !s.inQuote {
				s.inQuote = true
				break
			}
			if esc == quote {
				if i+1 >= len(b) && !final {
					s.scan = i
					return start, nil
				}
				if i+1 < len(b) && b[i+1] == quote {
					i += 2 // "" inside quotes
					continue
				}
			}
			s.inQuote = false
		case (c == '\n' || c == '\r') && !s.inQuote:
			end := i + 1
			if c == '\r' {
				if i+1 >= len(b) && !final {
					s.scan = i
					return start, nil
				}
				if i+1 < len(b) && b[i+1] == '\n' {
					end++
				}
			}
			if err := s.checkEOL(b[i:end]); err != nil {
				return 0, err
			}
			if err := s.line(b[start:i], b[start:end], row); err != nil {
				return 0, err
			}
			start, i = end, end
			if s.done {
				return len(b), nil
			}
			continue
		}
		i++
	}
	s.scan = min(i, len(b))
	return start, nil
}

// checkEOL holds every row to the first row's line ending, as Postgres
// does: a shard that sees only some of the rows could not tell.
func (s *copySplitter) checkEOL(eol []byte) error {
	if s.eol == "" {
		s.eol = string(eol)
		return nil
	}
	if s.eol == string(eol) {
		return nil
	}
	what := "literal"
	if s.sp.Format == router.CopyCSV {
		what = "unquoted"
	}
	if eol[0] == '\r' {
		return errCopyFormat("%s carriage return found in data", what)
	}
	return errCopyFormat("%s newline found in data", what)
}

// line handles one complete text/CSV row (content without its newline).
func (s *copySplitter) line(content, raw []byte, row rowFunc) error {
	if s.header {
		s.header = false
		return nil
	}
	if len(content) == 2 && content[0] == '\\' && content[1] == '.' {
		s.done = true // end-of-data marker: Postgres ignores what follows
		return nil
	}
	var key []byte
	var null bool
	var err error
	if s.sp.Format == router.CopyCSV {
		key, null, err = s.csvField(content)
	} else {
		key, null, err = s.textField(content)
	}
	if err != nil {
		return err
	}
	return row(raw, key, null)
}

func (s *copySplitter) missing() error {
	return errCopyFormat("missing data for column %q", s.keyCol)
}

// textField decodes field keyPos of a text-format row.
func (s *copySplitter) textField(line []byte) ([]byte, bool, error) {
	d := s.sp.Delimiter
	field, i := 0, 0
	start := 0
	for ; i < len(line); i++ {
		if line[i] == '\\' {
			i++
			continue
		}
		if line[i] == d {
			if field == s.keyPos {
				break
			}
			field++
			start = i + 1
		}
	}
	if field != s.keyPos {
		return nil, false, s.missing()
	}
	raw := line[start:min(i, len(line))]
	if string(raw) == s.sp.Null { // compared before de-escaping, as Postgres does
		return nil, true, nil
	}
	s.key = unescapeText(s.key[:0], raw)
	return s.key, false, nil
}

// unescapeText applies the text format's backslash sequences.
func unescapeText(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			dst = append(dst, c)
			continue
		}
		i++
		c = raw[i]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(raw[i]-'0')
			}
			dst = append(dst, byte(v))
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(raw) && hexVal(raw[i+1]) >= 0 {
				i++
				v = v*16 + hexVal(raw[i])
				n++
			}
			if n == 0 {
				dst = append(dst, 'x')
			} else {
				dst = append(dst, byte(v))
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// csvField decodes field keyPos of a CSV row (copyfromparse.c,
// CopyReadAttributesCSV): quoted sections may hold delimiters and
// newlines; inside them the escape byte escapes a quote or itself.
func (s *copySplitter) csvField(line []byte) ([]byte, bool, error) {
	d, q, e := s.sp.Delimiter, s.sp.Quote, s.sp.Escape
	field := 0
	i := 0
	for {
		s.key = s.key[:0]
		start, quoted, inQuote := i, false, false
		for ; i < len(line); i++ {
			c := line[i]
			if inQuote {
				if c == e && i+1 < len(line) && (line[i+1] == q || line[i+1] == e) {
					i++
					s.key = append(s.key, line[i])
					continue
				}
				if c == q {
					inQuote = false
					continue
				}
				s.key = append(s.key, c)
				continue
			}
			if c == d {
				break
			}
			if c == q {
				inQuote, quoted = true, true
				continue
			}
			s.key = append(s.key, c)
		}
		if inQuote {
			return nil, false, errCopyFormat("unterminated CSV quoted field")
		}
		if field == s.keyPos {
			raw := line[start:i]
			switch {
			case !quoted && string(raw) == s.sp.Null && !s.forceNotNull:
				return nil, true, nil
			case quoted && s.forceNull && string(s.key) == s.sp.Null:
				return nil, true, nil
			}
			return s.key, false, nil
		}
		if i >= len(line) {
			return nil, false, s.missing()
		}
		field++
		i++ // past the delimiter
	}
}

// cutBinary cuts whole tuples (see the COPY docs, "Binary Format").
func (s *copySplitter) cutBinary(row rowFunc) (int, error) {
	b := s.buf
	pos := 0
	if s.binHeader == nil {
		if len(b) < len(binarySignature)+8 {
			return 0, nil
		}
		if !bytes.Equal(b[:len(binarySignature)], binarySignature) {
			return 0, errCopyFormat("COPY file signature not recognized")
		}
		flags := binary.BigEndian.Uint32(b[11:])
		if flags&(1<<16) != 0 {
			return 0, errCopyFormat("invalid COPY file header (WITH OIDS)")
		}
		ext := int(binary.BigEndian.Uint32(b[15:]))
		if ext < 0 || ext > maxCopyRow {
			return 0, errCopyFormat("invalid COPY file header (wrong length)")
		}
		n := len(binarySignature) + 8 + ext
		if len(b) < n {
			return 0, nil
		}
		s.binHeader = append([]byte(nil), b[:n]...)
		pos = n
	}
	for {
		if len(b)-pos < 2 {
			return pos, nil
		}
		nf := int(int16(binary.BigEndian.Uint16(b[pos:])))
		if nf == -1 {
			s.done = true
			return len(b), nil
		}
		if nf <= s.keyPos {
			return 0, errCopyFormat("row field count is %d, shard key %q is field %d", nf, s.keyCol, s.keyPos+1)
		}
		p := pos + 2
		var key []byte
		null := false
		for f := 0; f < nf; f++ {
			if len(b)-p < 4 {
				return pos, nil
			}
			l := int(int32(binary.BigEndian.Uint32(b[p:])))
			p += 4
			if l < -1 {
				return 0, errCopyFormat("invalid field size")
			}
			if l == -1 {
				if f == s.keyPos {
					null = true
				}
				continue
			}
			if len(b)-p < l {
				return pos, nil
			}
			if f == s.keyPos {
				key = b[p : p+l]
			}
			p += l
		}
		if err := row(b[pos:p], key, null); err != nil {
			return 0, err
		}
		pos = p
	}
}

func (s *copySplitter) String() string {
	return fmt.Sprintf("copySplitter{format=%d key=%d}", s.sp.Format, s.keyPos)
}

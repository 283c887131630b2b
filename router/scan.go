package router

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The scanner walks a Query string once, the way Postgres' lexer would, to
// split it into statements, pull literals out of the text (so that
// `... WHERE aid = 1` and `... WHERE aid = 2` share one cached plan) and
// find `/* shard: s1 */` hints. It never calls pg_query: it runs on every
// message, pg_query only on plan-cache misses.

// editKind says what the normaliser does with a span of the input.
type editKind uint8

const (
	editComment editKind = iota // dropped (replaced by one space)
	editNumber                  // numeric literal -> $k, value is the text
	editString                  // '...' -> $k, value has '' unescaped
	editEString                 // E'...' -> $k, value has backslash escapes resolved
)

type edit struct {
	kind       editKind
	start, end int // input[start:end] is the whole token
}

// segment is one statement of the input.
type segment struct {
	start, end         int // input[start:end]: the statement as sent, ';' included
	bodyStart, bodyEnd int // first token .. end of last token before ';'
	edits              []edit
	maxParam           int    // highest $n written by the client
	hint               string // from a /* shard: x */ comment; first one wins
	empty              bool   // only whitespace and comments
}

// scanner holds reusable buffers; scanners are pooled (see Router.scanners).
type scanner struct {
	segs  []segment
	edits []edit
	norm  []byte
}

// Character classes, one table lookup per byte on the hot path.
const (
	clsSpace = 1 << iota
	clsIdentStart
	clsIdentCont
	clsDigit
	clsOp
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v':
			t[c] |= clsSpace
		case b == '_' || b >= 0x80 || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z'):
			t[c] |= clsIdentStart | clsIdentCont
		case '0' <= b && b <= '9':
			t[c] |= clsDigit | clsIdentCont
		case b == '$':
			t[c] |= clsIdentCont
		}
		// Postgres' operator characters (scan.l "op_chars").
		if strings.IndexByte("~!@#^&|`?+-*/%<>=", b) >= 0 {
			t[c] |= clsOp
		}
	}
	return t
}()

func isSpace(c byte) bool      { return charClass[c]&clsSpace != 0 }
func isIdentStart(c byte) bool { return charClass[c]&clsIdentStart != 0 }
func isIdentCont(c byte) bool  { return charClass[c]&clsIdentCont != 0 }
func isDigit(c byte) bool      { return charClass[c]&clsDigit != 0 }
func isOpChar(c byte) bool     { return charClass[c]&clsOp != 0 }

// valueKeywords are the keywords after which a string literal is an
// ordinary value. After any other identifier a string is a typed literal
// (`date '2024-01-01'`, `interval '1 day'`, `x'1f'`) where Postgres does not
// accept a parameter, so it stays in the text.
var valueKeywords = []string{"and", "or", "not", "like", "ilike", "then", "else", "when",
	"select", "between", "is", "in", "values", "return", "escape"}

// literalAfterIdent tells whether a string after identifier w is a value.
// EqualFold, not a lower-cased map key: the hot path must not allocate.
func literalAfterIdent(w string) bool {
	for _, k := range valueKeywords {
		if strings.EqualFold(w, k) {
			return true
		}
	}
	return false
}

// scan splits sql into segments. With replace set, numbers and plain
// strings become edits (Prepare passes false: its literals stay put).
// Segments that hold only comments are merged into a neighbour so that the
// segments' texts still cover the whole input.
func (s *scanner) scan(sql string, replace bool) {
	s.segs = s.segs[:0]
	s.edits = s.edits[:0]
	seg := segment{bodyStart: -1}
	editsFrom := 0
	depth := 0
	// prevIdent is the previous token when prevWasIdent: a string literal
	// right after an identifier may be typed (`date '...'`).
	prevIdent := ""
	prevWasIdent := false
	// byDepth >= 0 while in an ORDER BY / GROUP BY list at that paren
	// depth (or DISTINCT ON (...)); afterBy is set right after BY, the
	// opening parenthesis or a comma of that list. An integer there is a
	// column position (ORDER BY 2), not a value: it
	// stays in the text, or `ORDER BY 1` and `ORDER BY 2` would share a
	// plan and sort by a constant.
	byDepth := -1
	afterBy := false
	distinctOn := false // just read DISTINCT ON
	tok := func(start, end int) {
		if seg.bodyStart < 0 {
			seg.bodyStart = start
		}
		seg.bodyEnd = end
	}
	finish := func(end int) {
		seg.end = end
		seg.edits = s.edits[editsFrom:len(s.edits):len(s.edits)]
		seg.empty = seg.bodyStart < 0
		s.segs = append(s.segs, seg)
		editsFrom = len(s.edits)
		seg = segment{start: end, bodyStart: -1}
		depth = 0
		prevWasIdent = false
		byDepth, afterBy = -1, false
	}
	i, n := 0, len(sql)
	for i < n {
		c := sql[i]
		switch {
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && sql[i+1] == '-':
			j := i + 2
			for j < n && sql[j] != '\n' && sql[j] != '\r' {
				j++
			}
			s.comment(&seg, sql, i, j, i+2, j)
			i = j
		case c == '/' && i+1 < n && sql[i+1] == '*':
			// Postgres' block comments nest.
			j, d := i+2, 1
			for j < n && d > 0 {
				if sql[j] == '/' && j+1 < n && sql[j+1] == '*' {
					d++
					j += 2
				} else if sql[j] == '*' && j+1 < n && sql[j+1] == '/' {
					d--
					j += 2
				} else {
					j++
				}
			}
			inner := j - 2
			if d > 0 || inner < i+2 {
				inner = j
			}
			s.comment(&seg, sql, i, j, i+2, inner)
			i = j
		case c == ';' && depth <= 0:
			finish(i + 1)
			i++
		case c == '\'':
			j, closed := closeQuote(sql, i+1, '\'', false)
			tok(i, j)
			if replace && closed && (!prevWasIdent || literalAfterIdent(prevIdent)) {
				s.edits = append(s.edits, edit{kind: editString, start: i, end: j})
			}
			prevWasIdent, afterBy = false, false
			i = j
		case c == '"':
			j := skipQuoted(sql, i+1, '"', false)
			tok(i, j)
			prevWasIdent, afterBy = false, false // a quoted name is never a type keyword we know
			i = j
		case c == '$':
			j := i + 1
			if j < n && isDigit(sql[j]) {
				for j < n && isDigit(sql[j]) {
					j++
				}
				if p, err := strconv.Atoi(sql[i+1 : j]); err == nil && p > seg.maxParam {
					seg.maxParam = p
				}
			} else if end, ok := dollarQuote(sql, i); ok {
				j = end
			}
			tok(i, j)
			prevWasIdent, afterBy = false, false
			i = j
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(sql[i+1])):
			j, ok := scanNumber(sql, i)
			tok(i, j)
			if replace && ok && !(afterBy && depth == byDepth) {
				s.edits = append(s.edits, edit{kind: editNumber, start: i, end: j})
			}
			prevWasIdent, afterBy = false, false
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < n && isIdentCont(sql[j]) {
				j++
			}
			tok(i, j)
			switch {
			case j-i == 1 && (c == 'e' || c == 'E') && j < n && sql[j] == '\'':
				k, closed := closeQuote(sql, j+1, '\'', true)
				tok(i, k)
				if replace && closed && (!prevWasIdent || literalAfterIdent(prevIdent)) {
					s.edits = append(s.edits, edit{kind: editEString, start: i, end: k})
				}
				prevWasIdent = false
				i = k
				continue
			case j-i == 1 && (c == 'u' || c == 'U') && j+1 < n && sql[j] == '&' && (sql[j+1] == '\'' || sql[j+1] == '"'):
				// U&'...' / U&"...": Unicode escapes, left as they are.
				k := skipQuoted(sql, j+2, sql[j+1], false)
				tok(i, k)
				prevWasIdent = false
				i = k
				continue
			}
			w := sql[i:j]
			distinctOn = strings.EqualFold(w, "on") && prevWasIdent && strings.EqualFold(prevIdent, "distinct")
			prevIdent = w
			prevWasIdent = true
			switch {
			case strings.EqualFold(prevIdent, "by"):
				byDepth = depth
			case byDepth >= 0 && depth == byDepth && endsByList(prevIdent):
				byDepth = -1
			}
			afterBy = byDepth >= 0 && strings.EqualFold(prevIdent, "by")
			i = j
			continue
		default:
			if c == '(' || c == '[' {
				depth++
			} else if c == ')' || c == ']' {
				depth--
				if depth < byDepth {
					byDepth = -1
				}
			}
			afterBy = c == ',' && byDepth >= 0 && depth == byDepth
			if c == '(' && distinctOn {
				// DISTINCT ON (1, 2) takes positions too.
				byDepth, afterBy = depth, true
			}
			distinctOn = false
			j := i + 1
			if isOpChar(c) {
				// An operator runs until a non-operator character or the
				// start of a comment.
				for j < n && isOpChar(sql[j]) && !(sql[j] == '-' && j+1 < n && sql[j+1] == '-') && !(sql[j] == '/' && j+1 < n && sql[j+1] == '*') {
					j++
				}
			}
			tok(i, j)
			prevWasIdent = false
			i = j
		}
	}
	if seg.start < n || len(s.segs) == 0 {
		finish(n)
	}
	s.mergeEmpty()
}

// endsByList tells whether keyword w ends an ORDER BY / GROUP BY list.
func endsByList(w string) bool {
	for _, k := range [...]string{"limit", "offset", "fetch", "having", "window", "for", "union",
		"intersect", "except", "from", "where", "select", "returning", "on", "using", "range", "rows", "groups"} {
		if strings.EqualFold(w, k) {
			return true
		}
	}
	return false
}

// comment records a comment: dropped from the normalised text, and read
// for a shard hint.
func (s *scanner) comment(seg *segment, sql string, start, end, innerStart, innerEnd int) {
	if seg.bodyStart >= 0 {
		s.edits = append(s.edits, edit{kind: editComment, start: start, end: end})
	}
	if seg.hint == "" {
		seg.hint = parseHint(sql[innerStart:innerEnd])
	}
}

// parseHint reads "shard: s1" (case-insensitive key, surrounding spaces
// allowed) and returns the shard name, or "shard_key: orders = 7" and
// returns "orders=7" (a shard name has no '='; Route tells them apart),
// or "".
func parseHint(c string) string {
	c = strings.TrimSpace(c)
	if len(c) > 10 && strings.EqualFold(c[:10], "shard_key:") {
		table, value, ok := strings.Cut(c[10:], "=")
		table, value = strings.TrimSpace(table), strings.TrimSpace(value)
		if !ok || table == "" || value == "" {
			return ""
		}
		return table + "=" + value
	}
	if len(c) < 6 || !strings.EqualFold(c[:6], "shard:") {
		return ""
	}
	name := strings.TrimSpace(c[6:])
	if name == "" {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if !isIdentCont(name[i]) && name[i] != '-' && name[i] != '.' {
			return ""
		}
	}
	return name
}

// mergeEmpty folds comment-only segments into the next segment (or, at
// the end, the previous one): Postgres skips empty statements, and the
// parts' texts must still cover the input.
func (s *scanner) mergeEmpty() {
	out := s.segs[:0]
	pendingStart := -1
	for _, seg := range s.segs {
		if seg.empty {
			if pendingStart < 0 {
				pendingStart = seg.start
			}
			continue
		}
		if pendingStart >= 0 {
			seg.start = pendingStart
			pendingStart = -1
		}
		out = append(out, seg)
	}
	if pendingStart >= 0 {
		if len(out) > 0 {
			out[len(out)-1].end = s.segs[len(s.segs)-1].end
		} else {
			last := s.segs[len(s.segs)-1]
			out = append(out, segment{start: pendingStart, end: last.end, empty: true, bodyStart: -1})
		}
	}
	s.segs = out
}

// skipQuoted returns the index after the closing quote of a string or
// quoted identifier opened just before i; doubled quotes are escapes, and
// so are backslashes in E-strings. Unterminated: len(sql).
func skipQuoted(sql string, i int, q byte, backslash bool) int {
	end, _ := closeQuote(sql, i, q, backslash)
	return end
}

// closeQuote is skipQuoted that also tells whether the quote was closed;
// an unterminated literal must stay in the text so that it fails to parse.
func closeQuote(sql string, i int, q byte, backslash bool) (int, bool) {
	for i < len(sql) {
		c := sql[i]
		switch {
		case backslash && c == '\\':
			i += 2
		case c == q:
			if i+1 < len(sql) && sql[i+1] == q {
				i += 2
				continue
			}
			return i + 1, true
		default:
			i++
		}
	}
	return len(sql), false
}

// dollarQuote recognises $tag$...$tag$ starting at i and returns the index
// after the closing delimiter (len(sql) when unterminated).
func dollarQuote(sql string, i int) (int, bool) {
	j := i + 1
	if j < len(sql) && sql[j] != '$' {
		if !isIdentStart(sql[j]) {
			return 0, false
		}
		for j < len(sql) && isIdentCont(sql[j]) && sql[j] != '$' {
			j++
		}
	}
	if j >= len(sql) || sql[j] != '$' {
		return 0, false
	}
	delim := sql[i : j+1]
	if k := strings.Index(sql[j+1:], delim); k >= 0 {
		return j + 1 + k + len(delim), true
	}
	return len(sql), true
}

// scanNumber scans digits[.digits][e[+-]digits] from i. ok is false when
// the number runs into identifier characters (0x1f, 1_000, 12abc): such
// tokens are left in the text for Postgres to judge.
func scanNumber(sql string, i int) (int, bool) {
	n := len(sql)
	j := i
	for j < n && isDigit(sql[j]) {
		j++
	}
	if j < n && sql[j] == '.' && !(j+1 < n && sql[j+1] == '.') {
		j++
		for j < n && isDigit(sql[j]) {
			j++
		}
	}
	if j < n && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < n && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		if k < n && isDigit(sql[k]) {
			for k < n && isDigit(sql[k]) {
				k++
			}
			j = k
		}
	}
	if j < n && isIdentCont(sql[j]) {
		for j < n && isIdentCont(sql[j]) {
			j++
		}
		return j, false
	}
	return j, true
}

// normalize writes seg's normalised text into s.norm (reused) and appends
// literal values to vals. Literal k (1-based in text order) becomes $k.
func (s *scanner) normalize(sql string, seg *segment, vals []byte, args [][]byte) ([]byte, [][]byte) {
	s.norm = s.norm[:0]
	if seg.hint != "" {
		s.norm = append(s.norm, "/*shard:"...)
		s.norm = append(s.norm, seg.hint...)
		s.norm = append(s.norm, "*/ "...)
	}
	pos := seg.bodyStart
	k := 0
	for _, e := range seg.edits {
		if e.start >= seg.bodyEnd {
			break
		}
		s.norm = append(s.norm, sql[pos:e.start]...)
		pos = e.end
		if e.kind == editComment {
			s.norm = append(s.norm, ' ')
			continue
		}
		if seg.maxParam > 0 {
			// A simple Query with its own $n is an error in Postgres
			// ("there is no parameter $1"); keep its literals in place
			// rather than number them after parameters nobody supplies.
			s.norm = append(s.norm, sql[e.start:e.end]...)
			continue
		}
		k++
		s.norm = append(s.norm, '$')
		s.norm = strconv.AppendInt(s.norm, int64(k), 10)
		from := len(vals)
		switch e.kind {
		case editNumber:
			vals = append(vals, sql[e.start:e.end]...)
		case editString:
			vals = appendUnquoted(vals, quotedBody(sql, e.start+1, e.end))
		case editEString:
			vals = appendEscaped(vals, quotedBody(sql, e.start+2, e.end))
		}
		args = append(args, vals[from:len(vals):len(vals)])
	}
	s.norm = append(s.norm, sql[pos:seg.bodyEnd]...)
	return vals, args
}

// quotedBody returns the text between the opening quote (ending just before
// from) and the closing quote at end-1. An unterminated string fails to
// parse later; here it only must not panic.
func quotedBody(sql string, from, end int) string {
	if end-1 < from {
		return ""
	}
	return sql[from : end-1]
}

// appendUnquoted appends the value of a '...' body, un-doubling quotes.
func appendUnquoted(dst []byte, body string) []byte {
	for i := 0; i < len(body); i++ {
		dst = append(dst, body[i])
		if body[i] == '\'' && i+1 < len(body) && body[i+1] == '\'' {
			i++
		}
	}
	return dst
}

// appendEscaped appends the value of an E'...' body, resolving the
// backslash escapes Postgres documents (4.1.2.2).
func appendEscaped(dst []byte, body string) []byte {
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\'' && i+1 < len(body) && body[i+1] == '\'' {
			dst = append(dst, '\'')
			i++
			continue
		}
		if c != '\\' || i+1 >= len(body) {
			dst = append(dst, c)
			continue
		}
		i++
		switch e := body[i]; e {
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
		case 'x':
			v, w := digitsValue(body[i+1:], 16, 2)
			if w == 0 {
				dst = append(dst, 'x')
				continue
			}
			dst = append(dst, byte(v))
			i += w
		case 'u', 'U':
			width := 4
			if e == 'U' {
				width = 8
			}
			v, w := digitsValue(body[i+1:], 16, width)
			if w != width {
				dst = append(dst, e)
				continue
			}
			dst = utf8.AppendRune(dst, rune(v))
			i += w
		default:
			if '0' <= e && e <= '7' {
				v, w := digitsValue(body[i:], 8, 3)
				dst = append(dst, byte(v))
				i += w - 1
				continue
			}
			dst = append(dst, e) // \\, \', and any other character stand for themselves
		}
	}
	return dst
}

// digitsValue reads up to max digits of the base from s.
func digitsValue(s string, base, max int) (v, width int) {
	for width < max && width < len(s) {
		d := strings.IndexByte("0123456789abcdef", lowerByte(s[width]))
		if d < 0 || d >= base {
			break
		}
		v = v*base + d
		width++
	}
	return v, width
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

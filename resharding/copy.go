package resharding

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyTable copies the rows of jt on src whose new owner is another shard
// to that owner, under the snapshot tx runs in. Rows are filtered by the
// target strategy (in SQL where ownerSQL has a form, else in Go) and upserted on
// their destination in batches, each committed on its own: a copy redone
// after a crash overwrites what an earlier attempt wrote.
func (j *Job) copyTable(ctx context.Context, tx pgx.Tx, src *source, jt *jobTable) (int64, error) {
	c := &copier{ctx: ctx, job: j, src: src, jt: jt, batches: map[string]*bytes.Buffer{}, counts: map[string]int{}}
	// When Postgres can compute the new owner, it filters: one COPY per
	// destination sends only that destination's rows, and no row is
	// located in Go.
	var queries []string
	var dests []string
	if jt.ref {
		// A reference table goes whole to every new shard.
		for _, d := range jt.refTo {
			queries = append(queries, fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", jt.info.colList(), jt.info.Ident))
			dests = append(dests, d)
		}
	} else if expr, ok := jt.place.newOwnerSQL(quoteIdent(jt.key), src.shard); ok {
		for _, d := range jt.place.destinations() {
			if d != src.shard {
				queries = append(queries, fmt.Sprintf("COPY (SELECT %s FROM %s WHERE %s = %s) TO STDOUT", jt.info.colList(), jt.info.Ident, expr, quoteLiteral(d)))
				dests = append(dests, d)
			}
		}
	} else {
		queries = []string{fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", jt.info.colList(), jt.info.Ident)}
		dests = []string{""}
	}
	for i, q := range queries {
		if dests[i] != "" {
			direct, err := j.directCopy(ctx, jt, src.shard, dests[i])
			if err != nil {
				return c.copied, err
			}
			if direct {
				n, err := j.copyStraight(ctx, tx, src, jt, q, dests[i])
				c.copied += n
				if err != nil {
					return c.copied, err
				}
				continue
			}
		}
		c.fixed = dests[i]
		if _, err := tx.Conn().PgConn().CopyTo(ctx, c, q); err != nil {
			return c.copied, fmt.Errorf("shard %s: copy %s: %w", src.shard, jt.name, err)
		}
		if c.err != nil {
			return c.copied, c.err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(c.batches)) {
		if err := c.flush(dst); err != nil {
			return c.copied, err
		}
	}
	return c.copied, nil
}

// directCopy reports whether dst holds none of the rows a copy of jt from
// src sends there, which is the case on a first copy: no proxy writes
// them to dst under the old map, and the stream starts after the copy.
// Then COPY can write them straight into the table. A copy redone after a
// crash finds some and upserts in batches instead.
func (j *Job) directCopy(ctx context.Context, jt *jobTable, src, dst string) (bool, error) {
	where := "true" // a reference table: the whole table comes from src
	if !jt.ref {
		expr, ok := jt.place.oldOwnerSQL(quoteIdent(jt.key), dst)
		if !ok {
			return false, nil
		}
		where = fmt.Sprintf("%s = %s", expr, quoteLiteral(src))
	}
	conn, err := j.dest(ctx, dst)
	if err != nil {
		return false, err
	}
	var empty bool
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT NOT EXISTS (SELECT FROM %s WHERE %s)", jt.info.Ident, where)).Scan(&empty); err != nil {
		return false, fmt.Errorf("shard %s: %w", dst, err)
	}
	return empty, nil
}

// copyStraight pipes COPY TO on the source into COPY FROM on dst, as a
// plain copy between the two servers does: both run at once, and no row
// is touched in Go. The COPY FROM is one transaction, so a crash leaves
// all or nothing of it.
func (j *Job) copyStraight(ctx context.Context, tx pgx.Tx, src *source, jt *jobTable, q, dst string) (int64, error) {
	conn, err := j.dest(ctx, dst)
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	// Owned here: it ends with the COPY TO (or when the reader is closed),
	// and is waited for below.
	go func() {
		_, err := tx.Conn().PgConn().CopyTo(ctx, pw, q)
		pw.CloseWithError(err)
		errc <- err
	}()
	tag, err := conn.PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (%s) FROM STDIN", jt.info.Ident, jt.info.colList()))
	pr.CloseWithError(err)
	srcErr := <-errc
	if srcErr != nil {
		return 0, fmt.Errorf("shard %s: copy %s: %w", src.shard, jt.name, srcErr)
	}
	if err != nil {
		return 0, fmt.Errorf("shard %s: copy %s into it: %w", dst, jt.name, err)
	}
	n := tag.RowsAffected()
	j.log.Debug("copied straight", "table", jt.name, "from", src.shard, "to", dst, "rows", n)
	return n, j.addCopied(ctx, src, n)
}

// copier is the io.Writer COPY TO writes into: it splits the text format
// into rows (a row never contains a raw newline: COPY escapes it), routes
// each by its key and batches rows per destination. Memory is bounded by
// BatchRows rows per destination.
type copier struct {
	ctx     context.Context
	job     *Job
	src     *source
	jt      *jobTable
	partial []byte
	batches map[string]*bytes.Buffer
	counts  map[string]int
	copied  int64
	err     error
	fixed   string // the destination of every row, when the source filtered them
}

func (c *copier) Write(p []byte) (int, error) {
	n := len(p)
	if len(c.partial) > 0 {
		p = append(c.partial, p...)
		c.partial = c.partial[:0]
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.partial = append(c.partial[:0], p...)
			return n, nil
		}
		if err := c.row(p[:i+1]); err != nil {
			c.err = err
			return 0, err
		}
		p = p[i+1:]
	}
}

func (c *copier) row(line []byte) error {
	if c.fixed != "" {
		return c.add(c.fixed, line)
	}
	field, ok := copyField(line[:len(line)-1], c.jt.info.KeyCol)
	if !ok {
		return fmt.Errorf("table %s on shard %s: a row has a NULL shard key", c.jt.name, c.src.shard)
	}
	to, err := c.jt.place.newOwner(c.ctx, field, c.src.shard)
	if err != nil {
		return fmt.Errorf("table %s on shard %s: key %q: %w", c.jt.name, c.src.shard, field, err)
	}
	if to == c.src.shard {
		return nil
	}
	return c.add(to, line)
}

func (c *copier) add(to string, line []byte) error {
	b := c.batches[to]
	if b == nil {
		b = &bytes.Buffer{}
		c.batches[to] = b
	}
	b.Write(line)
	c.counts[to]++
	if c.counts[to] >= c.job.opts.BatchRows {
		return c.flush(to)
	}
	return nil
}

// flush upserts one destination's batch: COPY into a temporary staging
// table, then INSERT ... ON CONFLICT (primary key) DO UPDATE, in one
// transaction.
func (c *copier) flush(dst string) error {
	b := c.batches[dst]
	if b == nil || b.Len() == 0 {
		return nil
	}
	conn, err := c.job.dest(c.ctx, dst)
	if err != nil {
		return err
	}
	ti := c.jt.info
	stage := "shardproxy_stage_" + sanitize(strings.ReplaceAll(c.jt.name, ".", "_"))
	err = pgx.BeginFunc(c.ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(c.ctx, fmt.Sprintf("CREATE TEMP TABLE IF NOT EXISTS %s (LIKE %s) ON COMMIT DELETE ROWS", stage, ti.Ident)); err != nil {
			return err
		}
		if _, err := tx.Conn().PgConn().CopyFrom(c.ctx, bytes.NewReader(b.Bytes()), fmt.Sprintf("COPY %s (%s) FROM STDIN", stage, ti.colList())); err != nil {
			return err
		}
		_, err := tx.Exec(c.ctx, fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s %s", ti.Ident, ti.colList(), ti.colList(), stage, ti.onConflict()))
		return err
	})
	if err != nil {
		return fmt.Errorf("shard %s: upsert into %s: %w", dst, ti.Name, err)
	}
	n := c.counts[dst]
	c.copied += int64(n)
	b.Reset()
	c.counts[dst] = 0
	return c.job.addCopied(c.ctx, c.src, int64(n))
}

// copyField returns field i of a COPY text row, unescaped; ok is false for
// NULL (\N).
func copyField(line []byte, i int) (string, bool) {
	for ; i > 0; i-- {
		j := bytes.IndexByte(line, '\t')
		if j < 0 {
			return "", false
		}
		line = line[j+1:]
	}
	if j := bytes.IndexByte(line, '\t'); j >= 0 {
		line = line[:j]
	}
	if string(line) == `\N` {
		return "", false
	}
	if bytes.IndexByte(line, '\\') < 0 {
		return string(line), true
	}
	var out []byte
	for k := 0; k < len(line); k++ {
		ch := line[k]
		if ch != '\\' || k+1 == len(line) {
			out = append(out, ch)
			continue
		}
		k++
		switch e := line[k]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'x':
			// \xHH: one or two hex digits.
			v, n := 0, 0
			for n < 2 && k+1 < len(line) && isHex(line[k+1]) {
				k++
				v = v*16 + hexVal(line[k])
				n++
			}
			out = append(out, byte(v))
		default:
			if e >= '0' && e <= '7' {
				v, n := int(e-'0'), 1
				for n < 3 && k+1 < len(line) && line[k+1] >= '0' && line[k+1] <= '7' {
					k++
					v = v*8 + int(line[k]-'0')
					n++
				}
				out = append(out, byte(v))
			} else {
				out = append(out, e)
			}
		}
	}
	return string(out), true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(c byte) int {
	switch {
	case c >= 'a':
		return int(c-'a') + 10
	case c >= 'A':
		return int(c-'A') + 10
	}
	return int(c - '0')
}

// ensureSchema creates jt on dst from the source's schema (pg_dump
// --schema-only) when dst lacks it.
func (j *Job) ensureSchema(ctx context.Context, jt *jobTable, srcShard, dst string) error {
	conn, err := j.dest(ctx, dst)
	if err != nil {
		return err
	}
	if _, ok, err := inspectTable(ctx, conn, jt.name, jt.key); err != nil || ok {
		return err
	}
	bin, err := pgDump()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bin, "--schema-only", "--no-owner", "--no-privileges",
		"--table", jt.info.Ident, "--dbname", shardDSN(j.cur, srcShard)).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return fmt.Errorf("pg_dump %s from shard %s: %v %s", jt.name, srcShard, err, stderr)
	}
	// pg_dump sets search_path to ''; run it on a connection of its own.
	c, err := connect(ctx, shardDSN(j.next, dst))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	// Newer pg_dumps wrap the script in psql meta-commands (\restrict);
	// those are for psql, not the server.
	var script strings.Builder
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if !strings.HasPrefix(line, "\\") {
			script.WriteString(line)
		}
	}
	if _, err := c.PgConn().Exec(ctx, script.String()).ReadAll(); err != nil {
		return fmt.Errorf("shard %s: creating %s: %w", dst, jt.name, err)
	}
	j.log.Info("created table on destination", "table", jt.name, "shard", dst, "from", srcShard)
	return nil
}

// pgDump finds pg_dump on PATH or under /usr/lib/postgresql/*/bin.
func pgDump() (string, error) {
	if p, err := exec.LookPath("pg_dump"); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	if len(m) > 0 {
		slices.Sort(m)
		return m[len(m)-1], nil
	}
	if _, err := os.Stat("/usr/bin/pg_dump"); err == nil {
		return "/usr/bin/pg_dump", nil
	}
	return "", fmt.Errorf("pg_dump not found: needed to create tables on new shards")
}

package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a shard map, located in its file.
type Problem struct {
	File   string // config file name, "<input>" when parsed from bytes
	Line   int    // 1-based YAML line, 0 when unknown
	Column int    // 1-based YAML column, 0 when unknown
	Path   string // YAML path of the offending key, e.g. "strategies.by_id.ranges[1].upper"
	Msg    string
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in one file, ordered by
// position, so that a user fixes them all in one round instead of one per
// run of check-config.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *ValidationError) sort() {
	sort.SliceStable(e.Problems, func(i, j int) bool {
		a, b := e.Problems[i], e.Problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied when a key is absent.
const (
	DefaultListen          = "127.0.0.1:6432"
	DefaultAdminDatabase   = "shardproxy"
	DefaultPoolSize        = 20
	DefaultAcquireTimeout  = 5 * time.Second
	DefaultPlanCacheSize   = 10000
	DefaultMergeMemory     = 64 << 20
	DefaultShutdownTimeout = 30 * time.Second
	DefaultPartitions      = 271
)

// DefaultHealthCheckInterval is the period of the shard health checks.
const DefaultHealthCheckInterval = 5 * time.Second

// Load reads and validates the shard map at path. A returned error is a
// *ValidationError (naming file:line of every problem) unless the file
// could not be read at all.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse validates a shard map held in memory. path is used in messages and
// to resolve relative TLS file names; it may be "".
func Parse(data []byte, path string) (*Config, error) {
	d := &decoder{file: path}
	if d.file == "" {
		d.file = "<input>"
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.syntaxError(err)
		return nil, d.result()
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root == nil || root.ShortTag() == "!!null" {
		d.probs = append(d.probs, Problem{File: d.file, Msg: "empty configuration (at least shards and users are required)"})
		return nil, d.result()
	}
	c := d.config(root, path)
	if err := d.result(); err != nil {
		return nil, err
	}
	return c, nil
}

// decoder walks the yaml.Node tree by hand, rather than unmarshalling into
// tagged structs, so that every problem keeps its line and unknown keys are
// caught instead of dropped.
type decoder struct {
	file  string
	probs []Problem
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	p := Problem{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	d.probs = append(d.probs, p)
}

func (d *decoder) result() error {
	if len(d.probs) == 0 {
		return nil
	}
	e := &ValidationError{Problems: d.probs}
	e.sort()
	return e
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) syntaxError(err error) {
	p := Problem{File: d.file, Msg: err.Error()}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	d.probs = append(d.probs, p)
}

// entry is one key/value pair of a YAML mapping.
type entry struct {
	key, val *yaml.Node
}

// deref follows YAML aliases (*name) to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.ShortTag() == "!!null" {
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}

// entries returns the pairs of mapping n in YAML order, reporting
// duplicate keys as duplicate <what>. ok is false (after reporting) when n
// is not a mapping.
func (d *decoder) entries(n *yaml.Node, path, what string) (out []entry, ok bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return nil, false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, path, "duplicate %s %q (first at line %d)", what, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, entry{k, v})
	}
	return out, true
}

// fields decodes a mapping with a fixed set of keys, reporting unknown ones
// so that a typo is an error instead of a silently ignored setting.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	es, ok := d.entries(n, path, "key")
	if !ok {
		return nil
	}
	out := make(map[string]*yaml.Node, len(es))
	for _, e := range es {
		if !contains(allowed, e.key.Value) {
			msg := fmt.Sprintf("unknown key %q", e.key.Value)
			if s := suggest(e.key.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(e.key, path, "%s", msg)
			continue
		}
		out[e.key.Value] = e.val
	}
	return out
}

// str decodes a scalar as a string. Missing (nil) gives "", false silently.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		d.errorf(n, path, "expected a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	n = deref(n)
	if n == nil {
		return 0, false
	}
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		d.errorf(n, path, "expected an integer, got %s", kindName(n))
		return 0, false
	}
	return i, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	n = deref(n)
	if n == nil {
		return false, false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.errorf(n, path, "expected true or false, got %s", kindName(n))
		return false, false
	}
	return b, true
}

// list returns the items of a sequence (nil, after reporting, otherwise).
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = deref(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed key closest to a misspelt one, if it is
// close enough (at most 2 edits, and fewer for short keys) to be a typo.
func suggest(key string, allowed []string) string {
	best, bestDist := "", 3
	for _, a := range allowed {
		if dist := editDistance(key, a); dist < bestDist && dist <= len(key)/3 {
			best, bestDist = a, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package config

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Keys each strategy type accepts besides "type" and "key_type".
var strategyKeys = map[string][]string{
	StrategyHash:       {"shards"},
	StrategyConsistent: {"shards", "partitions"},
	StrategyRange:      {"ranges"},
	StrategyDirectory:  {"table", "fallback"},
}

// strategyPos keeps the YAML nodes that second-pass checks point at.
type strategyPos struct {
	keyType  *yaml.Node // explicit key_type, or nil
	fallback *yaml.Node
}

func (d *decoder) strategies(n *yaml.Node, shards map[string]bool, haveMetadata bool) []Strategy {
	if !present(n) {
		return nil
	}
	var out []Strategy
	var pos []strategyPos
	es, _ := d.entries(n, "strategies", "strategy")
	for _, e := range es {
		path := join("strategies", e.key.Value)
		if e.key.Value == "" {
			d.errorf(e.key, "strategies", "strategy name must not be empty")
			continue
		}
		s, p, ok := d.strategy(e, path, shards)
		if !ok {
			// Remember the name anyway, so that tables using a broken
			// strategy do not report a second, misleading "unknown strategy".
			out = append(out, Strategy{Name: e.key.Value, Line: e.key.Line})
			pos = append(pos, p)
			continue
		}
		if s.Type == StrategyDirectory && !haveMetadata {
			d.errorf(e.key, path, "directory strategy needs metadata.dsn (the directory lives in the metadata database)")
		}
		out = append(out, s)
		pos = append(pos, p)
	}
	// Directories resolve their fallback once every strategy is known,
	// whatever the YAML order.
	for i := range out {
		s := &out[i]
		if s.Type != StrategyDirectory {
			continue
		}
		path := join("strategies", s.Name)
		var fb *Strategy
		for j := range out {
			if out[j].Name == s.Fallback {
				fb = &out[j]
			}
		}
		switch {
		case s.Fallback == "":
			continue // already reported
		case fb == nil:
			d.errorf(pos[i].fallback, path+".fallback", "unknown strategy %q", s.Fallback)
			continue
		case fb.Type == "":
			continue // the fallback itself is broken and reported
		case fb.Type == StrategyDirectory:
			d.errorf(pos[i].fallback, path+".fallback", "%q is a directory strategy; the fallback must place keys by hash, range or consistent", s.Fallback)
			continue
		}
		if s.KeyType != "" && fb.KeyType != "" && s.KeyType != fb.KeyType {
			d.errorf(pos[i].keyType, path+".key_type", "%s differs from fallback %q's key_type %s", s.KeyType, fb.Name, fb.KeyType)
		}
		if s.KeyType == "" {
			s.KeyType = fb.KeyType
		}
	}
	return out
}

// strategy decodes one strategy; ok is false when its type is unusable.
func (d *decoder) strategy(e entry, path string, shards map[string]bool) (Strategy, strategyPos, bool) {
	s := Strategy{Name: e.key.Value, Line: e.key.Line}
	var p strategyPos
	// Peek at the type first: which other keys are allowed depends on it.
	var typeNode *yaml.Node
	m := deref(e.val)
	if m.Kind != yaml.MappingNode {
		d.errorf(m, path, "expected a mapping, got %s", kindName(m))
		return s, p, false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "type" {
			typeNode = m.Content[i+1]
		}
	}
	if typeNode == nil {
		d.errorf(e.key, path, "type is required (hash, range, consistent or directory)")
		return s, p, false
	}
	typ, ok := d.str(typeNode, path+".type")
	if !ok {
		return s, p, false
	}
	extra, known := strategyKeys[typ]
	if !known {
		d.errorf(typeNode, path+".type", "unknown strategy type %q (want hash, range, consistent or directory)", typ)
		return s, p, false
	}
	s.Type = typ
	f := d.fields(e.val, path, append([]string{"type", "key_type"}, extra...)...)
	if kt, ok := d.str(f["key_type"], path+".key_type"); ok {
		p.keyType = f["key_type"]
		canon, known := keyTypeNames[strings.ToLower(kt)]
		switch {
		case !known:
			d.errorf(f["key_type"], path+".key_type", "unknown key_type %q (want int, text, uuid, timestamp or timestamptz)", kt)
		case isTimestamp(canon) && (typ == StrategyHash || typ == StrategyConsistent):
			d.errorf(f["key_type"], path+".key_type", "timestamp keys are supported by range (and directory) strategies only")
		default:
			s.KeyType = canon
		}
	}
	switch typ {
	case StrategyHash, StrategyConsistent:
		if p.keyType == nil {
			s.KeyType = KeyInt
		}
		s.Shards = d.shardList(e.key, f["shards"], path+".shards", shards)
		s.Partitions = 0
		if typ == StrategyConsistent {
			s.Partitions = DefaultPartitions
			if n, ok := d.integer(f["partitions"], path+".partitions"); ok {
				if n < 1 {
					d.errorf(f["partitions"], path+".partitions", "must be at least 1")
				}
				s.Partitions = n
			}
		}
	case StrategyRange:
		d.ranges(&s, e.key, f["ranges"], path, p.keyType != nil, shards)
	case StrategyDirectory:
		if t, ok := d.str(f["table"], path+".table"); ok && t != "" {
			name, err := normalizeTableName(t)
			if err != nil {
				d.errorf(f["table"], path+".table", "invalid table name %q: %v", t, err)
			}
			s.Table = name
		} else if f["table"] == nil {
			d.errorf(e.key, path, "directory strategy needs table (the lookup table in the metadata database)")
		}
		if fb, ok := d.str(f["fallback"], path+".fallback"); ok && fb != "" {
			s.Fallback = fb
			p.fallback = f["fallback"]
		} else if f["fallback"] == nil {
			d.errorf(e.key, path, "directory strategy needs fallback (the strategy that places new keys)")
		}
	}
	return s, p, true
}

// shardList decodes the shards of a hash or consistent strategy.
func (d *decoder) shardList(key, n *yaml.Node, path string, shards map[string]bool) []string {
	items, ok := d.list(n, path)
	if !ok && n == nil {
		d.errorf(key, path, "at least one shard is required")
	}
	if ok && len(items) == 0 {
		d.errorf(n, path, "at least one shard is required")
	}
	var out []string
	for i, item := range items {
		name, ok := d.str(item, index(path, i))
		if !ok {
			continue
		}
		switch {
		case !shards[name]:
			d.errorf(item, index(path, i), "unknown shard %q", name)
		case contains(out, name):
			// A shard listed twice would silently own twice the keys.
			d.errorf(item, index(path, i), "shard %q listed twice", name)
		}
		out = append(out, name)
	}
	return out
}

// ranges decodes a range strategy's bounds, inferring key_type from them
// when it is not given, and checks that they ascend strictly.
func (d *decoder) ranges(s *Strategy, key, n *yaml.Node, path string, explicitType bool, shards map[string]bool) {
	rpath := path + ".ranges"
	items, ok := d.list(n, rpath)
	if !ok && n == nil {
		d.errorf(key, path, "range strategy needs ranges")
	}
	if ok && len(items) == 0 {
		d.errorf(n, rpath, "range strategy needs at least one range")
	}
	uppers := make([]*yaml.Node, len(items))
	allInts := true
	for i, item := range items {
		ipath := index(rpath, i)
		f := d.fields(item, ipath, "upper", "shard")
		if f == nil {
			continue
		}
		var r Range
		if u := deref(f["upper"]); u == nil || u.ShortTag() == "!!null" {
			r.Unbounded = true
		} else if u.Kind != yaml.ScalarNode {
			d.errorf(u, ipath+".upper", "expected a scalar bound or null, got %s", kindName(u))
		} else {
			uppers[i] = u
			r.Upper = u.Value
			allInts = allInts && u.ShortTag() == "!!int"
		}
		if sh, ok := d.str(f["shard"], ipath+".shard"); ok {
			if !shards[sh] {
				d.errorf(f["shard"], ipath+".shard", "unknown shard %q", sh)
			}
			r.Shard = sh
		} else if f["shard"] == nil {
			d.errorf(item, ipath, "shard is required")
		}
		s.Ranges = append(s.Ranges, r)
	}
	if !explicitType {
		if !allInts {
			d.errorf(key, path, "key_type required when bounds are not integers")
			return
		}
		s.KeyType = KeyInt
	}
	if s.KeyType == "" || len(s.Ranges) != len(items) {
		return // unknown key_type or malformed entries: reported above
	}
	prev := -1 // index of the previous bounded range
	for i := range s.Ranges {
		r := &s.Ranges[i]
		ipath := index(rpath, i)
		if r.Unbounded {
			if i != len(s.Ranges)-1 {
				d.errorf(items[i], ipath, "only the last range may be unbounded (upper: null)")
			}
			continue
		}
		if uppers[i] == nil {
			continue
		}
		if s.KeyType == KeyInt && uppers[i].ShortTag() == "!!int" {
			// YAML integers may be written 0x10, 0o17 or 1_000.
			var v int64
			if uppers[i].Decode(&v) == nil {
				r.Upper = strconv.FormatInt(v, 10)
			}
		}
		canon, err := canonicalBound(s.KeyType, r.Upper)
		if err != nil {
			d.errorf(uppers[i], ipath+".upper", "%v", err)
			continue
		}
		r.Upper = canon
		if prev >= 0 && compareBounds(s.KeyType, s.Ranges[prev].Upper, canon) >= 0 {
			d.errorf(uppers[i], ipath+".upper", "bound %s must be greater than the previous bound %s (ranges ascend)", canon, s.Ranges[prev].Upper)
		}
		prev = i
	}
}

// tables decodes the tables mapping; names are folded like SQL identifiers.
func (d *decoder) tables(n *yaml.Node, strategies []Strategy) []Table {
	if !present(n) {
		return nil
	}
	declared := map[string]bool{}
	for _, s := range strategies {
		declared[s.Name] = true
	}
	var out []Table
	seen := map[string]int{}
	es, _ := d.entries(n, "tables", "table")
	for _, e := range es {
		path := join("tables", e.key.Value)
		name, err := normalizeTableName(e.key.Value)
		if err != nil {
			d.errorf(e.key, path, "invalid table name: %v", err)
			continue
		}
		if first, dup := seen[name]; dup {
			d.errorf(e.key, path, "duplicate table %s (first at line %d)", name, first)
			continue
		}
		seen[name] = e.key.Line
		t := Table{Name: name, Line: e.key.Line}
		f := d.fields(e.val, path, "key", "strategy", "reference")
		if f == nil {
			continue
		}
		t.Reference, _ = d.boolean(f["reference"], path+".reference")
		if k, ok := d.str(f["key"], path+".key"); ok {
			col, err := normalizeColumn(k)
			if err != nil {
				d.errorf(f["key"], path+".key", "invalid column %q: %v", k, err)
			}
			t.Key = col
		}
		if s, ok := d.str(f["strategy"], path+".strategy"); ok {
			if !declared[s] {
				d.errorf(f["strategy"], path+".strategy", "unknown strategy %q", s)
			}
			t.Strategy = s
		}
		switch {
		case t.Reference && (f["key"] != nil || f["strategy"] != nil):
			d.errorf(e.key, path, "a reference table has no key or strategy")
		case t.Reference:
		case f["key"] == nil && f["strategy"] == nil:
			d.errorf(e.key, path, "needs key and strategy, or reference: true")
		case f["key"] == nil:
			d.errorf(e.key, path, "strategy %s needs a key column", t.Strategy)
		case f["strategy"] == nil:
			d.errorf(e.key, path, "key needs a strategy")
		}
		out = append(out, t)
	}
	return out
}

package router

import (
	"sync"
	"sync/atomic"
)

// planCache is a bounded LRU of analysed statements keyed by normalised
// text. One mutex is enough: a hit is a map lookup and two pointer swaps,
// far shorter than anything else on the statement path.
type planCache struct {
	mu   sync.Mutex
	max  int
	m    map[string]*cacheEntry
	head cacheEntry // sentinel of a circular list, most recent first

	// facts are the router's current catalog facts: a statement
	// analysed with older ones is not stored.
	facts *atomic.Pointer[catalog]

	// hits and misses count lookups for metrics; atomic so that reading
	// them never takes mu.
	hits, misses atomic.Uint64
}

// cacheEntry holds st, or st == nil when the normalised text does not
// parse but the original does (SET x = 5: SET takes no parameters), so
// that the next lookup goes straight to the original text.
type cacheEntry struct {
	key        string
	st         *Statement
	prev, next *cacheEntry
}

func newPlanCache(max int) *planCache {
	if max <= 0 {
		max = 10000
	}
	c := &planCache{max: max, m: make(map[string]*cacheEntry, min(max, 1024))}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// get returns the entry for key. key may alias a reused buffer: Go does
// not allocate for m[string(b)], and get keeps no reference to it.
func (c *planCache) get(key []byte) (*cacheEntry, bool) {
	c.mu.Lock()
	e, ok := c.m[string(key)]
	if ok && c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	c.mu.Unlock()
	// An entry without a statement only redirects to the original text,
	// whose own lookup is counted: it is neither a hit nor a miss.
	switch {
	case !ok:
		c.misses.Add(1)
	case e.st != nil:
		c.hits.Add(1)
	}
	return e, ok
}

// put stores st (nil: "use the original text") under key, evicting the
// least recently used entry when full.
func (c *planCache) put(key string, st *Statement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st != nil && c.facts != nil && st.facts != c.facts.Load() {
		return // the facts changed during the analysis: clear missed it
	}
	if e, ok := c.m[key]; ok {
		e.st = st
		return
	}
	if len(c.m) >= c.max {
		old := c.head.prev
		c.unlink(old)
		delete(c.m, old.key)
	}
	e := &cacheEntry{key: key, st: st}
	c.m[key] = e
	c.pushFront(e)
}

// clear drops every entry (the counters stay).
func (c *planCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.head.prev, c.head.next = &c.head, &c.head
}

func (c *planCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *planCache) unlink(e *cacheEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
}

func (c *planCache) pushFront(e *cacheEntry) {
	e.prev = &c.head
	e.next = c.head.next
	c.head.next.prev = e
	c.head.next = e
}

package pool

// HungUp tells whether the pool's hang-up watch has marked c.
func HungUp(c *Conn) bool { return c.hungUp.Load() }

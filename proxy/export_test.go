package proxy

import (
	"context"
	"time"
)

// SetCommitWindowWait sets how long a commit phase waits for read windows
// (visibility.go) until the returned restore is called.
func SetCommitWindowWait(d time.Duration) (restore func()) {
	old := windowWait.Swap(int64(d))
	return func() { windowWait.Store(old) }
}

// SetCommitQuietAfter sets how long after a commit read windows are kept
// short (visibility.go) until the returned restore is called.
func SetCommitQuietAfter(d time.Duration) (restore func()) {
	old := quietAfter.Swap(int64(d))
	return func() { quietAfter.Store(old) }
}

// CheckShardsNow runs one health check of every shard, as the periodic one
// does (the tests' fixtures set health_check_interval: 1h).
func (s *Server) CheckShardsNow(ctx context.Context) {
	s.checkShards(ctx, s.Runtime(), maxCheckTimeout)
}

// SetAfterGate makes every statement call f (with the shards it is about
// to take backends on) after it passed the PAUSE gate, until restore.
func (s *Server) SetAfterGate(f func(shards []string)) (restore func()) {
	s.afterGate.Store(&f)
	return func() { s.afterGate.Store(nil) }
}

package store

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// applyCounters are bumped by ApplyBatch, read by Metrics.
type applyCounters struct {
	entries, commands, corrupt atomic.Uint64
	// restores counts snapshot streams restored; streams and streamBytes
	// the state streams opened for followers and the bytes read from them.
	restores, streams, streamBytes atomic.Uint64
	// writeFailures is 1 once a pebble write failed in ApplyBatch.
	writeFailures atomic.Uint64
}

// StoreMetrics is a point-in-time view for the metrics endpoint. Counters
// count since Open.
type StoreMetrics struct {
	AppliedIndex uint64
	// Entries and Commands applied (replayed raft entries not counted);
	// CorruptEntries did not decode.
	Entries, Commands, CorruptEntries uint64
	// Restores of snapshot streams from a leader; StateStreams opened for
	// followers and StateStreamBytes read from them.
	Restores, StateStreams, StateStreamBytes uint64
	// WriteFailed is 1 once a pebble write failed in ApplyBatch (ErrFailed).
	WriteFailed uint64
	// DiskBytes is pebble's on-disk size; L0Files and CompactionDebtBytes
	// show whether compaction keeps up (write stalls follow when not).
	DiskBytes           uint64
	L0Files             int64
	CompactionDebtBytes uint64
	// BlockCacheHits and BlockCacheMisses of pebble's block cache.
	BlockCacheHits, BlockCacheMisses int64
}

// Metrics returns the current metrics; it costs one pebble Metrics call.
func (s *Store) Metrics() StoreMetrics {
	m := StoreMetrics{
		AppliedIndex:   s.applied.Load(),
		Entries:        s.counters.entries.Load(),
		Commands:       s.counters.commands.Load(),
		CorruptEntries: s.counters.corrupt.Load(),

		Restores:         s.counters.restores.Load(),
		StateStreams:     s.counters.streams.Load(),
		StateStreamBytes: s.counters.streamBytes.Load(),
		WriteFailed:      s.counters.writeFailures.Load(),
	}
	_ = s.read(func(db *pebble.DB) error {
		pm := db.Metrics()
		m.DiskBytes = pm.DiskSpaceUsage()
		m.L0Files = pm.Levels[0].TablesCount
		m.CompactionDebtBytes = pm.Compact.EstimatedDebt
		m.BlockCacheHits, m.BlockCacheMisses = pm.BlockCache.Hits, pm.BlockCache.Misses
		return nil
	})
	return m
}

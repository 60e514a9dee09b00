package store

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Bounds of Config. Each says why it is there.
const (
	// expireBatchMaxLimit caps Config.ExpireBatchMax: one OpExpire runs
	// inside one ApplyBatch on every replica, so its work must stay small
	// enough not to stall the apply loop (a million releases is ~seconds).
	expireBatchMaxLimit = 1_000_000
	// cacheBytesMin keeps pebble's block cache big enough for the index and
	// filter blocks of a working set; below it every read goes to disk.
	cacheBytesMin = 8 << 20
	// cacheBytesMax is a sanity bound (the machines have 24 GiB).
	cacheBytesMax = 16 << 30
	// memTableBytesMin and memTableBytesMax bound pebble's memtable: too
	// small flushes constantly, too large makes restarts replay a long WAL.
	memTableBytesMin = 4 << 20
	memTableBytesMax = 1 << 30
	// accountCacheMaxLimit bounds Config.AccountCacheMax (~300 bytes an
	// entry: 10M is ~3 GiB).
	accountCacheMaxLimit = 10_000_000
	// cacheMemTablesMin is how many memtables the cache must hold besides
	// blocks: pebble reserves memtable memory out of the block cache (the
	// mutable one plus those being flushed), and a cache no larger than
	// that holds no blocks at all (measured: every read went to disk).
	cacheMemTablesMin = 4
	// walBytesPerSyncMax bounds Config.WALBytesPerSync: beyond a few MiB
	// the write-back comes in bursts again.
	walBytesPerSyncMax = 64 << 20
	// backgroundNiceMax is the lowest priority Linux has (nice 19).
	backgroundNiceMax = 19
)

// Config configures a Store.
type Config struct {
	// Dir is the pebble directory. Restore also uses Dir+".restore",
	// Dir+".restore.ok" and Dir+".old" beside it, so the parent must be
	// writable.
	Dir string `yaml:"-"`
	// Logger receives the store's and pebble's log lines; nil discards.
	Logger *slog.Logger `yaml:"-"`
	// FS is pebble's file system; nil is the OS's. Tests inject faults
	// with pebble's vfs/errorfs (a write failing with ENOSPC).
	FS vfs.FS `yaml:"-"`
	// ExpireBatchMax is the most holds one OpExpire releases, and
	// separately the most idempotency records it prunes. The rest waits for
	// the next OpExpire, so a backlog never turns one log entry into an
	// unbounded amount of work on every replica.
	ExpireBatchMax int `yaml:"expire_batch_max"`
	// CacheBytes is pebble's block cache. Pebble reserves memtable memory
	// out of it, so it must exceed cacheMemTablesMin × MemTableBytes.
	CacheBytes int64 `yaml:"cache_bytes"`
	// MemTableBytes is pebble's memtable size.
	MemTableBytes uint64 `yaml:"memtable_bytes"`
	// AccountCacheMax is how many committed accounts (and card-hash →
	// account mappings) ApplyBatch keeps decoded in memory across batches,
	// so a hot account costs no pebble read. 0 disables the cache. It
	// never changes results: it holds exactly what pebble holds.
	AccountCacheMax int `yaml:"account_cache_max"`
	// WALBytesPerSync makes the kernel write pebble's WAL back every so
	// many bytes (sync_file_range; it is not an fsync). We commit with
	// NoSync, so with 0 a whole memtable's worth of WAL sits dirty in the
	// page cache until pebble closes the WAL at memtable rotation and
	// fsyncs it in one go: measured 20–40 ms during which commits and the
	// raft log's fsyncs on the same disk wait (BenchmarkFlushStall,
	// docs/BENCHMARKS.md). 64 KiB keeps that under 5 ms.
	WALBytesPerSync int `yaml:"wal_bytes_per_sync"`
	// BackgroundNice is the nice value (Linux) of the threads that run
	// pebble's flushes and compactions; 0 leaves them at normal priority.
	// Each flush is a burst of CPU (~0.4 s per 64 MiB memtable) that, at
	// normal priority, queues partner requests behind it on a busy
	// machine; lowered, it runs in the CPU the request path leaves idle
	// (docs/BENCHMARKS.md, "Cluster tail latency").
	BackgroundNice int `yaml:"background_nice"`
}

// DefaultConfig returns a Config with every field but Dir set.
func DefaultConfig() Config {
	return Config{
		ExpireBatchMax:  10_000,
		CacheBytes:      512 << 20,
		MemTableBytes:   64 << 20,
		AccountCacheMax: 200_000,
		WALBytesPerSync: 64 << 10,
		BackgroundNice:  10,
	}
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("store: invalid config")

// Validate reports the first field out of bounds.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrInvalidConfig)
	case c.ExpireBatchMax < 1 || c.ExpireBatchMax > expireBatchMaxLimit:
		return fmt.Errorf("%w: ExpireBatchMax %d not in [1, %d]", ErrInvalidConfig, c.ExpireBatchMax, expireBatchMaxLimit)
	case c.CacheBytes < cacheBytesMin || c.CacheBytes > cacheBytesMax:
		return fmt.Errorf("%w: CacheBytes %d not in [%d, %d]", ErrInvalidConfig, c.CacheBytes, cacheBytesMin, cacheBytesMax)
	case c.MemTableBytes < memTableBytesMin || c.MemTableBytes > memTableBytesMax:
		return fmt.Errorf("%w: MemTableBytes %d not in [%d, %d]", ErrInvalidConfig, c.MemTableBytes, memTableBytesMin, memTableBytesMax)
	case c.AccountCacheMax < 0 || c.AccountCacheMax > accountCacheMaxLimit:
		return fmt.Errorf("%w: AccountCacheMax %d not in [0, %d]", ErrInvalidConfig, c.AccountCacheMax, accountCacheMaxLimit)
	case c.WALBytesPerSync < 0 || c.WALBytesPerSync > walBytesPerSyncMax:
		return fmt.Errorf("%w: WALBytesPerSync %d not in [0, %d]", ErrInvalidConfig, c.WALBytesPerSync, walBytesPerSyncMax)
	case c.BackgroundNice < 0 || c.BackgroundNice > backgroundNiceMax:
		return fmt.Errorf("%w: BackgroundNice %d not in [0, %d]", ErrInvalidConfig, c.BackgroundNice, backgroundNiceMax)
	case c.CacheBytes < cacheMemTablesMin*int64(c.MemTableBytes)+cacheBytesMin:
		return fmt.Errorf("%w: CacheBytes %d leaves no room for blocks beside %d memtables of %d bytes",
			ErrInvalidConfig, c.CacheBytes, cacheMemTablesMin, c.MemTableBytes)
	}
	return nil
}

// Package store is switchd's deterministic state machine: the ledger
// (accounts, transfers, holds), idempotency records and their indexes, kept
// in pebble and changed only by raft log entries (see DESIGN.md).
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Read limits.
const (
	// listLimitDefault is the page size of Accounts and Transfers when
	// the caller gives none.
	listLimitDefault = 100
	// listLimitMax caps one page: ops pages through, a page never holds
	// a whole ledger in memory.
	listLimitMax = 10_000
	// bloomBitsPerKey gives a ~1% false-positive rate, the usual trade
	// of filter memory against wasted block reads.
	bloomBitsPerKey = 10
)

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("store: closed")

// ErrFailed: a write to pebble failed inside ApplyBatch (e.g. no space
// left on device). The store applies nothing more until it is reopened:
// ApplyBatch answers every later entry with an error wrapping ErrFailed,
// Snapshot refuses, and Failed is closed. The raft log still holds every
// entry not applied, so a restart replays them (see DESIGN.md, "A failed
// write").
var ErrFailed = errors.New("store: ledger write failed; restart to replay the raft log")

// Store is the FSM. Apply, ApplyBatch, Snapshot and Restore follow
// hashicorp/raft's rules (one caller at a time); every read method may be
// called concurrently with them and sees whole applied batches only.
type Store struct {
	cfg Config
	log *slog.Logger

	// applyMu serializes ApplyBatch, Snapshot and Restore. raft already
	// calls them from one goroutine; the mutex makes misuse (tests, tools)
	// safe instead of corrupting state.
	applyMu sync.Mutex

	// mu protects db (the pointer and its open state). Reads,
	// ApplyBatch and every unreleased FSM snapshot hold it shared; Restore
	// and Close hold it exclusively to swap or close the database, so
	// nothing reads a closed DB.
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool

	// cache is ApplyBatch's account cache; guarded by applyMu.
	cache acctCache

	counters applyCounters

	// applied is the index of the last raft entry applied, published after
	// its batch committed.
	applied atomic.Uint64

	// dir is the routing state as of applied (admin.go, directory.go).
	dir atomic.Pointer[Directory]

	// failErr is the write error that failed the store (nil while
	// healthy); failed is closed when it is set. Set once, under applyMu.
	failErr  atomic.Pointer[error]
	failed   chan struct{}
	failOnce sync.Once
}

// Open opens (creating if needed) the store in cfg.Dir, first finishing or
// discarding a Restore that a crash interrupted.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, log: log.With("component", "store"), failed: make(chan struct{})}
	if err := recoverSwap(cfg.Dir, s.log); err != nil {
		return nil, err
	}
	if err := s.openDB(); err != nil {
		return nil, err
	}
	s.log.Info("store open", "dir", cfg.Dir, "applied_index", s.applied.Load(),
		"expire_batch_max", cfg.ExpireBatchMax, "cache_bytes", cfg.CacheBytes,
		"memtable_bytes", cfg.MemTableBytes)
	return s, nil
}

// lockWaitMax bounds how long Open waits for another process to release
// the ledger directory; lockRetry is how often it tries.
const (
	lockWaitMax = 10 * time.Second
	lockRetry   = 100 * time.Millisecond
)

// waitUnlocked waits, up to lockWaitMax, while another process holds the
// directory's LOCK: typically the node's previous process, killed and
// still tearing down its threads while a supervisor restarts it. It only
// probes (pebble.Open takes the lock itself, and says so if it is still
// held); probing keeps failed opens, whose clean-up leaks goroutines in
// pebble, out of the loop.
func (s *Store) waitUnlocked() {
	lock := filepath.Join(s.cfg.Dir, "LOCK")
	for deadline, warned := time.Now().Add(lockWaitMax), false; ; {
		l, err := vfs.Default.Lock(lock)
		if err == nil {
			_ = l.Close()
			return
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return // a new directory, or pebble.Open reports it
		}
		if !warned {
			s.log.Warn("ledger directory locked by another process; waiting", "dir", s.cfg.Dir, "wait_max", lockWaitMax)
			warned = true
		}
		time.Sleep(lockRetry)
	}
}

// openDB opens cfg.Dir into s.db and loads the applied index. Callers hold
// mu exclusively or own s alone.
func (s *Store) openDB() error {
	s.waitUnlocked()
	// The DB takes its own reference on the cache and drops it on Close.
	cache := pebble.NewCache(s.cfg.CacheBytes)
	db, err := pebble.Open(s.cfg.Dir, s.pebbleOptions(cache))
	cache.Unref()
	if err != nil {
		return fmt.Errorf("store: open pebble %s: %w", s.cfg.Dir, err)
	}
	idx, err := readApplied(db)
	if err != nil {
		_ = db.Close()
		return err
	}
	dir, err := loadDirectory(db)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("store: load directory: %w", err)
	}
	s.db = db
	s.dir.Store(dir)
	s.applied.Store(idx)
	return nil
}

func (s *Store) pebbleOptions(cache *pebble.Cache) *pebble.Options {
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       s.cfg.MemTableBytes,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s.log},
		WALBytesPerSync:    s.cfg.WALBytesPerSync,
		FS:                 s.cfg.FS,
	}
	// Bloom filters on every level (the others inherit L0's): about half
	// of the point reads of a command miss (a new idempotency key, a new
	// original reference), and without a filter each miss reads and
	// decompresses a data block in every level.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	opts.EventListener = s.pebbleEvents()
	opts.EnsureDefaults()
	return opts
}

func readApplied(r pebble.Reader) (uint64, error) {
	v, closer, err := r.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: applied index of %d bytes", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close closes the database. It waits for unreleased snapshots.
//
// A failed store (ErrFailed) is marked closed but its pebble DB is left
// open: after a failed WAL write pebble holds its commit pipeline's lock
// for good (db.go commitWrite panics while holding it) and its Close
// would wait for that lock forever. The process is about to exit; the
// kernel releases the files and the lock, and the next Open recovers from
// pebble's WAL like after a crash. Close then returns the ErrFailed error.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.Err(); err != nil {
		s.db = nil
		return err
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("store: close pebble: %w", err)
	}
	return nil
}

// Failed is closed once a write to pebble failed inside ApplyBatch (Err
// then returns the error). The owner should stop the node so that a
// restart replays the raft log; until then nothing more is applied.
func (s *Store) Failed() <-chan struct{} { return s.failed }

// Err returns an error wrapping ErrFailed and the write error once the
// store failed, else nil.
func (s *Store) Err() error {
	if p := s.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records the first write failure. Callers hold applyMu.
func (s *Store) fail(cause error) {
	s.failOnce.Do(func() {
		err := fmt.Errorf("%w: %w", ErrFailed, cause)
		s.failErr.Store(&err)
		s.counters.writeFailures.Add(1)
		s.log.Error("ledger write failed: applying nothing more; stop the node and restart it once there is space, it replays the raft log",
			"applied_index", s.applied.Load(), "err", cause)
		close(s.failed)
	})
}

// AppliedIndex is the index of the last raft log entry whose effects are
// committed to pebble (0 before the first).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// read runs fn against the current database with mu held shared.
func (s *Store) read(fn func(db *pebble.DB) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return fn(s.db)
}

// getRecord reads key from r into a decoded value.
func getRecord[T any](r pebble.Reader, key []byte, decode func([]byte) (T, error)) (T, error) {
	var zero T
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return zero, ErrNotFound
	}
	if err != nil {
		return zero, fmt.Errorf("store: get: %w", err)
	}
	defer closer.Close()
	return decode(v)
}

// Account returns the account with id, or ErrNotFound.
func (s *Store) Account(id string) (Account, error) {
	var a Account
	err := s.read(func(db *pebble.DB) (err error) {
		a, err = getRecord(db, key1(pfxAccount, id), decodeAccountRecord)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Account{}, fmt.Errorf("account %q: %w", id, ErrNotFound)
	}
	return a, err
}

// AccountByCard returns the account whose CardHash is cardHash, or
// ErrNotFound. The hash is not repeated in the error.
func (s *Store) AccountByCard(cardHash string) (Account, error) {
	var a Account
	err := s.read(func(db *pebble.DB) error {
		// One pebble snapshot so the index and the record agree.
		snap := db.NewSnapshot()
		defer snap.Close()
		id, err := getRecord(snap, key1(pfxCard, cardHash), func(b []byte) (string, error) { return string(b), nil })
		if err != nil {
			return err
		}
		a, err = getRecord(snap, key1(pfxAccount, id), decodeAccountRecord)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Account{}, fmt.Errorf("account by card: %w", ErrNotFound)
	}
	return a, err
}

func clampLimit(n int) int {
	if n <= 0 {
		return listLimitDefault
	}
	return min(n, listLimitMax)
}

// Accounts returns up to limit accounts with ids greater than after, in id
// order (limit ≤ 0 means listLimitDefault; at most listLimitMax).
func (s *Store) Accounts(after string, limit int) ([]Account, error) {
	limit = clampLimit(limit)
	var out []Account
	err := s.read(func(db *pebble.DB) error {
		lo := []byte{pfxAccount}
		if after != "" {
			lo = append(key1(pfxAccount, after), 0) // first key after `after`
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{pfxAccount + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			a, err := decodeAccountRecord(it.Value())
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return it.Error()
	})
	return out, err
}

// Replay answers a repeat from the applied state without a log entry,
// exactly as ApplyBatch would: the stored result (Replayed) when key is
// recorded with fingerprint, StatusFingerprintMismatch when it is recorded
// with another, and ok false when key is not recorded here. A record
// committed but not yet applied on this node is not seen: the caller must
// treat ok false as "unknown", never as "new".
func (s *Store) Replay(key, fingerprint string) (res Result, ok bool, err error) {
	err = s.read(func(db *pebble.DB) error {
		rec, err := getRecord(db, []byte(skey1(pfxIdem, key)), decodeIdemRecord)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		if rec.Fingerprint != fingerprint {
			res = Result{Status: StatusFingerprintMismatch}
			return nil
		}
		res = rec.Result
		res.Replayed = true
		return nil
	})
	return res, ok, err
}

// Transfer returns the transfer with id, or ErrNotFound.
func (s *Store) Transfer(id string) (Transfer, error) {
	var t Transfer
	err := s.read(func(db *pebble.DB) (err error) {
		t, err = getRecord(db, key1(pfxTransfer, id), decodeTransferRecord)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Transfer{}, fmt.Errorf("transfer %q: %w", id, ErrNotFound)
	}
	return t, err
}

// Transfers returns up to f.Limit transfers matching f with ids greater
// than f.After, in id order. It walks the by-account index when f.Account
// is set, else the by-day-and-partner index when f.BusinessDay is set (for
// a day without a partner it merges that day's per-partner lists), else
// every transfer; the remaining fields filter the records it reads. All of
// it comes from one pebble snapshot.
func (s *Store) Transfers(f TransferFilter) ([]Transfer, error) {
	limit := clampLimit(f.Limit)
	var out []Transfer
	err := s.read(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		var prefixes [][]byte // index prefixes; the transfer id follows each
		day := f.indexDay()
		switch {
		case f.Account != "":
			prefixes = [][]byte{append(keyIndex(pfxByAccount, f.Account), sep)}
		case day != "" && f.Partner != "":
			prefixes = [][]byte{append(keyIndex(pfxByDayPartnr, day, f.Partner), sep)}
		case day != "":
			var err error
			var tooMany bool
			if prefixes, tooMany, err = dayPartnerPrefixes(snap, day); err != nil {
				return err
			}
			if len(prefixes) == 0 && !tooMany {
				return nil // no transfers that day
			}
		}
		if prefixes == nil {
			return scanTransfers(snap, f, limit, &out)
		}
		m, err := newIDMerge(snap, prefixes, f.After)
		if err != nil {
			return err
		}
		defer m.close()
		key := []byte{pfxTransfer}
		for len(out) < limit {
			id, ok := m.next()
			if !ok {
				break
			}
			t, err := getRecord(snap, append(key[:1], id...), decodeTransferRecord)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: index entry without transfer", ErrCorrupt)
			}
			if err != nil {
				return err
			}
			if f.matches(&t) {
				out = append(out, t)
			}
		}
		return m.err()
	})
	return out, err
}

// scanTransfers reads the transfer table itself, for filters no index serves.
func scanTransfers(snap *pebble.Snapshot, f TransferFilter, limit int, out *[]Transfer) error {
	lo := []byte{pfxTransfer}
	if f.After != "" {
		lo = append(key1(pfxTransfer, f.After), 0)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{pfxTransfer + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok && len(*out) < limit; ok = it.Next() {
		t, err := decodeTransferRecord(it.Value())
		if err != nil {
			return err
		}
		if f.matches(&t) {
			*out = append(*out, t)
		}
	}
	return it.Error()
}

// dayPartnersMax bounds how many partner lists one day query merges (one
// iterator each); past it the query falls back to a table scan.
const dayPartnersMax = 1024

// dayPartnerPrefixes finds the partners that have transfers on day by
// skipping from one partner's entries to the next, and returns the index
// prefix of each, or tooMany when there are more than dayPartnersMax.
func dayPartnerPrefixes(snap *pebble.Snapshot, day string) (prefixes [][]byte, tooMany bool, err error) {
	dayPrefix := append(keyIndex(pfxByDayPartnr, day), sep)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: dayPrefix, UpperBound: prefixEnd(dayPrefix)})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		rest := it.Key()[len(dayPrefix):]
		i := bytes.IndexByte(rest, sep)
		if i < 0 {
			return nil, false, fmt.Errorf("%w: day index key without partner", ErrCorrupt)
		}
		p := append(append([]byte(nil), it.Key()[:len(dayPrefix)+i]...), sep)
		if len(prefixes) == dayPartnersMax {
			return nil, true, nil
		}
		prefixes = append(prefixes, p)
		// The next partner's entries start after every key with prefix p.
		ok = it.SeekGE(prefixEnd(p))
	}
	return prefixes, false, it.Error()
}

// idMerge yields the transfer ids under several index prefixes in id order
// (each prefix's entries are already in id order: ids are fixed width).
type idMerge struct {
	its      []*pebble.Iterator
	prefixes [][]byte
	valid    []bool
	first    error
}

func newIDMerge(snap *pebble.Snapshot, prefixes [][]byte, after string) (*idMerge, error) {
	m := &idMerge{prefixes: prefixes}
	for _, p := range prefixes {
		lo := p
		if after != "" {
			lo = append(append(append([]byte(nil), p...), after...), 0)
		}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(p)})
		if err != nil {
			m.close()
			return nil, err
		}
		m.its = append(m.its, it)
		m.valid = append(m.valid, it.First())
	}
	return m, nil
}

// next returns the smallest id not yet returned. Linear in the number of
// prefixes, which dayPartnersMax bounds.
func (m *idMerge) next() ([]byte, bool) {
	best := -1
	var bestID []byte
	for i, it := range m.its {
		if !m.valid[i] {
			continue
		}
		id := it.Key()[len(m.prefixes[i]):]
		if best < 0 || bytes.Compare(id, bestID) < 0 {
			best, bestID = i, id
		}
	}
	if best < 0 {
		return nil, false
	}
	bestID = bytes.Clone(bestID)
	m.valid[best] = m.its[best].Next()
	return bestID, true
}

func (m *idMerge) err() error {
	for _, it := range m.its {
		if err := it.Error(); err != nil {
			return err
		}
	}
	return nil
}

func (m *idMerge) close() {
	for _, it := range m.its {
		_ = it.Close()
	}
}

func (f *TransferFilter) matches(t *Transfer) bool {
	return (f.Account == "" || t.Debit == f.Account || t.Credit == f.Account) &&
		(f.Partner == "" || t.Partner == f.Partner) &&
		(f.BusinessDay == "" || t.BusinessDay == f.BusinessDay) &&
		(f.Status == "" || t.Status == f.Status) &&
		(f.PayerType == "" || t.PayerType == f.PayerType) &&
		(f.Op == 0 || t.Op == f.Op) &&
		(f.DayFrom == "" || t.BusinessDay >= f.DayFrom) &&
		(f.DayTo == "" || t.BusinessDay <= f.DayTo)
}

// indexDay is the business day an index walk may use: BusinessDay, or a
// day range of one day.
func (f *TransferFilter) indexDay() string {
	if f.BusinessDay == "" && f.DayFrom != "" && f.DayFrom == f.DayTo {
		return f.DayFrom
	}
	return f.BusinessDay
}

// StateHash returns SHA-256 over every key and value in the store, in key
// order, read from one pebble snapshot, together with the applied index
// stored in that snapshot. It covers everything: accounts, transfers,
// idempotency records, every index, the transfer sequence and the applied
// index itself (see DESIGN.md). Each pair is hashed as uvarint(len(key)) key
// uvarint(len(value)) value, so no two different states hash the same bytes.
func (s *Store) StateHash() (index uint64, sum [32]byte, err error) {
	err = s.read(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		idx, err := readApplied(snap)
		if err != nil {
			return err
		}
		h := sha256.New()
		if err := scanAll(context.Background(), snap, func(k, v []byte) error {
			var lenBuf [binary.MaxVarintLen64]byte
			h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(k)))])
			h.Write(k)
			h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(v)))])
			h.Write(v)
			return nil
		}); err != nil {
			return err
		}
		index = idx
		h.Sum(sum[:0])
		return nil
	})
	return index, sum, err
}

// scanAll calls fn for every key/value of r in key order.
func scanAll(ctx context.Context, r interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}, fn func(k, v []byte) error) error {
	it, err := r.NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// pebbleLogger sends pebble's log lines to slog. Pebble's informational
// lines (flushes, compactions) are debug noise for an operator.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...interface{}) {
	l.log.Debug(fmt.Sprintf(format, args...), "source", "pebble")
}
func (l pebbleLogger) Errorf(format string, args ...interface{}) {
	l.log.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

// Fatalf is pebble saying it cannot go on (e.g. a failed WAL write); its
// default exits the process. Panicking instead lets tests see it, and in
// production the result is the same: the node stops and recovers from the
// raft log.
func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "source", "pebble")
	panic("store: pebble fatal: " + msg)
}

// pebbleEvents logs the end of each flush and compaction at info (with its
// duration: each is a burst of CPU that shows in the tail latency, and one
// line every few seconds under load is worth it), the rest of pebble's
// events at debug, and what an operator must act on at warn: writes stalled
// because compaction fell behind, and a disk operation that hung.
func (s *Store) pebbleEvents() *pebble.EventListener {
	l := pebble.MakeLoggingEventListener(pebbleLogger{s.log})
	atInfo := pebble.MakeLoggingEventListener(pebbleInfoLogger{s.log})
	l.FlushEnd = func(fi pebble.FlushInfo) {
		atInfo.FlushEnd(fi)
		if testFlushEnd != nil {
			testFlushEnd()
		}
	}
	l.CompactionEnd = atInfo.CompactionEnd
	l.WriteStallBegin = func(info pebble.WriteStallBeginInfo) {
		s.log.Warn("ledger writes stalled", "reason", info.Reason, "source", "pebble")
	}
	l.WriteStallEnd = func() { s.log.Warn("ledger writes resumed", "source", "pebble") }
	if nice := s.cfg.BackgroundNice; nice > 0 {
		// Both callbacks run on the goroutine that then does the work.
		flushBegin, compactionBegin := l.FlushBegin, l.CompactionBegin
		lower := func() {
			if err := lowerThreadPriority(nice); err != nil {
				s.log.Warn("could not lower the priority of pebble's background thread", "nice", nice, "err", err)
			}
		}
		l.FlushBegin = func(info pebble.FlushInfo) { lower(); flushBegin(info) }
		l.CompactionBegin = func(info pebble.CompactionInfo) { lower(); compactionBegin(info) }
	}
	l.DiskSlow = func(info pebble.DiskSlowInfo) {
		s.log.Warn("ledger disk slow", "op", info.OpType.String(), "path", info.Path,
			"bytes", info.WriteSize, "duration", info.Duration, "source", "pebble")
	}
	return &l
}

// testFlushEnd, when set by a test, runs at the end of each flush on the
// flushing goroutine.
var testFlushEnd func()

// pebbleInfoLogger is pebbleLogger with pebble's informational lines at info.
type pebbleInfoLogger struct{ log *slog.Logger }

func (l pebbleInfoLogger) Errorf(format string, args ...interface{}) {
	pebbleLogger(l).Errorf(format, args...)
}
func (l pebbleInfoLogger) Fatalf(format string, args ...interface{}) {
	pebbleLogger(l).Fatalf(format, args...)
}

func (l pebbleInfoLogger) Infof(format string, args ...interface{}) {
	l.log.Info(fmt.Sprintf(format, args...), "source", "pebble")
}

var _ io.Closer = (*Store)(nil)

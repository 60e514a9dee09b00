package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Raft snapshots of this store are references, not copies (see DESIGN.md,
// "Snapshot and restore"). The pebble directory already holds the applied
// state durably once its WAL is synced, so what raft persists at each
// snapshot is only
//
//	magic "SWDSREF" version(1) applied index(u64 BE) crc32c(the 16 bytes before)
//
// and a follower that needs the state gets a full stream of the live state,
// opened when the leader sends it (OpenState):
//
//	magic "SWDSNAP" version(1)
//	{ 1 uvarint(len k) k uvarint(len v) v }   every pair, in key order
//	0 count(uint64 BE) sha256(everything before it)
//
// The stream's applied index may be past the reference's: the live state
// has moved on since raft took the snapshot. That is safe because every
// applied entry is committed, and a restored follower skips log entries at
// or below the applied index inside the stream.
const (
	snapMagic      = "SWDSNAP"
	snapVersion    = 1
	snapRefMagic   = "SWDSREF"
	snapRefVersion = 1
	// SnapshotRefBytes is the size of a snapshot reference.
	SnapshotRefBytes = len(snapRefMagic) + 1 + 8 + 4
	// snapKeyBytesMax and snapValueBytesMax bound one pair read back, so
	// a corrupt length cannot make Restore allocate gigabytes. Our largest
	// records are a few hundred bytes.
	snapKeyBytesMax   = 4 << 10
	snapValueBytesMax = 1 << 20
	// snapBufferBytes is the read and write buffer of a snapshot stream.
	snapBufferBytes = 256 << 10
	// restoreBatchBytes bounds one pebble batch while restoring: large
	// enough to amortize commits, small enough not to hold the whole
	// snapshot in memory.
	restoreBatchBytes = 4 << 20
)

// ErrSnapshotAhead is returned by Restore when it is given a snapshot
// reference whose index is past this store's applied state: a reference
// names state this store must already hold.
var ErrSnapshotAhead = errors.New("store: snapshot reference is ahead of the local state")

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Paths beside Dir used by Restore's swap.
func restorePaths(dir string) (next, ok, old string) {
	dir = filepath.Clean(dir)
	return dir + ".restore", dir + ".restore.ok", dir + ".old"
}

// appendSnapshotRef appends the reference to the state at index.
func appendSnapshotRef(b []byte, index uint64) []byte {
	start := len(b)
	b = append(b, snapRefMagic...)
	b = append(b, snapRefVersion)
	b = binary.BigEndian.AppendUint64(b, index)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], crc32c))
}

// ParseSnapshotRef reports whether b is exactly a snapshot reference, and
// the applied index it names.
func ParseSnapshotRef(b []byte) (index uint64, ok bool) {
	if len(b) != SnapshotRefBytes || string(b[:len(snapRefMagic)]) != snapRefMagic ||
		b[len(snapRefMagic)] != snapRefVersion {
		return 0, false
	}
	body := b[:SnapshotRefBytes-4]
	if crc32.Checksum(body, crc32c) != binary.BigEndian.Uint32(b[SnapshotRefBytes-4:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(body[len(snapRefMagic)+1:]), true
}

// refSnapshot is what raft persists: a reference to the applied index.
type refSnapshot struct{ index uint64 }

// Snapshot makes the state at the current applied index durable (it syncs
// pebble's WAL: raft may truncate its log up to this index once the
// snapshot is persisted, and every batch so far was committed NoSync) and
// returns a reference to it. It costs one WAL sync, not a copy of the
// ledger: Persist writes SnapshotRefBytes.
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.Err(); err != nil {
		// Raft would truncate its log past entries this store never
		// applied, and pebble cannot write anyway.
		return nil, err
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("store: snapshot: sync WAL: %w", err)
	}
	return &refSnapshot{index: s.applied.Load()}, nil
}

// Persist writes the reference to sink and closes it.
func (r *refSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(appendSnapshotRef(nil, r.index)); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("store: persist snapshot reference at %d: %w", r.index, err)
	}
	return sink.Close()
}

// Release has nothing to release: a reference holds no pebble snapshot.
func (r *refSnapshot) Release() {}

// StateStream is the full snapshot stream of the state as it was when
// OpenState was called. Its length is known up front (raft sends it in
// the InstallSnapshot header). It holds a pebble snapshot and Store.mu
// shared, so Restore and Close wait for it: Close it when done.
type StateStream struct {
	s     *Store
	snap  *pebble.Snapshot
	it    *pebble.Iterator
	index uint64
	size  int64

	h       hash.Hash
	buf     []byte // encoded, not yet read: buf[off:]
	off     int
	valid   bool // it is positioned on a pair not yet encoded
	done    bool // the trailer is in buf
	count   uint64
	written int64
	closed  sync.Once
}

// OpenState opens a stream of the whole live state. Two passes over one
// pebble snapshot: the first adds up the stream's length, the second (as
// the stream is read) encodes it.
func (s *Store) OpenState() (*StateStream, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	st := &StateStream{s: s, snap: s.db.NewSnapshot(), h: sha256.New()}
	fail := func(err error) (*StateStream, error) {
		st.Close()
		return nil, fmt.Errorf("store: open state stream: %w", err)
	}
	var err error
	if st.index, err = readApplied(st.snap); err != nil {
		return fail(err)
	}
	size := int64(len(snapMagic) + 1 + 1 + 8 + sha256.Size)
	if err := scanAll(context.Background(), st.snap, func(k, v []byte) error {
		size += int64(pairBytes(k, v))
		return nil
	}); err != nil {
		return fail(err)
	}
	st.size = size
	if st.it, err = st.snap.NewIter(nil); err != nil {
		return fail(err)
	}
	st.buf = append(make([]byte, 0, snapBufferBytes+4096), snapMagic...)
	st.buf = append(st.buf, snapVersion)
	st.h.Write(st.buf)
	st.valid = st.it.First()
	s.counters.streams.Add(1)
	return st, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func pairBytes(k, v []byte) int {
	return 1 + uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
}

// Index is the applied index of the streamed state.
func (st *StateStream) Index() uint64 { return st.index }

// Size is the stream's length in bytes.
func (st *StateStream) Size() int64 { return st.size }

// Read implements io.Reader.
func (st *StateStream) Read(p []byte) (int, error) {
	for st.off == len(st.buf) {
		if st.done {
			return 0, io.EOF
		}
		if err := st.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, st.buf[st.off:])
	st.off += n
	st.written += int64(n)
	st.s.counters.streamBytes.Add(uint64(n))
	return n, nil
}

// fill encodes the next pairs (about snapBufferBytes) into buf, and the
// trailer after the last one.
func (st *StateStream) fill() error {
	if st.it == nil {
		return ErrClosed
	}
	st.buf, st.off = st.buf[:0], 0
	for st.valid && len(st.buf) < snapBufferBytes {
		k := st.it.Key()
		v, err := st.it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("store: state stream: %w", err)
		}
		st.buf = append(st.buf, 1)
		st.buf = binary.AppendUvarint(st.buf, uint64(len(k)))
		st.buf = append(st.buf, k...)
		st.buf = binary.AppendUvarint(st.buf, uint64(len(v)))
		st.buf = append(st.buf, v...)
		st.count++
		st.valid = st.it.Next()
	}
	if !st.valid {
		if err := st.it.Error(); err != nil {
			return fmt.Errorf("store: state stream: %w", err)
		}
		st.buf = append(st.buf, 0)
		st.buf = binary.BigEndian.AppendUint64(st.buf, st.count)
		st.h.Write(st.buf)
		st.buf = st.h.Sum(st.buf)
		st.done = true
		if got := st.written + int64(len(st.buf)); got != st.size {
			// Both passes read one pebble snapshot; a mismatch is a bug,
			// and raft would reject the short or long stream anyway.
			return fmt.Errorf("store: state stream of %d bytes, %d announced", got, st.size)
		}
		return nil
	}
	st.h.Write(st.buf)
	return nil
}

// Close releases the pebble snapshot and lets Restore and Close proceed.
// It is safe to call more than once.
func (st *StateStream) Close() error {
	st.closed.Do(func() {
		if st.it != nil {
			_ = st.it.Close()
			st.it = nil
		}
		_ = st.snap.Close()
		st.s.mu.RUnlock()
	})
	return nil
}

// hashReader hashes what it reads.
type hashReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (r *hashReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.h.Write([]byte{b})
	}
	return b, err
}

func (r *hashReader) full(p []byte) error {
	if _, err := io.ReadFull(r.r, p); err != nil {
		return err
	}
	r.h.Write(p)
	return nil
}

// errSnapshot wraps every malformed-stream error of Restore.
func errSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: snapshot: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Restore replaces the whole state with a snapshot stream (OpenState's
// format), or checks a snapshot reference against the local state (see
// restoreRef). The stream is
// written into a new pebble directory beside Dir and verified (checksum,
// count, key order) before anything is swapped, so a bad stream leaves the
// current state untouched. The swap is two renames with a marker file; a
// crash at any point is finished or undone by Open (recoverSwap). The
// applied index afterwards is the one inside the snapshot.
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := s.Err(); err != nil {
		return err // closing the wedged DB for the swap would hang (see Close)
	}
	in := bufio.NewReaderSize(rc, snapBufferBytes)
	if head, _ := in.Peek(len(snapRefMagic)); string(head) == snapRefMagic {
		return s.restoreRef(in)
	}
	next, okFile, _ := restorePaths(s.cfg.Dir)
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("store: restore: clear %s: %w", next, err)
	}
	if err := os.Remove(okFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: restore: %w", err)
	}
	n, err := s.writeRestore(next, in)
	if err != nil {
		_ = os.RemoveAll(next)
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := writeMarker(okFile); err != nil {
		_ = os.RemoveAll(next)
		return fmt.Errorf("store: restore: %w", err)
	}

	s.mu.Lock() // waits for readers and unreleased snapshots
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		// The new state is verified and marked; the old handle is gone
		// either way, so go on with the swap.
		s.log.Error("restore: close old pebble", "err", err)
	}
	s.db = nil
	s.cache.reset() // it describes the old state
	if err := recoverSwap(s.cfg.Dir, s.log); err != nil {
		s.closed = true
		return fmt.Errorf("store: restore: swap: %w", err)
	}
	if err := s.openDB(); err != nil {
		s.closed = true
		return fmt.Errorf("store: restore: reopen: %w", err)
	}
	s.counters.restores.Add(1)
	s.log.Info("restored snapshot", "pairs", n, "applied_index", s.applied.Load())
	return nil
}

// restoreRef "restores" a snapshot reference: raft only hands one back to
// the store that wrote it (a follower is always sent a full stream), whose
// pebble directory holds that state or a later one already.
func (s *Store) restoreRef(in io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(in, int64(SnapshotRefBytes)+1))
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	index, ok := ParseSnapshotRef(b)
	if !ok {
		return errSnapshot("bad reference %q", b)
	}
	if applied := s.applied.Load(); index > applied {
		return fmt.Errorf("%w: reference to index %d, applied %d", ErrSnapshotAhead, index, applied)
	}
	return nil
}

// writeRestore writes the stream into a new pebble DB at dir, verifies
// it, flushes and closes it. It returns the number of pairs.
func (s *Store) writeRestore(dir string, in io.Reader) (uint64, error) {
	cache := pebble.NewCache(cacheBytesMin)
	db, err := pebble.Open(dir, s.pebbleOptions(cache))
	cache.Unref()
	if err != nil {
		return 0, err
	}
	n, err := readSnapshot(db, in)
	if err == nil {
		// Flush makes the sstables and manifest durable, so the swapped
		// directory does not depend on a WAL written with NoSync.
		err = db.Flush()
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return n, err
}

func readSnapshot(db *pebble.DB, in io.Reader) (uint64, error) {
	r := &hashReader{r: bufio.NewReaderSize(in, snapBufferBytes), h: sha256.New()}
	head := make([]byte, len(snapMagic)+1)
	if err := r.full(head); err != nil {
		return 0, errSnapshot("header: %v", err)
	}
	if string(head[:len(snapMagic)]) != snapMagic || head[len(snapMagic)] != snapVersion {
		return 0, errSnapshot("bad header %q", head)
	}
	b := db.NewBatch()
	defer func() { b.Close() }()
	var count uint64
	var prev []byte
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return 0, errSnapshot("pair %d: %v", count, err)
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return 0, errSnapshot("pair %d: bad tag %d", count, tag)
		}
		k, err := readChunk(r, snapKeyBytesMax)
		if err != nil {
			return 0, errSnapshot("pair %d key: %v", count, err)
		}
		v, err := readChunk(r, snapValueBytesMax)
		if err != nil {
			return 0, errSnapshot("pair %d value: %v", count, err)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return 0, errSnapshot("pair %d out of order", count)
		}
		prev = k
		count++
		if err := b.Set(k, v, nil); err != nil {
			return 0, err
		}
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			b.Close()
			b = db.NewBatch()
		}
	}
	var cnt [8]byte
	if err := r.full(cnt[:]); err != nil {
		return 0, errSnapshot("trailer: %v", err)
	}
	want := r.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r.r, got); err != nil {
		return 0, errSnapshot("checksum: %v", err)
	}
	if !bytes.Equal(want, got) {
		return 0, errSnapshot("checksum mismatch")
	}
	if binary.BigEndian.Uint64(cnt[:]) != count {
		return 0, errSnapshot("count %d, trailer says %d", count, binary.BigEndian.Uint64(cnt[:]))
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return 0, errSnapshot("bytes after the trailer")
	}
	return count, b.Commit(pebble.NoSync)
}

func readChunk(r *hashReader, maxBytes int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(maxBytes) {
		return nil, fmt.Errorf("length %d over %d", n, maxBytes)
	}
	p := make([]byte, n)
	return p, r.full(p)
}

// writeMarker creates an empty file durably: the file and its directory
// entry are synced.
func writeMarker(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// recoverSwap brings Dir to a consistent state after a Restore that may
// have stopped anywhere. The marker file exists only once the restored
// directory is complete and verified, so:
//
//	marker + .restore: finish the swap (Dir → .old, .restore → Dir)
//	marker only:       the swap finished; drop the marker
//	.restore only:     an unfinished restore; drop it, the old state stands
//
// and any .old is removed last. Restore itself calls it to do the swap.
func recoverSwap(dir string, log *slog.Logger) error {
	dir = filepath.Clean(dir)
	next, okFile, old := restorePaths(dir)
	parent := filepath.Dir(dir)
	switch {
	case exists(okFile):
		if exists(next) {
			if exists(dir) {
				if err := os.RemoveAll(old); err != nil {
					return err
				}
				if err := os.Rename(dir, old); err != nil {
					return err
				}
			}
			if err := os.Rename(next, dir); err != nil {
				return err
			}
			if err := syncDir(parent); err != nil {
				return err
			}
			log.Info("restore swap done", "dir", dir)
		}
		if err := os.Remove(okFile); err != nil {
			return err
		}
		if err := syncDir(parent); err != nil {
			return err
		}
	case exists(next):
		log.Warn("dropping unfinished restore", "dir", next)
		if err := os.RemoveAll(next); err != nil {
			return err
		}
	}
	return os.RemoveAll(old)
}

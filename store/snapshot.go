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
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Snapshot stream format (see DESIGN.md):
//
//	magic "SWDSNAP" version(1)
//	{ 1 uvarint(len k) k uvarint(len v) v }   every pair, in key order
//	0 count(uint64 BE) sha256(everything before it)
const (
	snapMagic   = "SWDSNAP"
	snapVersion = 1
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

// Paths beside Dir used by Restore's swap.
func restorePaths(dir string) (next, ok, old string) {
	dir = filepath.Clean(dir)
	return dir + ".restore", dir + ".restore.ok", dir + ".old"
}

// fsmSnapshot streams one pebble snapshot. It holds Store.mu shared until
// Release so that Restore or Close cannot close the DB under it.
type fsmSnapshot struct {
	s       *Store
	snap    *pebble.Snapshot
	index   uint64
	release sync.Once
}

// Snapshot captures the state at the current applied index. It first
// syncs pebble's WAL: raft may truncate its log up to this index once the
// snapshot is persisted, so everything applied so far (committed NoSync)
// must survive a crash from now on. Persist may run concurrently with
// ApplyBatch; Release must be called (raft always does).
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("store: snapshot: sync WAL: %w", err)
	}
	return &fsmSnapshot{s: s, snap: s.db.NewSnapshot(), index: s.applied.Load()}, nil
}

// Persist writes the snapshot to sink and closes it, or cancels it on error.
func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := f.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("store: persist snapshot at %d: %w", f.index, err)
	}
	return sink.Close()
}

// hashWriter hashes what it writes.
type hashWriter struct {
	w *bufio.Writer
	h hash.Hash
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	return w.w.Write(p)
}

func (f *fsmSnapshot) writeTo(out io.Writer) error {
	w := &hashWriter{w: bufio.NewWriterSize(out, snapBufferBytes), h: sha256.New()}
	if _, err := w.Write(append([]byte(snapMagic), snapVersion)); err != nil {
		return err
	}
	var count uint64
	var hdr []byte
	err := scanAll(context.Background(), f.snap, func(k, v []byte) error {
		hdr = append(hdr[:0], 1)
		hdr = binary.AppendUvarint(hdr, uint64(len(k)))
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		if _, err := w.Write(k); err != nil {
			return err
		}
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(v)))
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		count++
		_, err := w.Write(v)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := w.Write(binary.BigEndian.AppendUint64([]byte{0}, count)); err != nil {
		return err
	}
	if _, err := w.w.Write(w.h.Sum(nil)); err != nil {
		return err
	}
	return w.w.Flush()
}

// Release closes the pebble snapshot and lets Restore and Close proceed.
func (f *fsmSnapshot) Release() {
	f.release.Do(func() {
		_ = f.snap.Close()
		f.s.mu.RUnlock()
	})
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

// Restore replaces the whole state with a snapshot stream. The stream is
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
	next, okFile, _ := restorePaths(s.cfg.Dir)
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("store: restore: clear %s: %w", next, err)
	}
	if err := os.Remove(okFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: restore: %w", err)
	}
	n, err := s.writeRestore(next, rc)
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
	s.log.Info("restored snapshot", "pairs", n, "applied_index", s.applied.Load())
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

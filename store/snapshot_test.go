package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/hashicorp/raft"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Close() error  { m.closed = true; return nil }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := fixture(t)
	mustOK(t, src, authCmd("a1", "h1", "merch", 600, "A1"), postCardCmd("p1", "h1", "merch", 100, "P1"))
	data := snapshotBytes(t, src)
	// Applies after the snapshot was taken are not in it.
	mustOK(t, src, postCardCmd("p2", "h1", "merch", 1, ""))

	dst := openTest(t)
	run(t, dst, createCmd(acct("stale", KindBiller, "USD")))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Account("stale"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old state survived restore: %v", err)
	}
	// Compare with the source as it was: roll a fresh copy forward instead.
	ref := openTest(t)
	if err := ref.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	i1, h1, err := dst.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	i2, h2, _ := ref.StateHash()
	if i1 != i2 || h1 != h2 || dst.AppliedIndex() != 3 {
		t.Errorf("restored (%d %x) vs (%d %x), applied %d", i1, h1, i2, h2, dst.AppliedIndex())
	}
	// The restored store carries on exactly like the source.
	mustOK(t, dst, postCardCmd("p2", "h1", "merch", 1, ""))
	_, hs, _ := src.StateHash()
	_, hd, _ := dst.StateHash()
	if hs != hd {
		t.Error("restored store diverged from its source after the same entry")
	}
	// Idempotency records came along.
	if r := run1(t, dst, postCardCmd("p1", "h1", "merch", 100, "P1")); !r.Replayed {
		t.Errorf("idempotency record lost in restore: %+v", r)
	}
	// And the state survives a reopen.
	_, hd, _ = dst.StateHash()
	dst2 := reopen(t, dst)
	_, hr, _ := dst2.StateHash()
	if hr != hd || dst2.AppliedIndex() != src.AppliedIndex()+1 {
		t.Errorf("reopened restored store differs: applied %d", dst2.AppliedIndex())
	}
}

func TestSnapshotWhileApplying(t *testing.T) {
	s := fixture(t)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	_, before, _ := s.StateHash()
	done := make(chan []byte)
	go func() {
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Error(err)
		}
		snap.Release()
		done <- sink.Bytes()
	}()
	for i := 0; i < 50; i++ {
		mustOK(t, s, postCardCmd(keyN("k", i), "h1", "merch", 1, ""))
	}
	data := <-done
	r := openTest(t)
	if err := r.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if _, h, _ := r.StateHash(); h != before {
		t.Error("snapshot taken before the posts does not hold the state at that time")
	}
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	src := fixture(t)
	data := snapshotBytes(t, src)
	flip := func(i int) []byte {
		b := bytes.Clone(data)
		b[i] ^= 0x40
		return b
	}
	cases := map[string][]byte{
		"empty":          {},
		"bad magic":      flip(0),
		"flipped byte":   flip(len(data) / 2),
		"bad checksum":   flip(len(data) - 1),
		"truncated":      data[:len(data)-10],
		"trailing bytes": append(bytes.Clone(data), 0),
		"huge length":    append([]byte(snapMagic+"\x01\x01"), 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dst := fixture(t)
			mustOK(t, dst, postCardCmd("mine", "h1", "merch", 7, ""))
			_, before, _ := dst.StateHash()
			err := dst.Restore(io.NopCloser(bytes.NewReader(b)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if _, after, _ := dst.StateHash(); after != before {
				t.Error("a rejected restore changed the state")
			}
			next, ok, old := restorePaths(dst.cfg.Dir)
			for _, p := range []string{next, ok, old} {
				if exists(p) {
					t.Errorf("%s left behind", p)
				}
			}
		})
	}
}

// TestRecoverSwap stops a Restore at each step of the swap and checks that
// Open finishes or undoes it.
func TestRecoverSwap(t *testing.T) {
	src := fixture(t)
	mustOK(t, src, postCardCmd("src-only", "h1", "merch", 9, ""))
	data := snapshotBytes(t, src)
	_, srcHash, _ := src.StateHash()

	type step int
	const (
		restoreWritten step = iota // .restore complete, no marker: undo
		marked                     // marker written: finish
		oldMoved                   // Dir → .old done
		swapped                    // .restore → Dir done, marker and .old remain
	)
	for _, st := range []step{restoreWritten, marked, oldMoved, swapped} {
		t.Run([]string{"restore written", "marked", "old moved", "swapped"}[st], func(t *testing.T) {
			s := fixture(t)
			_, oldHash, _ := s.StateHash()
			cfg := s.cfg
			next, okFile, old := restorePaths(cfg.Dir)
			if _, err := s.writeRestore(next, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if st >= marked {
				if err := writeMarker(okFile); err != nil {
					t.Fatal(err)
				}
			}
			if st >= oldMoved {
				if err := os.Rename(cfg.Dir, old); err != nil {
					t.Fatal(err)
				}
			}
			if st >= swapped {
				if err := os.Rename(next, cfg.Dir); err != nil {
					t.Fatal(err)
				}
			}
			r := openCfg(t, cfg)
			_, h, err := r.StateHash()
			if err != nil {
				t.Fatal(err)
			}
			want := srcHash
			if st == restoreWritten {
				want = oldHash
			}
			if h != want {
				t.Errorf("state after recovery is not the expected one")
			}
			for _, p := range []string{next, okFile, old} {
				if exists(p) {
					t.Errorf("%s left behind", p)
				}
			}
		})
	}
}

// Snapshot and Release must balance: Close waits for unreleased snapshots,
// so a released snapshot must not block it.
func TestSnapshotReleaseTwiceAndClose(t *testing.T) {
	s := openTest(t)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snap.Release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("snapshot of closed store: %v", err)
	}
	if _, err := s.Account("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("read of closed store: %v", err)
	}
	var _ raft.FSMSnapshot = snap
}

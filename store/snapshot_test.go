package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"

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

// snapshotBytes reads a full state stream of s, checking that it is as
// long as announced and carries s's applied index.
func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	st, err := s.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != st.Size() || st.Index() != s.AppliedIndex() {
		t.Fatalf("stream of %d bytes at %d; announced %d bytes, store at %d", len(b), st.Index(), st.Size(), s.AppliedIndex())
	}
	return b
}

// persistRef takes a raft snapshot of s and returns what it persists.
func persistRef(t *testing.T, s *Store) []byte {
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

// A raft snapshot is a reference to the applied index, not a copy: it
// restores only into a store that holds that state (or a later one).
func TestSnapshotIsAReference(t *testing.T) {
	src := fixture(t)
	mustOK(t, src, postCardCmd("p1", "h1", "merch", 100, "P1"))
	ref := persistRef(t, src)
	if len(ref) != SnapshotRefBytes {
		t.Fatalf("persisted %d bytes, want a %d-byte reference", len(ref), SnapshotRefBytes)
	}
	if idx, ok := ParseSnapshotRef(ref); !ok || idx != src.AppliedIndex() {
		t.Fatalf("reference names %d (ok %v), store at %d", idx, ok, src.AppliedIndex())
	}
	mustOK(t, src, postCardCmd("p2", "h1", "merch", 1, ""))
	_, before, _ := src.StateHash()
	if err := src.Restore(io.NopCloser(bytes.NewReader(ref))); err != nil {
		t.Fatalf("restoring its own reference: %v", err)
	}
	if _, after, _ := src.StateHash(); after != before {
		t.Error("restoring a reference changed the state")
	}

	behind := openTest(t)
	if err := behind.Restore(io.NopCloser(bytes.NewReader(ref))); !errors.Is(err, ErrSnapshotAhead) {
		t.Errorf("reference restored into a store that lacks the state: %v", err)
	}
	bad := bytes.Clone(ref)
	bad[len(snapRefMagic)+3] ^= 1
	if err := src.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("reference with a flipped bit: %v, want ErrCorrupt", err)
	}
	if _, ok := ParseSnapshotRef(append(bytes.Clone(ref), 0)); ok {
		t.Error("a reference with a trailing byte parsed")
	}
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

// A state stream holds the state as it was when opened, while applies go on.
func TestStateStreamWhileApplying(t *testing.T) {
	s := fixture(t)
	st, err := s.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, before, _ := s.StateHash()
	done := make(chan []byte)
	go func() {
		// iotest.OneByteReader: many small reads cross every buffer edge.
		b, err := io.ReadAll(iotest.OneByteReader(st))
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	for i := 0; i < 50; i++ {
		mustOK(t, s, postCardCmd(keyN("k", i), "h1", "merch", 1, ""))
	}
	data := <-done
	if int64(len(data)) != st.Size() {
		t.Errorf("read %d bytes, announced %d", len(data), st.Size())
	}
	r := openTest(t)
	if err := r.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if _, h, _ := r.StateHash(); h != before {
		t.Error("stream opened before the posts does not hold the state at that time")
	}
}

// A stream longer than one buffer: many pairs, restored intact.
func TestStateStreamLarge(t *testing.T) {
	s := fixture(t)
	for i := 0; i < 3000; i++ {
		mustOK(t, s, postCardCmd(keyN("big", i), "h1", "merch", 1, ""))
	}
	data := snapshotBytes(t, s)
	if len(data) < 2*snapBufferBytes {
		t.Fatalf("stream of %d bytes does not cross buffer edges", len(data))
	}
	r := openTest(t)
	if err := r.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	_, want, _ := s.StateHash()
	if _, got, _ := r.StateHash(); got != want {
		t.Error("restored state differs")
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
	// A stream closed before it was read to the end, twice.
	st, err := s.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("snapshot of closed store: %v", err)
	}
	if _, err := s.OpenState(); !errors.Is(err, ErrClosed) {
		t.Errorf("state stream of closed store: %v", err)
	}
	if _, err := s.Account("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("read of closed store: %v", err)
	}
	var _ raft.FSMSnapshot = snap
}

// The store's metrics reach prometheus: state streams and their bytes,
// restores, and the applied index.
func TestCollectorExportsSnapshotCounters(t *testing.T) {
	src := fixture(t)
	data := snapshotBytes(t, src)
	dst := openTest(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    *Store
		want map[string]float64
	}{
		{src, map[string]float64{
			"switchd_store_state_streams_total":      1,
			"switchd_store_state_stream_bytes_total": float64(len(data)),
			"switchd_store_snapshot_restores_total":  0,
			"switchd_store_applied_index":            float64(src.AppliedIndex()),
		}},
		{dst, map[string]float64{
			"switchd_store_state_streams_total":     0,
			"switchd_store_snapshot_restores_total": 1,
			"switchd_store_applied_index":           float64(src.AppliedIndex()),
		}},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c.s.Collector())
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(families) != len(storeMetrics) {
			t.Errorf("gathered %d families, want %d", len(families), len(storeMetrics))
		}
		got := map[string]float64{}
		for _, f := range families {
			m := f.GetMetric()[0]
			got[f.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		for name, want := range c.want {
			if v, ok := got[name]; !ok || v != want {
				t.Errorf("%s = %v (exported %v), want %v", name, v, ok, want)
			}
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/switchd/switchd/store"
)

// fullLog is a raft log store whose appends fail with ENOSPC while full
// is set: a full raft volume.
type fullLog struct {
	logStore
	full    *atomic.Bool
	refused *atomic.Int64
}

func (l fullLog) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

func (l fullLog) StoreLogs(es []*raft.Log) error {
	if l.full.Load() {
		l.refused.Add(1)
		return &os.PathError{Op: "write", Path: "wal/segment", Err: syscall.ENOSPC}
	}
	return l.logStore.StoreLogs(es)
}

// Issue 9 item 2, layer 2: an append to the raft log that fails (no space
// on the raft volume) is answered as a decline — the proposer's future
// fails, Propose returns a cluster error that outcome maps to 96 — and
// neither raft nor the node panics. Once appends work again the node
// leads again by itself and approves; nothing approved before is lost.
func TestRaftLogAppendFailureDeclinesAndRecovers(t *testing.T) {
	var full atomic.Bool
	var refused atomic.Int64
	testLogStore = func(l logStore) logStore { return fullLog{logStore: l, full: &full, refused: &refused} }
	defer func() { testLogStore = nil }()

	tn := open(t, t.TempDir(), func(c *Config) { c.ApplyTimeout = time.Second })
	defer tn.close(t)
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	var approved []store.Result
	for i := 0; i < 5; i++ {
		res, err := tn.node.Propose(context.Background(), post(i))
		if err != nil || res.Status != store.StatusOK {
			t.Fatalf("post %d: %v %v", i, res.Status, err)
		}
		approved = append(approved, res)
	}

	full.Store(true)
	for i := 5; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := tn.node.Propose(ctx, post(i))
		cancel()
		if err == nil {
			t.Fatalf("post %d with a full raft log approved: %+v", i, res)
		}
		if !errors.Is(err, ErrUnknownOutcome) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("post %d: %v, want a cluster decline (ErrUnknownOutcome or ErrNotLeader)", i, err)
		}
	}
	if refused.Load() == 0 {
		t.Fatal("no append was refused: the test proves nothing")
	}

	full.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 5; ; {
		// The refused posts were never appended: their keys are new.
		res, err := tn.node.Propose(ctx, post(i))
		if err == nil {
			if res.Status != store.StatusOK {
				t.Fatalf("post %d after recovery: %v", i, res.Status)
			}
			if i++; i == 10 {
				break
			}
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("no approval within 20 s of the raft log taking appends again: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // leader election after the step-down
	}
	for i, want := range approved {
		res, err := tn.node.Propose(context.Background(), post(i))
		if err != nil || !res.Replayed || res.TransferID != want.TransferID {
			t.Fatalf("post %d repeated after recovery: %+v %v, want the stored %s", i, res, err, want.TransferID)
		}
	}
}

// cluster.wal_segment_bytes sizes raft-wal's segment files.
func TestWALSegmentBytes(t *testing.T) {
	dir := t.TempDir()
	tn := open(t, dir, func(c *Config) { c.WALSegmentBytes = walSegmentBytesMin })
	waitReady(t, tn.node)
	tn.close(t)
	segs, err := filepath.Glob(filepath.Join(dir, "raft", walDir, "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment: %v", err)
	}
	fi, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != walSegmentBytesMin {
		t.Fatalf("segment of %d bytes, want %d", fi.Size(), walSegmentBytesMin)
	}
}

package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A new node keeps its raft log in raft-wal, and raft-wal's counters reach
// /metrics.
func TestLogStoreNewNodeUsesWAL(t *testing.T) {
	dir := t.TempDir()
	tn := open(t, dir, nil)
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	if _, err := os.Stat(filepath.Join(dir, "raft", walDir)); err != nil {
		t.Fatalf("no wal dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", boltFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new node also made %s: %v", boltFile, err)
	}
	n, err := testutil.GatherAndCount(tn.reg, "switchd_raft_wal_log_appends")
	if err != nil || n != 1 {
		t.Fatalf("wal metric: %d series, %v", n, err)
	}
	mfs, err := tn.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchd_raft_wal_log_appends" && mf.GetMetric()[0].GetCounter().GetValue() < 3 {
			t.Fatalf("log_appends %v after bootstrap and two proposals", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	tn.close(t)
}

// A data dir made with the bolt log keeps it when log_store is unset, and
// naming the other store is refused instead of starting from an empty log
// (which would forget the node's term, vote and entries).
func TestLogStoreKeepsWhatTheDirHolds(t *testing.T) {
	dir := t.TempDir()
	tn := open(t, dir, func(c *Config) { c.LogStore = LogStoreBolt })
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	last := tn.node.raft.LastIndex()
	tn.close(t)

	tn = open(t, dir, nil) // log_store unset
	if got := tn.node.raft.LastIndex(); got < last {
		t.Fatalf("reopened with last index %d, had %d: the bolt log was not used", got, last)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", walDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reopening a bolt dir made a wal dir: %v", err)
	}
	waitReady(t, tn.node)
	if _, err := tn.node.Propose(context.Background(), post(1)); err != nil {
		t.Fatal(err)
	}
	tn.close(t)

	cfg := testConfig(dir)
	cfg.LogStore = LogStoreWAL
	if _, _, err := openLogStore(cfg.Dir, cfg.LogStore, walSegmentBytesDefault, nil, nil); !errors.Is(err, ErrLogStoreMismatch) {
		t.Fatalf("wal over a bolt dir: %v, want ErrLogStoreMismatch", err)
	}
}

func TestLogStoreConfig(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.LogStore = "leveldb"
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("log_store leveldb: %v", err)
	}
}

// A follower whose log tail raft truncates (a new leader overwrote
// entries it had not committed) must still open its log afterwards.
// raft-wal v0.4.0 marked the tail segment sealed without writing its
// index, and the restarted node panicked reading index 1 (chaos seed
// 778205, hashicorp/raft-wal#31).
func TestLogStoreReopensAfterTailTruncation(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBolt} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s, _, err := openLogStore(dir, kind, walSegmentBytesDefault, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var logs []*raft.Log
			for i := uint64(1); i <= 10; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(8, 10); err != nil { // tail truncation
				t.Fatal(err)
			}
			if err := s.StoreLog(&raft.Log{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte{88}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, _, err = openLogStore(dir, kind, walSegmentBytesDefault, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := uint64(1); i <= 8; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil {
					t.Fatalf("index %d after reopen: %v", i, err)
				}
				if want := byte(i); i == 8 && (l.Term != 2 || l.Data[0] != 88) || i < 8 && l.Data[0] != want {
					t.Fatalf("index %d: term %d data %v", i, l.Term, l.Data)
				}
			}
			if last, err := s.LastIndex(); err != nil || last != 8 {
				t.Fatalf("last index %d, %v; want 8", last, err)
			}
		})
	}
}

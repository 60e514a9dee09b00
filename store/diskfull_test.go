package store

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"
)

// Disk-full fault test (issue 9, item 2). A full disk makes pebble's WAL
// write fail; pebble then panics in its commit path while holding its
// commit lock, so the failed DB can never be used or closed again in
// this process. The child process below lives through that (as switchd
// does until it exits); the parent then plays the restart: it reopens the
// directory and replays the raft log, as raft would.
const (
	diskFullChildEnv = "STORE_DISKFULL_CHILD_DIR"
	// diskFullFaultAt is the entry from which every WAL write fails with
	// ENOSPC; diskFullEntriesMax bounds the run should pebble never see it.
	diskFullFaultAt    = 40
	diskFullEntriesMax = 400
	// diskFullAfter is how many entries raft hands the failed store after
	// the first failure (they are committed in the log all the same).
	diskFullAfter = 3
	// diskFullBuysPerEntry makes each entry a few KiB of WAL.
	diskFullBuysPerEntry = 16
)

// diskFullEntry is the raft log entry at index i+1: accounts, funding,
// then purchases of 1 from card1 to merch.
func diskFullEntry(t testing.TB, i int) *raft.Log {
	switch i {
	case 0:
		card1 := acct("card1", KindCardholder, "USD")
		card1.CardHash = "h1"
		fund := acct("fund", KindFunding, "USD")
		fund.Unlimited = true
		return logEntry(t, 1, createCmd(card1), createCmd(acct("merch", KindBiller, "USD")), createCmd(fund))
	case 1:
		return logEntry(t, 2, postCmd("fund-card1", "fund", "card1", 1_000_000))
	}
	cmds := make([]Command, diskFullBuysPerEntry)
	for j := range cmds {
		cmds[j] = postCardCmd(keyN("buy", i*diskFullBuysPerEntry+j), "h1", "merch", 1, "")
	}
	return logEntry(t, uint64(i+1), cmds...)
}

type diskFullApproval struct {
	Fingerprint string
	Result      Result
}

// diskFullReport is what the child hands the parent.
type diskFullReport struct {
	// Approved maps idempotency keys answered StatusOK to their
	// fingerprint and result.
	Approved map[string]diskFullApproval
	// Entries is how many entries the child applied or was refused (all
	// of them are in the raft log); FirstFailed the first refused one.
	Entries, FirstFailed int
	AppliedAtFailure     uint64
}

func TestDiskFullFailsClosedAndReplaysAfterRestart(t *testing.T) {
	if dir := os.Getenv(diskFullChildEnv); dir != "" {
		diskFullChild(t, dir)
		return
	}
	dir := filepath.Join(t.TempDir(), "db")
	reportPath := dir + ".report.json"
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullFailsClosedAndReplaysAfterRestart$", "-test.count=1")
	cmd.Env = append(os.Environ(), diskFullChildEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	b, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep diskFullReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("child: %d approvals, first refused entry %d (applied index then %d), %d entries in the log",
		len(rep.Approved), rep.FirstFailed, rep.AppliedAtFailure, rep.Entries)
	if len(rep.Approved) == 0 {
		t.Fatal("nothing approved before the fault: the test proves nothing")
	}

	// The restart: the space is back, pebble recovers what its WAL kept,
	// raft replays the log from the start and the store skips what it has.
	cfg := testConfig(t)
	cfg.Dir = dir
	s := openCfg(t, cfg)
	if got := s.AppliedIndex(); got > rep.AppliedAtFailure {
		t.Fatalf("reopened at index %d, past the %d applied when the write failed", got, rep.AppliedAtFailure)
	}
	ref := openTest(t) // the same log applied with no fault
	for i := 0; i < rep.Entries+5; i++ {
		l := diskFullEntry(t, i)
		out := s.ApplyBatch([]*raft.Log{l})[0]
		want := ref.ApplyBatch([]*raft.Log{l})[0]
		if want == nil {
			t.Fatalf("reference store skipped entry %d", i)
		}
		if out == nil {
			continue // the reopened store had it already
		}
		rs, ok := out.([]Result)
		if !ok {
			t.Fatalf("entry %d after restart: %v", i, out)
		}
		for j, r := range rs {
			if r.Status != StatusOK {
				t.Fatalf("entry %d command %d after restart: %v", i, j, r.Status)
			}
		}
	}
	// Every approval the child gave is there, the same, after the replay.
	for key, a := range rep.Approved {
		want := a.Result
		got, ok, err := s.Replay(key, a.Fingerprint)
		if err != nil || !ok {
			t.Fatalf("approved %s missing after restart (%v)", key, err)
		}
		got.Replayed = false
		if got != want {
			t.Fatalf("approved %s: %+v before the fault, %+v after the replay", key, want, got)
		}
	}
	i1, h1, err := s.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	i2, h2, err := ref.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	if i1 != i2 || h1 != h2 {
		t.Fatalf("state after restart and replay (index %d) differs from the fault-free store (index %d)", i1, i2)
	}
	checkInvariants(t, s)
}

// diskFullChild applies entries over an errorfs that fails every write to
// pebble's WAL with ENOSPC from entry diskFullFaultAt on, and checks that
// the store fails closed: no panic, the entries refused with ErrFailed,
// Snapshot refused, reads still answered. It exits the process without
// closing pebble (it cannot be closed, see Store.Close).
func diskFullChild(t *testing.T, dir string) {
	var full atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.HasSuffix(op.Path, ".log") {
			return syscall.ENOSPC
		}
		return nil
	})
	cfg := testConfigIn(dir) // not testConfig: its t.TempDir would outlive os.Exit
	cfg.FS = errorfs.Wrap(vfs.Default, inj)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := diskFullReport{Approved: map[string]diskFullApproval{}, FirstFailed: -1}
	for i := 0; i < diskFullEntriesMax; i++ {
		if i == diskFullFaultAt {
			full.Store(true)
		}
		l := diskFullEntry(t, i)
		out := s.ApplyBatch([]*raft.Log{l})[0] // a panic fails the child
		rep.Entries = i + 1
		if err, ok := out.(error); ok {
			if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("entry %d: %v, want ErrFailed wrapping ENOSPC", i, err)
			}
			rep.FirstFailed, rep.AppliedAtFailure = i, s.AppliedIndex()
			break
		}
		cmds, _ := DecodeBatch(l.Data)
		for j, r := range out.([]Result) {
			if r.Status == StatusOK {
				rep.Approved[cmds[j].Key] = diskFullApproval{cmds[j].Fingerprint, r}
			}
		}
	}
	if rep.FirstFailed < diskFullFaultAt {
		t.Fatalf("no write failed in %d entries (first failure %d)", rep.Entries, rep.FirstFailed)
	}
	select {
	case <-s.Failed():
	default:
		t.Fatal("Failed not closed")
	}
	if rep.AppliedAtFailure >= uint64(rep.FirstFailed+1) {
		t.Fatalf("applied index %d covers the refused entry %d", rep.AppliedAtFailure, rep.FirstFailed+1)
	}
	// Raft goes on handing over committed entries: each is refused, none
	// applied on top of the missing one.
	for k := 0; k < diskFullAfter; k++ {
		i := rep.Entries
		out := s.ApplyBatch([]*raft.Log{diskFullEntry(t, i)})[0]
		if err, ok := out.(error); !ok || !errors.Is(err, ErrFailed) {
			t.Fatalf("entry %d after the failure: %v, want ErrFailed", i, out)
		}
		rep.Entries++
	}
	if s.AppliedIndex() != rep.AppliedAtFailure {
		t.Fatalf("applied index moved from %d to %d after the failure", rep.AppliedAtFailure, s.AppliedIndex())
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Snapshot after the failure: %v, want ErrFailed (raft must not truncate its log)", err)
	}
	if _, err := s.Account("card1"); err != nil {
		t.Fatalf("read after the failure: %v", err)
	}
	if _, ok, err := s.Replay(keyN("buy", 2*diskFullBuysPerEntry), "fp-"+keyN("buy", 2*diskFullBuysPerEntry)); err != nil || !ok {
		t.Fatalf("replay of an early approval after the failure: ok %v, %v", ok, err)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close of a failed store: %v, want ErrFailed", err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+".report.json", b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Like switchd after a failed write: exit, leaving pebble to the
	// kernel (goleak in TestMain would count its goroutines otherwise).
	os.Exit(0)
}

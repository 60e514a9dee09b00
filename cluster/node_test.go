package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testConfig(dir string) Config {
	c := DefaultConfig()
	c.Dir = dir + "/raft"
	c.RaftAddr = "127.0.0.1:0"
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	return c
}

type testNode struct {
	st   *store.Store
	node *Node
	reg  *prometheus.Registry
}

func open(t *testing.T, dir string, mutate func(*Config)) *testNode {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = dir + "/ledger"
	st, err := store.Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	n, err := New(cfg, st, testLogger(), reg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return &testNode{st: st, node: n, reg: reg}
}

func (tn *testNode) close(t *testing.T) {
	t.Helper()
	if err := tn.node.Close(); err != nil {
		t.Errorf("node close: %v", err)
	}
	if err := tn.st.Close(); err != nil {
		t.Errorf("store close: %v", err)
	}
}

func waitReady(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

func createAccounts(t *testing.T, n *Node) {
	t.Helper()
	for _, a := range []store.Account{
		{ID: "funding", Kind: store.KindFunding, Currency: "USD", Unlimited: true},
		{ID: "shop", Kind: store.KindSettlement, Currency: "USD", Unlimited: true},
	} {
		a := a
		res, err := n.Propose(context.Background(), store.Command{
			Op: store.OpCreateAccount, Key: "acct|" + a.ID, Fingerprint: "x", Time: 1, Account: &a,
		})
		if err != nil || res.Status != store.StatusOK {
			t.Fatalf("create %s: %v %v", a.ID, res.Status, err)
		}
	}
}

func post(i int) store.Command {
	return store.Command{
		Op: store.OpPost, Key: fmt.Sprintf("post|%d", i), Fingerprint: "x", Time: int64(i + 10),
		BusinessDay: "2026-11-21", Debit: "funding", Credit: "shop", Amount: 100, Currency: "USD",
	}
}

// Concurrent proposals are all answered with their own result, and under
// load the proposer packs several commands into one raft entry.
func TestProposeConcurrentBatches(t *testing.T) {
	tn := open(t, t.TempDir(), nil)
	defer tn.close(t)
	waitReady(t, tn.node)
	createAccounts(t, tn.node)

	const writers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	ids := sync.Map{}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := tn.node.Propose(context.Background(), post(w*each+i))
				if err != nil {
					errs <- err
					return
				}
				if res.Status != store.StatusOK || res.TransferID == "" {
					errs <- fmt.Errorf("status %v transfer %q", res.Status, res.TransferID)
					return
				}
				if _, dup := ids.LoadOrStore(res.TransferID, true); dup {
					errs <- fmt.Errorf("transfer id %s answered twice", res.TransferID)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	shop, err := tn.st.Account("shop")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := shop.Posted(), int64(writers*each*100); got != want {
		t.Fatalf("shop posted %d, want %d", got, want)
	}
	var m dto.Metric
	if err := tn.node.m.batchCommands.Write(&m); err != nil {
		t.Fatal(err)
	}
	entries := m.GetHistogram().GetSampleCount()
	if entries == 0 || entries >= writers*each {
		t.Fatalf("%d raft entries for %d commands: proposer did not batch", entries, writers*each)
	}
	t.Logf("%d commands in %d raft entries", writers*each+2, entries)
}

// After a restart (with a snapshot taken in between) the ledger holds what
// was answered, and a repeated key gets the stored result.
func TestRestartKeepsAppliedState(t *testing.T) {
	dir := t.TempDir()
	tn := open(t, dir, func(c *Config) { c.SnapshotThreshold = 5; c.TrailingLogs = 2 })
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	var first store.Result
	for i := 0; i < 20; i++ {
		res, err := tn.node.Propose(context.Background(), post(i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res
		}
	}
	if err := tn.node.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	_, hashBefore, err := tn.st.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	tn.close(t)

	tn = open(t, dir, nil)
	defer tn.close(t)
	waitReady(t, tn.node)
	_, hashAfter, err := tn.st.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	if hashBefore != hashAfter {
		t.Fatalf("state hash changed across restart")
	}
	res, err := tn.node.Propose(context.Background(), post(0))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replayed || res.TransferID != first.TransferID || res.AuthCode != first.AuthCode {
		t.Fatalf("repeat after restart: got %+v, want replay of %+v", res, first)
	}
	shop, _ := tn.st.Account("shop")
	if shop.Posted() != 20*100 {
		t.Fatalf("shop posted %d, want %d", shop.Posted(), 20*100)
	}
}

// A node that is not the leader refuses at once and proposes nothing.
func TestNotLeaderRefuses(t *testing.T) {
	tn := open(t, t.TempDir(), func(c *Config) { c.Bootstrap = false })
	defer tn.close(t)
	_, err := tn.node.Propose(context.Background(), post(1))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("got %v, want ErrNotLeader", err)
	}
	if tn.node.Ready() {
		t.Fatal("a node without a cluster reports ready")
	}
}

// Closing with proposals in flight answers every caller (applied, closed
// or unknown outcome) and leaks no goroutine; nothing hangs.
func TestCloseAnswersEveryone(t *testing.T) {
	tn := open(t, t.TempDir(), nil)
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := tn.node.Propose(context.Background(), post(i))
			k := "applied"
			switch {
			case errors.Is(err, ErrClosed):
				k = "closed"
			case errors.Is(err, ErrUnknownOutcome):
				k = "unknown"
			case errors.Is(err, ErrNotLeader):
				k = "not_leader"
			case err != nil:
				k = err.Error()
			}
			mu.Lock()
			outcomes[k]++
			mu.Unlock()
		}()
	}
	time.Sleep(time.Millisecond)
	tn.close(t)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("proposals still waiting 10s after Close")
	}
	total := 0
	for k, n := range outcomes {
		switch k {
		case "applied", "closed", "unknown", "not_leader":
		default:
			t.Errorf("unexpected outcome %q", k)
		}
		total += n
	}
	if total != 200 {
		t.Fatalf("%d answers for 200 proposals", total)
	}
	if _, err := tn.node.Propose(context.Background(), post(999)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := testConfig("/tmp/x")
	for name, mutate := range map[string]func(*Config){
		"no node id":     func(c *Config) { c.NodeID = "" },
		"bad addr":       func(c *Config) { c.RaftAddr = "nope" },
		"no dir":         func(c *Config) { c.Dir = "" },
		"batch too big":  func(c *Config) { c.BatchCommandsMax = batchCommandsMaxLimit + 1 },
		"batch zero":     func(c *Config) { c.BatchCommandsMax = 0 },
		"queue zero":     func(c *Config) { c.QueueLenMax = 0 },
		"pipeline big":   func(c *Config) { c.PipelineMax = pipelineMaxLimit + 1 },
		"lease > beat":   func(c *Config) { c.LeaderLeaseTimeout = c.HeartbeatTimeout + 1 },
		"apply timeout":  func(c *Config) { c.ApplyTimeout = 0 },
		"no snapshots":   func(c *Config) { c.SnapshotsRetain = 0 },
		"tiny heartbeat": func(c *Config) { c.HeartbeatTimeout = time.Millisecond },
		"tiny segment":   func(c *Config) { c.WALSegmentBytes = walSegmentBytesMin - 1 },
		"huge segment":   func(c *Config) { c.WALSegmentBytes = walSegmentBytesMax + 1 },
	} {
		c := base
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Raft's errors about connections that Close shut go to debug once the
// node is closing; the same line before that, and other errors, stay errors.
func TestRaftShutdownNoiseIsDebug(t *testing.T) {
	var buf bytes.Buffer
	closing := new(atomic.Bool)
	w := raftLogWriter{
		log:     slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		closing: closing,
	}
	noise := `{"@level":"error","@message":"failed to accept connection","error":"accept tcp 127.0.0.1:7001: use of closed network connection"}`
	other := `{"@level":"error","@message":"failed to appendEntries to","error":"dial tcp: connection refused"}`
	level := func(line string) string {
		buf.Reset()
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		var rec struct{ Level string }
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("%v: %s", err, buf.String())
		}
		return rec.Level
	}
	if got := level(noise); got != "ERROR" {
		t.Fatalf("closed connection while running: %s, want ERROR", got)
	}
	closing.Store(true)
	if got := level(noise); got != "DEBUG" {
		t.Fatalf("closed connection while closing: %s, want DEBUG", got)
	}
	if got := level(other); got != "ERROR" {
		t.Fatalf("other error while closing: %s, want ERROR", got)
	}
}

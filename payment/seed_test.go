package payment_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

// gateLedger is the node as a seeder sees it during an outage: while down,
// every proposal and read fails as on a node without a leader.
type gateLedger struct {
	node      *cluster.Node
	down      atomic.Bool
	proposals atomic.Int64 // proposals that reached the node
}

func (g *gateLedger) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	if g.down.Load() {
		return store.Result{}, cluster.ErrNotLeader
	}
	g.proposals.Add(1)
	return g.node.Propose(ctx, cmd)
}

func (g *gateLedger) ReadIndex(ctx context.Context) error {
	if g.down.Load() {
		return cluster.ErrNotLeader
	}
	return g.node.ReadIndex(ctx)
}

// seedSetup is a one-voter node behind a gate that is down (no leader), and
// a pipeline proposing through the gate; all closed at cleanup.
func seedSetup(t *testing.T) (config.File, *store.Store, *gateLedger, *switching.Pipeline) {
	t.Helper()
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout, cfg.Cluster.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	cfg.Finish()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	node, err := cluster.New(cfg.Cluster, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() }) // before the store: cleanups run last-in first-out
	g := &gateLedger{node: node}
	g.down.Store(true)
	pipe, err := switching.NewPipeline(cfg.Switch, g, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, g, pipe
}

// Seeding waits for the cluster instead of failing the start, creates the
// accounts and opening balances once, and a later seeder on a seeded
// ledger proposes nothing.
func TestSeederRetriesUntilALeaderThenProposesNothing(t *testing.T) {
	cfg, st, g, pipe := seedSetup(t)
	var prepared atomic.Int64
	prepare := func(context.Context) error { prepared.Add(1); return nil }

	s := pipe.StartSeeder(cfg.Accounts, st, prepare, nil)
	defer s.Close()
	time.Sleep(300 * time.Millisecond) // several retries while down
	if s.Done() || g.proposals.Load() != 0 {
		t.Fatalf("seeded without a leader: done %v, proposals %d", s.Done(), g.proposals.Load())
	}
	g.down.Store(false)
	seedWaitFor(t, 10*time.Second, s.Done)
	for _, a := range cfg.Accounts {
		if _, err := st.Account(a.ID); err != nil {
			t.Fatalf("seed account %s: %v", a.ID, err)
		}
	}
	card, _ := st.Account("card-4111")
	if card.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d, want the opening 100000 once", card.Posted())
	}
	if prepared.Load() != 1 {
		t.Fatalf("prepare ran %d times, want once before the accounts were created", prepared.Load())
	}

	before := g.proposals.Load()
	s2 := pipe.StartSeeder(cfg.Accounts, st, prepare, nil)
	defer s2.Close()
	seedWaitFor(t, 10*time.Second, s2.Done)
	if n := g.proposals.Load() - before; n != 0 || prepared.Load() != 1 {
		t.Fatalf("a seeder on a seeded ledger proposed %d commands (prepare ran %d times)", n, prepared.Load())
	}
	if card, _ := st.Account("card-4111"); card.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d after a second seeder", card.Posted())
	}
}

// Close stops a seeder that is still waiting for a leader.
func TestSeederCloseWhileWaiting(t *testing.T) {
	cfg, st, _, pipe := seedSetup(t)
	s := pipe.StartSeeder(cfg.Accounts, st, nil, nil)
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop a waiting seeder")
	}
	if s.Done() {
		t.Fatal("done without seeding")
	}
}

func seedWaitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
	}
}

// A seed pass cut short between an account's creation and its opening
// balance (a crash) is finished by the next seeder: the opening is posted
// once, and only for that account.
func TestSeederFinishesAPassCutShort(t *testing.T) {
	cfg, st, g, pipe := seedSetup(t)
	g.down.Store(false)
	seedWaitFor(t, 10*time.Second, g.node.Ready)
	// What the cut-short pass left: card-4111 created, its opening not.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var card switching.AccountSeed
	for _, a := range cfg.Accounts {
		if a.ID == "card-4111" {
			card = a
		}
	}
	res, err := g.node.Propose(ctx, store.Command{Op: store.OpCreateAccount, Key: "seed|account|card-4111", Fingerprint: "seed",
		Time: time.Now().UnixNano(), Account: &store.Account{ID: card.ID, Kind: card.Kind, Currency: card.Currency,
			CardHash: pipe.CardHash(mustPAN(t, card.PAN)), MaskedPAN: "411111******1111"}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("create: %v %v", res.Status, err)
	}
	s := pipe.StartSeeder(cfg.Accounts, st, nil, nil)
	defer s.Close()
	seedWaitFor(t, 10*time.Second, s.Done)
	if a, _ := st.Account("card-4111"); a.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d, want its opening 100000", a.Posted())
	}
	before := g.proposals.Load()
	s2 := pipe.StartSeeder(cfg.Accounts, st, nil, nil)
	defer s2.Close()
	seedWaitFor(t, 10*time.Second, s2.Done)
	if n := g.proposals.Load() - before; n != 0 {
		t.Fatalf("the finished ledger got %d more seed proposals", n)
	}
	if a, _ := st.Account("card-4111"); a.Posted() != 100000 {
		t.Fatalf("card-4111 posted %d after another seeder, want 100000", a.Posted())
	}
}

func mustPAN(t *testing.T, s string) codec.PAN {
	t.Helper()
	pan, err := codec.ParsePAN(s)
	if err != nil {
		t.Fatal(err)
	}
	return pan
}

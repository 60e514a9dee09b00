package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/store"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func suffrageOf(t *testing.T, n *Node, id string) (raft.ServerSuffrage, bool) {
	t.Helper()
	servers, err := n.servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// Issue 9 item 4, the scenario of the issue: a single-node cluster is
// asked (directly, and through a follower's forwarding) to add a member
// whose raft address nothing answers, or that answers as another id. Each
// is refused at once with its reason; the node keeps committing, and
// after a restart it comes up and serves. Before the fix the bogus node
// became a voter of a two-voter cluster with one voter unreachable.
func TestClusterBogusJoinRefused(t *testing.T) {
	dir := t.TempDir()
	tn := open(t, dir, nil)
	waitReady(t, tn.node)
	createAccounts(t, tn.node)
	ctx := context.Background()

	start := time.Now()
	if _, err := tn.node.Join(ctx, "bogus", switchdtest.FreePort(t)); !errors.Is(err, ErrJoinUnreachable) {
		t.Fatalf("join of an address nothing answers: %v, want ErrJoinUnreachable", err)
	}
	if d := time.Since(start); d > joinProbeTimeout+time.Second {
		t.Errorf("refusal took %s", d)
	}
	// A real node at that address, under another id.
	other := open(t, t.TempDir(), func(c *Config) { c.NodeID, c.Bootstrap = "other", false })
	defer other.close(t)
	otherAddr := string(other.node.trans.LocalAddr())
	if _, err := tn.node.Join(ctx, "bogus", otherAddr); !errors.Is(err, ErrJoinIdentity) {
		t.Fatalf("join under the wrong id: %v, want ErrJoinIdentity", err)
	}
	if _, err := tn.node.Join(ctx, "bogus", "no-port"); !errors.Is(err, ErrMembership) {
		t.Fatalf("join of a malformed address: %v, want ErrMembership", err)
	}
	if servers, _ := tn.node.servers(); len(servers) != 1 {
		t.Fatalf("configuration after bogus joins: %v", servers)
	}
	if res, err := tn.node.Propose(ctx, post(1)); err != nil || res.Status != store.StatusOK {
		t.Fatalf("a write after bogus joins: %v %v", res.Status, err)
	}
	if !tn.node.Ready() {
		t.Fatal("not ready after bogus joins")
	}

	tn.close(t)
	tn = open(t, dir, nil)
	defer tn.close(t)
	waitReady(t, tn.node)
	if res, err := proposeRetry(tn.node, post(2)); err != nil || res.Status != store.StatusOK {
		t.Fatalf("a write after the restart: %v %v", res.Status, err)
	}
}

// The refusal reasons cross the forwarding protocol: a follower's caller
// gets the leader's sentinel. Leadership transfer answers a clear refusal
// to the leader itself; remove never leaves the voters without a
// reachable quorum, and a dead voter can still be removed.
func TestClusterMembershipRefusalsThroughFollower(t *testing.T) {
	tc := newTestCluster(t, 3)
	defer tc.close()
	l := tc.leader()
	f := (l + 1) % 3
	dead := (l + 2) % 3
	ctx := context.Background()
	via := tc.nodes[f].node
	if _, err := via.Join(ctx, "bogus", switchdtest.FreePort(t)); !errors.Is(err, ErrJoinUnreachable) {
		t.Fatalf("bogus join through a follower: %v, want ErrJoinUnreachable", err)
	}
	leaderID := tc.nodes[l].node.cfg.NodeID
	if err := via.TransferLeadership(ctx, leaderID); !errors.Is(err, ErrAlreadyLeader) {
		t.Fatalf("transfer to the leader through a follower: %v, want ErrAlreadyLeader", err)
	}
	if err := tc.nodes[l].node.TransferLeadership(ctx, leaderID); !errors.Is(err, ErrAlreadyLeader) {
		t.Fatalf("transfer to the leader on the leader: %v, want ErrAlreadyLeader", err)
	}

	deadID := tc.nodes[dead].node.cfg.NodeID
	tc.stop(dead)
	// Removing the live follower would leave {leader, dead}: one of two.
	if err := tc.nodes[l].node.Remove(ctx, via.cfg.NodeID); !errors.Is(err, ErrQuorumAtRisk) {
		t.Fatalf("remove of a live voter with another one down: %v, want ErrQuorumAtRisk", err)
	}
	if _, ok := suffrageOf(t, tc.nodes[l].node, via.cfg.NodeID); !ok {
		t.Fatal("the refused remove removed the node")
	}
	if err := via.Remove(ctx, deadID); err != nil {
		t.Fatalf("remove of the dead voter: %v", err)
	}
	if res, err := proposeRetry(via, post(1)); err != nil || res.Status != store.StatusOK {
		t.Fatalf("a write after removing the dead voter: %v %v", res.Status, err)
	}
	// Two voters left, both up: removing either leaves one of one.
	if err := tc.nodes[l].node.Remove(ctx, via.cfg.NodeID); err != nil {
		t.Fatalf("remove down to one voter: %v", err)
	}
	if err := tc.nodes[l].node.TransferLeadership(ctx, ""); !errors.Is(err, ErrNoOtherVoter) {
		t.Fatalf("transfer on a single voter: %v, want ErrNoOtherVoter", err)
	}
	if err := tc.nodes[l].node.Remove(ctx, leaderID); !errors.Is(err, ErrQuorumAtRisk) {
		t.Fatalf("remove of the last voter: %v, want ErrQuorumAtRisk", err)
	}
}

// gatedFSM holds every ApplyBatch until released: a node whose state
// stays behind while raft hands it the log.
type gatedFSM struct {
	*store.Store
	once sync.Once
	gate chan struct{}
}

func (g *gatedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	<-g.gate
	return g.Store.ApplyBatch(logs)
}

func (g *gatedFSM) release() { g.once.Do(func() { close(g.gate) }) }

// A new member joins as a non-voter and is not ready while far behind; it
// is shown as a non-voter with its lag, cannot be handed leadership, and
// stays a non-voter while it lags. The leader that added it dies; once
// the member catches up the next leader promotes it, and it is ready.
func TestClusterJoinNonVoterPromotedOnceCaughtUp(t *testing.T) {
	small := func(c *Config) { c.CatchUpLagMax = 2 }
	tc := newTestCluster(t, 3, small)
	defer tc.close()
	l := tc.leader()
	for i := 0; i < 10; i++ {
		if res, err := proposeRetry(tc.nodes[l].node, post(i)); err != nil || res.Status != store.StatusOK {
			t.Fatalf("post %d: %v %v", i, res.Status, err)
		}
	}

	sc := store.DefaultConfig()
	sc.Dir = t.TempDir() + "/ledger"
	st, err := store.Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedFSM{Store: st, gate: make(chan struct{})}
	cfg := testConfig(t.TempDir())
	multiConfig(&cfg)
	small(&cfg)
	cfg.NodeID = "n4"
	n4, err := New(cfg, g, testLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		g.release() // raft's shutdown waits for its FSM goroutine
		if err := n4.Close(); err != nil {
			t.Errorf("n4 close: %v", err)
		}
		st.Close()
	}()

	f := (l + 1) % 3
	// The add itself takes milliseconds; the rest of the wait ends Join
	// while the node, held back, cannot have caught up.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	voter, err := tc.nodes[f].node.Join(ctx, "n4", string(n4.trans.LocalAddr()))
	cancel()
	if err != nil || voter {
		t.Fatalf("join of a lagging node: voter %v, %v; want a non-voter", voter, err)
	}
	waitFor(t, 5*time.Second, "n4 hears the leader's commit index", func() bool {
		_, id := n4.raft.LeaderWithID()
		return id != "" && n4.leaderCommit.Load() != 0
	})
	if n4.Ready() {
		t.Fatalf("n4 is ready while far behind: %+v", n4.StatusOf(false))
	}
	cs, err := tc.nodes[l].node.ClusterStatus(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	var m4 *Member
	for i := range cs.Members {
		if cs.Members[i].ID == "n4" {
			m4 = &cs.Members[i]
		}
	}
	if m4 == nil || m4.Suffrage != raft.Nonvoter.String() || m4.Lag <= cfg.CatchUpLagMax || m4.Status == nil || m4.Status.Ready {
		t.Fatalf("status of the lagging member: %+v", m4)
	}
	if err := tc.nodes[f].node.TransferLeadership(context.Background(), "n4"); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("transfer to a non-voter: %v, want ErrNotVoter", err)
	}
	// Many ticks later it is still a non-voter.
	time.Sleep(5 * memberTick)
	if s, _ := suffrageOf(t, tc.nodes[l].node, "n4"); s != raft.Nonvoter {
		t.Fatalf("a lagging member became a %v", s)
	}

	tc.stop(l)
	l2 := tc.leader()
	g.release()
	waitFor(t, 10*time.Second, "the new leader promotes n4", func() bool {
		s, ok := suffrageOf(t, tc.nodes[l2].node, "n4")
		return ok && s == raft.Voter
	})
	waitFor(t, 10*time.Second, "n4 ready", n4.Ready)
	// Joining again once a voter: a no-op that says so.
	voter, err = tc.nodes[l2].node.Join(context.Background(), "n4", string(n4.trans.LocalAddr()))
	if err != nil || !voter {
		t.Fatalf("join again: voter %v, %v", voter, err)
	}
}

package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/store"
)

// testCluster is n in-process nodes on loopback; node 0 bootstraps, the
// others join through it.
type testCluster struct {
	t     *testing.T
	dirs  []string
	nodes []*testNode
}

func multiConfig(c *Config) {
	c.Bootstrap = false
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.ApplyTimeout = 3 * time.Second
}

func newTestCluster(t *testing.T, size int, mutate ...func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	for i := 0; i < size; i++ {
		dir := t.TempDir()
		tc.dirs = append(tc.dirs, dir)
		tn := open(t, dir, func(c *Config) {
			multiConfig(c)
			c.NodeID = fmt.Sprintf("n%d", i+1)
			c.Bootstrap = i == 0
			for _, m := range mutate {
				m(c)
			}
		})
		tc.nodes = append(tc.nodes, tn)
		if i == 0 {
			waitReady(t, tn.node)
			createAccounts(t, tn.node)
			continue
		}
		tc.join(i, tc.nodes[i-1].node) // through the previous node: a follower passes it on
	}
	tc.waitAllReady()
	return tc
}

func (tc *testCluster) join(i int, via *Node) {
	tc.t.Helper()
	n := tc.nodes[i].node
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := via.Join(ctx, n.cfg.NodeID, string(n.trans.LocalAddr()))
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			tc.t.Fatalf("join n%d: %v", i+1, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tc *testCluster) waitAllReady() {
	tc.t.Helper()
	for _, tn := range tc.nodes {
		if tn != nil {
			waitReady(tc.t, tn.node)
		}
	}
}

func (tc *testCluster) leader() int {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, tn := range tc.nodes {
			if tn != nil && tn.node.Leading() {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc.t.Fatal("no leader within 10s")
	return -1
}

func (tc *testCluster) stop(i int) {
	tc.nodes[i].close(tc.t)
	tc.nodes[i] = nil
}

func (tc *testCluster) close() {
	for i, tn := range tc.nodes {
		if tn != nil {
			tc.stop(i)
		}
	}
}

// waitConverged waits until every live node applied the same index and
// returns their state hashes there.
func (tc *testCluster) waitConverged() {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var idx []uint64
		var sums [][32]byte
		for _, tn := range tc.nodes {
			if tn == nil {
				continue
			}
			i, s, err := tn.st.StateHash()
			if err != nil {
				tc.t.Fatal(err)
			}
			idx, sums = append(idx, i), append(sums, s)
		}
		same := true
		for k := range idx {
			same = same && idx[k] == idx[0] && sums[k] == sums[0]
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("replicas did not converge: applied %v", idx)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Any node serves: proposals through followers are forwarded to the
// leader and answered after apply; balances read through ReadIndex on a
// follower see every write answered before; joining twice is a no-op;
// replicas end with equal state hashes.
func TestClusterForwardingAndReads(t *testing.T) {
	tc := newTestCluster(t, 3)
	defer tc.close()
	l := tc.leader()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := tc.nodes[w].node
			for i := 0; i < 100; i++ {
				res, err := proposeRetry(n, post(w*1000+i))
				if err != nil || res.Status != store.StatusOK {
					errs <- fmt.Errorf("n%d post %d: %v %v", w+1, i, res.Status, err)
					return
				}
				// Read your write on the same (maybe follower) node.
				if err := readRetry(n); err != nil {
					errs <- err
					return
				}
				if _, err := tc.nodes[w].st.Transfer(res.TransferID); err != nil {
					errs <- fmt.Errorf("n%d: transfer %s answered but not readable after ReadIndex: %v", w+1, res.TransferID, err)
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
	f := (l + 1) % 3
	shop, err := tc.nodes[f].st.Account("shop")
	if err := readRetry(tc.nodes[f].node); err != nil {
		t.Fatal(err)
	}
	shop, err = tc.nodes[f].st.Account("shop")
	if err != nil || shop.Posted() != 300*100 {
		t.Fatalf("follower reads shop posted %d (%v), want %d", shop.Posted(), err, 300*100)
	}
	// Joining again (through a follower) changes nothing.
	before, _ := tc.nodes[l].node.servers()
	tc.join(2, tc.nodes[f].node)
	after, _ := tc.nodes[l].node.servers()
	if len(before) != 3 || len(after) != 3 {
		t.Fatalf("servers before %v after %v", before, after)
	}
	cs, err := tc.nodes[f].node.ClusterStatus(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cs.Members {
		if m.Status == nil {
			t.Fatalf("member %s unreachable: %s", m.ID, m.Error)
		}
	}
	tc.waitConverged()
}

// The leader dies with forwarded commands in flight. Every command whose
// outcome was unknown is repeated (same key) through a survivor: it gets
// the original answer if it had committed, or is applied now, and the
// ledger holds every command exactly once.
func TestClusterUnknownOutcomeRepeatExactlyOnce(t *testing.T) {
	tc := newTestCluster(t, 3)
	defer tc.close()
	l := tc.leader()
	f := (l + 1) % 3
	const n = 300
	type answer struct {
		res store.Result
		err error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	killed := make(chan struct{})
	const workers = 10
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				answers[i].res, answers[i].err = tc.nodes[f].node.Propose(ctx, post(i))
				cancel()
				mu.Lock()
				done++
				if done == n/3 {
					go func() { tc.stop(l); close(killed) }() // kill the leader mid-stream
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-killed
	tc.leader()
	unknown, applied := 0, 0
	for i := 0; i < n; i++ {
		a := answers[i]
		if a.err == nil {
			applied++
			continue
		}
		if errors.Is(a.err, ErrUnknownOutcome) {
			unknown++
		}
		// Repeat on any survivor until it is answered.
		for try := 0; ; try++ {
			res, err := tc.nodes[(f+try)%3].nodeOr(tc.nodes[f]).Propose(context.Background(), post(i))
			if err == nil {
				if res.Status != store.StatusOK {
					t.Fatalf("repeat %d: %v", i, res.Status)
				}
				break
			}
			if try > 100 {
				t.Fatalf("repeat %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("%d applied, %d unknown, %d refused before the repeat", applied, unknown, n-applied-unknown)
	tc.waitConverged()
	for _, tn := range tc.nodes {
		if tn == nil {
			continue
		}
		shop, _ := tn.st.Account("shop")
		if shop.Posted() != n*100 {
			t.Fatalf("shop posted %d, want %d: a command was lost or doubled", shop.Posted(), n*100)
		}
		for i := 0; i < n; i++ {
			if answers[i].err == nil {
				if _, err := tn.st.Transfer(answers[i].res.TransferID); err != nil {
					t.Fatalf("approved transfer %s missing on a replica", answers[i].res.TransferID)
				}
			}
		}
	}
}

// proposeRetry proposes cmd on n, repeating it (same key) while the
// answer is a retryable error: a leader change on a loaded test machine is
// allowed, a lost or doubled command is not.
func proposeRetry(n *Node, cmd store.Command) (store.Result, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := n.Propose(ctx, cmd)
		cancel()
		retry := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrOverloaded)
		if !retry || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readRetry is ReadIndex, repeated while no leader answers.
func readRetry(n *Node) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.ReadIndex(ctx)
		cancel()
		if err == nil || !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrUnknownOutcome) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeOr is tn's node, or other's when tn was stopped.
func (tn *testNode) nodeOr(other *testNode) *Node {
	if tn == nil {
		return other.node
	}
	return tn.node
}

// Node-to-node traffic over mutual TLS with a development CA: the cluster
// forms, forwards and replicates; a peer with a certificate from another
// CA, or with none, is refused.
func TestClusterMutualTLS(t *testing.T) {
	caDir := t.TempDir()
	tc := newTestCluster(t, 3, func(c *Config) { c.TLS = TLSConfig{Mode: "dev", DevCADir: caDir} })
	defer tc.close()
	l := tc.leader()
	f := (l + 1) % 3
	if res, err := tc.nodes[f].node.Propose(context.Background(), post(1)); err != nil || res.Status != store.StatusOK {
		t.Fatalf("forwarded over TLS: %v %v", res.Status, err)
	}
	tc.waitConverged()

	addr := string(tc.nodes[l].node.trans.LocalAddr())
	other := Config{NodeID: "rogue", RaftAddr: "127.0.0.1:0", Dir: t.TempDir() + "/raft",
		TLS: TLSConfig{Mode: "dev", DevCADir: t.TempDir()}}
	_, rogue, err := other.tlsConfigs(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"other CA":              rogue,
		"no client certificate": {MinVersion: tls.VersionTLS13, RootCAs: tc.nodes[l].node.tlsClient.RootCAs},
	} {
		c, err := dialStream(nil, addr, streamForward, cfg, time.Second)
		if err == nil {
			// TLS 1.3 reports a refused client certificate on the first read.
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: connection accepted (%v)", name, err)
		}
	}
	if _, err := dialStream(nil, addr, streamForward, nil, time.Second); err != nil {
		t.Fatal(err) // plain TCP connects, but the handshake then fails
	}
}

// tls.mode files: certificates from config (here one certificate for both
// nodes, issued by a CA written to files).
func TestClusterTLSFromFiles(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, _, err := loadOrCreateDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := devNodeCert("node", "127.0.0.1:0", ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := TLSConfig{Mode: "files",
		CertFile: write("node.pem", "CERTIFICATE", cert.Certificate[0]),
		KeyFile:  write("node.key", "EC PRIVATE KEY", keyDER),
		CAFile:   write("ca-only.pem", "CERTIFICATE", ca.Raw)}
	if err := files.validate(); err != nil {
		t.Fatal(err)
	}
	if err := (TLSConfig{Mode: "files", CertFile: "x"}).validate(); err == nil {
		t.Fatal("files without key and CA validated")
	}
	tc := newTestCluster(t, 2, func(c *Config) { c.TLS = files })
	defer tc.close()
	l := tc.leader()
	if res, err := proposeRetry(tc.nodes[1-l].node, post(7)); err != nil || res.Status != store.StatusOK {
		t.Fatalf("forwarded over TLS from files: %v %v", res.Status, err)
	}
	tc.waitConverged()
}

// A follower that was away past the leader's log gets a snapshot: the
// leader's snapshot on disk is only a reference, raft sends the live state
// in its place (its applied index may be past the reference's), and the
// follower ends with the same state as everyone else and keeps applying.
func TestClusterCatchUpFromSnapshotReference(t *testing.T) {
	// bolt: raft-wal drops the log's head only a whole 64 MiB segment at a
	// time, so the follower would catch up from the log instead.
	small := func(c *Config) { c.SnapshotThreshold = 8; c.TrailingLogs = 4; c.LogStore = "bolt" }
	tc := newTestCluster(t, 3, small)
	defer tc.close()
	l := tc.leader()
	away := (l + 1) % 3
	addr := string(tc.nodes[away].node.trans.LocalAddr())
	tc.stop(away)
	leader := tc.nodes[l]
	for i := 0; i < 60; i++ {
		if res, err := proposeRetry(leader.node, post(i)); err != nil || res.Status != store.StatusOK {
			t.Fatalf("post %d: %v %v", i, res.Status, err)
		}
	}
	if err := leader.node.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	metas, err := leader.node.snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("leader snapshots: %v %v", metas, err)
	}
	if metas[0].Size != int64(store.SnapshotRefBytes) {
		t.Fatalf("leader persisted a %d-byte snapshot, want a %d-byte reference", metas[0].Size, store.SnapshotRefBytes)
	}
	// The live state moves past the reference before anyone opens it.
	for i := 60; i < 70; i++ {
		if res, err := proposeRetry(leader.node, post(i)); err != nil || res.Status != store.StatusOK {
			t.Fatalf("post %d: %v %v", i, res.Status, err)
		}
	}

	tc.nodes[away] = open(t, tc.dirs[away], func(c *Config) {
		multiConfig(c)
		small(c)
		c.NodeID = fmt.Sprintf("n%d", away+1)
		c.RaftAddr = addr // its peers know it there
	})
	waitReady(t, tc.nodes[away].node)
	tc.waitConverged()
	got, err := tc.nodes[away].node.snaps.List()
	if err != nil || len(got) == 0 || got[0].Size <= int64(store.SnapshotRefBytes) {
		t.Fatalf("the returning follower holds no received snapshot: %v %v", got, err)
	}
	for i := 70; i < 80; i++ {
		if res, err := proposeRetry(tc.nodes[away].node, post(i)); err != nil || res.Status != store.StatusOK {
			t.Fatalf("post %d through the caught-up node: %v %v", i, res.Status, err)
		}
	}
	tc.waitConverged()
	shop, err := tc.nodes[away].st.Account("shop")
	if err != nil || shop.Posted() != 80*100 {
		t.Fatalf("caught-up node reads shop posted %d (%v), want %d", shop.Posted(), err, 80*100)
	}
}

// Day operations carry no idempotency key but are decided by content, so a
// follower forwards them (ops closes the day through any node); OpExpire,
// which carries the proposer's clock, stays leader-only.
func TestClusterFollowerForwardsDayOperations(t *testing.T) {
	tc := newTestCluster(t, 3)
	defer tc.close()
	f := tc.nodes[(tc.leader()+1)%3].node
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.Propose(ctx, store.Command{Op: store.OpOpenDay, Time: now, BusinessDay: "2026-11-21"})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("open day through a follower: %v %v", res.Status, err)
	}
	closeDay := store.Command{Op: store.OpCloseDay, Time: now, BusinessDay: "2026-11-21", NextDay: "2026-11-22"}
	res, err = f.Propose(ctx, closeDay)
	if err != nil || res.Status != store.StatusOK || res.Replayed {
		t.Fatalf("close day through a follower: %v replayed %v %v", res.Status, res.Replayed, err)
	}
	// The same close again (a retry after an unknown outcome) is a replay.
	if res, err = f.Propose(ctx, closeDay); err != nil || !res.Replayed {
		t.Fatalf("repeated close: replayed %v %v", res.Replayed, err)
	}
	if _, err := f.Propose(ctx, store.Command{Op: store.OpExpire, Time: now}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("OpExpire through a follower: %v, want ErrNotLeader", err)
	}
}

// Package chaos runs an in-process switchd cluster (cluster.Node over
// store.Store, the same write and read paths the switch uses) under load
// with retries while a seeded fault schedule kills and restarts nodes,
// partitions the leader, delays and breaks links, restarts everything at
// once and asks members to add nodes that do not exist (bogus joins).
// Afterwards it checks what clients saw against every replica: each
// approval exactly once, ledger rules, equal state hashes, a linearizable
// history per account (porcupine), and a configuration of exactly the
// harness's nodes.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/internal/loopback"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// Config is one chaos run.
type Config struct {
	Seed     int64
	Dir      string        // data dirs of the nodes
	Nodes    int           // 3 or 5
	Duration time.Duration // of load under faults
	Cards    int           // accounts under load (porcupine partitions)
	Workers  int           // concurrent clients
	// FaultEvery is the pause between faults; each fault lasts a random
	// part of it.
	FaultEvery time.Duration
	// TLS runs node-to-node traffic over mutual TLS (a dev CA in Dir).
	TLS bool
	// LogStore is the nodes' raft log store ("wal", "bolt"; empty: the
	// default, wal). raft-wal drops the log's head only a whole segment at
	// a time, so a lagging follower of a wal leader catches up from the
	// log; bolt drops exactly up to each snapshot, so followers that fall
	// behind are sent snapshots: runs need both.
	LogStore string
	// ForceSnapshotInstall makes a snapshot install certain instead of
	// hoped for: after the faults heal, a follower is stopped, the leader
	// writes past trailing_logs (and one AppendEntries' worth more) and
	// takes a snapshot, dropping the log the follower needs; the follower
	// restarts and must be sent the snapshot (forceSnapshotInstall), and
	// the checks then cover it. Needs LogStore "bolt": raft-wal drops the
	// log's head only a whole segment at a time.
	ForceSnapshotInstall bool
	// OffUsWorkers partners send purchases forwarded to a flaky simulated
	// issuer (offus.go); 0: none.
	OffUsWorkers int
	Logger       *slog.Logger
}

// DefaultConfig is a short run for `make test`.
func DefaultConfig() Config {
	return Config{Nodes: 3, Duration: 15 * time.Second, Cards: 8, Workers: 12, FaultEvery: time.Second}
}

// member is one node's process state; mu guards its lifetime: clients
// hold it shared while they use the node, kill takes it exclusively.
type member struct {
	i    int
	id   string
	addr string
	dir  string

	mu   sync.RWMutex
	st   *store.Store
	node *cluster.Node
	fwd  *forward.Forwarder // the off-us mix only
}

type harness struct {
	cfg Config
	// issuer and kek serve the off-us mix: the host every node forwards
	// to, and the key all nodes seal card numbers with.
	issuer  *sim.Issuer
	kek     *mac.KEK
	log     *slog.Logger
	net     *network
	members []*member
	// restores counts snapshot installs of stores already closed.
	restores atomic.Int64
}

// freeAddr is a loopback address for a node (loopback.FreeAddr: never
// one this process handed out before).
func freeAddr() (string, error) { return loopback.FreeAddr() }

func newHarness(cfg Config) (*harness, error) {
	h := &harness{cfg: cfg, log: cfg.Logger, net: newNetwork(cfg.Seed)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for i := 0; i < cfg.Nodes; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		m := &member{i: i, id: fmt.Sprintf("n%d", i+1), addr: addr, dir: filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i+1))}
		h.members = append(h.members, m)
		h.net.setAddr(addr, i)
	}
	return h, nil
}

func (h *harness) clusterConfig(m *member, bootstrap bool) cluster.Config {
	c := cluster.DefaultConfig()
	c.NodeID = m.id
	c.RaftAddr = m.addr
	c.Dir = filepath.Join(m.dir, "raft")
	c.Bootstrap = bootstrap
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.ApplyTimeout = 3 * time.Second
	// Snapshots often (a snapshot is a reference, cheap to take): with a
	// bolt log, restarts and lagging followers go through snapshot install
	// as well as log replay.
	c.SnapshotThreshold = 500
	c.SnapshotInterval = 200 * time.Millisecond
	c.TrailingLogs = 100
	c.LogStore = h.cfg.LogStore
	c.Dial = h.net.dialer(m.i)
	if h.cfg.TLS {
		c.TLS = cluster.TLSConfig{Mode: "dev", DevCADir: filepath.Join(h.cfg.Dir, "ca")}
	}
	return c
}

// start opens member i's store and node (its data dir survives restarts).
func (h *harness) start(i int, bootstrap bool) error {
	m := h.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node != nil {
		return nil
	}
	sc := store.DefaultConfig()
	sc.Dir = filepath.Join(m.dir, "ledger")
	sc.CacheBytes = 32 << 20
	sc.MemTableBytes = 4 << 20
	st, err := store.Open(sc)
	if err != nil {
		return err
	}
	var n *cluster.Node
	// The raft port of a node killed a moment ago may still be closing.
	for try := 0; ; try++ {
		n, err = cluster.New(h.clusterConfig(m, bootstrap), st, h.log.With("node", m.id), nil)
		if err == nil || try > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		st.Close()
		return err
	}
	m.st, m.node = st, n
	if h.issuer != nil {
		if err := h.startForwarder(m); err != nil {
			n.Close()
			st.Close()
			m.st, m.node = nil, nil
			return err
		}
	}
	return nil
}

// kill stops member i (waiting for clients using it to let go).
func (h *harness) kill(i int) {
	m := h.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == nil {
		return
	}
	if m.fwd != nil {
		m.fwd.Close() // it proposes through the node
		m.fwd = nil
	}
	if err := m.node.Close(); err != nil {
		h.log.Warn("node close", "node", m.id, "err", err)
	}
	h.restores.Add(int64(m.st.Metrics().Restores))
	if err := m.st.Close(); err != nil {
		h.log.Warn("store close", "node", m.id, "err", err)
	}
	m.node, m.st = nil, nil
}

func (h *harness) stopAll() {
	for i := range h.members {
		h.kill(i)
	}
	h.net.closeAll()
	if h.issuer != nil {
		h.issuer.Close()
	}
}

// use runs fn with member i's node and store, or returns false when the
// member is down.
func (h *harness) use(i int, fn func(n *cluster.Node, st *store.Store)) bool {
	m := h.members[i]
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.node == nil {
		return false
	}
	fn(m.node, m.st)
	return true
}

// leader is the index of the ready leader, or -1.
func (h *harness) leader() int {
	for i := range h.members {
		lead := false
		h.use(i, func(n *cluster.Node, _ *store.Store) { lead = n.Leading() })
		if lead {
			return i
		}
	}
	return -1
}

func (h *harness) waitLeader(ctx context.Context) (int, error) {
	for {
		if l := h.leader(); l >= 0 {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("chaos: no leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// form bootstraps member 0, creates the accounts and joins the others.
func (h *harness) form(ctx context.Context, accounts []store.Command) error {
	if err := h.start(0, true); err != nil {
		return err
	}
	if _, err := h.waitLeader(ctx); err != nil {
		return err
	}
	for _, c := range accounts {
		if err := h.proposeUntil(ctx, 0, c, nil); err != nil {
			return err
		}
	}
	for i := 1; i < len(h.members); i++ {
		if err := h.start(i, false); err != nil {
			return err
		}
		for {
			var err error
			h.use(0, func(n *cluster.Node, _ *store.Store) { _, err = n.Join(ctx, h.members[i].id, h.members[i].addr) })
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("chaos: join %s: %w", h.members[i].id, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// proposeUntil proposes c through member i (then any member) until the
// outcome is known; res, when not nil, receives the result.
func (h *harness) proposeUntil(ctx context.Context, i int, c store.Command, res *store.Result) error {
	for try := 0; ; try++ {
		var r store.Result
		var err error
		up := h.use((i+try)%len(h.members), func(n *cluster.Node, _ *store.Store) {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			r, err = n.Propose(cctx, c)
		})
		if up && err == nil {
			if res != nil {
				*res = r
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chaos: command %s unresolved: %w (last: %v)", c.Key, ctx.Err(), err)
		}
		if err != nil && !isRetryable(err) {
			return err
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func isRetryable(err error) bool {
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrOverloaded) ||
		errors.Is(err, cluster.ErrClosed) || errors.Is(err, cluster.ErrUnknownOutcome)
}

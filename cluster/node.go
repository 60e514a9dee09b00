// Package cluster runs the hashicorp/raft node that every state change goes
// through, and the proposer that batches many partner commands into one raft
// entry. It holds no business rules: it moves store.Commands into the log and
// store.Results back to the callers.
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/store"
)

// Sentinel errors. Callers map them to a decline (DESIGN.md invariant 8):
// none of them ever means the command was applied.
var (
	// ErrNotLeader: this node cannot accept writes now; nothing was proposed.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrOverloaded: the proposer's queue is full; nothing was proposed.
	ErrOverloaded = errors.New("cluster: proposal queue full")
	// ErrClosed: the node is shutting down; nothing was proposed.
	ErrClosed = errors.New("cluster: node closed")
	// ErrUnknownOutcome: the command was handed to raft but its fate is not
	// known (leadership lost, timeout, shutdown). It may yet commit; the
	// partner must retry with the same idempotency key.
	ErrUnknownOutcome = errors.New("cluster: outcome unknown")
)

const (
	// readyBarrierTimeout bounds the Barrier a new leader issues before serving.
	readyBarrierTimeout = 30 * time.Second
	// transportPoolMax is raft's pooled connections per peer;
	// transportTimeout bounds one raft RPC's I/O.
	transportPoolMax = 3
	transportTimeout = 10 * time.Second
)

// FSM is what the node needs of the state machine.
type FSM interface {
	raft.BatchingFSM
	AppliedIndex() uint64
	// OpenState streams the live state to a follower that needs a
	// snapshot: the FSM's own snapshots are references (snapshots.go).
	stateOpener
}

// Node is one raft member with its proposer.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	mux    *mux
	snaps  *snapshotStore
	logs   logStore
	cached raft.LogStore
	fsm    FSM
	m      *metrics
	// leading: this node is the leader and its Barrier applied everything
	// earlier terms committed; only then does it propose locally.
	leading atomic.Bool
	closed  atomic.Bool
	// tlsClient dials peers (nil: plain TCP).
	tlsClient *tls.Config

	queue    chan *proposal
	inflight chan inflight
	// fwdQueue holds proposals a follower forwards to the leader;
	// fwdSlots bounds forwarded batches awaiting their reply.
	fwdQueue chan *proposal
	fwdSlots chan struct{}
	stop     chan struct{}
	// wg: the batcher, the waiter, the leader watcher, the forwarder and
	// every peer connection's reader.
	wg   sync.WaitGroup
	once sync.Once
	// memberWG: the membership loop (membership.go). Close waits for it
	// after raft's shutdown, which ends a configuration change it may be
	// waiting on.
	memberWG sync.WaitGroup
	// promoteKick wakes the membership loop after a join (buffered 1).
	promoteKick chan struct{}
	// leaderCommit is the leader's commit index as a follower last heard
	// it from the leader (0: not yet); Ready compares it with what this
	// node applied.
	leaderCommit atomic.Uint64

	peersMu sync.Mutex // protects peers
	peers   map[string]*peer

	// existing: the node had raft state when it started (it is, or was, a
	// member); a joining node asks to be added only when it had none.
	existing bool
	// closing is shared with raft's log writer (see raftLogWriter).
	closing *atomic.Bool
}

type proposal struct {
	cmd  store.Command
	done chan reply // buffered 1: the waiter never blocks on a gone caller
}

type reply struct {
	res store.Result
	err error
}

type inflight struct {
	f     raft.ApplyFuture
	props []*proposal
	start time.Time
}

type metrics struct {
	batchCommands prometheus.Histogram
	commitSeconds prometheus.Histogram
	proposals     *prometheus.CounterVec
	queueLen      prometheus.GaugeFunc
}

// New opens the raft log under cfg.Dir, starts raft with fsm, and
// bootstraps a one-voter cluster when cfg.Bootstrap is set and there is no
// raft state yet. reg may be nil.
func New(cfg Config, fsm FSM, logger *slog.Logger, reg prometheus.Registerer) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	// closing is set by Close: raft's complaints about connections that
	// Close itself shut are then expected and go to debug.
	closing := new(atomic.Bool)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// The FSM keeps its own applied index in the same pebble batch as the
	// state, so restoring the last snapshot on start would only redo work
	// (and briefly roll the state back). See DESIGN.md.
	rc.NoSnapshotRestoreOnStart = true
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.Logger = hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Info,
		Output:     raftLogWriter{log: logger.With("component", "raft"), closing: closing},
		JSONFormat: true,
	})

	logs, kind, err := openLogStore(cfg.Dir, cfg.LogStore, cfg.WALSegmentBytes, rc.Logger, reg)
	if err != nil {
		return nil, err
	}
	if testLogStore != nil {
		logs = testLogStore(logs)
	}
	logger.Info("raft log open", "store", kind, "dir", cfg.Dir, "wal_segment_bytes", cfg.WALSegmentBytes)
	cached, err := raft.NewLogCache(1024, logs)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotsRetain, rc.Logger)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	snaps := &snapshotStore{FileSnapshotStore: files, state: fsm}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: raft addr: %w", err)
	}
	tlsServer, tlsClient, err := cfg.tlsConfigs(logger)
	if err != nil {
		logs.Close()
		return nil, err
	}
	mx, err := newMux(cfg.RaftAddr, tlsServer, logger)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: raft listener: %w", err)
	}
	var advertise net.Addr = addr
	if addr.Port == 0 {
		advertise = nil // tests: advertise the port the kernel picked
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &raftLayer{m: mx, advertise: advertise, tlsClient: tlsClient, dial: cfg.Dial},
		MaxPool: transportPoolMax,
		Timeout: transportTimeout,
		Logger:  rc.Logger,
	})
	has, err := raft.HasExistingState(cached, logs, snaps)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("cluster: raft state: %w", err)
	}
	if cfg.Bootstrap && cfg.Join == "" && !has {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}}
		if err := raft.BootstrapCluster(rc, cached, logs, snaps, trans, boot); err != nil {
			trans.Close()
			logs.Close()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		logger.Info("bootstrapped single-voter cluster", "node_id", cfg.NodeID, "raft_addr", cfg.RaftAddr)
	}
	r, err := raft.NewRaft(rc, fsm, cached, logs, snaps, trans)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n := &Node{
		cfg:       cfg,
		log:       logger,
		raft:      r,
		trans:     trans,
		mux:       mx,
		logs:      logs,
		cached:    cached,
		snaps:     snaps,
		fsm:       fsm,
		tlsClient: tlsClient,
		queue:     make(chan *proposal, cfg.QueueLenMax),
		inflight:  make(chan inflight, cfg.PipelineMax),
		fwdQueue:  make(chan *proposal, cfg.QueueLenMax),
		fwdSlots:  make(chan struct{}, cfg.PipelineMax),
		stop:      make(chan struct{}),
		peers:     map[string]*peer{},
		existing:  has,
		closing:   closing,

		promoteKick: make(chan struct{}, 1),
	}
	n.m = newMetrics(reg, n)
	mx.start(n.serveForward)
	n.wg.Add(4)
	go n.batcher()
	go n.waiter()
	go n.watchLeadership()
	go n.forwarder()
	n.memberWG.Add(1)
	go n.memberLoop()
	return n, nil
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		batchCommands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchd_raft_batch_commands",
			Help:    "Commands carried by one raft entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchd_raft_commit_seconds",
			Help:    "Time from handing an entry to raft until it was applied.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchd_proposals_total",
			Help: "Commands proposed, by outcome (applied, not_leader, overloaded, unknown, closed).",
		}, []string{"outcome"}),
		queueLen: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchd_proposal_queue_len",
			Help: "Commands waiting for a raft entry.",
		}, func() float64 { return float64(len(n.queue) + len(n.fwdQueue)) }),
	}
	if reg != nil {
		reg.MustRegister(m.batchCommands, m.commitSeconds, m.proposals, m.queueLen)
	}
	return m
}

// Propose submits cmd and waits until it is committed and applied, returning
// the FSM's result. An error means no approval: ErrNotLeader, ErrOverloaded
// and ErrClosed mean nothing was proposed; ErrUnknownOutcome means it may
// still commit.
func (n *Node) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	if n.closed.Load() {
		n.m.proposals.WithLabelValues("closed").Inc()
		return store.Result{}, ErrClosed
	}
	p := &proposal{cmd: cmd, done: make(chan reply, 1)}
	switch {
	case n.leading.Load():
		if !n.enqueue(n.queue, p) {
			return store.Result{}, ErrOverloaded
		}
	case !cmd.RepeatSafe():
		// A command that cannot be repeated safely after an unknown
		// outcome (OpExpire) is only ever proposed by the leader itself,
		// never forwarded. Day operations are: ops may close the day
		// through any node.
		n.m.proposals.WithLabelValues("not_leader").Inc()
		return store.Result{}, ErrNotLeader
	default:
		if !n.enqueue(n.fwdQueue, p) {
			return store.Result{}, ErrOverloaded
		}
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		n.m.proposals.WithLabelValues("unknown").Inc()
		return store.Result{}, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-n.stop:
		// Queued or in flight while shutting down: it may still commit.
		return store.Result{}, fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrClosed)
	}
}

func (n *Node) enqueue(q chan *proposal, p *proposal) bool {
	select {
	case q <- p:
		return true
	default:
		n.m.proposals.WithLabelValues("overloaded").Inc()
		return false
	}
}

// enqueueLocal queues p for the local proposer or answers it
// ErrOverloaded.
func (n *Node) enqueueLocal(p *proposal) {
	if !n.enqueue(n.queue, p) {
		p.done <- reply{err: ErrOverloaded}
	}
}

// batcher takes whatever is queued (up to BatchCommandsMax) into one raft
// entry. Under light load that is one command per entry and no added delay;
// under heavy load the queue fills while raft is busy, so entries grow and
// one fsync serves many partners.
func (n *Node) batcher() {
	defer n.wg.Done()
	defer close(n.inflight)
	batch := make([]*proposal, 0, n.cfg.BatchCommandsMax)
	cmds := make([]store.Command, 0, n.cfg.BatchCommandsMax)
	for {
		batch = batch[:0]
		select {
		case p := <-n.queue:
			batch = append(batch, p)
		case <-n.stop:
			n.failQueued(ErrClosed)
			return
		}
	fill:
		for len(batch) < n.cfg.BatchCommandsMax {
			select {
			case p := <-n.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		cmds = cmds[:0]
		for _, p := range batch {
			cmds = append(cmds, p.cmd)
		}
		data, err := store.EncodeBatch(cmds)
		if err != nil {
			// A command that cannot be encoded is a programmer error in
			// the caller; answer it without touching the log.
			for _, p := range batch {
				p.done <- reply{err: fmt.Errorf("cluster: encode: %w", err)}
			}
			continue
		}
		n.m.batchCommands.Observe(float64(len(batch)))
		props := make([]*proposal, len(batch))
		copy(props, batch)
		f := n.raft.Apply(data, n.cfg.ApplyTimeout)
		select {
		case n.inflight <- inflight{f: f, props: props, start: time.Now()}:
		case <-n.stop:
			// raft.Shutdown will fail f; answer now so callers do not hang.
			for _, p := range props {
				p.done <- reply{err: ErrUnknownOutcome}
			}
			n.failQueued(ErrClosed)
			return
		}
	}
}

func (n *Node) failQueued(err error) {
	for {
		select {
		case p := <-n.queue:
			p.done <- reply{err: err}
		default:
			return
		}
	}
}

// waiter answers proposals in log order as raft applies their entries.
func (n *Node) waiter() {
	defer n.wg.Done()
	for in := range n.inflight {
		n.answer(in)
	}
}

func (n *Node) answer(in inflight) {
	fail := func(outcome string, err error) {
		n.m.proposals.WithLabelValues(outcome).Add(float64(len(in.props)))
		for _, p := range in.props {
			p.done <- reply{err: err}
		}
	}
	if err := in.f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			// Refused before it was appended: nothing was proposed.
			fail("not_leader", fmt.Errorf("%w: %w", ErrNotLeader, err))
			return
		}
		fail("unknown", fmt.Errorf("%w: %w", ErrUnknownOutcome, err))
		return
	}
	n.m.commitSeconds.Observe(time.Since(in.start).Seconds())
	switch resp := in.f.Response().(type) {
	case []store.Result:
		if len(resp) != len(in.props) {
			// A broken invariant between encoder and FSM: never guess.
			fail("unknown", fmt.Errorf("%w: %d results for %d commands", ErrUnknownOutcome, len(resp), len(in.props)))
			return
		}
		n.m.proposals.WithLabelValues("applied").Add(float64(len(in.props)))
		for i, p := range in.props {
			p.done <- reply{res: resp[i]}
		}
	case error:
		fail("unknown", fmt.Errorf("%w: fsm: %w", ErrUnknownOutcome, resp))
	default:
		fail("unknown", fmt.Errorf("%w: fsm returned %T", ErrUnknownOutcome, resp))
	}
}

// watchLeadership marks the node ready only after it is leader and a
// Barrier has applied everything earlier leaders committed, so no request
// is validated against a stale state.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.stop:
			n.leading.Store(false)
			return
		case leader := <-ch:
			if !leader {
				n.leading.Store(false)
				n.log.Warn("lost leadership")
				continue
			}
			if err := n.raft.Barrier(readyBarrierTimeout).Error(); err != nil {
				n.log.Error("barrier after election failed", "err", err)
				continue
			}
			n.leading.Store(n.raft.State() == raft.Leader)
			n.log.Info("leader and ready", "applied_index", n.fsm.AppliedIndex())
		}
	}
}

// raftLogWriter carries hashicorp/raft's JSON log lines into our logger, so
// a node writes one log stream (and tests with a discarding logger are quiet).
//
// Once the node is closing, raft's errors about closed connections (its
// listener and peer connections being shut by Close) are logged at debug:
// an operator stopping a node should not read ERROR lines about it.
type raftLogWriter struct {
	log     *slog.Logger
	closing *atomic.Bool
}

func (w raftLogWriter) Write(p []byte) (int, error) {
	var line struct {
		Level   string `json:"@level"`
		Message string `json:"@message"`
	}
	if err := json.Unmarshal(p, &line); err != nil {
		w.log.Warn(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	lvl := slog.LevelInfo
	switch line.Level {
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	case "debug", "trace":
		lvl = slog.LevelDebug
	}
	if lvl > slog.LevelInfo && w.closing != nil && w.closing.Load() && shutdownNoise(p) {
		lvl = slog.LevelDebug
	}
	w.log.Log(context.Background(), lvl, line.Message, "raw", json.RawMessage(bytes.TrimSpace(p)))
	return len(p), nil
}

// shutdownNoise: raft's line is about a connection or transport that was
// closed under it.
func shutdownNoise(p []byte) bool {
	for _, s := range [][]byte{[]byte("use of closed network connection"), []byte("transport shutdown"), []byte("raft is already shutdown")} {
		if bytes.Contains(p, s) {
			return true
		}
	}
	return false
}

// Close stops taking proposals, answers what is queued, shuts raft down and
// closes the log. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		n.closed.Store(true)
		n.closing.Store(true)
		n.leading.Store(false)
		close(n.stop)
		n.closePeers()
		n.wg.Wait()
		err = n.raft.Shutdown().Error()
		n.memberWG.Wait()
		err = errors.Join(err, n.trans.Close(), n.logs.Close())
	})
	return err
}

var _ io.Closer = (*Node)(nil)

package cluster

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// membershipTimeout bounds one configuration change on the leader.
	membershipTimeout = 30 * time.Second
	// statusPeerTimeout bounds asking one peer for its status: a node that
	// is down is reported as unreachable, not waited for. With the state
	// hash (a scan of the whole ledger) it is statusHashTimeout.
	statusPeerTimeout = 3 * time.Second
	statusHashTimeout = 30 * time.Second
	// applyPollInterval is how often a read waits for the local FSM to
	// reach its read index.
	applyPollInterval = 200 * time.Microsecond
)

// ErrMembership wraps a refused membership change.
var ErrMembership = errors.New("cluster: membership change refused")

// Ready reports whether the node serves: it is the leader and has applied
// everything committed before it took over, or it is a follower that knows
// a leader to forward to.
func (n *Node) Ready() bool {
	if n.leading.Load() {
		return true
	}
	if n.closed.Load() || n.raft.State() != raft.Follower {
		return false
	}
	_, id := n.raft.LeaderWithID()
	return id != "" && string(id) != n.cfg.NodeID
}

// Leading reports whether this node is the leader and ready.
func (n *Node) Leading() bool { return n.leading.Load() }

// HadState reports whether the node had raft state when it started (it is
// or was a member); a fresh node must be joined.
func (n *Node) HadState() bool { return n.existing }

// WaitReady blocks until Ready or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !n.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for a leader: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// ReadIndex returns once the local state reflects every command committed
// before the call: a read after it is linearizable. The leader's commit
// index is taken, the leader confirms it still leads (a heartbeat round,
// no log write), and this node waits until its FSM applied that far.
func (n *Node) ReadIndex(ctx context.Context) error {
	var idx uint64
	if n.leading.Load() {
		var err error
		if idx, err = n.leaderReadIndex(); err != nil {
			return err
		}
	} else {
		// A read has no side effect: during an election keep asking
		// (like forwarded writes, leaderWait) instead of failing at once.
		deadline := time.Now().Add(n.leaderWait())
		for {
			b, err := n.callLeader(ctx, fwdRead, nil)
			if err == nil && len(b) == 8 {
				idx = binary.BigEndian.Uint64(b)
				break
			}
			if err == nil {
				return fmt.Errorf("cluster: bad read index reply")
			}
			if n.leading.Load() {
				return n.ReadIndex(ctx) // became the leader meanwhile
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return err
			}
			select {
			case <-n.stop:
				return ErrClosed
			case <-ctx.Done():
				return err
			case <-time.After(leaderPollInterval):
			}
		}
	}
	return n.waitApplied(ctx, idx)
}

func (n *Node) leaderReadIndex() (uint64, error) {
	if !n.leading.Load() {
		return 0, ErrNotLeader
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return idx, nil
}

// waitApplied waits until the FSM applied every entry up to idx. raft's
// own applied index only says an entry was handed to the FSM, and the FSM
// records only the entries it sees (commands and configurations, not
// no-ops or barriers), so the target is the last such entry at or below
// idx.
func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	wait := func(cond func() bool) error {
		if cond() {
			return nil
		}
		t := time.NewTicker(applyPollInterval)
		defer t.Stop()
		for !cond() {
			select {
			case <-ctx.Done():
				return fmt.Errorf("cluster: waiting to apply index %d: %w", idx, ctx.Err())
			case <-n.stop:
				return ErrClosed
			case <-t.C:
			}
		}
		return nil
	}
	if err := wait(func() bool { return n.raft.AppliedIndex() >= idx }); err != nil {
		return err
	}
	target := n.lastFSMEntry(idx)
	return wait(func() bool { return n.fsm.AppliedIndex() >= target })
}

// lastFSMEntry is the index of the last command or configuration entry at
// or below idx; 0 when the log below idx was compacted into a snapshot
// (the FSM applied all of it before the snapshot was taken).
func (n *Node) lastFSMEntry(idx uint64) uint64 {
	for i := idx; i > 0; i-- {
		var l raft.Log
		if err := n.cached.GetLog(i, &l); err != nil {
			return 0
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return 0
}

func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// Join adds the node id at raft address addr as a voter. Any member can
// take the request: a follower passes it to the leader. Joining again with
// the same id and address changes nothing.
func (n *Node) Join(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return fmt.Errorf("%w: id and address are required", ErrMembership)
	}
	if n.isLeader() {
		return n.join(id, addr)
	}
	return n.memberCall(ctx, fwdJoin, memberRequest{ID: id, Address: addr})
}

// Remove takes the node id out of the configuration (through the leader).
func (n *Node) Remove(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: id is required", ErrMembership)
	}
	if n.isLeader() {
		return n.remove(id)
	}
	return n.memberCall(ctx, fwdRemove, memberRequest{ID: id})
}

// TransferLeadership asks the leader to hand over to id (any up-to-date
// voter when id is empty).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if n.isLeader() {
		return n.transfer(id)
	}
	return n.memberCall(ctx, fwdTransfer, memberRequest{ID: id})
}

// Snapshot takes a raft snapshot on this node now and returns its index:
// one pebble WAL sync and a reference (snapshots.go), after which raft
// drops this node's log up to trailing_logs before it. Operators use it
// before adding a node, or to reclaim log space; raft takes snapshots on
// its own every snapshot_threshold entries. With nothing applied since the
// last one, that one's index is returned.
func (n *Node) Snapshot() (uint64, error) {
	err := n.raft.Snapshot().Error()
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return 0, fmt.Errorf("cluster: snapshot: %w", raftErr(err))
	}
	metas, err := n.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshot: %w", err)
	}
	if len(metas) == 0 {
		return 0, fmt.Errorf("cluster: snapshot: none on disk after taking one")
	}
	return metas[0].Index, nil
}

func (n *Node) memberCall(ctx context.Context, kind byte, m memberRequest) error {
	b, _ := json.Marshal(m)
	_, err := n.callLeader(ctx, kind, b)
	return err
}

func raftErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return err
}

func (n *Node) servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftErr(err)
	}
	return f.Configuration().Servers, nil
}

func (n *Node) join(id, addr string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == id && string(s.Address) == addr {
			n.log.Info("join: already a member", "node_id", id, "raft_addr", addr)
			return nil
		}
		if string(s.ID) == id || string(s.Address) == addr {
			if string(s.ID) == n.cfg.NodeID {
				return fmt.Errorf("%w: %s/%s clashes with the leader %s/%s", ErrMembership, id, addr, s.ID, s.Address)
			}
			// The same id at a new address, or a new id at an old
			// address: the old entry is gone for good.
			if err := n.raft.RemoveServer(s.ID, 0, membershipTimeout).Error(); err != nil {
				return raftErr(err)
			}
		}
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout).Error(); err != nil {
		return raftErr(err)
	}
	n.log.Info("join: added voter", "node_id", id, "raft_addr", addr)
	return nil
}

func (n *Node) remove(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return nil // already gone: removing is idempotent too
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return raftErr(err)
	}
	n.log.Info("removed member", "node_id", id)
	return nil
}

func (n *Node) transfer(id string) error {
	if id == "" {
		return raftErr(n.raft.LeadershipTransfer().Error())
	}
	servers, err := n.servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == id {
			if id == n.cfg.NodeID {
				return nil // already leads
			}
			return raftErr(n.raft.LeadershipTransferToServer(s.ID, s.Address).Error())
		}
	}
	return fmt.Errorf("%w: %q is not a member", ErrMembership, id)
}

// Status is one node's view of itself for ops.
type Status struct {
	NodeID       string `json:"node_id"`
	RaftAddr     string `json:"raft_addr"`
	State        string `json:"state"`
	Ready        bool   `json:"ready"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	FSMIndex     uint64 `json:"fsm_index"`
	// StateHashIndex and StateHash: the FSM's state hash and the applied
	// index it was taken at (when the FSM can hash itself).
	StateHashIndex uint64 `json:"state_hash_index,omitempty"`
	StateHash      string `json:"state_hash,omitempty"`
	StateHashError string `json:"state_hash_error,omitempty"`
}

// stateHasher is the FSM's optional state hash (store.Store has it).
type stateHasher interface {
	StateHash() (uint64, [32]byte, error)
}

// Status reports role, term, indexes and the state hash.
func (n *Node) Status() Status { return n.StatusOf(true) }

// StatusOf is Status, with the state hash only when withHash is set: the
// hash reads the whole ledger (seconds for millions of transfers), so
// frequent pollers leave it out.
func (n *Node) StatusOf(withHash bool) Status {
	st := n.raft.Stats()
	num := func(k string) uint64 {
		v, _ := strconv.ParseUint(st[k], 10, 64)
		return v
	}
	_, leader := n.raft.LeaderWithID()
	s := Status{
		NodeID:       n.cfg.NodeID,
		RaftAddr:     string(n.trans.LocalAddr()),
		State:        n.raft.State().String(),
		Ready:        n.Ready(),
		Leader:       string(leader),
		Term:         num("term"),
		CommitIndex:  num("commit_index"),
		AppliedIndex: n.raft.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
		FSMIndex:     n.fsm.AppliedIndex(),
	}
	if h, ok := n.fsm.(stateHasher); ok && withHash {
		idx, sum, err := h.StateHash()
		if err != nil {
			s.StateHashError = err.Error()
		} else {
			s.StateHashIndex, s.StateHash = idx, hex.EncodeToString(sum[:])
		}
	}
	return s
}

// Member is one server of the configuration with its status as it
// reported it (nil when it could not be reached).
type Member struct {
	ID       string  `json:"id"`
	Address  string  `json:"address"`
	Suffrage string  `json:"suffrage"`
	Status   *Status `json:"status,omitempty"`
	Error    string  `json:"error,omitempty"`
	// Lag is the highest commit index any member reported minus this
	// member's applied index (the larger of raft's and the FSM's: right
	// after a restart raft's restarts from its snapshot while the FSM
	// already holds everything it applied before).
	Lag uint64 `json:"lag"`
}

// ClusterStatus is every member's status, gathered by this node over the
// forwarding connections.
type ClusterStatus struct {
	Via     string   `json:"via"`
	Leader  string   `json:"leader"`
	Members []Member `json:"members"`
}

// ClusterStatus asks every member of the configuration for its status
// (with state hashes when withHash is set).
func (n *Node) ClusterStatus(ctx context.Context, withHash bool) (ClusterStatus, error) {
	servers, err := n.servers()
	if err != nil {
		return ClusterStatus{}, err
	}
	_, leader := n.raft.LeaderWithID()
	out := ClusterStatus{Via: n.cfg.NodeID, Leader: string(leader), Members: make([]Member, len(servers))}
	var wg sync.WaitGroup
	for i, s := range servers {
		m := &out.Members[i]
		m.ID, m.Address, m.Suffrage = string(s.ID), string(s.Address), s.Suffrage.String()
		if string(s.ID) == n.cfg.NodeID {
			st := n.StatusOf(withHash)
			m.Status = &st
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := statusPeerTimeout
			if withHash {
				timeout = statusHashTimeout
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var flag []byte
			if withHash {
				flag = []byte{1}
			}
			b, err := n.call(cctx, m.Address, fwdStatus, flag)
			if err != nil {
				m.Error = err.Error()
				return
			}
			var st Status
			if err := json.Unmarshal(b, &st); err != nil {
				m.Error = err.Error()
				return
			}
			m.Status = &st
		}()
	}
	wg.Wait()
	var commit uint64
	for _, m := range out.Members {
		if m.Status != nil {
			commit = max(commit, m.Status.CommitIndex)
		}
	}
	for i := range out.Members {
		if st := out.Members[i].Status; st != nil {
			if applied := max(st.AppliedIndex, st.FSMIndex); commit > applied {
				out.Members[i].Lag = commit - applied
			}
		}
	}
	return out, nil
}

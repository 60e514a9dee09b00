package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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
	// joinProbeTimeout bounds checking a joining node before it is added
	// (dial through the cluster's transport and TLS, one status request)
	// and asking each voter whether it is reachable before a change: a
	// made-up address is refused within it instead of becoming a member.
	joinProbeTimeout = 2 * time.Second
	// probeReplyBytesMax bounds the reply read from an address an
	// operator typed (a Status is well under 1 KiB); anything else
	// answering there is not a switchd node.
	probeReplyBytesMax = 64 << 10
	// memberTick is how often the membership loop runs: the leader looks
	// for non-voters that caught up, a follower asks the leader for its
	// commit index (for Ready). One tiny request per follower per tick.
	memberTick = 100 * time.Millisecond
	// joinPromoteWait bounds how long Join waits for the new member's
	// promotion after adding it as a non-voter: a node that catches up
	// from the log is promoted within a few ticks; one still behind then
	// (a large snapshot to install) is answered "non-voter" and promoted
	// by the leader later.
	joinPromoteWait = 10 * time.Second
	// joinPollInterval is how often Join looks at the configuration while
	// it waits for the promotion.
	joinPollInterval = 20 * time.Millisecond
)

// Membership errors. Each refused change wraps ErrMembership and, where
// the reason is one of these, that sentinel too; the ops API answers each
// with its own problem type (outcome.go).
var (
	// ErrMembership wraps a refused membership change.
	ErrMembership = errors.New("cluster: membership change refused")
	// ErrJoinUnreachable: nothing at the joining node's raft address
	// answers as a switchd node (through the cluster's transport and TLS).
	ErrJoinUnreachable = fmt.Errorf("%w: the joining node does not answer at its raft address", ErrMembership)
	// ErrJoinIdentity: the node at that raft address has another id.
	ErrJoinIdentity = fmt.Errorf("%w: the node at that raft address has another id", ErrMembership)
	// ErrQuorumAtRisk: after the change fewer voters than a quorum would
	// be reachable; the cluster could not commit anything more.
	ErrQuorumAtRisk = fmt.Errorf("%w: too few voters would be reachable for a quorum", ErrMembership)
	// ErrAlreadyLeader: leadership was to go to the node that leads.
	ErrAlreadyLeader = fmt.Errorf("%w: that node already leads", ErrMembership)
	// ErrNoOtherVoter: there is no other voter to hand leadership to.
	ErrNoOtherVoter = fmt.Errorf("%w: no other voter to hand leadership to", ErrMembership)
	// ErrNotVoter: leadership can go only to a voter.
	ErrNotVoter = fmt.Errorf("%w: that member is not a voter", ErrMembership)
)

// membershipErrs lists the sentinels a forwarded refusal can carry
// (codeMembership); append only, the index travels on the wire.
var membershipErrs = []error{ErrMembership, ErrJoinUnreachable, ErrJoinIdentity, ErrQuorumAtRisk, ErrAlreadyLeader, ErrNoOtherVoter, ErrNotVoter}

// membershipKind is the index in membershipErrs of err's most specific
// sentinel.
func membershipKind(err error) byte {
	for i := len(membershipErrs) - 1; i > 0; i-- {
		if errors.Is(err, membershipErrs[i]) {
			return byte(i)
		}
	}
	return 0
}

// memberError is a refusal the leader sent over the forwarding protocol:
// its text, and its sentinel for errors.Is.
type memberError struct {
	msg  string
	kind error
}

func (e *memberError) Error() string { return e.msg }
func (e *memberError) Unwrap() error { return e.kind }

// Ready reports whether the node serves: it is the leader and has applied
// everything committed before it took over, or it is a follower (voter or
// not) that knows a leader to forward to and has applied to within
// CatchUpLagMax entries of the leader's commit index, as the leader last
// told it (a node that has not heard it yet, just started or joined, is
// not ready). A node catching up answers /readyz 503.
func (n *Node) Ready() bool {
	if n.leading.Load() {
		return true
	}
	if n.closed.Load() || n.raft.State() != raft.Follower {
		return false
	}
	_, id := n.raft.LeaderWithID()
	if id == "" || string(id) == n.cfg.NodeID {
		return false
	}
	lc := n.leaderCommit.Load()
	return lc != 0 && n.stateIndex()+n.cfg.CatchUpLagMax >= lc
}

// stateIndex is the last log index the local state reflects. raft's
// AppliedIndex counts entries handed to the FSM, which raft buffers (up
// to 128 batches): it may run ahead of the FSM. The FSM's own index
// counts only the entries it sees (commands, configurations; not no-ops
// or barriers) and, after a restart, is ahead of raft's (which restarts
// at the last snapshot). So: raft's index once the FSM applied every
// entry it was handed, else the FSM's.
func (n *Node) stateIndex() uint64 {
	raftIdx, fsmIdx := n.raft.AppliedIndex(), n.fsm.AppliedIndex()
	if fsmIdx >= raftIdx || fsmIdx >= n.lastFSMEntry(raftIdx) {
		return max(raftIdx, fsmIdx)
	}
	return fsmIdx
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

// Join adds the node id at raft address addr, through the leader (a
// follower passes the request on). The leader first checks the node: its
// raft address must answer as id through the cluster's own transport and
// TLS within joinProbeTimeout (else ErrJoinUnreachable, ErrJoinIdentity).
// It adds the node as a non-voter; the leader's membership loop promotes
// it to voter once it has caught up (within CatchUpLagMax entries of the
// commit index), so a new node never counts towards a quorum it cannot
// yet help to form. Join then waits for the promotion (at most
// joinPromoteWait or until ctx ends) and reports whether the node is a
// voter: false means it is a member still catching up, promoted later.
// Joining again with the same id and address changes nothing.
func (n *Node) Join(ctx context.Context, id, addr string) (voter bool, err error) {
	if id == "" || addr == "" {
		return false, fmt.Errorf("%w: id and address are required", ErrMembership)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return false, fmt.Errorf("%w: raft address %q: %v", ErrMembership, addr, err)
	}
	if n.isLeader() {
		err = n.join(id, addr)
	} else {
		err = n.memberCall(ctx, fwdJoin, memberRequest{ID: id, Address: addr})
	}
	if err != nil {
		return false, err
	}
	wait, cancel := context.WithTimeout(ctx, joinPromoteWait)
	defer cancel()
	t := time.NewTicker(joinPollInterval)
	defer t.Stop()
	for {
		servers, err := n.servers()
		if err != nil {
			return false, err
		}
		found := false
		for _, s := range servers {
			if string(s.ID) == id && string(s.Address) == addr {
				found = true
				if s.Suffrage == raft.Voter {
					return true, nil
				}
			}
		}
		if !found && n.isLeader() {
			// The leader applies its own changes first: gone here means
			// removed meanwhile. (A follower may not have heard yet.)
			return false, fmt.Errorf("%w: %s was removed while it caught up", ErrMembership, id)
		}
		select {
		case <-wait.Done():
			return false, nil // a member, still a non-voter
		case <-n.stop:
			return false, ErrClosed
		case <-t.C:
		}
	}
}

// Remove takes the node id out of the configuration (through the leader).
// Removing a voter is refused (ErrQuorumAtRisk) when the voters left
// would not have a reachable quorum.
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
// voter when id is empty). Refused with ErrAlreadyLeader when id leads,
// ErrNoOtherVoter when no other voter exists, ErrNotVoter when id is a
// non-voter, ErrMembership when id is not a member.
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
	servers, _, err := n.configuration()
	return servers, err
}

// configuration is the latest configuration and its log index.
func (n *Node) configuration() ([]raft.Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, raftErr(err)
	}
	return f.Configuration().Servers, f.Index(), nil
}

func (n *Node) join(id, addr string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	var clash []raft.Server
	for _, s := range servers {
		if string(s.ID) == id && string(s.Address) == addr {
			n.log.Info("join: already a member", "node_id", id, "raft_addr", addr, "suffrage", s.Suffrage.String())
			return nil
		}
		if string(s.ID) == id || string(s.Address) == addr {
			if string(s.ID) == n.cfg.NodeID {
				return fmt.Errorf("%w: %s/%s clashes with the leader %s/%s", ErrMembership, id, addr, s.ID, s.Address)
			}
			clash = append(clash, s)
		}
	}
	st, err := n.probe(addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrJoinUnreachable, addr, err)
	}
	if st.NodeID != id {
		return fmt.Errorf("%w: %s answers as %q, not %q", ErrJoinIdentity, addr, st.NodeID, id)
	}
	// The same id at a new address, or a new id at an old address (the
	// node there now answers as id): the old entry is gone for good.
	next := servers
	for _, c := range clash {
		next = without(next, c.ID)
	}
	if len(next) < len(servers) {
		if err := n.checkQuorum(next); err != nil {
			return err
		}
	}
	for _, c := range clash {
		if err := n.raft.RemoveServer(c.ID, 0, membershipTimeout).Error(); err != nil {
			return raftErr(err)
		}
		n.log.Info("join: removed the old entry", "node_id", c.ID, "raft_addr", c.Address)
	}
	if err := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout).Error(); err != nil {
		return raftErr(err)
	}
	n.log.Info("join: added non-voter; promoted once caught up", "node_id", id, "raft_addr", addr)
	select {
	case n.promoteKick <- struct{}{}:
	default:
	}
	return nil
}

func without(servers []raft.Server, id raft.ServerID) []raft.Server {
	out := make([]raft.Server, 0, len(servers))
	for _, s := range servers {
		if s.ID != id {
			out = append(out, s)
		}
	}
	return out
}

func (n *Node) remove(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	var found *raft.Server
	for i := range servers {
		if string(servers[i].ID) == id {
			found = &servers[i]
		}
	}
	if found == nil {
		return nil // already gone: removing is idempotent too
	}
	if found.Suffrage == raft.Voter {
		if err := n.checkQuorum(without(servers, found.ID)); err != nil {
			return err
		}
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return raftErr(err)
	}
	n.log.Info("removed member", "node_id", id)
	return nil
}

func (n *Node) transfer(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	if id == "" {
		for _, s := range servers {
			if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
				return raftErr(n.raft.LeadershipTransfer().Error())
			}
		}
		return fmt.Errorf("%w (%s is the only voter)", ErrNoOtherVoter, n.cfg.NodeID)
	}
	for _, s := range servers {
		if string(s.ID) != id {
			continue
		}
		switch {
		case id == n.cfg.NodeID:
			return fmt.Errorf("%w (%s)", ErrAlreadyLeader, id)
		case s.Suffrage != raft.Voter:
			return fmt.Errorf("%w (%s is a %s)", ErrNotVoter, id, s.Suffrage)
		}
		return raftErr(n.raft.LeadershipTransferToServer(s.ID, s.Address).Error())
	}
	return fmt.Errorf("%w: %q is not a member", ErrMembership, id)
}

// probe asks the node at addr for its status over a connection of its
// own (not the cached peer connections: addr may be anything an operator
// typed), through the cluster's dialer and TLS, within joinProbeTimeout.
func (n *Node) probe(addr string) (Status, error) {
	deadline := time.Now().Add(joinProbeTimeout)
	c, err := dialStream(n.cfg.Dial, addr, streamForward, n.tlsClient, joinProbeTimeout)
	if err != nil {
		return Status{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := writeFrame(c, nil, 1, fwdStatus, nil); err != nil {
		return Status{}, err
	}
	_, code, payload, err := readFrameMax(bufio.NewReaderSize(c, 4096), probeReplyBytesMax)
	if err != nil {
		return Status{}, fmt.Errorf("no status answer (not a switchd raft address?): %w", err)
	}
	if code != codeOK {
		return Status{}, errOf(code, string(payload))
	}
	var st Status
	if err := json.Unmarshal(payload, &st); err != nil {
		return Status{}, fmt.Errorf("bad status answer: %w", err)
	}
	return st, nil
}

// checkQuorum refuses a configuration whose voters would not have a
// reachable quorum: every voter of next but this node is probed (in
// parallel) and counts when it answers as itself.
func (n *Node) checkQuorum(next []raft.Server) error {
	var voters []raft.Server
	for _, s := range next {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
		}
	}
	if len(voters) == 0 {
		return fmt.Errorf("%w: no voter would be left", ErrQuorumAtRisk)
	}
	up := make([]bool, len(voters))
	var wg sync.WaitGroup
	for i, s := range voters {
		if string(s.ID) == n.cfg.NodeID {
			up[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.probe(string(s.Address))
			up[i] = err == nil && st.NodeID == string(s.ID)
		}()
	}
	wg.Wait()
	reachable := 0
	var down []string
	for i, ok := range up {
		if ok {
			reachable++
		} else {
			down = append(down, string(voters[i].ID))
		}
	}
	if need := len(voters)/2 + 1; reachable < need {
		return fmt.Errorf("%w: %d of %d voters reachable, a quorum is %d (unreachable: %v)", ErrQuorumAtRisk, reachable, len(voters), need, down)
	}
	return nil
}

// memberLoop runs every memberTick until Close. On the leader it promotes
// non-voters that caught up; whichever node leads does it, so a promotion
// interrupted by a leader change is finished by the next leader. On a
// follower it asks the leader for its commit index (Ready).
func (n *Node) memberLoop() {
	defer n.memberWG.Done()
	t := time.NewTicker(memberTick)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.promoteKick:
		}
		if n.leading.Load() {
			// Kept current here too, so that a leader that steps down is
			// judged by a recent value, not "never heard".
			n.leaderCommit.Store(n.raft.CommitIndex())
			n.promoteCaughtUp()
		} else {
			n.refreshLeaderCommit()
		}
	}
}

// refreshLeaderCommit stores the leader's commit index as the leader
// reports it. When the leader cannot be asked the last value stays: a
// partitioned follower is judged by what it last heard.
func (n *Node) refreshLeaderCommit() {
	addr, id := n.raft.LeaderWithID()
	if addr == "" || string(id) == n.cfg.NodeID {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusPeerTimeout)
	defer cancel()
	b, err := n.call(ctx, string(addr), fwdStatus, nil)
	if err != nil {
		return
	}
	var st Status
	if json.Unmarshal(b, &st) == nil && st.NodeID == string(id) && st.CommitIndex > 0 {
		n.leaderCommit.Store(st.CommitIndex)
	}
}

// promoteCaughtUp promotes one non-voter that has caught up (its state
// within CatchUpLagMax of the commit index) to voter, when the voters
// with it have a reachable quorum. A non-voter that never catches up
// stays one (ClusterStatus shows it with its lag); ops can remove it.
func (n *Node) promoteCaughtUp() {
	servers, idx, err := n.configuration()
	if err != nil {
		return
	}
	for _, s := range servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), statusPeerTimeout)
		b, err := n.call(ctx, string(s.Address), fwdStatus, nil)
		cancel()
		var st Status
		if err != nil || json.Unmarshal(b, &st) != nil || st.NodeID != string(s.ID) {
			n.log.Debug("non-voter not answering", "node_id", s.ID, "err", err)
			continue
		}
		commit := n.raft.CommitIndex()
		if applied := st.stateIndex(); applied+n.cfg.CatchUpLagMax < commit {
			n.log.Debug("non-voter catching up", "node_id", s.ID, "applied", applied, "commit", commit)
			continue
		}
		next := make([]raft.Server, len(servers))
		copy(next, servers)
		for i := range next {
			if next[i].ID == s.ID {
				next[i].Suffrage = raft.Voter
			}
		}
		if err := n.checkQuorum(next); err != nil {
			n.log.Warn("non-voter caught up, not promoted", "node_id", s.ID, "err", err)
			continue
		}
		// prevIndex idx: if the configuration changed meanwhile raft
		// refuses, and the next tick looks again.
		if err := n.raft.AddVoter(s.ID, s.Address, idx, membershipTimeout).Error(); err != nil {
			n.log.Warn("promoting non-voter failed", "node_id", s.ID, "err", err)
			return
		}
		n.log.Info("promoted to voter", "node_id", s.ID, "raft_addr", s.Address, "applied", st.stateIndex(), "commit", commit)
		return // the configuration index moved: one promotion per tick
	}
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
	// StateIndex is the last log index the node's state reflects (see
	// stateIndex): what "caught up" is measured by.
	StateIndex uint64 `json:"state_index"`
	// StateHashIndex and StateHash: the FSM's state hash and the applied
	// index it was taken at (when the FSM can hash itself).
	StateHashIndex uint64 `json:"state_hash_index,omitempty"`
	StateHash      string `json:"state_hash,omitempty"`
	StateHashError string `json:"state_hash_error,omitempty"`
}

// stateIndex is StateIndex, or for a node that does not report it (an
// older version, or nothing applied yet) the FSM's applied index: raft's
// may run ahead of what the state holds.
func (s Status) stateIndex() uint64 {
	return max(s.StateIndex, s.FSMIndex)
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
		StateIndex:   n.stateIndex(),
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
	// member's StateIndex (what its state reflects). A non-voter whose
	// lag stays above CatchUpLagMax is not promoted.
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
			if applied := st.stateIndex(); commit > applied {
				out.Members[i].Lag = commit - applied
			}
		}
	}
	return out, nil
}

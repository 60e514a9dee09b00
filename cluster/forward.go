package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/switchd/switchd/store"
)

// The forwarding protocol: followers send the leader batches of commands
// (store.EncodeBatch bytes, the same bytes the leader's proposer would put
// into a raft entry), read-index requests, membership changes and status
// requests, over streamForward connections on the raft address. Requests
// are pipelined: many may be outstanding on one connection, answered in
// any order, matched by id.
//
// Frame (both directions): u32 length of the rest | u64 id | u8 kind or
// reply code | payload.
const (
	fwdPropose  byte = 1 // payload: EncodeBatch bytes; reply: JSON []fwdResult
	fwdRead     byte = 2 // reply: u64 read index
	fwdJoin     byte = 3 // payload: JSON memberRequest
	fwdRemove   byte = 4 // payload: JSON memberRequest
	fwdTransfer byte = 5 // payload: JSON memberRequest (ID may be empty)
	fwdStatus   byte = 6 // payload: [1] with the state hash; reply: JSON Status

	codeOK         byte = 0
	codeNotLeader  byte = 1
	codeOverloaded byte = 2
	codeUnknown    byte = 3
	codeClosed     byte = 4
	codeError      byte = 5 // payload: message
	// codeMembership: a refused membership change; payload: one byte,
	// the index of its sentinel in membershipErrs, then the message. The
	// caller's error matches the same sentinel (errors.Is), so a change
	// refused on the leader is answered alike on every node.
	codeMembership byte = 6

	// fwdFrameBytesMax bounds one frame: a full batch of the largest
	// commands is well under it; a peer sending more is broken.
	fwdFrameBytesMax = 32 << 20
	// fwdServeInflightMax bounds requests one connection may have in
	// progress on the serving side; the reader stops reading beyond it.
	fwdServeInflightMax = 1024
	// fwdDialTimeout and fwdWriteTimeout bound connecting to and writing
	// to a peer; a partitioned leader must not stall the batcher.
	fwdDialTimeout  = 2 * time.Second
	fwdWriteTimeout = 5 * time.Second
	// fwdReplySlack is added to ApplyTimeout for how long a forwarded
	// request may wait for its reply before the connection is declared
	// dead and every request on it gets ErrUnknownOutcome.
	fwdReplySlack = 5 * time.Second
)

// fwdResult is one command's answer in a fwdPropose reply.
type fwdResult struct {
	Code     byte         `json:"c,omitempty"`
	Msg      string       `json:"m,omitempty"`
	Res      store.Result `json:"r"`
	Replayed bool         `json:"rp,omitempty"`
}

type memberRequest struct {
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
}

// codeOf maps a cluster error to a reply code; errOf maps it back. The
// round trip keeps what matters: whether the command may have been applied.
func codeOf(err error) (byte, string) {
	switch {
	case err == nil:
		return codeOK, ""
	case errors.Is(err, ErrUnknownOutcome):
		return codeUnknown, err.Error()
	case errors.Is(err, ErrNotLeader):
		return codeNotLeader, err.Error()
	case errors.Is(err, ErrOverloaded):
		return codeOverloaded, err.Error()
	case errors.Is(err, ErrClosed):
		return codeClosed, err.Error()
	case errors.Is(err, ErrMembership):
		return codeMembership, string([]byte{membershipKind(err)}) + err.Error()
	}
	return codeError, err.Error()
}

func errOf(code byte, msg string) error {
	switch code {
	case codeOK:
		return nil
	case codeNotLeader:
		return fmt.Errorf("%w (leader said: %s)", ErrNotLeader, msg)
	case codeOverloaded:
		return fmt.Errorf("%w (leader said: %s)", ErrOverloaded, msg)
	case codeClosed:
		// The leader is shutting down; if it had queued the command it
		// would have said unknown.
		return fmt.Errorf("%w (leader said: %s)", ErrNotLeader, msg)
	case codeUnknown:
		return fmt.Errorf("%w (leader said: %s)", ErrUnknownOutcome, msg)
	case codeMembership:
		if msg != "" && int(msg[0]) < len(membershipErrs) {
			return &memberError{msg: msg[1:], kind: membershipErrs[msg[0]]}
		}
	}
	return fmt.Errorf("cluster: leader: %s", msg)
}

func writeFrame(w io.Writer, buf []byte, id uint64, kind byte, payload []byte) ([]byte, error) {
	buf = buf[:0]
	buf = binary.BigEndian.AppendUint32(buf, uint32(9+len(payload)))
	buf = binary.BigEndian.AppendUint64(buf, id)
	buf = append(buf, kind)
	buf = append(buf, payload...)
	n, err := w.Write(buf)
	if err != nil && n == len(buf) {
		err = nil
	}
	if err != nil && n > 0 {
		err = &partialWriteError{err}
	}
	return buf, err
}

// partialWriteError: part of a frame went out. The peer cannot act on a
// partial frame, but a whole frame whose write reported an error could have
// been read; only "nothing written" proves a request was never seen.
type partialWriteError struct{ err error }

func (e *partialWriteError) Error() string { return "partial write: " + e.err.Error() }
func (e *partialWriteError) Unwrap() error { return e.err }

func readFrame(r *bufio.Reader) (id uint64, kind byte, payload []byte, err error) {
	return readFrameMax(r, fwdFrameBytesMax)
}

// readFrameMax is readFrame for frames of at most bytesMax.
func readFrameMax(r *bufio.Reader, bytesMax uint32) (id uint64, kind byte, payload []byte, err error) {
	var hdr [13]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 9 || n > bytesMax {
		return 0, 0, nil, fmt.Errorf("cluster: forwarding frame of %d bytes", n)
	}
	payload = make([]byte, n-9)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, 0, nil, err
	}
	return binary.BigEndian.Uint64(hdr[4:12]), hdr[12], payload, nil
}

// ---- serving side (the leader, or any node for status) ----

// serveForward answers requests on one forwarding connection until it
// ends. Each request runs in its own goroutine (bounded), so a slow commit
// does not hold up the next batch.
func (n *Node) serveForward(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	var wmu sync.Mutex // serializes reply frames; protects buf
	var buf []byte
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, fwdServeInflightMax)
	for {
		id, kind, payload, err := readFrame(r)
		if err != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-n.stop:
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			code, out := n.serveOne(kind, payload)
			wmu.Lock()
			defer wmu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(fwdWriteTimeout))
			if buf, err = writeFrame(c, buf, id, code, out); err != nil {
				c.Close() // the reader ends too
			}
		}()
	}
}

func (n *Node) serveOne(kind byte, payload []byte) (byte, []byte) {
	reply := func(v any, err error) (byte, []byte) {
		if err != nil {
			code, msg := codeOf(err)
			return code, []byte(msg)
		}
		if v == nil {
			return codeOK, nil
		}
		b, _ := json.Marshal(v)
		return codeOK, b
	}
	switch kind {
	case fwdPropose:
		return n.serveProposals(payload)
	case fwdRead:
		idx, err := n.leaderReadIndex()
		if err != nil {
			return reply(nil, err)
		}
		return codeOK, binary.BigEndian.AppendUint64(nil, idx)
	case fwdJoin, fwdRemove, fwdTransfer:
		var m memberRequest
		if err := json.Unmarshal(payload, &m); err != nil {
			return reply(nil, fmt.Errorf("cluster: bad member request: %w", err))
		}
		if !n.isLeader() {
			return reply(nil, ErrNotLeader) // the caller asks the leader it knows
		}
		switch kind {
		case fwdJoin:
			return reply(nil, n.join(m.ID, m.Address))
		case fwdRemove:
			return reply(nil, n.remove(m.ID))
		default:
			return reply(nil, n.transfer(m.ID))
		}
	case fwdStatus:
		return reply(n.StatusOf(len(payload) == 1 && payload[0] == 1), nil)
	}
	return codeError, []byte(fmt.Sprintf("unknown request kind %d", kind))
}

// serveProposals puts a forwarded batch into the local proposer (which
// batches it with everything else) and answers when all of it is applied.
func (n *Node) serveProposals(payload []byte) (byte, []byte) {
	cmds, err := store.DecodeBatch(payload)
	if err != nil {
		return codeError, []byte(err.Error())
	}
	if !n.leading.Load() {
		return codeNotLeader, []byte("not the leader")
	}
	props := make([]*proposal, len(cmds))
	for i := range cmds {
		props[i] = &proposal{cmd: cmds[i], done: make(chan reply, 1)}
		n.enqueueLocal(props[i])
	}
	out := make([]fwdResult, len(cmds))
	for i, p := range props {
		select {
		case r := <-p.done:
			out[i].Code, out[i].Msg = codeOf(r.err)
			out[i].Res, out[i].Replayed = r.res, r.res.Replayed
		case <-n.stop:
			out[i].Code, out[i].Msg = codeUnknown, "leader shutting down"
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return codeUnknown, []byte(err.Error())
	}
	return codeOK, b
}

// ---- calling side ----

// peer is one pipelined forwarding connection to another node.
type peer struct {
	addr string
	c    net.Conn

	wmu sync.Mutex // serializes frame writes; protects buf
	buf []byte

	mu      sync.Mutex // protects the fields below
	nextID  uint64
	pending map[uint64]*call
	dead    error // set once the connection failed; no new calls then
}

type call struct {
	cb    func(code byte, payload []byte, err error)
	start time.Time
}

// errPeerDown: the connection failed after the request was written: the
// peer may have acted on it.
var errPeerDown = errors.New("cluster: connection to peer lost")

func (n *Node) dialPeer(addr string) (*peer, error) {
	c, err := dialStream(n.cfg.Dial, addr, streamForward, n.tlsClient, fwdDialTimeout)
	if err != nil {
		return nil, err
	}
	p := &peer{addr: addr, c: c, pending: map[uint64]*call{}}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		p.read()
	}()
	return p, nil
}

func (p *peer) read() {
	r := bufio.NewReaderSize(p.c, 64<<10)
	for {
		id, code, payload, err := readFrame(r)
		if err != nil {
			p.fail(fmt.Errorf("%w: %w", errPeerDown, err))
			return
		}
		p.mu.Lock()
		cl := p.pending[id]
		delete(p.pending, id)
		p.mu.Unlock()
		if cl != nil {
			cl.cb(code, payload, nil)
		}
	}
}

// fail closes the connection and fails every outstanding call with err.
func (p *peer) fail(err error) {
	p.mu.Lock()
	if p.dead == nil {
		p.dead = err
	}
	pend := p.pending
	p.pending = map[uint64]*call{}
	p.mu.Unlock()
	p.c.Close()
	for _, cl := range pend {
		cl.cb(0, nil, err)
	}
}

func (p *peer) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead == nil
}

// overdue reports whether a call has waited longer than d.
func (p *peer) overdue(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cl := range p.pending {
		if time.Since(cl.start) > d {
			return true
		}
	}
	return false
}

// send writes one request; cb is called exactly once with the reply or the
// connection's failure, unless send returns an error, which means the
// request was not sent at all.
func (p *peer) send(kind byte, payload []byte, cb func(code byte, payload []byte, err error)) error {
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	p.nextID++
	id := p.nextID
	p.pending[id] = &call{cb: cb, start: time.Now()}
	p.mu.Unlock()

	p.wmu.Lock()
	_ = p.c.SetWriteDeadline(time.Now().Add(fwdWriteTimeout))
	var err error
	p.buf, err = writeFrame(p.c, p.buf, id, kind, payload)
	p.wmu.Unlock()
	if err == nil {
		return nil
	}
	var partial *partialWriteError
	if errors.As(err, &partial) {
		p.fail(fmt.Errorf("%w: %w", errPeerDown, err)) // cb gets it
		return nil
	}
	p.mu.Lock()
	_, mine := p.pending[id]
	delete(p.pending, id)
	p.mu.Unlock()
	p.fail(err)
	if !mine {
		return nil // fail or a reply already answered cb
	}
	return err
}

// peerTo returns the cached connection to addr, dialling a new one when
// there is none or it failed.
func (n *Node) peerTo(addr string) (*peer, error) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if p := n.peers[addr]; p != nil && p.alive() {
		return p, nil
	}
	p, err := n.dialPeer(addr)
	if err != nil {
		return nil, err
	}
	n.peers[addr] = p
	return p, nil
}

func (n *Node) closePeers() {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for addr, p := range n.peers {
		p.fail(ErrClosed)
		delete(n.peers, addr)
	}
}

// reapPeers fails connections with a request older than the reply budget:
// a partitioned leader never answers, and its callers must learn the
// outcome is unknown.
func (n *Node) reapPeers() {
	limit := n.cfg.ApplyTimeout + fwdReplySlack
	n.peersMu.Lock()
	var stale []*peer
	for _, p := range n.peers {
		if p.overdue(limit) {
			stale = append(stale, p)
		}
	}
	n.peersMu.Unlock()
	for _, p := range stale {
		n.log.Warn("forwarding peer stopped answering", "addr", p.addr)
		p.fail(fmt.Errorf("%w: no reply within %s", errPeerDown, limit))
	}
}

// call sends one request to addr and waits for its reply.
func (n *Node) call(ctx context.Context, addr string, kind byte, payload []byte) ([]byte, error) {
	p, err := n.peerTo(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	type res struct {
		code    byte
		payload []byte
		err     error
	}
	ch := make(chan res, 1)
	if err := p.send(kind, payload, func(code byte, payload []byte, err error) {
		ch <- res{code, payload, err}
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, r.err)
		}
		if r.code != codeOK {
			return nil, errOf(r.code, string(r.payload))
		}
		return r.payload, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-n.stop:
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrClosed)
	}
}

// callLeader sends one request to the current leader.
func (n *Node) callLeader(ctx context.Context, kind byte, payload []byte) ([]byte, error) {
	addr, id := n.raft.LeaderWithID()
	if addr == "" {
		return nil, fmt.Errorf("%w: no leader known", ErrNotLeader)
	}
	if string(id) == n.cfg.NodeID {
		return nil, fmt.Errorf("%w: this node is leader but not ready", ErrNotLeader)
	}
	return n.call(ctx, string(addr), kind, payload)
}

// forwarder batches proposals queued on a follower into fwdPropose
// requests to the leader, pipelined like the local proposer.
func (n *Node) forwarder() {
	defer n.wg.Done()
	batch := make([]*proposal, 0, n.cfg.BatchCommandsMax)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		batch = batch[:0]
		select {
		case p := <-n.fwdQueue:
			batch = append(batch, p)
		case <-tick.C:
			n.reapPeers()
			continue
		case <-n.stop:
			n.failForwardQueue(ErrClosed)
			return
		}
	fill:
		for len(batch) < n.cfg.BatchCommandsMax {
			select {
			case p := <-n.fwdQueue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		props := make([]*proposal, len(batch))
		copy(props, batch)
		n.forward(props)
	}
}

func (n *Node) failForwardQueue(err error) {
	for {
		select {
		case p := <-n.fwdQueue:
			p.done <- reply{err: err}
		default:
			return
		}
	}
}

func (n *Node) forward(props []*proposal) {
	failAll := func(outcome string, err error) {
		n.m.proposals.WithLabelValues(outcome).Add(float64(len(props)))
		for _, p := range props {
			p.done <- reply{err: err}
		}
	}
	cmds := make([]store.Command, len(props))
	for i, p := range props {
		cmds[i] = p.cmd
	}
	data, err := store.EncodeBatch(cmds)
	if err != nil {
		for _, p := range props {
			p.done <- reply{err: fmt.Errorf("cluster: encode: %w", err)}
		}
		return
	}
	// During an election there is no leader, or the one raft remembers is
	// dead: hold the batch (nothing was sent) until a leader answers
	// instead of refusing at once, so a failover costs partners a delay,
	// not a storm of 96s. The callers' own deadlines still apply.
	var peer *peer
	deadline := time.Now().Add(n.leaderWait())
	for {
		if n.leading.Load() {
			// Became the leader while these waited: propose them here.
			for _, p := range props {
				n.enqueueLocal(p)
			}
			return
		}
		addr, id := n.raft.LeaderWithID()
		if addr == "" || string(id) == n.cfg.NodeID {
			err = fmt.Errorf("%w: no leader to forward to", ErrNotLeader)
		} else if peer, err = n.peerTo(string(addr)); err != nil {
			err = fmt.Errorf("%w: leader %s unreachable: %w", ErrNotLeader, addr, err)
		} else {
			break
		}
		if time.Now().After(deadline) {
			failAll("not_leader", err)
			return
		}
		select {
		case <-n.stop:
			failAll("closed", ErrClosed)
			return
		case <-time.After(leaderPollInterval):
		}
	}
	select {
	case n.fwdSlots <- struct{}{}:
	case <-n.stop:
		failAll("closed", ErrClosed)
		return
	}
	n.m.batchCommands.Observe(float64(len(props)))
	start := time.Now()
	addr := peer.addr
	err = peer.send(fwdPropose, data, func(code byte, payload []byte, err error) {
		defer func() { <-n.fwdSlots }()
		if err != nil {
			failAll("unknown", fmt.Errorf("%w: %w", ErrUnknownOutcome, err))
			return
		}
		if code != codeOK {
			e := errOf(code, string(payload))
			failAll(outcomeLabel(e), e)
			return
		}
		var out []fwdResult
		if err := json.Unmarshal(payload, &out); err != nil || len(out) != len(props) {
			failAll("unknown", fmt.Errorf("%w: bad reply from leader (%d results for %d commands, %v)", ErrUnknownOutcome, len(out), len(props), err))
			return
		}
		n.m.commitSeconds.Observe(time.Since(start).Seconds())
		for i, p := range props {
			if out[i].Code != codeOK {
				e := errOf(out[i].Code, out[i].Msg)
				n.m.proposals.WithLabelValues(outcomeLabel(e)).Inc()
				p.done <- reply{err: e}
				continue
			}
			n.m.proposals.WithLabelValues("applied").Inc()
			res := out[i].Res
			res.Replayed = out[i].Replayed
			p.done <- reply{res: res}
		}
	})
	if err != nil {
		<-n.fwdSlots
		failAll("not_leader", fmt.Errorf("%w: leader %s: %w", ErrNotLeader, addr, err))
	}
}

// leaderPollInterval is how often a follower holding a batch looks for a
// leader during an election.
const leaderPollInterval = 20 * time.Millisecond

// leaderWait is how long a follower holds forwarded commands while there
// is no reachable leader: an election takes one to two election timeouts,
// plus the new leader's Barrier.
func (n *Node) leaderWait() time.Duration { return 3 * n.cfg.ElectionTimeout }

func outcomeLabel(err error) string {
	switch {
	case errors.Is(err, ErrUnknownOutcome):
		return "unknown"
	case errors.Is(err, ErrNotLeader):
		return "not_leader"
	case errors.Is(err, ErrOverloaded):
		return "overloaded"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	return "unknown"
}

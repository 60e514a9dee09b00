package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// One listener on the raft address carries two kinds of streams between
// nodes: raft's own RPCs and the forwarding protocol (forward.go). The
// dialer writes one header byte that says which; the listener routes by
// it. One address to configure, one port to firewall, and when node TLS is
// on both kinds are inside the same mutually authenticated TLS session.
const (
	streamRaft    byte = 'R'
	streamForward byte = 'F'
	// streamHeaderTimeout bounds how long an accepted connection may take
	// to say what it is (and to finish the TLS handshake).
	streamHeaderTimeout = 5 * time.Second
	// streamConnsMax bounds connections accepted from peers at once: a
	// cluster has a handful of peers with a few pooled connections each.
	streamConnsMax = 256
)

// mux accepts connections on the raft address and routes them by their
// header byte: raft streams to the raft layer's Accept, forwarding streams
// to handle.
type mux struct {
	ln     net.Listener
	tls    *tls.Config // nil: plain TCP
	log    *slog.Logger
	raftCh chan net.Conn
	handle func(net.Conn) // serves one forwarding stream until it ends
	done   chan struct{}
	wg     sync.WaitGroup // the accept loop and every connection's goroutine
	slots  chan struct{}

	mu    sync.Mutex // protects conns and closed
	conns map[net.Conn]struct{}
	// closed is set by close; no conn is tracked after it.
	closed bool
}

func newMux(addr string, tlsCfg *tls.Config, logger *slog.Logger) (*mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &mux{
		ln: ln, tls: tlsCfg, log: logger,
		raftCh: make(chan net.Conn),
		done:   make(chan struct{}),
		slots:  make(chan struct{}, streamConnsMax),
		conns:  map[net.Conn]struct{}{},
	}, nil
}

// start runs the accept loop; handle serves forwarding streams.
func (m *mux) start(handle func(net.Conn)) {
	m.handle = handle
	m.wg.Add(1)
	go m.accept()
}

func (m *mux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("raft listener failed", "err", err)
			return
		}
		select {
		case m.slots <- struct{}{}:
		default:
			c.Close() // over the limit: a peer will redial
			continue
		}
		if !m.track(c) {
			c.Close()
			<-m.slots
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
	<-m.slots
}

// route reads the header and hands the connection on: raft connections to
// raft's Accept, forwarding connections are served here until they end.
func (m *mux) route(raw net.Conn) {
	defer m.wg.Done()
	c := raw
	_ = raw.SetDeadline(time.Now().Add(streamHeaderTimeout))
	if m.tls != nil {
		tc := tls.Server(raw, m.tls)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("node TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
			raw.Close()
			m.untrack(raw)
			return
		}
		c = tc
	}
	var hdr [1]byte
	if _, err := c.Read(hdr[:]); err != nil {
		c.Close()
		m.untrack(raw)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	switch hdr[0] {
	case streamRaft:
		// Raft owns the connection now; it stays tracked until raft
		// closes it, or the mux closes it on shutdown (raft's handler
		// would otherwise wait for the peer forever).
		tc := &trackedConn{Conn: c, m: m, raw: raw}
		select {
		case m.raftCh <- tc:
		case <-m.done:
			tc.Close()
		}
	case streamForward:
		m.handle(c)
		c.Close()
		m.untrack(raw)
	default:
		m.log.Warn("unknown stream header on the raft address", "remote", raw.RemoteAddr().String())
		c.Close()
		m.untrack(raw)
	}
}

// trackedConn leaves the mux's bookkeeping when closed.
type trackedConn struct {
	net.Conn
	m    *mux
	raw  net.Conn
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.m.untrack(c.raw) })
	return err
}

// close stops accepting, closes every forwarding connection and waits for
// their goroutines.
func (m *mux) close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	err := m.ln.Close()
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return err
}

// DialFunc opens a TCP connection to a peer (Config.Dial).
type DialFunc func(addr string, timeout time.Duration) (net.Conn, error)

func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

// dialStream opens a stream of the given kind to a peer's raft address.
func dialStream(dial DialFunc, addr string, kind byte, tlsCfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	if dial == nil {
		dial = dialTCP
	}
	raw, err := dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	c := raw
	_ = raw.SetDeadline(time.Now().Add(timeout))
	if tlsCfg != nil {
		tc := tls.Client(raw, clientFor(tlsCfg, addr))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("node TLS to %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return c, nil
}

// raftLayer is raft's StreamLayer over the mux.
type raftLayer struct {
	m         *mux
	advertise net.Addr
	tlsClient *tls.Config // nil: plain TCP
	dial      DialFunc
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the whole mux: raft's transport is closed last, after raft
// and the forwarding service stopped.
func (l *raftLayer) Close() error { return l.m.close() }

func (l *raftLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.m.ln.Addr()
}

// A refused connection means the peer's host is up but switchd is not
// listening: it is restarting. Raft's dial retries that for up to
// refusedRetryWindow before it reports the failure. Why: hashicorp/raft
// backs off replication to a failing follower exponentially (10 ms × 2ⁿ,
// up to 10.24 s) and does not retry before the wait is over, even once
// the follower is back. Failing fast on every refused dial of a kill -9 and
// restart ran the count up to waits of seconds, so the restarted follower
// lagged that long; a following failover then waited for it too (issue 3's
// ≤ 3 s failover, measured 2.6–3.3 s in round 2). Retrying a refused dial
// for a second counts one failure per second of outage instead.
const (
	refusedRetryWindow   = time.Second
	refusedRetryInterval = 20 * time.Millisecond
)

func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(min(timeout, refusedRetryWindow))
	for {
		c, err := dialStream(l.dial, string(addr), streamRaft, l.tlsClient, timeout)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || !time.Now().Add(refusedRetryInterval).Before(deadline) {
			return c, err
		}
		select {
		case <-l.m.done: // the node is closing: do not hold raft's shutdown
			return nil, err
		case <-time.After(refusedRetryInterval):
		}
	}
}

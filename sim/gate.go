package sim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrClosed is returned by a simulator's SetBehavior after Close.
var ErrClosed = errors.New("sim: closed")

// gate owns a simulator's listener and its open connections, so mode down
// can do what a host that is down does to its callers: refuse the dial (the
// listener is closed, not merely ignored) and drop every open connection.
// Leaving down listens again on the same address.
type gate struct {
	addr  string
	tls   *tls.Config
	serve func(net.Listener) // runs until the listener is closed

	mu     sync.Mutex // protects ln, conns and closed
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool

	wg sync.WaitGroup // serve loops
}

func newGate(addr string, tcfg *tls.Config, serve func(net.Listener)) *gate {
	return &gate{addr: addr, tls: tcfg, serve: serve, conns: make(map[net.Conn]struct{})}
}

// open listens (again) when not listening. After the first bind the
// address is the bound one, so ":0" keeps its port across down and up.
func (g *gate) open() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if g.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return fmt.Errorf("sim: listen %s: %w", g.addr, err)
	}
	g.addr = ln.Addr().String()
	if g.tls != nil {
		ln = tls.NewListener(ln, g.tls)
	}
	g.ln = ln
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.serve(ln)
	}()
	return nil
}

// shut closes the listener and every open connection (mode down).
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shutLocked()
}

func (g *gate) shutLocked() {
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// close shuts the gate for good and waits for the serve loops.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.shutLocked()
	g.mu.Unlock()
	g.wg.Wait()
}

// track registers an accepted connection; false (and the connection
// closed) when the gate is down or closed, so a connection accepted just as
// the mode turned down is not served.
func (g *gate) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.ln == nil {
		c.Close()
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *gate) untrack(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
}

// conns returns the number of open connections.
func (g *gate) connCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// address is where the gate listens (or listened last, when down).
func (g *gate) address() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// setBehavior switches st to b, closing or reopening the gate as the mode
// requires. Down is recorded before the gate shuts, so a request still
// being read sees it; up opens the gate first, so a failed listen leaves
// the simulator down rather than claiming to be up.
func setBehavior(g *gate, st *behaviorState, b Behavior) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if b.Mode == ModeDown {
		st.set(b)
		g.shut()
		return nil
	}
	if err := g.open(); err != nil {
		return err
	}
	st.set(b)
	return nil
}

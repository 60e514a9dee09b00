package chaos

import (
	"errors"
	"math/rand"
	"net"
	"sync"
	"time"

	"github.com/switchd/switchd/cluster"
)

// errCut is what a dial across a cut link returns (after a timeout, as a
// real partition would).
var errCut = errors.New("chaos: link cut")

// cutDialDelayMax is how long a dial across a cut link hangs before it
// fails: a partitioned peer does not refuse, it is silent.
const cutDialDelayMax = 500 * time.Millisecond

type pair struct{ a, b int } // a < b: links are cut both ways

func mkpair(a, b int) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// network sits under every node-to-node connection (cluster.Config.Dial):
// it knows which node dials which, and can cut, delay or break the link.
type network struct {
	mu     sync.Mutex // protects the fields below
	addrOf map[string]int
	cut    map[pair]bool
	delay  time.Duration // added before every write on every link
	dropP  float64       // chance a write breaks its connection
	rng    *rand.Rand
	conns  map[pair]map[*faultConn]struct{}
}

func newNetwork(seed int64) *network {
	return &network{
		addrOf: map[string]int{},
		cut:    map[pair]bool{},
		rng:    rand.New(rand.NewSource(seed)),
		conns:  map[pair]map[*faultConn]struct{}{},
	}
}

func (nw *network) setAddr(addr string, node int) {
	nw.mu.Lock()
	nw.addrOf[addr] = node
	nw.mu.Unlock()
}

func (nw *network) dialer(from int) cluster.DialFunc {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		nw.mu.Lock()
		to, known := nw.addrOf[addr]
		p := mkpair(from, to)
		isCut := known && nw.cut[p]
		nw.mu.Unlock()
		if isCut {
			time.Sleep(min(timeout, cutDialDelayMax))
			return nil, errCut
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, nw: nw, p: p}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		if nw.cut[p] {
			c.Close()
			return nil, errCut
		}
		if nw.conns[p] == nil {
			nw.conns[p] = map[*faultConn]struct{}{}
		}
		nw.conns[p][fc] = struct{}{}
		return fc, nil
	}
}

// isolate cuts every link of node i; heal restores all links and clears
// delays and drops.
func (nw *network) isolate(i, size int) {
	nw.mu.Lock()
	var victims []*faultConn
	for j := 0; j < size; j++ {
		if j == i {
			continue
		}
		p := mkpair(i, j)
		nw.cut[p] = true
		for c := range nw.conns[p] {
			victims = append(victims, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

func (nw *network) setFlaky(delay time.Duration, dropP float64) {
	nw.mu.Lock()
	nw.delay, nw.dropP = delay, dropP
	nw.mu.Unlock()
}

func (nw *network) heal() {
	nw.mu.Lock()
	nw.cut = map[pair]bool{}
	nw.delay, nw.dropP = 0, 0
	nw.mu.Unlock()
}

// closeAll breaks every open connection (used when the harness stops).
func (nw *network) closeAll() {
	nw.mu.Lock()
	var all []*faultConn
	for _, m := range nw.conns {
		for c := range m {
			all = append(all, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

type faultConn struct {
	net.Conn
	nw   *network
	p    pair
	once sync.Once
}

func (c *faultConn) Write(b []byte) (int, error) {
	c.nw.mu.Lock()
	cut, delay := c.nw.cut[c.p], c.nw.delay
	drop := c.nw.dropP > 0 && c.nw.rng.Float64() < c.nw.dropP
	c.nw.mu.Unlock()
	if cut || drop {
		c.Close()
		return 0, errCut
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	return c.Conn.Write(b)
}

func (c *faultConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.nw.mu.Lock()
		delete(c.nw.conns[c.p], c)
		c.nw.mu.Unlock()
	})
	return err
}

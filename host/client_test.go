package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/codec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// peer is a scripted host for the client's tests: it accepts connections
// and hands every request to answer, which returns the answers to write
// (none: no answer). It speaks the same dialect and framing as the
// client, through package codec.
type peer struct {
	t      *testing.T
	ln     net.Listener
	codec  *codec.Codec
	fr     codec.Framer
	answer func(req *codec.Message) []*codec.Message
	mu     sync.Mutex
	conns  []net.Conn
	seen   map[string]int // requests by MTI and field 70
	wg     sync.WaitGroup
}

func newPeer(t *testing.T, answer func(*codec.Message) []*codec.Message) *peer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cd, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, ln: ln, codec: cd, fr: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}, answer: answer, seen: map[string]int{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *peer) addr() string { return p.ln.Addr().String() }

func (p *peer) close() {
	p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

// dropAll closes every connection (the host restarts).
func (p *peer) dropAll() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *peer) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[key]
}

func (p *peer) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *peer) serve(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		f, err := p.fr.ReadFrame(br, nil)
		if err != nil {
			return
		}
		m := new(codec.Message)
		if err := p.codec.Unpack(f, m); err != nil {
			p.t.Errorf("peer: %v", err)
			return
		}
		p.mu.Lock()
		p.seen[m.MTI+"/"+m.Get(70)]++
		p.mu.Unlock()
		for _, a := range p.answer(m) {
			p.write(c, a)
		}
	}
}

func (p *peer) write(c net.Conn, m *codec.Message) {
	b, err := p.codec.Pack(nil, m)
	if err != nil {
		p.t.Errorf("peer pack: %v", err)
		return
	}
	b, _ = p.fr.AppendFrame(nil, b)
	c.Write(b)
}

// reply is the answer to req with code rc, echoing the key fields.
func reply(req *codec.Message, rc string) *codec.Message {
	a := &codec.Message{MTI: req.MTI[:2] + string(req.MTI[2]+1) + req.MTI[3:]}
	for _, f := range []int{2, 3, 4, 7, 11, 37, 41, 49, 70} {
		if req.Has(f) {
			a.Set(f, req.Get(f))
		}
	}
	a.Set(39, rc)
	if rc == "00" && req.MTI[:2] != "08" {
		a.Set(38, "A1B2C3")
	}
	return a
}

// approveAll signs on and approves everything.
func approveAll(req *codec.Message) []*codec.Message { return []*codec.Message{reply(req, "00")} }

func purchase(stan string) *codec.Message {
	m := &codec.Message{MTI: "0200"}
	for id, v := range map[int]string{2: "4000000000000002", 3: "000000", 4: "000000001000", 7: "1202080000",
		11: stan, 37: "000000" + stan, 41: "TERM0001", 49: "840"} {
		m.Set(id, v)
	}
	return m
}

func testConfig(addr string) Config {
	c := DefaultConfig()
	c.Name, c.Addrs = "issuer", []string{addr}
	c.Timeout, c.EchoInterval = 300*time.Millisecond, 0
	c.ReconnectMin, c.ReconnectMax = 5*time.Millisecond, 20*time.Millisecond
	return c
}

func newClient(t *testing.T, cfg Config, opt Options) *Client {
	c, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitReady(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("client not ready: %+v", c.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSignOnThenApprove(t *testing.T) {
	p := newPeer(t, approveAll)
	c := newClient(t, testConfig(p.addr()), Options{})
	waitReady(t, c)
	if n := p.count("0800/001"); n != 1 {
		t.Fatalf("sign-ons: %d, want 1", n)
	}
	ans, err := c.Send(context.Background(), purchase("000001"))
	if err != nil {
		t.Fatal(err)
	}
	if ans.MTI != "0210" || ans.Get(39) != "00" || ans.Get(38) != "A1B2C3" || ans.Get(11) != "000001" {
		t.Fatalf("answer %s 39=%s 38=%s 11=%s", ans.MTI, ans.Get(39), ans.Get(38), ans.Get(11))
	}
	if s := c.Stats(); s.Answered != 1 || s.Sent != 2 || s.ConnectionsUp != 1 || s.Timeouts != 0 { // Sent counts the sign-on
		t.Fatalf("stats %+v", s)
	}
}

// A host that refuses the sign-on never gets a request: Send fails at once
// with ErrUnavailable and the host sees only sign-ons.
func TestSignOnRefused(t *testing.T) {
	p := newPeer(t, func(req *codec.Message) []*codec.Message { return []*codec.Message{reply(req, "91")} })
	c := newClient(t, testConfig(p.addr()), Options{})
	deadline := time.Now().Add(5 * time.Second)
	for p.count("0800/001") < 2 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if p.count("0800/001") < 2 {
		t.Fatal("no sign-on retried")
	}
	if _, err := c.Send(context.Background(), purchase("000002")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("send with no signed-on connection: %v, want ErrUnavailable", err)
	}
	if n := p.count("0200/"); n != 0 {
		t.Fatalf("host saw %d purchases on a connection it refused", n)
	}
}

// No host at all: ErrUnavailable, no waiting for a timeout.
func TestDownIsUnavailable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig(addr)
	cfg.Timeout = 10 * time.Second // a wait would show as a test timeout
	c := newClient(t, cfg, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.Send(ctx, purchase("000003")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Send waited on a host that is down")
	}
}

// A request the host does not answer in time is ErrTimeout; the answer
// arriving afterwards is a late stray, never matched to anything else.
func TestTimeoutThenLateAnswer(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Pointer[codec.Message]
	var p *peer
	p = newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0200" {
			held.Store(req)
			go func() {
				<-release
				p.mu.Lock()
				conn := p.conns[len(p.conns)-1]
				p.mu.Unlock()
				p.write(conn, reply(req, "00"))
			}()
			return nil
		}
		return approveAll(req)
	})
	strays := make(chan Stray, 4)
	c := newClient(t, testConfig(p.addr()), Options{OnStray: func(s Stray) { strays <- s }})
	waitReady(t, c)
	if _, err := c.Send(context.Background(), purchase("000004")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("%v, want ErrTimeout", err)
	}
	close(release)
	select {
	case s := <-strays:
		if s.Kind != StrayLate || s.Message.Get(11) != "000004" {
			t.Fatalf("stray %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the late answer was dropped silently")
	}
	if s := c.Stats(); s.Timeouts != 1 || s.Late != 1 || s.Unmatched != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// An answer to nothing we sent is an unmatched stray.
func TestUnmatchedAnswer(t *testing.T) {
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0200" {
			other := reply(req, "00")
			other.Set(11, "999999")
			return []*codec.Message{other, reply(req, "00")}
		}
		return approveAll(req)
	})
	strays := make(chan Stray, 4)
	c := newClient(t, testConfig(p.addr()), Options{OnStray: func(s Stray) { strays <- s }})
	waitReady(t, c)
	ans, err := c.Send(context.Background(), purchase("000005"))
	if err != nil || ans.Get(11) != "000005" {
		t.Fatalf("%v %v", ans, err)
	}
	if s := <-strays; s.Kind != StrayUnmatched || s.Message.Get(11) != "999999" {
		t.Fatalf("stray %+v", s)
	}
}

// A reversal sharing the original's STAN, terminal and RRN is told apart
// by its MTI class, even when the host answers in the other order.
func TestReversalDoesNotCollideWithItsOriginal(t *testing.T) {
	var mu sync.Mutex
	var firstReq *codec.Message
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0800" {
			return approveAll(req)
		}
		mu.Lock()
		defer mu.Unlock()
		if firstReq == nil {
			firstReq = req
			return nil
		}
		return []*codec.Message{reply(req, "00"), reply(firstReq, "05")} // second first
	})
	c := newClient(t, testConfig(p.addr()), Options{})
	waitReady(t, c)
	orig := purchase("000006")
	rev := purchase("000006")
	rev.MTI = "0420"
	type res struct {
		m   *codec.Message
		err error
	}
	first := make(chan res, 1)
	go func() { m, err := c.Send(context.Background(), orig); first <- res{m, err} }()
	for p.count("0200/") == 0 {
		time.Sleep(time.Millisecond)
	}
	ra, err := c.Send(context.Background(), rev)
	if err != nil || ra.MTI != "0430" || ra.Get(39) != "00" {
		t.Fatalf("reversal: %v %v", ra, err)
	}
	o := <-first
	if o.err != nil || o.m.MTI != "0210" || o.m.Get(39) != "05" {
		t.Fatalf("original: %v %v", o.m, o.err)
	}
}

// Two requests with one key in flight cannot be told apart: the second
// is refused and the host never sees it.
func TestSameKeyInFlightRefused(t *testing.T) {
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0200" {
			return nil
		}
		return approveAll(req)
	})
	c := newClient(t, testConfig(p.addr()), Options{})
	waitReady(t, c)
	done := make(chan error, 1)
	go func() { _, err := c.Send(context.Background(), purchase("000007")); done <- err }()
	for p.count("0200/") == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Send(context.Background(), purchase("000007")); !errors.Is(err, ErrInFlight) {
		t.Fatalf("%v, want ErrInFlight", err)
	}
	<-done
	if n := p.count("0200/"); n != 1 {
		t.Fatalf("host saw %d purchases, want 1", n)
	}
}

// BreakerFailures timeouts open the circuit: the next request fails at
// once without reaching the host; after the cooldown one probe goes
// through and its answer closes the circuit.
func TestCircuitBreaker(t *testing.T) {
	var answer atomic.Bool
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0200" && !answer.Load() {
			return nil
		}
		return approveAll(req)
	})
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC).UnixNano())
	cfg := testConfig(p.addr())
	cfg.Timeout, cfg.BreakerFailures, cfg.BreakerCooldown = 50*time.Millisecond, 3, time.Minute
	c := newClient(t, cfg, Options{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	waitReady(t, c)
	for i := range 3 {
		if _, err := c.Send(context.Background(), purchase("00001"+string(rune('0'+i)))); !errors.Is(err, ErrTimeout) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if _, err := c.Send(context.Background(), purchase("000020")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("circuit should be open: %v", err)
	}
	if n := p.count("0200/"); n != 3 {
		t.Fatalf("host saw %d purchases with the circuit open, want 3", n)
	}
	if s := c.Stats(); !s.CircuitOpen || s.CircuitOpens != 1 {
		t.Fatalf("stats %+v", s)
	}
	answer.Store(true)
	now.Add(int64(time.Minute))
	if ans, err := c.Send(context.Background(), purchase("000021")); err != nil || ans.Get(39) != "00" {
		t.Fatalf("probe after the cooldown: %v %v", ans, err)
	}
	if _, err := c.Send(context.Background(), purchase("000022")); err != nil {
		t.Fatalf("after the probe: %v", err)
	}
	if c.Stats().CircuitOpen {
		t.Fatal("circuit still open after a good answer")
	}
}

// The host drops the connection: a request waiting gets ErrConnectionLost,
// the client dials again, signs on, and the next request is answered.
func TestReconnectAfterDrop(t *testing.T) {
	var p *peer
	var drop atomic.Bool
	p = newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0200" && drop.CompareAndSwap(true, false) {
			go p.dropAll()
			return nil
		}
		return approveAll(req)
	})
	c := newClient(t, testConfig(p.addr()), Options{})
	waitReady(t, c)
	drop.Store(true)
	if _, err := c.Send(context.Background(), purchase("000030")); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("%v, want ErrConnectionLost", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ans, err := c.Send(context.Background(), purchase("000031"))
		if err == nil && ans.Get(39) == "00" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer after the host came back: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.count("0800/001"); n < 2 {
		t.Fatalf("sign-ons %d: the new connection was used without one", n)
	}
}

// Echoes go out every EchoInterval; one the host leaves unanswered closes
// the connection (and the client dials again).
func TestEcho(t *testing.T) {
	var mute atomic.Bool
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.Get(70) == "301" && mute.Load() {
			return nil
		}
		return approveAll(req)
	})
	cfg := testConfig(p.addr())
	cfg.Timeout, cfg.EchoInterval = 50*time.Millisecond, 50*time.Millisecond
	c := newClient(t, cfg, Options{})
	waitReady(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for p.count("0800/301") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no echoes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mute.Store(true)
	for c.Stats().EchoFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an unanswered echo did not close the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for c.Stats().Connects < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no reconnect after the echo failed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The host's own echo is answered by the client; its other requests are
// handed on as strays.
func TestHostRequests(t *testing.T) {
	p := newPeer(t, func(req *codec.Message) []*codec.Message {
		if req.MTI == "0810" {
			return nil // our answer to its echo
		}
		return approveAll(req)
	})
	strays := make(chan Stray, 4)
	c := newClient(t, testConfig(p.addr()), Options{OnStray: func(s Stray) { strays <- s }})
	waitReady(t, c)
	p.mu.Lock()
	conn := p.conns[0]
	p.mu.Unlock()
	echo := &codec.Message{MTI: "0800"}
	echo.Set(7, "1202080000")
	echo.Set(11, "424242")
	echo.Set(70, "301")
	p.write(conn, echo)
	rev := purchase("000040")
	rev.MTI = "0420"
	p.write(conn, rev)
	if s := <-strays; s.Kind != StrayRequest || s.Message.MTI != "0420" {
		t.Fatalf("stray %+v", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.count("0810/301") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the host's echo was not answered")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig("127.0.0.1:9583")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Config){
		"no name":           func(c *Config) { c.Name = "" },
		"no addrs":          func(c *Config) { c.Addrs = nil },
		"addr without port": func(c *Config) { c.Addrs = []string{"localhost"} },
		"pool 0":            func(c *Config) { c.PoolSize = 0 },
		"pool too big":      func(c *Config) { c.PoolSize = PoolSizeMax + 1 },
		"timeout 0":         func(c *Config) { c.Timeout = 0 },
		"timeout too long":  func(c *Config) { c.Timeout = TimeoutMax + 1 },
		"echo < timeout":    func(c *Config) { c.EchoInterval = c.Timeout / 2 },
		"breaker 0":         func(c *Config) { c.BreakerFailures = 0 },
		"bad header":        func(c *Config) { c.Header = "ascii9" },
		"bad class":         func(c *Config) { c.Match = map[string][]int{"2": {11}} },
		"39 in key":         func(c *Config) { c.Match = map[string][]int{"02": {11, 39}} },
		"too many fields":   func(c *Config) { c.Match = map[string][]int{"02": {2, 3, 4, 7, 11, 12, 13, 37, 41}} },
		"cert without key":  func(c *Config) { c.TLS = &TLSConfig{CertFile: "c.pem"} },
	} {
		c := good
		change(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// BenchmarkSend: requests over one client (PoolSize connections) to a
// host answering at once, from parallel callers. ns/op is the client's
// round trip on loopback, the cost the forward hop adds.
func BenchmarkSend(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cd, _ := codec.Load("iso87ascii")
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					f, err := fr.ReadFrame(br, nil)
					if err != nil {
						return
					}
					m := new(codec.Message)
					if cd.Unpack(f, m) != nil {
						return
					}
					out, _ := cd.Pack(nil, reply(m, "00"))
					out, _ = fr.AppendFrame(nil, out)
					bw.Write(out)
					if br.Buffered() == 0 {
						bw.Flush()
					}
				}
			}()
		}
	}()
	cfg := DefaultConfig()
	cfg.Name, cfg.Addrs, cfg.PoolSize, cfg.EchoInterval = "bench", []string{ln.Addr().String()}, 4, 0
	c, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for !c.Ready() {
		time.Sleep(time.Millisecond)
	}
	var stan atomic.Uint64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := stan.Add(1)
			m := purchase(fmt.Sprintf("%06d", n%1_000_000))
			m.Set(37, fmt.Sprintf("%012d", n))
			if _, err := c.Send(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

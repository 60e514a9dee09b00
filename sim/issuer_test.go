package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
)

// isoClient is a test acquirer speaking our own codec and framing.
type isoClient struct {
	t      testing.TB
	c      net.Conn
	br     *bufio.Reader
	codec  *codec.Codec
	framer codec.Framer
	buf    []byte
}

func dialIssuer(t testing.TB, addr string) *isoClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return wrapConn(t, c)
}

func wrapConn(t testing.TB, c net.Conn) *isoClient {
	cd, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	return &isoClient{t: t, c: c, br: bufio.NewReader(c), codec: cd, framer: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}}
}

func (c *isoClient) send(m *codec.Message) {
	c.t.Helper()
	p, err := c.codec.Pack(nil, m)
	if err != nil {
		c.t.Fatal(err)
	}
	f, err := c.framer.AppendFrame(nil, p)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write(f); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads the next answer. The deadline only keeps a broken simulator
// from hanging the test; no test depends on it expiring.
func (c *isoClient) recv() (*codec.Message, error) {
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := c.framer.ReadFrame(c.br, c.buf[:0])
	if err != nil {
		return nil, err
	}
	c.buf = f
	m := new(codec.Message)
	if err := c.codec.Unpack(f, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *isoClient) roundTrip(m *codec.Message) *codec.Message {
	c.t.Helper()
	c.send(m)
	r, err := c.recv()
	if err != nil {
		c.t.Fatalf("answer to %s %s: %v", m.MTI, m.Get(11), err)
	}
	return r
}

func financial(mti, stan string) *codec.Message {
	m := &codec.Message{MTI: mti}
	m.Set(2, "4111111111111111")
	m.Set(3, "000000")
	m.Set(4, "000000001000")
	m.Set(7, "1202083000")
	m.Set(11, stan)
	m.Set(32, "100001")
	m.Set(37, "233608"+stan)
	m.Set(41, "TERM0001")
	m.Set(49, "840")
	return m
}

func advice(mti, stan, origSTAN string) *codec.Message {
	m := financial(mti, stan)
	m.Set(90, "0200"+origSTAN+"1202082900"+"00000100001"+"00000000000")
	return m
}

func network(stan, code string) *codec.Message {
	m := &codec.Message{MTI: "0800"}
	m.Set(7, "1202083000")
	m.Set(11, stan)
	m.Set(70, code)
	return m
}

func startIssuer(t testing.TB, mut func(*IssuerConfig)) *Issuer {
	t.Helper()
	cfg := DefaultIssuerConfig()
	cfg.Listen = "127.0.0.1:0"
	if mut != nil {
		mut(&cfg)
	}
	s, err := NewIssuer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustSet(t testing.TB, s interface{ SetBehavior(Behavior) error }, b Behavior) {
	t.Helper()
	if err := s.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
}

func behavior(mode Mode) Behavior {
	b := DefaultBehavior()
	b.Mode = mode
	return b
}

func wantCode(t testing.TB, m *codec.Message, mti, rc string) {
	t.Helper()
	if m.MTI != mti || m.Get(39) != rc {
		t.Fatalf("answer %s rc %q, want %s rc %q", m.MTI, m.Get(39), mti, rc)
	}
}

func TestIssuerSignOnAndApprove(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.RequireSignOn = true })
	c := dialIssuer(t, s.Addr())

	// Before sign-on a financial message is refused with 91, nothing approved.
	r := c.roundTrip(financial("0200", "000001"))
	wantCode(t, r, "0210", "91")
	if r.Has(38) {
		t.Fatal("approval code on a refusal")
	}

	r = c.roundTrip(network("000002", "001"))
	wantCode(t, r, "0810", "00")
	if r.Get(70) != "001" || r.Get(11) != "000002" {
		t.Fatalf("sign-on answer fields 70 %q 11 %q", r.Get(70), r.Get(11))
	}
	req := financial("0200", "000003")
	r = c.roundTrip(req)
	wantCode(t, r, "0210", "00")
	if len(r.Get(38)) != 6 {
		t.Fatalf("approval code %q, want 6 characters", r.Get(38))
	}
	for _, id := range []int{2, 3, 4, 7, 11, 32, 37, 41, 49} {
		if r.Get(id) != req.Get(id) {
			t.Fatalf("field %d not echoed: %q, want %q", id, r.Get(id), req.Get(id))
		}
	}
	wantCode(t, c.roundTrip(financial("0100", "000004")), "0110", "00")
	r = c.roundTrip(financial("0220", "000005"))
	wantCode(t, r, "0230", "00")
	if r.Has(38) {
		t.Fatal("approval code on an advice answer")
	}
	wantCode(t, c.roundTrip(network("000006", "301")), "0810", "00")
	wantCode(t, c.roundTrip(network("000007", "002")), "0810", "00")
	// Signed off: refused again.
	wantCode(t, c.roundTrip(financial("0200", "000008")), "0210", "91")

	st := s.Stats()
	if got := st.Messages["0200"]; got[approvalOutcome] != 1 || got[notSignedOnOutcome] != 2 {
		t.Fatalf("0200 counters %v", got)
	}
	if st.Messages["0800"][approvalOutcome] != 3 {
		t.Fatalf("0800 counters %v", st.Messages["0800"])
	}
}

func TestIssuerDecline(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) {
		c.Behavior.Mode = ModeDecline
		c.DeclineCode = "51"
	})
	c := dialIssuer(t, s.Addr())
	r := c.roundTrip(financial("0200", "000001"))
	wantCode(t, r, "0210", "51")
	if r.Has(38) {
		t.Fatal("approval code on a decline")
	}
	// An advice cannot be declined, only refused for now: 91, which a
	// store-and-forward queue resends.
	wantCode(t, c.roundTrip(advice("0420", "000002", "000001")), "0430", "91")
	// Network management is not declined.
	wantCode(t, c.roundTrip(network("000003", "301")), "0810", "00")
	// An unknown network code is unsupported (12), an unknown MTI gets
	// its class's generic answer.
	wantCode(t, c.roundTrip(network("000004", "999")), "0810", "12")
	if st := s.Stats(); st.Messages["0200"][declineOutcome] != 1 || st.Messages["0420"][declineOutcome] != 1 {
		t.Fatalf("counters %v", st.Messages)
	}
}

func TestIssuerUnsupportedMTI(t *testing.T) {
	s := startIssuer(t, nil)
	c := dialIssuer(t, s.Addr())
	m := financial("0300", "000001")
	wantCode(t, c.roundTrip(m), "0310", "12")
	if s.Stats().Messages["0300"][unsupportedOutcome] != 1 {
		t.Fatalf("counters %v", s.Stats().Messages)
	}
}

// A timed-out request is never answered: after switching back to approve,
// the next answer on the connection is the echo's, not the 0210.
func TestIssuerTimeout(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.Behavior.Mode = ModeTimeout })
	c := dialIssuer(t, s.Addr())
	c.send(financial("0200", "000001"))
	c.send(network("000002", "301"))
	// Both were read (counted) before the mode changes.
	waitFor(t, func() bool {
		st := s.Stats()
		return st.Messages["0200"][unansweredOutcome] == 1 && st.Messages["0800"][unansweredOutcome] == 1
	})
	// Nothing arrives within a deadline.
	c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.framer.ReadFrame(c.br, nil); !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("read in timeout mode: %v, want a deadline error", err)
	}
	mustSet(t, s, behavior(ModeApprove))
	r := c.roundTrip(network("000003", "301"))
	if r.Get(11) != "000003" {
		t.Fatalf("first answer after timeout mode is STAN %s, want the echo 000003", r.Get(11))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitFor polls a condition the simulator reaches asynchronously (a
// message read on its side). It has no deadline of its own: the test's
// timeout is the bound.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

func TestIssuerDown(t *testing.T) {
	s := startIssuer(t, nil)
	addr := s.Addr()
	c := dialIssuer(t, addr)
	wantCode(t, c.roundTrip(network("000001", "301")), "0810", "00")

	mustSet(t, s, behavior(ModeDown))
	// The open connection is closed …
	if _, err := c.recv(); err == nil {
		t.Fatal("connection still answers in mode down")
	}
	// … and a dial is refused.
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("dial accepted in mode down")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial in mode down: %v, want connection refused", err)
	}
	if s.Stats().Connections != 0 {
		t.Fatalf("connections %d in mode down", s.Stats().Connections)
	}
	// Up again on the same address.
	mustSet(t, s, behavior(ModeApprove))
	if s.Addr() != addr {
		t.Fatalf("address moved from %s to %s", addr, s.Addr())
	}
	c = dialIssuer(t, addr)
	wantCode(t, c.roundTrip(financial("0200", "000002")), "0210", "00")
}

func TestIssuerStartsDown(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.Behavior.Mode = ModeDown; c.Listen = freeAddr(t) })
	if conn, err := net.Dial("tcp", s.Addr()); err == nil {
		conn.Close()
		t.Fatal("dial accepted while starting down")
	}
	mustSet(t, s, behavior(ModeApprove))
	wantCode(t, dialIssuer(t, s.Addr()).roundTrip(financial("0200", "000001")), "0210", "00")
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A late answer comes after the caller's deadline: an echo sent after it
// (once the mode is approve) is answered first, and the late 0210 follows.
func TestIssuerLate(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) {
		c.Behavior.Mode = ModeLate
		c.Behavior.LateDelay = Duration(time.Second)
	})
	c := dialIssuer(t, s.Addr())
	c.send(financial("0200", "000001"))
	waitFor(t, func() bool { return s.Stats().Messages["0200"][approvalOutcome] == 1 })
	c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.framer.ReadFrame(c.br, nil); !isTimeout(err) {
		t.Fatalf("read before the late delay: %v, want a deadline error", err)
	}
	mustSet(t, s, behavior(ModeApprove))
	first := c.roundTrip(network("000002", "301"))
	if first.Get(11) != "000002" {
		t.Fatalf("first answer STAN %s, want the echo", first.Get(11))
	}
	late, err := c.recv()
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, late, "0210", "00")
	if late.Get(11) != "000001" || s.Stats().Late != 1 {
		t.Fatalf("late answer STAN %s, late counter %d", late.Get(11), s.Stats().Late)
	}
}

// The mode changes through the control API while a connection stays open.
func TestIssuerModeSwitchOnOpenConnection(t *testing.T) {
	s := startIssuer(t, nil)
	ctl, err := StartIssuerControl(ControlConfig{Listen: "127.0.0.1:0"}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	c := dialIssuer(t, s.Addr())
	wantCode(t, c.roundTrip(financial("0200", "000001")), "0210", "00")
	resp := post(t, "http://"+ctl.Addr()+"/mode", `{"mode":"decline"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /mode: %d", resp.StatusCode)
	}
	wantCode(t, c.roundTrip(financial("0200", "000002")), "0210", "05")
	post(t, "http://"+ctl.Addr()+"/mode", `{"mode":"approve"}`)
	wantCode(t, c.roundTrip(financial("0200", "000003")), "0210", "00")

	var st IssuerStats
	getJSON(t, "http://"+ctl.Addr()+"/stats", &st)
	if st.Messages["0200"][approvalOutcome] != 2 || st.Messages["0200"][declineOutcome] != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
	if r := post(t, "http://"+ctl.Addr()+"/reset", ""); r.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /reset: %d", r.StatusCode)
	}
	var after IssuerStats
	getJSON(t, "http://"+ctl.Addr()+"/stats", &after)
	if len(after.Messages) != 0 {
		t.Fatalf("stats after reset %+v", after.Messages)
	}
}

func post(t testing.TB, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// codes sends n purchases one at a time and returns the fates: the
// response code, or "--" for a connection closed instead of an answer.
func codes(t *testing.T, s *Issuer, n int) string {
	var out []string
	c := dialIssuer(t, s.Addr())
	for i := range n {
		c.send(financial("0200", fmt.Sprintf("%06d", i+1)))
		r, err := c.recv()
		if err != nil {
			out = append(out, "--")
			c = dialIssuer(t, s.Addr())
			continue
		}
		out = append(out, r.Get(39))
	}
	return strings.Join(out, " ")
}

func TestIssuerRatiosReproducible(t *testing.T) {
	ratios := func(seed uint64) func(*IssuerConfig) {
		return func(c *IssuerConfig) {
			c.Seed = seed
			c.Behavior.DeclineRatio = 0.3
			c.Behavior.DisconnectRatio = 0.2
		}
	}
	a := startIssuer(t, ratios(7))
	first := codes(t, a, 60)
	b := startIssuer(t, ratios(7))
	if second := codes(t, b, 60); second != first {
		t.Fatalf("same seed, different fates:\n%s\n%s", first, second)
	}
	if other := codes(t, startIssuer(t, ratios(8)), 60); other == first {
		t.Fatalf("seeds 7 and 8 gave the same 60 fates: %s", first)
	}
	for _, want := range []string{"00", "05", "--"} {
		if !strings.Contains(first, want) {
			t.Fatalf("fates %s lack %s", first, want)
		}
	}
	// Reset restarts the draws.
	a.Reset()
	if again := codes(t, a, 60); again != first {
		t.Fatalf("after reset:\n%s\nwant\n%s", again, first)
	}
	st := a.Stats().Messages["0200"]
	if st[approvalOutcome]+st[declineOutcome]+st[disconnectOutcome] != 60 {
		t.Fatalf("counters %v do not add up to 60", st)
	}
}

// The timeout ratio draws too: with the same seed the same requests go
// unanswered (checked on the decision sequence, since an unanswered
// request cannot be told from a slow one on the wire without a clock).
func TestBehaviorDrawsReproducible(t *testing.T) {
	b := DefaultBehavior()
	b.DeclineRatio, b.TimeoutRatio, b.DisconnectRatio = 0.25, 0.25, 0.25
	run := func(seed uint64) []action {
		st := newBehaviorState(b, seed)
		out := make([]action, 200)
		for i := range out {
			out[i] = st.decide().act
		}
		return out
	}
	x, y := run(3), run(3)
	seen := map[action]int{}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("draw %d differs: %v %v", i, x[i], y[i])
		}
		seen[x[i]]++
	}
	for _, a := range []action{actApprove, actDecline, actTimeout, actDisconnect} {
		if seen[a] < 20 {
			t.Fatalf("action %d drawn %d times of 200 at ratio 0.25", a, seen[a])
		}
	}
}

// A 0420 and its retransmission 0421 count as one advice delivered twice;
// a reversal of another original is a second advice.
func TestIssuerAdviceExactlyOnceCounters(t *testing.T) {
	s := startIssuer(t, nil)
	c := dialIssuer(t, s.Addr())
	r := c.roundTrip(advice("0420", "000010", "000001"))
	wantCode(t, r, "0430", "00")
	if r.Get(90) == "" {
		t.Fatal("field 90 not echoed on 0430")
	}
	wantCode(t, c.roundTrip(advice("0421", "000010", "000001")), "0430", "00")
	wantCode(t, c.roundTrip(advice("0420", "000011", "000002")), "0430", "00")
	a := s.Stats().Advices
	if a.Received != 3 || a.Distinct != 2 || a.Duplicates != 1 || a.Retransmissions != 1 {
		t.Fatalf("advice stats %+v", a)
	}
	for k, n := range a.ByKey {
		stan := strings.Split(k, "|")[1]
		if stan == "000010" && n != 2 || stan == "000011" && n != 1 {
			t.Fatalf("key %s counted %d", k, n)
		}
	}
	// An advice that times out was still delivered: the retransmission
	// after it is a duplicate, which is what the exactly-once check sees.
	mustSet(t, s, behavior(ModeTimeout))
	c.send(advice("0420", "000012", "000003"))
	waitFor(t, func() bool { return s.Stats().Advices.Received == 4 })
	mustSet(t, s, behavior(ModeApprove))
	wantCode(t, c.roundTrip(advice("0421", "000012", "000003")), "0430", "00")
	if a := s.Stats().Advices; a.Distinct != 3 || a.Duplicates != 2 || a.Retransmissions != 2 || a.NewTwice != 0 {
		t.Fatalf("advice stats %+v", a)
	}
	// The same original presented as new (0420) again is what a host may
	// take as a second reversal: counted apart.
	wantCode(t, c.roundTrip(advice("0420", "000011", "000002")), "0430", "00")
	if a := s.Stats().Advices; a.Distinct != 3 || a.NewTwice != 1 {
		t.Fatalf("advice stats after a second 0420: %+v", a)
	}
}

// A delayed answer does not hold up the connection: an echo sent after a
// slow purchase (latency dropped to zero in between) is answered first.
func TestIssuerLatencyDoesNotBlockConnection(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.Behavior.Latency = Duration(time.Second) })
	c := dialIssuer(t, s.Addr())
	c.send(financial("0200", "000001"))
	waitFor(t, func() bool { return s.Stats().Messages["0200"][approvalOutcome] == 1 })
	mustSet(t, s, DefaultBehavior())
	if r := c.roundTrip(network("000002", "301")); r.Get(11) != "000002" {
		t.Fatalf("first answer STAN %s, want the echo", r.Get(11))
	}
	r, err := c.recv()
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, r, "0210", "00")
	if s.Stats().Late != 0 {
		t.Fatal("a latency answer counted as late")
	}
}

// Refusals on the wire: connections over ConnsMax are closed unread, a
// malformed message closes its connection; neither is answered.
func TestIssuerRefusals(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.ConnsMax = 1 })
	c1 := dialIssuer(t, s.Addr())
	wantCode(t, c1.roundTrip(network("000001", "301")), "0810", "00")
	c2 := dialIssuer(t, s.Addr())
	c2.send(network("000002", "301"))
	if _, err := c2.recv(); err == nil {
		t.Fatal("a connection over conns max was answered")
	}
	if st := s.Stats(); st.Refused != 1 || st.Messages["0800"][approvalOutcome] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// c1 still works; then it sends garbage and is closed.
	wantCode(t, c1.roundTrip(network("000003", "301")), "0810", "00")
	junk, _ := c1.framer.AppendFrame(nil, []byte("02XXnot a message"))
	c1.c.Write(junk)
	if _, err := c1.recv(); err == nil {
		t.Fatal("a malformed message was answered")
	}
	if st := s.Stats(); st.Malformed != 1 || st.Messages["0800"][approvalOutcome] != 2 {
		t.Fatalf("stats %+v", st)
	}
	// A length header over the frame limit closes the connection unread.
	c3 := dialIssuer(t, s.Addr())
	c3.c.Write([]byte{0xFF, 0xFF})
	if _, err := c3.recv(); err == nil {
		t.Fatal("an oversized frame was answered")
	}
}

func TestIssuerConfigRefusals(t *testing.T) {
	for name, mut := range map[string]func(*IssuerConfig){
		"listen":          func(c *IssuerConfig) { c.Listen = "nohost" },
		"dialect":         func(c *IssuerConfig) { c.Dialect = "iso93" },
		"header":          func(c *IssuerConfig) { c.Header = "ascii2" },
		"frame":           func(c *IssuerConfig) { c.FrameBytesMax = 1 << 20 },
		"mode":            func(c *IssuerConfig) { c.Behavior.Mode = "flaky" },
		"latency":         func(c *IssuerConfig) { c.Behavior.Latency = Duration(time.Hour) },
		"late delay":      func(c *IssuerConfig) { c.Behavior.LateDelay = 0 },
		"ratio":           func(c *IssuerConfig) { c.Behavior.DeclineRatio = 1.5 },
		"negative ratio":  func(c *IssuerConfig) { c.Behavior.TimeoutRatio = -0.1 },
		"ratio sum":       func(c *IssuerConfig) { c.Behavior.DeclineRatio, c.Behavior.DisconnectRatio = 0.6, 0.6 },
		"decline 00":      func(c *IssuerConfig) { c.DeclineCode = "00" },
		"decline long":    func(c *IssuerConfig) { c.DeclineCode = "051" },
		"advice code":     func(c *IssuerConfig) { c.AdviceRefusedCode = "" },
		"conns":           func(c *IssuerConfig) { c.ConnsMax = 0 },
		"inflight":        func(c *IssuerConfig) { c.InflightMax = issuerInflightMaxLimit + 1 },
		"idle":            func(c *IssuerConfig) { c.IdleTimeout = -1 },
		"write":           func(c *IssuerConfig) { c.WriteTimeout = 0 },
		"tls without key": func(c *IssuerConfig) { c.TLS = &TLSFiles{CertFile: "x.pem"} },
	} {
		cfg := DefaultIssuerConfig()
		mut(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
		if s, err := NewIssuer(cfg, nil); err == nil {
			s.Close()
			t.Errorf("%s: NewIssuer accepted the config", name)
		}
	}
	if err := DefaultIssuerConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerCloseDropsDelayedAnswers(t *testing.T) {
	cfg := DefaultIssuerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Behavior.Mode = ModeLate
	cfg.Behavior.LateDelay = Duration(lateDelayMax)
	s, err := NewIssuer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dialIssuer(t, s.Addr())
	c.send(financial("0200", "000001"))
	waitFor(t, func() bool { return s.Stats().Messages["0200"][approvalOutcome] == 1 })
	// Close returns although an answer waits ten minutes (goleak checks the
	// timer goroutine is gone).
	s.Close()
	if st := s.Stats(); st.Lost != 1 {
		t.Fatalf("lost %d, want the one delayed answer", st.Lost)
	}
	if err := s.SetBehavior(behavior(ModeApprove)); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetBehavior after Close: %v", err)
	}
}

// A connection silent past IdleTimeout is closed by the issuer.
func TestIssuerIdleTimeout(t *testing.T) {
	s := startIssuer(t, func(c *IssuerConfig) { c.IdleTimeout = 100 * time.Millisecond })
	c := dialIssuer(t, s.Addr())
	wantCode(t, c.roundTrip(network("000001", "301")), "0810", "00")
	if _, err := c.recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v, want EOF (closed by the issuer)", err)
	}
	waitFor(t, func() bool { return s.Stats().Connections == 0 })
}

// lockedBuffer is a log sink the issuer's goroutines write while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Even at debug level, where every answer is logged, a card number shows
// masked only.
func TestIssuerLogsMaskPAN(t *testing.T) {
	var logs lockedBuffer
	cfg := DefaultIssuerConfig()
	cfg.Listen = "127.0.0.1:0"
	s, err := NewIssuer(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantCode(t, dialIssuer(t, s.Addr()).roundTrip(financial("0200", "000001")), "0210", "00")
	out := logs.String()
	if strings.Contains(out, "4111111111111111") || !strings.Contains(out, "411111******1111") {
		t.Fatalf("log: %s", out)
	}
}

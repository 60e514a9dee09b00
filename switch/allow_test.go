package switching_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchd/switchd/config"
	switching "github.com/switchd/switchd/switch"
)

// A lane's allowlist closes a connection from any other source before a
// byte is read: the refused client is closed without an answer, the
// refusal is counted (reason not_allowed) and logged once per source per
// minute, and nothing it sent was processed; a listed source is served.
// Loopback has many addresses, so these are real sources, not a faked
// remote address (TestLaneAllowlistAcrossNamespaces uses a veth pair).
func TestLaneAllowlist(t *testing.T) {
	h := newHarness(t, nil)
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Allow = []string{"127.0.0.2/32", "::1"} })
	before := h.ledgerSums()
	for i := 0; i < 3; i++ {
		cl := tl.dial("127.0.0.1")
		cl.write(purchase(100+i, "4111111111111111", 1000)) // may race the close; never answered
		cl.closedByPeer(5 * time.Second)
	}
	if got := tl.rejected("not_allowed"); got != 3 {
		t.Fatalf("rejected{reason=not_allowed} = %v, want 3", got)
	}
	if after := h.ledgerSums(); after != before {
		t.Fatalf("a refused connection changed the ledger:\n%s\n%s", before, after)
	}
	ok := tl.dial("127.0.0.2")
	if !ok.echo(1) {
		t.Fatal("a listed source was not served")
	}
	ok.c.Close()
	tl.mu.Lock()
	logs := tl.logs.String()
	tl.mu.Unlock()
	if n := strings.Count(logs, "source not in the lane's allowlist"); n != 1 {
		t.Errorf("%d log lines for three refusals from one source within a minute, want 1:\n%s", n, logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.Contains(fmt.Sprint(rec["msg"]), "allowlist") && rec["source"] != "127.0.0.1" {
			t.Errorf("refusal line without its source: %s", line)
		}
	}
}

func TestLaneAllowConfig(t *testing.T) {
	ok := switching.DefaultLane()
	ok.Name, ok.Listen = "l", "127.0.0.1:0"
	base := switching.DefaultConfig()
	base.CardKey = "00112233445566778899aabbccddeeff"
	for name, mutate := range map[string]func(*switching.LaneConfig){
		"no allowlist":  func(l *switching.LaneConfig) { l.Allow = nil },
		"host bits":     func(l *switching.LaneConfig) { l.Allow = []string{"10.0.0.1/8"} },
		"not a network": func(l *switching.LaneConfig) { l.Allow = []string{"bank-a"} },
		"public":        func(l *switching.LaneConfig) { l.Kind = switching.LanePublic },
		"unknown kind":  func(l *switching.LaneConfig) { l.Kind = "internet" },
	} {
		c := base
		l := ok
		mutate(&l)
		c.Lanes = []switching.LaneConfig{l}
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := base
	l := ok
	l.Kind, l.Allow = switching.LaneIPSec, []string{"10.20.0.0/16", "2001:db8::/32", "192.0.2.7"}
	c.Lanes = []switching.LaneConfig{l}
	if err := c.Validate(); err != nil {
		t.Errorf("ipsec lane with v4, v6 and host entries: %v", err)
	}
}

// TestLaneAllowlistAcrossNamespaces: a partner in its own network
// namespace, reaching the lane over a veth pair (netnsPair) from 10.231.x.2, is
// served when its address is listed and refused before a byte when not.
// Needs root and iproute2 (CI has both); skips otherwise.
func TestLaneAllowlistAcrossNamespaces(t *testing.T) {
	ns, hostIP, peerIPs := netnsPair(t, "allow", 231)
	peerIP := peerIPs[0]

	h := newHarness(t, nil)
	served := newTestLane(h, func(lc *switching.LaneConfig) {
		lc.Listen, lc.Kind, lc.Allow = hostIP+":0", switching.LaneIPSec, []string{peerIP + "/32"}
	})
	refused := newTestLane(h, func(lc *switching.LaneConfig) {
		lc.Name, lc.Listen, lc.Kind, lc.Allow = "other", hostIP+":0", switching.LaneIPSec, []string{"10.231.255.0/24"}
	})
	dialFromNS := func(addr string) net.Conn {
		t.Helper()
		c, err := dialInNetns(ns, addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, ns, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	cl := clientOf(h, dialFromNS(served.Addr().String()))
	if !cl.echo(1) {
		t.Fatal("the listed partner in its namespace was not served")
	}
	cl.c.Close()
	rc := clientOf(h, dialFromNS(refused.Addr().String()))
	rc.closedByPeer(5 * time.Second)
	if got := refused.rejected("not_allowed"); got != 1 {
		t.Fatalf("rejected{not_allowed} = %v, want 1", got)
	}
	refused.mu.Lock()
	logs := refused.logs.String()
	refused.mu.Unlock()
	if !strings.Contains(logs, `"source":"`+peerIP+`"`) {
		t.Errorf("refusal not logged with the namespace's address %s:\n%s", peerIP, logs)
	}
}

// dialInNetns dials addr from inside network namespace ns.
func dialInNetns(ns, addr string) (net.Conn, error) {
	return inNetns(ns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
}

// inNetns runs dial inside network namespace ns: the socket is made on a
// thread switched into ns, and stays in it after the thread switches
// back.
func inNetns(ns string, dial func() (net.Conn, error)) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		c, derr := dial()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread is stuck in ns: let it die with the goroutine
			// (no UnlockOSThread) rather than serve other goroutines.
			done <- result{c, derr}
			return
		}
		runtime.UnlockOSThread()
		done <- result{c, derr}
	}()
	r := <-done
	return r.c, r.err
}

func clientOf(h *harness, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: h.t, c: c, br: bufio.NewReader(c), h: h}
}

// A partner's own allowlist, inside the lane's: from a listed address its
// purchase is approved; from another address the lane lets in, the same
// partner's purchase is declined 63 and posts nothing.
func TestPartnerAllowlistOnTheLane(t *testing.T) {
	h := newHarness(t, func(f *config.File) {
		for i := range f.Switch.Partners {
			if f.Switch.Partners[i].ID == "demo-acquirer" {
				f.Switch.Partners[i].Allow = []string{"127.0.0.2/32"}
			}
		}
	})
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name = "demo" }) // the partner's lane, all of loopback
	before := h.ledgerSums()
	cl := tl.dial("127.0.0.1")
	cl.write(purchase(201, "4111111111111111", 1000))
	m, err := cl.read()
	if err != nil || m.Get(39) != "63" {
		t.Fatalf("purchase from an address outside the partner's list: %v %v, want 63", err, m)
	}
	if after := h.ledgerSums(); after != before {
		t.Fatalf("a refused purchase changed the ledger:\n%s\n%s", before, after)
	}
	ok := tl.dial("127.0.0.2")
	ok.write(purchase(202, "4111111111111111", 1000))
	if m, err := ok.read(); err != nil || m.Get(39) != "00" {
		t.Fatalf("purchase from the partner's listed address: %v %v", err, m)
	}
}

// A lane that requires sign-on refuses financial messages (91) on a
// connection until it signs on (0800/001), and again after it signs off
// (0800/002); echoes are answered either way and sign nothing on; each
// connection has its own session, counted while signed on.
func TestRequireSignOn(t *testing.T) {
	h := newHarness(t, nil)
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.Name, lc.RequireSignOn = "demo", true })
	network := func(cl *client, stan int, code string) string {
		cl.write(fmt.Sprintf("0800 7=1121120000 11=%06d 70=%s", stan, code))
		m, err := cl.read()
		if err != nil || m.MTI != "0810" {
			t.Fatalf("0800/%s: %v %v", code, err, m)
		}
		return m.Get(39)
	}
	buy := func(cl *client, stan int) string {
		cl.write(purchase(stan, "4111111111111111", 100))
		m, err := cl.read()
		if err != nil {
			t.Fatal(err)
		}
		return m.Get(39)
	}
	before := h.ledgerSums()
	cl := tl.dial("127.0.0.1")
	if rc := buy(cl, 1); rc != "91" {
		t.Fatalf("purchase before sign-on: %s, want 91", rc)
	}
	if rc := network(cl, 2, "301"); rc != "00" {
		t.Fatalf("echo before sign-on: %s", rc)
	}
	if rc := buy(cl, 3); rc != "91" {
		t.Fatalf("purchase after an echo only: %s, want 91", rc)
	}
	if after := h.ledgerSums(); after != before {
		t.Fatalf("refused purchases changed the ledger")
	}
	if rc := network(cl, 4, "001"); rc != "00" {
		t.Fatalf("sign-on: %s", rc)
	}
	if got := tl.metric("switchd_lane_sessions_signed_on"); got != 1 {
		t.Errorf("signed-on sessions = %v, want 1", got)
	}
	if rc := buy(cl, 5); rc != "00" {
		t.Fatalf("purchase after sign-on: %s", rc)
	}
	other := tl.dial("127.0.0.1")
	if rc := buy(other, 6); rc != "91" {
		t.Fatalf("another connection rides on the first one's sign-on: %s", rc)
	}
	if rc := network(cl, 7, "002"); rc != "00" {
		t.Fatalf("sign-off: %s", rc)
	}
	if rc := buy(cl, 8); rc != "91" {
		t.Fatalf("purchase after sign-off: %s, want 91", rc)
	}
	if got := tl.metric("switchd_lane_sessions_signed_on"); got != 0 {
		t.Errorf("signed-on sessions after sign-off = %v, want 0", got)
	}
	network(cl, 9, "001")
	cl.c.Close()
	other.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tl.metric("switchd_lane_sessions_signed_on") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's session still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric is the sum over every series of a counter or gauge family of the
// lane (one series for the gauges the tests read: one lane per registry).
func (tl *testLane) metric(name string) float64 {
	mfs, err := tl.reg.Gather()
	if err != nil {
		tl.h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

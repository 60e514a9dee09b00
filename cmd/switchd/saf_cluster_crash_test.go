package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/internal/simtest"
	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// safAdvices is how many reversal advices the SAF test queues (issue 13's
// "Done means": 1,000).
const safAdvices = 1000

// Issue 13: three switchd processes forward off-us purchases to a
// simulated issuer that stops answering, so every purchase is declined 91
// and its reversal advice (0420) queued in the replicated SAF queue. The
// leader is killed -9 while the advices are queued and unanswered; the
// issuer recovers and the new leader drains the queue; that leader is
// killed -9 in the middle of the drain. Every advice reaches the issuer
// (the simulator counts them by original), each is presented as new
// (0420) exactly once and any repeat as a retransmission (0421), and
// every replica ends with every entry delivered and the same state hash.
func TestKill9LeaderSAFExactlyOnce(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	issuer := simtest.Issuer(t)
	// One KEK file for the three nodes: a forward's card number is sealed
	// by the node that took it and opened by whichever leader sends its
	// advice.
	kek := filepath.Join(t.TempDir(), "mac.kek")
	extra := fmt.Sprintf(`mac: {kek_file: %q, generate: true}
forward:
  sweep_interval: 100ms
  saf: {retry_min: 50ms, retry_max: 200ms, poll: 20ms}
destinations:
  - id: demo-issuer
    kind: iso8583
    settlement_account: demo-issuer-settlement
    bins: ["400000"]
    iso8583: {addrs: [%q], dialect: iso87ascii, header: binary2, pool_size: 4, timeout_ms: 250, sign_on: true, echo_interval_ms: 0, timeout_code: "91", breaker_failures: 1000, breaker_cooldown_ms: 100}
  - id: demo-biller # the demo's WATER route names it
    kind: http
    settlement_account: demo-biller-settlement
    http: {url: "http://127.0.0.1:9/payments", timeout_ms: 3000}
`, kek, issuer.Addr())
	nodes := startClusterNodes(t, bin, clusterSpec{extraYAML: extra})
	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	ic := &isoClient{t: t, c: c, fr: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}, pan: "4000000000000002"}

	// Every node's connection to the issuer is up: an approval through
	// each node's lane.
	stan := 0
	for _, n := range nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			stan++
			rc, _, err := ic.send(n.lane, "0200", stan)
			if err == nil && rc == "00" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no off-us approval through %s: rc %q %v", n.id, rc, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The issuer stops answering: each purchase times out (91) and queues
	// its reversal.
	b := issuer.Behavior()
	b.Mode = sim.ModeTimeout
	if err := issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	const senders = 40
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < safAdvices; i += senders {
				rc, _, err := ic.send(nodes[i%3].lane, "0200", 10_000+i)
				mu.Lock()
				if err != nil {
					codes["error: "+err.Error()]++
				} else {
					codes[rc]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if codes["91"] != safAdvices {
		t.Fatalf("answers while the issuer does not answer: %v, want %d × 91", codes, safAdvices)
	}
	leader := leaderOf(t, nodes, -1)
	if q := safStates(t, nodes[leader]); q[store.SAFQueued] != safAdvices {
		t.Fatalf("SAF entries: %v, want %d queued", q, safAdvices)
	}

	// kill -9 of the leader while all of them are queued (its sender has
	// the head advice out, unanswered).
	nodes[leader].kill9()
	killed := leader
	leader = leaderOf(t, nodes, killed)
	nodes[killed].args = nil // restarts with its raft state
	nodes[killed].start(t, bin)
	waitReadyz(t, nodes[killed])

	// The issuer recovers, slowly enough (2 ms an answer, head-of-line)
	// that the drain takes seconds; the leader is killed -9 once part of
	// the queue has reached the issuer.
	b.Mode, b.Latency = sim.ModeApprove, sim.Duration(2*time.Millisecond)
	if err := issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for issuer.Stats().Advices.Distinct < safAdvices/4 {
		if time.Now().After(deadline) {
			t.Fatalf("the new leader drained nothing in 60s: %+v", issuer.Stats().Advices)
		}
		time.Sleep(5 * time.Millisecond)
	}
	atKill := issuer.Stats().Advices
	nodes[leader].kill9()
	t.Logf("leader %s killed with %d of %d advices at the issuer", nodes[leader].id, atKill.Distinct, safAdvices)
	if atKill.Distinct >= safAdvices {
		t.Fatalf("the queue drained before the kill (%+v): the test no longer kills mid-drain; slow the issuer", atKill)
	}
	killed = leader
	leader = leaderOf(t, nodes, killed)
	nodes[killed].args = nil
	nodes[killed].start(t, bin)
	waitReadyz(t, nodes[killed])

	deadline = time.Now().Add(90 * time.Second)
	for {
		q := safStates(t, nodes[leaderOf(t, nodes, -1)])
		if q[store.SAFDelivered] == safAdvices {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SAF entries 90s after the second kill: %v; issuer %+v", q, issuer.Stats().Advices)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a := issuer.Stats().Advices
	t.Logf("issuer: %d advices received, %d distinct, %d retransmissions (0421), %d sent as new twice", a.Received, a.Distinct, a.Retransmissions, a.NewTwice)
	if a.Distinct != safAdvices || a.Dropped != 0 {
		t.Fatalf("issuer saw %d distinct advices (%d dropped), want %d", a.Distinct, a.Dropped, safAdvices)
	}
	// No advice went as new (0420) twice: every repeat was a 0421, which
	// the host takes as the repeat it is. (An advice a dead leader
	// claimed but never sent goes as 0421 only: its successor cannot know.)
	if a.NewTwice != 0 {
		t.Fatalf("%d advices sent as 0420 more than once: %+v", a.NewTwice, a)
	}
	for _, n := range nodes {
		waitConverged(t, n)
		if q := safStates(t, n); q[store.SAFDelivered] != safAdvices {
			t.Fatalf("%s: SAF entries %v", n.id, q)
		}
	}
}

// leaderOf waits for a leader other than node not (-1: any) and returns
// its index.
func leaderOf(t *testing.T, nodes []*clusterNode, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range nodes {
			if i == not || n.exited() {
				continue
			}
			m, err := getMembers(n.ops)
			if err != nil || m.Leader == "" {
				continue
			}
			for j, x := range nodes {
				if x.id == m.Leader && j != not {
					return j
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no leader in 30s")
	return -1
}

// safStates counts node n's SAF entries by state (GET /v1/saf, every page).
func safStates(t *testing.T, n *clusterNode) map[string]int {
	t.Helper()
	out := map[string]int{}
	after := ""
	for {
		resp, err := switchdtest.Get("http://" + n.ops + "/v1/saf?limit=1000&after=" + after)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Entries []store.SAFEntry `json:"entries"`
			Next    string           `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/saf on %s: %d %v", n.id, resp.StatusCode, err)
		}
		for _, e := range page.Entries {
			out[e.State]++
		}
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

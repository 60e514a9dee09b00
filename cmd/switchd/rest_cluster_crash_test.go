package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/oauth"
)

// restNode is one cluster node's partner API as a REST client sees it.
type restNode struct {
	base string
	hc   *http.Client
	mu   sync.Mutex
	tok  string
}

// restCluster is a partner calling the partner APIs of a three-node
// cluster the way a well-behaved client does: a request that fails
// (connection refused, timeout, 503) is sent again, with the same
// Idempotency-Key, to the next node.
type restCluster struct {
	t      *testing.T
	nodes  []*clusterNode
	api    []*restNode
	secret string
	// movedOn counts requests answered by another node than the one first
	// asked (the kill -9 made the first one fail).
	movedOn atomic.Int64
}

func newRESTCluster(t *testing.T, nodes []*clusterNode, apiAddrs []string, secret string) *restCluster {
	rc := &restCluster{t: t, nodes: nodes, secret: secret}
	for i, n := range nodes {
		// Each node makes its own development CA for its API certificate.
		pem, err := os.ReadFile(filepath.Join(n.data, "api", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 8}
		t.Cleanup(tr.CloseIdleConnections)
		rc.api = append(rc.api, &restNode{base: "https://" + apiAddrs[i], hc: &http.Client{Timeout: 3 * time.Second, Transport: tr}})
	}
	return rc
}

// token is a bearer token from node i's own token endpoint: each node
// signs with its own key unless signing_keys are shared.
func (rc *restCluster) token(i int, fresh bool) (string, error) {
	a := rc.api[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok != "" && !fresh {
		return a.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tok, err := oauth.FetchToken(ctx, a.hc, a.base+"/oauth/token", oauth.Credentials{ClientID: "demo-acquirer", ClientSecret: rc.secret}, "")
	if err != nil {
		return "", err
	}
	a.tok = tok
	return tok, nil
}

var errRetryElsewhere = errors.New("send again to another node")

// payOnce sends payment n to node i.
func (rc *restCluster) payOnce(i, n int) (id string, replayed bool, err error) {
	tok, err := rc.token(i, false)
	if err != nil {
		return "", false, fmt.Errorf("%w: token: %v", errRetryElsewhere, err)
	}
	body := fmt.Sprintf(`{"amount":"0.01","currency":"USD","debtor_account":"card-4111","reference":"CL-%d"}`, n)
	req, _ := http.NewRequest("POST", rc.api[i].base+"/v1/payments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("cluster-crash-%d", n))
	resp, err := rc.api[i].hc.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", errRetryElsewhere, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusCreated:
		var p struct{ ID string }
		if err := json.Unmarshal(b, &p); err != nil || p.ID == "" {
			return "", false, fmt.Errorf("payment %d on n%d: 201 without an id: %s", n, i+1, b)
		}
		return p.ID, resp.Header.Get("Idempotent-Replayed") == "true", nil
	case resp.StatusCode == http.StatusUnauthorized:
		rc.token(i, true) // a restarted node: ask again
		return "", false, fmt.Errorf("%w: 401", errRetryElsewhere)
	case resp.StatusCode == http.StatusServiceUnavailable:
		return "", false, fmt.Errorf("%w: 503 %s", errRetryElsewhere, b)
	}
	return "", false, fmt.Errorf("payment %d on n%d: %d %s", n, i+1, resp.StatusCode, b)
}

// pay sends payment n starting at node first until one node answers it
// or the deadline passes; refused is set when an answer was final and not
// 201 (a defect: every payment here is within limits).
func (rc *restCluster) pay(first, n int, deadline time.Time) (id string, replayed bool, err error) {
	for try := 0; ; try++ {
		i := (first + try) % len(rc.api)
		id, replayed, err = rc.payOnce(i, n)
		if err == nil && try > 0 {
			rc.movedOn.Add(1)
		}
		if err == nil || !errors.Is(err, errRetryElsewhere) || time.Now().After(deadline) {
			return id, replayed, err
		}
		if try%len(rc.api) == len(rc.api)-1 {
			time.Sleep(50 * time.Millisecond) // every node refused: an election is on
		}
	}
}

// A kill -9 of the leader during a REST load on all three nodes' partner
// APIs loses and doubles nothing: clients whose node failed send the same
// request, with the same Idempotency-Key, to another node; afterwards every
// request sent is sent once more, every one acknowledged gets the same
// payment back as a replay, no two requests are one payment, the card's
// balance on every replica is what the distinct payments say, and the
// replicas' state hashes are equal.
func TestKill9LeaderRESTPayments(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	apiAddrs := []string{switchdtest.FreePort(t), switchdtest.FreePort(t), switchdtest.FreePort(t)}
	nodes := startClusterNodes(t, bin, clusterSpec{extraOf: func(i int) string {
		return "api:\n  listen: " + apiAddrs[i-1] + "\n  lane: api\n  partners: [demo-acquirer]\n"
	}})
	secret := switchdtest.PartnerClient(t, "http://"+nodes[0].ops, "demo-acquirer", []string{"payments:write", "payments:read"}, "cluster crash test")
	rc := newRESTCluster(t, nodes, apiAddrs, secret)
	m, err := getMembers(nodes[0].ops)
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	for i, n := range nodes {
		if n.id == m.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("no leader among %+v", m)
	}
	// The client was made on the leader; a follower's token endpoint knows
	// it once it has applied the change.
	for i := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := rc.token(i, true); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("token from n%d: %v", i+1, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	const clients = 9
	var mu sync.Mutex
	sent, acked := map[int]bool{}, map[int]string{}
	var failures []error
	var wg sync.WaitGroup
	stop := time.Now().Add(crashLoad())
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := c*100000 + 1; time.Now().Before(stop); n++ {
				mu.Lock()
				sent[n] = true
				mu.Unlock()
				// Up to 20 s to get an answer: the election after the kill
				// takes well under that.
				id, _, err := rc.pay(c%len(nodes), n, time.Now().Add(20*time.Second))
				mu.Lock()
				if err == nil {
					acked[n] = id
				} else if !errors.Is(err, errRetryElsewhere) {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(crashLoad() / 2)
	nodes[leader].kill9()
	killedAt := time.Now()
	wg.Wait()
	mu.Lock()
	for _, err := range failures {
		t.Error(err)
	}
	mu.Unlock()
	m, _ = getMembers(nodes[(leader+1)%3].ops)
	t.Logf("kill -9 of the leader %s under REST load: %d sent, %d acknowledged (%d after their first node failed), new leader %s; load ran %s past the kill",
		nodes[leader].id, len(sent), len(acked), rc.movedOn.Load(), m.Leader, time.Since(killedAt).Round(time.Millisecond))
	if rc.movedOn.Load() == 0 {
		t.Error("no request was sent again to another node: the kill did not happen under load")
	}
	if len(acked) == 0 {
		t.Fatal("no payment acknowledged")
	}

	nodes[leader].args = nil // back with its raft state
	nodes[leader].start(t, bin)
	waitReadyz(t, nodes[leader])
	ids := map[string]int{}
	for n := range sent {
		id, replayed, err := rc.pay(n%3, n, time.Now().Add(20*time.Second))
		if err != nil {
			t.Fatalf("request %d sent again: %v", n, err)
		}
		if want, ok := acked[n]; ok && (id != want || !replayed) {
			t.Errorf("request %d: acknowledged as %s, now %s (replayed %v)", n, want, id, replayed)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("requests %d and %d are one payment %s", n, other, id)
		}
		ids[id] = n
	}
	waitConverged(t, nodes[0])
	for _, n := range nodes {
		req, _ := http.NewRequest("GET", "http://"+n.ops+"/v1/accounts/card-4111", nil)
		resp, err := switchdtest.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var acct struct{ Posted int64 }
		json.NewDecoder(resp.Body).Decode(&acct)
		resp.Body.Close()
		if want := int64(100000 - len(ids)); acct.Posted != want {
			t.Errorf("%s: card-4111 posted %d, want %d (opening 100000 − %d payments of 1)", n.id, acct.Posted, want, len(ids))
		}
	}
	t.Logf("after the restart: %d requests, %d payments, each once; balances and state hashes equal on 3 replicas", len(sent), len(ids))
}

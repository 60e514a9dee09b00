package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ops-test-keys")
	if err != nil {
		panic(err)
	}
	key := filepath.Join(dir, "signing.pem")
	if _, err := oauth.GenerateKeyFile(key); err != nil {
		panic(err)
	}
	if testKeys, err = oauth.LoadKeys([]string{key}); err != nil {
		panic(err)
	}
	os.RemoveAll(dir)
	goleak.VerifyTestMain(m)
}

// testKeys sign every test node's tokens, so a token is valid on every
// node of a test (each has the test clients).
var testKeys *oauth.KeySet

// testClients are made on every seeded test node, with every scope;
// "reader" has ops:read only and "gone" is disabled.
var testClients = []string{testActor, "ops1", "ops2"}

// fakeThumbprint lets a client exist without a secret to hash: test
// tokens are issued directly, not at the token endpoint.
const fakeThumbprint = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// minter issues test tokens with cfg (another audience, a clock in the
// past) from testKeys.
func minter(t *testing.T, cfg oauth.Config, now time.Time) *oauth.Server {
	t.Helper()
	m, err := oauth.NewServer(cfg, testKeys, func() *store.Directory { return store.NewDirectory(nil, nil) }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !now.IsZero() {
		m.SetClock(func() time.Time { return now })
	}
	return m
}

// tokenFor is a valid token of client with scopes (all when none).
func tokenFor(t *testing.T, client string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = oauth.Scopes
	}
	iss, err := minter(t, oauth.DefaultConfig(), time.Time{}).Issue(client, scopes, "")
	if err != nil {
		t.Fatal(err)
	}
	return iss.Token
}

// as is the header of a request by client.
func as(t *testing.T, client string, scopes ...string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tokenFor(t, client, scopes...)}}
}

// makeTestClients proposes the test clients on a new node.
func makeTestClients(t *testing.T, node *cluster.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := func(action string, c store.Client) {
		res, err := node.Propose(ctx, store.Command{Op: store.OpPutClient, Key: "test-client|" + action + "|" + c.ID, Fingerprint: "x", Time: time.Now().UnixNano(),
			Admin: &store.Admin{Actor: "test", ClientChange: &store.ClientChange{Action: action, Client: c}}})
		if err != nil || res.Status != store.StatusOK {
			t.Fatalf("client %s %s: %v %v %s", action, c.ID, err, res.Status, res.Detail)
		}
	}
	certs := []store.ClientCert{{Thumbprint: fakeThumbprint}}
	for _, id := range testClients {
		put(store.ClientCreate, store.Client{ID: id, Scopes: oauth.Scopes, Certs: certs})
	}
	put(store.ClientCreate, store.Client{ID: "reader", Scopes: []string{oauth.ScopeOpsRead}, Certs: certs})
	put(store.ClientCreate, store.Client{ID: "gone", Scopes: oauth.Scopes, Certs: certs})
	put(store.ClientDisable, store.Client{ID: "gone"})
}

// startNode runs a real node (pebble, raft, pipeline) with the demo
// accounts and an ops server on a free port.
func startNode(t *testing.T) string {
	t.Helper()
	tn := newTestNode(t)
	return tn.start(t)
}

// testNode is a real node (pebble, raft, pipeline with the demo accounts)
// and an ops server on a free port that is not started yet, so a test can
// add routes first.
type testNode struct {
	cfg  config.File
	st   *store.Store
	node *cluster.Node
	srv  *ops.Server
}

func newTestNode(t *testing.T) *testNode { return newTestNodeVia(t, nil) }

// newTestNodeVia is newTestNode; with via set, the node is a fresh member
// that via's node adds (no seeding: it replicates via's accounts).
func newTestNodeVia(t *testing.T, via *testNode) *testNode {
	t.Helper()
	cfg := testConfig(t, "127.0.0.1:0")
	if via != nil {
		cfg.Cluster.NodeID, cfg.Cluster.Bootstrap = via.cfg.Cluster.NodeID+"-f", false
	}
	cfg.Finish()
	return openTestNode(t, cfg, via, via == nil)
}

// testConfig is the demo config in a temporary data dir, raft on
// raftAddr, with fast elections.
func testConfig(t *testing.T, raftAddr string) config.File {
	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = raftAddr
	// Fast, but not so fast that a loaded machine (CI, -race, two cores)
	// flips leadership mid-test: at 50 ms TestClusterMembershipAPI once
	// saw the joined node take over.
	cfg.Cluster.HeartbeatTimeout = testRaftTimeout
	cfg.Cluster.ElectionTimeout = testRaftTimeout
	cfg.Cluster.LeaderLeaseTimeout = testRaftTimeout / 2
	cfg.Ops.Listen = "127.0.0.1:0"
	return cfg
}

// openTestNode opens the node of cfg (a new one, or one closed before in
// the same data dir) and seeds the demo accounts when seed is set.
func openTestNode(t *testing.T, cfg config.File, via *testNode, seed bool) *testNode {
	t.Helper()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	node, err := cluster.New(cfg.Cluster, st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if via != nil {
		if _, err := via.node.Join(ctx, cfg.Cluster.NodeID, node.Status().RaftAddr); err != nil {
			t.Fatal(err)
		}
	}
	if err := node.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	core, err := payment.NewCore(cfg.Switch.Config, node, st, st.Directory, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if seed {
		if err := core.Seed(ctx, cfg.Seeds(), st, time.Now()); err != nil {
			t.Fatal(err)
		}
		if len(st.Directory().Clients()) == 0 {
			makeTestClients(t, node)
		}
	}
	auth, err := oauth.NewServer(cfg.Ops.Auth, testKeys, st.Directory, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ops.New(cfg.Ops, st, core, node, auth, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{cfg: cfg, st: st, node: node, srv: srv}
}

// close stops the server, the node and the store (a test may open the
// data dir again).
func (tn *testNode) close() {
	tn.srv.Close(context.Background())
	tn.node.Close()
	tn.st.Close()
}

// start serves the ops API and returns its base URL.
func (tn *testNode) start(t *testing.T) string {
	t.Helper()
	if err := tn.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.srv.Close(context.Background()) })
	return "http://" + tn.srv.Addr().String()
}

// testRaftTimeout is the test nodes' heartbeat and election timeout.
const testRaftTimeout = 250 * time.Millisecond

// testActor is the client do's token speaks for.
const testActor = "ops-test"

// do sends one request as testActor, with every scope.
func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	return doWith(t, as(t, testActor), method, url, body)
}

// doWith sends one request with exactly the headers hdr.
func doWith(t *testing.T, hdr http.Header, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestOpsAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body, _ := do(t, "GET", base+p, ""); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	if code, body, _ := do(t, "GET", base+"/metrics", ""); code != 200 || !strings.Contains(body, "switchd_raft_commit_seconds") {
		t.Fatalf("metrics: %d", code)
	}

	code, body, _ := do(t, "GET", base+"/v1/accounts/card-4111", "")
	var acct map[string]any
	if err := json.Unmarshal([]byte(body), &acct); err != nil || code != 200 {
		t.Fatalf("account: %d %s", code, body)
	}
	if acct["available"] != 100000.0 || acct["masked_pan"] != "411111******1111" {
		t.Fatalf("account view: %s", body)
	}
	if strings.Contains(body, "4111111111111111") || strings.Contains(body, "card_hash") {
		t.Fatalf("account view leaks the PAN or its hash: %s", body)
	}

	code, body, hdr := do(t, "GET", base+"/v1/accounts/nobody", "")
	if code != 404 || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "unknown-account") && !strings.Contains(body, "not-found") {
		t.Fatalf("unknown account: %d %s %s", code, hdr.Get("Content-Type"), body)
	}

	code, body, _ = do(t, "GET", base+"/v1/accounts?limit=2", "")
	var list struct{ Accounts []map[string]any }
	if json.Unmarshal([]byte(body), &list); code != 200 || len(list.Accounts) != 2 {
		t.Fatalf("page of 2: %d %s", code, body)
	}
	for _, q := range []string{"?limit=0", "?limit=100000", "?limit=x"} {
		if code, _, _ := do(t, "GET", base+"/v1/accounts"+q, ""); code != 400 {
			t.Errorf("accounts%s: %d, want 400", q, code)
		}
	}

	// Create: 201, the same again: 200, other content under the same id: 409.
	newAcct := `{"id":"load-1","kind":"cardholder","currency":"USD","pan":"4242424242424242","opening":"25.00","funded_by":"bank-funding-usd"}`
	code, body, _ = do(t, "POST", base+"/v1/accounts", newAcct)
	if code != 201 || strings.Contains(body, "4242424242424242") || !strings.Contains(body, `"available":2500`) {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body, _ = do(t, "POST", base+"/v1/accounts", newAcct); code != 200 {
		t.Fatalf("create again: %d %s", code, body)
	}
	if code, body, _ = do(t, "POST", base+"/v1/accounts", strings.Replace(newAcct, "25.00", "26.00", 1)); code != 409 {
		t.Fatalf("create with other content: %d %s", code, body)
	}
	for name, b := range map[string]string{
		"seeded id":     `{"id":"card-4111","kind":"cardholder","currency":"USD"}`,
		"bad id":        `{"id":"a b","kind":"cardholder","currency":"USD"}`,
		"unknown field": `{"id":"x","kind":"cardholder","currency":"USD","color":"red"}`,
		"bad pan":       `{"id":"x2","kind":"cardholder","currency":"USD","pan":"4111111111111112"}`,
		"bad currency":  `{"id":"x3","kind":"cardholder","currency":"XXQ"}`,
		"bad decimals":  `{"id":"x4","kind":"cardholder","currency":"USD","opening":"1.5","funded_by":"bank-funding-usd"}`,
		"not json":      `{"id":`,
		"bad kind":      `{"id":"x5","kind":"wizard","currency":"USD"}`,
	} {
		code, body, _ := do(t, "POST", base+"/v1/accounts", b)
		if code < 400 || code >= 500 {
			t.Errorf("%s: %d %s, want a 4xx", name, code, body)
		}
		if strings.Contains(body, "4111111111111112") {
			t.Errorf("%s: error echoes the PAN: %s", name, body)
		}
	}

	code, body, _ = do(t, "GET", base+"/v1/transfers?account=load-1", "")
	var tl struct{ Transfers []store.Transfer }
	if json.Unmarshal([]byte(body), &tl); code != 200 || len(tl.Transfers) != 1 || tl.Transfers[0].Amount != 2500 {
		t.Fatalf("transfers: %d %s", code, body)
	}
	for _, q := range []string{"?day=21-11-2026", "?status=lost", "?limit=-1"} {
		if code, _, _ := do(t, "GET", base+"/v1/transfers"+q, ""); code != 400 {
			t.Errorf("transfers%s: %d, want 400", q, code)
		}
	}

	code, body, _ = do(t, "GET", base+"/v1/cluster/status", "")
	if code != 200 || !strings.Contains(body, `"state":"Leader"`) || !strings.Contains(body, `"state_hash"`) {
		t.Fatalf("status: %d %s", code, body)
	}
}

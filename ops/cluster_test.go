package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/internal/switchdtest"
	"github.com/switchd/switchd/ops"
	"github.com/switchd/switchd/store"
)

// A second node joins through the ops API (twice: the second time is a
// no-op), shows up in /v1/cluster/members with its status, and is removed.
func TestClusterMembershipAPI(t *testing.T) {
	base := startNode(t)
	defer http.DefaultClient.CloseIdleConnections()

	sc := store.DefaultConfig()
	sc.Dir = t.TempDir() + "/ledger"
	st, err := store.Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.RaftAddr, cc.Dir, cc.Bootstrap = "n2", "127.0.0.1:0", t.TempDir()+"/raft", false
	cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout = testRaftTimeout, testRaftTimeout, testRaftTimeout/2
	n2, err := cluster.New(cc, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	addr := n2.Status().RaftAddr

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opsAddr := base[len("http://"):]
	// The joining node asks with a client of its own (a secret, through
	// the token endpoint), made through the clients API.
	code, body, _ := do(t, "POST", base+"/v1/clients", `{"id":"joiner","scopes":["cluster:admin"],"reason":"n2 joins"}`)
	var made struct {
		ClientSecret string `json:"client_secret"`
	}
	if code != 201 || json.Unmarshal([]byte(body), &made) != nil || made.ClientSecret == "" {
		t.Fatalf("client: %d %s", code, body)
	}
	creds := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(creds, []byte(`{"client_id":"joiner","client_secret":"`+made.ClientSecret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := ops.RequestJoin(ctx, opsAddr, "n2", addr, creds); err != nil {
			t.Fatalf("join #%d: %v", i+1, err)
		}
	}
	if err := n2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	members := func() cluster.ClusterStatus {
		code, body, _ := do(t, "GET", base+"/v1/cluster/members", "")
		var cs cluster.ClusterStatus
		if code != 200 || json.Unmarshal([]byte(body), &cs) != nil {
			t.Fatalf("members: %d %s", code, body)
		}
		return cs
	}
	cs := members()
	if len(cs.Members) != 2 || cs.Leader != "n1" {
		t.Fatalf("members after join: %+v", cs)
	}
	for _, m := range cs.Members {
		if m.Status == nil || m.Status.StateHash == "" {
			t.Fatalf("member %s without status: %+v", m.ID, m)
		}
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/v1/cluster/join", `{"id":"n3"}`, 400},
		{"/v1/cluster/join", `{"id":"n3","raft_addr":"x:1","extra":1}`, 400},
		{"/v1/cluster/remove", `{}`, 400},
		{"/v1/cluster/transfer-leadership", `{"id":"nobody"}`, 409},
		{"/v1/cluster/remove", `{"id":"n2"}`, 200},
		{"/v1/cluster/remove", `{"id":"n2"}`, 200}, // idempotent
	} {
		if code, body, _ := do(t, "POST", base+c.path, c.body); code != c.want {
			t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, code, body, c.want)
		}
	}
	if cs := members(); len(cs.Members) != 1 {
		t.Fatalf("members after remove: %+v", cs)
	}
	// A snapshot on request, at the applied index; again with nothing new
	// applied: the same one.
	for i := 0; i < 2; i++ {
		code, body, _ := do(t, "POST", base+"/v1/cluster/snapshot", "")
		var got struct{ Index uint64 }
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Index == 0 {
			t.Fatalf("snapshot #%d: %d %s", i+1, code, body)
		}
		if st := members().Members[0].Status; st == nil || got.Index != st.AppliedIndex {
			t.Errorf("snapshot #%d at %d, node applied %+v", i+1, got.Index, st)
		}
	}
}

func problemType(t *testing.T, body string) string {
	t.Helper()
	var p struct{ Type string }
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem document: %s", body)
	}
	return strings.TrimPrefix(p.Type, "https://switchd.dev/problems/")
}

// Issue 9 item 4: one unauthenticated join with a made-up id and address
// used to add an unreachable voter to a single-node cluster (quorum lost:
// writes 503/96, /readyz 503, remove 503). Now it is refused at once with
// a problem naming the reason, and the node keeps serving. Transfer of
// leadership on a single node answers a clear problem too.
func TestClusterBogusJoinRefused(t *testing.T) {
	tn := newTestNode(t)
	base := tn.start(t)
	defer http.DefaultClient.CloseIdleConnections()

	for _, c := range []struct {
		name, body string
		want       int
		problem    string
	}{
		{"nothing listens", fmt.Sprintf(`{"id":"bogus","raft_addr":%q}`, switchdtest.FreePort(t)), 422, "join-unreachable"},
		// Something listens, but it is not a switchd raft port (the ops API).
		{"not a node", fmt.Sprintf(`{"id":"bogus","raft_addr":%q}`, base[len("http://"):]), 422, "join-unreachable"},
		// A real node's address under another id.
		{"wrong id", fmt.Sprintf(`{"id":"bogus","raft_addr":%q}`, tn.node.Status().RaftAddr), 409, "membership"},
		{"bad address", `{"id":"bogus","raft_addr":"no-port"}`, 400, "bad-request"},
	} {
		code, body, _ := do(t, "POST", base+"/v1/cluster/join", c.body)
		if code != c.want || problemType(t, body) != c.problem {
			t.Errorf("join, %s: %d %s, want %d %s", c.name, code, body, c.want, c.problem)
		}
	}
	for _, c := range []struct {
		body, problem string
	}{
		{"", "no-other-voter"},
		{`{"id":"n1"}`, "already-leader"},
	} {
		code, body, _ := do(t, "POST", base+"/v1/cluster/transfer-leadership", c.body)
		if code != 409 || problemType(t, body) != c.problem {
			t.Errorf("transfer-leadership %q on a single node: %d %s, want 409 %s", c.body, code, body, c.problem)
		}
	}
	// Still one member, ready, and writes commit.
	code, body, _ := do(t, "GET", base+"/v1/cluster/members?hash=false", "")
	var cs cluster.ClusterStatus
	if code != 200 || json.Unmarshal([]byte(body), &cs) != nil || len(cs.Members) != 1 {
		t.Fatalf("members after bogus joins: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/readyz", ""); code != 200 {
		t.Fatalf("readyz after bogus joins: %d %s", code, body)
	}
	acct := `{"id":"after-bogus","kind":"cardholder","currency":"USD","pan":"4242424242424242","opening":"1.00","funded_by":"bank-funding-usd"}`
	if code, body, _ := do(t, "POST", base+"/v1/accounts", acct); code != 201 {
		t.Fatalf("a write after bogus joins: %d %s", code, body)
	}
}

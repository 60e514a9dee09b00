package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/switchd/switchd/cluster"
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
	cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	n2, err := cluster.New(cc, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	addr := n2.Status().RaftAddr

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opsAddr := base[len("http://"):]
	for i := 0; i < 2; i++ {
		if err := ops.RequestJoin(ctx, opsAddr, "n2", addr); err != nil {
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

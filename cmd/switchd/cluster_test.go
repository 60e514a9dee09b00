package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/internal/switchdtest"
)

// clusterNode is one switchd process of a test cluster.
type clusterNode struct {
	id, ops, raft, lane, cfg, data string
	creds                          string // the credentials file every node shares
	args                           []string
	cmd                            *exec.Cmd
	done                           chan struct{} // closed when cmd has been waited for
}

func (n *clusterNode) start(t testing.TB, bin string) {
	t.Helper()
	lf, err := os.OpenFile(n.data+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--config", n.cfg, "--data-dir", n.data, "--node-id", n.id, "--raft-addr", n.raft, "--ops-listen", n.ops}, n.args...)
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := n.cmd, make(chan struct{})
	n.done = done
	go func() { cmd.Wait(); close(done) }() // reaps it, so exited can tell
	t.Cleanup(func() { cmd.Process.Kill(); <-done; lf.Close() })
}

func (n *clusterNode) kill9() {
	n.cmd.Process.Signal(os.Kill)
	<-n.done
}

// exited reports whether the process has ended.
func (n *clusterNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func waitReadyz(t testing.TB, n *clusterNode) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + n.ops + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(n.data + ".log")
	t.Fatalf("%s not ready after 60s; log:\n%s", n.id, b)
}

type members struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID     string `json:"id"`
		Status *struct {
			Ready          bool   `json:"ready"`
			StateHashIndex uint64 `json:"state_hash_index"`
			StateHash      string `json:"state_hash"`
		} `json:"status"`
	} `json:"members"`
}

func getMembers(ops string) (members, error) {
	var m members
	resp, err := switchdtest.Get("http://" + ops + "/v1/cluster/members")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// isoClient sends 0200s of 0.01 on card pan (4111… when empty) and
// returns 39 and 38.
type isoClient struct {
	t   *testing.T
	c   *codec.Codec
	fr  codec.Framer
	pan string
}

func (ic *isoClient) send(lane, mti string, stan int) (rc, auth string, err error) {
	conn, err := net.DialTimeout("tcp", lane, time.Second)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	m := new(codec.Message)
	m.MTI = mti
	pan := ic.pan
	if pan == "" {
		pan = "4111111111111111"
	}
	for id, v := range map[int]string{2: pan, 3: "000000", 4: "000000000001",
		7: "1121130000", 11: fmt.Sprintf("%06d", stan), 32: "100001", 37: fmt.Sprintf("%012d", stan), 49: "840"} {
		m.Set(id, v)
	}
	b, err := ic.c.Pack(nil, m)
	if err != nil {
		ic.t.Fatal(err)
	}
	f, _ := ic.fr.AppendFrame(nil, b)
	if _, err := conn.Write(f); err != nil {
		return "", "", err
	}
	ans, err := ic.fr.ReadFrame(bufio.NewReader(conn), nil)
	if err != nil {
		return "", "", err
	}
	r := new(codec.Message)
	if err := ic.c.Unpack(ans, r); err != nil {
		return "", "", err
	}
	return r.Get(39), r.Get(38), nil
}

// clusterSpec adjusts the nodes startClusterNodes starts.
type clusterSpec struct {
	// clusterYAML and extraYAML are lines added under cluster: and at the
	// top of every node's config.
	clusterYAML, extraYAML string
	// dataOf, when set, names node i's (1-based) data dir, "" for the default.
	dataOf func(i int) string
	// extraOf, when set, is YAML added at the top of node i's (1-based)
	// config only (e.g. its own API listener).
	extraOf func(i int) string
}

// startClusterNodes starts three switchd processes on free ports under one
// temporary dir: n1 with --bootstrap, n2 and n3 with --join through n1's
// ops API, node TLS from a shared development CA, each ready before the next.
func startClusterNodes(t testing.TB, bin string, spec clusterSpec) []*clusterNode {
	t.Helper()
	dir := t.TempDir()
	var nodes []*clusterNode
	for i := 1; i <= 3; i++ {
		n := &clusterNode{id: fmt.Sprintf("n%d", i), ops: switchdtest.FreePort(t), raft: switchdtest.FreePort(t), lane: switchdtest.FreePort(t),
			cfg: filepath.Join(dir, fmt.Sprintf("n%d.yaml", i)), data: filepath.Join(dir, fmt.Sprintf("n%d", i))}
		if spec.dataOf != nil && spec.dataOf(i) != "" {
			n.data = spec.dataOf(i)
		}
		// Every node shares one credentials file: n1 writes it once it has
		// made the admin client, the others join with it.
		creds := filepath.Join(dir, "ops-credentials.json")
		n.creds = creds
		switchdtest.Register(n.ops, creds)
		extra := spec.extraYAML
		if spec.extraOf != nil {
			extra += spec.extraOf(i)
		}
		body := fmt.Sprintf(`log_level: info
ops:
  auth: {bootstrap_credentials: "`+creds+`"}
cluster:
  join_credentials: "`+creds+`"
  heartbeat_timeout: 300ms
  election_timeout: 300ms
  leader_lease_timeout: 150ms
  tls: {mode: dev, dev_ca_dir: "%s"}
%s%sswitch:
  card_key: %s
  lanes:
    - {name: demo, listen: "%s", partners: [demo-acquirer]}
`, filepath.Join(dir, "ca"), spec.clusterYAML, extra, switchdtest.CardKey, n.lane)
		if err := os.WriteFile(n.cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			n.args = []string{"--bootstrap"}
		} else {
			n.args = []string{"--join", nodes[0].ops}
		}
		nodes = append(nodes, n)
		n.start(t, bin)
		waitReadyz(t, n)
	}
	return nodes
}

// Three switchd processes: --bootstrap and --join through the ops API
// (with node TLS from a shared development CA), a 0200 through a follower
// lane, kill -9 of the leader, approvals through a survivor, the repeat of
// the first request on another node gets the original answer, and after
// the killed node restarts every replica has the same state hash.
func TestThreeNodeCluster(t *testing.T) {
	bin := switchdtest.Build(t) // skips under -short
	nodes := startClusterNodes(t, bin, clusterSpec{})
	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	ic := &isoClient{t: t, c: c, fr: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}}

	m, err := getMembers(nodes[2].ops)
	if err != nil || len(m.Members) != 3 || m.Leader != "n1" {
		t.Fatalf("members: %+v %v", m, err)
	}
	rc, auth, err := ic.send(nodes[1].lane, "0200", 1)
	if err != nil || rc != "00" {
		t.Fatalf("0200 through follower n2: rc %q %v", rc, err)
	}
	// Joining again (same id and address, through a follower) is a no-op.
	req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[2].ops+"/v1/cluster/join",
		strings.NewReader(fmt.Sprintf(`{"id":"n2","raft_addr":"%s"}`, nodes[1].raft)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := switchdtest.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("join again: %v %v", resp, err)
	}
	resp.Body.Close()

	nodes[0].kill9() // the leader
	start := time.Now()
	stan := 100
	for {
		stan++
		if rc, _, err := ic.send(nodes[2].lane, "0200", stan); err == nil && rc == "00" {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("no approval through a survivor 30s after kill -9 of the leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first approval through n3 %s after kill -9 of the leader", time.Since(start).Round(time.Millisecond))
	if rc2, auth2, err := ic.send(nodes[2].lane, "0201", 1); err != nil || rc2 != "00" || auth2 != auth {
		t.Fatalf("repeat on n3 of the first 0200: %q %q %v, want 00 %q", rc2, auth2, err, auth)
	}

	nodes[0].args = nil // restarts with its raft state: no bootstrap, no join
	nodes[0].start(t, bin)
	waitReadyz(t, nodes[0])
	waitConverged(t, nodes[0])

	// kill -9 of every node, then the way `make cluster` restarts (n1 with
	// --bootstrap again, the others with --join): starting must never depend
	// on proposing. n2 comes back first, alone: it stays up, serves /healthz,
	// is not ready, and declines with 96 (no quorum, nothing approved).
	for _, n := range nodes {
		n.kill9()
	}
	nodes[1].start(t, bin)
	deadline := time.Now().Add(10 * time.Second)
	for !httpOK("http://" + nodes[1].ops + "/healthz") {
		if time.Now().After(deadline) || nodes[1].exited() {
			b, _ := os.ReadFile(nodes[1].data + ".log")
			t.Fatalf("n2 restarted alone: ops API not up (exited %v); log:\n%s", nodes[1].exited(), b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if httpOK("http://" + nodes[1].ops + "/readyz") {
		t.Fatal("n2 alone, without a quorum, says it is ready")
	}
	if rc, _, err := ic.send(nodes[1].lane, "0200", 900); err != nil || rc != "96" {
		t.Fatalf("0200 on n2 without a quorum: rc %q %v, want 96", rc, err)
	}
	nodes[0].args = []string{"--bootstrap"}
	nodes[0].start(t, bin)
	nodes[2].start(t, bin)
	for _, n := range nodes {
		waitReadyz(t, n)
		if n.exited() {
			t.Fatalf("%s exited after the restart of the whole cluster", n.id)
		}
	}
	for i, n := range nodes {
		if rc, _, err := ic.send(n.lane, "0200", 1000+i); err != nil || rc != "00" {
			t.Fatalf("0200 through %s after the whole cluster restarted: rc %q %v", n.id, rc, err)
		}
	}
	if rc2, auth2, err := ic.send(nodes[2].lane, "0201", 1); err != nil || rc2 != "00" || auth2 != auth {
		t.Fatalf("repeat of the first 0200 after the restart: %q %q %v, want 00 %q", rc2, auth2, err, auth)
	}
	waitConverged(t, nodes[1])
}

// waitConverged waits until every member, asked through n, is ready with
// the same state hash at the same index.
func waitConverged(t *testing.T, n *clusterNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := getMembers(n.ops)
		same := err == nil && len(m.Members) == 3
		for _, x := range m.Members {
			same = same && x.Status != nil && x.Status.Ready && x.Status.StateHash == m.Members[0].Status.StateHash &&
				x.Status.StateHashIndex == m.Members[0].Status.StateHashIndex
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge: %+v %v", m, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/switchd/switchd/internal/switchdtest"
)

// The fault suite's "full disk on one node under load", in a cluster:
// three switchd processes, n2's data on a small tmpfs filled to below its
// reserve. Purchases through every lane: n1 and n3 approve, n2 declines
// with 96 and stays up (it still applies what the others commit, which the
// reserve is there for), answers balance inquiries, and once the filler is
// deleted approves again by itself. Every replica ends with the same state
// hash, and the card's balance is the opening less the approvals.
func TestDiskFullOnOneClusterNode(t *testing.T) {
	bin := switchdtest.Build(t)
	vol := mountTmpfs(t, diskVolBytes)
	dir := t.TempDir()
	var nodes []*clusterNode
	for i := 1; i <= 3; i++ {
		n := &clusterNode{id: fmt.Sprintf("n%d", i), ops: switchdtest.FreePort(t), raft: switchdtest.FreePort(t), lane: switchdtest.FreePort(t),
			cfg: filepath.Join(dir, fmt.Sprintf("n%d.yaml", i)), data: filepath.Join(dir, fmt.Sprintf("n%d", i))}
		if i == 2 {
			n.data = filepath.Join(vol, "n2")
		}
		body := fmt.Sprintf(`log_level: info
cluster:
  heartbeat_timeout: 300ms
  election_timeout: 300ms
  leader_lease_timeout: 150ms
  wal_segment_bytes: 4194304
  tls: {mode: dev, dev_ca_dir: "%s"}
store: {memtable_bytes: 4194304, cache_bytes: 33554432}
disk: {reserve_bytes: %d, check_interval: 50ms}
switch:
  card_key: %s
  lanes:
    - {name: demo, listen: "%s", partners: [demo-acquirer]}
`, filepath.Join(dir, "ca"), diskReserveBytes, switchdtest.CardKey, n.lane)
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
	t.Cleanup(func() { // stop n2 before the tmpfs is unmounted
		nodes[1].cmd.Process.Signal(os.Interrupt)
		<-nodes[1].done
	})

	var st syscall.Statfs_t
	if err := syscall.Statfs(vol, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(vol, "filler")
	if err := fillFile(filler, int64(st.Bavail)*int64(st.Bsize)-diskReserveBytes+(1<<20)); err != nil {
		t.Fatal(err)
	}
	n2ops := "http://" + nodes[1].ops
	waitMetric(t, n2ops, "switchd_disk_refusing", 1)

	approved := 0
	for round := 0; round < 3; round++ {
		for i, n := range nodes {
			cl := newDiskClient(t, n.lane).conn()
			for k := 0; k < diskProbes; k++ {
				stan := 1_000_000*(i+1) + round*1000 + k
				a := cl.send(purchaseMsg(t, "0200", stan))
				switch {
				case i == 1 && a.rc != "96":
					t.Fatalf("purchase on n2 below its reserve: %s, want 96", a.rc)
				case i != 1 && a.rc != "00":
					t.Fatalf("purchase on %s while n2's disk is full: %s, want 00", n.id, a.rc)
				}
				if a.rc == "00" {
					approved++
				}
			}
			if i == 1 {
				if a := cl.send(balanceMsg(t, 3_000_000+round)); a.rc != "00" || a.balances == "" {
					t.Fatalf("balance inquiry on n2 below its reserve: %s (54=%q)", a.rc, a.balances)
				}
			}
		}
	}
	if nodes[1].exited() {
		t.Fatal("n2 exited while its disk was full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, n2ops, "switchd_disk_refusing", 0)
	cl := newDiskClient(t, nodes[1].lane).conn()
	for k := 0; k < diskProbes; k++ {
		if a := cl.send(purchaseMsg(t, "0200", 5_000_000+k)); a.rc != "00" {
			t.Fatalf("purchase on n2 after the space came back: %s", a.rc)
		}
		approved++
	}
	waitConverged(t, nodes[0])
	for _, n := range nodes {
		var acct struct{ Posted, Available int64 }
		getJSON(t, "http://"+n.ops+"/v1/accounts/card-4111", &acct)
		if want := int64(100000 - approved); acct.Posted != want || acct.Available != want {
			t.Fatalf("%s: card-4111 posted %d available %d, want %d (opening 100000 − %d approvals)", n.id, acct.Posted, acct.Available, want, approved)
		}
	}
}

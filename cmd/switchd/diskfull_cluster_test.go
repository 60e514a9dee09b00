package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/switchd/switchd/internal/switchdtest"
)

// The fault suite's "full disk on one node under load", in a cluster:
// three switchd processes, n2's data on a small tmpfs filled to below its
// reserve. Purchases through every lane: n1 and n3 approve, n2 declines
// with 96 and stays up (it still applies what the others commit, which the
// reserve is there for), answers balance inquiries, and once the filler is
// deleted approves again by itself. Every replica ends with the same state
// hash, and the card's balance is the opening less the approvals. When
// the full node leads, it first hands leadership to another voter.
func TestDiskFullOnOneClusterNode(t *testing.T) {
	bin := switchdtest.Build(t)
	t.Run("follower", func(t *testing.T) { diskFullOnOneNode(t, bin, 1) })
	t.Run("leader", func(t *testing.T) { diskFullOnOneNode(t, bin, 0) })
}

// diskFullOnOneNode runs the scenario with node index full (0: n1, which
// bootstraps and so leads) on the small volume.
func diskFullOnOneNode(t *testing.T, bin string, full int) {
	vol := mountTmpfs(t, diskVolBytes)
	nodes := startClusterNodes(t, bin, clusterSpec{
		clusterYAML: "  wal_segment_bytes: 4194304\n",
		extraYAML: fmt.Sprintf("store: {memtable_bytes: 4194304, cache_bytes: 33554432}\n"+
			"disk: {reserve_bytes: %d, check_interval: 50ms}\n", diskReserveBytes),
		dataOf: func(i int) string {
			if i == full+1 {
				return filepath.Join(vol, fmt.Sprintf("n%d", i))
			}
			return ""
		},
	})
	t.Cleanup(func() { // stop the full node before the tmpfs is unmounted
		nodes[full].cmd.Process.Signal(os.Interrupt)
		<-nodes[full].done
	})

	before, err := getMembers(nodes[full].ops)
	if err != nil || (full == 0 && before.Leader != "n1") {
		t.Fatalf("members before the disk fills: %+v %v (n1 bootstraps, so it leads)", before, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(vol, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(vol, "filler")
	if err := fillFile(filler, int64(st.Bavail)*int64(st.Bsize)-diskReserveBytes+(1<<20)); err != nil {
		t.Fatal(err)
	}
	fullOps := "http://" + nodes[full].ops
	waitMetric(t, fullOps, "switchd_disk_refusing", 1)
	if before.Leader == nodes[full].id {
		// It leads: it must hand over (handOverWhenShort).
		deadline := time.Now().Add(diskPhaseTimeout)
		for {
			m, err := getMembers(nodes[full].ops)
			if err == nil && m.Leader != "" && m.Leader != nodes[full].id {
				t.Logf("%s, short of disk, handed leadership to %s", nodes[full].id, m.Leader)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is short of disk and still leads after %s", nodes[full].id, diskPhaseTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, n := range nodes {
			waitReadyz(t, n)
		}
	}

	approved := 0
	for round := 0; round < 3; round++ {
		for i, n := range nodes {
			cl := newDiskClient(t, n.lane).conn()
			for k := 0; k < diskProbes; k++ {
				stan := 1_000_000*(i+1) + round*1000 + k
				a := cl.send(purchaseMsg(t, "0200", stan))
				switch {
				case i == full && a.rc != "96":
					t.Fatalf("purchase on %s below its reserve: %s, want 96", n.id, a.rc)
				case i != full && a.rc != "00":
					t.Fatalf("purchase on %s while %s's disk is full: %s, want 00", n.id, nodes[full].id, a.rc)
				}
				if a.rc == "00" {
					approved++
				}
			}
			if i == full {
				if a := cl.send(balanceMsg(t, 3_000_000+round)); a.rc != "00" || a.balances == "" {
					t.Fatalf("balance inquiry on %s below its reserve: %s (54=%q)", n.id, a.rc, a.balances)
				}
			}
		}
	}
	if nodes[full].exited() {
		t.Fatalf("%s exited while its disk was full", nodes[full].id)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, fullOps, "switchd_disk_refusing", 0)
	cl := newDiskClient(t, nodes[full].lane).conn()
	for k := 0; k < diskProbes; k++ {
		if a := cl.send(purchaseMsg(t, "0200", 5_000_000+k)); a.rc != "00" {
			t.Fatalf("purchase on %s after the space came back: %s", nodes[full].id, a.rc)
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

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
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
)

// crashLoad is how long traffic runs before the kill -9; the test stays
// short in `make test` (set SWITCHD_CRASH_LOAD=30s for a longer run).
func crashLoad() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SWITCHD_CRASH_LOAD")); err == nil {
		return d
	}
	return 2 * time.Second
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd *exec.Cmd
	log *os.File
}

func startSwitchd(t *testing.T, bin, cfgPath, dataDir, opsAddr string) *proc {
	t.Helper()
	lf, err := os.OpenFile(filepath.Join(dataDir+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath, "--data-dir", dataDir)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: lf}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait(); lf.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(dataDir + ".log")
	t.Fatalf("switchd not ready after 60s; log:\n%s", b)
	return nil
}

type answer struct {
	rc, auth string
}

// The brief's "done means": approvals survive kill -9, balances are as the
// approvals say, and a repeat of an earlier request gets its original answer.
func TestKill9KeepsEveryApproval(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the switchd binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	opsAddr, raftAddr, laneAddr := freePort(t), freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "switchd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
log_level: warn
ops: {listen: "%s"}
cluster: {raft_addr: "%s", heartbeat_timeout: 100ms, election_timeout: 100ms, leader_lease_timeout: 100ms}
switch:
  lanes:
    - {name: demo, listen: "%s", partners: [demo-acquirer]}
`, opsAddr, raftAddr, laneAddr)), 0o600)
	dataDir := filepath.Join(dir, "data")
	p := startSwitchd(t, bin, cfgPath, dataDir, opsAddr)

	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}
	msg := func(mti string, stan int) []byte {
		m := new(codec.Message)
		m.MTI = mti
		for id, v := range map[int]string{2: "4111111111111111", 3: "000000", 4: "000000000001",
			7: "1121120000", 11: fmt.Sprintf("%06d", stan), 32: "100001", 37: fmt.Sprintf("%012d", stan), 49: "840"} {
			m.Set(id, v)
		}
		b, err := c.Pack(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := fr.AppendFrame(nil, b)
		return f
	}

	// Load: 8 connections, pipelined, each a range of STANs; then kill -9.
	const conns = 8
	var mu sync.Mutex // protects answered and sent
	answered := map[int]answer{}
	sent := map[int]bool{}
	var wg sync.WaitGroup
	stop := time.Now().Add(crashLoad())
	for ci := 0; ci < conns; ci++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", laneAddr)
			if err != nil {
				return
			}
			// The writer must be done before the test reads sent: close
			// the connection (a blocked Write returns) and wait for it.
			var writer sync.WaitGroup
			defer writer.Wait()
			defer conn.Close()
			br := bufio.NewReader(conn)
			writer.Add(1)
			go func() {
				defer writer.Done()
				for stan := ci*100000 + 1; time.Now().Before(stop); stan++ {
					mu.Lock()
					sent[stan] = true
					mu.Unlock()
					if _, err := conn.Write(msg("0200", stan)); err != nil {
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			}()
			for {
				b, err := fr.ReadFrame(br, nil)
				if err != nil {
					return
				}
				m := new(codec.Message)
				if err := c.Unpack(b, m); err != nil {
					t.Errorf("answer does not unpack: %v", err)
					return
				}
				var stan int
				fmt.Sscanf(m.Get(11), "%d", &stan)
				mu.Lock()
				answered[stan] = answer{m.Get(39), m.Get(38)}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(crashLoad() - crashLoad()/4)
	if err := p.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	wg.Wait()

	mu.Lock()
	approvedBefore := 0
	for _, a := range answered {
		if a.rc == "00" {
			approvedBefore++
		}
	}
	t.Logf("before kill -9: %d sent, %d answered, %d approved", len(sent), len(answered), approvedBefore)
	if approvedBefore == 0 {
		t.Fatal("no approvals before the kill: the test proves nothing")
	}
	mu.Unlock()

	startSwitchd(t, bin, cfgPath, dataDir, opsAddr)
	conn, err := net.Dial("tcp", laneAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// Repeat every request sent (0201): answered ones must get the same
	// answer; unanswered ones get a definite one now.
	approved := 0
	for stan := range sent {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(msg("0201", stan)); err != nil {
			t.Fatal(err)
		}
		b, err := fr.ReadFrame(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := new(codec.Message)
		if err := c.Unpack(b, m); err != nil {
			t.Fatal(err)
		}
		got := answer{m.Get(39), m.Get(38)}
		if want, ok := answered[stan]; ok && want != got {
			t.Errorf("stan %d: answered %+v before the crash, %+v after", stan, want, got)
		}
		if got.rc == "00" {
			approved++
		} else {
			t.Errorf("stan %d: repeat got %s", stan, got.rc)
		}
	}
	resp, err := http.Get("http://" + opsAddr + "/v1/accounts/card-4111")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acct struct{ Posted, Available int64 }
	json.NewDecoder(resp.Body).Decode(&acct)
	if want := int64(100000 - approved); acct.Posted != want || acct.Available != want {
		t.Fatalf("card-4111 posted %d available %d, want %d (opening 100000 − %d approvals of 1)", acct.Posted, acct.Available, want, approved)
	}
	t.Logf("after restart: %d approvals, balance %d as expected", approved, acct.Posted)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// switchd is a switchd process started from the binary built from this
// checkout, on free loopback ports.
type switchd struct {
	isoAddr string
	opsURL  string
}

// freePort reserves a loopback port long enough to learn its number. The
// port could be taken again before switchd binds it; on a test machine
// that is rare enough.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSwitchd builds cmd/switchd and runs it with a config that moves
// every listener to a free port; it is stopped (SIGTERM) at cleanup.
func startSwitchd(t *testing.T) switchd {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts switchd")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build switchd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchd")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/switchd/switchd/cmd/switchd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building switchd: %v\n%s", err, out)
	}
	s := switchd{isoAddr: freePort(t)}
	opsAddr, raftAddr := freePort(t), freePort(t)
	s.opsURL = "http://" + opsAddr
	// Lanes are replaced as a whole list; the rest keeps the demo config.
	cfg := fmt.Sprintf(`log_level: warn
cluster:
  raft_addr: %s
  heartbeat_timeout: 100ms
  election_timeout: 100ms
  leader_lease_timeout: 100ms
ops:
  listen: %s
switch:
  lanes:
    - name: test
      listen: %s
      partners: [demo-acquirer]
`, raftAddr, opsAddr, s.isoAddr)
	cfgPath := filepath.Join(dir, "switchd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "switchd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--config", cfgPath)
	// Files, not pipes: exec then starts no copying goroutines.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("switchd log:\n%s", b)
		}
	})
	waitReady(t, s.opsURL+"/readyz")
	return s
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("switchd not ready at %s after 30s", url)
}

// A short closed-loop run against a real switch: approvals happen, every
// repeat gets its original answer, and every card's balances moved by
// exactly what the approvals imply. A second, open-loop run reuses the
// cards (setup is idempotent) and verifies again; a third runs cards dry.
func TestLoadAgainstSwitchd(t *testing.T) {
	sw := startSwitchd(t)
	cfg := DefaultConfig()
	cfg.Addr, cfg.Ops = sw.isoAddr, sw.opsURL
	cfg.Duration = 3 * time.Second
	cfg.Conns, cfg.Inflight = 4, 32
	cfg.Cards = 20
	cfg.Quiet = true
	cfg.Seed = 7

	ctx := context.Background()
	sum, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.Setup.Created != cfg.Cards {
		t.Errorf("first run created %d cards, want %d", sum.Setup.Created, cfg.Cards)
	}
	for _, k := range []string{"purchase", "auth", "completion", "reversal", "repeat", "balance"} {
		if sum.ByKind[k] == 0 {
			t.Errorf("no %s answered: %v", k, sum.ByKind)
		}
	}

	cfg.Rate, cfg.Duration = 500, 2*time.Second
	sum, err = run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.Setup.Existing != cfg.Cards {
		t.Errorf("second run found %d existing cards, want %d", sum.Setup.Existing, cfg.Cards)
	}
	if sum.Scheduled < 900 || sum.Scheduled > 1000 {
		t.Errorf("open loop at 500/s for 2s scheduled %d requests", sum.Scheduled)
	}
	if sum.BacklogUnsent > 50 || sum.Sent < 950 {
		t.Errorf("open loop at 500/s for 2s sent %d, %d never sent", sum.Sent, sum.BacklogUnsent)
	}

	// Cards that run out of money: declines (51) must leave balances
	// alone, and their repeats must replay the decline.
	cfg.Rate, cfg.Duration = 0, time.Second
	cfg.BIN, cfg.Opening, cfg.Cards = "999997", "50.00", 5
	sum, err = run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, sum, cfg.Cards)
	if sum.ByRC["51"] == 0 {
		t.Errorf("no insufficient-funds declines with 50.00 per card: %v", sum.ByRC)
	}
}

func checkRun(t *testing.T, sum *Summary, cards int) {
	t.Helper()
	defer func() {
		if t.Failed() {
			var b strings.Builder
			sum.writeJSON(&b)
			t.Logf("summary:\n%s", b.String())
		}
	}()
	if !sum.OK {
		t.Errorf("run not OK: repeats %+v, balances %+v, verification %+v", sum.Repeats, sum.Balances, sum.Verification)
	}
	if sum.Approved == 0 || sum.ByRC["00"] == 0 {
		t.Errorf("no approvals: %v", sum.ByRC)
	}
	if sum.Answered != sum.Sent || sum.Unresolved != 0 {
		t.Errorf("sent %d, answered %d, unresolved %d", sum.Sent, sum.Answered, sum.Unresolved)
	}
	if sum.Repeats.Checked == 0 || sum.Repeats.Mismatches != 0 {
		t.Errorf("repeats: %+v", sum.Repeats)
	}
	v := sum.Verification
	if v == nil || v.AccountsChecked != cards || len(v.Mismatches) != 0 {
		t.Errorf("verification: %+v", v)
	}
}

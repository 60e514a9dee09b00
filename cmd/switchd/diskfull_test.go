package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/internal/switchdtest"
)

// The small volume of TestDiskFullUnderLoad: a tmpfs the test mounts.
const (
	diskVolBytes     = 128 << 20
	diskReserveBytes = 32 << 20
	// diskHeadroomBytes is what the filler leaves above the reserve: the
	// load eats it in a few seconds.
	diskHeadroomBytes = 12 << 20
	diskLoadConns     = 8
	// diskProbes are sent one by one in each phase.
	diskProbes = 20
	// diskPhaseTimeout bounds each wait (reserve reached, space back).
	diskPhaseTimeout = 30 * time.Second
)

// Issue 9 item 2, end to end: switchd with its data on a 128 MiB tmpfs,
// a filler file leaving 12 MiB above a 32 MiB reserve, and pipelined
// purchases until the disk guard refuses. Every request gets an answer (00
// or 96, no dropped connection); while it refuses, new purchases get 96,
// balance inquiries and repeats of approvals are answered; once the filler
// is deleted approvals resume by themselves; every approval is in the
// ledger afterwards and the ledger sums to zero. Needs root (mount).
func TestDiskFullUnderLoad(t *testing.T) {
	bin := switchdtest.Build(t)
	vol := mountTmpfs(t, diskVolBytes)
	node := switchdtest.StartWith(t, bin, switchdtest.Options{
		DataDir: filepath.Join(vol, "data"),
		Cluster: []string{"wal_segment_bytes: 4194304"},
		Extra: fmt.Sprintf(`store:
  memtable_bytes: 4194304
  cache_bytes: 33554432
disk:
  reserve_bytes: %d
  check_interval: 50ms
`, diskReserveBytes),
	})
	t.Cleanup(node.Stop) // before the unmount (cleanups run last-in first-out)

	var st syscall.Statfs_t
	if err := syscall.Statfs(vol, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(vol, "filler")
	if err := fillFile(filler, free-diskReserveBytes-diskHeadroomBytes); err != nil {
		t.Fatal(err)
	}

	cl := newDiskClient(t, node.LaneAddr)
	approved := map[int]string{} // STAN → auth code
	var mu sync.Mutex            // protects approved and the counts below
	var declined int

	// Phase 1: load until the guard refuses.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < diskLoadConns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := cl.pipelined(c*1_000_000+1, stop)
			if err != nil {
				t.Errorf("conn %d: %v", c, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for stan, a := range got {
				switch a.rc {
				case "00":
					approved[stan] = a.auth
				case "96":
					declined++
				default:
					t.Errorf("stan %d: %s, want 00 or 96", stan, a.rc)
				}
			}
		}()
	}
	waitMetric(t, node.OpsURL, "switchd_disk_refusing", 1)
	close(stop)
	wg.Wait()
	t.Logf("load: %d approved, %d declined (96) before and at the reserve", len(approved), declined)
	if len(approved) == 0 {
		t.Fatal("nothing approved before the disk filled: the test proves nothing")
	}

	// Phase 2: refusing. New purchases 96; inquiries and repeats answered.
	probe := cl.conn()
	for i := 0; i < diskProbes; i++ {
		if a := probe.send(purchaseMsg(t, "0200", 9_000_000+i)); a.rc != "96" {
			t.Fatalf("purchase while below the reserve: %s, want 96", a.rc)
		}
	}
	if a := probe.send(balanceMsg(t, 9_100_000)); a.rc != "00" || a.balances == "" {
		t.Fatalf("balance inquiry while below the reserve: %s (54=%q)", a.rc, a.balances)
	}
	n := 0
	for stan, auth := range approved {
		if a := probe.send(purchaseMsg(t, "0201", stan)); a.rc != "00" || a.auth != auth {
			t.Fatalf("repeat of stan %d while below the reserve: %s %s, want 00 %s", stan, a.rc, a.auth, auth)
		}
		if n++; n == diskProbes {
			break
		}
	}
	if v := metric(t, node.OpsURL, "switchd_disk_refusing"); v != 1 {
		t.Fatalf("the guard stopped refusing during the probes (gauge %v): the disk freed itself", v)
	}

	// Phase 3: the operator makes room; the node resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, node.OpsURL, "switchd_disk_refusing", 0)
	for i := 0; i < diskProbes; i++ {
		stan := 9_200_000 + i
		a := probe.send(purchaseMsg(t, "0200", stan))
		if a.rc != "00" {
			t.Fatalf("purchase after the space came back: %s", a.rc)
		}
		approved[stan] = a.auth
	}

	// Every approval is there: its repeat gets the same answer, and the
	// card's balance is the opening less one cent per approval.
	for stan, auth := range approved {
		if a := probe.send(purchaseMsg(t, "0201", stan)); a.rc != "00" || a.auth != auth {
			t.Fatalf("approved stan %d repeated at the end: %s %s, want 00 %s", stan, a.rc, a.auth, auth)
		}
	}
	var acct struct{ Posted, Available int64 }
	getJSON(t, node.OpsURL+"/v1/accounts/card-4111", &acct)
	if want := int64(100000 - len(approved)); acct.Posted != want || acct.Available != want {
		t.Fatalf("card-4111 posted %d available %d, want %d (opening 100000 − %d approvals of 1)",
			acct.Posted, acct.Available, want, len(approved))
	}
	var list struct {
		Accounts []struct {
			Currency string
			Posted   int64
		}
	}
	getJSON(t, node.OpsURL+"/v1/accounts?limit=1000", &list)
	sum := map[string]int64{}
	for _, a := range list.Accounts {
		sum[a.Currency] += a.Posted
	}
	for ccy, s := range sum {
		if s != 0 {
			t.Fatalf("%s posted balances sum to %d, want 0", ccy, s)
		}
	}
	t.Logf("refused %v requests; %d approvals all present", metric(t, node.OpsURL, "switchd_disk_refusals_total"), len(approved))
}

// mountTmpfs mounts a tmpfs of size bytes and unmounts it at cleanup; it
// skips the test when that is not possible (not root, no mount).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillFile allocates n bytes at path (fallocate: tmpfs allocates pages).
func fillFile(path string, n int64) error {
	if n <= 0 {
		return fmt.Errorf("no room for a filler (%d bytes)", n)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return syscall.Fallocate(int(f.Fd()), 0, 0, n)
}

// diskAnswer is one response's fields the test looks at.
type diskAnswer struct {
	rc, auth, balances string
}

type diskClient struct {
	t    *testing.T
	addr string
	c    *codec.Codec
	fr   codec.Framer
}

func newDiskClient(t *testing.T, addr string) *diskClient {
	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	return &diskClient{t: t, addr: addr, c: c, fr: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}}
}

func buildMsg(_ *testing.T, mti string, fields map[int]string) *codec.Message {
	m := new(codec.Message)
	m.MTI = mti
	for id, v := range fields {
		m.Set(id, v)
	}
	return m
}

// purchaseMsg is a purchase (or its repeat) of one cent from card-4111.
func purchaseMsg(t *testing.T, mti string, stan int) *codec.Message {
	return buildMsg(t, mti, map[int]string{2: "4111111111111111", 3: "000000", 4: "000000000001",
		7: transmissionTime(stan), 11: fmt.Sprintf("%06d", stan%1_000_000), 32: "100001", 37: fmt.Sprintf("%012d", stan), 49: "840"})
}

func balanceMsg(t *testing.T, stan int) *codec.Message {
	return buildMsg(t, "0100", map[int]string{2: "4111111111111111", 3: "310000", 4: "000000000000",
		7: transmissionTime(stan), 11: fmt.Sprintf("%06d", stan%1_000_000), 32: "100001", 37: fmt.Sprintf("%012d", stan), 49: "840"})
}

// transmissionTime is field 7 for stan: STAN and field 7 name a message
// (the original reference), so each block of a million STANs gets its own
// hour.
func transmissionTime(stan int) string {
	return fmt.Sprintf("1121%02d0000", 10+stan/1_000_000)
}

func (cl *diskClient) frame(m *codec.Message) []byte {
	b, err := cl.c.Pack(nil, m)
	if err != nil {
		cl.t.Fatal(err)
	}
	f, _ := cl.fr.AppendFrame(nil, b)
	return f
}

func (cl *diskClient) read(br *bufio.Reader) (int, diskAnswer, error) {
	b, err := cl.fr.ReadFrame(br, nil)
	if err != nil {
		return 0, diskAnswer{}, err
	}
	m := new(codec.Message)
	if err := cl.c.Unpack(b, m); err != nil {
		return 0, diskAnswer{}, err
	}
	stan, _ := strconv.Atoi(m.Get(37))
	return stan, diskAnswer{m.Get(39), m.Get(38), m.Get(54)}, nil
}

// pipelined sends purchases from STAN (RRN) first on, up to 32 unanswered
// at a time, until stop is closed, then reads every answer still due. A
// request left without an answer (the connection dropped, or no answer
// within 15 s) is an error.
func (cl *diskClient) pipelined(first int, stop <-chan struct{}) (map[int]diskAnswer, error) {
	const inflightMax = 32
	conn, err := net.Dial("tcp", cl.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	got := map[int]diskAnswer{}
	slots := make(chan struct{}, inflightMax)
	sent := 0
	errc := make(chan error, 1)
	var mu sync.Mutex // protects got
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			stan, a, err := cl.read(br)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			got[stan] = a
			mu.Unlock()
			<-slots
		}
	}()
	// The reader owns the connection's read side; sending stops at stop.
send:
	for stan := first; ; stan++ {
		select {
		case <-stop:
			break send
		case slots <- struct{}{}:
		}
		if _, err := conn.Write(cl.frame(purchaseMsg(cl.t, "0200", stan))); err != nil {
			return nil, err
		}
		sent++
	}
	// Wait for every answer (the slots drain as answers arrive).
	deadline := time.After(15 * time.Second)
	for i := 0; i < inflightMax; i++ {
		select {
		case slots <- struct{}{}:
		case err := <-errc:
			return nil, fmt.Errorf("connection lost with answers due: %w", err)
		case <-deadline:
			mu.Lock()
			n := len(got)
			mu.Unlock()
			return nil, fmt.Errorf("%d of %d requests unanswered after 15 s", sent-n, sent)
		}
	}
	conn.Close()
	<-done
	if len(got) != sent {
		return nil, fmt.Errorf("%d answers for %d requests", len(got), sent)
	}
	return got, nil
}

// diskConn is one connection for requests sent one at a time.
type diskConn struct {
	cl   *diskClient
	conn net.Conn
	br   *bufio.Reader
}

func (cl *diskClient) conn() *diskConn {
	c, err := net.Dial("tcp", cl.addr)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(func() { c.Close() })
	return &diskConn{cl: cl, conn: c, br: bufio.NewReader(c)}
}

func (c *diskConn) send(m *codec.Message) diskAnswer {
	c.cl.t.Helper()
	c.conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.conn.Write(c.cl.frame(m)); err != nil {
		c.cl.t.Fatal(err)
	}
	_, a, err := c.cl.read(c.br)
	if err != nil {
		c.cl.t.Fatalf("no answer: %v", err)
	}
	return a
}

// metric reads one unlabelled gauge or counter from /metrics.
func metric(t *testing.T, opsURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(opsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func waitMetric(t *testing.T, opsURL, name string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(diskPhaseTimeout); metric(t, opsURL, name) != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not %v after %s", name, want, diskPhaseTimeout)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := switchdtest.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

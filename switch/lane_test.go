package switching_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/config"
)

func purchase(stan int, pan string, amount int) string {
	return fmt.Sprintf("0200 2=%s 3=000000 4=%012d 7=1121120000 11=%06d 32=100001 37=%012d 41=TERM0001 49=840", pan, amount, stan, stan)
}

// client is a raw partner connection for tests that pipeline or misbehave.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
	h  *harness
}

func (h *harness) client() *client {
	c, err := net.DialTimeout("tcp", h.lane.Addr().String(), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: h.t, c: c, br: bufio.NewReader(c), h: h}
}

func (cl *client) write(line string) {
	m, err := parseMessage(line)
	if err != nil {
		cl.t.Fatal(err)
	}
	p, err := cl.h.codec.Pack(nil, m)
	if err != nil {
		cl.t.Fatal(err)
	}
	f, _ := cl.h.fr.AppendFrame(nil, p)
	if _, err := cl.c.Write(f); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *client) read() (*codec.Message, error) {
	b, err := cl.h.fr.ReadFrame(cl.br, nil)
	if err != nil {
		return nil, err
	}
	m := new(codec.Message)
	return m, cl.h.codec.Unpack(b, m)
}

// A partner may pipeline many requests; every one is answered, matched by STAN.
func TestPipelinedRequests(t *testing.T) {
	h := newHarness(t, func(f *config.File) { f.Switch.Lanes[0].InflightMax = 4 })
	cl := h.client()
	defer cl.c.Close()
	const n = 200
	go func() {
		for i := 1; i <= n; i++ {
			cl.write(purchase(i, "4111111111111111", 1))
		}
	}()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		m, err := cl.read()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if m.MTI != "0210" || m.Get(39) != "00" {
			t.Fatalf("answer %d: %s", i, format(m))
		}
		seen[m.Get(11)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct STANs answered, want %d", len(seen), n)
	}
	if got := h.account("card-4111"); !strings.Contains(got, fmt.Sprintf("posted=%d", 100000-n)) {
		t.Fatalf("after %d purchases of 0.01: %s", n, got)
	}
}

// Past conns_max the lane closes new connections; the existing ones serve on.
func TestConnsMax(t *testing.T) {
	h := newHarness(t, func(f *config.File) { f.Switch.Lanes[0].ConnsMax = 2 })
	a, b := h.client(), h.client()
	defer a.c.Close()
	defer b.c.Close()
	// Make sure both are accepted and counted before the third dials.
	for _, cl := range []*client{a, b} {
		cl.write("0800 7=1121120000 11=000001 70=301")
		if _, err := cl.read(); err != nil {
			t.Fatal(err)
		}
	}
	c := h.client()
	defer c.c.Close()
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("third connection was served past conns_max=2")
	}
	a.write("0800 7=1121120000 11=000002 70=301")
	if m, err := a.read(); err != nil || m.Get(39) != "00" {
		t.Fatalf("existing connection after refusal: %v", err)
	}
}

// One partner flooding garbage costs nobody else an answer.
func TestGarbageDoesNotHurtOthers(t *testing.T) {
	h := newHarness(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bad := [][]byte{
			{0xff, 0xff},                          // length above the frame limit
			{0x00, 0x00},                          // zero length
			{0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}, // no readable MTI
			append([]byte{0x00, 0x1a}, []byte("0200F230000000000000000000")...),
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.Dial("tcp", h.lane.Addr().String())
			if err != nil {
				continue
			}
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write(bad[i%len(bad)])
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	cl := h.client()
	defer cl.c.Close()
	for i := 1; i <= 100; i++ {
		cl.write(purchase(i, "4111111111111111", 1))
		m, err := cl.read()
		if err != nil || m.Get(39) != "00" {
			t.Fatalf("good partner, request %d: %v %v", i, err, m)
		}
	}
	close(stop)
	wg.Wait()
}

var panLike = []string{"4111111111111111", "5500000000000004", "4000000000000002", "4111111111111112"}

// No full PAN in any log line (at debug level), and none in any file the
// node writes: pebble, the raft log, snapshots.
func TestNoPANInLogsOrFiles(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarnessLog(t, nil, logger)
	for _, line := range []string{
		purchase(1, "4111111111111111", 100),
		purchase(2, "5500000000000004", 100), // 51
		purchase(3, "4000000000000002", 100), // unknown card
		purchase(4, "4111111111111112", 100), // fails Luhn
		"0100 2=4111111111111111 3=310000 4=000000000000 7=1121120000 11=000005 32=100001 37=000000000005 49=840",
		"0100 2=4111111111111111 3=000000 4=000000000100 7=1121120000 11=000006 32=100001 37=000000000006 49=840",
		"0400 2=4111111111111111 3=000000 4=000000000100 7=1121120001 11=000007 32=100001 37=000000000006 49=840 90=010000000611211200000000010000100000000000",
		"0200 2=4111111111111111 3=000000 4=000000000100 7=1121120000 11=000008 32=100001 49=840", // missing 37
	} {
		if _, closed := h.send(line); closed {
			t.Fatalf("closed on %q", line)
		}
	}
	h.exchange([]byte("0200 4111111111111111 garbage")) // unreadable, carries a PAN
	h.restart()                                         // flushes pebble and raft to disk
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "lane listening") {
		t.Fatal("logger captured nothing: the test would prove nothing")
	}
	for _, pan := range panLike {
		if strings.Contains(out, pan) {
			t.Errorf("log contains PAN %s…", pan[:6])
		}
	}
	var files []string
	filepath.Walk(h.dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("read %s: %v", p, err)
			return nil
		}
		files = append(files, filepath.Base(p))
		for _, pan := range panLike {
			if bytes.Contains(b, []byte(pan)) {
				t.Errorf("%s contains PAN %s…", p, pan[:6])
			}
		}
		return nil
	})
	sort.Strings(files)
	if !strings.Contains(strings.Join(files, " "), ".wal") {
		t.Fatalf("raft log not among files checked: %v", files)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// When the cluster cannot decide, every request is a 96; the log gets one
// line per second per lane, not one per request.
func TestDeclines96AreSampledInTheLog(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	h := newHarnessLog(t, nil, logger)
	if err := h.node.Close(); err != nil { // proposals now fail closed: 96
		t.Fatal(err)
	}
	const n = 50
	for i := 1; i <= n; i++ {
		m, closed := h.send(purchase(i, "4111111111111111", 1))
		if closed || m.Get(39) != "96" {
			t.Fatalf("request %d: want 96, got %v", i, m)
		}
	}
	mu.Lock()
	lines := strings.Count(logs.String(), `"declined with 96"`)
	mu.Unlock()
	if lines < 1 || lines > 3 {
		t.Fatalf("%d 96 lines for %d declines within a few seconds, want 1 to 3", lines, n)
	}
}

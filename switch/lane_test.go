package switching_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/config"
	switching "github.com/switchd/switchd/switch"
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

var panLike = []string{"4111111111111111", "5500000000000004", "4242424242424242", "4111111111111112"}

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
		purchase(3, "4242424242424242", 100), // unknown card
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

// Twenty good requests and one bad frame in the same write: the lane closes
// the connection for the bad frame only after all twenty approvals it owes
// have gone out, and each was posted exactly once (issue 9 item 3).
func TestBadFrameAfterPipelinedRequestsAnswersThemFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		garbage []byte
	}{
		{"too large", []byte{0xff, 0xff, 'x', 'x'}},
		{"zero length", []byte{0x00, 0x00, 'x', 'x'}},
		{"unreadable", []byte{0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}},
		// More junk than the lane's read buffer: left unread in the
		// kernel, it would turn a plain close into a reset that can
		// destroy answers the partner has not read yet.
		{"too large, long junk", append([]byte{0xff, 0xff}, bytes.Repeat([]byte{'x'}, 256<<10)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			cl := h.client()
			defer cl.c.Close()
			const n = 20
			var wire []byte
			for i := 1; i <= n; i++ {
				m, err := parseMessage(purchase(i, "4111111111111111", 1))
				if err != nil {
					t.Fatal(err)
				}
				p, err := h.codec.Pack(nil, m)
				if err != nil {
					t.Fatal(err)
				}
				if wire, err = h.fr.AppendFrame(wire, p); err != nil {
					t.Fatal(err)
				}
			}
			wire = append(wire, tc.garbage...)
			if _, err := cl.c.Write(wire); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for {
				m, err := cl.read()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Errorf("after %d answers: %v (want EOF, not a reset)", len(seen), err)
					}
					break
				}
				if m.MTI != "0210" || m.Get(39) != "00" {
					t.Fatalf("answer %d: %s", len(seen), format(m))
				}
				seen[m.Get(11)] = true
			}
			if len(seen) != n {
				t.Fatalf("%d of %d approvals answered before the connection closed", len(seen), n)
			}
			if got := h.account("card-4111"); !strings.Contains(got, fmt.Sprintf("posted=%d", 100000-n)) {
				t.Fatalf("after %d purchases of 0.01: %s", n, got)
			}
		})
	}
}

// testLane starts a second lane on h's pipeline with its own config,
// metrics and JSON log, for tests of the lane's own limits.
type testLane struct {
	*switching.Lane
	h    *harness
	reg  *prometheus.Registry
	mu   sync.Mutex // protects logs
	logs bytes.Buffer
}

func newTestLane(h *harness, mutate func(*switching.LaneConfig)) *testLane {
	tl := &testLane{h: h, reg: prometheus.NewRegistry()}
	lc := h.cfg.Switch.Lanes[0]
	lc.Name = "limits"
	lc.Listen = "127.0.0.1:0"
	mutate(&lc)
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&tl.mu, &tl.logs}, nil))
	l, err := switching.NewLane(lc, h.pipe, h.cfg.Switch.RequestTimeout, logger, switching.NewMetrics(tl.reg))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		h.t.Fatal(err)
	}
	tl.Lane = l
	h.t.Cleanup(func() { l.Close() })
	return tl
}

// dial connects to the lane from local IP from ("" for any).
func (tl *testLane) dial(from string) *client {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", tl.Addr().String())
	if err != nil {
		tl.h.t.Fatal(err)
	}
	tl.h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: tl.h.t, c: c, br: bufio.NewReader(c), h: tl.h}
}

// echo sends a network echo and reports whether it was answered 00.
func (cl *client) echo(stan int) bool {
	cl.write(fmt.Sprintf("0800 7=1121120000 11=%06d 70=301", stan))
	m, err := cl.read()
	return err == nil && m.MTI == "0810" && m.Get(39) == "00"
}

// closedByPeer waits for the lane to close cl and fails if it does not
// within wait (a read timeout) or sends anything.
func (cl *client) closedByPeer(wait time.Duration) {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(wait))
	b, err := cl.br.ReadByte()
	var ne net.Error
	switch {
	case err == nil:
		cl.t.Fatalf("connection sent %#x, want it closed", b)
	case errors.As(err, &ne) && ne.Timeout():
		cl.t.Fatalf("connection still open after %s", wait)
	}
}

// rejected is switchd_lane_connections_rejected_total{reason}.
func (tl *testLane) rejected(reason string) float64 {
	mfs, err := tl.reg.Gather()
	if err != nil {
		tl.h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "switchd_lane_connections_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// refusalLines are the lane's "connections refused" summary lines, each
// as its count for reason.
func (tl *testLane) refusalLines(reason string) []int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var counts []int
	for _, line := range strings.Split(tl.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "connections refused" {
			continue
		}
		n, _ := rec[reason].(float64)
		counts = append(counts, int(n))
	}
	return counts
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// One address cannot take every slot of a lane: past conns_per_source_max
// its new connections are closed at once, while another address is still
// served; refusals are counted and logged as a summary (issue 9 item 6).
func TestConnsPerSourceMax(t *testing.T) {
	h := newHarness(t, nil)
	const perSource = 3
	tl := newTestLane(h, func(lc *switching.LaneConfig) { lc.ConnsPerSourceMax = perSource })
	var held []*client
	for i := 0; i < perSource; i++ {
		cl := tl.dial("127.0.0.1")
		if !cl.echo(i + 1) { // accepted and counted before the next dials
			t.Fatalf("connection %d of %d from one source not served", i+1, perSource)
		}
		held = append(held, cl)
	}
	const extra = 6
	for i := 0; i < extra; i++ {
		tl.dial("127.0.0.1").closedByPeer(5 * time.Second)
	}
	other := tl.dial("127.0.0.2")
	if !other.echo(1) {
		t.Fatal("a connection from another source was not served")
	}
	other.c.Close()
	for i, cl := range held {
		if !cl.echo(10 + i) {
			t.Fatalf("held connection %d not served after the refusals", i)
		}
		cl.c.Close() // so that Close need not linger for it
	}
	if got := tl.rejected("source_full"); got != extra {
		t.Fatalf("rejected{reason=source_full} = %v, want %d", got, extra)
	}
	tl.Close() // logs what the summary still holds
	lines := tl.refusalLines("source_full")
	if len(lines) == 0 || lines[0] != 1 || sum(lines) != extra || len(lines) >= extra {
		t.Fatalf("refusal log lines (source_full counts) %v: want the first refusal at once, the rest summed in fewer lines, %d in all", lines, extra)
	}
}

// A connection that sends no whole frame is closed after
// first_frame_timeout, not the idle timeout; one that has sent a frame
// lives on under the idle timeout (issue 9 item 6).
func TestFirstFrameTimeout(t *testing.T) {
	h := newHarness(t, nil)
	const first = 300 * time.Millisecond
	tl := newTestLane(h, func(lc *switching.LaneConfig) {
		lc.FirstFrameTimeout = first
		lc.IdleTimeout = time.Minute
	})
	talker := tl.dial("")
	if !talker.echo(1) {
		t.Fatal("echo not answered")
	}
	silent := tl.dial("")
	opened := time.Now()
	partial := tl.dial("") // a header and half a payload, then nothing
	if _, err := partial.c.Write([]byte{0x00, 0x20, '0', '8', '0', '0'}); err != nil {
		t.Fatal(err)
	}
	silent.closedByPeer(10 * time.Second)
	if waited := time.Since(opened); waited < first {
		t.Fatalf("silent connection closed after %s, before first_frame_timeout %s", waited, first)
	}
	partial.closedByPeer(10 * time.Second)
	// The talker opened before both and has outlived its own first-frame
	// deadline: it is under the idle timeout now.
	if !talker.echo(2) {
		t.Fatal("a connection that had sent a frame was closed by first_frame_timeout")
	}
	talker.c.Close() // so that Close need not linger for it
	if got := tl.rejected("first_frame_timeout"); got != 2 {
		t.Fatalf("rejected{reason=first_frame_timeout} = %v, want 2", got)
	}
	tl.Close()
	if lines := tl.refusalLines("first_frame_timeout"); sum(lines) != 2 || len(lines) > 2 {
		t.Fatalf("refusal log lines (first_frame_timeout counts) %v, want 2 in all", lines)
	}
}

// The lane limits of issue 9 item 6 are filled in by default and bounded.
func TestLaneLimitsConfig(t *testing.T) {
	f := config.Demo()
	f.DataDir = t.TempDir()
	f.Finish()
	lc := f.Switch.Lanes[0]
	if lc.ConnsPerSourceMax != switching.DefaultLane().ConnsPerSourceMax || lc.FirstFrameTimeout != switching.DefaultLane().FirstFrameTimeout {
		t.Fatalf("demo lane defaults: conns_per_source_max %d, first_frame_timeout %s", lc.ConnsPerSourceMax, lc.FirstFrameTimeout)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*switching.LaneConfig){
		"conns_per_source_max zero":      func(l *switching.LaneConfig) { l.ConnsPerSourceMax = 0 },
		"first_frame_timeout zero":       func(l *switching.LaneConfig) { l.FirstFrameTimeout = 0 },
		"first_frame_timeout above idle": func(l *switching.LaneConfig) { l.FirstFrameTimeout = l.IdleTimeout + time.Second },
	} {
		g := config.Demo()
		g.DataDir = f.DataDir
		g.Finish()
		mutate(&g.Switch.Lanes[0])
		if err := g.Validate(); !errors.Is(err, switching.ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
	}
}

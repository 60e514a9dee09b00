package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/internal/switchdtest"
)

// BenchmarkRouteChange measures issue 10's goal: the time from a route
// change's answer on one node (PUT /v1/routes/{id} on n2) to the first
// message on another node's lane (n3) that takes the new route, with the
// cluster under load (switchload, BENCH_ROUTE_RATE/s over all three lanes,
// default 5,000). Each iteration flips the ELEC rule between two billers.
//
// A prober sends ELEC bill payments back to back on one connection to n3
// and notes when it sent each (by STAN). Afterwards the transfers of both
// billers say which biller each probe credited; a flip's latency is the
// send time of the first probe that credited the new biller minus the
// PUT's answer time (0 when a probe sent before the answer already took
// it). The resolution is one probe round trip. Run with `make bench-route`:
//
//	go test ./cmd/switchd -run '^$' -bench RouteChange -benchtime 100x
func BenchmarkRouteChange(b *testing.B) {
	bin := buildBinary(b, "switchd")
	load := buildBinary(b, "switchload")
	nodes := startClusterNodes(b, bin, clusterSpec{})
	n2, n3 := nodes[1], nodes[2]
	rule := elecRule(b, n2.ops)
	billers := [2]string{rule.SettlementAccount, "biller-grid-co"}

	rate := os.Getenv("BENCH_ROUTE_RATE")
	if rate == "" {
		rate = "5000"
	}
	lanes := nodes[0].lane + "," + n2.lane + "," + n3.lane
	ld := exec.Command(load, "--addr", lanes, "--ops", "http://"+nodes[0].ops, "--credentials", nodes[0].creds, "--conns", "9", "--rate", rate,
		"--duration", "1h", "--mix", "purchase=100", "--quiet")
	var loadOut bytes.Buffer
	ld.Stdout, ld.Stderr = &loadOut, &loadOut
	if err := ld.Start(); err != nil {
		b.Fatal(err)
	}
	loadDone := make(chan struct{})
	go func() { ld.Wait(); close(loadDone) }()
	defer func() { ld.Process.Kill(); <-loadDone }()
	time.Sleep(3 * time.Second) // switchload creates its cards, then offers the rate

	pr := startProber(b, n3.lane)
	defer pr.stop()
	type flip struct {
		to     string
		answer time.Time
	}
	flips := make([]flip, 0, b.N)
	msgs0, t0 := laneMessages(b, nodes), time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := billers[(i+1)%2]
		putRoute(b, n2.ops, rule, to, fmt.Sprintf("bench flip %d", i))
		flips = append(flips, flip{to: to, answer: time.Now()})
		time.Sleep(100 * time.Millisecond) // let probes take the new route before the next flip
	}
	b.StopTimer()
	msgs1, t1 := laneMessages(b, nodes), time.Now()
	probes := pr.stop()
	select {
	case <-loadDone:
		b.Fatalf("switchload stopped early:\n%s", loadOut.String())
	default:
	}
	credited := map[string]string{} // probe STAN → biller credited
	for _, acct := range billers {
		for _, tr := range transfersOf(b, n3.ops, acct) {
			credited[tr.Ref.STAN] = acct
		}
	}
	var lat []time.Duration
	for i, f := range flips {
		end := time.Now()
		if i+1 < len(flips) {
			end = flips[i+1].answer
		}
		found := false
		for _, p := range probes {
			if p.sent.Before(f.answer.Add(-50*time.Millisecond)) || !p.sent.Before(end) {
				continue
			}
			if credited[p.stan] == f.to {
				lat = append(lat, max(0, p.sent.Sub(f.answer)))
				found = true
				break
			}
		}
		if !found {
			b.Fatalf("flip %d to %s: no probe took the new route within %s", i, f.to, end.Sub(f.answer))
		}
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(float64(len(probes)), "probes")
	// What the cluster answered meanwhile, over all lanes: the load the
	// latency was measured under (switchload's rate plus the probes).
	b.ReportMetric((msgs1-msgs0)/t1.Sub(t0).Seconds(), "lane-msgs/s")
	b.ReportMetric(0, "ns/op")
}

// laneMessages sums switchd_lane_messages_total over the nodes.
func laneMessages(tb testing.TB, nodes []*clusterNode) float64 {
	tb.Helper()
	var sum float64
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.ops + "/metrics")
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "switchd_lane_messages_total{") {
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
					sum += v
				}
			}
		}
	}
	return sum
}

func buildBinary(tb testing.TB, name string) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and starts binaries")
	}
	bin := filepath.Join(tb.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/switchd/switchd/cmd/"+name).CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

type benchRoute struct {
	ID                string `json:"id"`
	BillType          string `json:"bill_type"`
	PayerType         string `json:"payer_type"`
	Partner           string `json:"partner"`
	Destination       string `json:"destination"`
	SettlementAccount string `json:"settlement_account"`
}

func elecRule(tb testing.TB, ops string) benchRoute {
	tb.Helper()
	resp, err := switchdtest.Get("http://" + ops + "/v1/routes")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Routes []benchRoute `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		tb.Fatal(err)
	}
	for _, r := range out.Routes {
		if r.BillType == "ELEC" {
			return r
		}
	}
	tb.Fatalf("no ELEC rule in %+v", out.Routes)
	return benchRoute{}
}

func putRoute(tb testing.TB, ops string, r benchRoute, account, reason string) {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"bill_type": r.BillType, "payer_type": r.PayerType, "partner": r.Partner,
		"destination": r.Destination, "settlement_account": account, "reason": reason})
	req, _ := http.NewRequest(http.MethodPut, "http://"+ops+"/v1/routes/"+r.ID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := switchdtest.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("PUT route: %s %s", resp.Status, b)
	}
}

type benchTransfer struct {
	ID  string `json:"id"`
	Ref struct {
		STAN string `json:"stan"`
		TID  string `json:"tid"`
	} `json:"ref"`
}

// transfersOf lists the probes' transfers of account (terminal PROBE001).
func transfersOf(tb testing.TB, ops, account string) []benchTransfer {
	tb.Helper()
	var all []benchTransfer
	after := ""
	for {
		resp, err := switchdtest.Get(fmt.Sprintf("http://%s/v1/transfers?account=%s&limit=1000&after=%s", ops, account, after))
		if err != nil {
			tb.Fatal(err)
		}
		var page struct {
			Transfers []benchTransfer `json:"transfers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, t := range page.Transfers {
			if t.Ref.TID == "PROBE001" {
				all = append(all, t)
			}
		}
		if len(page.Transfers) < 1000 {
			return all
		}
		after = page.Transfers[len(page.Transfers)-1].ID
	}
}

type probe struct {
	stan string
	sent time.Time
}

type prober struct {
	tb    testing.TB
	quit  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	sent  []probe
	err   error
	once  sync.Once
	conn  net.Conn
	codec *codec.Codec
}

// startProber sends ELEC bill payments of 0.01 from card 4111 on lane,
// one at a time, until stop.
func startProber(tb testing.TB, lane string) *prober {
	tb.Helper()
	c, err := codec.Load("iso87ascii")
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", lane, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	p := &prober{tb: tb, quit: make(chan struct{}), done: make(chan struct{}), conn: conn, codec: c}
	go p.run()
	return p
}

func (p *prober) run() {
	defer close(p.done)
	fr := codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192}
	rd := bufio.NewReader(p.conn)
	for stan := 1; ; stan++ {
		select {
		case <-p.quit:
			return
		default:
		}
		m := new(codec.Message)
		m.MTI = "0200"
		s := fmt.Sprintf("%06d", stan%1_000_000)
		for id, v := range map[int]string{2: "4111111111111111", 3: "500000", 4: "000000000001",
			7: "1201000000", 11: s, 32: "100001", 37: fmt.Sprintf("PRB%09d", stan), 41: "PROBE001", 48: "BT=ELEC", 49: "840"} {
			m.Set(id, v)
		}
		b, err := p.codec.Pack(nil, m)
		if err == nil {
			var f []byte
			f, err = fr.AppendFrame(nil, b)
			if err == nil {
				p.conn.SetDeadline(time.Now().Add(5 * time.Second))
				sent := time.Now()
				if _, err = p.conn.Write(f); err == nil {
					var ans []byte
					if ans, err = fr.ReadFrame(rd, nil); err == nil {
						r := new(codec.Message)
						if err = p.codec.Unpack(ans, r); err == nil && r.Get(39) != "00" {
							err = fmt.Errorf("probe %s answered %s", s, r.Get(39))
						}
						p.mu.Lock()
						p.sent = append(p.sent, probe{stan: s, sent: sent})
						p.mu.Unlock()
					}
				}
			}
		}
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
	}
}

// stop ends the prober and returns its probes in send order.
func (p *prober) stop() []probe {
	p.once.Do(func() {
		close(p.quit)
		<-p.done
		p.conn.Close()
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil && !strings.Contains(p.err.Error(), "use of closed") {
		p.tb.Fatalf("prober: %v", p.err)
	}
	return p.sent
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
)

// flakyLane is a fake switch lane that misbehaves on the first sight of a
// request: it stays silent, answers 96, or drops the connection. Repeats
// of a request it has seen before get a consistent answer. It keeps no
// ledger: it tests switchload's resend logic, not the switch.
type flakyLane struct {
	t      *testing.T
	ln     net.Listener
	codec  *codec.Codec
	framer codec.Framer

	mu    sync.Mutex // protects seen, rng, conns
	seen  map[string]int
	rng   *rand.Rand
	conns map[net.Conn]bool

	wg sync.WaitGroup
}

func newFlakyLane(t *testing.T) *flakyLane {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := codec.Load("iso87ascii")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyLane{
		t: t, ln: ln, codec: c,
		framer: codec.Framer{Header: codec.HeaderBinary2, FrameBytesMax: 8192},
		seen:   map[string]int{}, rng: rand.New(rand.NewPCG(3, 4)), conns: map[net.Conn]bool{},
	}
	f.wg.Add(1)
	go f.accept()
	return f
}

func (f *flakyLane) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *flakyLane) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = true
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

// sawKey reports whether a request with key (STAN + field 7) reached
// this lane.
func (f *flakyLane) sawKey(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[key] > 0
}

// keys is every request key that reached this lane.
func (f *flakyLane) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.seen))
	for k := range f.seen {
		keys = append(keys, k)
	}
	return keys
}

// What the lane does with the first sight of a request.
const (
	actAnswer = iota
	actSilent
	act96
	actDrop
)

func (f *flakyLane) decide(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[key]++
	if f.seen[key] > 1 {
		return actAnswer
	}
	switch n := f.rng.IntN(100); {
	case n < 5:
		return actSilent
	case n < 10:
		return act96
	case n < 11:
		return actDrop
	}
	return actAnswer
}

func (f *flakyLane) serve(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	var req, resp codec.Message
	for {
		b, err := f.framer.ReadFrame(br, nil)
		if err != nil {
			return
		}
		req.Reset()
		if err := f.codec.Unpack(b, &req); err != nil {
			f.t.Errorf("flaky lane: unpack: %v", err)
			return
		}
		key := req.Get(11) + req.Get(7)
		out := codec.Response{Code: "00"}
		switch f.decide(key) {
		case actSilent:
			continue
		case actDrop:
			return
		case act96:
			out.Code = "96"
		default:
			// The same key always gets the same approval code.
			h := fnv.New32a()
			io.WriteString(h, key)
			out.AuthCode = fmt.Sprintf("%06d", h.Sum32()%1_000_000)
			if req.Get(3) == "310000" {
				usd, _ := currency.ByCode("USD")
				out.Balances = []codec.Balance{
					{AccountType: "00", AmountType: codec.AmountTypeLedger, Currency: usd, Minor: 1000},
					{AccountType: "00", AmountType: codec.AmountTypeAvailable, Currency: usd, Minor: 900},
				}
			}
		}
		codec.BuildResponse(&req, out, &resp)
		p, err := f.codec.Pack(nil, &resp)
		if err != nil {
			f.t.Errorf("flaky lane: pack: %v", err)
			return
		}
		fr, _ := f.framer.AppendFrame(nil, p)
		if _, err := c.Write(fr); err != nil {
			return
		}
	}
}

// fakeOps answers account creation and metrics the way switchd's ops API
// does, without a ledger.
func fakeOps(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/accounts", func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		p, err := codec.ParsePAN(req.PAN)
		if err != nil {
			http.Error(w, "bad pan", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(accountView{ID: req.ID, Kind: req.Kind, Currency: req.Currency, MaskedPAN: p.Masked()})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "process_resident_memory_bytes 1.048576e+06\n")
	})
	return httptest.NewServer(mux)
}

// flakyConfig is a one-second run against flaky lanes at addr: short
// timeouts so faults are repeated many times, no balance verification.
func flakyConfig(addr, opsURL string, seed int64) Config {
	cfg := DefaultConfig()
	cfg.Addr, cfg.Ops = addr, opsURL
	cfg.Duration = time.Second
	cfg.Conns, cfg.Inflight = 3, 16
	cfg.Cards = 5
	cfg.Timeout = 200 * time.Millisecond
	cfg.Verify = false
	cfg.Quiet = true
	cfg.Seed = seed
	return cfg
}

// Requests that get no answer, a 96 or a dropped connection are repeated
// until they get a real one; nothing stays unresolved, and every repeat
// gets the answer its original got.
func TestResendsResolveEveryRequest(t *testing.T) {
	lane := newFlakyLane(t)
	defer lane.close()
	ops := fakeOps(t)
	defer ops.Close()

	cfg := flakyConfig(lane.ln.Addr().String(), ops.URL, 11)
	sum, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unresolved != 0 || sum.Answered != sum.Sent {
		t.Errorf("sent %d, answered %d, unresolved %d", sum.Sent, sum.Answered, sum.Unresolved)
	}
	if sum.Timeouts == 0 || sum.RC96Repeated == 0 || sum.ConnLost == 0 || sum.Resent == 0 {
		t.Errorf("faults not exercised: timeouts %d, 96 %d, connections lost %d, resent %d",
			sum.Timeouts, sum.RC96Repeated, sum.ConnLost, sum.Resent)
	}
	if sum.ByRC["96"] != 0 {
		t.Errorf("a 96 counted as a final answer: %v", sum.ByRC)
	}
	if sum.Repeats.Checked == 0 || sum.Repeats.Mismatches != 0 {
		t.Errorf("repeats: %+v", sum.Repeats)
	}
	if sum.SwitchRSSBytes == nil || *sum.SwitchRSSBytes != 1<<20 {
		t.Errorf("switch RSS = %v, want 1 MiB", sum.SwitchRSSBytes)
	}
	if !sum.OK {
		t.Errorf("run not OK: %+v", sum)
	}
}

// One run spread over two lanes that drop connections: both lanes get
// traffic, and a request never reaches both, because a connection's
// repeats stay on it and it redials its own lane. Purchases only: the
// repeat kind may send an earlier request's key on another connection.
func TestSpreadOverLanes(t *testing.T) {
	a, b := newFlakyLane(t), newFlakyLane(t)
	defer a.close()
	defer b.close()
	ops := fakeOps(t)
	defer ops.Close()

	cfg := flakyConfig(a.ln.Addr().String()+","+b.ln.Addr().String(), ops.URL, 13)
	cfg.Mix = mix{kindPurchase: 1}
	sum, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Config.Addr != cfg.Addr {
		t.Errorf("summary addr %q, want %q", sum.Config.Addr, cfg.Addr)
	}
	if sum.Unresolved != 0 || sum.Answered != sum.Sent || sum.ConnLost == 0 || sum.Resent == 0 {
		t.Errorf("sent %d, answered %d, unresolved %d, connections lost %d, resent %d",
			sum.Sent, sum.Answered, sum.Unresolved, sum.ConnLost, sum.Resent)
	}
	keysA, keysB := a.keys(), b.keys()
	if len(keysA) == 0 || len(keysB) == 0 {
		t.Fatalf("lane a saw %d requests, lane b %d: want both busy", len(keysA), len(keysB))
	}
	// Conns 0 and 2 dial a, conn 1 dials b.
	if len(keysA) < len(keysB) {
		t.Errorf("lane a (2 conns) saw %d requests, lane b (1 conn) %d", len(keysA), len(keysB))
	}
	both := 0
	for _, k := range keysA {
		if b.sawKey(k) {
			both++
		}
	}
	if both > 0 {
		t.Errorf("%d requests reached both lanes", both)
	}
	if int64(len(keysA)+len(keysB)) != sum.Sent {
		t.Errorf("lanes saw %d+%d requests, sent %d", len(keysA), len(keysB), sum.Sent)
	}
}

// A lane that never answers: every request is repeated until it runs out
// of sends and is then reported as unresolved, within the drain bound.
func TestSilentSwitchGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // protects conns
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c) }()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	ops := fakeOps(t)
	defer ops.Close()

	cfg := DefaultConfig()
	cfg.Addr, cfg.Ops = ln.Addr().String(), ops.URL
	cfg.Duration = 200 * time.Millisecond
	cfg.Conns, cfg.Inflight = 1, 4
	cfg.Cards = 2
	cfg.Timeout = 50 * time.Millisecond
	cfg.Verify = false
	cfg.Quiet = true
	start := time.Now()
	sum, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if took, bound := time.Since(start), cfg.Duration+sendsMax*cfg.Timeout+drainSlack+time.Second; took > bound {
		t.Errorf("run took %v, bound %v", took, bound)
	}
	if sum.Sent != 4 || sum.Unresolved != 4 || sum.Answered != 0 {
		t.Errorf("sent %d, unresolved %d, answered %d; want 4, 4, 0", sum.Sent, sum.Unresolved, sum.Answered)
	}
	if sum.Resent != 4*(sendsMax-1) {
		t.Errorf("resent %d, want %d", sum.Resent, 4*(sendsMax-1))
	}
}

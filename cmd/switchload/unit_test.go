package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/specs"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    mix
		wantErr string
	}{
		{in: defaultMix, want: mix{60, 10, 8, 7, 10, 5}},
		{in: "purchase=1", want: mix{1, 0, 0, 0, 0, 0}},
		{in: " auth = 3 , balance=2,", want: mix{0, 3, 0, 0, 0, 2}},
		{in: "purchase=0,auth=0", wantErr: "no positive weight"},
		{in: "", wantErr: "no positive weight"},
		{in: "refund=5", wantErr: "unknown kind"},
		{in: "purchase", wantErr: "want kind=weight"},
		{in: "purchase=-1", wantErr: "weight must be"},
		{in: "purchase=x", wantErr: "weight must be"},
		{in: "purchase=1,purchase=2", wantErr: "twice"},
	}
	for _, tt := range tests {
		got, err := parseMix(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseMix(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseMix(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		// String writes what parseMix reads.
		if again, err := parseMix(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q via %q = %v, %v", tt.in, got.String(), again, err)
		}
	}
}

// Every draw in [0, total) maps to a kind, each kind exactly weight times.
func TestMixPick(t *testing.T) {
	m := mix{60, 0, 8, 7, 10, 5}
	var got mix
	for n := range m.total() {
		got[m.pick(n)]++
	}
	if got != m {
		t.Fatalf("pick over [0,%d) = %v, want %v", m.total(), got, m)
	}
}

func TestTestPAN(t *testing.T) {
	// Known Luhn check digits.
	for body, want := range map[string]int{"411111111111111": 1, "7992739871": 3, "550000000000000": 4, "400000000000000": 2} {
		if got := luhnCheckDigit(body); got != want {
			t.Errorf("luhnCheckDigit(%s) = %d, want %d", body, got, want)
		}
	}
	seen := map[string]bool{}
	for seq := 1; seq <= 2000; seq++ {
		pan := testPAN("999999", seq)
		if len(pan) != 16 || !strings.HasPrefix(pan, "999999") {
			t.Fatalf("testPAN(%d) = %q: want 16 digits under BIN 999999", seq, pan)
		}
		if _, err := codec.ParsePAN(pan); err != nil {
			t.Fatalf("testPAN(%d) fails the codec's check: %v", seq, err)
		}
		if seen[pan] {
			t.Fatalf("testPAN(%d) repeats an earlier PAN", seq)
		}
		seen[pan] = true
	}
	if got := cardID("999999", 7); got != "load-999999-000007" {
		t.Errorf("cardID = %q", got)
	}
}

// field 90 and 95 as the switch's golden tests write them.
func TestField90And95(t *testing.T) {
	got := field90(ref{mti: "0100", stan: "000010", f7: "1121120000"}, "100001")
	if want := "010000001011211200000000010000100000000000"; got != want {
		t.Errorf("field90 = %s, want %s", got, want)
	}
	if len(got) != 42 {
		t.Errorf("field90 has %d characters, want 42", len(got))
	}
	if got, want := field95(6000), "000000006000000000000000C00000000C00000000"; got != want {
		t.Errorf("field95 = %s, want %s", got, want)
	}
}

func TestModel(t *testing.T) {
	type want struct{ posted, pending int64 }
	tests := []struct {
		name string
		run  func(c *card)
		want want
	}{
		{"purchase", func(c *card) { c.purchased(1234) }, want{-1234, 0}},
		{"auth only", func(c *card) { c.authorized(ref{}, 5000, 1) }, want{0, 5000}},
		{"auth, full completion", func(c *card) {
			c.authorized(ref{}, 5000, 1).completed(5000, true)
		}, want{-5000, 0}},
		{"auth, final completion for less releases the rest", func(c *card) {
			c.authorized(ref{}, 5000, 1).completed(3000, true)
		}, want{-3000, 0}},
		{"auth, two partial completions then a final", func(c *card) {
			h := c.authorized(ref{}, 10000, 3)
			h.completed(3000, false)
			h.completed(2000, false)
			h.completed(1000, true)
		}, want{-6000, 0}},
		{"auth, partial completion, rest still held", func(c *card) {
			c.authorized(ref{}, 10000, 2).completed(3000, false)
		}, want{-3000, 7000}},
		{"auth, non-final completion of everything closes the hold", func(c *card) {
			h := c.authorized(ref{}, 4000, 2)
			h.completed(4000, false)
			if !h.closed {
				t.Error("hold not closed after capturing all of it")
			}
		}, want{-4000, 0}},
		{"auth reversed in full", func(c *card) {
			c.authorized(ref{}, 10000, 1).reversedBy(10000)
		}, want{0, 0}},
		{"auth reversed in part, then the rest", func(c *card) {
			h := c.authorized(ref{}, 10000, 1)
			h.reversedBy(4000)
			if h.closed || h.held != 6000 {
				t.Errorf("after partial reversal: closed=%v held=%d", h.closed, h.held)
			}
			h.reversedBy(6000)
			if !h.closed {
				t.Error("hold not closed after reversing the rest")
			}
		}, want{0, 0}},
		{"partial completion then reversal of the rest", func(c *card) {
			h := c.authorized(ref{}, 10000, 2)
			h.completed(2500, false)
			h.reversedBy(7500)
		}, want{-2500, 0}},
		{"reversal larger than held releases only what is held", func(c *card) {
			h := c.authorized(ref{}, 1000, 2)
			h.completed(400, false)
			h.reversedBy(1000)
		}, want{-400, 0}},
		{"purchase reversed in part and then in full", func(c *card) {
			c.purchased(10000)
			p := &purchase{card: c, amount: 10000}
			p.reversedBy(4000)
			if p.outstanding() != 6000 {
				t.Errorf("outstanding = %d, want 6000", p.outstanding())
			}
			p.reversedBy(6000)
		}, want{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &card{}
			tt.run(c)
			if got := (want{c.postedDelta, c.pendingDelta}); got != tt.want {
				t.Errorf("posted, pending change = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	cards := []*card{
		{id: "a", postedDelta: -100, pendingDelta: 50},
		{id: "b", postedDelta: -100},
	}
	before := map[string]accountView{"a": {Posted: 1000, Pending: 10}, "b": {Posted: 1000}}
	after := map[string]accountView{"a": {Posted: 900, Pending: 60}, "b": {Posted: 901}}
	got := compare(cards, before, after)
	if len(got) != 1 || got[0].Account != "b" || got[0].PostedWant != 900 || got[0].PostedGot != 901 {
		t.Fatalf("compare = %+v, want one mismatch on b (want 900, got 901)", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := rng.Int64N(1 << uint(rng.IntN(62)+1))
		i := bucketOf(v)
		hi := bucketHigh(i)
		if hi < v {
			t.Fatalf("bucketHigh(bucketOf(%d)) = %d, below the value", v, hi)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("value %d also fits the previous bucket (high %d)", v, bucketHigh(i-1))
		}
		if v >= histSubCount && float64(hi-v)/float64(v) > 1.0/histHalf {
			t.Fatalf("value %d reported as %d: more than 1/%d off", v, hi, histHalf)
		}
	}
	if got := bucketOf(1<<63 - 1); got >= histBuckets {
		t.Fatalf("bucketOf(max int64) = %d, beyond %d buckets", got, histBuckets)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	// 1..100000 µs, uniformly.
	for i := 1; i <= 100000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Millisecond},
		{0.9, 90 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{0.999, 99900 * time.Microsecond},
		{1, 100 * time.Millisecond},
	} {
		got := h.quantile(tt.q)
		if got < tt.want || float64(got-tt.want) > float64(tt.want)/histHalf {
			t.Errorf("quantile(%v) = %v, want %v (at most 1/%d above)", tt.q, got, tt.want, histHalf)
		}
	}
	if h.max != int64(100*time.Millisecond) || h.min != int64(time.Microsecond) {
		t.Errorf("min, max = %d, %d", h.min, h.max)
	}
	// Small values are exact.
	var s histogram
	for _, v := range []time.Duration{3, 3, 7, 200} {
		s.record(v)
	}
	if got := s.quantile(0.5); got != 3 {
		t.Errorf("median of 3,3,7,200 = %d, want 3", got)
	}
	if got := s.quantile(0.75); got != 7 {
		t.Errorf("p75 of 3,3,7,200 = %d, want 7", got)
	}
	// merge equals recording everything in one.
	var a, b, all histogram
	for i := range 1000 {
		d := time.Duration(i*i) * time.Microsecond
		all.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	if a != all {
		t.Error("merge of two halves differs from one histogram of everything")
	}
}

func TestParseRSS(t *testing.T) {
	page := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes_total 1
process_resident_memory_bytes 5.0331648e+07
process_virtual_memory_bytes 1.2e+09
`
	v, ok, err := parseRSS(strings.NewReader(page))
	if err != nil || !ok || v != 50331648 {
		t.Fatalf("parseRSS = %d, %v, %v; want 50331648", v, ok, err)
	}
	if _, ok, _ := parseRSS(strings.NewReader("go_goroutines 12\n")); ok {
		t.Fatal("parseRSS found RSS on a page without it")
	}
	if v, _, _ := parseRSS(strings.NewReader("process_resident_memory_bytes 42 1700000000000\n")); v != 42 {
		t.Fatalf("with a timestamp: %d, want 42", v)
	}
}

// Everything the book builds is a request the switch accepts: it packs in
// every dialect, the codec's own typed view parses it, field 90 names an approved original, and
// amounts stay inside what is held or outstanding.
func TestBookBuildsValidRequests(t *testing.T) {
	usd, _ := currency.ByCode("USD")
	cfg := DefaultConfig()
	cards := []*card{{id: "load-1", pan: testPAN("999999", 1)}, {id: "load-2", pan: testPAN("999999", 2)}}
	b := newBook(cfg, usd, cards, "TEST1", 999_990, 42)
	var codecs []*codec.Codec
	for _, d := range specs.Names() {
		c, err := codec.Load(d)
		if err != nil {
			t.Fatal(err)
		}
		codecs = append(codecs, c)
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	keys := map[string]bool{}
	rrns := map[string]bool{}
	var kinds [kindCount]int
	for i := range 20000 {
		r := b.next(now, now)
		kinds[r.kind]++
		if _, err := codec.ParseRequest(&r.msg); err != nil {
			t.Fatalf("request %d (%s %s) does not parse: %v", i, r.kind, r.msg.MTI, err)
		}
		for _, c := range codecs {
			if _, err := c.Pack(nil, &r.msg); err != nil {
				t.Fatalf("request %d (%s) does not pack in %s: %v", i, r.kind, c.Dialect(), err)
			}
		}
		if r.kind == kindRepeat {
			if r.key != r.orig.key || r.msg.MTI != repeatMTI(r.orig.mti) {
				t.Fatalf("repeat %s key %s does not repeat %s key %s", r.msg.MTI, r.key, r.orig.mti, r.orig.key)
			}
		} else {
			if keys[r.key] {
				t.Fatalf("request %d reuses STAN+field 7 %s", i, r.key)
			}
			keys[r.key] = true
		}
		if r.kind == kindPurchase || r.kind == kindAuth || r.kind == kindBalance {
			if rrns[r.msg.Get(37)] {
				t.Fatalf("request %d reuses RRN %s", i, r.msg.Get(37))
			}
			rrns[r.msg.Get(37)] = true
		}
		switch {
		case r.kind == kindCompletion:
			if r.amount < 1 || r.amount > r.hold.held {
				t.Fatalf("completion of %d with %d held", r.amount, r.hold.held)
			}
			if cs := r.msg.Get(48); r.hold.captures > 1 && !strings.HasPrefix(cs, "CS=") {
				t.Fatalf("partial completion without CS: %q", cs)
			}
		case r.kind == kindReversal && r.hold != nil:
			if r.amount < 1 || r.amount > r.hold.held {
				t.Fatalf("reversal of %d with %d held", r.amount, r.hold.held)
			}
		case r.kind == kindReversal:
			if r.amount < 1 || r.amount > r.purchase.outstanding() {
				t.Fatalf("reversal of %d with %d outstanding", r.amount, r.purchase.outstanding())
			}
		}
		if r.kind == kindReversal {
			req, _ := codec.ParseRequest(&r.msg)
			reversed := req.Amount
			if req.ActualAmount != nil {
				reversed -= *req.ActualAmount
			}
			if reversed != r.amount {
				t.Fatalf("reversal fields say %d, model says %d", reversed, r.amount)
			}
		}
		// Approve everything; the switch would too with ample funds.
		b.settle(r, "00", "ABC123", "0001840C0000000010000002840C000000001000")
		if i%1000 == 999 {
			now = now.Add(time.Second)
		}
	}
	for k, n := range kinds {
		if cfg.Mix[k] > 0 && n == 0 {
			t.Errorf("no %s in 20000 requests", kind(k))
		}
	}
}

func TestRepeatMismatchDetected(t *testing.T) {
	usd, _ := currency.ByCode("USD")
	cfg := DefaultConfig()
	cfg.Mix = mix{kindPurchase: 1}
	b := newBook(cfg, usd, []*card{{id: "x", pan: testPAN("999999", 1)}}, "TEST2", 0, 1)
	now := time.Now()
	orig := b.next(now, now)
	b.settle(orig, "00", "AUTH01", "")
	rep := b.repeat(orig)
	if v := b.settle(rep, "00", "AUTH01", ""); !v.repeatChecked || v.repeatMismatch != nil {
		t.Fatalf("identical repeat: %+v", v)
	}
	rep = b.repeat(orig)
	v := b.settle(rep, "51", "", "")
	if v.repeatMismatch == nil || v.repeatMismatch.WantRC != "00" || v.repeatMismatch.GotRC != "51" {
		t.Fatalf("different repeat answer not flagged: %+v", v)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.Conns = 0 },
		func(c *Config) { c.Inflight = inflightMax + 1 },
		func(c *Config) { c.Addr = "nohostport" },
		func(c *Config) { c.Ops = "127.0.0.1:8080" },
		func(c *Config) { c.Header = "ascii2" },
		func(c *Config) { c.Dialect = "iso93" },
		func(c *Config) { c.Currency = "XXX1" },
		func(c *Config) { c.Opening = "12.345" },
		func(c *Config) { c.Acquirer = "12a" },
		func(c *Config) { c.BIN = "12345" },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.Rate = -1 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	if _, err := parseFlags("switchload", []string{"--mix", "purchase=1", "--rate", "100", "--header", "ascii4"}); err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if _, err := parseFlags("switchload", []string{"extra"}); err == nil {
		t.Fatal("parseFlags accepted a positional argument")
	}
}

func TestParseAddrs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string // and the error names the bad entry
	}{
		{in: "127.0.0.1:8583", want: []string{"127.0.0.1:8583"}},
		{in: "127.0.0.1:8583,127.0.0.1:8584,127.0.0.1:8585", want: []string{"127.0.0.1:8583", "127.0.0.1:8584", "127.0.0.1:8585"}},
		{in: " a:1 , [::1]:2", want: []string{"a:1", "[::1]:2"}},
		{in: ":8583", want: []string{":8583"}}, // local system, as net.Dial takes it
		{in: "", wantErr: `entry 1 of 1 is empty`},
		{in: "a:1,", wantErr: `entry 2 of 2 is empty`},
		{in: "a:1,,b:2", wantErr: `entry 2 of 3 is empty`},
		{in: "a:1, ,b:2", wantErr: `entry 2 of 3 is empty`},
		{in: "a:1,nohostport", wantErr: `"nohostport": address nohostport: missing port`},
		{in: "a:1,b:", wantErr: `"b:": no port`},
		{in: "a:1,b:2,a:1", wantErr: `lists "a:1" twice`},
		{in: "a:1, a:1", wantErr: `lists "a:1" twice`},
	}
	for _, tt := range tests {
		got, err := parseAddrs(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrUsage) {
				t.Errorf("parseAddrs(%q) = %v, %v; want usage error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseAddrs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Connection i goes to lane i mod the count, so 9 connections over 3 lanes
// are 3 each, and a single lane takes them all.
func TestLaneAddr(t *testing.T) {
	addrs := []string{"a:1", "b:2", "c:3"}
	perLane := map[string][]int{}
	for i := range 9 {
		a := laneAddr(addrs, i)
		perLane[a] = append(perLane[a], i)
	}
	want := map[string][]int{"a:1": {0, 3, 6}, "b:2": {1, 4, 7}, "c:3": {2, 5, 8}}
	for a, ids := range want {
		if !slices.Equal(perLane[a], ids) {
			t.Errorf("lane %s got conns %v, want %v", a, perLane[a], ids)
		}
	}
	e := &engine{cfg: DefaultConfig(), addrs: addrs[:1]}
	for i := range 4 {
		if c := newConn(i, e); c.addr != "a:1" {
			t.Errorf("single lane: conn %d dials %q", i, c.addr)
		}
	}
}

// A connection redials its own lane, not the first one or the next one.
func TestRedialSameLane(t *testing.T) {
	var lns []net.Listener
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	e := &engine{cfg: DefaultConfig(), addrs: addrs, quiet: true}
	for _, id := range []int{1, 5} {
		c := newConn(id, e)
		nc := c.redial(make(chan struct{}))
		if nc == nil {
			t.Fatalf("conn %d: redial gave up", id)
		}
		if got, want := nc.RemoteAddr().String(), addrs[id%3]; got != want {
			t.Errorf("conn %d redialled %s, want %s", id, got, want)
		}
		nc.Close()
	}
}

func TestAddrConfig(t *testing.T) {
	c := DefaultConfig()
	c.Addr, c.Conns = "a:1, b:2,c:3", 3
	if err := c.Validate(); err != nil {
		t.Fatalf("three lanes, three conns: %v", err)
	}
	if got := c.view().Addr; got != "a:1,b:2,c:3" {
		t.Errorf("summary addr = %q, want the lanes joined by commas", got)
	}
	c.Conns = 2
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "3 lanes but --conns is 2") {
		t.Errorf("three lanes, two conns: %v", err)
	}
	c.Addr, c.Conns = "a:1,b:2,a:1", 9
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"a:1" twice`) {
		t.Errorf("duplicate lane: %v", err)
	}
	if got := DefaultConfig().view().Addr; got != "127.0.0.1:8583" {
		t.Errorf("single lane summary addr = %q", got)
	}
	cfg, err := parseFlags("switchload", []string{"--addr", "127.0.0.1:8583,127.0.0.1:8584", "--conns", "4"})
	if err != nil || cfg.Addr != "127.0.0.1:8583,127.0.0.1:8584" {
		t.Errorf("parseFlags: %+v, %v", cfg.Addr, err)
	}
	// scripts/cluster-bench.sh relies on a later --addr replacing an earlier one.
	cfg, err = parseFlags("switchload", []string{"--addr", "127.0.0.1:1", "--addr", "127.0.0.1:2,127.0.0.1:3"})
	if err != nil || cfg.Addr != "127.0.0.1:2,127.0.0.1:3" {
		t.Errorf("parseFlags with --addr twice: %+v, %v", cfg.Addr, err)
	}
	if _, err := parseFlags("switchload", []string{"--addr", "127.0.0.1:8583,,127.0.0.1:8584"}); !errors.Is(err, ErrUsage) {
		t.Errorf("parseFlags with an empty lane: %v", err)
	}
}

func TestTicketsIn(t *testing.T) {
	for _, tt := range []struct {
		window time.Duration
		rate   int
		want   int64
	}{
		{30 * time.Second, 5000, 150000},
		{200 * time.Millisecond, 100, 20},
		{201 * time.Millisecond, 100, 21}, // ticket 20 at 200ms is inside
		{durationMax, rateMax, 86_400_000_000},
		{0, 100, 0},
	} {
		if got := ticketsIn(tt.window, tt.rate); got != tt.want {
			t.Errorf("ticketsIn(%v, %d) = %d, want %d", tt.window, tt.rate, got, tt.want)
		}
	}
}

func TestSchedule(t *testing.T) {
	start := time.Now()
	end := start.Add(200 * time.Millisecond)
	tickets := make(chan time.Time, 1000)
	n := schedule(start, end, 100, tickets, make(chan struct{}))
	if n != 20 {
		t.Fatalf("100/s for 200ms scheduled %d tickets, want 20", n)
	}
	close(tickets)
	i := 0
	for at := range tickets {
		// Intended times are fixed by the schedule, not by when they were
		// taken: 10ms apart from start.
		if want := start.Add(time.Duration(i) * 10 * time.Millisecond); !at.Equal(want) {
			t.Fatalf("ticket %d at %v, want %v", i, at.Sub(start), want.Sub(start))
		}
		i++
	}
}

package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The spec's published test vector (Standard Webhooks, libraries/go
// webhook_test.go TestWebhookSign), through our Sign and Verify.
func TestSignSpecVector(t *testing.T) {
	raw, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got, err := Sign([][]byte{raw}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestKEKWrapUnwrap(t *testing.T) {
	k1, _ := NewKEK(make([]byte, 32))
	k2, _ := NewKEK([]byte(strings.Repeat("k", 32)))
	sec, err := NewSecret()
	if err != nil || !strings.HasPrefix(sec, "whsec_") || len(sec) != len("whsec_")+44 {
		t.Fatalf("secret %q %v", sec, err)
	}
	w, err := k1.Wrap("ep1", sec)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.Wrapped, strings.TrimPrefix(sec, "whsec_")) || w.KEK != k1.ID() {
		t.Fatalf("wrapped %+v", w)
	}
	raw, err := k1.Unwrap("ep1", w)
	if err != nil || "whsec_"+base64.StdEncoding.EncodeToString(raw) != sec {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := k1.Unwrap("ep2", w); !errors.Is(err, ErrUnwrap) {
		t.Errorf("unwrapped for another endpoint: %v", err)
	}
	if _, err := k2.Unwrap("ep1", w); !errors.Is(err, ErrUnwrap) || strings.Contains(err.Error(), sec) {
		t.Errorf("unwrapped under another KEK: %v", err)
	}
}

func TestGuard(t *testing.T) {
	g := NewGuard(Config{AllowHTTPHosts: []string{"127.0.0.1"}, AllowNetworks: []string{"127.0.0.0/8"}})
	ctx := context.Background()
	for _, u := range []string{"https://93.184.216.34/x", "http://127.0.0.1:9101/hook", "https://127.0.0.2/"} {
		if err := g.CheckURL(ctx, u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://93.184.216.34/", "https://10.0.0.1/", "https://169.254.169.254/latest", "https://[::1]/",
		"https://100.64.0.1/", "ftp://127.0.0.1/", "https://u:p@93.184.216.34/", "/relative", "https://[::ffff:10.0.0.1]/"} {
		if err := g.CheckURL(ctx, u); !errors.Is(err, ErrURL) {
			t.Errorf("%s allowed: %v", u, err)
		}
	}
	strict := NewGuard(Config{})
	if strict.Allowed(netip.MustParseAddr("127.0.0.1")) || !strict.Allowed(netip.MustParseAddr("93.184.216.34")) {
		t.Error("default rules")
	}
}

// rig is a store fed by a propose that applies at once (one node), a
// sender over it and a receiver.
type rig struct {
	t   *testing.T
	st  *store.Store
	kek *KEK
	s   *Sender
	mu  sync.Mutex // protects now, cmds
	// applyMu serializes propose: log indexes come one after another.
	applyMu sync.Mutex
	now     time.Time
	cmds    []store.Command
	ep      store.WebhookEndpoint
	secret  string
}

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func newRig(t *testing.T, url string, mod func(*Config)) *rig {
	cfg := store.DefaultConfig()
	cfg.Dir, cfg.CacheBytes, cfg.MemTableBytes = t.TempDir()+"/db", 32<<20, 4<<20
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, _ := NewKEK([]byte(strings.Repeat("x", 32)))
	r := &rig{t: t, st: st, kek: kek, now: t0}
	wc := DefaultConfig()
	wc.Enabled, wc.KEKEnv, wc.PollInterval, wc.AttemptTimeout = true, "UNUSED", time.Minute, 2*time.Second
	wc.AllowHTTPHosts, wc.AllowNetworks = []string{"127.0.0.1"}, []string{"127.0.0.0/8"}
	if mod != nil {
		mod(&wc)
	}
	s, err := New(wc, kek, st, r.propose, func() bool { return true }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.now = r.clock
	s.jitter = func() float64 { return 0.5 }
	r.s = s
	s.Start()
	t.Cleanup(s.Close)
	// Accounts, an endpoint and a payment: one pending delivery.
	r.must(store.Command{Op: store.OpCreateAccount, Key: "a1", Time: t0.UnixNano(), Account: &store.Account{ID: "fund", Kind: store.KindFunding, Currency: "USD", Unlimited: true}})
	r.must(store.Command{Op: store.OpCreateAccount, Key: "a2", Time: t0.UnixNano(), Account: &store.Account{ID: "merch", Kind: store.KindBiller, Currency: "USD"}})
	r.secret, _ = NewSecret()
	w, _ := kek.Wrap("ep1", r.secret)
	r.ep = store.WebhookEndpoint{ID: "ep1", Partner: "p1", URL: url, EventTypes: store.EventTypes, Secrets: []store.WebhookSecret{w}}
	r.must(store.Command{Op: store.OpPutWebhookEndpoint, Key: "e1", Partner: "p1", Time: t0.UnixNano(),
		Admin: &store.Admin{Actor: "p1", Webhook: &store.WebhookChange{Action: store.WebhookCreate, Endpoint: r.ep}}})
	r.pay("pay1", 1234)
	return r
}

func (r *rig) clock() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }

func (r *rig) advance(d time.Duration) { r.mu.Lock(); r.now = r.now.Add(d); r.mu.Unlock() }

func (r *rig) propose(_ context.Context, c store.Command) (store.Result, error) {
	// One entry at a time, as raft orders them: workers propose at once.
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	data, err := store.EncodeBatch([]store.Command{c})
	if err != nil {
		return store.Result{}, err
	}
	out := r.st.Apply(&raft.Log{Index: r.st.AppliedIndex() + 1, Type: raft.LogCommand, Data: data})
	res, ok := out.([]store.Result)
	if !ok {
		return store.Result{}, out.(error)
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, c)
	r.mu.Unlock()
	return res[0], nil
}

func (r *rig) must(c store.Command) {
	r.t.Helper()
	if res, err := r.propose(context.Background(), c); err != nil || res.Status != store.StatusOK {
		r.t.Fatalf("%s: %v %+v", c.Op, err, res)
	}
}

func (r *rig) pay(key string, amt int64) {
	r.t.Helper()
	r.must(store.Command{Op: store.OpPost, Key: key, Time: r.clock().UnixNano(), Partner: "p1", Debit: "fund", Credit: "merch", Amount: amt, Currency: "USD"})
}

// round polls once and waits until every handed-over attempt is recorded.
func (r *rig) round() int {
	r.t.Helper()
	r.mu.Lock()
	before := len(r.cmds)
	r.mu.Unlock()
	n, err := r.s.Poll()
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a measurement
	for {
		r.mu.Lock()
		done := len(r.cmds) >= before+n
		r.mu.Unlock()
		r.s.mu.Lock()
		idle := len(r.s.inflight) == 0
		r.s.mu.Unlock()
		if done && idle {
			return n
		}
		if time.Now().After(deadline) {
			r.t.Fatal("attempts not recorded")
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) delivery() store.WebhookDelivery {
	r.t.Helper()
	ds, err := r.st.WebhookDeliveries("ep1", "", 10)
	if err != nil || len(ds) == 0 {
		r.t.Fatalf("deliveries: %v %v", ds, err)
	}
	return ds[0]
}

type received struct {
	header http.Header
	body   []byte
}

func receiver(t *testing.T, codes ...int) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		got = append(got, received{req.Header.Clone(), b})
		code := codes[min(len(got), len(codes))-1]
		mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, "answer\x00body that is long "+strings.Repeat("x", 500))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

func TestSenderDelivers(t *testing.T) {
	srv, got := receiver(t, 204)
	r := newRig(t, srv.URL+"/hook", nil)
	if n := r.round(); n != 1 {
		t.Fatalf("handed over %d", n)
	}
	rs := got()
	if len(rs) != 1 {
		t.Fatalf("%d requests", len(rs))
	}
	h := rs[0].header
	d := r.delivery()
	if h.Get("webhook-id") != d.Event || h.Get("webhook-timestamp") != "1772445600" || h.Get("content-type") != "application/json" ||
		string(rs[0].body) != d.Body || !strings.HasPrefix(h.Get("webhook-signature"), "v1,") {
		t.Fatalf("request %v %s", h, rs[0].body)
	}
	wh, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.secret, "whsec_"))
	want, _ := Sign([][]byte{wh}, d.Event, t0, rs[0].body)
	if h.Get("webhook-signature") != want {
		t.Errorf("signature %s, want %s", h.Get("webhook-signature"), want)
	}
	if d.State != store.DeliveryDelivered || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 204 {
		t.Fatalf("delivery %+v", d)
	}
	if r.round() != 0 || len(got()) != 1 {
		t.Fatal("delivered twice")
	}
}

// 5xx retries on the schedule (jitter fixed at 0.5 of 0.2), then fails;
// the excerpt is bounded and printable.
func TestSenderRetriesOnSchedule(t *testing.T) {
	srv, got := receiver(t, 503)
	r := newRig(t, srv.URL+"/hook", func(c *Config) { c.Schedule = []time.Duration{5 * time.Second, 5 * time.Minute} })
	r.round()
	d := r.delivery()
	wantNext := t0.Add(5*time.Second - 500*time.Millisecond).UnixNano() // 5 s less 0.2×0.5 of it
	if d.State != store.DeliveryPending || d.NextAt != wantNext || len(d.Attempts[0].Excerpt) > excerptBytesMax ||
		strings.ContainsRune(d.Attempts[0].Excerpt, 0) || d.Attempts[0].Class != ClassHTTPStatus {
		t.Fatalf("after attempt 1: %+v", d)
	}
	if r.round() != 0 {
		t.Fatal("retried before its time")
	}
	r.advance(5 * time.Second)
	r.round()
	if d = r.delivery(); d.NextAt != r.clock().Add(5*time.Minute-30*time.Second).UnixNano() || len(d.Attempts) != 2 {
		t.Fatalf("after attempt 2: %+v", d)
	}
	r.advance(5 * time.Minute)
	r.round()
	if d = r.delivery(); d.State != store.DeliveryFailed || len(d.Attempts) != 3 || len(got()) != 3 {
		t.Fatalf("after the schedule: %+v (%d requests)", d, len(got()))
	}
	ids := map[string]bool{}
	for _, rq := range got() {
		ids[rq.header.Get("webhook-id")] = true
	}
	if len(ids) != 1 {
		t.Errorf("webhook-id changed across retries: %v", ids)
	}
}

func TestSenderGoneDisables(t *testing.T) {
	srv, got := receiver(t, 410)
	r := newRig(t, srv.URL+"/hook", nil)
	r.pay("pay2", 5)
	// One in flight per endpoint: the 410 of the first fails the second.
	r.s.cfg.InflightPerEndpoint = 1
	r.round()
	e, _ := r.st.Directory().WebhookEndpoint("ep1")
	if !e.Disabled || e.DisabledReason != store.DisabledGone {
		t.Fatalf("endpoint %+v", e)
	}
	ds, _ := r.st.WebhookDeliveries("ep1", "", 10)
	for _, d := range ds {
		if d.State != store.DeliveryFailed {
			t.Errorf("%s %s", d.Event, d.State)
		}
	}
	r.advance(time.Hour)
	if r.round() != 0 || len(got()) != 1 {
		t.Fatalf("sent to a gone endpoint: %d", len(got()))
	}
}

func TestSenderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	r := newRig(t, srv.URL+"/hook", func(c *Config) { c.AttemptTimeout = 50 * time.Millisecond })
	r.round()
	if d := r.delivery(); d.State != store.DeliveryPending || d.Attempts[0].Class != ClassTimeout || d.Attempts[0].StatusCode != 0 {
		t.Fatalf("delivery %+v", d)
	}
}

// An address the config does not allow is refused at dial time even when
// the endpoint was stored (the name resolved elsewhere at registration,
// or the config changed): nothing reaches the receiver.
func TestSenderRefusesAddressAtDial(t *testing.T) {
	srv, got := receiver(t, 200)
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/hook"
	r := newRig(t, url, func(c *Config) { c.AllowNetworks = []string{"10.0.0.0/8"} })
	r.round()
	d := r.delivery()
	if len(got()) != 0 || d.State != store.DeliveryPending || d.Attempts[0].Class != ClassRefusedAddress {
		t.Fatalf("delivery %+v, %d requests", d, len(got()))
	}
	if err := NewGuard(r.s.cfg).CheckURL(context.Background(), url); !errors.Is(err, ErrURL) {
		t.Errorf("registration allowed %s: %v", url, err)
	}
}

// During a rotation's overlap a delivery carries both signatures, and a
// receiver holding either secret verifies it; after it, only the new one.
func TestSenderRotationSignsWithBoth(t *testing.T) {
	srv, got := receiver(t, 500)
	r := newRig(t, srv.URL+"/hook", nil)
	next, _ := NewSecret()
	w, _ := r.kek.Wrap("ep1", next)
	rot := r.ep
	rot.Secrets = []store.WebhookSecret{w}
	r.must(store.Command{Op: store.OpPutWebhookEndpoint, Key: "e2", Partner: "p1", Time: t0.UnixNano(),
		Admin: &store.Admin{Actor: "p1", Webhook: &store.WebhookChange{Action: store.WebhookRotateSecret, Endpoint: rot, Overlap: int64(time.Hour)}}})
	r.round()
	rq := got()[0]
	if sigs := strings.Fields(rq.header.Get("webhook-signature")); len(sigs) != 2 {
		t.Fatalf("signatures %v", sigs)
	}
	// Verify checks the timestamp against the wall clock: re-sign at now
	// is not what we test; check each secret's signature is in the header.
	for _, sec := range []string{r.secret, next} {
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
		one, _ := Sign([][]byte{raw}, rq.header.Get("webhook-id"), t0, rq.body)
		if !strings.Contains(rq.header.Get("webhook-signature"), one) {
			t.Errorf("no signature of secret %d", len(sec))
		}
	}
	r.advance(2 * time.Hour)
	r.round()
	if sigs := strings.Fields(got()[1].header.Get("webhook-signature")); len(sigs) != 1 {
		t.Fatalf("after the overlap: %v", sigs)
	}
}

// Verify (what a receiver does) accepts what the sender signs now.
func TestVerifyRoundTrip(t *testing.T) {
	sec, _ := NewSecret()
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
	now := time.Now()
	body := []byte(`{"id":"evt_1"}`)
	sig, _ := Sign([][]byte{raw}, "evt_1", now, body)
	h := http.Header{}
	SetHeaders(h, "evt_1", now, sig)
	if err := Verify(sec, body, h); err != nil {
		t.Fatal(err)
	}
	if err := Verify(sec, []byte(`{"id":"evt_2"}`), h); err == nil {
		t.Fatal("tampered body verified")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"enabled without kek": func(c *Config) { c.Enabled = true },
		"both keks":           func(c *Config) { c.KEKFile, c.KEKEnv = "f", "E" },
		"workers":             func(c *Config) { c.Workers = 0 },
		"schedule":            func(c *Config) { c.Schedule = nil },
		"step":                func(c *Config) { c.Schedule = []time.Duration{72 * time.Hour} },
		"network":             func(c *Config) { c.AllowNetworks = []string{"nope"} },
		"jitter":              func(c *Config) { c.Jitter = 2 },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A leader that sent but lost its office before the results were
// committed: nothing is recorded, the next leader sends every event
// again with the same webhook-id and bytes. The receiver sees each id at
// least once, and the distinct ids are exactly the state changes.
func TestSenderResendsAfterLeaderChange(t *testing.T) {
	srv, got := receiver(t, 200)
	r := newRig(t, srv.URL+"/hook", nil)
	r.pay("pay2", 10)
	r.pay("pay3", 20)
	lost := errors.New("cluster: leadership lost")
	old, err := New(r.s.cfg, r.kek, r.st, func(context.Context, store.Command) (store.Result, error) { return store.Result{}, lost },
		func() bool { return true }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old.now, old.jitter = r.clock, func() float64 { return 0 }
	old.Start()
	n, err := old.Poll()
	if err != nil || n != 3 {
		t.Fatalf("old leader handed over %d: %v", n, err)
	}
	deadline := time.Now().Add(10 * time.Second) // a hang guard
	for {
		old.mu.Lock()
		idle := len(old.inflight) == 0
		old.mu.Unlock()
		if idle && len(got()) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("old leader's attempts did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	old.Close()
	if ds, _ := r.st.WebhookDeliveries("ep1", "", 10); len(ds) != 3 || ds[0].State != store.DeliveryPending || len(ds[0].Attempts) != 0 {
		t.Fatalf("an unrecorded attempt changed the outbox: %+v", ds)
	}
	r.round() // the new leader
	bodies := map[string]string{}
	for _, rq := range got() {
		id := rq.header.Get("webhook-id")
		if b, ok := bodies[id]; ok && b != string(rq.body) {
			t.Errorf("%s resent with other bytes", id)
		}
		bodies[id] = string(rq.body)
	}
	ds, _ := r.st.WebhookDeliveries("ep1", "", 10)
	if len(got()) != 6 || len(bodies) != 3 || len(ds) != 3 {
		t.Fatalf("%d requests, %d distinct ids, %d events", len(got()), len(bodies), len(ds))
	}
	for _, d := range ds {
		if _, ok := bodies[d.Event]; !ok || d.State != store.DeliveryDelivered {
			t.Errorf("event %s: %s, received %v", d.Event, d.State, ok)
		}
	}
}

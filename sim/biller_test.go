package sim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func startBiller(t testing.TB, mut func(*BillerConfig)) (*Biller, string) {
	t.Helper()
	cfg := DefaultBillerConfig()
	cfg.Listen = "127.0.0.1:0"
	if mut != nil {
		mut(&cfg)
	}
	b, err := NewBiller(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctl, err := StartBillerControl(ControlConfig{Listen: "127.0.0.1:0"}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	return b, "http://" + ctl.Addr()
}

const billBody = `{"bill_type":"electricity","biller_reference":"ACC-1","amount":"12.34","currency":"USD"}`

// payment posts body with key ("" sends no header) and returns status and body.
func payment(t testing.TB, b *Biller, key, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.Addr()+"/payments", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

func TestBillerIdempotentRetries(t *testing.T) {
	b, _ := startBiller(t, nil)
	st1, body1, _ := payment(t, b, "k1", billBody)
	if st1 != http.StatusCreated {
		t.Fatalf("status %d %s", st1, body1)
	}
	var p Payment
	if err := json.Unmarshal(body1, &p); err != nil || p.Status != statusApproved || p.Amount != "12.34" || p.Code != "00" {
		t.Fatalf("payment %s (%v)", body1, err)
	}
	// A retry, even after the mode changed, gets the same answer.
	mustSet(t, b, behavior(ModeDecline))
	st2, body2, h := payment(t, b, "k1", billBody)
	if st2 != st1 || !bytes.Equal(body1, body2) || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %s, want %d %s", st2, body2, st1, body1)
	}
	// A new key is declined now; its retry is the same decline.
	st3, body3, _ := payment(t, b, "k2", billBody)
	st4, body4, _ := payment(t, b, "k2", billBody)
	if st3 != http.StatusUnprocessableEntity || st4 != st3 || !bytes.Equal(body3, body4) || !strings.Contains(string(body3), `"05"`) {
		t.Fatalf("decline %d %s, retry %d %s", st3, body3, st4, body4)
	}
	// GET /payments/{id} reads a payment back; an unknown id is 404.
	var read Payment
	getJSON(t, "http://"+b.Addr()+"/payments/"+p.ID, &read)
	if read != p {
		t.Fatalf("read back %+v, want %+v", read, p)
	}
	if resp, err := http.Get("http://" + b.Addr() + "/payments/bp_99999999"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown payment: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	s := b.Stats()
	if s.Replays != 2 || s.Payments[statusApproved] != 1 || s.Payments[statusDeclined] != 1 || s.Stored != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// A payment dropped by a disconnect was processed: its retry finds it.
func TestBillerDisconnectThenRetry(t *testing.T) {
	b, _ := startBiller(t, func(c *BillerConfig) { c.Behavior.DisconnectRatio = 1 })
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.Addr()+"/payments", strings.NewReader(billBody))
	req.Header.Set("Idempotency-Key", "k1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d despite disconnect ratio 1", resp.StatusCode)
	}
	mustSet(t, b, DefaultBehavior())
	st, body, h := payment(t, b, "k1", billBody)
	if st != http.StatusCreated || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry %d %s", st, body)
	}
	if s := b.Stats(); s.Payments["disconnected"] != 1 || s.Replays != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Timeout holds the request unprocessed; the retry after it is decided
// afresh. Late records the payment and answers after the delay.
func TestBillerTimeoutAndLate(t *testing.T) {
	b, _ := startBiller(t, func(c *BillerConfig) { c.Behavior.Mode = ModeTimeout })
	client := &http.Client{Timeout: 100 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.Addr()+"/payments", strings.NewReader(billBody))
	req.Header.Set("Idempotency-Key", "k1")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d in mode timeout", resp.StatusCode)
	}
	if s := b.Stats(); s.Stored != 0 || s.Payments["unanswered"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	late := DefaultBehavior()
	late.Mode, late.LateDelay = ModeLate, Duration(time.Second)
	mustSet(t, b, late)
	req, _ = http.NewRequest(http.MethodPost, "http://"+b.Addr()+"/payments", strings.NewReader(billBody))
	req.Header.Set("Idempotency-Key", "k1")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("late mode answered %d within the client's timeout", resp.StatusCode)
	}
	// The late payment was recorded: the retry is answered from it.
	st, _, h := payment(t, b, "k1", billBody)
	if st != http.StatusCreated || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after late: %d", st)
	}
}

func TestBillerDown(t *testing.T) {
	b, ctl := startBiller(t, nil)
	addr := b.Addr()
	post(t, ctl+"/mode", `{"mode":"down"}`)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("dial accepted in mode down")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v", err)
	}
	post(t, ctl+"/mode", `{"mode":"approve"}`)
	if st, _, _ := payment(t, b, "k1", billBody); st != http.StatusCreated {
		t.Fatalf("after down: %d", st)
	}
}

// Every refused payment is answered with its problem and stores nothing.
func TestBillerPaymentRefusals(t *testing.T) {
	b, _ := startBiller(t, func(c *BillerConfig) { c.PaymentsMax = 2 })
	for _, tc := range []struct {
		name, key, body string
		status          int
	}{
		{"no key", "", billBody, http.StatusBadRequest},
		{"key too long", strings.Repeat("k", idempotencyKeyBytesMax+1), billBody, http.StatusBadRequest},
		{"amount as number", "k", `{"bill_type":"e","biller_reference":"r","amount":12.34,"currency":"USD"}`, http.StatusBadRequest},
		{"amount decimals", "k", `{"bill_type":"e","biller_reference":"r","amount":"12.3","currency":"USD"}`, http.StatusBadRequest},
		{"amount zero", "k", `{"bill_type":"e","biller_reference":"r","amount":"0.00","currency":"USD"}`, http.StatusBadRequest},
		{"amount negative", "k", `{"bill_type":"e","biller_reference":"r","amount":"-1.00","currency":"USD"}`, http.StatusBadRequest},
		{"currency", "k", `{"bill_type":"e","biller_reference":"r","amount":"1.00","currency":"XXY"}`, http.StatusBadRequest},
		{"no bill type", "k", `{"biller_reference":"r","amount":"1.00","currency":"USD"}`, http.StatusBadRequest},
		{"reference too long", "k", `{"bill_type":"e","biller_reference":"` + strings.Repeat("r", billFieldBytesMax+1) + `","amount":"1.00","currency":"USD"}`, http.StatusBadRequest},
		{"unknown field", "k", `{"bill_type":"e","biller_reference":"r","amount":"1.00","currency":"USD","pan":"4111111111111111"}`, http.StatusBadRequest},
		{"too large", "k", `{"bill_type":"` + strings.Repeat("e", paymentBodyBytesMax) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		st, body, _ := payment(t, b, tc.key, tc.body)
		if st != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, st, body, tc.status)
		}
		if strings.Contains(string(body), "4111111111111111") {
			t.Errorf("%s: the answer echoes a card number", tc.name)
		}
	}
	if s := b.Stats(); s.Stored != 0 {
		t.Fatalf("refused payments stored: %+v", s)
	}
	// The same key with another payment is a conflict; the first stands.
	if st, _, _ := payment(t, b, "k1", billBody); st != http.StatusCreated {
		t.Fatal(st)
	}
	other := strings.Replace(billBody, "12.34", "99.99", 1)
	if st, _, _ := payment(t, b, "k1", other); st != http.StatusConflict {
		t.Fatalf("reused key: %d, want 409", st)
	}
	if _, body, _ := payment(t, b, "k1", billBody); !strings.Contains(string(body), "12.34") {
		t.Fatalf("the stored payment changed: %s", body)
	}
	// Past PaymentsMax new payments are refused, retries still answered.
	payment(t, b, "k2", billBody)
	if st, _, _ := payment(t, b, "k3", billBody); st != http.StatusServiceUnavailable {
		t.Fatalf("past payments max: %d", st)
	}
	if st, _, _ := payment(t, b, "k2", billBody); st != http.StatusCreated {
		t.Fatalf("retry past payments max: %d", st)
	}
	if s := b.Stats(); s.Stored != 2 || s.Payments["conflict"] != 1 || s.Payments["full"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// receiver is a reversal endpoint that verifies every call's signature
// and fails the first failFirst attempts.
type receiver struct {
	t         *testing.T
	failFirst int
	mu        sync.Mutex
	calls     []*http.Request
	bodies    [][]byte
	bad       int // calls whose signature did not verify
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.calls = append(rc.calls, r)
	rc.bodies = append(rc.bodies, body)
	if !verify(testSecret, r.Header, body) {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if len(rc.calls) <= rc.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify is an independent Standard Webhooks check: HMAC-SHA256 over
// "id.timestamp.body", base64, in a "v1," entry of webhook-signature.
func verify(secret []byte, h http.Header, body []byte) bool {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return false
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	io.WriteString(m, id+"."+ts+".")
	m.Write(body)
	want := m.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func TestBillerReversalSignedAndRetried(t *testing.T) {
	rc := &receiver{t: t, failFirst: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	b, ctl := startBiller(t, func(c *BillerConfig) {
		c.ReversalURL, c.WebhookSecret = srv.URL, testSecret
		c.BackoffMin, c.BackoffMax = time.Millisecond, 4*time.Millisecond
	})
	_, body, _ := payment(t, b, "switchd-key-1", billBody)
	var p Payment
	json.Unmarshal(body, &p)
	if r := post(t, ctl+"/reversals", `{"payment_id":"`+p.ID+`","reason":"customer dispute"}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /reversals: %d", r.StatusCode)
	}
	waitFor(t, func() bool { return b.Stats().Reversals.Delivered == 1 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.calls) != 3 || rc.bad != 0 {
		t.Fatalf("%d calls, %d with a bad signature; want 3 good", len(rc.calls), rc.bad)
	}
	for i, r := range rc.calls {
		if r.Header.Get("webhook-id") != "rev_"+p.ID {
			t.Fatalf("attempt %d webhook-id %q", i, r.Header.Get("webhook-id"))
		}
		if !bytes.Equal(rc.bodies[i], rc.bodies[0]) {
			t.Fatal("the body changed between attempts")
		}
	}
	var ev ReversalEvent
	if err := json.Unmarshal(rc.bodies[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != reversalEventType || ev.Data.IdempotencyKey != "switchd-key-1" || ev.Data.Amount != "12.34" || ev.Data.Reason != "customer dispute" {
		t.Fatalf("event %+v", ev)
	}
	if s := b.Stats().Reversals; s.Attempts != 3 || s.Requested != 1 || s.Failed != 0 {
		t.Fatalf("reversal stats %+v", s)
	}
	// The payment now reads reversed; a second reversal is refused.
	if r := post(t, ctl+"/reversals", `{"payment_id":"`+p.ID+`"}`); r.StatusCode != http.StatusConflict {
		t.Fatalf("second reversal: %d, want 409", r.StatusCode)
	}
}

// A receiver that checks signatures under another secret refuses every
// attempt; the biller gives up after AttemptsMax.
func TestBillerReversalWrongSecretFails(t *testing.T) {
	rc := &receiver{t: t}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	b, ctl := startBiller(t, func(c *BillerConfig) {
		c.ReversalURL, c.WebhookSecret = srv.URL, []byte("another-secret-of-24-bytes!!")
		c.BackoffMin, c.BackoffMax, c.AttemptsMax = time.Millisecond, time.Millisecond, 3
	})
	_, body, _ := payment(t, b, "k1", billBody)
	var p Payment
	json.Unmarshal(body, &p)
	post(t, ctl+"/reversals", `{"payment_id":"`+p.ID+`"}`)
	waitFor(t, func() bool { return b.Stats().Reversals.Failed == 1 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.bad != 3 || b.Stats().Reversals.Delivered != 0 {
		t.Fatalf("bad %d, stats %+v", rc.bad, b.Stats().Reversals)
	}
}

func TestBillerReversalRefusals(t *testing.T) {
	srv := httptest.NewServer(&receiver{})
	defer srv.Close()
	b, ctl := startBiller(t, func(c *BillerConfig) { c.ReversalURL, c.WebhookSecret = srv.URL, testSecret })
	mustSet(t, b, behavior(ModeDecline))
	_, body, _ := payment(t, b, "k1", billBody)
	var declined Payment
	json.Unmarshal(body, &declined)
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"unknown payment", `{"payment_id":"bp_99999999"}`, http.StatusNotFound},
		{"declined payment", `{"payment_id":"` + declined.ID + `"}`, http.StatusConflict},
		{"unknown field", `{"payment_id":"` + declined.ID + `","amount":"1.00"}`, http.StatusBadRequest},
		{"reason too long", `{"payment_id":"` + declined.ID + `","reason":"` + strings.Repeat("x", reasonBytesMax+1) + `"}`, http.StatusBadRequest},
	} {
		if r := post(t, ctl+"/reversals", tc.body); r.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, r.StatusCode, tc.status)
		}
	}
	if s := b.Stats(); s.Reversals.Requested != 0 || s.Queued != 0 {
		t.Fatalf("a refused reversal was queued: %+v", s.Reversals)
	}
	// Without a reversal URL nothing can be sent.
	nb, nctl := startBiller(t, nil)
	_, body, _ = payment(t, nb, "k1", billBody)
	var p Payment
	json.Unmarshal(body, &p)
	if r := post(t, nctl+"/reversals", `{"payment_id":"`+p.ID+`"}`); r.StatusCode != http.StatusConflict {
		t.Fatalf("no reversal URL: %d", r.StatusCode)
	}
}

func TestBillerConfigRefusals(t *testing.T) {
	for name, mut := range map[string]func(*BillerConfig){
		"listen":         func(c *BillerConfig) { c.Listen = "x" },
		"mode":           func(c *BillerConfig) { c.Behavior.Mode = "" },
		"decline":        func(c *BillerConfig) { c.DeclineCode = "00" },
		"payments":       func(c *BillerConfig) { c.PaymentsMax = 0 },
		"url scheme":     func(c *BillerConfig) { c.ReversalURL, c.WebhookSecret = "ftp://x/", testSecret },
		"url relative":   func(c *BillerConfig) { c.ReversalURL, c.WebhookSecret = "/reversals", testSecret },
		"no secret":      func(c *BillerConfig) { c.ReversalURL = "http://127.0.0.1:1/r" },
		"short secret":   func(c *BillerConfig) { c.ReversalURL, c.WebhookSecret = "http://127.0.0.1:1/r", []byte("short") },
		"queue":          func(c *BillerConfig) { c.ReversalQueueMax = reversalQueueMaxLimit + 1 },
		"attempts":       func(c *BillerConfig) { c.AttemptsMax = 0 },
		"backoff order":  func(c *BillerConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond },
		"backoff zero":   func(c *BillerConfig) { c.BackoffMin = 0 },
		"delivery":       func(c *BillerConfig) { c.DeliveryTimeout = time.Hour },
		"tls incomplete": func(c *BillerConfig) { c.TLS = &TLSFiles{KeyFile: "k"} },
		"request secret": func(c *BillerConfig) { c.RequestSigningSecret = []byte("short") },
		"request token":  func(c *BillerConfig) { c.RequestToken = "two words" },
	} {
		cfg := DefaultBillerConfig()
		mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
		if err != nil && strings.Contains(err.Error(), string(testSecret)) {
			t.Errorf("%s: the error shows the secret", name)
		}
	}
	if err := DefaultBillerConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// Sign agrees with the independent verifier, and any change to id,
// timestamp or body breaks the signature.
func TestSign(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", "rev_1")
	h.Set("webhook-timestamp", "1700000000")
	h.Set("webhook-signature", Sign(testSecret, "rev_1", 1700000000, []byte("{}")))
	if !verify(testSecret, h, []byte("{}")) {
		t.Fatal("signature does not verify")
	}
	if verify(testSecret, h, []byte("{ }")) {
		t.Fatal("a changed body verifies")
	}
	h.Set("webhook-timestamp", "1700000001")
	if verify(testSecret, h, []byte("{}")) {
		t.Fatal("a changed timestamp verifies")
	}
}

// The start-up log names the reversal URL without its password and never
// shows the webhook secret.
func TestBillerLogShowsNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	cfg := DefaultBillerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.ReversalURL, cfg.WebhookSecret = "http://switchd:hunter2@127.0.0.1:1/reversals", testSecret
	b, err := NewBiller(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if out := logs.String(); strings.Contains(out, "hunter2") || strings.Contains(out, string(testSecret)) || !strings.Contains(out, "127.0.0.1:1/reversals") {
		t.Fatalf("log: %s", out)
	}
}

// A full reversal queue refuses (503) and leaves the payment reversible.
func TestBillerReversalQueueFull(t *testing.T) {
	got, release := make(chan struct{}, 3), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		<-release
	}))
	defer srv.Close()
	defer close(release) // before srv.Close (deferred last, runs first)
	b, ctl := startBiller(t, func(c *BillerConfig) {
		c.ReversalURL, c.WebhookSecret, c.ReversalQueueMax = srv.URL, testSecret, 1
	})
	ids := make([]string, 3)
	for i := range ids {
		_, body, _ := payment(t, b, "k"+strconv.Itoa(i), billBody)
		var p Payment
		json.Unmarshal(body, &p)
		ids[i] = p.ID
	}
	if r := post(t, ctl+"/reversals", `{"payment_id":"`+ids[0]+`"}`); r.StatusCode != http.StatusAccepted {
		t.Fatal(r.StatusCode)
	}
	<-got // the sender is busy with the first; the queue is empty
	if r := post(t, ctl+"/reversals", `{"payment_id":"`+ids[1]+`"}`); r.StatusCode != http.StatusAccepted {
		t.Fatal(r.StatusCode)
	}
	if r := post(t, ctl+"/reversals", `{"payment_id":"`+ids[2]+`"}`); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third reversal with the queue full: %d, want 503", r.StatusCode)
	}
	st, body, _ := payment(t, b, "k2", billBody)
	if st != http.StatusCreated || !strings.Contains(string(body), `"approved"`) {
		t.Fatalf("the refused reversal changed the payment: %s", body)
	}
	if s := b.Stats(); s.Reversals.Requested != 2 || s.Queued != 1 {
		t.Fatalf("reversal stats %+v queued %d", s.Reversals, s.Queued)
	}
}

func cancel(t testing.TB, b *Biller, id string) (int, Payment) {
	t.Helper()
	resp, err := http.Post("http://"+b.Addr()+"/payments/"+id+"/cancel", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Payment
	json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p
}

// A cancel takes back an approved payment once: a retried cancel and a
// retried payment see it cancelled; it can no longer be reversed; a
// declined payment cannot be cancelled and an unknown one is 404.
func TestBillerCancel(t *testing.T) {
	b, _ := startBiller(t, func(c *BillerConfig) { c.ReversalURL, c.WebhookSecret = "http://127.0.0.1:1/rev", testSecret })
	_, body, _ := payment(t, b, "k1", billBody)
	var p Payment
	json.Unmarshal(body, &p)
	for i := 0; i < 2; i++ {
		if st, got := cancel(t, b, p.ID); st != http.StatusOK || got.Status != statusCancelled {
			t.Fatalf("cancel %d: %d %+v", i, st, got)
		}
	}
	if _, body, _ := payment(t, b, "k1", billBody); !strings.Contains(string(body), `"cancelled"`) {
		t.Fatalf("retry after cancel: %s", body)
	}
	if _, err := b.Reverse(ReversalRequest{PaymentID: p.ID}); !errors.Is(err, ErrNotReversible) {
		t.Fatalf("reverse a cancelled payment: %v", err)
	}
	mustSet(t, b, behavior(ModeDecline))
	_, body, _ = payment(t, b, "k2", billBody)
	var d Payment
	json.Unmarshal(body, &d)
	if st, _ := cancel(t, b, d.ID); st != http.StatusConflict {
		t.Fatalf("cancel a decline: %d", st)
	}
	if st, _ := cancel(t, b, "bp_99999999"); st != http.StatusNotFound {
		t.Fatalf("cancel unknown: %d", st)
	}
	if s := b.Stats(); s.Cancels != 1 {
		t.Fatalf("cancels %d, want 1", s.Cancels)
	}
}

// signedPayment posts body under key as switchd's forwarder does with a
// signing secret: Standard Webhooks headers with the key as webhook id,
// signed under secret at time at; token, when set, as the bearer token.
func signedPayment(t testing.TB, b *Biller, path, key, id, token, body string, secret []byte, at time.Time) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.Addr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(secret, id, at.Unix(), []byte(body)))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// With a request signing secret and a token the biller refuses (401,
// counted unauthorized, nothing recorded) a call signed with another
// secret, one dated outside five minutes, one whose signature names
// another key, an unsigned one and one without the token; the call signed
// right with the token is paid, and its cancel must be signed too.
func TestBillerRequestAuth(t *testing.T) {
	other := []byte("another-secret-another-secret-00")
	const token = "biller-token-1"
	var logs bytes.Buffer
	cfg := DefaultBillerConfig()
	cfg.Listen, cfg.RequestSigningSecret, cfg.RequestToken = "127.0.0.1:0", testSecret, token
	b, err := NewBiller(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	now := time.Now()
	for name, c := range map[string]struct {
		id, token string
		secret    []byte
		at        time.Time
	}{
		"wrong secret": {"k-1", token, other, now},
		"stale":        {"k-1", token, testSecret, now.Add(-time.Hour)},
		"other key":    {"k-2", token, testSecret, now},
		"no token":     {"k-1", "", testSecret, now},
		"wrong token":  {"k-1", "biller-token-2", testSecret, now},
	} {
		if st, body := signedPayment(t, b, "/payments", "k-1", c.id, c.token, billBody, c.secret, c.at); st != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, st, body)
		}
	}
	if st, body, _ := payment(t, b, "k-1", billBody); st != http.StatusUnauthorized {
		t.Errorf("unsigned: %d %s, want 401", st, body)
	}
	if s := b.Stats(); s.Stored != 0 || s.Payments["unauthorized"] != 6 || s.Payments["approved"] != 0 {
		t.Fatalf("after the refusals: %+v", s)
	}
	st, body := signedPayment(t, b, "/payments", "k-1", "k-1", token, billBody, testSecret, now)
	var p Payment
	if err := json.Unmarshal(body, &p); st != http.StatusCreated || err != nil || p.Status != statusApproved {
		t.Fatalf("signed: %d %s", st, body)
	}
	if st, _ := signedPayment(t, b, "/payments/"+p.ID+"/cancel", "k-1-cancel", "k-1-cancel", token, "", other, now); st != http.StatusUnauthorized {
		t.Fatalf("cancel signed with another secret: %d", st)
	}
	if st, body := signedPayment(t, b, "/payments/"+p.ID+"/cancel", "k-1-cancel", "k-1-cancel", token, "", testSecret, now); st != http.StatusOK || !strings.Contains(string(body), statusCancelled) {
		t.Fatalf("signed cancel: %d %s", st, body)
	}
	if out := logs.String(); strings.Contains(out, string(testSecret)) || strings.Contains(out, token) || !strings.Contains(out, "unauthenticated") {
		t.Fatalf("log shows a secret or no refusal:\n%s", out)
	}
}

// GET /payments?biller_reference= on the control API finds the payments
// of a reference, in id order; none is an empty list, no reference a 400.
func TestBillerPaymentsByReference(t *testing.T) {
	b, ctl := startBiller(t, nil)
	for key, ref := range map[string]string{"k-1": "ACC-1", "k-2": "ACC-2", "k-3": "ACC-1"} {
		if st, body, _ := payment(t, b, key, strings.Replace(billBody, "ACC-1", ref, 1)); st != http.StatusCreated {
			t.Fatalf("%s: %d %s", key, st, body)
		}
	}
	get := func(q string) (int, []Payment) {
		t.Helper()
		resp, err := http.Get(ctl + "/payments" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Payments []Payment }
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Payments
	}
	st, ps := get("?biller_reference=ACC-1")
	if st != http.StatusOK || len(ps) != 2 || ps[0].ID >= ps[1].ID || ps[0].BillerReference != "ACC-1" || ps[1].BillerReference != "ACC-1" {
		t.Fatalf("ACC-1: %d %+v", st, ps)
	}
	if st, ps := get("?biller_reference=ACC-9"); st != http.StatusOK || ps == nil || len(ps) != 0 {
		t.Fatalf("ACC-9: %d %+v", st, ps)
	}
	if st, _ := get(""); st != http.StatusBadRequest {
		t.Fatalf("no reference: %d", st)
	}
}

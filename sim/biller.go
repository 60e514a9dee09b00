package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/httptls"
	"github.com/switchd/switchd/outcome"
)

// Limits on a biller's config and requests.
const (
	// billerPaymentsMaxLimit bounds the idempotency records kept in memory.
	billerPaymentsMaxLimit = 10_000_000
	billerPaymentsMax      = 1_000_000
	// paymentBodyBytesMax bounds POST /payments: four short fields.
	paymentBodyBytesMax = 4096
	// idempotencyKeyBytesMax matches the partner API's limit on the key.
	idempotencyKeyBytesMax = 255
	billFieldBytesMax      = 64
	reversalQueueMaxLimit  = 100_000
	reversalQueueMax       = 1024
	reasonBytesMax         = 256
	attemptsMaxLimit       = 100
	backoffMaxLimit        = 24 * time.Hour
	deliveryTimeoutMax     = 5 * time.Minute
	// webhookSecretBytesMin: Standard Webhooks secrets are 24 to 64
	// random bytes; fewer is guessable.
	webhookSecretBytesMin = 24
	webhookSecretBytesMax = 64
	// deliveryResponseBytesMax is how much of a receiver's answer is read
	// (and thrown away) so the connection can be reused.
	deliveryResponseBytesMax = 4096
	defaultBillerListen      = "127.0.0.1:9480"
	defaultBillerControl     = "127.0.0.1:9091"
	// requestTokenBytesMax bounds the bearer token a biller may require.
	requestTokenBytesMax = 4096
	// paymentsFoundMax bounds one control API lookup's answer.
	paymentsFoundMax = 100
)

// Biller refusals, each answered with its own problem type.
var (
	ErrNoPayment      = errors.New("sim: no such payment")
	ErrNotReversible  = errors.New("sim: payment cannot be reversed")
	ErrNoReversalURL  = errors.New("sim: no reversal URL configured")
	ErrReversalsQueue = errors.New("sim: reversal queue full")
)

// BillerConfig is a biller simulator's configuration.
type BillerConfig struct {
	// Listen is the HTTP address of POST /payments.
	Listen   string
	Behavior Behavior
	Seed     uint64
	// DeclineCode is the "code" of a declined payment's answer.
	DeclineCode string
	// PaymentsMax bounds the payments remembered for idempotent retries
	// and reversals; past it new payments are answered 503.
	PaymentsMax int
	// ReversalURL is where biller-side reversals are sent (switchd's
	// receiving endpoint); empty: POST /reversals is refused.
	ReversalURL string
	// WebhookSecret signs reversal calls (Standard Webhooks, HMAC-SHA256).
	// It never reaches a log line or an error.
	WebhookSecret []byte
	// ReversalQueueMax bounds reversals waiting for delivery.
	ReversalQueueMax int
	// AttemptsMax bounds delivery attempts of one reversal; then it is
	// counted as failed. BackoffMin doubles per attempt up to BackoffMax.
	AttemptsMax     int
	BackoffMin      time.Duration
	BackoffMax      time.Duration
	DeliveryTimeout time.Duration
	TLS             *TLSFiles
	// RequestSigningSecret, when set, is the secret the payer's switch
	// signs its calls with (switchd: the destination's signing_secret_env,
	// Standard Webhooks, the Idempotency-Key as webhook-id): POST /payments
	// and POST /payments/{id}/cancel without a signature that verifies
	// under it, timestamp within five minutes, are answered 401 and change
	// nothing. RequestToken, when set, is the bearer token those calls must
	// carry (switchd: token_env). Neither reaches a log line or an error.
	RequestSigningSecret []byte
	RequestToken         string
}

// DefaultBillerConfig approves at once on 127.0.0.1:9480; reversals are
// retried from 1 s doubling up to 5 min, 10 attempts.
func DefaultBillerConfig() BillerConfig {
	return BillerConfig{
		Listen: defaultBillerListen, Behavior: DefaultBehavior(), Seed: 1,
		DeclineCode: declineCodeDefault, PaymentsMax: billerPaymentsMax,
		ReversalQueueMax: reversalQueueMax, AttemptsMax: 10,
		BackoffMin: time.Second, BackoffMax: 5 * time.Minute, DeliveryTimeout: 10 * time.Second,
	}
}

// DefaultBillerControlConfig listens on 127.0.0.1:9091, beside the
// issuer's 9090, so both simulators can run at once.
func DefaultBillerControlConfig() ControlConfig { return ControlConfig{Listen: defaultBillerControl} }

// Validate reports whether c is usable.
func (c BillerConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrConfig, c.Listen, err)
	}
	if err := c.Behavior.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !validResponseCode(c.DeclineCode) || c.DeclineCode == outcome.Approved {
		return fmt.Errorf("%w: decline code %q must be two letters or digits other than 00", ErrConfig, c.DeclineCode)
	}
	if c.PaymentsMax < 1 || c.PaymentsMax > billerPaymentsMaxLimit {
		return fmt.Errorf("%w: payments max %d out of range 1..%d", ErrConfig, c.PaymentsMax, billerPaymentsMaxLimit)
	}
	if c.ReversalURL != "" {
		u, err := url.Parse(c.ReversalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: reversal URL must be an absolute http or https URL", ErrConfig)
		}
		if n := len(c.WebhookSecret); n < webhookSecretBytesMin || n > webhookSecretBytesMax {
			// The length only: the secret itself is never shown.
			return fmt.Errorf("%w: webhook secret is %d bytes, want %d..%d", ErrConfig, n, webhookSecretBytesMin, webhookSecretBytesMax)
		}
	}
	if c.ReversalQueueMax < 1 || c.ReversalQueueMax > reversalQueueMaxLimit {
		return fmt.Errorf("%w: reversal queue max %d out of range 1..%d", ErrConfig, c.ReversalQueueMax, reversalQueueMaxLimit)
	}
	if c.AttemptsMax < 1 || c.AttemptsMax > attemptsMaxLimit {
		return fmt.Errorf("%w: attempts max %d out of range 1..%d", ErrConfig, c.AttemptsMax, attemptsMaxLimit)
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin || c.BackoffMax > backoffMaxLimit {
		return fmt.Errorf("%w: backoff %v..%v must satisfy 0 < min <= max <= %v", ErrConfig, c.BackoffMin, c.BackoffMax, backoffMaxLimit)
	}
	if c.DeliveryTimeout <= 0 || c.DeliveryTimeout > deliveryTimeoutMax {
		return fmt.Errorf("%w: delivery timeout %v out of range (0, %v]", ErrConfig, c.DeliveryTimeout, deliveryTimeoutMax)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: TLS needs a certificate and a key file", ErrConfig)
	}
	if n := len(c.RequestSigningSecret); n != 0 && (n < webhookSecretBytesMin || n > webhookSecretBytesMax) {
		return fmt.Errorf("%w: request signing secret is %d bytes, want %d..%d", ErrConfig, n, webhookSecretBytesMin, webhookSecretBytesMax)
	}
	if n := len(c.RequestToken); n > requestTokenBytesMax || !printable(c.RequestToken) || strings.ContainsRune(c.RequestToken, ' ') {
		return fmt.Errorf("%w: request token must be at most %d printable characters without spaces (it is %d bytes)", ErrConfig, requestTokenBytesMax, n)
	}
	return nil
}

// PaymentRequest is POST /payments' body. Amount is a decimal string with
// the currency's exponent ("12.34" USD), never a JSON number.
type PaymentRequest struct {
	BillType        string `json:"bill_type"`
	BillerReference string `json:"biller_reference"`
	Amount          string `json:"amount"`
	Currency        string `json:"currency"`
}

// Payment is the biller's answer and record of one payment.
type Payment struct {
	ID              string `json:"payment_id"`
	Status          string `json:"status"` // approved, declined, reversed
	Code            string `json:"code"`   // 00 or the decline code
	BillType        string `json:"bill_type"`
	BillerReference string `json:"biller_reference"`
	Amount          string `json:"amount"`
	Currency        string `json:"currency"`
}

// Payment statuses.
const (
	statusApproved = "approved"
	statusDeclined = "declined"
	statusReversed = "reversed"
	// statusCancelled: the payer's switch took it back (it never learnt
	// the answer in time and gave up on it).
	statusCancelled = "cancelled"
)

// payRecord is one idempotency key's stored answer.
type payRecord struct {
	fingerprint string // the request as parsed: a retry must match it
	key         string
	status      int
	pay         Payment
}

// Biller is an HTTP biller simulator: POST /payments answers by the
// behaviour, idempotently on the Idempotency-Key header (a retry gets the
// stored answer, byte for byte, and is counted); a payment can be reversed
// from the biller's side (control API POST /reversals), which is sent to
// ReversalURL signed Standard Webhooks style and retried with backoff
// until the receiver answers 2xx. Mode timeout holds a request without
// processing it (a retry is decided afresh); late processes and records
// it, then answers after the late delay; a disconnect processes and records
// it and drops the connection, so a retry finds the answer that was lost.
type Biller struct {
	cfg    BillerConfig
	log    *slog.Logger
	state  *behaviorState
	gate   *gate
	srv    *http.Server
	client *http.Client
	now    func() time.Time

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reversal sender
	queue  chan reversal

	mu       sync.Mutex // protects the fields below
	byKey    map[string]*payRecord
	byID     map[string]*payRecord
	seq      int64
	counters billerCounters
}

type billerCounters struct {
	outcomes map[string]int64 // approved, declined, unanswered, disconnected, invalid, conflict, full, unauthorized
	replays  int64
	late     int64
	cancels  int64
	rev      ReversalStats
}

// ReversalStats counts biller-side reversals.
type ReversalStats struct {
	Requested int64 `json:"requested"`
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"`
	// Attempts counts every delivery attempt, the first included.
	Attempts int64 `json:"attempts"`
}

// reversal is one queued biller-side reversal.
type reversal struct {
	webhookID string // the same on every attempt, so the receiver can dedupe
	body      []byte
}

// NewBiller starts a biller on cfg.Listen (unless the starting mode is
// down) and its reversal sender. Close stops both.
func NewBiller(cfg BillerConfig, logger *slog.Logger) (*Biller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var tcfg *tls.Config
	if cfg.TLS != nil {
		var err error
		if tcfg, err = httptls.ServerConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if tcfg.ClientCAs != nil {
			// A biller that names a client CA wants mutual TLS, as an
			// issuer link does: no certificate, no request.
			tcfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Biller{
		cfg: cfg, log: logger, state: newBehaviorState(cfg.Behavior, cfg.Seed),
		client: &http.Client{Timeout: cfg.DeliveryTimeout}, now: time.Now,
		ctx: ctx, cancel: cancel, queue: make(chan reversal, cfg.ReversalQueueMax),
		byKey: make(map[string]*payRecord), byID: make(map[string]*payRecord),
		counters: billerCounters{outcomes: make(map[string]int64)},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payments", b.authenticated(b.pay))
	mux.HandleFunc("GET /payments/{id}", b.getPayment)
	mux.HandleFunc("POST /payments/{id}/cancel", b.authenticated(b.cancelPayment))
	b.srv = &http.Server{
		Handler: mux, ReadHeaderTimeout: controlReadHeaderTimeout,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				b.gate.track(c)
			case http.StateClosed, http.StateHijacked:
				b.gate.untrack(c)
			}
		},
	}
	b.gate = newGate(cfg.Listen, tcfg, func(ln net.Listener) { b.srv.Serve(ln) })
	if cfg.Behavior.Mode != ModeDown {
		if err := b.gate.open(); err != nil {
			cancel()
			return nil, err
		}
	}
	b.wg.Add(1)
	go b.sendReversals()
	logger.Info("biller simulator listening", "addr", b.gate.address(), "mode", cfg.Behavior.Mode,
		"latency", time.Duration(cfg.Behavior.Latency), "late_delay", time.Duration(cfg.Behavior.LateDelay),
		"decline_ratio", cfg.Behavior.DeclineRatio, "timeout_ratio", cfg.Behavior.TimeoutRatio,
		"disconnect_ratio", cfg.Behavior.DisconnectRatio, "seed", cfg.Seed, "reversal_url", redactedURL(cfg.ReversalURL),
		"attempts_max", cfg.AttemptsMax, "backoff_min", cfg.BackoffMin, "backoff_max", cfg.BackoffMax, "tls", tcfg != nil,
		"verify_signature", len(cfg.RequestSigningSecret) > 0, "require_token", cfg.RequestToken != "")
	return b, nil
}

// authenticated is h behind the checks RequestToken and
// RequestSigningSecret ask for; a call that fails one is answered 401,
// counted as unauthorized, and h never sees it. The body is read (up to
// paymentBodyBytesMax) to verify the signature, then handed to h as it was.
func (b *Biller) authenticated(h http.HandlerFunc) http.HandlerFunc {
	if len(b.cfg.RequestSigningSecret) == 0 && b.cfg.RequestToken == "" {
		return h
	}
	var wh *standardwebhooks.Webhook
	if len(b.cfg.RequestSigningSecret) > 0 {
		wh, _ = standardwebhooks.NewWebhookRaw(b.cfg.RequestSigningSecret)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		refuse := func(reason string) {
			b.countOutcome("unauthorized")
			// The reason only: never the token, the signature or the secret.
			b.log.Warn("biller simulator refused an unauthenticated call", "path", r.URL.Path, "reason", reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="biller"`)
			writeProblem(w, http.StatusUnauthorized, "unauthorized", reason)
		}
		if b.cfg.RequestToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(b.cfg.RequestToken)) != 1 {
				refuse("a valid bearer token is required")
				return
			}
		}
		if wh == nil {
			h(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, paymentBodyBytesMax))
		if err != nil {
			writeProblem(w, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("the body is limited to %d bytes", paymentBodyBytesMax))
			return
		}
		// The switch signs with its Idempotency-Key as the webhook id, so
		// a signature cannot be moved to another payment's key.
		if r.Header.Get(standardwebhooks.HeaderWebhookID) != r.Header.Get("Idempotency-Key") {
			refuse("webhook-id must be the Idempotency-Key")
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			refuse("the request signature does not verify: " + err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}
}

// redactedURL is u without a password, for logs (a reversal URL may carry
// basic-auth credentials).
func redactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Redacted()
}

// Addr is the payments address (the bound one for port 0).
func (b *Biller) Addr() string { return b.gate.address() }

// Behavior returns the current behaviour.
func (b *Biller) Behavior() Behavior { return b.state.get() }

// SetBehavior switches the behaviour at once (see Issuer.SetBehavior).
func (b *Biller) SetBehavior(bh Behavior) error {
	if err := setBehavior(b.gate, b.state, bh); err != nil {
		return err
	}
	b.log.Info("biller simulator mode", "mode", bh.Mode, "latency", time.Duration(bh.Latency), "late_delay", time.Duration(bh.LateDelay),
		"decline_ratio", bh.DeclineRatio, "timeout_ratio", bh.TimeoutRatio, "disconnect_ratio", bh.DisconnectRatio)
	return nil
}

// Reset forgets every payment and zeroes the counters; the ratio draws
// restart from the seed. Reversals already queued are still delivered.
func (b *Biller) Reset() {
	b.mu.Lock()
	b.byKey = make(map[string]*payRecord)
	b.byID = make(map[string]*payRecord)
	b.seq = 0
	b.counters = billerCounters{outcomes: make(map[string]int64)}
	b.mu.Unlock()
	b.state.reseed()
}

// Close stops listening, closes every connection, abandons queued
// reversals and waits for the sender. Safe to call more than once.
func (b *Biller) Close() error {
	b.cancel() // held and delayed requests return at once
	b.gate.close()
	ctx, cancel := context.WithTimeout(context.Background(), controlShutdownTimeout)
	defer cancel()
	// Shutdown waits for the handlers' connections to end; they were
	// closed above, so this is quick.
	if err := b.srv.Shutdown(ctx); err != nil {
		b.srv.Close()
	}
	b.wg.Wait()
	return nil
}

func (b *Biller) countOutcome(o string) {
	b.mu.Lock()
	b.counters.outcomes[o]++
	b.mu.Unlock()
}

// fingerprint is what a retry must repeat: every field as parsed.
func (p PaymentRequest) fingerprint(minor int64) string {
	return p.BillType + "\x00" + p.BillerReference + "\x00" + strconv.FormatInt(minor, 10) + "\x00" + p.Currency
}

func (b *Biller) pay(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > idempotencyKeyBytesMax || !printable(key) {
		b.countOutcome("invalid")
		writeProblem(w, http.StatusBadRequest, "idempotency-key", fmt.Sprintf("an Idempotency-Key header of 1..%d printable characters is required", idempotencyKeyBytesMax))
		return
	}
	var req PaymentRequest
	if !decodeBody(w, r, &req, paymentBodyBytesMax) {
		b.countOutcome("invalid")
		return
	}
	minor, err := req.validate()
	if err != nil {
		b.countOutcome("invalid")
		writeProblem(w, http.StatusBadRequest, "invalid-payment", err.Error())
		return
	}
	fp := req.fingerprint(minor)

	b.mu.Lock()
	if rec, ok := b.byKey[key]; ok {
		if rec.fingerprint != fp {
			b.counters.outcomes["conflict"]++
			b.mu.Unlock()
			writeProblem(w, http.StatusConflict, "idempotency-key-reused", "this Idempotency-Key was used for a different payment")
			return
		}
		b.counters.replays++
		status, pay := rec.status, rec.pay
		b.mu.Unlock()
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, status, pay)
		return
	}
	b.mu.Unlock()

	d := b.state.decide()
	switch d.act {
	case actTimeout, actDown:
		// Nothing is recorded: the biller never got to it, so a retry is
		// decided afresh. Hold the request until the caller gives up.
		b.countOutcome("unanswered")
		select {
		case <-r.Context().Done():
		case <-b.ctx.Done():
		}
		return
	}
	rec, ok := b.record(key, fp, req, d.act == actDecline)
	if !ok {
		writeProblem(w, http.StatusServiceUnavailable, "payments-full", fmt.Sprintf("the simulator remembers at most %d payments (POST /reset on the control API)", b.cfg.PaymentsMax))
		return
	}
	if d.act == actDisconnect {
		b.countOutcome("disconnected")
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		return
	}
	b.countOutcome(rec.pay.Status)
	if d.delay > 0 {
		t := time.NewTimer(d.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-b.ctx.Done():
			return
		}
		if d.late {
			b.mu.Lock()
			b.counters.late++
			b.mu.Unlock()
		}
	}
	writeJSON(w, rec.status, rec.pay)
}

// record stores a new payment under key; false when PaymentsMax is reached.
// A concurrent request with the same key that got here first wins: its
// record is returned, so both answers agree.
func (b *Biller) record(key, fp string, req PaymentRequest, declined bool) (payRecord, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rec, ok := b.byKey[key]; ok {
		return *rec, true
	}
	if len(b.byKey) >= b.cfg.PaymentsMax {
		b.counters.outcomes["full"]++
		return payRecord{}, false
	}
	b.seq++
	rec := &payRecord{fingerprint: fp, key: key, status: http.StatusCreated, pay: Payment{
		ID: fmt.Sprintf("bp_%08d", b.seq), Status: statusApproved, Code: outcome.Approved,
		BillType: req.BillType, BillerReference: req.BillerReference, Amount: req.Amount, Currency: req.Currency,
	}}
	if declined {
		rec.status, rec.pay.Status, rec.pay.Code = http.StatusUnprocessableEntity, statusDeclined, b.cfg.DeclineCode
	}
	b.byKey[key], b.byID[rec.pay.ID] = rec, rec
	return *rec, true
}

// cancelPayment takes back an approved payment at the caller's request
// (POST /payments/{id}/cancel): 200 with the payment, also when it was
// cancelled or reversed already (a retried cancel changes nothing); 409
// for a declined one, 404 for none.
func (b *Biller) cancelPayment(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	rec, ok := b.byID[r.PathValue("id")]
	var pay Payment
	if ok {
		if rec.pay.Status == statusApproved {
			rec.pay.Status = statusCancelled
			b.counters.cancels++
		}
		pay = rec.pay
	}
	b.mu.Unlock()
	switch {
	case !ok:
		writeProblem(w, http.StatusNotFound, "no-payment", ErrNoPayment.Error())
	case pay.Status == statusDeclined:
		writeProblem(w, http.StatusConflict, "not-cancellable", "a declined payment cannot be cancelled")
	default:
		writeJSON(w, http.StatusOK, pay)
	}
}

func (b *Biller) getPayment(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	rec, ok := b.byID[r.PathValue("id")]
	var pay Payment
	if ok {
		pay = rec.pay
	}
	b.mu.Unlock()
	if !ok {
		writeProblem(w, http.StatusNotFound, "no-payment", ErrNoPayment.Error())
		return
	}
	writeJSON(w, http.StatusOK, pay)
}

// validate checks the fields and returns the amount in minor units.
func (p PaymentRequest) validate() (int64, error) {
	for _, f := range []struct{ name, v string }{{"bill_type", p.BillType}, {"biller_reference", p.BillerReference}} {
		if f.v == "" || len(f.v) > billFieldBytesMax || !printable(f.v) {
			return 0, fmt.Errorf("%s must be 1..%d printable characters", f.name, billFieldBytesMax)
		}
	}
	cur, err := currency.ByCode(p.Currency)
	if err != nil {
		return 0, fmt.Errorf("currency: %v", err)
	}
	minor, err := currency.ParseMinor(p.Amount, cur, '.')
	if err != nil {
		return 0, fmt.Errorf("amount: %v", err)
	}
	if minor <= 0 {
		return 0, errors.New("amount must be positive")
	}
	return minor, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// ReversalRequest is the control API's POST /reversals body.
type ReversalRequest struct {
	PaymentID string `json:"payment_id"`
	Reason    string `json:"reason"`
}

// ReversalEvent is the body sent to ReversalURL, in Standard Webhooks'
// payload shape (type, timestamp, data).
type ReversalEvent struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      ReversalPayload `json:"data"`
}

// ReversalPayload names the reversed payment as the caller knew it: its
// idempotency key is how switchd finds its own transfer.
type ReversalPayload struct {
	PaymentID       string `json:"payment_id"`
	IdempotencyKey  string `json:"idempotency_key"`
	BillType        string `json:"bill_type"`
	BillerReference string `json:"biller_reference"`
	Amount          string `json:"amount"`
	Currency        string `json:"currency"`
	Reason          string `json:"reason,omitempty"`
}

// reversalEventType is the event's type.
const reversalEventType = "bill_payment.reversed"

// Reverse marks an approved payment reversed and queues the signed call
// to ReversalURL; it returns the webhook id every attempt carries.
func (b *Biller) Reverse(req ReversalRequest) (string, error) {
	if b.cfg.ReversalURL == "" {
		return "", ErrNoReversalURL
	}
	if len(req.Reason) > reasonBytesMax || !printable(req.Reason) {
		return "", fmt.Errorf("%w: reason must be at most %d printable characters", ErrBehavior, reasonBytesMax)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.byID[req.PaymentID]
	if !ok {
		return "", ErrNoPayment
	}
	if rec.pay.Status != statusApproved {
		return "", fmt.Errorf("%w: it is %s", ErrNotReversible, rec.pay.Status)
	}
	ev := ReversalEvent{Type: reversalEventType, Timestamp: b.now().UTC().Truncate(time.Second), Data: ReversalPayload{
		PaymentID: rec.pay.ID, IdempotencyKey: rec.key, BillType: rec.pay.BillType, BillerReference: rec.pay.BillerReference,
		Amount: rec.pay.Amount, Currency: rec.pay.Currency, Reason: req.Reason,
	}}
	body, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	rv := reversal{webhookID: "rev_" + rec.pay.ID, body: body}
	select {
	case b.queue <- rv:
	default:
		return "", ErrReversalsQueue
	}
	// Marked only once queued, so a full queue leaves the payment
	// reversible and the caller can retry.
	rec.pay.Status = statusReversed
	b.counters.rev.Requested++
	return rv.webhookID, nil
}

// sendReversals delivers queued reversals one at a time, head of line,
// each retried with doubling backoff until a 2xx, a 410 (the receiver
// disabled the endpoint) or AttemptsMax.
func (b *Biller) sendReversals() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case rv := <-b.queue:
			b.deliver(rv)
		}
	}
}

func (b *Biller) deliver(rv reversal) {
	backoff := b.cfg.BackoffMin
	for attempt := 1; ; attempt++ {
		b.mu.Lock()
		b.counters.rev.Attempts++
		b.mu.Unlock()
		status, retryAfter, err := b.post(rv)
		switch {
		case err == nil && status >= 200 && status < 300:
			b.mu.Lock()
			b.counters.rev.Delivered++
			b.mu.Unlock()
			b.log.Info("biller simulator reversal delivered", "webhook_id", rv.webhookID, "attempts", attempt)
			return
		case err == nil && status == http.StatusGone, attempt >= b.cfg.AttemptsMax:
			b.mu.Lock()
			b.counters.rev.Failed++
			b.mu.Unlock()
			b.log.Warn("biller simulator reversal abandoned", "webhook_id", rv.webhookID, "attempts", attempt, "status", status, "err", err)
			return
		}
		wait := backoff
		if retryAfter > wait {
			wait = min(retryAfter, b.cfg.BackoffMax)
		}
		b.log.Info("biller simulator reversal retry", "webhook_id", rv.webhookID, "attempt", attempt, "status", status, "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, b.cfg.BackoffMax)
	}
}

// post makes one signed attempt; it returns the status and a Retry-After
// in seconds when the receiver sent one.
func (b *Biller) post(rv reversal) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, b.cfg.ReversalURL, bytes.NewReader(rv.body))
	if err != nil {
		return 0, 0, err
	}
	ts := b.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", rv.webhookID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(b.cfg.WebhookSecret, rv.webhookID, ts, rv.body))
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, deliveryResponseBytesMax))
	var ra time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		ra = time.Duration(s) * time.Second
	}
	return resp.StatusCode, ra, nil
}

// Sign is the Standard Webhooks signature header value of one call:
// "v1," and the base64 HMAC-SHA256, under secret, of "id.timestamp.body".
func Sign(secret []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// BillerStats is a snapshot of a biller's counters (GET /stats).
type BillerStats struct {
	Mode        Mode   `json:"mode"`
	Addr        string `json:"addr"`
	Connections int    `json:"connections"`
	// Payments counts new payment requests by outcome (approved,
	// declined, unanswered, disconnected, invalid, conflict, full,
	// unauthorized: refused by RequestToken or RequestSigningSecret);
	// Replays the retries answered from the record.
	Payments  map[string]int64 `json:"payments"`
	Replays   int64            `json:"replays"`
	Late      int64            `json:"late"`
	Cancels   int64            `json:"cancels"`
	Stored    int              `json:"stored"`
	Reversals ReversalStats    `json:"reversals"`
	Queued    int              `json:"reversals_queued"`
}

// Stats returns a snapshot of the counters.
func (b *Biller) Stats() BillerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := BillerStats{Mode: b.state.get().Mode, Addr: b.gate.address(), Connections: b.gate.connCount(),
		Payments: make(map[string]int64, len(b.counters.outcomes)), Replays: b.counters.replays, Late: b.counters.late, Cancels: b.counters.cancels,
		Stored: len(b.byKey), Reversals: b.counters.rev, Queued: len(b.queue)}
	for k, v := range b.counters.outcomes {
		st.Payments[k] = v
	}
	return st
}

func (b *Biller) statsJSON() any { return b.Stats() }

// PaymentsByReference returns the payments recorded with biller
// reference ref, in id order, at most paymentsFoundMax (the control API's
// GET /payments?biller_reference=: how a test or an operator finds the
// payment id to reverse).
func (b *Biller) PaymentsByReference(ref string) []Payment {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Payment
	for _, rec := range b.byID {
		if rec.pay.BillerReference == ref {
			out = append(out, rec.pay)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > paymentsFoundMax {
		out = out[:paymentsFoundMax]
	}
	return out
}

// StartBillerControl serves the control API of b: the shared routes,
// GET /payments?biller_reference=REF (the payments of that reference,
// {"payments": […]}) and POST /reversals {"payment_id", "reason"}.
func StartBillerControl(cfg ControlConfig, b *Biller, logger *slog.Logger) (*Control, error) {
	mux := controlMux(b)
	mux.HandleFunc("GET /payments", func(w http.ResponseWriter, r *http.Request) {
		ref := r.URL.Query().Get("biller_reference")
		if ref == "" || len(ref) > billFieldBytesMax || !printable(ref) {
			writeProblem(w, http.StatusBadRequest, "bad-request", fmt.Sprintf("biller_reference of 1..%d printable characters is required", billFieldBytesMax))
			return
		}
		writeJSON(w, http.StatusOK, map[string][]Payment{"payments": append([]Payment{}, b.PaymentsByReference(ref)...)})
	})
	mux.HandleFunc("POST /reversals", func(w http.ResponseWriter, r *http.Request) {
		var req ReversalRequest
		if !readJSON(w, r, &req) {
			return
		}
		id, err := b.Reverse(req)
		switch {
		case err == nil:
			writeJSON(w, http.StatusAccepted, map[string]string{"webhook_id": id, "payment_id": req.PaymentID})
		case errors.Is(err, ErrNoPayment):
			writeProblem(w, http.StatusNotFound, "no-payment", err.Error())
		case errors.Is(err, ErrNotReversible):
			writeProblem(w, http.StatusConflict, "not-reversible", err.Error())
		case errors.Is(err, ErrNoReversalURL):
			writeProblem(w, http.StatusConflict, "no-reversal-url", err.Error())
		case errors.Is(err, ErrReversalsQueue):
			writeProblem(w, http.StatusServiceUnavailable, "reversal-queue-full", err.Error())
		case errors.Is(err, ErrBehavior):
			writeProblem(w, http.StatusBadRequest, "bad-request", err.Error())
		default:
			writeProblem(w, http.StatusInternalServerError, "internal", "cannot queue the reversal")
		}
	})
	return startControl(cfg, mux, logger)
}

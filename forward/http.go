package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
	"github.com/switchd/switchd/webhook"
)

// HTTP billers (issue 13). A bill payment routed to an http destination
// is recorded with OpForward like an ISO 8583 forward — the body it sends
// is the record (a bill payment names the bill, never the card), its
// forward id the Idempotency-Key — then POSTed to the destination's URL:
//
//	201 approved      → OpForwardResult approved: the destination's
//	                    settlement account → the route's account
//	422 declined      → declined with the biller's code (outcome.HostCode)
//	no answer, 5xx    → timeout: the partner gets 91 and the record
//	                    queues a follow-up in the SAF queue in the same apply
//	refused to connect → never sent: 91, nothing to follow up
//
// The follow-up (SAF sender on the leader) POSTs the same body with the
// same Idempotency-Key, which the biller answers from its record: a
// decline ends it; an approval is kept on the forward as late (never
// posted) and cancelled with POST <url>/{payment id}/cancel. Until the
// biller answers definitively it is tried again, so exactly once is the
// biller's idempotency on our forward id.

// HTTP limits.
const (
	// httpResponseBytesMax bounds what is read of a biller's answer: a
	// payment record of a few short fields.
	httpResponseBytesMax = 16 << 10
	// billFieldBytesMax is the biller API's bound on bill_type and
	// biller_reference.
	billFieldBytesMax = 64
	// httpConnsPerHostMax bounds the connections to one biller.
	httpConnsPerHostMax = 64
	httpIdleConnsMax    = 16
	httpIdleTimeout     = 90 * time.Second
	// cancelTimeoutMin is the least a cancel is given, whatever the
	// destination's payment timeout.
	cancelTimeoutMin = time.Second
)

// errUnanswered: a request sent that got no definitive answer (a
// timeout, a lost connection, a 5xx): the biller may have acted.
var errUnanswered = errors.New("forward: sent, no definitive answer")

// BillerPayment is the body POSTed to an http destination. Amount is a
// decimal string in the currency's exponent ("12.34"), never a number.
type BillerPayment struct {
	BillType        string `json:"bill_type"`
	BillerReference string `json:"biller_reference"`
	Amount          string `json:"amount"`
	Currency        string `json:"currency"`
}

// billerAnswer is what a biller says about a payment.
type billerAnswer struct {
	PaymentID string `json:"payment_id"`
	Status    string `json:"status"`
	Code      string `json:"code"`
}

// Biller payment statuses.
const (
	billerApproved  = "approved"
	billerCancelled = "cancelled"
	billerReversed  = "reversed"
)

func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxConnsPerHost: httpConnsPerHostMax, MaxIdleConnsPerHost: httpIdleConnsMax,
			IdleConnTimeout: httpIdleTimeout, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext},
		// A biller that redirects is misconfigured: its answer is the
		// redirect, which is no decision.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// billerBody is the request for bill payment req.
func billerBody(req payment.ForwardRequest) (string, error) {
	ccy, err := currency.ByCode(req.Command.Currency)
	if err != nil {
		return "", err
	}
	in := req.Intent
	if in.BillType == "" || len(in.BillType) > billFieldBytesMax {
		return "", fmt.Errorf("%w: a bill payment to a biller needs a bill type of 1..%d characters", outcome.ErrUnsupported, billFieldBytesMax)
	}
	// The partner's reference for the payment; a long one is hashed to
	// fit the biller's field (it only has to be stable).
	ref := in.IdempotencyKey
	if in.Ref.RRN != "" {
		ref = in.Ref.RRN
	}
	if len(ref) > billFieldBytesMax {
		sum := sha256.Sum256([]byte(ref))
		ref = hex.EncodeToString(sum[:16])
	}
	b, err := json.Marshal(BillerPayment{BillType: in.BillType, BillerReference: ref,
		Amount: currency.FormatMinor(req.Command.Amount, ccy, '.'), Currency: ccy.Code})
	if err != nil {
		return "", err
	}
	if len(b) > store.ForwardBodyBytesMax {
		return "", fmt.Errorf("%w: bill payment body over %d bytes", outcome.ErrUnsupported, store.ForwardBodyBytesMax)
	}
	return string(b), nil
}

// forwardHTTP is Forward for an http destination.
func (f *Forwarder) forwardHTTP(ctx context.Context, req payment.ForwardRequest) (payment.ForwardAnswer, error) {
	dest, cmd := req.Destination, req.Command
	if fw, err := f.ledger.Forward(cmd.Key); err == nil {
		return f.answer(ctx, fw, outcome.IssuerUnavailable, true)
	}
	body, err := billerBody(req)
	if err != nil {
		return payment.ForwardAnswer{}, err
	}
	timeout := time.Duration(dest.HTTP.TimeoutMs) * time.Millisecond
	cmd.Op = store.OpForward
	// The payer pays the bill, as on-us (cmd.Card, its funds checked when
	// the payment is recorded, before the biller is asked); the biller's
	// settlement account is credited with what we owe it.
	if cmd.Card == "" {
		return payment.ForwardAnswer{}, fmt.Errorf("%w: a bill payment to biller %s needs the payer's account", outcome.ErrUnsupported, dest.ID)
	}
	cmd.Debit, cmd.Credit, cmd.OriginalRef = "", "", ""
	cmd.Forward = &store.ForwardCommand{Request: &store.ForwardRequest{
		Destination: dest.ID, Route: req.Route, Credit: dest.SettlementAccount,
		TimeoutAt: cmd.Time + int64(timeout+f.cfg.DeadlineMargin), OriginalRef: req.Command.OriginalRef, Body: body,
	}}
	start := time.Now()
	id, replay, err := f.record(ctx, cmd, outcome.IssuerUnavailable)
	if err != nil || replay != nil {
		return deref(replay), err
	}
	f.observe(dest.ID, StageRecord, start)
	pctx, pcancel := context.WithTimeout(ctx, timeout)
	start = time.Now()
	status, ans, err := f.post(pctx, dest, dest.HTTP.URL, id, []byte(body))
	f.observe(dest.ID, StageHop, start)
	pcancel()
	outc, rc, auth, reason := classify(status, ans, err)
	if reason == "not_sent" {
		f.log.Warn("bill payment not sent", "destination", dest.ID, "forward", id, "err", err)
	}
	defer f.observe(dest.ID, StageAnswer, time.Now())
	return f.decide(ctx, cmd.Key, outc, rc, auth, reason, timeout, outcome.IssuerUnavailable)
}

// classify turns a biller's answer to a payment into a forward result.
func classify(status int, ans billerAnswer, err error) (outc, rc, auth, reason string) {
	switch {
	case err != nil && notSent(err):
		return store.OutcomeDeclined, outcome.IssuerUnavailable, "", "not_sent"
	case err != nil:
		return store.OutcomeTimeout, "", "", "timeout"
	case status == http.StatusCreated && ans.Status == billerApproved:
		return store.OutcomeApproved, outcome.Approved, authCode(ans.PaymentID), ""
	case status == http.StatusUnprocessableEntity:
		rc = ans.Code
		if len(rc) != 2 {
			rc = outcome.DoNotHonor
		}
		return store.OutcomeDeclined, rc, "", ""
	case status >= 500 || status == http.StatusTooManyRequests:
		// Busy or broken: it may or may not have recorded the payment.
		return store.OutcomeTimeout, "", "", fmt.Sprintf("http_%d", status)
	}
	// The biller refused the request itself (400, 401, 409, a 201 that
	// is no approval): it did not pay the bill.
	return store.OutcomeDeclined, outcome.SystemMalfunction, "", fmt.Sprintf("http_%d", status)
}

// authCode is the approval code a partner gets for a biller's payment:
// field 38 has six characters, the last six of the biller's payment id.
func authCode(paymentID string) string {
	if len(paymentID) > 6 {
		return paymentID[len(paymentID)-6:]
	}
	return paymentID
}

// notSent: the connection was never made, or its TLS handshake failed,
// so the biller has nothing. A TLS alert from the biller ("remote
// error": it refused our certificate, or wanted one) means its HTTP
// server never took the request: servers hand a request on only after
// the handshake, though with TLS 1.3 our side learns of the refusal only
// when it reads the answer. A certificate of the biller's we cannot
// verify stops the handshake before anything is written.
func notSent(err error) bool {
	var op *net.OpError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &op) && (op.Op == "dial" || op.Op == "remote error") || errors.As(err, &verify)
}

// meter is destination id's meter, made on its first call (or when
// Stats lists it).
func (f *Forwarder) meter(id string) *host.Meter {
	f.httpMu.Lock()
	defer f.httpMu.Unlock()
	return f.meterLocked(id)
}

func (f *Forwarder) meterLocked(id string) *host.Meter {
	m, ok := f.meters[id]
	if !ok {
		if f.meters == nil {
			f.meters = map[string]*host.Meter{}
		}
		m = host.NewMeter(id, store.DestinationKindHTTP, f.cfg.BillerBreakerFailures, f.cfg.BillerBreakerCooldown, f.opt.Now)
		f.meters[id] = m
	}
	return m
}

// billerClient is the HTTP client of one destination with TLS settings
// of its own: made when they change, and again when its files do
// (host.TLSFiles), so a rotated certificate needs no restart.
type billerClient struct {
	tls     store.HostTLS
	files   *host.TLSFiles
	checked time.Time
	client  *http.Client
}

// httpClient is the client for dest's calls: the shared one unless dest
// has TLS settings of its own (a private CA, a client certificate for
// mutual TLS). A setting that cannot be loaded fails the call before
// it is sent, and is tried again on the next (so a fixed file is
// picked up without a restart); the error names the file, never a key.
// Files that changed are read again (at most every
// Config.BillerTLSCheck); when the new ones do not load, the client in
// use stays and the error is logged.
func (f *Forwarder) httpClient(dest *store.Destination) (*http.Client, error) {
	t := dest.HTTP.TLS
	if t == nil {
		return f.http, nil
	}
	now := f.opt.Now()
	f.httpMu.Lock()
	defer f.httpMu.Unlock()
	bc, ok := f.billers[dest.ID]
	if ok && bc.tls == *t {
		if now.Sub(bc.checked) < f.cfg.BillerTLSCheck {
			return bc.client, nil
		}
		bc.checked = now
		tc, changed, err := bc.files.Config()
		if err != nil {
			f.log.Error("biller TLS files", "destination", dest.ID, "err", err)
		}
		if changed {
			bc.client.CloseIdleConnections()
			bc.client = newBillerHTTPClient(tc)
			f.log.Info("biller TLS files loaded again", "destination", dest.ID)
		}
		return bc.client, nil
	}
	files, err := host.LoadTLSFiles(&host.TLSConfig{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName})
	if err != nil {
		return nil, fmt.Errorf("destination %s tls: %w", dest.ID, err)
	}
	tc, _, _ := files.Config()
	if ok {
		bc.client.CloseIdleConnections() // settings changed
	}
	if f.billers == nil {
		f.billers = map[string]*billerClient{}
	}
	c := newBillerHTTPClient(tc)
	f.billers[dest.ID] = &billerClient{tls: *t, files: files, checked: now, client: c}
	return c, nil
}

// newBillerHTTPClient is newHTTPClient with TLS configuration tc.
func newBillerHTTPClient(tc *tls.Config) *http.Client {
	c := newHTTPClient()
	c.Transport.(*http.Transport).TLSClientConfig = tc
	return c
}

// requestSigner is the signer of h's calls, nil when it signs none. The
// secret is read at each call (a rotated variable or file takes effect
// without a restart); a missing or malformed one fails the call before it
// is sent, so the biller never sees an unsigned request it expects signed.
// The error names the variable or file, never the secret.
func requestSigner(h *store.HTTPDestination) (*standardwebhooks.Webhook, error) {
	switch {
	case h.SigningSecretEnv != "":
		v := os.Getenv(h.SigningSecretEnv)
		wh, err := standardwebhooks.NewWebhook(v)
		if err != nil || v == "" {
			return nil, fmt.Errorf("signing secret variable %s is not a whsec_/base64 secret on this node", h.SigningSecretEnv)
		}
		return wh, nil
	case h.SigningSecretFile != "":
		secret, err := webhook.ReadSecretFile(h.SigningSecretFile)
		if err != nil {
			return nil, fmt.Errorf("signing %v", err)
		}
		return standardwebhooks.NewWebhookRaw(secret)
	}
	return nil, nil
}

// post sends one signed request to url with Idempotency-Key key and
// returns the biller's status and answer; err is a transport failure
// (its class only: no header or body is in it).
func (f *Forwarder) post(ctx context.Context, dest *store.Destination, url, key string, body []byte) (int, billerAnswer, error) {
	var ans billerAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	h := dest.HTTP
	if h.TokenEnv != "" {
		tok := os.Getenv(h.TokenEnv)
		if tok == "" {
			return 0, ans, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("token variable %s is not set on this node", h.TokenEnv)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if wh, err := requestSigner(h); err != nil {
		return 0, ans, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	} else if wh != nil {
		now := f.opt.Now()
		sig, _ := wh.Sign(key, now, body)
		req.Header.Set(standardwebhooks.HeaderWebhookID, key)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, fmt.Sprint(now.Unix()))
		req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	}
	m := f.meter(dest.ID)
	if !m.Begin() {
		return 0, ans, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%w: %s: circuit open", host.ErrUnavailable, dest.ID)}
	}
	hc, err := f.httpClient(dest)
	if err != nil {
		m.Unavailable()
		return 0, ans, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		if notSent(err) {
			m.Unavailable()
		} else {
			m.Timeout()
		}
		return 0, ans, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, httpResponseBytesMax+1))
	if err != nil {
		m.Timeout()
		return 0, ans, fmt.Errorf("%w: reading the answer: %v", errUnanswered, err)
	}
	if len(b) > httpResponseBytesMax {
		m.Timeout()
		return 0, ans, fmt.Errorf("%w: answer over %d bytes", errUnanswered, httpResponseBytesMax)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		m.Timeout() // busy or broken: no decision (classify)
	} else {
		m.Answered(time.Since(t0))
	}
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusUnprocessableEntity || resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &ans); err != nil {
			return 0, ans, fmt.Errorf("%w: answer %d is not a payment", errUnanswered, resp.StatusCode)
		}
	}
	return resp.StatusCode, ans, nil
}

// httpFollowUp is the SAF send of an http destination's entry: ask the
// biller again under the same key; cancel what it approved. rc "00" is
// done; a retry code tries again later; errUnanswered waits for it.
func (f *Forwarder) httpFollowUp(dest string) func(context.Context, *store.SAFEntry) (string, error) {
	return func(ctx context.Context, e *store.SAFEntry) (string, error) {
		x, ok := f.ledger.Directory().Destination(dest)
		if !ok || x.HTTP == nil {
			return "", fmt.Errorf("destination %s is no http destination any more", dest)
		}
		fw, err := f.ledger.Forward(e.Forward)
		if err != nil {
			return "", err
		}
		timeout := max(time.Duration(x.HTTP.TimeoutMs)*time.Millisecond, cancelTimeoutMin)
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		status, ans, err := f.post(pctx, x, x.HTTP.URL, fw.ID, []byte(fw.Body))
		outc, rc, auth, reason := classify(status, ans, err)
		switch {
		case reason == "not_sent":
			return "", err
		case outc == store.OutcomeTimeout:
			return "", fmt.Errorf("%w: %s", errUnanswered, reason)
		case status == http.StatusCreated && (ans.Status == billerCancelled || ans.Status == billerReversed):
			return outcome.Approved, nil // taken back already
		case outc == store.OutcomeDeclined && status != http.StatusUnprocessableEntity:
			return outcome.SystemMalfunction, nil // refused: try again later, counted
		}
		// A definitive answer: kept on the record as late (never posted).
		if _, err := f.proposeResult(ctx, fw.Key, outc, rc, auth, "late"); err != nil {
			return "", err
		}
		if outc == store.OutcomeDeclined {
			return outcome.Approved, nil // nothing to take back
		}
		status, ans, err = f.post(pctx, x, x.HTTP.URL+"/"+ans.PaymentID+"/cancel", fw.ID+"-cancel", nil)
		switch {
		case err != nil && notSent(err):
			return "", err
		case err != nil, status >= 500:
			return "", fmt.Errorf("%w: cancel", errUnanswered)
		case status == http.StatusOK && (ans.Status == billerCancelled || ans.Status == billerReversed):
			f.log.Info("bill payment the partner was declined for cancelled at the biller", "destination", dest, "forward", fw.ID, "payment", ans.PaymentID)
			return outcome.Approved, nil
		}
		return outcome.SystemMalfunction, nil
	}
}

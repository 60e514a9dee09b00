package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchd/switchd/keyfile"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
	"github.com/switchd/switchd/webhook"
)

// Biller-side reversals (issue 13): POST /v1/billers/{destination}/reversals
// is how an http destination takes back a bill payment it approved. It
// is mounted on the ops listener beside the operators' API but is not
// authenticated by OAuth: the biller signs each call (Standard Webhooks,
// HMAC-SHA256 under the secret in the destination's reversal_secret_file,
// timestamp within five minutes), and nothing is proposed before the
// signature verifies. The event is a bill_payment.reversed whose
// data.idempotency_key is the forward id we paid it under; the reversal
// is store.OpHostReversal, keyed by the webhook id, so a biller's retry is
// a replay, and a second event about the same payment changes nothing.
//
//	200 reversed (or reversed already, or nothing was posted)
//	401 the signature, its timestamp or the destination does not verify
//	404 no payment of this biller under that key
//	413 a body over BillerEventBytesMax; 400 an event that is no reversal

// Limits.
const (
	// BillerEventBytesMax bounds a reversal call's body: a handful of
	// short fields.
	BillerEventBytesMax  = 16 << 10
	billerProposeTimeout = 10 * time.Second
	// BillerReversalEvent is the event type a biller reverses with.
	BillerReversalEvent = "bill_payment.reversed"
)

// errBadEvent: a verified call whose body is no reversal event.
var errBadEvent = errors.New("api: not a bill_payment.reversed event")

// BillerLedger is what the reversal endpoint needs of the node.
type BillerLedger interface {
	Propose(ctx context.Context, cmd store.Command) (store.Result, error)
	Directory() *store.Directory
}

// BillerReversals serves POST /v1/billers/{destination}/reversals.
type BillerReversals struct {
	ledger BillerLedger
	log    *slog.Logger
	now    func() time.Time
}

// NewBillerReversals is the endpoint over ledger.
func NewBillerReversals(ledger BillerLedger, logger *slog.Logger) *BillerReversals {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &BillerReversals{ledger: ledger, log: logger, now: time.Now}
}

// BillerReversalPattern is the route BillerReversals serves.
const BillerReversalPattern = "POST /v1/billers/{destination}/reversals"

type billerEvent struct {
	Type string `json:"type"`
	Data struct {
		PaymentID      string `json:"payment_id"`
		IdempotencyKey string `json:"idempotency_key"`
	} `json:"data"`
}

// BillerReversalAnswer is the 200 body.
type BillerReversalAnswer struct {
	Forward  string `json:"forward"`
	Transfer string `json:"transfer,omitempty"`
	// Detail says why nothing new was posted (store.HostReversalAlready,
	// store.HostReversalNotApproved).
	Detail string `json:"detail,omitempty"`
}

func (h *BillerReversals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dest := r.PathValue("destination")
	body, err := io.ReadAll(io.LimitReader(r.Body, BillerEventBytesMax+1))
	if err != nil {
		h.fail(w, fmt.Errorf("%w: reading the body", outcome.ErrBadRequest))
		return
	}
	if len(body) > BillerEventBytesMax {
		h.fail(w, fmt.Errorf("%w: at most %d bytes", outcome.ErrBodyTooLarge, BillerEventBytesMax))
		return
	}
	if err := h.verify(dest, body, r.Header); err != nil {
		h.log.Warn("biller reversal refused", "destination", dest, "err", err)
		h.fail(w, err)
		return
	}
	var ev billerEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type != BillerReversalEvent || ev.Data.IdempotencyKey == "" {
		h.fail(w, fmt.Errorf("%w: %w", outcome.ErrBadRequest, errBadEvent))
		return
	}
	fwd, id := ev.Data.IdempotencyKey, r.Header.Get(standardwebhooks.HeaderWebhookID)
	ctx, cancel := context.WithTimeout(r.Context(), billerProposeTimeout)
	defer cancel()
	res, err := h.ledger.Propose(ctx, store.Command{Op: store.OpHostReversal, Key: "hrev|" + dest + "|" + id, Fingerprint: fwd,
		Time: h.now().UnixNano(), BusinessDay: h.now().UTC().Format(time.DateOnly),
		HostReversal: &store.HostReversal{Destination: dest, Forward: fwd, Source: store.HostReversalWebhook, Event: id}})
	if err == nil {
		err = res.Status.Err()
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	h.log.Info("biller reversed a payment", "destination", dest, "forward", fwd, "transfer", res.TransferID, "detail", res.Detail, "replayed", res.Replayed)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(BillerReversalAnswer{Forward: fwd, Transfer: res.TransferID, Detail: res.Detail})
}

// verify checks the call's signature under destination dest's secret.
// Every failure is ErrBadSignature with a reason that names no secret.
func (h *BillerReversals) verify(dest string, body []byte, hdr http.Header) error {
	x, ok := h.ledger.Directory().Destination(dest)
	if !ok || x.Kind != store.DestinationKindHTTP || x.HTTP == nil || x.HTTP.ReversalSecretFile == "" {
		return fmt.Errorf("%w: no biller %q with a reversal secret", outcome.ErrBadSignature, dest)
	}
	secret, err := webhook.ReadSecretFile(x.HTTP.ReversalSecretFile)
	if err != nil {
		return fmt.Errorf("%w: %v", outcome.ErrBadSignature, err)
	}
	wh, _ := standardwebhooks.NewWebhookRaw(secret)
	if err := wh.Verify(body, hdr); err != nil {
		return fmt.Errorf("%w: %v", outcome.ErrBadSignature, err)
	}
	return nil
}

func (h *BillerReversals) fail(w http.ResponseWriter, err error) {
	o := outcome.Of(err)
	p := Problem{Type: problemBase + o.Problem, Title: o.Title, Status: o.HTTPStatus}
	if o.Detail || errors.Is(err, errBadEvent) {
		p.Detail = err.Error()
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(o.HTTPStatus)
	json.NewEncoder(w).Encode(p)
}

// webhookSecretBytes is the size of a secret GenerateWebhookSecretFile
// makes (Standard Webhooks: 24 to 64 random bytes).
const webhookSecretBytes = 32

// GenerateWebhookSecretFile makes path, owner-readable only, holding a
// new whsec_<base64 of 32 random bytes> secret, unless it exists (false).
// The demo's biller reversal secret is made this way on first start.
func GenerateWebhookSecretFile(path string) (bool, error) {
	return keyfile.GenerateEncoded(path, webhookSecretBytes, func(b []byte) string {
		return "whsec_" + base64.StdEncoding.EncodeToString(b)
	})
}

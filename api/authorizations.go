package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Retail-finance authorizations (issue 12). An authorization checks that
// the account exists, that its available balance covers the amount (the
// credit check: 422 credit-check-rejected, nothing reserved) and whether
// strong customer authentication is needed (Config.SCA). Without SCA it
// reserves the amount at once: the reservation is a funds block (a ledger
// hold, blocks.go), captured in parts up to the reserved amount, each
// capture a completion of the hold with its own id, a capture reversed by
// a reversal of that completion, and what is left cancelled by a release.
// It expires with the hold (the core's hold_expiry): a capture or a
// cancellation after that is a 422 authentication-is-no-longer-valid.
//
// With SCA needed nothing is reserved yet: the authorization is stored
// (store.OpPutAuthorization, replicated) as authentication_required, and
// the redirect step (sca.go) leads the customer to a confirmation; once
// authenticated the amount is reserved as above and captures, reversals
// and cancellation work exactly as for one that needed no SCA. Its id is
// "sca-" + a hash of the partner and its reference, never a ledger id.
//
// Another partner's authorization id answers 404, as everywhere in this
// API (an id tells a stranger nothing, not even that it exists). The
// claimant-mismatch problem (403) is the SCA link's: a token that is not
// the authorization's current one does not speak for it.

// captureOriginalPrefix scopes captures' references: a capture can be
// named as an original ("rest-capture|" + authorization id + "|" + its
// trace) so that it can be reversed.
const captureOriginalPrefix = "rest-capture|"

// Limits.
const (
	// traceHexLen is the length of a capture's trace (its STAN, from the
	// authorization id and the request's key): 48 bits, so two captures of
	// one authorization do not collide.
	traceHexLen = 12
	// scaIDPrefix marks an authorization awaiting SCA (never a ledger id).
	scaIDPrefix = "sca-"
	scaIDHexLen = 24
)

type authorizationRequest struct {
	Account   string `json:"account" minLength:"1" maxLength:"64" doc:"The paying account's id"`
	Amount    string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"Decimal string with the currency's exponent: \"12.34\" USD, \"1000\" JPY"`
	Currency  string `json:"currency" pattern:"^[A-Z]{3}$" doc:"ISO 4217 alphabetic code; the account's"`
	Reference string `json:"reference" minLength:"1" maxLength:"35" pattern:"^[\\x21-\\x7e]+$" doc:"The partner's unique reference of this authorization (shared with funds blocks)"`
	RiskFlag  string `json:"risk_flag,omitempty" maxLength:"32" pattern:"^[a-z0-9_-]*$" doc:"The partner's risk assessment; a flag the SCA rule lists needs SCA"`
}

type authCaptureRequest struct {
	Amount string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"What to pay, at most what the authorization still reserves"`
}

type redirectRequest struct {
	ReturnURL string `json:"return_url" minLength:"1" maxLength:"2048" format:"uri" doc:"Where the customer returns after authenticating"`
}

// Authorization is an authorization as the API shows it; a reserved one
// is made from the hold the ledger stored.
type Authorization struct {
	ID        string `json:"id"`
	Status    string `json:"status" enum:"authentication_required,authentication_started,authenticated,authentication_failed,reserved,captured,cancelled,expired" doc:"authentication_required: nothing reserved until SCA; authentication_started: a redirect was issued; authentication_failed: the customer declined; authenticated: approved, reservation under way; reserved while the hold stands; captured, cancelled or expired after (expired also: not authenticated in time)"`
	Account   string `json:"account"`
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
	Reserved  string `json:"reserved,omitempty" doc:"What is still reserved (counted out of the account's available balance)"`
	Captured  string `json:"captured,omitempty" doc:"What captures have paid so far"`
	Cancelled string `json:"cancelled,omitempty" doc:"What a cancellation gave back to the available balance"`
	ExpiresAt string `json:"expires_at,omitempty" doc:"RFC 3339, UTC: a reserved authorization lapses then; one awaiting SCA must be authenticated by then"`
	CreatedAt string `json:"created_at,omitempty" doc:"RFC 3339, UTC"`
	Links     *Links `json:"links,omitempty"`
}

// Links are an authorization's next steps.
type Links struct {
	Redirect string `json:"redirect" doc:"POST {return_url} here for the customer's redirect URL"`
}

// AuthCapture is one capture of an authorization, or its reversal.
type AuthCapture struct {
	ID              string `json:"id"`
	AuthorizationID string `json:"authorization_id"`
	CaptureID       string `json:"capture_id,omitempty" doc:"On a reversal: the capture it reverses"`
	Amount          string `json:"amount"`
	Currency        string `json:"currency"`
	CreatedAt       string `json:"created_at"`
}

type authorizationAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the stored answer to an earlier request with this key"`
	Location string `header:"Location"`
	Status   int
	Body     Authorization
}

type authCaptureAnswer struct {
	Replayed string `header:"Idempotent-Replayed"`
	Status   int
	Body     AuthCapture
}

func (s *Server) registerAuthorizations() {
	problems := []int{400, 401, 403, 404, 409, 422, 503}
	write := []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}
	meta := map[string]any{"scope": ScopePaymentsWrite}
	tags := []string{"retail finance"}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-authorization", Method: http.MethodPost, Path: "/v1/authorizations", Summary: "Authorize an amount",
		Description: "Checks the account and its available balance (422 credit-check-rejected) and whether strong customer authentication is needed " +
			"(amount above sca.amount_threshold, a partner in sca.partners, a risk_flag in sca.risk_flags). Without SCA the amount is reserved at once " +
			"(status reserved); with SCA the authorization is stored, nothing is reserved and links.redirect names the next step (status authentication_required).",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		Body           authorizationRequest
	}) (*authorizationAnswer, error) {
		return s.authorize(ctx, in.IdempotencyKey, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-authorization", Method: http.MethodGet, Path: "/v1/authorizations/{id}", Summary: "Read an authorization",
		Description: "An authorization as it is now: awaiting SCA (authentication_required, authentication_started), declined (authentication_failed), " +
			"not authenticated in time (expired), or the reservation it became (reserved, captured, cancelled, expired).",
		Errors: []int{401, 403, 404, 503}, Tags: tags,
		Security: []map[string][]string{{"oauth2": {ScopePaymentsRead}}}, Metadata: map[string]any{"scope": ScopePaymentsRead},
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"32"`
	}) (*authorizationAnswer, error) {
		if strings.HasPrefix(in.ID, scaIDPrefix) {
			rec, err := s.ownSCA(ctx, callerOf(ctx), in.ID)
			if err != nil {
				return nil, err
			}
			a, err := s.scaAuthorization(rec)
			if err != nil {
				return nil, problemOf(err)
			}
			return &authorizationAnswer{Status: http.StatusOK, Body: a}, nil
		}
		t, err := s.ownAuthorization(ctx, callerOf(ctx), in.ID)
		if err != nil {
			return nil, err
		}
		a, err := authorizationOf(t)
		if err != nil {
			return nil, problemOf(err)
		}
		return &authorizationAnswer{Status: http.StatusOK, Body: a}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "cancel-authorization", Method: http.MethodDelete, Path: "/v1/authorizations/{id}", Summary: "Cancel what an authorization still reserves",
		Description: "Gives what is still reserved back to the available balance; captures made stand. 409 original-final once it is captured or cancelled, " +
			"422 authentication-is-no-longer-valid once it expired.",
		Errors: problems, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key gets the stored answer"`
		ID             string `path:"id" maxLength:"32"`
	}) (*authorizationAnswer, error) {
		return s.cancelAuthorization(ctx, in.IdempotencyKey, in.ID)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "capture-authorization", Method: http.MethodPost, Path: "/v1/authorizations/{id}/captures", Summary: "Capture part of an authorization",
		Description: "Pays the amount from the reservation to the partner's settlement account; several captures may follow, each with its own id, " +
			"up to what is reserved (then 422 exceeds-original). The last one that empties the reservation closes it.",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"32"`
		Body           authCaptureRequest
	}) (*authCaptureAnswer, error) {
		return s.captureAuthorization(ctx, in.IdempotencyKey, in.ID, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "reverse-capture", Method: http.MethodPost, Path: "/v1/authorizations/{id}/captures/{capture}/reversal", Summary: "Reverse a capture",
		Description: "Gives the capture's amount back to the account (a compensating transfer from the settlement account); the reservation does not grow back. " +
			"A capture already reversed is a 409 original-final.",
		DefaultStatus: http.StatusCreated, Errors: problems, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key gets the stored answer"`
		ID             string `path:"id" maxLength:"32"`
		Capture        string `path:"capture" maxLength:"32"`
	}) (*authCaptureAnswer, error) {
		return s.reverseCapture(ctx, in.IdempotencyKey, in.ID, in.Capture)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "authorization-redirect", Method: http.MethodPost, Path: "/v1/authorizations/{id}/redirect", Summary: "Start the SCA redirect",
		Description: "For an authorization awaiting SCA: a one-time link (redirect_url) to the confirmation page for the customer's browser, which comes back " +
			"to return_url with ?authorization_id=…&status=reserved|authenticated|authentication_failed. return_url: absolute https (http only to a loopback " +
			"host where sca.allow_loopback_http is set), under one of the partner's sca.return_url_prefixes when it has some. A new redirect replaces the last " +
			"link (at most 3); the link is shown in this answer only, so a repeat under the same key is a 409 conflict. 422 invalid-authentication-state once " +
			"it was decided, authentication-is-no-longer-valid after the time limit.",
		DefaultStatus: http.StatusCreated, Errors: []int{400, 401, 403, 404, 409, 422, 503}, MaxBodyBytes: bodyBytesMax, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key; a repeat with it is a 409 (the link is shown once)"`
		ID             string `path:"id" maxLength:"32"`
		Body           redirectRequest
	}) (*redirectAnswer, error) {
		return s.redirect(ctx, in.IdempotencyKey, in.ID, in.Body)
	})
	// The confirmation page is HTML for a browser, outside the OpenAPI
	// document: no bearer token, the link's token is the credential.
	s.mux.HandleFunc("GET /v1/sca/{id}", s.scaPage)
	s.mux.HandleFunc("POST /v1/sca/{id}", s.scaDecide)
	huma.Register(s.api, huma.Operation{
		OperationID: "create-credit-application", Method: http.MethodPost, Path: "/v1/credit-applications", Summary: "Apply for a credit account (not built yet)",
		Description: "Credit account applications with KYC answers are out of scope for now: 501 not-implemented.",
		Errors:      []int{401, 403, 501}, Tags: tags, Security: write, Metadata: meta,
	}, func(ctx context.Context, in *struct{}) (*struct{}, error) {
		return nil, problemOf(fmt.Errorf("%w: credit account applications (with KYC answers) are out of scope for now (issue 12)", outcome.ErrNotImplemented))
	})
}

func (s *Server) authorize(ctx context.Context, key string, req authorizationRequest) (*authorizationAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	ccy, amount, perr := money(req.Amount, req.Currency)
	if perr != nil {
		return nil, perr
	}
	if !validRiskFlag(req.RiskFlag) {
		return nil, validation("risk_flag", fmt.Sprintf("at most %d of a-z, 0-9, '_' and '-'", riskFlagBytesMax))
	}
	if s.cfg.SCA.required(c.partner.ID, amount, req.RiskFlag) {
		// The credit check without a hold: the account and its available
		// balance now (linearizable), as a funds check reads them; the
		// hold is reserved once the customer approves.
		if _, err := s.core.Submit(ctx, s.intent(c, payment.KindFundsCheck, req.Account, amount, ccy.Code)); err != nil {
			return nil, problemOf(creditCheck(err))
		}
		return s.createSCA(ctx, c, key, req, amount, ccy)
	}
	if p := s.scaReferenceTaken(c, req.Reference); p != nil {
		return nil, p
	}
	in := s.holdIntent(c, key, req.Account, amount, ccy.Code, req.Reference)
	in.Fingerprint = []string{"authorization", req.Account, req.Amount, ccy.Code, req.Reference, req.RiskFlag}
	t, replayed, err := s.decide(ctx, in, func(err error) error { return creditCheck(err) })
	if err != nil {
		return nil, err
	}
	a, err := authorizationOf(t)
	if err != nil {
		return nil, problemOf(err)
	}
	// As it was made, whatever came since: the same bytes on a replay.
	a.Status, a.Reserved, a.Captured, a.Cancelled = "reserved", a.Amount, zeroOf(t.Currency), zeroOf(t.Currency)
	ans := &authorizationAnswer{Status: http.StatusCreated, Location: "/v1/authorizations/" + a.ID, Body: a}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// creditCheck is err with the ledger's insufficient funds as the credit
// check's rejection.
func creditCheck(err error) error {
	if errors.Is(err, store.ErrInsufficientFunds) {
		return fmt.Errorf("%w: %w", outcome.ErrCreditCheckRejected, err)
	}
	return err
}

// noLongerValid is err with a hold that is final because it expired as
// the authentication's lapse; it reads the hold again to tell.
func (s *Server) noLongerValid(id string, err error) error {
	if !errors.Is(err, store.ErrAlreadyFinal) {
		return err
	}
	if t, terr := s.ledger.Transfer(id); terr == nil && t.Status == store.TransferExpired {
		return fmt.Errorf("%w: %w", outcome.ErrAuthenticationNoLongerValid, err)
	}
	return err
}

// scaID names an authorization awaiting SCA: from the partner and its
// reference, so a retry gets the same id. It is never a ledger id.
func scaID(partner, reference string) string {
	sum := sha256.Sum256([]byte(partner + "|" + reference))
	return scaIDPrefix + hex.EncodeToString(sum[:])[:scaIDHexLen]
}

// trace is a capture's STAN: from the authorization and the request's
// key, so the capture can be named as an original without an index.
func trace(authorization, key string) string {
	sum := sha256.Sum256([]byte(authorization + "|" + key))
	return hex.EncodeToString(sum[:])[:traceHexLen]
}

func (s *Server) captureAuthorization(ctx context.Context, key, id string, req authCaptureRequest) (*authCaptureAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	orig, err := s.ownAuthorization(ctx, c, id)
	if err != nil {
		return nil, err
	}
	ccy, amount, perr := money(req.Amount, orig.Currency)
	if perr != nil {
		return nil, perr
	}
	// A block's capture, with a trace of its own under which it is an
	// original: its reversal names it.
	tr := trace(orig.ID, key)
	in := s.captureIntent(c, key, orig, amount, false)
	in.Ref.STAN = tr
	in.OriginalRef = captureOriginalPrefix + orig.ID + "|" + tr
	in.Fingerprint = []string{"authorization-capture", orig.ID, req.Amount}
	t, replayed, err := s.decide(ctx, in, func(err error) error { return s.noLongerValid(orig.ID, err) })
	if err != nil {
		return nil, err
	}
	ans := &authCaptureAnswer{Status: http.StatusCreated, Body: AuthCapture{ID: t.ID, AuthorizationID: id,
		Amount: currency.FormatMinor(t.Amount, ccy, '.'), Currency: ccy.Code, CreatedAt: rfc3339(t.Time)}}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func (s *Server) cancelAuthorization(ctx context.Context, key, id string) (*authorizationAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	orig, err := s.ownAuthorization(ctx, c, id)
	if err != nil {
		return nil, err
	}
	in := s.releaseIntent(c, key, orig)
	in.Fingerprint = []string{"authorization-cancel", orig.ID}
	t, replayed, err := s.decide(ctx, in, func(err error) error { return s.noLongerValid(orig.ID, err) })
	if err != nil {
		return nil, err
	}
	a, err := authorizationOf(t)
	if err != nil {
		return nil, problemOf(err)
	}
	a.ID = id // an SCA authorization's own id, not its hold's
	ans := &authorizationAnswer{Status: http.StatusOK, Body: a}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func (s *Server) reverseCapture(ctx context.Context, key, id, captureID string) (*authCaptureAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	auth, err := s.ownAuthorization(ctx, c, id)
	if err != nil {
		return nil, err
	}
	// The capture must be this authorization's, made here (with a trace):
	// a capture through the blocks API has no reference to be reversed by.
	capt, err := s.ledger.Transfer(captureID)
	if err == nil && (capt.Partner != c.partner.ID || capt.Op != store.OpComplete || capt.Original != auth.ID || capt.Ref.STAN == "") {
		err = store.ErrNotFound
	}
	if err != nil {
		if p := problemOf(err); p.Status != http.StatusNotFound {
			return nil, p
		}
		return nil, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: "no such capture of this authorization"}
	}
	ccy, err := currency.ByCode(capt.Currency)
	if err != nil {
		return nil, problemOf(err)
	}
	// A reversal of the posted completion: a compensating transfer, all of
	// the capture (a second one exceeds what is left: 0).
	in := s.intent(c, payment.KindReversal, capt.Debit, capt.Amount, capt.Currency)
	in.Original = captureOriginalPrefix + auth.ID + "|" + capt.Ref.STAN
	in.IdempotencyKey = "rest|" + key
	in.Fingerprint = []string{"capture-reversal", capt.ID}
	t, replayed, err := s.decide(ctx, in, func(err error) error {
		if errors.Is(err, store.ErrExceedsOriginal) && capt.Reversed >= capt.Amount {
			// Not wrapping err: the table would answer its exceeds-original.
			return fmt.Errorf("%w: capture %s is reversed already", store.ErrAlreadyFinal, capt.ID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	ans := &authCaptureAnswer{Status: http.StatusCreated, Body: AuthCapture{ID: t.ID, AuthorizationID: id, CaptureID: capt.ID,
		Amount: currency.FormatMinor(t.Amount, ccy, '.'), Currency: ccy.Code, CreatedAt: rfc3339(t.Time)}}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// ownAuthorization is hold id when it is the caller's (ownHold; a block
// is an authorization too), or the hold an SCA authorization reserved
// once authenticated (scaHold: 422 before).
func (s *Server) ownAuthorization(ctx context.Context, c *caller, id string) (store.Transfer, error) {
	if strings.HasPrefix(id, scaIDPrefix) {
		return s.scaHold(ctx, c, id)
	}
	return s.ownHold(ctx, c, "", id, "no such authorization")
}

// authorizationOf shows hold t as an authorization, from the block it is.
func authorizationOf(t store.Transfer) (Authorization, error) {
	b, err := blockOf(t)
	if err != nil {
		return Authorization{}, err
	}
	status := map[string]string{"active": "reserved", "captured": "captured", "released": "cancelled", "expired": "expired"}[b.Status]
	return Authorization{ID: b.ID, Status: status, Account: b.Account, Amount: b.Amount, Currency: b.Currency, Reference: b.Reference,
		Reserved: b.Held, Captured: b.Captured, Cancelled: b.Released, ExpiresAt: b.ExpiresAt, CreatedAt: b.CreatedAt}, nil
}

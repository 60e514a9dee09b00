package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Payments, bill payments, refunds and funds checks: each one Intent for
// the core, like the ISO 8583 message it stands for (0200 purchase, 0200
// bill payment, 0400 partial reversal, a funds check). The keys are the
// partner's own: the Idempotency-Key is the request's key ("rest|" + it;
// the core scopes it by partner), and a payment's reference is the key
// its refunds name it by ("rest|" + reference), as field 37 is for ISO.

// checkKey refuses a missing or malformed Idempotency-Key (400): without
// one a retry could not be told from a new payment.
func checkKey(k string) *Problem {
	if k == "" {
		return validation("Idempotency-Key", "every state-changing call needs an Idempotency-Key header")
	}
	if len(k) > idempotencyKeyBytesMax {
		return validation("Idempotency-Key", fmt.Sprintf("at most %d characters", idempotencyKeyBytesMax))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e || k[i] == '|' {
			return validation("Idempotency-Key", "printable ASCII without spaces or '|'")
		}
	}
	return nil
}

type paymentRequest struct {
	Amount        string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"Decimal string with the currency's exponent: \"12.34\" USD, \"1000\" JPY"`
	Currency      string `json:"currency" pattern:"^[A-Z]{3}$" doc:"ISO 4217 alphabetic code"`
	DebtorAccount string `json:"debtor_account" minLength:"1" maxLength:"64" doc:"The paying account's id"`
	Reference     string `json:"reference" minLength:"1" maxLength:"35" pattern:"^[\\x21-\\x7e]+$" doc:"The partner's unique reference of this payment; refunds name it"`
	BillType      string `json:"bill_type,omitempty" maxLength:"32" pattern:"^[A-Za-z0-9_.-]*$" doc:"Routes the payment to a biller (as field 48 BT= does)"`
	PayerType     string `json:"payer_type,omitempty" maxLength:"32" pattern:"^[A-Za-z0-9_.-]*$" doc:"One of the partner's payer types; default the partner's own"`
}

type billRequest struct {
	BillType        string `json:"bill_type" minLength:"1" maxLength:"32" pattern:"^[A-Za-z0-9_.-]+$" doc:"The bill type that routes it"`
	BillerReference string `json:"biller_reference" minLength:"1" maxLength:"35" pattern:"^[\\x21-\\x7e]+$" doc:"The bill's reference at the biller; unique per partner"`
	Amount          string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24"`
	Currency        string `json:"currency" pattern:"^[A-Z]{3}$"`
	DebtorAccount   string `json:"debtor_account" minLength:"1" maxLength:"64"`
	PayerType       string `json:"payer_type,omitempty" maxLength:"32" pattern:"^[A-Za-z0-9_.-]*$"`
}

type refundRequest struct {
	Amount string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"What to give back, at most what is left of the payment"`
}

type fundsRequest struct {
	Amount   string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24"`
	Currency string `json:"currency" pattern:"^[A-Z]{3}$"`
}

// Payment is a payment as the API shows it: made from the transfer the
// ledger stored, so a replay's body is the original's, byte for byte.
type Payment struct {
	ID              string `json:"id"`
	Status          string `json:"status" enum:"completed,partly_refunded,refunded,pending,reversed,expired" doc:"completed; partly_refunded or refunded after refunds; reversed when taken back whole by the biller or issuer (or a hold voided); pending or expired for a hold"`
	Amount          string `json:"amount"`
	Refunded        string `json:"refunded"`
	Currency        string `json:"currency"`
	DebtorAccount   string `json:"debtor_account"`
	CreditorAccount string `json:"creditor_account" doc:"The settlement or biller account the route credited"`
	Reference       string `json:"reference"`
	PayerType       string `json:"payer_type,omitempty"`
	BusinessDay     string `json:"business_day"`
	CreatedAt       string `json:"created_at" doc:"RFC 3339, UTC"`
}

// Refund is one refund of a payment.
type Refund struct {
	ID        string `json:"id"`
	PaymentID string `json:"payment_id"`
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	CreatedAt string `json:"created_at"`
}

type paymentAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the stored answer to an earlier request with this key"`
	Location string `header:"Location"`
	Status   int
	Body     Payment
}

type refundAnswer struct {
	Replayed string `header:"Idempotent-Replayed"`
	Status   int
	Body     Refund
}

type fundsAnswer struct {
	Body struct {
		Result   string `json:"result" enum:"FUNDS_AVAILABLE,FUNDS_NOT_AVAILABLE"`
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	}
}

func (s *Server) registerPayments() {
	problems := []int{400, 401, 403, 404, 409, 422, 503}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-payment", Method: http.MethodPost, Path: "/v1/payments", Summary: "Make a payment",
		Description:   "Debits the debtor account and credits the account the routing table names for (bill type, payer type, partner).",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		Body           paymentRequest
	}) (*paymentAnswer, error) {
		return s.pay(ctx, in.IdempotencyKey, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "pay-bill", Method: http.MethodPost, Path: "/v1/bill/pay", Summary: "Pay a bill",
		Description:   "Routed by (bill_type, payer_type, partner) exactly like an ISO 8583 bill payment (processing code 50, field 48 BT=).",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: []string{"bill payment"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		Body           billRequest
	}) (*paymentAnswer, error) {
		b := in.Body
		return s.pay(ctx, in.IdempotencyKey, paymentRequest{Amount: b.Amount, Currency: b.Currency, DebtorAccount: b.DebtorAccount,
			Reference: b.BillerReference, BillType: b.BillType, PayerType: b.PayerType})
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-payment", Method: http.MethodGet, Path: "/v1/payments/{id}", Summary: "Read a payment",
		Errors: []int{401, 403, 404, 503}, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsRead}}}, Metadata: map[string]any{"scope": ScopePaymentsRead},
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"32"`
	}) (*paymentAnswer, error) {
		if err := s.ledger.ReadIndex(ctx); err != nil {
			return nil, problemOf(err)
		}
		t, err := s.ownTransfer(callerOf(ctx), in.ID)
		if err != nil {
			return nil, err
		}
		byHost := false
		if t.Reversed > 0 && t.Reversed >= t.Amount {
			if byHost, err = s.ledger.ReversedByHost(t.ID); err != nil {
				return nil, problemOf(err)
			}
		}
		p, err := paymentWith(t, byHost)
		if err != nil {
			return nil, problemOf(err)
		}
		return &paymentAnswer{Status: http.StatusOK, Body: p}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "refund-payment", Method: http.MethodPost, Path: "/v1/payments/{id}/refunds", Summary: "Refund a payment, fully or in part",
		Description:   "Several refunds may follow one payment, up to its amount (then 422 exceeds-original).",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: []string{"payments"},
		Security: []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"32"`
		Body           refundRequest
	}) (*refundAnswer, error) {
		return s.refund(ctx, in.IdempotencyKey, in.ID, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "check-funds", Method: http.MethodPost, Path: "/v1/accounts/{id}/check-funds", Summary: "Check funds",
		Description: "Whether the account could pay the amount now, from its available balance (linearizable). Nothing is held.",
		Errors:      []int{400, 401, 403, 404, 422, 503}, Tags: []string{"bank API"}, MaxBodyBytes: bodyBytesMax,
		Security: []map[string][]string{{"oauth2": {ScopeAccountsRead}}}, Metadata: map[string]any{"scope": ScopeAccountsRead},
	}, func(ctx context.Context, in *struct {
		ID   string `path:"id" maxLength:"64"`
		Body fundsRequest
	}) (*fundsAnswer, error) {
		c := callerOf(ctx)
		ccy, amount, perr := money(in.Body.Amount, in.Body.Currency)
		if perr != nil {
			return nil, perr
		}
		_, err := s.core.Submit(ctx, s.intent(c, payment.KindFundsCheck, in.ID, amount, ccy.Code))
		out := &fundsAnswer{}
		out.Body.Amount, out.Body.Currency = in.Body.Amount, ccy.Code
		switch {
		case err == nil:
			out.Body.Result = "FUNDS_AVAILABLE"
		case errors.Is(err, store.ErrInsufficientFunds):
			out.Body.Result = "FUNDS_NOT_AVAILABLE"
		default:
			return nil, problemOf(err)
		}
		return out, nil
	})
}

// money parses a decimal amount in ccy's exponent: "12.34" USD, "1000"
// JPY. More decimals than the currency has, a zero or a sign are refused.
func money(amount, code string) (currency.Currency, int64, *Problem) {
	ccy, err := currency.ByCode(code)
	if err != nil {
		return ccy, 0, validation("currency", fmt.Sprintf("%q is not an ISO 4217 currency", code))
	}
	minor, err := currency.ParseMinor(amount, ccy, '.')
	if err != nil {
		return ccy, 0, validation("amount", fmt.Sprintf("%q: a decimal with %d digits after the point for %s", amount, ccy.Exponent, ccy.Code))
	}
	if minor <= 0 {
		return ccy, 0, validation("amount", "must be more than zero")
	}
	return ccy, minor, nil
}

func (s *Server) intent(c *caller, kind payment.Kind, account string, amount int64, ccy string) payment.Intent {
	return payment.Intent{Kind: kind, Origin: c.origin, Acquirer: c.partner.AcquirerIDs[0], Account: account, Amount: amount, Currency: ccy}
}

// paymentIntent is the core's Intent for the payment req of c under the
// idempotency key idemKey (already namespaced: "rest|" + a request's key,
// or a batch item's key): one definition, so a batch item is a payment
// exactly like POST /v1/payments, with the same fingerprint.
func (s *Server) paymentIntent(c *caller, idemKey string, req paymentRequest) (payment.Intent, *Problem) {
	ccy, amount, perr := money(req.Amount, req.Currency)
	if perr != nil {
		return payment.Intent{}, perr
	}
	kind := payment.KindPurchase
	if req.BillType != "" {
		kind = payment.KindBillPayment
	}
	in := s.intent(c, kind, req.DebtorAccount, amount, ccy.Code)
	in.PayerType, in.BillType = req.PayerType, req.BillType
	in.Ref = store.Ref{RRN: req.Reference}
	in.OriginalRef = "rest|" + req.Reference
	in.IdempotencyKey = idemKey
	in.Fingerprint = []string{"payment", kind.String(), req.DebtorAccount, req.Amount, ccy.Code, req.Reference, req.BillType, req.PayerType}
	return in, nil
}

func (s *Server) pay(ctx context.Context, key string, req paymentRequest) (*paymentAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	in, perr := s.paymentIntent(callerOf(ctx), "rest|"+key, req)
	if perr != nil {
		return nil, perr
	}
	t, replayed, err := s.decide(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	p, err := paymentOf(t)
	if err != nil {
		return nil, problemOf(err)
	}
	// The payment as it was made, whatever refunds came since: the answer
	// to this request, the same bytes on every replay (GET shows now).
	p.Status, p.Refunded = "completed", zeroOf(t.Currency)
	ans := &paymentAnswer{Status: http.StatusCreated, Location: "/v1/payments/" + p.ID, Body: p}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func (s *Server) refund(ctx context.Context, key, id string, req refundRequest) (*refundAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return nil, problemOf(err)
	}
	orig, err := s.ownTransfer(c, id)
	if err != nil {
		return nil, err
	}
	ccy, amount, perr := money(req.Amount, orig.Currency)
	if perr != nil {
		return nil, perr
	}
	// A refund is a partial reversal of the payment (ISO 8583 0400 with
	// field 95): the ledger keeps what was reversed and refuses more than
	// the payment's amount.
	in := s.intent(c, payment.KindReversal, orig.Debit, amount, ccy.Code)
	in.Original = "rest|" + orig.Ref.RRN
	in.IdempotencyKey = "rest|" + key
	// The refund names its payment's reference (RRN) and one of its own
	// (STAN, from its key): in the settlement file and in reconciliation
	// each row needs a reference, and (rrn, stan) is unique per file — a
	// refund on the payment's day beside it, or a second one.
	in.Ref = store.Ref{RRN: orig.Ref.RRN, STAN: refundSTAN(key)}
	in.Fingerprint = []string{"refund", orig.ID, req.Amount}
	t, replayed, err := s.decide(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	ans := &refundAnswer{Status: http.StatusCreated, Body: Refund{ID: t.ID, PaymentID: orig.ID,
		Amount: currency.FormatMinor(t.Amount, ccy, '.'), Currency: ccy.Code, CreatedAt: rfc3339(t.Time)}}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// decide submits in to the core and reads back the transfer it made or
// changed: the one path of every state-changing call. mapErr, when set,
// turns a refusal into this call's own error (an authorization's credit
// check); every error comes back as a *Problem. replayed says the core
// answered from its idempotency record.
func (s *Server) decide(ctx context.Context, in payment.Intent, mapErr func(error) error) (t store.Transfer, replayed bool, err error) {
	out, err := s.core.Submit(ctx, in)
	if err != nil {
		if mapErr != nil {
			err = mapErr(err)
		}
		return t, false, problemOf(err)
	}
	if t, err = s.transfer(ctx, out.Result.TransferID); err != nil {
		return t, false, problemOf(err)
	}
	return t, out.Result.Replayed, nil
}

// transfer reads the transfer a decision made (applied on this node by
// the time the core answers).
func (s *Server) transfer(ctx context.Context, id string) (store.Transfer, error) {
	if id == "" {
		return store.Transfer{}, fmt.Errorf("%w: the ledger named no transfer", store.ErrInvalidCommand)
	}
	t, err := s.ledger.Transfer(id)
	if errors.Is(err, store.ErrNotFound) {
		if rerr := s.ledger.ReadIndex(ctx); rerr != nil {
			return t, rerr
		}
		t, err = s.ledger.Transfer(id)
	}
	return t, err
}

// ownTransfer is transfer id when it is the caller's payment; another
// partner's looks like none at all.
func (s *Server) ownTransfer(c *caller, id string) (store.Transfer, error) {
	t, err := s.ledger.Transfer(id)
	if err == nil && (t.Partner != c.partner.ID || t.Op != store.OpPost) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return t, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: fmt.Sprintf("no payment %q", id)}
	}
	if err != nil {
		return t, problemOf(err)
	}
	return t, nil
}

func paymentOf(t store.Transfer) (Payment, error) {
	return paymentWith(t, false)
}

// paymentWith is paymentOf for a transfer its host took back (byHost,
// store.PaymentStatus).
func paymentWith(t store.Transfer, byHost bool) (Payment, error) {
	ccy, err := currency.ByCode(t.Currency)
	if err != nil {
		return Payment{}, err
	}
	status := store.PaymentStatus(&t, byHost)
	return Payment{ID: t.ID, Status: status, Amount: currency.FormatMinor(t.Amount, ccy, '.'),
		Refunded: currency.FormatMinor(t.Reversed, ccy, '.'), Currency: ccy.Code,
		DebtorAccount: t.Debit, CreditorAccount: t.Credit, Reference: t.Ref.RRN, PayerType: t.PayerType,
		BusinessDay: t.BusinessDay, CreatedAt: rfc3339(t.Time)}, nil
}

// zeroOf is 0 written in currency code's exponent ("0.00", "0").
func zeroOf(code string) string {
	ccy, _ := currency.ByCode(code) // the transfer's: known
	return currency.FormatMinor(0, ccy, '.')
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// refundSTAN is a refund's own reference: 12 hex digits of a hash of its
// Idempotency-Key (short, stable across retries, and no partner data).
func refundSTAN(key string) string {
	sum := sha256.Sum256([]byte("refund\x00" + key))
	return hex.EncodeToString(sum[:6])
}

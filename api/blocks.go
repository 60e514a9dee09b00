package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Funds blocks (issue 12, "Bank API"): a block is the ledger's hold on an
// account (payment.KindFundsBlock, store.OpAuthorize), so available =
// posted − blocked until it is captured (payment.KindCompletion, once or
// in parts, up to the blocked amount), released (payment.KindReversal of
// the hold) or expires after the core's hold_expiry. A block's reference
// is the key its release and captures name it by ("rest-block|" +
// reference, apart from the payments' "rest|" + reference), as field 37
// names an authorization for its 0220 and 0400.

// blockOriginalPrefix scopes blocks' references apart from payments'.
const blockOriginalPrefix = "rest-block|"

type blockRequest struct {
	Amount    string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"Decimal string with the currency's exponent: \"12.34\" USD, \"1000\" JPY"`
	Currency  string `json:"currency" pattern:"^[A-Z]{3}$" doc:"ISO 4217 alphabetic code; the account's"`
	Reference string `json:"reference" minLength:"1" maxLength:"35" pattern:"^[\\x21-\\x7e]+$" doc:"The partner's unique reference of this block"`
}

type captureRequest struct {
	Amount string `json:"amount" pattern:"^[0-9]+(\\.[0-9]+)?$" maxLength:"24" doc:"What to pay from the block, at most what it still holds"`
	Final  bool   `json:"final,omitempty" doc:"true: release what the block still holds after this capture"`
}

// Block is a funds block as the API shows it, made from the hold the
// ledger stored.
type Block struct {
	ID        string `json:"id"`
	Account   string `json:"account"`
	Amount    string `json:"amount" doc:"What was blocked"`
	Currency  string `json:"currency"`
	Status    string `json:"status" enum:"active,captured,released,expired" doc:"active while it holds money; captured, released or expired after"`
	Held      string `json:"held" doc:"What the block still holds (counted out of the account's available balance)"`
	Captured  string `json:"captured" doc:"What captures have paid from it so far"`
	Released  string `json:"released" doc:"What a release gave back to the available balance"`
	Reference string `json:"reference"`
	ExpiresAt string `json:"expires_at" doc:"RFC 3339, UTC: an active block is released then"`
	CreatedAt string `json:"created_at" doc:"RFC 3339, UTC"`
}

// Capture is one payment from a block.
type Capture struct {
	ID        string `json:"id"`
	BlockID   string `json:"block_id"`
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	CreatedAt string `json:"created_at"`
}

type blockAnswer struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true: the stored answer to an earlier request with this key"`
	Location string `header:"Location"`
	Status   int
	Body     Block
}

type captureAnswer struct {
	Replayed string `header:"Idempotent-Replayed"`
	Status   int
	Body     Capture
}

func (s *Server) registerBlocks() {
	problems := []int{400, 401, 403, 404, 409, 422, 503}
	write := []map[string][]string{{"oauth2": {ScopePaymentsWrite}}}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-block", Method: http.MethodPost, Path: "/v1/accounts/{id}/blocks", Summary: "Block funds",
		Description:   "Holds the amount on the account (available = posted − blocked) until it is captured, released or expires.",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: []string{"bank API"},
		Security: write, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
		Body           blockRequest
	}) (*blockAnswer, error) {
		return s.block(ctx, in.IdempotencyKey, in.ID, in.Body)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-block", Method: http.MethodGet, Path: "/v1/accounts/{id}/blocks/{block}", Summary: "Read a funds block",
		Errors: []int{401, 403, 404, 503}, Tags: []string{"bank API"},
		Security: []map[string][]string{{"oauth2": {ScopeAccountsRead}}}, Metadata: map[string]any{"scope": ScopeAccountsRead},
	}, func(ctx context.Context, in *struct {
		ID    string `path:"id" maxLength:"64"`
		Block string `path:"block" maxLength:"32"`
	}) (*blockAnswer, error) {
		t, err := s.ownBlock(ctx, callerOf(ctx), in.ID, in.Block)
		if err != nil {
			return nil, err
		}
		b, err := blockOf(t)
		if err != nil {
			return nil, problemOf(err)
		}
		return &blockAnswer{Status: http.StatusOK, Body: b}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "release-block", Method: http.MethodDelete, Path: "/v1/accounts/{id}/blocks/{block}", Summary: "Release a funds block",
		Description: "Gives what the block still holds back to the available balance (409 original-final once it is no longer active).",
		Errors:      problems, Tags: []string{"bank API"},
		Security: write, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key gets the stored answer"`
		ID             string `path:"id" maxLength:"64"`
		Block          string `path:"block" maxLength:"32"`
	}) (*blockAnswer, error) {
		return s.release(ctx, in.IdempotencyKey, in.ID, in.Block)
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "capture-block", Method: http.MethodPost, Path: "/v1/accounts/{id}/blocks/{block}/capture", Summary: "Pay from a funds block",
		Description:   "Posts all or part of the block as a payment to the partner's settlement account; several captures may follow, up to what it holds (then 422 exceeds-original).",
		DefaultStatus: http.StatusCreated, Errors: problems, MaxBodyBytes: bodyBytesMax, Tags: []string{"bank API"},
		Security: write, Metadata: map[string]any{"scope": ScopePaymentsWrite},
	}, func(ctx context.Context, in *struct {
		IdempotencyKey string `header:"Idempotency-Key" maxLength:"64" doc:"The request's key: a retry with the same key and body gets the stored answer, another body with it a 409"`
		ID             string `path:"id" maxLength:"64"`
		Block          string `path:"block" maxLength:"32"`
		Body           captureRequest
	}) (*captureAnswer, error) {
		return s.capture(ctx, in.IdempotencyKey, in.ID, in.Block, in.Body)
	})
}

func (s *Server) block(ctx context.Context, key, account string, req blockRequest) (*blockAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	ccy, amount, perr := money(req.Amount, req.Currency)
	if perr != nil {
		return nil, perr
	}
	if p := s.scaReferenceTaken(c, req.Reference); p != nil {
		return nil, p
	}
	in := s.holdIntent(c, key, account, amount, ccy.Code, req.Reference)
	in.Fingerprint = []string{"block", account, req.Amount, ccy.Code, req.Reference}
	t, replayed, err := s.decide(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	b, err := blockOf(t)
	if err != nil {
		return nil, problemOf(err)
	}
	// The block as it was made, whatever captures or a release came
	// since: the same bytes on every replay (GET shows now).
	b.Status, b.Held, b.Captured, b.Released = "active", b.Amount, zeroOf(t.Currency), zeroOf(t.Currency)
	ans := &blockAnswer{Status: http.StatusCreated, Location: "/v1/accounts/" + b.Account + "/blocks/" + b.ID, Body: b}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func (s *Server) release(ctx context.Context, key, account, id string) (*blockAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	orig, err := s.ownBlock(ctx, c, account, id)
	if err != nil {
		return nil, err
	}
	in := s.releaseIntent(c, key, orig)
	in.Fingerprint = []string{"release", orig.ID}
	t, replayed, err := s.decide(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	b, err := blockOf(t)
	if err != nil {
		return nil, problemOf(err)
	}
	ans := &blockAnswer{Status: http.StatusOK, Body: b}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

func (s *Server) capture(ctx context.Context, key, account, id string, req captureRequest) (*captureAnswer, error) {
	if p := checkKey(key); p != nil {
		return nil, p
	}
	c := callerOf(ctx)
	orig, err := s.ownBlock(ctx, c, account, id)
	if err != nil {
		return nil, err
	}
	ccy, amount, perr := money(req.Amount, orig.Currency)
	if perr != nil {
		return nil, perr
	}
	in := s.captureIntent(c, key, orig, amount, req.Final)
	in.Fingerprint = []string{"capture", orig.ID, req.Amount, strconv.FormatBool(req.Final)}
	t, replayed, err := s.decide(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	ans := &captureAnswer{Status: http.StatusCreated, Body: Capture{ID: t.ID, BlockID: orig.ID,
		Amount: currency.FormatMinor(t.Amount, ccy, '.'), Currency: ccy.Code, CreatedAt: rfc3339(t.Time)}}
	if replayed {
		ans.Replayed = "true"
	}
	return ans, nil
}

// holdIntent is the core's Intent for a hold of amount on account under
// the partner's reference, with the request's key; the caller adds the
// fingerprint. Blocks and authorizations (authorizations.go) share it and
// so the reference namespace: an authorization's reservation is a block.
func (s *Server) holdIntent(c *caller, key, account string, amount int64, ccy, reference string) payment.Intent {
	in := s.intent(c, payment.KindFundsBlock, account, amount, ccy)
	in.Ref = store.Ref{RRN: reference}
	in.OriginalRef = blockOriginalPrefix + reference
	in.IdempotencyKey = "rest|" + key
	return in
}

// captureIntent is a capture of amount from hold orig: a completion of
// the hold (ISO 8583 0220), so pending becomes posted and available does
// not move again; the ledger refuses more than the hold still holds.
// final releases the rest.
func (s *Server) captureIntent(c *caller, key string, orig store.Transfer, amount int64, final bool) payment.Intent {
	in := s.intent(c, payment.KindCompletion, orig.Debit, amount, orig.Currency)
	in.Original = blockOriginalPrefix + orig.Ref.RRN
	in.Ref = store.Ref{RRN: orig.Ref.RRN}
	in.Final = final
	in.IdempotencyKey = "rest|" + key
	return in
}

// releaseIntent releases what hold orig still holds (a reversal of a hold,
// at most its amount); of a hold no longer pending the ledger says
// original-final.
func (s *Server) releaseIntent(c *caller, key string, orig store.Transfer) payment.Intent {
	in := s.intent(c, payment.KindReversal, orig.Debit, orig.Amount, orig.Currency)
	in.Original = blockOriginalPrefix + orig.Ref.RRN
	in.IdempotencyKey = "rest|" + key
	return in
}

// ownBlock is hold id on account when it is the caller's block (ownHold).
func (s *Server) ownBlock(ctx context.Context, c *caller, account, id string) (store.Transfer, error) {
	return s.ownHold(ctx, c, account, id, "no such block on this account")
}

// ownHold is hold id when it is the caller's (and on account, when
// account is set), read after a ReadIndex: blocks and authorizations are
// the same hold. Another partner's, another account's or a transfer that
// is no hold looks like none at all: a 404 saying notFound.
func (s *Server) ownHold(ctx context.Context, c *caller, account, id, notFound string) (store.Transfer, error) {
	if err := s.ledger.ReadIndex(ctx); err != nil {
		return store.Transfer{}, problemOf(err)
	}
	t, err := s.ledger.Transfer(id)
	if err == nil && (t.Partner != c.partner.ID || t.Op != store.OpAuthorize || account != "" && t.Debit != account) {
		err = store.ErrNotFound
	}
	if err != nil {
		if p := problemOf(err); p.Status != http.StatusNotFound {
			return t, p
		}
		return t, &Problem{Type: problemBase + "not-found", Title: "Not found", Status: http.StatusNotFound, Detail: notFound}
	}
	return t, nil
}

func blockOf(t store.Transfer) (Block, error) {
	ccy, err := currency.ByCode(t.Currency)
	if err != nil {
		return Block{}, err
	}
	status := "active"
	switch t.Status {
	case store.TransferCompleted:
		status = "captured"
	case store.TransferVoided:
		status = "released"
	case store.TransferExpired:
		status = "expired"
	}
	m := func(v int64) string { return currency.FormatMinor(v, ccy, '.') }
	return Block{ID: t.ID, Account: t.Debit, Amount: m(t.Amount), Currency: ccy.Code, Status: status,
		Held: m(t.Held), Captured: m(t.Captured), Released: m(t.Reversed), Reference: t.Ref.RRN,
		ExpiresAt: rfc3339(t.Expiry), CreatedAt: rfc3339(t.Time)}, nil
}

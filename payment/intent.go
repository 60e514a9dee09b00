// Package payment is the protocol-neutral core between the front doors
// (switch: ISO 8583; later api: REST, iso20022) and the ledger. A front
// door turns its wire format into an Intent and the Outcome back into its
// wire format; the core decides everything in between: who the partner
// is (the replicated directory), whether it may send on that lane and as
// that payer type, its limits, the route, and the ledger command. Nothing
// here knows which wire format a request came in.
package payment

import (
	"github.com/switchd/switchd/store"
)

// Kind is what an Intent asks for.
type Kind uint8

const (
	// KindUnknown is the zero Kind: refused (outcome.ErrUnsupported).
	KindUnknown Kind = iota
	// KindAuthorize places a hold on the card (store.OpAuthorize).
	KindAuthorize
	// KindPurchase posts a purchase at once (store.OpPost, card → route).
	KindPurchase
	// KindCashWithdrawal posts cash out at once, within the partner's
	// withdrawal_max.
	KindCashWithdrawal
	// KindRefund credits the card from the route's account.
	KindRefund
	// KindBillPayment posts a bill payment; BillType picks the biller's
	// route.
	KindBillPayment
	// KindCompletion captures all or part of the hold named by Original.
	KindCompletion
	// KindReversal voids or compensates the original named by Original.
	KindReversal
	// KindBalanceInquiry reads the card's balances (linearizable); nothing
	// is posted.
	KindBalanceInquiry
	// KindFundsCheck answers whether the card could pay Amount now, from
	// the same read as a balance inquiry: approved, or
	// store.ErrInsufficientFunds. Nothing is held or posted (the ledger
	// has no op for it, and needs none).
	KindFundsCheck
	// KindFundsBlock earmarks Amount on the card: the ledger's hold
	// (store.OpAuthorize), captured by a completion or released by a
	// reversal or at expiry, like an authorization.
	KindFundsBlock
	kindEnd
)

var kindNames = [kindEnd]string{"unknown", "authorize", "purchase", "cash_withdrawal", "refund", "bill_payment",
	"completion", "reversal", "balance_inquiry", "funds_check", "funds_block"}

func (k Kind) String() string {
	if k >= kindEnd {
		return "unknown"
	}
	return kindNames[k]
}

// reads reports whether k only reads (no command, no idempotency key).
func (k Kind) reads() bool { return k == KindBalanceInquiry || k == KindFundsCheck }

// routed reports whether k moves money between the card and a routed
// account (completions and reversals follow their original instead).
func (k Kind) routed() bool {
	switch k {
	case KindAuthorize, KindPurchase, KindCashWithdrawal, KindRefund, KindBillPayment, KindFundsBlock:
		return true
	}
	return false
}

// Intent is one request as any front door asks it, with no wire types.
//
// Keys are the front door's business (their formats are protocol rules:
// ISO 8583 keys by acquirer, STAN, field 7, RRN and message class); the
// core scopes IdempotencyKey, OriginalRef and Original by the partner it
// finds ("partner|" + key), so one partner can neither replay nor reverse
// another's requests whatever its keys say.
type Intent struct {
	Kind Kind
	// Origin is where the request came from: its Lane must be one of the
	// partner's (store.Partner.Lanes), its Source inside the partner's
	// allowlist, and over mutual TLS its CertPin one of the partner's
	// CertPins (a partner with pins needs one).
	Origin
	// Acquirer identifies the partner: ISO 8583 field 32 (leading zeros
	// ignored).
	Acquirer string
	// PayerType is the refinement the request asks for, "" for the
	// partner's default payer type.
	PayerType string
	PAN       PAN
	// Account, when set, names the paying account by id instead of PAN
	// (front doors that name accounts, like REST); it must hold a card.
	Account  string
	Terminal string
	Merchant string
	// Amount in minor units of Currency (ISO 4217 alphabetic).
	Amount   int64
	Currency string
	// BillType routes bill payments (e.g. "ELEC"); "" for none.
	BillType string
	// Ref is stamped on the transfer for settlement and reconciliation;
	// its Acquirer, Terminal and Merchant are filled from the Intent's.
	Ref store.Ref
	// OriginalRef is the partner-relative key under which this request's
	// transfer can later be named as an original; "" when it cannot.
	OriginalRef string
	// Original is the partner-relative key of the original a completion
	// or reversal refers to.
	Original string
	// ActualAmount, on a reversal, is the amount that stands (ISO 8583
	// field 95): only Amount − ActualAmount is reversed. nil: all of it.
	ActualAmount *int64
	// Final, on a completion, releases what is left of the hold.
	Final bool
	// Advice: the request reports a payment the partner already made
	// (ISO 8583 0220/0120 without an original; advice.go): accepted within
	// an OTC agent's offline limit, or queued for an off-us destination.
	Advice bool
	// IdempotencyKey is the partner-relative key of a state change.
	IdempotencyKey string
	// Fingerprint lists what must be the same for a repeat to be a repeat;
	// the core hashes it with the card key. Where the card number belongs
	// in it, put FingerprintPAN: the core hashes the PAN's digits there,
	// so the parts never hold a card number.
	Fingerprint []string
}

// FingerprintPAN stands for the Intent's PAN among its Fingerprint parts.
const FingerprintPAN = "\x00payment.PAN\x00"

// Outcome is what the core decided.
type Outcome struct {
	// Result is the ledger's answer (zero for reads and for requests
	// refused before the ledger).
	Result store.Result
	// AuthCode is the approval code (ISO 8583 field 38); "" unless
	// approved with a transfer.
	AuthCode string
	// Balance is the card's, for balance inquiries and funds checks.
	Balance Balance
	// Partner is the partner found for the request, PayerType the payer
	// type it was classified as, Route the id of the rule that routed it
	// ("" for completions, reversals and reads); each set as far as the
	// request got.
	Partner   string
	PayerType string
	Route     string
}

// Balance is an account's balances in minor units; Currency "" means none
// was read.
type Balance struct {
	Posted    int64
	Available int64
	Currency  string
}

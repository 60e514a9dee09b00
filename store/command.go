package store

import (
	"errors"
)

// Op names what a Command does. Values are stable: they are written into the
// raft log and must decode the same way forever.
type Op uint8

const (
	// OpCreateAccount creates Command.Account. Idempotent by Key.
	OpCreateAccount Op = 1
	// OpAuthorize places a hold: a pending transfer of Amount from the card's
	// account (Card) to Credit that expires at HoldExpiry.
	OpAuthorize Op = 2
	// OpPost posts a transfer at once: Amount from Debit (or the card's
	// account when Card is set) to Credit (or the card's account when
	// CreditCard is set). Purchases, cash withdrawals, refunds, funding.
	OpPost Op = 3
	// OpComplete posts Amount of the hold named by Original. Final releases
	// whatever is left of the hold after this capture.
	OpComplete Op = 4
	// OpReverse voids the hold named by Original, or posts a compensating
	// transfer for a posted original. Amount is what is reversed; when it is
	// smaller than what the original holds or posted, the rest stays
	// (partial reversal, ISO 8583 field 95).
	OpReverse Op = 5
	// OpExpire releases every hold whose expiry is at or before Time, and
	// drops idempotency records stamped before RetainAfter.
	OpExpire Op = 6
)

func (o Op) String() string {
	switch o {
	case OpCreateAccount:
		return "create_account"
	case OpAuthorize:
		return "authorize"
	case OpPost:
		return "post"
	case OpComplete:
		return "complete"
	case OpReverse:
		return "reverse"
	case OpExpire:
		return "expire"
	case OpOpenDay:
		return "open_day"
	case OpCloseDay:
		return "close_day"
	case OpBreak:
		return "break"
	case OpPutRoute:
		return "put_route"
	case OpDeleteRoute:
		return "delete_route"
	case OpReplaceRoutes:
		return "replace_routes"
	case OpPutPartner:
		return "put_partner"
	case OpPutAgent:
		return "put_agent"
	case OpSettleAgent:
		return "settle_agent"
	case OpAudit:
		return "audit"
	case OpPutClient:
		return "put_client"
	case OpPutMACKey:
		return "put_mac_key"
	case OpPutDestination:
		return "put_destination"
	case OpDeleteDestination:
		return "delete_destination"
	case OpForward:
		return "forward"
	case OpForwardResult:
		return "forward_result"
	case OpSAFUpdate:
		return "saf_update"
	case OpForwardAdvice:
		return "forward_advice"
	case OpPutAuthorization:
		return "put_authorization"
	case OpPutWebhookEndpoint:
		return "put_webhook_endpoint"
	case OpWebhookAttempt:
		return "webhook_attempt"
	case OpPutBatch:
		return "put_batch"
	case OpPutStatementJob:
		return "put_statement_job"
	case OpHostReversal:
		return "host_reversal"
	}
	return "unknown"
}

// Ref is what a message says about itself, stamped on the transfer it makes
// so that settlement and reconciliation can find it later. None of it is
// secret; the PAN never appears here (Card carries a keyed hash).
type Ref struct {
	MTI      string `json:"mti,omitempty"`
	ProcCode string `json:"pc,omitempty"`
	STAN     string `json:"stan,omitempty"`
	RRN      string `json:"rrn,omitempty"`
	Acquirer string `json:"acq,omitempty"`
	Terminal string `json:"tid,omitempty"`
	Merchant string `json:"mid,omitempty"`
	// TransmissionTime is ISO 8583 field 7, MMDDhhmmss.
	TransmissionTime string `json:"f7,omitempty"`
}

// Command is one state change. Everything Apply needs travels inside it:
// the FSM reads no clock and no randomness (DESIGN.md invariant 5).
type Command struct {
	Op Op `json:"op"`
	// Key is the idempotency key. Same Key and same Fingerprint gives the
	// stored Result; same Key and another Fingerprint gives
	// ErrFingerprintMismatch and changes nothing. Required for every Op but
	// OpExpire.
	Key string `json:"key,omitempty"`
	// Fingerprint is a keyed hash of the request's content, computed by the
	// caller (it covers the PAN, so it must be keyed, never a bare hash).
	Fingerprint string `json:"fp,omitempty"`
	// Time is when the command was proposed, unix nanoseconds (leader clock).
	Time int64 `json:"t"`
	// BusinessDay the transfer belongs to, YYYY-MM-DD.
	BusinessDay string `json:"day,omitempty"`
	// Partner is the sending partner's id.
	Partner string `json:"partner,omitempty"`

	// Card is the keyed hash of the PAN (hex) naming the cardholder account;
	// on OpAuthorize/OpPost it is the debit side unless CreditCard is set.
	Card       string `json:"card,omitempty"`
	CreditCard bool   `json:"ccard,omitempty"`
	// Debit and Credit are account ids. For card flows one of them comes
	// from Card instead.
	Debit  string `json:"dr,omitempty"`
	Credit string `json:"cr,omitempty"`
	// Amount in minor units of Currency; always > 0 for money movements.
	Amount int64 `json:"amt,omitempty"`
	// Currency is the ISO 4217 alphabetic code, e.g. "USD".
	Currency string `json:"ccy,omitempty"`
	// HoldExpiry is when an authorization's hold lapses, unix nanoseconds.
	HoldExpiry int64 `json:"hx,omitempty"`
	// Original is the original-reference key of the message that a
	// completion or reversal refers to (see OriginalKey).
	Original string `json:"orig,omitempty"`
	// Final on OpComplete releases the rest of the hold after this capture.
	Final bool `json:"final,omitempty"`
	// OriginalRef is the reference key under which this command's transfer
	// can itself be found later as an original (by a completion or
	// reversal); empty when it cannot be referred to.
	OriginalRef string `json:"oref,omitempty"`

	Ref Ref `json:"ref,omitempty"`

	// PayerType is the payer type the front door classified the request
	// as (stamped on the transfer).
	PayerType string `json:"payer,omitempty"`
	// Agent names the OTC agent (AgentID) whose cash limit an OpPost
	// counts against; empty when the payer is no agent.
	Agent string `json:"agent,omitempty"`

	// Offline on an agent's OpPost: the agent took the payment offline and
	// reports it by advice (0220/0120 without an original), so it counts
	// against the agent's offline limit instead of its cash limit
	// (advice.go); encoded in the extension object (ext.go).
	Offline bool `json:"offline,omitempty"`

	// Account is the account to create on OpCreateAccount.
	Account *Account `json:"account,omitempty"`
	// RetainAfter on OpExpire: idempotency records stamped before this time
	// (unix nanoseconds) are dropped.
	RetainAfter int64 `json:"retain,omitempty"`
	// NextDay on OpCloseDay is the business day the close opens.
	NextDay string `json:"next_day,omitempty"`
	// Break on OpBreak assigns or resolves a reconciliation break.
	Break *BreakUpdate `json:"break,omitempty"`
	// Admin carries an administrative change (admin.go) and who asked
	// for it; every command that has one appends to the audit chain.
	Admin *Admin `json:"admin,omitempty"`
	// Forward carries OpForward's request, OpForwardResult's answer and
	// OpSAFUpdate's change (forward.go); encoded in the extension object
	// (ext.go).
	Forward *ForwardCommand `json:"forward,omitempty"`
	// Authorization is an OpPutAuthorization's change (sca.go): machine
	// state, not a person's, so not in Admin and not audited; encoded in
	// the extension object (ext.go).
	Authorization *AuthorizationChange `json:"authz,omitempty"`
	// Webhook on OpWebhookAttempt is the attempt's result (webhooks.go):
	// machine state, not audited.
	Webhook *WebhookAttempt `json:"webhook,omitempty"`
	// Batch on OpPutBatch is a payment batch or its completion (batch.go).
	Batch *BatchChange `json:"batch,omitempty"`
	// StatementJob on OpPutStatementJob is a statement job's record
	// (statementjob.go).
	StatementJob *StatementJob `json:"statement_job,omitempty"`
	// HostReversal on OpHostReversal names the forward a destination
	// takes back (hostreversal.go); encoded in the extension object.
	HostReversal *HostReversal `json:"host_reversal,omitempty"`
}

// RepeatSafe reports whether proposing c again after an unknown outcome
// changes nothing: it has an idempotency key, or it is a business-day
// operation or a webhook attempt, which the FSM decides by content
// (closing a closed day, or recording an attempt twice, is a replay). OpExpire is neither: it carries the proposer's clock.
func (c *Command) RepeatSafe() bool {
	return c.Key != "" || c.Op == OpOpenDay || c.Op == OpCloseDay || c.Op == OpWebhookAttempt
}

// Status is the outcome of a command as the FSM decided it. Values are
// stable: they are stored in idempotency records and replayed to repeats.
type Status uint8

const (
	StatusOK Status = iota
	StatusInsufficientFunds
	StatusUnknownAccount
	StatusUnknownOriginal
	StatusFingerprintMismatch
	StatusInvalidAmount
	StatusCurrencyMismatch
	StatusExceedsOriginal
	StatusAlreadyFinal
	StatusAccountExists
	StatusInvalidCommand
	// StatusDuplicateReference: another transfer already answers to this
	// command's OriginalRef (same partner, acquirer, STAN, transmission
	// time and class under a new key). Approving it would make it
	// unreachable for completions and reversals, so it is declined.
	StatusDuplicateReference
)

// Err returns the sentinel error for a status, nil for StatusOK.
func (s Status) Err() error {
	switch s {
	case StatusOK:
		return nil
	case StatusInsufficientFunds:
		return ErrInsufficientFunds
	case StatusUnknownAccount:
		return ErrUnknownAccount
	case StatusUnknownOriginal:
		return ErrUnknownOriginal
	case StatusFingerprintMismatch:
		return ErrFingerprintMismatch
	case StatusInvalidAmount:
		return ErrInvalidAmount
	case StatusCurrencyMismatch:
		return ErrCurrencyMismatch
	case StatusExceedsOriginal:
		return ErrExceedsOriginal
	case StatusAlreadyFinal:
		return ErrAlreadyFinal
	case StatusAccountExists:
		return ErrAccountExists
	case StatusDuplicateReference:
		return ErrDuplicateReference
	case StatusDayMismatch:
		return ErrDayMismatch
	case StatusVersionConflict:
		return ErrVersionConflict
	case StatusNotFound:
		return ErrNotFound
	case StatusAgentLimit:
		return ErrAgentLimit
	case StatusReversalWindowClosed:
		return ErrReversalWindowClosed
	case StatusOfflineLimit:
		return ErrOfflineLimit
	case StatusUnknownAgent:
		return ErrUnknownAgent
	case StatusInvalidChange:
		return ErrInvalidChange
	case StatusExists:
		return ErrExists
	case StatusAuthenticationState:
		return ErrAuthenticationState
	case StatusAuthenticationExpired:
		return ErrAuthenticationExpired
	case StatusTokenMismatch:
		return ErrTokenMismatch
	}
	return ErrInvalidCommand
}

// Sentinel errors of the ledger rules. The switch maps them to ISO 8583
// response codes and HTTP problems in one table (package outcome).
var (
	ErrInsufficientFunds   = errors.New("store: insufficient funds")
	ErrUnknownAccount      = errors.New("store: unknown account")
	ErrUnknownOriginal     = errors.New("store: unknown original transfer")
	ErrFingerprintMismatch = errors.New("store: idempotency key reused with different content")
	ErrInvalidAmount       = errors.New("store: invalid amount")
	ErrCurrencyMismatch    = errors.New("store: currency mismatch")
	ErrExceedsOriginal     = errors.New("store: amount exceeds original")
	ErrAlreadyFinal        = errors.New("store: original already completed, reversed or expired")
	ErrAccountExists       = errors.New("store: account exists")
	ErrInvalidCommand      = errors.New("store: invalid command")
	ErrDuplicateReference  = errors.New("store: original reference already taken by another transfer")
	// ErrNotFound is returned by reads for a missing record.
	ErrNotFound = errors.New("store: not found")
	// ErrCorrupt means a stored record or log entry could not be decoded:
	// a broken invariant, never a client error.
	ErrCorrupt = errors.New("store: corrupt record")
)

// Result is what the FSM decided for one command. It is deterministic (the
// same on every replica) and is what an idempotency record stores, so a
// repeat gets byte-for-byte the same answer.
type Result struct {
	Status Status `json:"s"`
	// Replayed is true when the result came from an idempotency record
	// rather than from applying the command now. It is not stored.
	Replayed bool `json:"-"`
	// TransferID of the transfer the command created or changed.
	TransferID string `json:"tid,omitempty"`
	// AuthCode is the 6-character approval code (ISO 8583 field 38),
	// derived deterministically from the transfer id.
	AuthCode string `json:"auth,omitempty"`
	// Balances of the card's account after the command (for field 54 on
	// approvals that report them), minor units.
	Posted    int64  `json:"posted,omitempty"`
	Available int64  `json:"avail,omitempty"`
	Currency  string `json:"ccy,omitempty"`
	// Expired, Pruned and Scrubbed count what OpExpire did (Scrubbed:
	// forwards whose sealed card number it dropped, scrub.go).
	Expired  int `json:"expired,omitempty"`
	Pruned   int `json:"pruned,omitempty"`
	Scrubbed int `json:"scrubbed,omitempty"`
	// Day is the open business day after OpOpenDay or OpCloseDay. It is
	// not stored (day ops keep no idempotency records).
	Day string `json:"day,omitempty"`
	// Version is the routing table's version after a route change, and
	// Detail says which field an invalid change got wrong. Neither is
	// stored (a repeat answers Replayed without them).
	Version uint64 `json:"version,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// ForwardState and ForwardRC are the forward's state and host code
	// after OpForwardResult (a repeat's too: results are idempotent by
	// the forward's state, not by a record), so its proposer answers the
	// partner without reading the record back.
	ForwardState string `json:"fwd_state,omitempty"`
	ForwardRC    string `json:"fwd_rc,omitempty"`
}

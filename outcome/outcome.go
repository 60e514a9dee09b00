// Package outcome is the one table from errors to answers: ISO 8583 response
// codes (field 39) and HTTP problem types. Every decline the switch sends and
// every problem the ops API returns is looked up here, so the mapping is data
// that can be read and tested in one place, not ifs scattered over handlers.
package outcome

import (
	"errors"
	"net/http"
	"time"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/disk"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/oauth"
	"github.com/switchd/switchd/settle"
	"github.com/switchd/switchd/store"
	"github.com/switchd/switchd/webhook"
)

// Decline reasons the switch decides itself, before the ledger sees the
// request. They live here, beside their codes, so that the switch and the
// ops API share them without importing each other.
var (
	// ErrNotPermitted: the processing code is not allowed for this message
	// type, partner or payer.
	ErrNotPermitted = errors.New("switch: transaction not permitted")
	// ErrNoRoute: no routing rule matches the request.
	ErrNoRoute = errors.New("switch: no route")
	// ErrLimitExceeded: the amount is above the partner's per-transaction limit.
	ErrLimitExceeded = errors.New("switch: amount exceeds limit")
	// ErrUnknownPartner: the request names an acquirer we do not know on this lane.
	ErrUnknownPartner = errors.New("switch: unknown partner")
	// ErrDestinationUnavailable: the routed destination did not answer.
	ErrDestinationUnavailable = errors.New("switch: destination unavailable")
	// ErrUnsupported: a well-formed request the switch does not handle.
	ErrUnsupported = errors.New("switch: unsupported request")
	// ErrSourceNotAllowed: the message's partner may not send from the
	// connection's address (the partner's own allowlist).
	ErrSourceNotAllowed = errors.New("switch: source address not allowed for this partner")
	// ErrCertMismatch: a message claims a partner (by its acquirer id)
	// that the connection's client certificate does not speak for.
	ErrCertMismatch = errors.New("switch: client certificate does not speak for this partner")
	// ErrMACMissing: a partner that requires a MAC sent a financial
	// message without one (field 64, or 128 with a secondary bitmap);
	// ErrMACInvalid: the MAC it sent does not verify under its key (nor,
	// during an overlap, under its previous one).
	ErrMACMissing = errors.New("switch: MAC required and missing")
	ErrMACInvalid = errors.New("switch: MAC does not verify")
	// ErrNotSignedOn: a financial message on a lane that requires sign-on,
	// before the connection signed on (or after it signed off).
	ErrNotSignedOn = errors.New("switch: connection not signed on")
	// ErrPartnerSuspended: ops suspended the sending partner.
	ErrPartnerSuspended = errors.New("switch: partner suspended")
	// ErrBadRequest: an ops request that does not parse (the detail says
	// which parameter or field); ErrBodyTooLarge: a body over its limit;
	// ErrNotReady: /readyz of a node that may not serve yet.
	ErrBadRequest   = errors.New("ops: bad request")
	ErrBodyTooLarge = errors.New("ops: body too large")
	// ErrBadSignature: a destination's signed call (a biller's reversal)
	// whose Standard Webhooks signature or timestamp does not verify.
	ErrBadSignature = errors.New("switch: signature does not verify")
	ErrNotReady     = errors.New("ops: not ready")
	ErrNoJob        = errors.New("ops: no such job")
	// ErrBatchExpired: a payment batch's item not made within the
	// window after the batch was accepted (api batchMakeWindow, shorter
	// than the idempotency retention): making it later could make it
	// twice, should its record have been pruned meanwhile.
	ErrBatchExpired = errors.New("api: batch item not made in time")
	// ErrActorRequired: an ops write without an authenticated caller is
	// refused: every change names who made it.
	ErrActorRequired = errors.New("ops: an authenticated caller is required on every change")
	// ErrLaneReload: a lane reload (SIGHUP, POST /v1/lanes/reload) left a
	// lane on its old settings: the config does not load, or a lane's
	// new files or allowlist do not.
	ErrLaneReload = errors.New("switch: lane reload failed")
	// ErrCreditCheckRejected: a partner API authorization asked for more
	// than the account has available (it wraps the ledger's
	// store.ErrInsufficientFunds); nothing was reserved.
	ErrCreditCheckRejected = errors.New("api: credit check rejected")
	// ErrAuthenticationNoLongerValid: a capture or cancellation of a
	// partner API authorization whose reservation expired (it wraps the
	// ledger's store.ErrAlreadyFinal).
	ErrAuthenticationNoLongerValid = errors.New("api: authentication is no longer valid")
	// ErrNotImplemented: a documented partner API call that is not built
	// yet; the detail names what is missing.
	ErrNotImplemented = errors.New("api: not implemented")
	// ErrConflict: a partner API call that cannot be answered again as
	// it was (a redirect's one-time link is shown once: a repeat of the
	// call gets this, never a second link under the same key).
	ErrConflict = errors.New("api: conflict")
)

// ISO 8583:1987 response codes (field 39) that switchd sends.
const (
	Approved             = "00"
	InvalidMerchant      = "03"
	DoNotHonor           = "05"
	InvalidTransaction   = "12"
	InvalidAmount        = "13"
	InvalidCardNumber    = "14"
	UnableToLocate       = "25"
	FormatError          = "30"
	InsufficientFunds    = "51"
	NotPermitted         = "57"
	ExceedsLimit         = "61"
	RestrictedCard       = "62"
	SecurityViolation    = "63"
	IssuerUnavailable    = "91"
	DuplicateTransmision = "94"
	SystemMalfunction    = "96"
)

// Outcome is how one error is answered.
type Outcome struct {
	// Code is the ISO 8583 response code.
	Code string
	// HTTPStatus and Problem are the ops API's answer (RFC 9457 problem type
	// suffix, e.g. "insufficient-funds").
	HTTPStatus int
	Problem    string
	// Title is a short human text, safe to show (never request data).
	Title string
	// Detail: the error's own text is safe to show as the problem's
	// detail (it names a file row, a day or a node, never request data).
	Detail bool
	// RetryAfter, when set, is the Retry-After an HTTP answer carries.
	RetryAfter time.Duration
}

// table is checked in order; the first entry whose error matches wins.
// Errors that mean "no decision was made" (cluster errors) fail closed with
// 96 (DESIGN.md invariant 8).
var table = []struct {
	err error
	out Outcome
}{
	// Settlement and reconciliation (ops only; a partner never sees them,
	// 96 if it did). First: ErrBreakResolved wraps store.ErrAlreadyFinal.
	{settle.ErrBreakResolved, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "break-resolved", Title: "Break already resolved", Detail: true}},
	{settle.ErrBadRequest, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusBadRequest, Problem: "bad-request", Title: "Bad request", Detail: true}},
	{settle.ErrDayNotClosed, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "day-not-closed", Title: "Business day not closed", Detail: true}},
	{settle.ErrNoOpenDay, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "no-open-day", Title: "No business day open", Detail: true}},
	{store.ErrDayMismatch, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "day-mismatch", Title: "Not the open business day", Detail: true}},
	{settle.ErrQueueFull, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "queue-full", Title: "Job queue full", Detail: true, RetryAfter: 10 * time.Second}},
	{settle.ErrNoFile, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusNotFound, Problem: "no-file", Title: "No such file", Detail: true}},
	{settle.ErrInput, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "bad-input-file", Title: "Bad input file", Detail: true}},
	{settle.ErrNoRecon, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusNotFound, Problem: "no-reconciliation", Title: "No such reconciliation"}},
	{settle.ErrNoBreak, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusNotFound, Problem: "no-break", Title: "No such break"}},

	// Partner API authorizations: before the ledger errors they wrap.
	{ErrCreditCheckRejected, Outcome{Code: InsufficientFunds, HTTPStatus: http.StatusUnprocessableEntity, Problem: "credit-check-rejected", Title: "Credit check rejected"}},
	{ErrAuthenticationNoLongerValid, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "authentication-is-no-longer-valid", Title: "Authentication is no longer valid"}},
	{webhook.ErrURL, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusBadRequest, Problem: "webhook-url-not-allowed", Title: "Webhook URL not allowed", Detail: true}},
	{webhook.ErrDisabled, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusNotFound, Problem: "webhooks-not-enabled", Title: "Webhooks are not enabled on this switch"}},
	{webhook.ErrNoKEK, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "webhooks-unavailable", Title: "Webhooks are not available on this node"}},
	{webhook.ErrUnwrap, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "webhooks-unavailable", Title: "Webhooks are not available on this node"}},
	{ErrNotImplemented, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusNotImplemented, Problem: "not-implemented", Title: "Not implemented", Detail: true}},
	{ErrConflict, Outcome{Code: DuplicateTransmision, HTTPStatus: http.StatusConflict, Problem: "conflict", Title: "Conflict", Detail: true}},
	// SCA (store/sca.go): an expired authentication is the same problem
	// as an expired reservation; a link whose token is not the current
	// one does not speak for the authorization (claimant mismatch).
	{store.ErrAuthenticationExpired, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "authentication-is-no-longer-valid", Title: "Authentication is no longer valid"}},
	{store.ErrAuthenticationState, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "invalid-authentication-state", Title: "Not possible in the authorization's authentication state"}},
	{store.ErrTokenMismatch, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusForbidden, Problem: "claimant-mismatch", Title: "This link does not speak for the authorization"}},

	{store.ErrInsufficientFunds, Outcome{Code: InsufficientFunds, HTTPStatus: http.StatusUnprocessableEntity, Problem: "insufficient-funds", Title: "Insufficient funds"}},
	{store.ErrUnknownAccount, Outcome{Code: InvalidCardNumber, HTTPStatus: http.StatusNotFound, Problem: "unknown-account", Title: "Unknown account"}},
	{store.ErrUnknownOriginal, Outcome{Code: UnableToLocate, HTTPStatus: http.StatusNotFound, Problem: "unknown-original", Title: "Unable to locate original"}},
	{store.ErrFingerprintMismatch, Outcome{Code: DuplicateTransmision, HTTPStatus: http.StatusConflict, Problem: "idempotency-conflict", Title: "Key reused with different content"}},
	{store.ErrInvalidAmount, Outcome{Code: InvalidAmount, HTTPStatus: http.StatusUnprocessableEntity, Problem: "invalid-amount", Title: "Invalid amount"}},
	{store.ErrExceedsOriginal, Outcome{Code: InvalidAmount, HTTPStatus: http.StatusUnprocessableEntity, Problem: "exceeds-original", Title: "Amount exceeds original"}},
	{store.ErrCurrencyMismatch, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "currency-mismatch", Title: "Currency mismatch"}},
	{store.ErrAlreadyFinal, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusConflict, Problem: "original-final", Title: "Original already final"}},
	{store.ErrAccountExists, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusConflict, Problem: "account-exists", Title: "Account exists"}},
	{store.ErrDuplicateReference, Outcome{Code: DuplicateTransmision, HTTPStatus: http.StatusConflict, Problem: "duplicate-reference", Title: "STAN and time already used by another transaction"}},
	{store.ErrAgentLimit, Outcome{Code: ExceedsLimit, HTTPStatus: http.StatusUnprocessableEntity, Problem: "agent-limit-exceeded", Title: "Agent cash limit exceeded, settle first"}},
	// An OTC agent's offline advice beyond its offline limit (store/advice.go,
	// docs/ADVICES.md): 61 like the cash limit, since both are amount
	// limits the agent lifts the same way (by settling); on an 0230/0130
	// only the offline limit applies, so the agent knows which one.
	{store.ErrOfflineLimit, Outcome{Code: ExceedsLimit, HTTPStatus: http.StatusUnprocessableEntity, Problem: "agent-offline-limit-exceeded", Title: "Agent offline limit exceeded, settle first"}},
	// A partner's reversal of an off-us card purchase older than the
	// idempotency retention, when its card number is no longer kept
	// (store/scrub.go): 12, as a transaction the switch will not do;
	// nothing is reversed or sent to the issuer.
	{store.ErrReversalWindowClosed, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "reversal-window-closed", Title: "Too late to reverse this off-us payment"}},
	{store.ErrUnknownAgent, Outcome{Code: InvalidMerchant, HTTPStatus: http.StatusUnprocessableEntity, Problem: "unknown-agent", Title: "Unknown agent"}},
	{store.ErrVersionConflict, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "version-conflict", Title: "Routing table changed since the version given", Detail: true}},
	{store.ErrInvalidChange, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "invalid-change", Title: "Invalid change", Detail: true}},
	{store.ErrNotFound, Outcome{Code: UnableToLocate, HTTPStatus: http.StatusNotFound, Problem: "not-found", Title: "Not found"}},
	{store.ErrInvalidCommand, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusInternalServerError, Problem: "invalid-command", Title: "Invalid command"}},

	{card.ErrInvalidPAN, Outcome{Code: InvalidCardNumber, HTTPStatus: http.StatusBadRequest, Problem: "invalid-pan", Title: "Invalid card number"}},
	{codec.ErrInvalidAmount, Outcome{Code: InvalidAmount, HTTPStatus: http.StatusBadRequest, Problem: "invalid-amount", Title: "Invalid amount"}},
	{codec.ErrUnknownCurrency, Outcome{Code: FormatError, HTTPStatus: http.StatusBadRequest, Problem: "unknown-currency", Title: "Unknown currency"}},
	{codec.ErrUnknownMTI, Outcome{Code: FormatError, HTTPStatus: http.StatusBadRequest, Problem: "unknown-mti", Title: "Unknown message type"}},
	{codec.ErrMissingField, Outcome{Code: FormatError, HTTPStatus: http.StatusBadRequest, Problem: "missing-field", Title: "Missing mandatory field"}},
	{codec.ErrFormat, Outcome{Code: FormatError, HTTPStatus: http.StatusBadRequest, Problem: "format-error", Title: "Format error"}},

	{currency.ErrUnknown, Outcome{Code: FormatError, HTTPStatus: http.StatusBadRequest, Problem: "unknown-currency", Title: "Unknown currency"}},
	{currency.ErrAmount, Outcome{Code: InvalidAmount, HTTPStatus: http.StatusBadRequest, Problem: "invalid-amount", Title: "Invalid amount"}},

	{ErrNotPermitted, Outcome{Code: NotPermitted, HTTPStatus: http.StatusForbidden, Problem: "not-permitted", Title: "Transaction not permitted"}},
	{ErrBatchExpired, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusGone, Problem: "batch-expired", Title: "Batch item not made in time", Detail: true}},
	{ErrNoRoute, Outcome{Code: DoNotHonor, HTTPStatus: http.StatusUnprocessableEntity, Problem: "no-route", Title: "No route"}},
	{ErrLimitExceeded, Outcome{Code: ExceedsLimit, HTTPStatus: http.StatusUnprocessableEntity, Problem: "limit-exceeded", Title: "Amount exceeds limit"}},
	{ErrSourceNotAllowed, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusForbidden, Problem: "source-not-allowed", Title: "Source address not allowed for this partner"}},
	{ErrCertMismatch, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusForbidden, Problem: "certificate-mismatch", Title: "Certificate does not speak for this partner"}},
	{ErrMACMissing, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "mac-missing", Title: "MAC required"}},
	{ErrMACInvalid, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "mac-invalid", Title: "MAC does not verify"}},
	// MAC keys (package mac; its errors never carry key bytes). A node
	// without the KEK fails closed: 96 to the partner, 409 to ops.
	{mac.ErrNoKEK, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "no-kek", Title: "No key-encryption key configured on this node", Detail: true}},
	{mac.ErrKey, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "invalid-key", Title: "Invalid key", Detail: true}},
	{mac.ErrAlg, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "invalid-mac-algorithm", Title: "Unknown MAC algorithm or padding", Detail: true}},
	{mac.ErrUnwrap, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusInternalServerError, Problem: "key-unwrap", Title: "Stored key does not unwrap under this node's KEK"}},
	{ErrNotSignedOn, Outcome{Code: IssuerUnavailable, HTTPStatus: http.StatusServiceUnavailable, Problem: "not-signed-on", Title: "Sign on first"}},
	{ErrPartnerSuspended, Outcome{Code: RestrictedCard, HTTPStatus: http.StatusForbidden, Problem: "partner-suspended", Title: "Partner suspended"}},
	{ErrBadRequest, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusBadRequest, Problem: "bad-request", Title: "Bad request", Detail: true}},
	{ErrBadSignature, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "bad-signature", Title: "Signature does not verify"}},
	{ErrBodyTooLarge, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusRequestEntityTooLarge, Problem: "too-large", Title: "Body too large", Detail: true}},
	{ErrNoJob, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusNotFound, Problem: "no-job", Title: "No such job", Detail: true}},
	{ErrNotReady, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "not-ready", Title: "Not ready", Detail: true}},
	{ErrLaneReload, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "lane-reload-failed", Title: "Lane reload failed, old settings kept", Detail: true}},
	{ErrActorRequired, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnauthorized, Problem: "unauthenticated", Title: "Authentication required", Detail: true}},
	// OAuth2 bearer checks (RFC 6750 §3.1): 401 for a token that does not
	// authenticate, 403 for one that does but lacks the scope. The detail
	// names what is wrong, never the token.
	{oauth.ErrNoToken, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "unauthenticated", Title: "Bearer token required", Detail: true}},
	{oauth.ErrTokenExpired, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "token-expired", Title: "Token expired"}},
	{oauth.ErrWrongAudience, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "wrong-audience", Title: "Token is for another audience"}},
	{oauth.ErrCertBinding, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "certificate-binding", Title: "Token is bound to another client certificate"}},
	{oauth.ErrClientDisabled, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "client-disabled", Title: "Client disabled or unknown"}},
	{oauth.ErrInvalidToken, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusUnauthorized, Problem: "invalid-token", Title: "Invalid token", Detail: true}},
	{oauth.ErrInsufficientScope, Outcome{Code: SecurityViolation, HTTPStatus: http.StatusForbidden, Problem: "insufficient-scope", Title: "Insufficient scope", Detail: true}},
	{store.ErrExists, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "exists", Title: "Exists already", Detail: true}},
	{ErrUnknownPartner, Outcome{Code: DoNotHonor, HTTPStatus: http.StatusForbidden, Problem: "unknown-partner", Title: "Unknown partner"}},
	{ErrUnsupported, Outcome{Code: InvalidTransaction, HTTPStatus: http.StatusBadRequest, Problem: "unsupported", Title: "Unsupported request"}},
	{ErrDestinationUnavailable, Outcome{Code: IssuerUnavailable, HTTPStatus: http.StatusBadGateway, Problem: "destination-unavailable", Title: "Destination unavailable"}},

	// Transient: Retry-After tells an HTTP client when (an election takes
	// about a second); Server.fail logs no error for them.
	{cluster.ErrNotLeader, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "not-leader", Title: "Not the leader", RetryAfter: time.Second}},
	{cluster.ErrOverloaded, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "overloaded", Title: "Overloaded", RetryAfter: time.Second}},
	{cluster.ErrClosed, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "shutting-down", Title: "Shutting down"}},
	{cluster.ErrUnknownOutcome, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "outcome-unknown", Title: "Outcome unknown, retry with the same key", RetryAfter: time.Second}},

	// Issue 9 item 4 (membership): refused membership changes. Only the
	// ops API answers them (a partner never sees one; 96 if it did). 422:
	// the request names a node that does not check out; 409: the change
	// conflicts with the cluster as it is. The specific entries come
	// before ErrMembership, which each of them wraps.
	{cluster.ErrJoinUnreachable, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "join-unreachable", Title: "Joining node does not answer at its raft address", Detail: true}},
	{cluster.ErrJoinIdentity, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusUnprocessableEntity, Problem: "join-identity-mismatch", Title: "Node at that raft address has another id", Detail: true}},
	{cluster.ErrQuorumAtRisk, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "quorum-at-risk", Title: "Change would leave too few reachable voters for a quorum", Detail: true}},
	{cluster.ErrAlreadyLeader, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "already-leader", Title: "That node already leads", Detail: true}},
	{cluster.ErrNoOtherVoter, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "no-other-voter", Title: "No other voter to hand leadership to", Detail: true}},
	{cluster.ErrNotVoter, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "not-a-voter", Title: "Leadership can go only to a voter", Detail: true}},
	{cluster.ErrMembership, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusConflict, Problem: "membership", Title: "Membership change refused", Detail: true}},
	// Issue 9 item 2 (a full disk fails closed). Nothing was proposed while
	// the disk guard refuses; a failed ledger write stops applying until a
	// restart (an entry it refused reaches the partner as outcome-unknown
	// above, since it is committed in the raft log and will be applied).
	{disk.ErrLowSpace, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusInsufficientStorage, Problem: "insufficient-storage", Title: "Insufficient storage, retry later"}},
	{store.ErrFailed, Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusServiceUnavailable, Problem: "ledger-failed", Title: "Ledger write failed, retry with the same key"}},
}

var (
	approved = Outcome{Code: Approved, HTTPStatus: http.StatusOK, Problem: "", Title: "Approved"}
	fallback = Outcome{Code: SystemMalfunction, HTTPStatus: http.StatusInternalServerError, Problem: "internal", Title: "System malfunction"}
)

// HostDecline is a forwarded request's answer from its destination other
// than an approval (issue 13): the host's field 39, or the destination's
// timeout code (91, or 68 where the destination says) when it did not
// answer in time. The host's code reaches the partner through hostCodes.
type HostDecline struct {
	Code        string
	Destination string
	Timeout     bool
}

func (e *HostDecline) Error() string {
	if e.Timeout {
		return "switch: destination " + e.Destination + " did not answer in time"
	}
	return "switch: destination " + e.Destination + " declined with " + e.Code
}

// hostCodes are the ISO 8583:1987 codes a host's decline is passed on
// with as they are; any other code (a private one, or "00" on a message
// that is no approval) becomes 05, do not honour.
var hostCodes = map[string]bool{
	"01": true, "02": true, "03": true, "04": true, "05": true, "06": true, "07": true, "12": true, "13": true,
	"14": true, "15": true, "19": true, "25": true, "30": true, "33": true, "34": true, "36": true, "41": true,
	"43": true, "51": true, "54": true, "55": true, "57": true, "58": true, "59": true, "61": true, "62": true,
	"63": true, "65": true, "68": true, "75": true, "91": true, "92": true, "94": true, "96": true,
}

// HostCode is the code a partner gets for a host's code.
func HostCode(code string) string {
	if hostCodes[code] {
		return code
	}
	return DoNotHonor
}

func hostOutcome(e *HostDecline) Outcome {
	if e.Timeout {
		code := IssuerUnavailable
		if e.Code == "68" {
			code = "68"
		}
		return Outcome{Code: code, HTTPStatus: http.StatusGatewayTimeout, Problem: "destination-timeout", Title: "Destination did not answer in time"}
	}
	return Outcome{Code: HostCode(e.Code), HTTPStatus: http.StatusUnprocessableEntity, Problem: "declined-by-destination", Title: "Declined by the destination"}
}

// Of returns the outcome for err: Approved for nil, the first matching table
// entry otherwise, and 96 / 500 for anything unknown (fail closed).
func Of(err error) Outcome {
	if err == nil {
		return approved
	}
	if hd, ok := errors.AsType[*HostDecline](err); ok {
		return hostOutcome(hd)
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.out
		}
	}
	return fallback
}

// Code is Of(err).Code.
func Code(err error) string { return Of(err).Code }

// Package outcome is the one table from errors to answers: ISO 8583 response
// codes (field 39) and HTTP problem types. Every decline the switch sends and
// every problem the ops API returns is looked up here, so the mapping is data
// that can be read and tested in one place, not ifs scattered over handlers.
package outcome

import (
	"errors"
	"net/http"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/disk"
	"github.com/switchd/switchd/store"
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
)

// ISO 8583:1987 response codes (field 39) that switchd sends.
const (
	Approved             = "00"
	DoNotHonor           = "05"
	InvalidTransaction   = "12"
	InvalidAmount        = "13"
	InvalidCardNumber    = "14"
	UnableToLocate       = "25"
	FormatError          = "30"
	InsufficientFunds    = "51"
	NotPermitted         = "57"
	ExceedsLimit         = "61"
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
}

// table is checked in order; the first entry whose error matches wins.
// Errors that mean "no decision was made" (cluster errors) fail closed with
// 96 (DESIGN.md invariant 8).
var table = []struct {
	err error
	out Outcome
}{
	{store.ErrInsufficientFunds, Outcome{InsufficientFunds, http.StatusUnprocessableEntity, "insufficient-funds", "Insufficient funds"}},
	{store.ErrUnknownAccount, Outcome{InvalidCardNumber, http.StatusNotFound, "unknown-account", "Unknown account"}},
	{store.ErrUnknownOriginal, Outcome{UnableToLocate, http.StatusNotFound, "unknown-original", "Unable to locate original"}},
	{store.ErrFingerprintMismatch, Outcome{DuplicateTransmision, http.StatusConflict, "idempotency-conflict", "Key reused with different content"}},
	{store.ErrInvalidAmount, Outcome{InvalidAmount, http.StatusUnprocessableEntity, "invalid-amount", "Invalid amount"}},
	{store.ErrExceedsOriginal, Outcome{InvalidAmount, http.StatusUnprocessableEntity, "exceeds-original", "Amount exceeds original"}},
	{store.ErrCurrencyMismatch, Outcome{InvalidTransaction, http.StatusUnprocessableEntity, "currency-mismatch", "Currency mismatch"}},
	{store.ErrAlreadyFinal, Outcome{InvalidTransaction, http.StatusConflict, "original-final", "Original already final"}},
	{store.ErrAccountExists, Outcome{InvalidTransaction, http.StatusConflict, "account-exists", "Account exists"}},
	{store.ErrDuplicateReference, Outcome{DuplicateTransmision, http.StatusConflict, "duplicate-reference", "STAN and time already used by another transaction"}},
	{store.ErrNotFound, Outcome{UnableToLocate, http.StatusNotFound, "not-found", "Not found"}},
	{store.ErrInvalidCommand, Outcome{SystemMalfunction, http.StatusInternalServerError, "invalid-command", "Invalid command"}},

	{codec.ErrInvalidPAN, Outcome{InvalidCardNumber, http.StatusBadRequest, "invalid-pan", "Invalid card number"}},
	{codec.ErrInvalidAmount, Outcome{InvalidAmount, http.StatusBadRequest, "invalid-amount", "Invalid amount"}},
	{codec.ErrUnknownCurrency, Outcome{FormatError, http.StatusBadRequest, "unknown-currency", "Unknown currency"}},
	{codec.ErrUnknownMTI, Outcome{FormatError, http.StatusBadRequest, "unknown-mti", "Unknown message type"}},
	{codec.ErrMissingField, Outcome{FormatError, http.StatusBadRequest, "missing-field", "Missing mandatory field"}},
	{codec.ErrFormat, Outcome{FormatError, http.StatusBadRequest, "format-error", "Format error"}},

	{currency.ErrUnknown, Outcome{FormatError, http.StatusBadRequest, "unknown-currency", "Unknown currency"}},
	{currency.ErrAmount, Outcome{InvalidAmount, http.StatusBadRequest, "invalid-amount", "Invalid amount"}},

	{ErrNotPermitted, Outcome{NotPermitted, http.StatusForbidden, "not-permitted", "Transaction not permitted"}},
	{ErrNoRoute, Outcome{DoNotHonor, http.StatusUnprocessableEntity, "no-route", "No route"}},
	{ErrLimitExceeded, Outcome{ExceedsLimit, http.StatusUnprocessableEntity, "limit-exceeded", "Amount exceeds limit"}},
	{ErrUnknownPartner, Outcome{DoNotHonor, http.StatusForbidden, "unknown-partner", "Unknown partner"}},
	{ErrUnsupported, Outcome{InvalidTransaction, http.StatusBadRequest, "unsupported", "Unsupported request"}},
	{ErrDestinationUnavailable, Outcome{IssuerUnavailable, http.StatusBadGateway, "destination-unavailable", "Destination unavailable"}},

	{cluster.ErrNotLeader, Outcome{SystemMalfunction, http.StatusServiceUnavailable, "not-leader", "Not the leader"}},
	{cluster.ErrOverloaded, Outcome{SystemMalfunction, http.StatusServiceUnavailable, "overloaded", "Overloaded"}},
	{cluster.ErrClosed, Outcome{SystemMalfunction, http.StatusServiceUnavailable, "shutting-down", "Shutting down"}},
	{cluster.ErrUnknownOutcome, Outcome{SystemMalfunction, http.StatusServiceUnavailable, "outcome-unknown", "Outcome unknown, retry with the same key"}},

	// Issue 9 item 4 (membership): refused membership changes. Only the
	// ops API answers them (a partner never sees one; 96 if it did). 422:
	// the request names a node that does not check out; 409: the change
	// conflicts with the cluster as it is. The specific entries come
	// before ErrMembership, which each of them wraps.
	{cluster.ErrJoinUnreachable, Outcome{SystemMalfunction, http.StatusUnprocessableEntity, "join-unreachable", "Joining node does not answer at its raft address"}},
	{cluster.ErrJoinIdentity, Outcome{SystemMalfunction, http.StatusUnprocessableEntity, "join-identity-mismatch", "Node at that raft address has another id"}},
	{cluster.ErrQuorumAtRisk, Outcome{SystemMalfunction, http.StatusConflict, "quorum-at-risk", "Change would leave too few reachable voters for a quorum"}},
	{cluster.ErrAlreadyLeader, Outcome{SystemMalfunction, http.StatusConflict, "already-leader", "That node already leads"}},
	{cluster.ErrNoOtherVoter, Outcome{SystemMalfunction, http.StatusConflict, "no-other-voter", "No other voter to hand leadership to"}},
	{cluster.ErrNotVoter, Outcome{SystemMalfunction, http.StatusConflict, "not-a-voter", "Leadership can go only to a voter"}},
	{cluster.ErrMembership, Outcome{SystemMalfunction, http.StatusConflict, "membership", "Membership change refused"}},
	// Issue 9 item 2 (a full disk fails closed). Nothing was proposed while
	// the disk guard refuses; a failed ledger write stops applying until a
	// restart (an entry it refused reaches the partner as outcome-unknown
	// above, since it is committed in the raft log and will be applied).
	{disk.ErrLowSpace, Outcome{SystemMalfunction, http.StatusInsufficientStorage, "insufficient-storage", "Insufficient storage, retry later"}},
	{store.ErrFailed, Outcome{SystemMalfunction, http.StatusServiceUnavailable, "ledger-failed", "Ledger write failed, retry with the same key"}},
}

var (
	approved = Outcome{Approved, http.StatusOK, "", "Approved"}
	fallback = Outcome{SystemMalfunction, http.StatusInternalServerError, "internal", "System malfunction"}
)

// Of returns the outcome for err: Approved for nil, the first matching table
// entry otherwise, and 96 / 500 for anything unknown (fail closed).
func Of(err error) Outcome {
	if err == nil {
		return approved
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

package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Forwarding (issue 13). A request routed to an ISO 8583 host is two raft
// commands around the network hop:
//
//  1. OpForward records it as pending under the partner's idempotency key,
//     with everything the outbound message is built from (the PAN wrapped
//     under the nodes' KEK, never in clear) and a forward number, which
//     gives the message its STAN and RRN toward the host: ours, unique, so
//     answers match and a reversal can name the original.
//  2. OpForwardResult records the host's answer: approved posts the
//     transfer (debit the destination's settlement account, credit the
//     route's) and stores the host's approval code; declined stores its
//     code; timeout (no answer, the connection lost, or a node that died
//     between 1 and 2 and a sweeper that found the record past its
//     deadline) queues a reversal advice (0420) in the SAF queue, in the
//     same apply, so no leader change can lose or double it.
//
// The first result wins: a result for a record already decided changes
// nothing, except that an approval arriving after a timeout is kept on the
// record as a late answer (never posted: the reversal covers it), which
// reconciliation reports.
//
// SAF entries are sent by the leader, head-of-line per destination; each
// attempt's outcome is OpSAFUpdate (attempt, delivered on an 0430, expired
// past its deadline, dropped or retried by ops with an audit record).

const (
	// OpForward records a forwarded request as pending (Forward.Request).
	OpForward Op = 26
	// OpForwardResult records the host's answer (Forward.Result).
	OpForwardResult Op = 27
	// OpSAFUpdate records what happened to a SAF entry (Forward.SAF).
	OpSAFUpdate Op = 28
)

const (
	pfxForward    = 'F' // F<command key> → forward (binary, forwardcodec.go; JSON if written before)
	pfxForwardID  = 'f' // f<forward id> → command key
	pfxForwardDue = 'e' // e<timeout at><command key> → "" (pending forwards only)
	pfxSAF        = 'S' // S<saf id> → SAF entry (JSON)
	pfxSAFQueue   = 'y' // y<destination>\x00<saf id> → "" (queued entries only)
	// E<business day>\x00<partner>\x00<command key> → "": forwards that
	// timed out and were reversed, for the day's settlement file and
	// reconciliation (a scan of one partner's day, not of every forward).
	pfxForwardReversed = 'E'
	// G<transfer id> → command key: the forward an approved transfer came
	// from, so a partner's reversal of it also reverses it at the host.
	pfxForwardByTransfer = 'G'
	// H<original reference> → command key: the forward a partner's
	// reversal names when no transfer was posted (pending, timed out,
	// declined).
	pfxForwardByRef = 'H'
)

var (
	keyForwardSeq = []byte{pfxMeta, 'f', 's', 'e', 'q'}
	keySAFSeq     = []byte{pfxMeta, 's', 'a', 'f'}
)

// Forward states.
const (
	ForwardPending  = "pending"
	ForwardApproved = "approved"
	ForwardDeclined = "declined"
	ForwardTimedOut = "timed_out"
)

// Forward result outcomes.
const (
	OutcomeApproved = "approved"
	OutcomeDeclined = "declined"
	OutcomeTimeout  = "timeout"
)

// SAF states and actions.
const (
	SAFQueued    = "queued"
	SAFDelivered = "delivered"
	SAFExpired   = "expired"
	SAFDropped   = "dropped"

	SAFActionAttempt   = "attempt"
	SAFActionDelivered = "delivered"
	SAFActionExpire    = "expire"
	SAFActionDrop      = "drop"
	SAFActionRetry     = "retry"
	// SAFActionClaim marks queued entries (SAFUpdate.IDs) as about to be
	// sent by the sender that proposes it (SAFUpdate.Claim): an entry
	// another sender claimed may have reached the host already, so any
	// sender but the claimant sends it as a repeat (0421). One claim
	// covers a window of entries, so it costs one raft round per window,
	// not per advice.
	SAFActionClaim = "claim"
)

// Limits.
const (
	forwardFieldsMax     = 64
	forwardFieldBytesMax = 999
	wrappedPANBytesMax   = 128
	// ForwardBodyBytesMax bounds an http forward's request body.
	ForwardBodyBytesMax = 4096
	// SAFBatchMax bounds a page of SAF entries read at once, and the
	// entries one claim names.
	SAFBatchMax = 1000
	// safClaimBytesMax bounds a claim's name.
	safClaimBytesMax = 64
)

// ErrNotPending: a forward result for a request already decided.
var ErrNotPending = errors.New("store: forward already decided")

// ForwardCommand is the payload of OpForward, OpForwardResult and
// OpSAFUpdate (one of them set).
type ForwardCommand struct {
	Request *ForwardRequest `json:"request,omitempty"`
	Result  *ForwardResult  `json:"result,omitempty"`
	SAF     *SAFUpdate      `json:"saf,omitempty"`
}

// ForwardRequest is what OpForward records besides the Command's own
// fields (Key, Partner, Amount, Currency, Ref, PayerType, BusinessDay).
type ForwardRequest struct {
	Destination string `json:"dest"`
	Route       string `json:"route,omitempty"`
	// Debit and Credit are the legs posted on approval.
	Debit  string `json:"dr"`
	Credit string `json:"cr"`
	// MTI and Fields are the outbound request but fields 2 (the PAN, in
	// PAN wrapped), 11 and 37 (from the forward number).
	MTI       string         `json:"mti"`
	Fields    map[int]string `json:"fields"`
	PAN       []byte         `json:"pan,omitempty"`
	MaskedPAN string         `json:"masked_pan,omitempty"`
	// TimeoutAt (unix ns, proposer clock): after it a sweeper may record
	// a timeout for a forward still pending (its node died).
	TimeoutAt int64 `json:"timeout_at"`
	// OriginalRef is the partner-scoped reference the approved transfer
	// can be named by later (completions, reversals).
	OriginalRef string `json:"oref,omitempty"`
	// Body is the request to an http destination, as sent (no card
	// number: a bill payment names the bill, not the card); MTI and
	// Fields are empty then.
	Body string `json:"body,omitempty"`
	// CardHash is the keyed hash of the card number (the ledger's card
	// lookup key, never the number): a completion or reversal of the
	// forward must name the same card.
	CardHash string `json:"card_hash,omitempty"`
}

// ForwardResult is the host's answer to forward Key.
type ForwardResult struct {
	Key      string `json:"key"`
	Outcome  string `json:"outcome"`
	RC       string `json:"rc,omitempty"`
	AuthCode string `json:"auth,omitempty"`
	// Reason says why a timeout: "timeout", "connection_lost", "deadline"
	// (the sweeper); SAFExpiresAt is when its reversal advice expires.
	Reason       string `json:"reason,omitempty"`
	SAFExpiresAt int64  `json:"saf_expires_at,omitempty"`
}

// SAFUpdate changes SAF entry ID.
type SAFUpdate struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	RC     string `json:"rc,omitempty"`
	// Error is a short class ("timeout", "unavailable"), never message data.
	Error string `json:"error,omitempty"`
	// Counts: the attempt counts against the entry (a retry code or an
	// unreachable host does not, as jPOS's SAF does it).
	Counts bool  `json:"counts,omitempty"`
	NextAt int64 `json:"next_at,omitempty"`
	// IDs and Claim are a claim's (SAFActionClaim; ID is unused): the
	// entries and the sender's name for itself.
	IDs   []string `json:"ids,omitempty"`
	Claim string   `json:"claim,omitempty"`
}

// Forward is a forwarded request and what became of it.
type Forward struct {
	ID          string         `json:"id"`
	Key         string         `json:"key"`
	Partner     string         `json:"partner"`
	Destination string         `json:"dest"`
	Route       string         `json:"route,omitempty"`
	Debit       string         `json:"dr"`
	Credit      string         `json:"cr"`
	Amount      int64          `json:"amount"`
	Currency    string         `json:"currency"`
	BusinessDay string         `json:"day"`
	Time        int64          `json:"time"`
	TimeoutAt   int64          `json:"timeout_at"`
	PayerType   string         `json:"payer,omitempty"`
	Ref         Ref            `json:"ref"`
	OriginalRef string         `json:"oref,omitempty"`
	MTI         string         `json:"mti"`
	Fields      map[int]string `json:"fields"`
	PAN         []byte         `json:"pan,omitempty"`
	MaskedPAN   string         `json:"masked_pan,omitempty"`

	State      string `json:"state"`
	RC         string `json:"rc,omitempty"`
	AuthCode   string `json:"auth,omitempty"`
	TransferID string `json:"transfer,omitempty"`
	Reason     string `json:"reason,omitempty"`
	DecidedAt  int64  `json:"decided_at,omitempty"`
	// SAF is the reversal advice queued when it timed out.
	SAF string `json:"saf,omitempty"`
	// Late is an answer that came after the timeout: never posted.
	Late *LateAnswer `json:"late,omitempty"`
	// Body is an http destination's request (ForwardRequest.Body).
	Body string `json:"body,omitempty"`
	// HoldExpiry is set on an authorization (0100): its approval places
	// a hold on the destination's settlement account that lapses then,
	// which the partner's completions capture (each one an 0220 to the
	// host) and its reversal voids (an 0420).
	HoldExpiry int64 `json:"hold_expiry,omitempty"`
	// CardHash is ForwardRequest.CardHash.
	CardHash string `json:"card_hash,omitempty"`
}

// IsAuthorization reports whether f is an authorization (0100): its
// approval holds, not posts.
func (f *Forward) IsAuthorization() bool { return f.HoldExpiry != 0 }

// LateAnswer is a host's answer to a forward already timed out.
type LateAnswer struct {
	Outcome  string `json:"outcome"`
	RC       string `json:"rc,omitempty"`
	AuthCode string `json:"auth,omitempty"`
	At       int64  `json:"at"`
}

// STAN is field 11 toward the host: the forward number's last six digits.
func (f *Forward) STAN() string { return forwardDigits(f.ID, 6) }

// RRN is field 37 toward the host: the forward number's last twelve digits.
func (f *Forward) RRN() string { return forwardDigits(f.ID, 12) }

func forwardDigits(id string, n int) string {
	if len(id) < n {
		return strings.Repeat("0", n-len(id)) + id
	}
	return id[len(id)-n:]
}

// SAFEntry is one advice waiting for (or done with) its host.
type SAFEntry struct {
	ID          string         `json:"id"`
	Destination string         `json:"dest"`
	Partner     string         `json:"partner"`
	Forward     string         `json:"forward"` // the forward's command key
	MTI         string         `json:"mti"`
	Fields      map[int]string `json:"fields"` // fields but 2 (in PAN)
	PAN         []byte         `json:"pan,omitempty"`
	MaskedPAN   string         `json:"masked_pan,omitempty"`
	Amount      int64          `json:"amount"`
	Currency    string         `json:"currency"`
	State       string         `json:"state"`
	// Attempts that counted; Sends of any kind (the second and later go
	// as 0421, repeats).
	Attempts  int    `json:"attempts"`
	Sends     int    `json:"sends"`
	LastRC    string `json:"last_rc,omitempty"`
	LastError string `json:"last_error,omitempty"`
	CreatedAt int64  `json:"created_at"`
	NextAt    int64  `json:"next_at"`
	ExpiresAt int64  `json:"expires_at"`
	DoneAt    int64  `json:"done_at,omitempty"`
	// Claim names the sender that claimed the entry before its first send
	// (SAFActionClaim); any other sender sends it as a repeat.
	Claim string `json:"claim,omitempty"`
}

func (t *txn) nextSeq(key []byte) uint64 {
	var n uint64
	if v, ok := t.get(string(key)); ok {
		var err error
		n, err = strconv.ParseUint(string(v), 10, 64)
		mustDecode(err)
	}
	n++
	if n >= transferIDsMax {
		panic("store: apply: id space exhausted")
	}
	t.set(string(key), strconv.AppendUint(nil, n, 10))
	return n
}

func formatID(prefix byte, n uint64) string {
	s := formatTransferID(n)
	return string(prefix) + s[1:]
}

func (t *txn) forwardRecord(key string) *Forward {
	v, ok := t.get(skey1(pfxForward, key))
	if !ok {
		return nil
	}
	f := new(Forward)
	mustDecode(decodeForward(v, f)) // forwardcodec.go
	return f
}

func (t *txn) putForward(f *Forward) {
	t.set(skey1(pfxForward, f.Key), encodeForward(f))
}

// forwardOp applies OpForward (idempotency was checked by apply).
func (t *txn) forwardOp(c *Command) Result {
	q := c.Forward.Request
	if q == nil {
		return invalid()
	}
	// A card purchase is owed by the issuer: its debit is the host's
	// settlement account (Debit). A bill payment to a biller is paid by
	// the payer, as on-us: its debit is the card's account (Card, the
	// card hash), funds checked now, before the biller is asked.
	payer := c.Card != ""
	if payer && (q.Debit != "" || q.Body == "" || !validID(c.Card)) {
		return invalid()
	}
	if !payer && !validID(q.Debit) {
		return invalid()
	}
	if !validID(q.Destination) || !validID(q.Credit) || q.Debit == q.Credit ||
		!validOptional(q.Route, idBytesMax) || !validOptional(q.OriginalRef, keyBytesMax) ||
		(len(q.MTI) != 4 && q.Body == "") || len(q.Body) > ForwardBodyBytesMax || len(q.Fields) > forwardFieldsMax || len(q.PAN) > wrappedPANBytesMax ||
		len(q.MaskedPAN) > idBytesMax || q.TimeoutAt <= c.Time || c.Partner == "" || !validCurrency(c.Currency) {
		return invalid()
	}
	for id, v := range q.Fields {
		if id < 3 || id > 128 || id == 11 || id == 37 || len(v) > forwardFieldBytesMax {
			return invalid()
		}
	}
	// An authorization (0100) holds on approval until HoldExpiry; it is
	// a card's (the issuer holds the cardholder's funds), never a payer's.
	if hold := c.HoldExpiry != 0; hold != (q.MTI == "0100") || hold && (payer || c.HoldExpiry <= c.Time) ||
		!validOptional(q.CardHash, idBytesMax) {
		return invalid()
	}
	if !validAmount(c.Amount) {
		return Result{Status: StatusInvalidAmount}
	}
	if _, ok := t.directory().Destination(q.Destination); !ok {
		return Result{Status: StatusNotFound, Detail: "destination: no destination " + strconv.Quote(q.Destination)}
	}
	debit := q.Debit
	if payer {
		card := t.cardAccount(c.Card)
		if card == nil {
			return Result{Status: StatusUnknownAccount}
		}
		debit = card.ID
	}
	dr, cr := t.account(debit), t.account(q.Credit)
	if st := checkLegs(c, dr, cr, c.Amount, payer); st != StatusOK {
		return Result{Status: st}
	}
	f := &Forward{
		ID: formatID('F', t.nextSeq(keyForwardSeq)), Key: strings.Clone(c.Key), Partner: strings.Clone(c.Partner),
		Destination: q.Destination, Route: q.Route, Debit: debit, Credit: q.Credit,
		Amount: c.Amount, Currency: strings.Clone(c.Currency), BusinessDay: strings.Clone(c.BusinessDay), Time: c.Time,
		TimeoutAt: q.TimeoutAt, PayerType: strings.Clone(c.PayerType), Ref: c.Ref, OriginalRef: q.OriginalRef,
		MTI: q.MTI, Fields: q.Fields, PAN: q.PAN, MaskedPAN: q.MaskedPAN, State: ForwardPending, Body: q.Body,
		HoldExpiry: c.HoldExpiry, CardHash: q.CardHash,
	}
	t.putForward(f)
	t.set(skey1(pfxForwardID, f.ID), []byte(f.Key))
	if f.OriginalRef != "" {
		if _, taken := t.get(skey1(pfxForwardByRef, f.OriginalRef)); !taken {
			t.set(skey1(pfxForwardByRef, f.OriginalRef), []byte(f.Key))
		}
	}
	t.set(skeyTimed(pfxForwardDue, f.TimeoutAt, f.Key), []byte{})
	// TransferID names the record made: the forward (its number gives the
	// outbound STAN and RRN).
	return Result{Status: StatusOK, TransferID: f.ID}
}

// forwardResult applies OpForwardResult.
func (t *txn) forwardResult(c *Command) Result {
	a := c.Forward.Result
	if a == nil || a.Key == "" || len(a.RC) > 3 || len(a.AuthCode) > 12 || len(a.Reason) > idBytesMax {
		return invalid()
	}
	f := t.forwardRecord(a.Key)
	if f == nil {
		return Result{Status: StatusNotFound, Detail: "key: no forward"}
	}
	if f.State != ForwardPending {
		// Decided before: by this result (a repeat), which gets what it
		// got then, or by another, which this one may be late to.
		if f.State == ForwardTimedOut && a.Outcome == OutcomeApproved && strings.HasPrefix(f.Reason, ledgerReasonPrefix) {
			// This approval decided it, and the ledger refused to post it.
			return Result{Status: statusNamed(f.Reason[len(ledgerReasonPrefix):])}
		}
		if f.State == ForwardTimedOut && a.Outcome != OutcomeTimeout && f.Late == nil {
			f.Late = &LateAnswer{Outcome: a.Outcome, RC: a.RC, AuthCode: a.AuthCode, At: c.Time}
			t.putForward(f)
		}
		repeat := a.Outcome == OutcomeApproved && f.State == ForwardApproved || a.Outcome == OutcomeDeclined && f.State == ForwardDeclined ||
			a.Outcome == OutcomeTimeout && f.State == ForwardTimedOut
		return Result{Status: StatusOK, Replayed: repeat, TransferID: f.TransferID, AuthCode: f.AuthCode, ForwardState: f.State, ForwardRC: f.RC}
	}
	t.del(skeyTimed(pfxForwardDue, f.TimeoutAt, f.Key))
	f.DecidedAt, f.RC, f.Reason = c.Time, a.RC, a.Reason
	var r Result
	switch a.Outcome {
	case OutcomeApproved:
		mv := Command{Op: OpPost, Time: f.Time, BusinessDay: f.BusinessDay, Partner: f.Partner, Debit: f.Debit, Credit: f.Credit,
			Amount: f.Amount, Currency: f.Currency, Ref: f.Ref, PayerType: f.PayerType}
		if f.IsAuthorization() {
			r = t.holdFor(f)
		} else {
			r = t.move(&mv)
		}
		if r.Status != StatusOK {
			// The host approved what our ledger cannot post (a floor on
			// the destination's settlement account): the partner is
			// declined and the approval reversed through the SAF queue.
			f.State, f.Reason = ForwardTimedOut, ledgerReasonPrefix+r.Status.String()
			f.SAF = t.queueReversal(f, c.Time, a.SAFExpiresAt)
			t.putForward(f)
			return Result{Status: r.Status}
		}
		f.State, f.AuthCode, f.TransferID = ForwardApproved, a.AuthCode, r.TransferID
		t.set(skey1(pfxForwardByTransfer, r.TransferID), []byte(f.Key))
		if f.OriginalRef != "" && t.originalRef(f.OriginalRef) == "" {
			t.set(skey1(pfxOrigRef, f.OriginalRef), []byte(r.TransferID))
		}
		r.AuthCode = a.AuthCode
	case OutcomeDeclined:
		f.State = ForwardDeclined
		r = Result{Status: StatusOK}
	case OutcomeTimeout:
		if a.SAFExpiresAt <= c.Time {
			return invalid()
		}
		f.State = ForwardTimedOut
		f.SAF = t.queueReversal(f, c.Time, a.SAFExpiresAt)
		r = Result{Status: StatusOK}
	default:
		return invalid()
	}
	t.putForward(f)
	r.ForwardState, r.ForwardRC = f.State, f.RC
	return r
}

// ledgerReasonPrefix begins the reason of a forward the host approved
// and the ledger refused to post; the status's name follows.
const ledgerReasonPrefix = "ledger_"

// statusNamed is the status whose String is name (StatusInvalidCommand
// for none: a reason no status wrote).
func statusNamed(name string) Status {
	for s := range Status(255) {
		if s.String() == name {
			return s
		}
	}
	return StatusInvalidCommand
}

// queueReversal makes the 0420 that reverses f and queues it behind its
// destination's other entries.
func (t *txn) queueReversal(f *Forward, now, expires int64) string {
	t.set(skeyIndex3(pfxForwardReversed, f.BusinessDay, f.Partner, f.Key), []byte{})
	return t.queueReversalAdvice(f, now, expires)
}

// queueReversalAdvice queues the 0420 of f without listing f among the
// day's timed-out forwards (a reversal of an approved one: both
// transfers are in the settlement file already).
func (t *txn) queueReversalAdvice(f *Forward, now, expires int64) string {
	return t.queueReversalAdviceStanding(f, now, expires, 0)
}

// queueReversalAdviceStanding is queueReversalAdvice of a partial
// reversal when standing (minor units, what the cardholder still pays)
// is positive: field 4 stays the original amount, field 95 carries the
// amount that stands.
func (t *txn) queueReversalAdviceStanding(f *Forward, now, expires, standing int64) string {
	fields := make(map[int]string, len(f.Fields)+4)
	for k, v := range f.Fields {
		fields[k] = v
	}
	fields[11], fields[37] = f.STAN(), f.RRN()
	fields[90] = OriginalDataElements(f.MTI, f.STAN(), f.Fields[7], f.Fields[32])
	if standing > 0 {
		fields[95] = ReplacementAmounts(standing)
	}
	return t.queueSAF(f, "0420", fields, now, expires)
}

// ReplacementAmounts is ISO 8583:1987 field 95 (an 42) for a partial
// reversal: the actual transaction and settlement amounts (n 12 each,
// minor units) and no fees (x+n 8 each, credit zero).
func ReplacementAmounts(standing int64) string {
	return fmt.Sprintf("%012d%012dC00000000C00000000", standing, standing)
}

// queueAdvice queues f, a partner's advice (advice.go), as the advice
// itself (0220 or 0120, our STAN and RRN), behind its destination's other
// entries.
func (t *txn) queueAdvice(f *Forward, now, expires int64) string {
	fields := make(map[int]string, len(f.Fields)+2)
	for k, v := range f.Fields {
		fields[k] = v
	}
	fields[11], fields[37] = f.STAN(), f.RRN()
	return t.queueSAF(f, f.MTI, fields, now, expires)
}

// queueSAF queues the advice mti of f with fields behind its
// destination's other entries and returns its id.
func (t *txn) queueSAF(f *Forward, mti string, fields map[int]string, now, expires int64) string {
	return t.queueSAFOf(f, mti, fields, f.Amount, false, now, expires)
}

// queueSAFOf is queueSAF of an advice of amount; ownSTAN gives it a STAN
// of its own where several advices of one forward may be in flight
// (completions of a hold): the next forward number's last six digits,
// so it is drawn from the same sequence as every forward's STAN and
// collides with none of them at the host.
func (t *txn) queueSAFOf(f *Forward, mti string, fields map[int]string, amount int64, ownSTAN bool, now, expires int64) string {
	e := &SAFEntry{
		ID: formatID('S', t.nextSeq(keySAFSeq)), Destination: f.Destination, Partner: f.Partner, Forward: f.Key,
		MTI: mti, Fields: fields, PAN: f.PAN, MaskedPAN: f.MaskedPAN, Amount: amount, Currency: f.Currency,
		State: SAFQueued, CreatedAt: now, NextAt: now, ExpiresAt: expires,
	}
	if ownSTAN {
		fields[11] = forwardDigits(formatID('F', t.nextSeq(keyForwardSeq)), 6)
	}
	if f.Body != "" {
		// An http forward's follow-up asks the biller again (the same
		// idempotency key) and cancels what it approved: no message.
		e.MTI, e.Fields = "", nil
	}
	t.set(skey1(pfxSAF, e.ID), mustJSON(e))
	t.set(skeyIndex2(pfxSAFQueue, e.Destination, e.ID), []byte{})
	return e.ID
}

// OriginalDataElements is ISO 8583:1987 field 90 (n 42): the original's
// MTI, STAN, transmission date and time, acquiring institution (n 11,
// zero-filled) and forwarding institution (none: zeros).
func OriginalDataElements(mti, stan, f7, acquirer string) string {
	pad := func(s string, n int) string {
		if len(s) >= n {
			return s[len(s)-n:]
		}
		return strings.Repeat("0", n-len(s)) + s
	}
	return pad(mti, 4) + pad(stan, 6) + pad(f7, 10) + pad(acquirer, 11) + strings.Repeat("0", 11)
}

func (t *txn) safEntry(id string) *SAFEntry {
	v, ok := t.get(skey1(pfxSAF, id))
	if !ok {
		return nil
	}
	e := new(SAFEntry)
	mustDecode(json.Unmarshal(v, e))
	return e
}

// safUpdate applies OpSAFUpdate.
func (t *txn) safUpdate(c *Command) Result {
	u := c.Forward.SAF
	if u == nil || len(u.RC) > 3 || len(u.Error) > idBytesMax {
		return invalid()
	}
	if u.Action == SAFActionClaim {
		return t.safClaim(u)
	}
	e := t.safEntry(u.ID)
	if e == nil {
		return Result{Status: StatusNotFound, Detail: "id: no SAF entry " + strconv.Quote(u.ID)}
	}
	if (u.Action == SAFActionDrop || u.Action == SAFActionRetry) &&
		(c.Admin == nil || strings.TrimSpace(c.Admin.Actor) == "" || strings.TrimSpace(c.Admin.Reason) == "") {
		return changeErr("reason", "%s is an ops action: actor and reason required", u.Action)
	}
	if e.State != SAFQueued && u.Action != SAFActionRetry {
		return Result{Status: StatusAlreadyFinal}
	}
	sealed := e.PAN
	e.PAN = nil
	before := mustJSON(e)
	e.PAN = sealed
	switch u.Action {
	case SAFActionAttempt:
		if u.NextAt <= c.Time {
			return invalid()
		}
		e.Sends++
		if u.Counts {
			e.Attempts++
		}
		e.LastRC, e.LastError, e.NextAt = u.RC, u.Error, u.NextAt
	case SAFActionDelivered:
		e.Sends++
		e.State, e.LastRC, e.LastError, e.DoneAt = SAFDelivered, u.RC, "", c.Time
		e.PAN = nil // the host has it: nothing is sent again (scrub.go)
	case SAFActionExpire:
		if c.Time < e.ExpiresAt {
			return changeErr("action", "entry %s expires at %d, not yet", e.ID, e.ExpiresAt)
		}
		e.State, e.DoneAt = SAFExpired, c.Time
	case SAFActionDrop:
		e.State, e.DoneAt = SAFDropped, c.Time
	case SAFActionRetry:
		if e.State == SAFDelivered {
			return Result{Status: StatusAlreadyFinal}
		}
		if _, ok := t.directory().Destination(e.Destination); !ok {
			// No sender would take it: it would sit in a queue nobody
			// reads (deletion refuses a destination with queued entries).
			return changeErr("id", "entry %s is for destination %q, which no longer exists: put the destination back first", e.ID, e.Destination)
		}
		// Back in the queue at once, with the expiry moved on as far as
		// it was from the entry's creation.
		if e.State != SAFQueued {
			e.ExpiresAt = c.Time + (e.ExpiresAt - e.CreatedAt)
		}
		e.State, e.NextAt, e.DoneAt = SAFQueued, c.Time, 0
	default:
		return invalid()
	}
	if e.State != SAFQueued {
		t.del(skeyIndex2(pfxSAFQueue, e.Destination, e.ID))
	} else {
		t.set(skeyIndex2(pfxSAFQueue, e.Destination, e.ID), []byte{})
	}
	t.set(skey1(pfxSAF, e.ID), mustJSON(e))
	if c.Admin != nil {
		after := *e
		after.PAN = nil // the audit says what changed, not the sealed card number
		t.appendAudit(c, "saf."+u.Action, "saf/"+e.ID, before, mustJSON(&after))
	}
	return Result{Status: StatusOK}
}

// safClaim applies a claim: each queued, unsent, unclaimed entry of u.IDs
// is marked as u.Claim's. Entries already sent, claimed or done are left
// as they are (a claim racing a delivery changes nothing).
func (t *txn) safClaim(u *SAFUpdate) Result {
	if u.Claim == "" || len(u.Claim) > safClaimBytesMax || len(u.IDs) == 0 || len(u.IDs) > SAFBatchMax {
		return invalid()
	}
	for _, id := range u.IDs {
		e := t.safEntry(id)
		if e == nil || e.State != SAFQueued || e.Sends > 0 || e.Claim != "" {
			continue
		}
		e.Claim = u.Claim
		t.set(skey1(pfxSAF, e.ID), mustJSON(e))
	}
	return Result{Status: StatusOK}
}

// Forward returns the forward recorded under command key key.
func (s *Store) Forward(key string) (Forward, error) {
	var f Forward
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxForward, key))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		return decodeForward(v, &f)
	})
	return f, err
}

// ForwardByID returns forward id (its number, "F…").
func (s *Store) ForwardByID(id string) (Forward, error) {
	var key string
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxForwardID, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		key = string(v)
		return closer.Close()
	})
	if err != nil {
		return Forward{}, err
	}
	return s.Forward(key)
}

// DueForwards are up to limit forwards still pending whose deadline is at
// or before now (the sweeper times them out).
func (s *Store) DueForwards(now int64, limit int) ([]Forward, error) {
	var keys []string
	err := s.read(func(db *pebble.DB) error {
		lo := []byte{pfxForwardDue}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: keyTimed(pfxForwardDue, now+1, "")})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(keys) < limit; ok = it.Next() {
			keys = append(keys, string(it.Key()[9:]))
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	out := make([]Forward, 0, len(keys))
	for _, k := range keys {
		f, err := s.Forward(k)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// SAFEntry returns SAF entry id.
func (s *Store) SAFEntry(id string) (SAFEntry, error) {
	var e SAFEntry
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxSAF, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		return json.Unmarshal(v, &e)
	})
	return e, err
}

// SAFQueue is up to limit queued entries of destination dest, oldest
// first (head of line).
func (s *Store) SAFQueue(dest string, limit int) ([]SAFEntry, error) {
	var ids []string
	err := s.read(func(db *pebble.DB) error {
		lo := []byte(skeyIndex2(pfxSAFQueue, dest, ""))
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(ids) < min(limit, SAFBatchMax); ok = it.Next() {
			ids = append(ids, string(it.Key()[len(lo):]))
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	return s.safEntries(ids)
}

// SAFQueueDestinations are the destinations that have advices in their
// SAF queues, in id order, at most max: one seek past each destination's
// entries, nothing decoded. The leader compares them with the directory
// (a destination deleted after a partner's reversal queued its 0420).
func (s *Store) SAFQueueDestinations(max int) ([]string, error) {
	var out []string
	err := s.read(func(db *pebble.DB) error {
		lo := []byte{pfxSAFQueue}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < max; {
			k := it.Key()[1:]
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("%w: SAF queue key %q", ErrCorrupt, it.Key())
			}
			out = append(out, string(k[:i]))
			ok = it.SeekGE(prefixEnd(it.Key()[:1+i+1]))
		}
		return it.Error()
	})
	return out, err
}

// SAFEntries lists entries after id after (all states), at most limit.
func (s *Store) SAFEntries(after string, limit int) ([]SAFEntry, error) {
	var out []SAFEntry
	err := s.read(func(db *pebble.DB) error {
		lo := key1(pfxSAF, after+"\x00")
		if after == "" {
			lo = []byte{pfxSAF}
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd([]byte{pfxSAF})})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && len(out) < min(limit, SAFBatchMax); ok = it.Next() {
			var e SAFEntry
			if err := json.Unmarshal(it.Value(), &e); err != nil {
				return fmt.Errorf("%w: SAF entry: %v", ErrCorrupt, err)
			}
			out = append(out, e)
		}
		return it.Error()
	})
	return out, err
}

func (s *Store) safEntries(ids []string) ([]SAFEntry, error) {
	out := make([]SAFEntry, 0, len(ids))
	for _, id := range ids {
		e, err := s.SAFEntry(id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ReversedForward is a forward that timed out and the reversal advice
// queued for it, as the day's settlement file and reconciliation see
// them.
type ReversedForward struct {
	Forward Forward
	Advice  SAFEntry
}

// ScanReversedForwards calls fn, in command key order, for each of
// partner's forwards of business day that timed out and were reversed,
// from one snapshot. The card number stays sealed in both records.
func (s *Store) ScanReversedForwards(day, partner string, fn func(*ReversedForward) error) error {
	return s.read(func(db *pebble.DB) error {
		snap := db.NewSnapshot()
		defer snap.Close()
		lo := keyIndex(pfxForwardReversed, day, partner, "")
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			var r ReversedForward
			key := string(it.Key()[len(lo):])
			r.Forward, err = getRecord(snap, key1(pfxForward, key), func(b []byte) (Forward, error) {
				var f Forward
				return f, decodeForward(b, &f)
			})
			if err != nil {
				return fmt.Errorf("%w: forward %q of the reversed index: %v", ErrCorrupt, key, err)
			}
			r.Advice, err = getRecord(snap, key1(pfxSAF, r.Forward.SAF), func(b []byte) (SAFEntry, error) {
				var e SAFEntry
				return e, json.Unmarshal(b, &e)
			})
			if err != nil {
				return fmt.Errorf("%w: SAF entry %q of forward %q: %v", ErrCorrupt, r.Forward.SAF, key, err)
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
		return it.Error()
	})
}

// partnerReversalSAFExpiry is how long the 0420 a partner's reversal
// queues is retried (the forwarder's saf_expiry default: the apply path
// has no node config).
const partnerReversalSAFExpiry = 72 * 60 * 60 * 1e9

// reverseForward applies a partner's reversal whose original is a
// forward that posted nothing: pending (the partner gave up before the
// host answered) is decided as timed out now, its 0420 queued, so the
// host's answer, when it comes, is a late one and never posted; timed out
// or declined needs nothing more. ok is false when c names no forward.
func (t *txn) reverseForward(c *Command) (Result, bool) {
	key, found := t.get(skey1(pfxForwardByRef, c.Original))
	if !found {
		return Result{}, false
	}
	f := t.forwardRecord(string(key))
	if f == nil || f.Currency != c.Currency || f.State == ForwardApproved ||
		c.Card != "" && f.CardHash != "" && f.CardHash != c.Card {
		return Result{}, false
	}
	if f.State == ForwardPending {
		t.del(skeyTimed(pfxForwardDue, f.TimeoutAt, f.Key))
		f.State, f.Reason, f.DecidedAt = ForwardTimedOut, "partner_reversal", c.Time
		f.SAF = t.queueReversal(f, c.Time, c.Time+partnerReversalSAFExpiry)
		t.putForward(f)
	}
	return Result{Status: StatusOK}, true
}

// forwardOf is the forward approved transfer id came from, if any.
func (t *txn) forwardOf(id string) *Forward {
	key, ok := t.get(skey1(pfxForwardByTransfer, id))
	if !ok {
		return nil
	}
	return t.forwardRecord(string(key))
}

// StatusReversalWindowClosed: a partner's reversal of a forwarded card
// transfer whose card number is no longer kept (scrub.go: the forward is
// older than the idempotency retention). The host's 0420 needs field 2,
// and one sent without it would be refused or left unmatched at the host
// while our ledger had reversed: a break found only in reconciliation.
// Refused instead, with nothing reversed and nothing sent, so the partner
// knows at once (a chargeback is the way from there).
const StatusReversalWindowClosed Status = 141

// ErrReversalWindowClosed is StatusReversalWindowClosed's error.
var ErrReversalWindowClosed = errors.New("store: too late to reverse: the card number of the forwarded original is no longer kept")

// checkForwardedReversal limits a partner's reversal of a forwarded
// transfer to one: the host is sent one 0420 per original (a host
// detects duplicates by its original data elements, field 90), full or
// partial (field 95, the amount that stands). A second reversal after
// that one is refused: the host has been told what stands. So is one
// whose 0420 could no longer carry the card number.
func (t *txn) checkForwardedReversal(c *Command, o *Transfer) Status {
	if o.Status != TransferPosted && o.Status != TransferPending {
		return StatusOK
	}
	f := t.forwardOf(o.ID)
	switch {
	case f == nil:
		return StatusOK
	case f.SAF != "":
		return StatusInvalidAmount
	case f.Body == "" && f.MaskedPAN != "" && len(f.PAN) == 0:
		// An ISO 8583 forward of a card whose sealed number was scrubbed
		// (an http biller's follow-up needs no card number).
		return StatusReversalWindowClosed
	}
	return StatusOK
}

// reversedForwarded queues the host's 0420 once a partner reversed a
// forwarded transfer: in full, or in part with field 95 saying what
// stands.
func (t *txn) reversedForwarded(c *Command, o *Transfer) {
	f := t.forwardOf(o.ID)
	if f == nil || f.SAF != "" {
		return
	}
	f.Reason = "partner_reversal"
	standing := int64(0)
	if o.Reversed < o.Amount {
		f.Reason, standing = "partner_partial_reversal", o.Amount-o.Reversed
	}
	f.SAF = t.queueReversalAdviceStanding(f, c.Time, c.Time+partnerReversalSAFExpiry, standing)
	t.putForward(f)
}

// holdFor places the hold an approved authorization f makes: pending,
// from the destination's settlement account (what the issuer will owe
// once the partner completes) to the partner's, until f.HoldExpiry. From
// then on it is a hold like any other: completions capture it, a
// reversal voids it, expiry releases it. The host is told of the first
// two (completedForwarded, reversedForwarded), not of the expiry: an
// issuer's authorization lapses on its own clock.
func (t *txn) holdFor(f *Forward) Result {
	hc := Command{Op: OpAuthorize, Currency: f.Currency}
	dr, cr := t.account(f.Debit), t.account(f.Credit)
	if st := checkLegs(&hc, dr, cr, f.Amount, true); st != StatusOK {
		return Result{Status: st}
	}
	tr := &Transfer{
		Op: OpAuthorize, Status: TransferPending, Debit: dr.ID, Credit: cr.ID, Amount: f.Amount, Held: f.Amount,
		Expiry: f.HoldExpiry, Currency: f.Currency, Time: f.Time, BusinessDay: f.BusinessDay, Partner: f.Partner,
		Ref: f.Ref, PayerType: f.PayerType,
	}
	dr.DebitsPending += f.Amount
	cr.CreditsPending += f.Amount
	t.dirtyAccount(dr)
	t.dirtyAccount(cr)
	t.newTransfer(tr)
	return Result{Status: StatusOK, TransferID: tr.ID}
}

// completedForwarded queues the host's 0220 once a partner completed
// (captured) a hold an off-us authorization placed, in the apply that
// posts it: field 4 is the amount captured, 38 the host's approval code,
// 90 the authorization's data elements, 37 its RRN. Each completion is an
// advice of its own with a STAN of its own, so partial completions in
// flight together never share a correlation key at the host.
func (t *txn) completedForwarded(c *Command, o *Transfer) {
	f := t.forwardOf(o.ID)
	if f == nil {
		return
	}
	fields := make(map[int]string, len(f.Fields)+5)
	for k, v := range f.Fields {
		fields[k] = v
	}
	at := time.Unix(0, c.Time).UTC()
	fields[4], fields[7], fields[37] = fmt.Sprintf("%012d", c.Amount), at.Format("0102150405"), f.RRN()
	if f.AuthCode != "" {
		fields[38] = f.AuthCode
	}
	fields[90] = OriginalDataElements(f.MTI, f.STAN(), f.Fields[7], f.Fields[32])
	t.queueSAFOf(f, "0220", fields, c.Amount, true, c.Time, c.Time+partnerReversalSAFExpiry)
}

// forwardCard reports whether card (a card hash) may name o: o came from
// a forward of that card, or of a card the forward did not record (one
// written before forwards kept the hash).
func (t *txn) forwardCard(card string, o *Transfer) bool {
	f := t.forwardOf(o.ID)
	return f != nil && (f.CardHash == "" || f.CardHash == card)
}

// SAFQueueDepth counts destination dest's queued advices, up to max (a
// key scan of the queue index; nothing is decoded).
func (s *Store) SAFQueueDepth(dest string, max int) (int, error) {
	n := 0
	err := s.read(func(db *pebble.DB) error {
		lo := []byte(skeyIndex2(pfxSAFQueue, dest, ""))
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok && n < max; ok = it.Next() {
			n++
		}
		return it.Error()
	})
	return n, err
}

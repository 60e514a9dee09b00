package store

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Host reversals (issue 13): a destination takes back a payment it had
// approved — a biller's bill_payment.reversed webhook, or an issuer host's
// 0420 naming one of our forwards. OpHostReversal finds the forward,
// posts the compensating transfer (the approval's legs the other way, on
// the business day it applies in, so the day's settlement file has it),
// marks the original reversed and, in the same apply, writes the
// partner's payment.reversed webhook outbox row.
//
// Exactly once twice over: the command key names the host's own event
// (the webhook id, or the 0420's identity), so a retried delivery is a
// replay; and the record under R<forward id> names the reversal made, so
// a second event about the same payment (another webhook id, an 0421
// after the webhook) changes nothing and answers the first reversal.

// OpHostReversal reverses an approved forward at its host's request
// (Command.HostReversal).
const OpHostReversal Op = 29

const pfxHostReversal = 'R' // R<forward id> → host reversal record (JSON)

// Host reversal sources.
const (
	HostReversalWebhook = "webhook"
	HostReversalISO8583 = "iso8583"
)

// HostReversal is OpHostReversal's payload.
type HostReversal struct {
	// Destination is who asks: the forward must be one of its own.
	Destination string `json:"dest"`
	// Forward is the forward's id (F…): the biller's idempotency key, or
	// "F00" + the RRN of an 0420.
	Forward string `json:"forward"`
	Source  string `json:"source"`
	// Event is the host's name for its request (the webhook id, or the
	// 0420's STAN and transmission time); no message data.
	Event string `json:"event,omitempty"`
}

// HostReversalRecord is what a host reversal did.
type HostReversalRecord struct {
	Forward     string `json:"forward"`
	Destination string `json:"dest"`
	Source      string `json:"source"`
	Event       string `json:"event,omitempty"`
	// Original is the approved transfer; Transfer the compensating one
	// (empty when nothing was left to reverse: the partner had already
	// reversed it all).
	Original string `json:"original"`
	Transfer string `json:"transfer,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Day      string `json:"day"`
	Time     int64  `json:"time"`
}

// Detail values of an OpHostReversal that posted nothing.
const (
	HostReversalAlready     = "already reversed"
	HostReversalNotApproved = "not approved: nothing was posted"
	HostReversalHoldVoided  = "authorization: what was held is released, captures stand"
	HostReversalHoldClosed  = "authorization: nothing held any more, captures stand"
)

func (t *txn) hostReversal(c *Command) Result {
	q := c.HostReversal
	if q == nil || !validID(q.Destination) || !validID(q.Forward) || len(q.Event) > keyBytesMax ||
		(q.Source != HostReversalWebhook && q.Source != HostReversalISO8583) {
		return invalid()
	}
	if v, ok := t.get(skey1(pfxHostReversal, q.Forward)); ok {
		var rec HostReversalRecord
		mustDecode(json.Unmarshal(v, &rec))
		return Result{Status: StatusOK, TransferID: rec.Transfer, Detail: HostReversalAlready}
	}
	key, ok := t.get(skey1(pfxForwardID, q.Forward))
	if !ok {
		return Result{Status: StatusUnknownOriginal, Detail: "forward: no forward " + strconv.Quote(q.Forward)}
	}
	f := t.forwardRecord(string(key))
	if f == nil {
		panic("store: apply: forward id names a missing forward")
	}
	if f.Destination != q.Destination {
		// Another destination's payment: not this host's to take back.
		return Result{Status: StatusUnknownOriginal, Detail: "forward: not a forward to " + strconv.Quote(q.Destination)}
	}
	if f.State != ForwardApproved {
		// Declined or timed out: nothing was posted (a timeout's own
		// follow-up covers the host's side).
		return Result{Status: StatusOK, Detail: HostReversalNotApproved}
	}
	o := t.transfer(f.TransferID)
	if o == nil {
		panic("store: apply: approved forward names a missing transfer")
	}
	rec := HostReversalRecord{Forward: f.ID, Destination: f.Destination, Source: q.Source, Event: strings.Clone(q.Event),
		Original: o.ID, Currency: o.Currency, Day: c.BusinessDay, Time: c.Time}
	if o.Op == OpAuthorize {
		// An issuer takes back an authorization: what is still held is
		// let go (nothing was posted for it). What the partner captured
		// already stands: taking that back is a chargeback, not a
		// reversal, and is left to the dispute process.
		detail := HostReversalHoldClosed
		if o.Status == TransferPending {
			detail, rec.Amount = HostReversalHoldVoided, o.Held
			dr, cr := t.legs(o)
			o.Reversed += o.Held
			t.release(o, dr, cr, o.Held)
			t.closeHold(o, TransferVoided)
			t.emitEvent(c, EventPaymentReversed, o)
		}
		t.set(skey1(pfxHostReversal, f.ID), mustJSON(&rec))
		return Result{Status: StatusOK, Detail: detail}
	}
	amt := o.Amount - o.Reversed
	if amt > 0 {
		// The partner's settlement gives the money back to the
		// destination's: the approval's legs the other way.
		// Made as OpReverse: settlement files, statements and the
		// partner's transaction list know a reversal by its op.
		mv := *c
		mv.Op, mv.Amount, mv.Currency, mv.Partner, mv.Ref = OpReverse, amt, o.Currency, o.Partner, o.Ref
		origDr, origCr := t.legs(o)
		if st := checkLegs(&mv, origCr, origDr, amt, true); st != StatusOK {
			return Result{Status: st}
		}
		origCr.DebitsPosted += amt
		origDr.CreditsPosted += amt
		t.dirtyAccount(origCr)
		t.dirtyAccount(origDr)
		o.Reversed += amt
		t.dirtyTransfer(o)
		rec.Transfer, rec.Amount = t.postFor(&mv, o, origCr, origDr), amt
		t.emitEvent(&mv, EventPaymentReversed, o)
	}
	t.set(skey1(pfxHostReversal, f.ID), mustJSON(&rec))
	return Result{Status: StatusOK, TransferID: rec.Transfer}
}

// HostReversal returns the host reversal of forward id (F…).
func (s *Store) HostReversal(id string) (HostReversalRecord, error) {
	var rec HostReversalRecord
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxHostReversal, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		return json.Unmarshal(v, &rec)
	})
	return rec, err
}

// ReversedByHost reports whether transfer id, an approved forward's, was
// taken back by its destination's host (a host reversal record names its
// forward): the partner API then shows a fully reversed payment as
// "reversed", not "refunded". Three point reads, made only for a payment
// that is reversed in full.
func (s *Store) ReversedByHost(id string) (bool, error) {
	var key string
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxForwardByTransfer, id))
		if err != nil {
			return err
		}
		key = string(v)
		return closer.Close()
	})
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil // not forwarded: only partners' refunds
	}
	if err != nil {
		return false, err
	}
	f, err := s.Forward(key)
	if err != nil {
		return false, err
	}
	rec, err := s.HostReversal(f.ID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && rec.Original == id, err
}
